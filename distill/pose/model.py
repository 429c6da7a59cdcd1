"""Heatmap pose nets (SimpleBaseline-style, top-down) made of NPU-friendly operators only:
Conv (+BatchNorm, folded at export), ReLU, MaxPool, nearest Resize, Add. An encoder to stride 16,
then a light FPN decoder back to stride 4 where a 1x1 conv gives one heatmap per joint.

Variants are the zoo's folder names; ``size`` is the crop (width, height).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from runtime.pose import N_JOINTS


@dataclass(frozen=True)
class Variant:
    name: str
    size: tuple[int, int]                 # crop width, height
    widths: tuple[int, int, int, int]     # channels at stride 2, 4, 8, 16
    depth: tuple[int, int, int, int]      # extra 3x3 convs per stage
    decoder: int                          # decoder channels
    role: str                             # teacher | student
    description: str


VARIANTS = {
    "pose-t96": Variant("pose-t96", (96, 192), (24, 48, 64, 128), (0, 1, 2, 2), 48, "teacher",
                        "teacher: wide and deep heatmap net on 96x192 crops"),
    "pose-m96": Variant("pose-m96", (96, 192), (16, 24, 48, 64), (0, 1, 1, 1), 32, "student",
                        "student, medium: narrow heatmap net on 96x192 crops"),
    "pose-s64": Variant("pose-s64", (64, 128), (16, 24, 32, 48), (0, 1, 1, 1), 24, "student",
                        "student, small: narrow heatmap net on 64x128 crops"),
}
TEACHER = "pose-t96"
STUDENTS = ("pose-m96", "pose-s64")


def _cbr(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PoseNet(nn.Module):
    def __init__(self, v: Variant):
        super().__init__()
        w, d = v.widths, v.depth
        stages, cin = [], 3
        for i in range(4):
            layers = [_cbr(cin, w[i], 2)] + [_cbr(w[i], w[i]) for _ in range(d[i])]
            stages.append(nn.Sequential(*layers))
            cin = w[i]
        self.stages = nn.ModuleList(stages)
        c = v.decoder
        self.lat16 = _cbr(w[3], c, k=1)
        self.lat8 = _cbr(w[2], c, k=1)
        self.lat4 = _cbr(w[1], c, k=1)
        self.fuse8 = _cbr(c, c)
        self.fuse4 = _cbr(c, c)
        self.refine = _cbr(c, c)
        self.head = nn.Conv2d(c, N_JOINTS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for s in self.stages:
            x = s(x)
            feats.append(x)
        y = self.lat16(feats[3])
        y = self.fuse8(F.interpolate(y, scale_factor=2.0, mode="nearest") + self.lat8(feats[2]))
        y = self.fuse4(F.interpolate(y, scale_factor=2.0, mode="nearest") + self.lat4(feats[1]))
        return self.head(self.refine(y))


def build(name: str) -> PoseNet:
    return PoseNet(VARIANTS[name])
