"""Zones: where people must not be, or must wear PPE.

A zone's shape is exactly one of: `polygon` (normalised image coordinates, 0..1), `ground`
(metres on the site plan; needs the camera's calibration) or `around` (a radius in metres around
a tracked machine; needs calibration too).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from runtime.geometry import polygon_area, polygon_self_intersection

from .base import Id, Point2, SpecModel

ZoneKind = Literal["danger", "restricted", "walkway", "work"]


def check_polygon(points: list[tuple[float, float]], *, normalised: bool) -> list[tuple[float, float]]:
    if len(points) < 3:
        raise ValueError(f"a polygon needs at least 3 vertices, got {len(points)}; list the corners as [[x, y], ...]")
    if normalised:
        outside = [i for i, (x, y) in enumerate(points) if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0)]
        if outside:
            i = outside[0]
            raise ValueError(
                f"vertex {i} {list(points[i])} lies outside the frame; normalised coordinates run from 0 to 1 "
                "(use `ground:` for metres)"
            )
    crossing = polygon_self_intersection(points)
    if crossing is not None:
        a, b = crossing
        raise ValueError(
            f"the polygon crosses itself (edge {a}->{(a + 1) % len(points)} meets edge {b}->{(b + 1) % len(points)}); "
            "list the vertices in order around the zone"
        )
    if polygon_area(points) <= (1e-6 if normalised else 1e-3):
        raise ValueError("the polygon has no area; its vertices are (nearly) on one line")
    return points


class PredictEntry(SpecModel):
    """Warn before entry, from each person's forecast (the bundled forecaster's probability of entering; CV for short tracks)."""

    horizon_s: float = Field(
        default=3.0, gt=0, le=10,
        description="Warn when the forecast puts a person inside the zone within this many seconds (the forecaster's "
        "tuned rule may look less far ahead).",
    )
    min_speed_mps: float = Field(
        default=0.2, ge=0, le=5, description="Ignore people moving slower than this (standing still is not approaching)."
    )


class Around(SpecModel):
    """A circle around a tracked machine, moving with it."""

    cls: Literal["machine"] = Field(
        default="machine", alias="class", description="Tracked class the zone follows (the detector's machine class)."
    )
    radius_m: float = Field(gt=0, le=100, description="Radius of the zone around the machine's ground position, metres.")


class Zone(SpecModel):
    """An area of one camera's view; exactly one of polygon, ground or around gives its shape."""

    id: Id = Field(description="Zone id, unique across the site; rules refer to it.")
    kind: ZoneKind = Field(
        description="danger and restricted raise intrusion events; walkway and work areas are where PPE rules can apply."
    )
    polygon: list[Point2] | None = Field(
        default=None, description="Vertices in normalised image coordinates [x, y], 0..1, from the top-left corner."
    )
    ground: list[Point2] | None = Field(
        default=None, description="Vertices in ground metres of the camera's calibration frame (needs `calibration`)."
    )
    around: Around | None = Field(
        default=None, description="A circle that moves with a tracked machine (needs `calibration`)."
    )
    inertia_frames: int | None = Field(
        default=None, ge=1, le=300, description="Frames inside (or outside) before presence changes; default from `defaults`."
    )
    dwell_s: float = Field(
        default=0.0, ge=0, le=86400, description="Raise a dwell event when someone stays longer than this (0: off)."
    )
    predict_entry: PredictEntry | None = Field(
        default=None, description="Warn before a person enters, from their forecast path."
    )
    severity: Literal["info", "warning", "critical"] = Field(
        default="critical", description="Severity of this zone's intrusion events."
    )

    @field_validator("polygon")
    @classmethod
    def _image_polygon(cls, v):
        return None if v is None else check_polygon(v, normalised=True)

    @field_validator("ground")
    @classmethod
    def _ground_polygon(cls, v):
        return None if v is None else check_polygon(v, normalised=False)

    @model_validator(mode="after")
    def _one_shape(self):
        given = [k for k in ("polygon", "ground", "around") if getattr(self, k) is not None]
        if len(given) != 1:
            have = ", ".join(given) if given else "none"
            raise ValueError(f"give exactly one shape of polygon, ground or around (have: {have})")
        return self

    @property
    def shape(self) -> str:
        return "polygon" if self.polygon is not None else "ground" if self.ground is not None else "around"

    @property
    def needs_calibration(self) -> bool:
        return self.polygon is None
