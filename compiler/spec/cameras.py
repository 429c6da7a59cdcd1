"""Cameras: where frames come from, how pixels map to the ground, and the zones they watch."""
from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from runtime.geometry import CalibrationError, solve_homography

from .base import Id, Point2, SpecModel
from .site import check_resolution
from .zones import Zone

_SOURCE = re.compile(r"^(rtsps?://\S+|file:\S.*|usb:\d{1,2}|sim:[a-z0-9][a-z0-9_-]*)$")
SOURCE_KINDS = ("rtsp://", "file:", "usb:N", "sim:SCENE")
PLAIN_CAMERA = "none"  # `board: none`: a plain IP camera whose edge device also runs its detector

# A calibration whose homography is this ill-conditioned (after normalisation) is rejected.
MAX_CONDITION = 1e6
# ...and one that cannot reproduce its own points to within this many pixels.
MAX_REPROJECTION_PX = 5.0


def source_kind(source: str) -> str:
    """'rtsp', 'file', 'usb' or 'sim'."""
    return "rtsp" if source.startswith("rtsp") else source.split(":", 1)[0]


class Calibration(SpecModel):
    """Four or more image points and where they lie on the ground; gives the homography."""

    image: list[Point2] = Field(description="Image points [u, v] in pixels, at the camera's resolution.")
    ground: list[Point2] = Field(description="The same points on the ground [x, y] in metres, in the same order.")

    @model_validator(mode="after")
    def _solvable(self):
        if len(self.image) != len(self.ground):
            raise ValueError(f"{len(self.image)} image points but {len(self.ground)} ground points; give them in pairs")
        if len(self.image) < 4:
            raise ValueError(f"{len(self.image)} point pairs; a calibration needs at least 4 image<->ground pairs")
        try:
            h = solve_homography(self.image, self.ground, max_condition=MAX_CONDITION)
        except CalibrationError as e:
            raise ValueError(str(e)) from None
        if h.reprojection_px > MAX_REPROJECTION_PX:
            raise ValueError(
                f"the points disagree with any single ground plane (reprojection error {h.reprojection_px:.1f} px "
                f"> {MAX_REPROJECTION_PX:g}); check each pair or measure them again"
            )
        return self


class Camera(SpecModel):
    """One camera: its source, its SoC, its calibration and the zones drawn on it."""

    id: Id = Field(description="Camera id, unique across the site.")
    board: str | None = Field(
        default=None, description="The camera's own SoC when it is an AI camera (board id; default from `defaults`), "
        "or `none` for a plain IP camera whose edge device runs the detector too.",
    )
    source: str = Field(
        description="Where frames come from: rtsp://..., file:PATH (relative to the spec), usb:N or sim:SCENE."
    )
    resolution: tuple[int, int] | None = Field(
        default=None, description="Frame size [width, height] in pixels; default from `defaults`."
    )
    fps: float | None = Field(default=None, ge=0.5, le=60, description="Frames per second to analyse; default from `defaults`.")
    calibration: Calibration | None = Field(
        default=None, description="Image<->ground point pairs; needed for ground zones, machine radii and forecasts."
    )
    edge: Id | None = Field(
        default=None,
        description="Id of the edge device that runs this camera's analytics (required when the camera's board "
        "cannot host the runtime).",
    )
    zones: list[Zone] = Field(default_factory=list, description="Zones drawn on this camera's view.")
    description: str | None = Field(default=None, description="Free text: where it hangs, what it looks at.")

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        v = v.strip()
        if not _SOURCE.match(v):
            raise ValueError(f"'{v}' is not a source; use one of {', '.join(SOURCE_KINDS)}")
        return v

    @field_validator("resolution")
    @classmethod
    def _sane_resolution(cls, v):
        return None if v is None else check_resolution(v)

    @property
    def source_kind(self) -> str:
        return source_kind(self.source)
