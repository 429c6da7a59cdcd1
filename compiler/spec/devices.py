"""Edge devices: boxes that run the analytics for one or more cameras."""
from __future__ import annotations

from pydantic import Field

from .base import Id, SpecModel


class Device(SpecModel):
    """An edge box on a board that hosts the runtime."""

    id: Id = Field(description="Device id, unique across the site (cameras name it in `edge:`).")
    board: str | None = Field(default=None, description="The device's board id; default from `defaults`.")
    cameras: list[Id] = Field(
        default_factory=list, description="Cameras whose analytics it runs (cameras may instead name it in `edge:`)."
    )
    description: str | None = Field(default=None, description="Free text: where it is mounted.")
