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
# A third of the sim frames zoomed in 1.35-3x (data.close_up_zoom), so people near a camera (the
# worker-zone footage) are in the training data; steps are 1.5x those of the runs without it.
# Measured on the real holdout, det-s256: AP50 0.750 -> 0.928 (bench/results/detector.json).
CLOSE_UP = 0.33
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("det-s256", Arch(256, S, (1, 2, 2, 2), 64),
            Recipe(steps=1650, batch=16, warmup=50, close_up=CLOSE_UP), "RV1106 / RV1103 / Hi3516 class (0.5-1 TOPS)"),
    Variant("det-m320", Arch(320, S, (1, 2, 2, 2), 64),
            Recipe(steps=600, batch=16, lr=1.5e-3, warmup=20, close_up=CLOSE_UP), "RV1126 / RK3566 class (1-2 TOPS)",
            base="det-s256"),
    Variant("det-l416", Arch(416, S, (1, 2, 3, 3), 64),
            Recipe(steps=450, batch=12, lr=1.5e-3, warmup=20, close_up=CLOSE_UP), "RK3588 / Jetson / Hailo class (>= 6 TOPS)",
            base="det-s256"),
    Variant("det-s256-night", Arch(256, S, (1, 2, 2, 2), 64),
            Recipe(steps=450, batch=16, lr=1e-3, warmup=20, real_fraction=0.25, close_up=CLOSE_UP),
            "as det-s256; the runtime's night / night-rain situation", conditions=("night", "night-rain"),
            base="det-s256", extra_sim=("night", "night-rain")),
)}
SMALLEST = "det-s256"
