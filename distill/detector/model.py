"""The student detector: a MobileNet-style backbone (depthwise + pointwise convs, ReLU), a light
FPN (nearest Resize + Add) and a CenterNet/TTFNet head at stride 8 that ends in two raw conv maps
(class logits, log ltrb distances). Only Conv, Relu, Add and Resize reach the ONNX graph
(BatchNorm is folded into the convs before export); sigmoid, peak picking and NMS run in
``runtime/detector_decoder.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

STRIDE = 8
NPU_OPS = frozenset({"Conv", "Relu", "Clip", "MaxPool", "AveragePool", "Concat", "Resize", "Add"})


@dataclass(frozen=True)
class Arch:
    size: int            # square input side (letterboxed)
    widths: tuple        # channels at strides 2, 4, 8, 16, 32
    depths: tuple        # depthwise-separable blocks at strides 4, 8, 16, 32
    fpn: int             # FPN / head channels
    classes: int = 2


class ConvBN(nn.Sequential):
    def __init__(self, cin, cout, k=3, s=1, groups=1, relu=True):
        layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DWBlock(nn.Module):
    """Depthwise 3x3 + pointwise 1x1; residual Add when shapes allow."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.dw = ConvBN(cin, cin, 3, stride, groups=cin)
        self.pw = ConvBN(cin, cout, 1, relu=False)
        self.act = nn.ReLU(inplace=True)
        self.res = stride == 1 and cin == cout

    def forward(self, x):
        y = self.pw(self.dw(x))
        return self.act(y + x if self.res else y)


class Student(nn.Module):
    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        w, d = arch.widths, arch.depths
        self.stem = ConvBN(3, w[0], 3, 2)
        stages = []
        for i in range(4):
            blocks = [DWBlock(w[i], w[i + 1], 2)] + [DWBlock(w[i + 1], w[i + 1], 1) for _ in range(d[i] - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        f = arch.fpn
        self.lat = nn.ModuleList([ConvBN(w[i], f, 1) for i in (2, 3, 4)])   # strides 8, 16, 32
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.smooth = nn.ModuleList([DWBlock(f, f, 1), DWBlock(f, f, 1)])
        self.head = nn.Sequential(DWBlock(f, f, 1), DWBlock(f, f, 1))
        self.cls = nn.Conv2d(f, arch.classes, 1)
        self.box = nn.Conv2d(f, 4, 1)
        nn.init.constant_(self.cls.bias, -4.6)   # prior 0.01
        nn.init.constant_(self.box.bias, 1.0)

    def forward(self, x):
        x = self.stem(x)
        feats = []
        for st in self.stages:
            x = st(x)
            feats.append(x)
        c8, c16, c32 = feats[1], feats[2], feats[3]
        p32 = self.lat[2](c32)
        p16 = self.smooth[0](self.lat[1](c16) + self.up(p32))
        p8 = self.smooth[1](self.lat[0](c8) + self.up(p16))
        h = self.head(p8)
        return self.cls(h), self.box(h)


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode model with every Conv+BatchNorm pair fused into one Conv."""
    import copy
    m = copy.deepcopy(model).eval()

    def visit(mod):
        for name, child in mod.named_children():
            if isinstance(child, ConvBN):
                conv, bn = child[0], child[1]
                fused = fuse_conv_bn_eval(conv, bn)
                rest = list(child)[2:]
                setattr(mod, name, nn.Sequential(fused, *rest))
            else:
                visit(child)
    visit(m)
    return m
