"""The base model and small shared types of the site-spec language.

Every section model derives from `SpecModel`: unknown keys are errors, instances are frozen,
and every field carries a description (the JSON Schema and the README's reference come from it).
"""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


Id = Annotated[
    str,
    Field(
        pattern=ID_PATTERN,
        description="Lower-case letters, digits, '-' and '_', starting with a letter or digit (used in file names).",
    ),
]

Severity = Literal["info", "warning", "critical"]

Posture = Literal["standing", "walking", "bending", "crouching", "fallen", "arms_raised"]
POSTURES: tuple[str, ...] = ("standing", "walking", "bending", "crouching", "fallen", "arms_raised")

PPEItem = Literal["helmet", "vest"]

# The events a runtime raises; sinks and alarms can filter on them.
EventType = Literal[
    "zone_intrusion",
    "zone_dwell",
    "predicted_entry",
    "ppe_violation",
    "posture",
    "camera_health",
    "model_switch",
]

Point2 = Annotated[
    tuple[float, float],
    Field(description="A point [x, y]."),
]




_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(text: str) -> int:
    """'07:30' -> minutes after midnight; raises ValueError with a fix."""
    m = _HHMM.match(text.strip())
    if not m:
        raise ValueError(f"'{text}' is not a time of day; write HH:MM in 24-hour form, e.g. 07:30")
    return int(m.group(1)) * 60 + int(m.group(2))
