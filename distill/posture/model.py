"""Posture MLPs with bottleneck layers: input -> width, then residual bottleneck blocks
(width -> bottleneck -> width, ReLU, Add), then the six logits. Only MatMul/Gemm, ReLU and Add:
no recurrence and no memory between frames."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from runtime.posture import CLASSES, N_FEATURES


@dataclass(frozen=True)
class Variant:
    name: str
    width: int
    bottleneck: int
    blocks: int
    role: str
    description: str


VARIANTS = {
    "posture-t": Variant("posture-t", 256, 64, 3, "teacher", "teacher: 256-wide MLP, three 64-unit bottleneck blocks"),
    "posture-s": Variant("posture-s", 64, 16, 2, "student", "student: 64-wide MLP, two 16-unit bottleneck blocks"),
}
TEACHER, STUDENT = "posture-t", "posture-s"


class Bottleneck(nn.Module):
    def __init__(self, width: int, bottleneck: int):
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.up(self.act(self.down(x))))


class PostureNet(nn.Module):
    def __init__(self, v: Variant):
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(N_FEATURES, v.width), nn.ReLU())
        self.blocks = nn.Sequential(*[Bottleneck(v.width, v.bottleneck) for _ in range(v.blocks)])
        self.head = nn.Linear(v.width, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build(name: str) -> PostureNet:
    return PostureNet(VARIANTS[name])
