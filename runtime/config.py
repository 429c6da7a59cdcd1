"""The runtime config (`config.json` in an image): the one definition of what the compiler
resolves a spec into and what the runtime reads. Plain frozen dataclasses; JSON in and out.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

CONFIG_VERSION = 1


class ConfigError(ValueError):
    """A config.json the runtime cannot use; the message names the field."""


@dataclass(frozen=True)
class ZoneConfig:
    id: str
    kind: str  # danger | restricted | walkway | work
    shape: str  # polygon | ground | around
    severity: str
    inertia_frames: int
    dwell_s: float = 0.0
    polygon_px: tuple[tuple[float, float], ...] | None = None  # image pixels at the camera's resolution
    polygon_m: tuple[tuple[float, float], ...] | None = None  # ground metres (calibrated cameras)
    around_class: str | None = None  # machine-following zones: the class they follow
    radius_m: float | None = None
    predict_horizon_s: float | None = None  # predicted entry on when set
    predict_min_speed_mps: float = 0.2


@dataclass(frozen=True)
class CameraConfig:
    id: str
    source: str
    resolution: tuple[int, int]
    fps: float
    homography: tuple[tuple[float, float, float], ...] | None = None  # image px -> ground m
    zones: tuple[ZoneConfig, ...] = ()
    detect_here: bool = True  # False: detections arrive from the camera's own SoC


@dataclass(frozen=True)
class PPERuleConfig:
    require: tuple[str, ...]
    zones: tuple[str, ...] = ()  # empty: everywhere
    cameras: tuple[str, ...] = ()  # empty: all
    grace_s: float = 2.0
    severity: str = "warning"
    cooldown_s: float = 30.0


@dataclass(frozen=True)
class ActionRuleConfig:
    postures: tuple[str, ...]
    zones: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()
    min_duration_s: float = 1.0
    severity: str = "critical"
    cooldown_s: float = 30.0


@dataclass(frozen=True)
class HealthRuleConfig:
    checks: tuple[str, ...]
    cameras: tuple[str, ...] = ()
    after_s: float = 10.0
    severity: str = "warning"


@dataclass(frozen=True)
class SinkConfig:
    kind: str  # http | mqtt | file | alarm
    params: dict[str, Any] = field(default_factory=dict)  # url, token, topic, path, command, gpio, hold_s, ...
    events: tuple[str, ...] = ()  # empty: all
    min_severity: str = "info"


@dataclass(frozen=True)
class ClipConfig:
    """Event clips (runtime/clips.py): a ring of the last `pre_s` seconds per camera (JPEG frames),
    and for each alert a clip from `pre_s` before to `post_s` after it under STATE/clips/."""

    enabled: bool = False
    pre_s: float = 5.0
    post_s: float = 5.0
    max_mb: float = 256.0  # all clips on disk together; oldest (uploaded first) deleted beyond it
    min_severity: str = "warning"  # events below this get no clip (model switches never do)
    jpeg_quality: int = 80  # of the ring's frames
    max_clip_s: float = 60.0  # events inside an open clip's window share (and extend) it up to this length


@dataclass(frozen=True)
class SituationConfig:
    id: str
    schedule: tuple[tuple[int, int], ...] = ()  # (start, end) minutes after local midnight; may wrap
    brightness_below: float | None = None
    flag: str | None = None
    prefer: str | None = None
    variants: dict[str, str] = field(default_factory=dict)  # task -> variant id while it holds
    cameras: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    task: str
    variant: str
    file: str  # path inside the image
    sha256: str
    decoder: str
    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]
    preprocess: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ("any",)
    precision: str = "int8"
    est_latency_ms: float | None = None


@dataclass(frozen=True)
class RuntimeConfig:
    site: str
    timezone: str
    device: str
    role: str  # camera | camera-detector | edge
    board: str
    threads: int
    cameras: tuple[CameraConfig, ...]
    models: dict[str, tuple[ModelConfig, ...]]  # task -> tiers, best first
    ppe: tuple[PPERuleConfig, ...] = ()
    actions: tuple[ActionRuleConfig, ...] = ()
    health: tuple[HealthRuleConfig, ...] = ()
    sinks: tuple[SinkConfig, ...] = ()
    situations: tuple[SituationConfig, ...] = ()
    cooldown_s: float = 30.0
    clips: ClipConfig = field(default_factory=ClipConfig)
    min_confidence: float = 0.0  # rules see a track once its smoothed detection confidence reaches this
    version: int = CONFIG_VERSION

    def to_json(self) -> bytes:
        return (json.dumps(dataclasses.asdict(self), sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> "RuntimeConfig":
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError(f"config.json is not JSON: {e}") from None
        if not isinstance(data, dict) or data.get("version") != CONFIG_VERSION:
            raise ConfigError(f"config version {data.get('version') if isinstance(data, dict) else None!r} is not {CONFIG_VERSION}")
        return _build(cls, data, "config")


def _build(tp, value, where: str):
    """Rebuild typed dataclasses from JSON data, naming the field that does not fit."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = _build(hints[f.name], value[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}.{f.name}: missing")
        unknown = set(value) - {f.name for f in dataclasses.fields(tp)}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        return tp(**kwargs)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} items")
        return tuple(_build(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object")
        return {str(k): _build(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number")
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}")
        return value
    return value
