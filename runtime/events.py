"""The event format: the one definition of what a device raises and every sink, the VMS and the
tests read. A frozen dataclass, JSON in and out (one line, UTF-8), stdlib only; OpenCV is imported
lazily by the snapshot helpers at the bottom.

Event ids
---------
An event's id is derived, never random, so that a device that restarts and raises the same thing
again within the same episode produces the same id, and a receiver that keys on the id stores it
once (the outbox also stores it once: the id is its unique key)::

    id = sha256("sitewarden-event-v1" US site US device US camera US rule US track US t_start_ms)
         .hexdigest()[:32]                                    # 128 bits, lower-case hex

where US is the unit separator ``\\x1f``, ``track`` is the decimal track id or empty, and
``t_start_ms`` is the episode's start time in whole milliseconds since the epoch (UTC), so float
noise in ``t_start`` cannot change the id. ``rule`` names the rule that raised the event (by
default ``"<type>:<zone>"``). The *episode* is the rule engine's: the time the condition began to
hold for that track (see :meth:`runtime.outbox.Outbox.episode_start`, which persists open
episodes so a restart finds the same start). Changing this scheme is a format change: bump
``sitewarden-event-v1`` and ``FORMAT_VERSION``.

Snapshots
---------
A snapshot is a JPEG stored beside the outbox, not inside the event; the event carries a
:class:`SnapshotRef` (file name, sha256, size). A sink that asks for it gets the bytes inline as
``snapshot.jpeg_base64`` in the JSON (:meth:`Event.to_json` with ``snapshot_jpeg=``). Heads are
blurred before a snapshot is stored (:func:`blur_heads`).
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import operator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

FORMAT_VERSION = 1
ID_SCHEME = "sitewarden-event-v1"
EVENT_TYPES = (
    "zone_intrusion",
    "zone_dwell",
    "predicted_entry",
    "ppe_violation",
    "posture",
    "camera_health",
    "model_switch",
)
SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


class EventError(ValueError):
    """An event or event JSON that does not fit the format; the message names the field."""


def event_id(site: str, device: str, camera: str, rule: str, track: int | None, t_start: float) -> str:
    """The stable id of an event (the scheme is in the module docstring)."""
    parts = (ID_SCHEME, site, device, camera, rule, "" if track is None else str(int(track)), str(epoch_ms(t_start)))
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def epoch_ms(t: float) -> int:
    return int(round(float(t) * 1000.0))


def iso_utc(t: float) -> str:
    """Epoch seconds -> ``2026-11-25T13:15:48.123Z``."""
    return datetime.fromtimestamp(epoch_ms(t) / 1000.0, timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def severity_at_least(severity: str, minimum: str) -> bool:
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[minimum]


@dataclass(frozen=True)
class SnapshotRef:
    """Where an event's JPEG lives: a file name in the outbox's snapshot folder, its sha256 and size."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Event:
    id: str
    type: str  # one of EVENT_TYPES
    site: str
    device: str
    camera: str
    rule: str  # the rule that raised it; part of the id
    t_start: float  # epoch seconds (UTC) the episode began; part of the id
    t_event: float  # epoch seconds (UTC) the event was raised
    severity: str  # info | warning | critical
    confidence: float  # 0..1
    zone: str | None = None
    track: int | None = None
    details: dict[str, Any] = field(default_factory=dict)  # time_to_entry_s, missing, posture, check, ...
    snapshot: SnapshotRef | None = None
    clip: str | None = None  # a reference (name or URL) to a clip kept elsewhere

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise EventError(f"type: '{self.type}' is not one of {', '.join(EVENT_TYPES)}")
        if self.severity not in SEVERITIES:
            raise EventError(f"severity: '{self.severity}' is not one of {', '.join(SEVERITIES)}")
        for name in ("id", "site", "device", "camera", "rule"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise EventError(f"{name}: expected a non-empty string")
        for name in ("t_start", "t_event", "confidence"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise EventError(f"{name}: expected a finite number")
        if not 0.0 <= self.confidence <= 1.0:
            raise EventError(f"confidence: {self.confidence} is not within 0..1")
        if self.track is not None and (isinstance(self.track, bool) or not isinstance(self.track, int)):
            raise EventError("track: expected an integer or null")
        for name in ("zone", "clip"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise EventError(f"{name}: expected a string or null")
        if not isinstance(self.details, dict):
            raise EventError("details: expected an object")

    @classmethod
    def create(
        cls, *, type: str, site: str, device: str, camera: str, t_start: float, severity: str,
        confidence: float = 1.0, t_event: float | None = None, rule: str | None = None, zone: str | None = None,
        track: int | None = None, details: dict[str, Any] | None = None, clip: str | None = None,
    ) -> "Event":
        """A new event with its id derived from (site, device, camera, rule, track, t_start)."""
        rule = rule or f"{type}:{zone or ''}"
        if track is not None:
            try:
                track = operator.index(track)  # int or numpy integer; never a str or float
            except TypeError:
                raise EventError("track: expected an integer or null") from None
        t_start = epoch_ms(t_start) / 1000.0
        return cls(
            id=event_id(site, device, camera, rule, track, t_start), type=type, site=site, device=device,
            camera=camera, rule=rule, t_start=t_start, t_event=t_start if t_event is None else float(t_event),
            severity=severity, confidence=float(confidence), zone=zone, track=track, details=dict(details or {}),
            clip=clip,
        )

    def with_snapshot(self, jpeg: bytes) -> "Event":
        """This event referring to `jpeg`, stored as ``<id>.jpg``."""
        return replace(self, snapshot=SnapshotRef(f"{self.id}.jpg", hashlib.sha256(jpeg).hexdigest(), len(jpeg)))

    @property
    def t_start_iso(self) -> str:
        return iso_utc(self.t_start)

    @property
    def t_event_iso(self) -> str:
        return iso_utc(self.t_event)

    def to_dict(self, snapshot_jpeg: bytes | None = None) -> dict[str, Any]:
        snap = None
        if self.snapshot is not None:
            snap = {"name": self.snapshot.name, "sha256": self.snapshot.sha256, "size": self.snapshot.size}
            if snapshot_jpeg is not None:
                snap["jpeg_base64"] = base64.b64encode(snapshot_jpeg).decode("ascii")
        return {
            "format": FORMAT_VERSION, "id": self.id, "type": self.type, "site": self.site, "device": self.device,
            "camera": self.camera, "rule": self.rule, "zone": self.zone, "track": self.track,
            "t_start": self.t_start_iso, "t_start_epoch": self.t_start,
            "t_event": self.t_event_iso, "t_event_epoch": self.t_event,
            "severity": self.severity, "confidence": self.confidence, "details": self.details,
            "snapshot": snap, "clip": self.clip,
        }

    def to_json(self, snapshot_jpeg: bytes | None = None) -> bytes:
        """One line of UTF-8 JSON (no newline). With `snapshot_jpeg`, the JPEG rides along in base64."""
        try:
            return json.dumps(self.to_dict(snapshot_jpeg), sort_keys=True, ensure_ascii=False,
                              separators=(",", ":"), allow_nan=False, default=_plain).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise EventError(f"details: {e}") from None

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Event":
        """Parse :meth:`to_json` output. Unknown top-level keys are ignored (newer senders)."""
        try:
            d = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise EventError(f"event is not JSON: {e}") from None
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: Any) -> "Event":
        if not isinstance(d, dict):
            raise EventError("event: expected an object")
        if d.get("format") != FORMAT_VERSION:
            raise EventError(f"format: {d.get('format')!r} is not {FORMAT_VERSION}")
        missing = [k for k in ("id", "type", "site", "device", "camera", "rule", "t_start_epoch", "t_event_epoch",
                               "severity", "confidence") if k not in d]
        if missing:
            raise EventError(f"event: missing {', '.join(missing)}")
        snap = d.get("snapshot")
        if snap is not None:
            if not isinstance(snap, dict) or not {"name", "sha256", "size"} <= set(snap):
                raise EventError("snapshot: expected {name, sha256, size}")
            snap = SnapshotRef(str(snap["name"]), str(snap["sha256"]), int(snap["size"]))
        return cls(
            id=d["id"], type=d["type"], site=d["site"], device=d["device"], camera=d["camera"], rule=d["rule"],
            t_start=d["t_start_epoch"], t_event=d["t_event_epoch"], severity=d["severity"],
            confidence=d["confidence"], zone=d.get("zone"), track=d.get("track"), details=d.get("details") or {},
            snapshot=snap, clip=d.get("clip"),
        )


def _plain(value: Any) -> Any:
    """numpy scalars and arrays in `details` (the runtime's numbers often are) as plain JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def snapshot_from_json(raw: bytes | str) -> bytes | None:
    """The inline JPEG of an event's JSON, checked against its sha256; None when not inline."""
    snap = json.loads(raw).get("snapshot") or {}
    if "jpeg_base64" not in snap:
        return None
    jpeg = base64.b64decode(snap["jpeg_base64"], validate=True)
    if hashlib.sha256(jpeg).hexdigest() != snap.get("sha256"):
        raise EventError("snapshot: jpeg_base64 does not match its sha256")
    return jpeg


# --- snapshots: privacy blur and JPEG encoding (OpenCV imported only here) -------------------------


def blur_heads(image, head_boxes, *, pad: float = 0.2):
    """A copy of `image` (H x W x C uint8) with each head box (x1, y1, x2, y2 pixels) blurred.

    Each box grows by `pad` of its size on every side (hair, ears, a hard hat's brim) and is clipped
    to the image; the region gets a Gaussian blur whose kernel is about the box's size, strong
    enough that a face is not recognisable. The input is not changed.
    """
    import cv2
    import numpy as np

    out = np.array(image, copy=True)
    h, w = out.shape[:2]
    for box in head_boxes:
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        bw, bh = x2 - x1, y2 - y1
        if not (bw > 0 and bh > 0):
            continue
        x1, x2 = max(0, int(math.floor(x1 - pad * bw))), min(w, int(math.ceil(x2 + pad * bw)))
        y1, y2 = max(0, int(math.floor(y1 - pad * bh))), min(h, int(math.ceil(y2 + pad * bh)))
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        k = max(3, (max(x2 - x1, y2 - y1) // 2) | 1)  # odd kernel about half the region
        region = out[y1:y2, x1:x2]
        out[y1:y2, x1:x2] = cv2.GaussianBlur(region, (k, k), sigmaX=k / 3.0, borderType=cv2.BORDER_REPLICATE)
    return out


def encode_jpeg(image, quality: int = 85) -> bytes:
    """JPEG bytes of a BGR (or grey) uint8 image."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise EventError("snapshot: JPEG encoding failed")
    return buf.tobytes()


def snapshot_jpeg(image, head_boxes=(), quality: int = 85) -> bytes:
    """The snapshot the runtime attaches to an event: heads blurred, then JPEG."""
    return encode_jpeg(blur_heads(image, head_boxes) if len(head_boxes) else image, quality)
