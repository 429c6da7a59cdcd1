"""Rules: PPE, postures (actions) and camera health."""
from __future__ import annotations

import difflib
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator

from .base import Id, Posture, PPEItem, Severity, SpecModel

def _where(v):
    """`everywhere`, or a list of zone ids; a lone string that is neither gets a precise message."""
    if isinstance(v, str) and v != "everywhere":
        close = difflib.get_close_matches(v, ["everywhere"], n=1, cutoff=0.7)
        if close:
            raise ValueError(f"'{v}' is not `everywhere`; did you mean 'everywhere'?")
        raise ValueError(f"write a list of zone ids, e.g. [{v}], or `everywhere`")
    return v


Where = Annotated[Literal["everywhere"] | list[Id], BeforeValidator(_where)]
HealthCheck = Literal["blocked", "defocused", "moved", "too_dark", "silent"]


def _unique(v: list) -> list:
    seen = set()
    for item in v:
        if item in seen:
            raise ValueError(f"'{item}' is listed twice")
        seen.add(item)
    return v


class PPERule(SpecModel):
    """Who must wear what, and where."""

    where: Where = Field(
        default="everywhere", description="Zone ids where the rule applies, or `everywhere` the cameras see."
    )
    require: list[PPEItem] = Field(min_length=1, description="What every person there must wear: helmet, vest.")
    grace_s: float = Field(
        default=2.0, ge=0, le=600, description="Seconds a person may be seen without it before the violation is raised."
    )
    cameras: list[Id] | None = Field(default=None, description="Limit the rule to these cameras (default: all).")
    severity: Severity = Field(default="warning", description="Severity of the violation events.")
    cooldown_s: float | None = Field(
        default=None, ge=0, le=86400, description="Per-person quiet time after an event; default `alerts.cooldown_s`."
    )

    _u = field_validator("require")(_unique)


class ActionRule(SpecModel):
    """Postures from the single-frame skeleton classifier that raise events."""

    detect: list[Posture] = Field(
        min_length=1, description="Postures that raise events: standing, walking, bending, crouching, fallen, arms_raised."
    )
    where: Where = Field(default="everywhere", description="Zone ids, or `everywhere`.")
    min_duration_s: float = Field(
        default=1.0, ge=0, le=600, description="The posture must hold this long before an event (filters stumbles)."
    )
    cameras: list[Id] | None = Field(default=None, description="Limit the rule to these cameras (default: all).")
    severity: Severity = Field(default="critical", description="Severity of the events.")
    cooldown_s: float | None = Field(default=None, ge=0, le=86400, description="Per-person quiet time; default `alerts.cooldown_s`.")

    _u = field_validator("detect")(_unique)


class HealthRule(SpecModel):
    """Camera faults that raise their own events, so no detections never silently means safe."""

    detect: list[HealthCheck] = Field(
        default=["blocked", "defocused", "moved", "too_dark", "silent"],
        description="Camera faults to watch: blocked lens, defocused, moved (calibration invalid), too_dark, silent (no frames).",
    )
    after_s: float = Field(
        default=10.0, ge=0, le=3600, description="A fault must persist this long before the event (avoids flicker)."
    )
    cameras: list[Id] | None = Field(default=None, description="Limit the rule to these cameras (default: all).")
    severity: Severity = Field(default="warning", description="Severity of the health events.")

    _u = field_validator("detect")(_unique)
