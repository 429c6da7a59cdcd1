"""The PPE classifiers: small plain CNNs over one letterboxed person crop, two logits out.

Only Conv, ReLU and Flatten reach the ONNX graph (BatchNorm folds into the convolutions on
export), so every NPU in board_profiles/ runs them whole. The head keeps *where* a feature is:
a 1x1 squeeze, then a convolution over the whole final map (a fully connected layer written as
a Conv), so a hard hat on top of the crop and a vest in its middle stay distinguishable -- a
global average pool would mix an orange cap with an orange vest.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from runtime.ppe import CLASSES


@dataclass(frozen=True)
class Variant:
    name: str
    size: tuple[int, int]              # crop (width, height)
    widths: tuple[int, int, int, int]  # channels after each stride-2 stage
    squeeze: int = 16
    hidden: int = 32
    description: str = ""

    @property
    def final_map(self) -> tuple[int, int]:
        return self.size[1] // 16, self.size[0] // 16


VARIANTS: dict[str, Variant] = {
    "small": Variant("small", (64, 128), (16, 24, 32, 48), squeeze=16, hidden=32,
                     description="64x128 person crop, ~6 MMAC: the default tier for NPU cameras and small boards"),
    "large": Variant("large", (80, 160), (24, 32, 48, 64), squeeze=24, hidden=48,
                     description="80x160 person crop, ~3x the small one's compute; the teacher the small one is distilled from"),
}


def _conv(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, 0 if k == stride else (k - 1) // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PPENet(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] -> (N, 2) logits (helmet, vest)."""

    def __init__(self, v: Variant):
        super().__init__()
        c0, c1, c2, c3 = v.widths
        self.features = nn.Sequential(
            _conv(3, c0, 4, k=4),               # /4: a 4x4 patch stem (cheap at full resolution)
            _conv(c0, c1),                      # /4
            _conv(c1, c2, 2), _conv(c2, c2),    # /8
            _conv(c2, c3, 2), _conv(c3, c3),    # /16
        )
        fh, fw = v.final_map
        self.head = nn.Sequential(
            nn.Conv2d(c3, v.squeeze, 1), nn.ReLU(inplace=True),
            nn.Conv2d(v.squeeze, v.hidden, (fh, fw)), nn.ReLU(inplace=True),
            nn.Conv2d(v.hidden, len(CLASSES), 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.head(self.features(x)), 1)


def build(variant: str) -> PPENet:
    return PPENet(VARIANTS[variant])
