"""What a worker wears: clothing colours, hair, headwear and PPE, drawn from a seeded RNG.

Colours are BGR. Orange and yellow *clothes* that are not vests (lookalikes) and caps in helmet
colours are deliberate: they are the hard negatives for PPE detection.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

HELMET_COLOURS = {
    "white": (236, 238, 236), "yellow": (20, 215, 245), "orange": (10, 120, 245),
    "red": (40, 40, 205), "blue": (180, 90, 20),
}
VEST_COLOURS = {"yellow": (40, 250, 205), "orange": (20, 110, 255)}
SHIRTS = {
    "navy": (90, 50, 30), "grey": (120, 118, 115), "white": (215, 215, 210), "black": (38, 38, 40),
    "green": (60, 110, 55), "red": (45, 45, 170), "brown": (50, 75, 110), "blue": (160, 100, 40),
    "khaki": (110, 150, 165), "maroon": (50, 30, 110),
}
LOOKALIKE = {  # orange/yellow clothes that are not hi-vis vests
    "orange-shirt": (25, 115, 235), "yellow-jacket": (30, 200, 230), "rust": (30, 85, 190),
    "mustard": (40, 170, 205),
}
TROUSERS = {
    "jeans": (120, 80, 45), "dark": (50, 50, 55), "khaki": (100, 140, 160), "black": (30, 30, 32),
    "grey": (95, 95, 98), "orange-work": (25, 100, 225), "navy": (75, 45, 30),
}
SKIN = [(145, 175, 220), (120, 155, 205), (95, 130, 180), (70, 100, 150), (50, 75, 110), (160, 190, 230)]
HAIR = {"black": (25, 25, 28), "brown": (35, 55, 85), "blonde": (90, 160, 200), "grey": (150, 150, 150)}
CAP_COLOURS = {"yellow": (30, 205, 240), "orange": (15, 120, 240), "red": (40, 40, 190),
               "black": (30, 30, 30), "navy": (90, 50, 30), "white": (225, 225, 225)}
BOOTS = [(30, 45, 70), (25, 25, 25), (40, 60, 90)]


@dataclass(frozen=True)
class Appearance:
    height_m: float
    skin: tuple
    hair: tuple
    headwear: str           # helmet | hair | cap | hood | beanie
    headwear_colour: tuple
    headwear_name: str
    shirt: tuple
    shirt_name: str
    long_sleeves: bool
    trousers: tuple
    trousers_name: str
    boots: tuple
    vest: bool
    vest_colour: tuple
    vest_name: str

    @property
    def helmet(self) -> bool:
        return self.headwear == "helmet"

    def summary(self) -> dict:
        d = asdict(self)
        return {
            "height_m": round(self.height_m, 3), "helmet": self.helmet, "vest": self.vest,
            "headwear": self.headwear, "headwear_colour": self.headwear_name,
            "vest_colour": self.vest_name if self.vest else None,
            "shirt": self.shirt_name, "trousers": self.trousers_name, "long_sleeves": d["long_sleeves"],
        }


def _pick(rng, table: dict):
    name = list(table)[int(rng.integers(len(table)))]
    return name, table[name]


def _jitter(rng, colour, amount=14):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def sample(rng: np.random.Generator, p_helmet=0.8, p_vest=0.75, p_lookalike=0.15, cold=False) -> Appearance:
    """One worker's look. `cold` (rain, snow, night) makes hoods, beanies and long sleeves likelier."""
    male = rng.random() < 0.85
    height = float(np.clip(rng.normal(1.76 if male else 1.63, 0.065), 1.5, 1.98))
    skin = SKIN[int(rng.integers(len(SKIN)))]
    hair_name, hair = _pick(rng, HAIR)
    if rng.random() < p_helmet:
        hw, (hw_name, hw_col) = "helmet", _pick(rng, HELMET_COLOURS)
    else:
        r = rng.random()
        weights = (0.2, 0.45, 0.7) if cold else (0.45, 0.8, 0.9)
        if r < weights[0]:
            hw, hw_name, hw_col = "hair", hair_name, hair
        elif r < weights[1]:
            hw, (hw_name, hw_col) = "cap", _pick(rng, CAP_COLOURS)
        elif r < weights[2]:
            hw, hw_name, hw_col = "hood", "", None
        else:
            hw, (hw_name, hw_col) = "beanie", _pick(rng, CAP_COLOURS)
    if rng.random() < p_lookalike:
        shirt_name, shirt = _pick(rng, LOOKALIKE)
    else:
        shirt_name, shirt = _pick(rng, SHIRTS)
    shirt = _jitter(rng, shirt)
    if hw == "hood":
        hw_name, hw_col = shirt_name, shirt
    if rng.random() < p_lookalike * 0.5:
        tr_name, trousers = "orange-work", TROUSERS["orange-work"]
    else:
        tr_name, trousers = _pick(rng, {k: v for k, v in TROUSERS.items() if k != "orange-work"})
    vest = bool(rng.random() < p_vest)
    vest_name, vest_col = _pick(rng, VEST_COLOURS)
    return Appearance(
        height_m=height, skin=_jitter(rng, skin, 8), hair=hair, headwear=hw, headwear_colour=_jitter(rng, hw_col, 8),
        headwear_name=hw_name, shirt=shirt, shirt_name=shirt_name, long_sleeves=bool(cold or rng.random() < 0.55),
        trousers=_jitter(rng, trousers, 10), trousers_name=tr_name, boots=BOOTS[int(rng.integers(len(BOOTS)))],
        vest=vest, vest_colour=_jitter(rng, vest_col, 6), vest_name=vest_name,
    )
