"""`site:` and `defaults:`: who the site is, where its clock runs, and what cameras inherit."""
from __future__ import annotations

import difflib
import zoneinfo
from functools import lru_cache

from pydantic import Field, field_validator

from .base import Id, SpecModel


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class Site(SpecModel):
    """Who the site is and the clock its schedules run on."""

    name: Id = Field(description="Short site name; appears in image file names and events, e.g. riverside-tower.")
    timezone: str = Field(
        default="UTC",
        description="IANA time zone of the site (e.g. Asia/Seoul); schedules are read in it, daylight saving included.",
    )
    description: str | None = Field(default=None, description="Free text for people: address, contractor, notes.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        if v in _timezones():
            return v
        close = difflib.get_close_matches(v, sorted(_timezones()), n=1, cutoff=0.7)
        hint = f"; did you mean '{close[0]}'?" if close else "; use an IANA name such as Europe/Berlin"
        raise ValueError(f"unknown time zone '{v}'{hint}")


class Defaults(SpecModel):
    """Values merged into every camera and device that does not set its own."""

    board: str | None = Field(
        default=None,
        description="Board of cameras and devices that name none (a board id from `build.py boards`); "
        "`build.py --board B` fills in what is still unset.",
    )
    fps: float = Field(default=10.0, ge=0.5, le=60, description="Frames per second analysed per camera.")
    resolution: tuple[int, int] = Field(
        default=(1280, 720), description="Camera resolution [width, height] in pixels."
    )
    inertia_frames: int = Field(
        default=3, ge=1, le=300, description="Frames a person must be inside (or outside) a zone before it counts."
    )

    @field_validator("resolution")
    @classmethod
    def _sane_resolution(cls, v: tuple[int, int]) -> tuple[int, int]:
        return check_resolution(v)


def check_resolution(v: tuple[int, int]) -> tuple[int, int]:
    w, h = v
    if not (160 <= w <= 7680 and 120 <= h <= 4320):
        raise ValueError(f"{w}x{h} is outside 160x120 .. 7680x4320; give [width, height] in pixels")
    return v
