"""Which boxes a spec describes, and what each one runs.

By default each camera is its own device on its board (an AI camera that detects and runs the
analytics). A spec may add edge devices that run the analytics for several cameras; a camera
served by one either keeps its own detector (an AI camera: the camera + edge split of the
published system) or is a plain camera (`board: none`) the edge device also detects for.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .spec.cameras import PLAIN_CAMERA
from .spec.root import SiteSpec

Role = Literal["camera", "camera-detector", "edge"]


@dataclass(frozen=True)
class DeviceRole:
    id: str  # device id: the camera id for cameras, the device id for edge boxes
    board: str
    role: Role  # camera: detects + analytics; camera-detector: detects only; edge: analytics for `cameras`
    cameras: tuple[str, ...]  # cameras whose frames or detections it handles
    detects_for: tuple[str, ...]  # cameras whose detector runs on this device

    def describe(self) -> str:
        if self.role == "camera":
            return "AI camera: detection and analytics"
        if self.role == "camera-detector":
            return "AI camera: detection only; analytics on its edge device"
        detects = f", detection for {', '.join(self.detects_for)}" if self.detects_for else ""
        return f"edge device: analytics for {', '.join(self.cameras)}{detects}"


def serving_device(spec: SiteSpec) -> dict[str, str]:
    """camera id -> id of the edge device that runs its analytics (cameras without one are absent)."""
    out = {cid: dev.id for dev in spec.devices for cid in dev.cameras}
    out.update({c.id: c.edge for c in spec.cameras if c.edge is not None})
    return out


def device_roles(spec: SiteSpec, default_board: str | None = None) -> list[DeviceRole]:
    """Every device of the spec, with boards filled in from `defaults` and then `default_board`."""
    fallback = spec.defaults.board or default_board or ""
    served = serving_device(spec)
    roles: list[DeviceRole] = []
    for dev in spec.devices:
        cams = tuple(c.id for c in spec.cameras if served.get(c.id) == dev.id)
        plain = tuple(c.id for c in spec.cameras if c.id in cams and c.board == PLAIN_CAMERA)
        roles.append(DeviceRole(dev.id, dev.board or fallback, "edge", cams, plain))
    for cam in spec.cameras:
        board = cam.board or fallback
        if board == PLAIN_CAMERA:
            continue
        role: Role = "camera-detector" if cam.id in served else "camera"
        roles.append(DeviceRole(cam.id, board, role, (cam.id,), (cam.id,)))
    return roles


def devices_on_board(spec: SiteSpec, board: str) -> list[DeviceRole]:
    return [d for d in device_roles(spec, board) if d.board == board]
