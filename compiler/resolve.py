"""Resolve: a validated spec + one device -> that device's runtime config.

Defaults are merged into each camera here, once; zones are converted to pixels and to ground
metres through the calibration's homography; rules, sinks and situations become the runtime's
plain dataclasses. Nothing here validates: the spec already passed its checks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.config import (
    ActionRuleConfig, CameraConfig, ClipConfig, HealthRuleConfig, ModelConfig, PPERuleConfig, RuntimeConfig,
    SinkConfig, SituationConfig, ZoneConfig,
)
from runtime.geometry import apply, solve_homography

from .devices import DeviceRole
from .spec.base import parse_hhmm
from .spec.cameras import Camera
from .spec.root import SiteSpec
from .spec.zones import Zone


def camera_resolution(spec: SiteSpec, cam: Camera) -> tuple[int, int]:
    return tuple(cam.resolution or spec.defaults.resolution)


def camera_fps(spec: SiteSpec, cam: Camera) -> float:
    return float(cam.fps or spec.defaults.fps)


def homography(cam: Camera) -> np.ndarray | None:
    if cam.calibration is None:
        return None
    return solve_homography(cam.calibration.image, cam.calibration.ground).matrix


def _pts(a) -> tuple[tuple[float, float], ...]:
    return tuple((round(float(x), 4), round(float(y), 4)) for x, y in np.asarray(a, dtype=float).reshape(-1, 2))


def resolve_zone(spec: SiteSpec, cam: Camera, zone: Zone) -> ZoneConfig:
    w, h = camera_resolution(spec, cam)
    H = homography(cam)
    px = m = None
    if zone.polygon is not None:
        px = np.asarray(zone.polygon, dtype=float) * [w, h]
        m = apply(H, px) if H is not None else None
    elif zone.ground is not None:
        m = np.asarray(zone.ground, dtype=float)
        px = apply(np.linalg.inv(H), m)
    pe = zone.predict_entry
    return ZoneConfig(
        id=zone.id, kind=zone.kind, shape=zone.shape, severity=zone.severity,
        inertia_frames=zone.inertia_frames or spec.defaults.inertia_frames, dwell_s=zone.dwell_s,
        polygon_px=_pts(px) if px is not None else None, polygon_m=_pts(m) if m is not None else None,
        around_class=zone.around.cls if zone.around else None, radius_m=zone.around.radius_m if zone.around else None,
        predict_horizon_s=pe.horizon_s if pe else None, predict_min_speed_mps=pe.min_speed_mps if pe else 0.2,
    )


def resolve_source(source: str, spec_dir: Path | None) -> str:
    """`file:` paths are relative to the spec; in an image they become absolute host paths (a file
    source is a replay on the machine that built the image)."""
    if spec_dir is None or not source.startswith("file:") or Path(source[5:]).is_absolute():
        return source
    return "file:" + str((Path(spec_dir) / source[5:]).resolve())


def resolve_camera(spec: SiteSpec, cam: Camera, detect_here: bool, spec_dir: Path | None = None) -> CameraConfig:
    H = homography(cam)
    return CameraConfig(
        id=cam.id, source=resolve_source(cam.source, spec_dir), resolution=camera_resolution(spec, cam), fps=camera_fps(spec, cam),
        homography=tuple(tuple(float(v) for v in row) for row in (H / H[2, 2])) if H is not None else None,
        zones=tuple(resolve_zone(spec, cam, z) for z in cam.zones), detect_here=detect_here,
    )


def _ids(v) -> tuple[str, ...]:
    return () if v in (None, "everywhere") else tuple(v)


def _sink(sink, device: str) -> SinkConfig:
    data = sink.model_dump(exclude_none=True)
    events, min_sev = tuple(data.pop("events", ()) or ()), data.pop("min_severity")
    tokens = data.pop("device_tokens", None) or {}
    if device in tokens:  # only this device's own token enters its image
        data["token"] = tokens[device]
    kind = next(k for k in ("http", "mqtt", "file", "alarm") if k in data)
    if kind == "alarm":
        action = data.pop("alarm")
        data.update(action)
    else:
        data["target"] = data.pop(kind)
    return SinkConfig(kind=kind, params=data, events=events, min_severity=min_sev)


def _situation(s) -> SituationConfig:
    sched = s.when.schedule
    ranges = [] if sched is None else ([sched] if isinstance(sched, str) else sched)
    variants = {t: getattr(s.models, t).variant for t in ("detector", "ppe", "pose")
                if getattr(s.models, t) is not None and getattr(s.models, t).variant}
    prefer = s.models.prefer or next((getattr(s.models, t).prefer for t in ("detector", "ppe", "pose")
                                      if getattr(s.models, t) is not None and getattr(s.models, t).prefer), None)
    return SituationConfig(
        id=s.id, schedule=tuple((parse_hhmm(r.split("-")[0]), parse_hhmm(r.split("-")[1])) for r in ranges),
        brightness_below=s.when.brightness_below, flag=s.when.flag, prefer=prefer, variants=variants,
        cameras=_ids(s.cameras),
    )


def resolve_device(
    spec: SiteSpec, device: DeviceRole, models: dict[str, tuple[ModelConfig, ...]], threads: int,
    spec_dir: Path | None = None,
) -> RuntimeConfig:
    """The runtime config of one device. `models` comes from the planner (task -> tiers, best first)."""
    cams = [c for c in spec.cameras if c.id in device.cameras]
    analytics = device.role != "camera-detector"
    cooldown = spec.alerts.cooldown_s
    return RuntimeConfig(
        site=spec.site.name, timezone=spec.site.timezone, device=device.id, role=device.role, board=device.board,
        threads=threads,
        cameras=tuple(resolve_camera(spec, c, detect_here=c.id in device.detects_for, spec_dir=spec_dir) for c in cams),
        models=models,
        ppe=tuple(
            PPERuleConfig(require=tuple(r.require), zones=_ids(r.where), cameras=_ids(r.cameras), grace_s=r.grace_s,
                          severity=r.severity, cooldown_s=r.cooldown_s if r.cooldown_s is not None else cooldown)
            for r in spec.ppe
        ) if analytics else (),
        actions=tuple(
            ActionRuleConfig(postures=tuple(r.detect), zones=_ids(r.where), cameras=_ids(r.cameras),
                             min_duration_s=r.min_duration_s, severity=r.severity,
                             cooldown_s=r.cooldown_s if r.cooldown_s is not None else cooldown)
            for r in spec.actions
        ) if analytics else (),
        health=tuple(
            HealthRuleConfig(checks=tuple(r.detect), cameras=_ids(r.cameras), after_s=r.after_s, severity=r.severity)
            for r in spec.health
        ),
        sinks=tuple(_sink(s, device.id) for s in spec.alerts.sinks),
        situations=tuple(_situation(s) for s in spec.situations),
        cooldown_s=cooldown,
        clips=_clips(spec.alerts.clips),
        min_confidence=spec.alerts.min_confidence,
    )


def _clips(c) -> ClipConfig:
    if c is None:
        return ClipConfig()
    return ClipConfig(enabled=c.enabled, pre_s=c.pre_s, post_s=c.post_s, max_mb=c.max_mb, min_severity=c.min_severity)
