"""The detector variants of the zoo: input size x width, and what each is for."""
from __future__ import annotations

from dataclasses import dataclass, field

from .model import Arch
from .train import Recipe


@dataclass(frozen=True)
class Variant:
    name: str
    arch: Arch
    recipe: Recipe
    boards: str
    conditions: tuple = ("any",)
    base: str | None = None        # initialised from this variant's weights (same convs; new residual
                                   # blocks start as identities), then trained at this size / on this data
    extra_sim: tuple = field(default_factory=tuple)   # extra sim conditions (specialised data)


S = (16, 32, 64, 96, 128)
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("det-s256", Arch(256, S, (1, 2, 2, 2), 64),
            Recipe(steps=1100, batch=16, warmup=50), "RV1106 / RV1103 / Hi3516 class (0.5-1 TOPS)"),
    Variant("det-m320", Arch(320, S, (1, 2, 2, 2), 64),
            Recipe(steps=400, batch=16, lr=1.5e-3, warmup=20), "RV1126 / RK3566 class (1-2 TOPS)",
            base="det-s256"),
    Variant("det-l416", Arch(416, S, (1, 2, 3, 3), 64),
            Recipe(steps=300, batch=12, lr=1.5e-3, warmup=20), "RK3588 / Jetson / Hailo class (>= 6 TOPS)",
            base="det-s256"),
    Variant("det-s256-night", Arch(256, S, (1, 2, 2, 2), 64),
            Recipe(steps=300, batch=16, lr=1e-3, warmup=20, real_fraction=0.25),
            "as det-s256; the runtime's night / night-rain situation", conditions=("night", "night-rain"),
            base="det-s256", extra_sim=("night", "night-rain")),
)}
SMALLEST = "det-s256"
