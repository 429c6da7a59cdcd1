"""Situations: conditions under which the runtime switches model preference (night, rain, ...)."""
from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from .base import Id, SpecModel, parse_hhmm
from .models import ModelOverride


class When(SpecModel):
    """Exactly one condition: a schedule, a brightness level or a VMS flag."""

    schedule: str | list[str] | None = Field(
        default=None,
        description="Time ranges in the site's time zone, 'HH:MM-HH:MM' (may wrap midnight), e.g. '19:00-06:00'.",
    )
    brightness_below: float | None = Field(
        default=None, gt=0, le=255, description="Mean scene luma (0-255) under which the situation holds."
    )
    flag: Id | None = Field(default=None, description="A named flag the VMS sets, e.g. rain or snow.")

    @field_validator("schedule")
    @classmethod
    def _ranges(cls, v):
        if v is None:
            return v
        for item in [v] if isinstance(v, str) else v:
            if not isinstance(item, str) or item.count("-") != 1:
                raise ValueError(f"'{item}' is not a time range; write 'HH:MM-HH:MM', e.g. '19:00-06:00' (quote it)")
            start, end = item.split("-")
            if parse_hhmm(start) == parse_hhmm(end):
                raise ValueError(f"'{item}' starts and ends at the same time")
        return v

    @model_validator(mode="after")
    def _one_condition(self):
        given = [k for k in ("schedule", "brightness_below", "flag") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of schedule, brightness_below or flag (have: {', '.join(given) or 'none'})"
            )
        return self


class Situation(SpecModel):
    """A named situation and the model preference while it holds."""

    id: Id = Field(description="Situation id (appears in model-switch events).")
    when: When = Field(description="When the situation holds.")
    models: ModelOverride = Field(description="Model preference while it holds.")
    cameras: list[Id] | None = Field(default=None, description="Limit the situation to these cameras (default: all).")
