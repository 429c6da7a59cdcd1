"""Cross-field checks: what no single section can see on its own.

Each check is a small generator of `(loc, message)` over a validated `SiteSpec`; `loc` uses
pydantic's convention (keys and list indices) so the loader maps it to file:line:col exactly
as it does field errors. Checks only report; they never change the spec.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .cameras import MAX_REPROJECTION_PX, PLAIN_CAMERA
from .root import SiteSpec

Loc = tuple[str | int, ...]
Issue = tuple[Loc, str]


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.7)
    return f"; did you mean '{close[0]}'?" if close else ""


def _unknown(kind: str, value: str, known) -> str:
    known = sorted(known)
    listing = f" (known: {', '.join(known)})" if known and len(known) <= 12 else ""
    return f"no {kind} '{value}'{did_you_mean(value, known) or listing}"


def unique_ids(spec: SiteSpec, ctx: "CheckContext") -> Iterator[Issue]:
    seen: dict[str, Loc] = {}
    for i, cam in enumerate(spec.cameras):
        if cam.id in seen:
            yield ("cameras", i, "id"), f"camera id '{cam.id}' is used twice; ids must be unique"
        seen[cam.id] = ("cameras", i, "id")
    for i, dev in enumerate(spec.devices):
        if dev.id in seen:
            yield ("devices", i, "id"), f"id '{dev.id}' is already a camera or device; device ids must be unique"
        seen[dev.id] = ("devices", i, "id")
    zones: set[str] = set()
    for i, cam in enumerate(spec.cameras):
        for j, zone in enumerate(cam.zones):
            if zone.id in zones:
                yield ("cameras", i, "zones", j, "id"), f"zone id '{zone.id}' is used twice; zone ids are site-wide"
            zones.add(zone.id)
    names: set[str] = set()
    for i, sit in enumerate(spec.situations):
        if sit.id in names:
            yield ("situations", i, "id"), f"situation id '{sit.id}' is used twice"
        names.add(sit.id)


def references(spec: SiteSpec, ctx: "CheckContext") -> Iterator[Issue]:
    cameras = {c.id for c in spec.cameras}
    devices = {d.id for d in spec.devices}
    zones = set(spec.zone_ids())

    def camera_refs(loc: Loc, ids):
        for k, cid in enumerate(ids or []):
            if cid not in cameras:
                yield (*loc, k), _unknown("camera", cid, cameras)

    for section in ("ppe", "actions"):
        for i, rule in enumerate(getattr(spec, section)):
            if rule.where != "everywhere":
                for k, zid in enumerate(rule.where):
                    if zid not in zones:
                        yield (section, i, "where", k), _unknown("zone", zid, zones)
            yield from camera_refs((section, i, "cameras"), rule.cameras)
    for i, rule in enumerate(spec.health):
        yield from camera_refs(("health", i, "cameras"), rule.cameras)
    for i, sit in enumerate(spec.situations):
        yield from camera_refs(("situations", i, "cameras"), sit.cameras)
    for i, dev in enumerate(spec.devices):
        yield from camera_refs(("devices", i, "cameras"), dev.cameras)
    for i, cam in enumerate(spec.cameras):
        if cam.edge is not None and cam.edge not in devices:
            yield ("cameras", i, "edge"), _unknown("device", cam.edge, devices) + "; declare it under `devices:`"
    imaged = devices | {c.id for c in spec.cameras}  # every camera is its own device too
    for i, sink in enumerate(spec.alerts.sinks):
        for dev_id in getattr(sink, "device_tokens", None) or {}:
            if dev_id not in imaged:
                yield ("alerts", "sinks", i, "device_tokens", dev_id), _unknown("device", dev_id, imaged)


def boards(spec: SiteSpec, ctx: "CheckContext") -> Iterator[Issue]:
    known = ctx.boards
    if known is None:
        return
    if spec.defaults.board is not None and spec.defaults.board not in known:
        yield ("defaults", "board"), _unknown("board", spec.defaults.board, known)
    for i, cam in enumerate(spec.cameras):
        if cam.board is not None and cam.board != PLAIN_CAMERA and cam.board not in known:
            yield ("cameras", i, "board"), _unknown("board", cam.board, known) + " (or `none` for a plain camera)"
    for i, dev in enumerate(spec.devices):
        if dev.board is not None and dev.board not in known:
            yield ("devices", i, "board"), _unknown("board", dev.board, known)


def edge_devices(spec: SiteSpec, ctx: "CheckContext") -> Iterator[Issue]:
    """Cameras on SoCs that cannot host the runtime need an edge device that can; device lists agree."""
    known = ctx.boards or {}
    device_of: dict[str, str] = {}
    for i, dev in enumerate(spec.devices):
        board = dev.board or spec.defaults.board
        if board in known and not known[board].hosts_runtime:
            yield ("devices", i, "board"), (
                f"board '{board}' cannot host the runtime, so it cannot serve cameras; "
                "use a board such as rk3588 or jetson-orin-nano"
            )
        for k, cid in enumerate(dev.cameras):
            if cid in device_of and device_of[cid] != dev.id:
                yield ("devices", i, "cameras", k), f"camera '{cid}' is already served by device '{device_of[cid]}'"
            device_of.setdefault(cid, dev.id)
    for i, cam in enumerate(spec.cameras):
        listed = device_of.get(cam.id)
        if cam.edge is not None and listed is not None and listed != cam.edge:
            yield ("cameras", i, "edge"), (
                f"camera names edge device '{cam.edge}' but device '{listed}' lists it; keep one of the two"
            )
        board = cam.board or spec.defaults.board
        if board == PLAIN_CAMERA and cam.edge is None and listed is None:
            yield ("cameras", i, "board"), (
                "a plain camera (`board: none`) needs an edge device to run its detector and analytics; "
                "name it with `edge: DEVICE`"
            )
        if board in known and not known[board].hosts_runtime and cam.edge is None and listed is None:
            hosts = sorted(d.id for d in spec.devices)
            yield ("cameras", i, "board"), (
                f"board '{board}' cannot host the runtime; name an edge device that runs this camera's analytics "
                f"with `edge: DEVICE`" + (f" (devices: {', '.join(hosts)})" if hosts else " and declare it under `devices:`")
            )


def calibration_needs(spec: SiteSpec, ctx: "CheckContext") -> Iterator[Issue]:
    for i, cam in enumerate(spec.cameras):
        res = cam.resolution or spec.defaults.resolution
        for j, zone in enumerate(cam.zones):
            if cam.calibration is None:
                if zone.needs_calibration:
                    yield ("cameras", i, "zones", j, zone.shape), (
                        f"`{zone.shape}` zones are in metres and need the camera's `calibration` "
                        "(>= 4 image<->ground point pairs); or draw the zone as a normalised `polygon`"
                    )
                elif zone.predict_entry is not None:
                    yield ("cameras", i, "zones", j, "predict_entry"), (
                        "predicted entry forecasts paths in metres and needs the camera's `calibration`"
                    )
        if cam.calibration is not None:
            w, h = res
            margin = MAX_REPROJECTION_PX
            for k, (u, v) in enumerate(cam.calibration.image):
                if not (-margin <= u <= w + margin and -margin <= v <= h + margin):
                    yield ("cameras", i, "calibration", "image", k), (
                        f"point [{u:g}, {v:g}] lies outside the {w}x{h} frame; calibration points are pixels at the "
                        "camera's resolution"
                    )


def files_exist(spec: SiteSpec, ctx: "CheckContext") -> Iterator[Issue]:
    if ctx.base_dir is None:
        return
    for i, cam in enumerate(spec.cameras):
        if cam.source_kind == "file":
            path = ctx.base_dir / cam.source[len("file:"):]
            if not path.is_file():
                yield ("cameras", i, "source"), f"no file at {path} (file: paths are relative to the spec's folder)"
    for task in ("detector",):
        choice = getattr(spec.models, task)
        if choice is not None and choice.custom is not None:
            path = ctx.base_dir / choice.custom.onnx
            if not path.is_file():
                yield ("models", task, "custom", "onnx"), f"no ONNX file at {path} (relative to the spec's folder)"


CHECKS: tuple[Callable[[SiteSpec, "CheckContext"], Iterator[Issue]], ...] = (
    unique_ids,
    references,
    boards,
    edge_devices,
    calibration_needs,
    files_exist,
)


class CheckContext:
    """What the checks may consult besides the spec: the board profiles and the spec's folder."""

    def __init__(self, boards: Mapping[str, Any] | None, base_dir: Path | None):
        self.boards = boards
        self.base_dir = base_dir


def run_checks(spec: SiteSpec, ctx: CheckContext) -> list[Issue]:
    return [issue for check in CHECKS for issue in check(spec, ctx)]
