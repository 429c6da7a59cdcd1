"""The rules engine: tracked people (and machines) per frame -> alerts.

One `CameraRules` per camera. Each frame it gets the tracked people with what the models said
about them (ground position, PPE probabilities, posture, forecast path) and the tracked machines,
and returns `Alert`s: zone intrusion (bottom-centre of the box, with inertia frames), dwell,
machine-following zones, PPE-in-zone with a grace period, postures held for a minimum time,
predicted entry (warn before entry, with time to entry), each with a per-rule, per-person
cooldown. The pipeline turns alerts into events (stable ids come from the episode start).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .config import CameraConfig, RuntimeConfig, ZoneConfig
from dataclasses import replace

from .forecast import EntryRule, EntryWarner, entry_times, mode_entry_times
from .geometry import points_in_polygon

PPE_PRESENT = 0.5  # smoothed probability at or above which an item counts as worn
CONFIDENCE_SMOOTHING = 0.3  # EMA weight of the newest detection confidence (alerts.min_confidence)
PPE_SMOOTHING = 0.3  # EMA weight of the newest frame (about 3 frames of memory at 10 fps)
TRACK_FORGET_S = 5.0  # a person unseen this long leaves every zone (their track is gone)


@dataclass
class Person:
    """One tracked person in one frame, with what the models said."""

    track: int
    box: np.ndarray  # xyxy px
    confidence: float = 1.0
    ground: np.ndarray | None = None  # metres (calibrated cameras)
    ppe: dict[str, float] = field(default_factory=dict)  # item -> probability worn
    posture: str | None = None
    posture_confidence: float = 0.0
    forecast: np.ndarray | None = None  # (T, 2) ground metres, T steps of forecast_dt after now
    forecast_dt: float = 0.4
    forecast_kind: str = "cv"  # "model" (the bundled forecaster) or "cv" (constant-velocity fallback)
    forecast_modes: np.ndarray | None = None  # (K, T, 2) a multi-modal forecaster's alternative paths
    forecast_probs: np.ndarray | None = None  # (K,) their probabilities
    speed_mps: float | None = None

    @property
    def foot(self) -> np.ndarray:
        x1, _, x2, y2 = self.box
        return np.array([(x1 + x2) / 2.0, y2])


@dataclass
class Machine:
    track: int
    box: np.ndarray
    ground: np.ndarray | None = None


@dataclass(frozen=True)
class Alert:
    type: str  # zone_intrusion | zone_dwell | predicted_entry | ppe_violation | posture
    rule: str  # stable rule key: "<type>:<zone or rule index>"
    severity: str
    track: int
    t_start: float  # when the condition began (episode start)
    confidence: float
    zone: str | None = None
    details: dict = field(default_factory=dict)


class _Presence:
    """Inertia: the state flips only after `frames` consecutive frames that disagree with it."""

    __slots__ = ("inside", "count", "since")

    def __init__(self):
        self.inside = False
        self.count = 0
        self.since = 0.0

    def update(self, raw: bool, frames: int, t: float) -> bool | None:
        """New raw observation; returns True on entry, False on exit, None otherwise."""
        if raw == self.inside:
            self.count = 0
            return None
        self.count += 1
        if self.count >= frames:
            self.inside, self.count, self.since = raw, 0, t
            return raw
        return None


class CameraRules:
    def __init__(self, config: RuntimeConfig, camera: CameraConfig,
                 episode_start: Callable[[str, float, float], float] | None = None,
                 entry_rules: dict[str, EntryRule] | None = None):
        self.config = config
        self.camera = camera
        self.zones: dict[str, ZoneConfig] = {z.id: z for z in camera.zones}
        self.ppe = [r for r in config.ppe if not r.cameras or camera.id in r.cameras]
        self.actions = [r for r in config.actions if not r.cameras or camera.id in r.cameras]
        self._presence: dict[tuple[str, int], _Presence] = {}
        self._dwelled: set[tuple[str, int]] = set()
        self._ppe_smooth: dict[tuple[int, str], float] = {}
        self._missing_since: dict[tuple[int, int], float] = {}
        self._posture_since: dict[tuple[int, int], tuple[str, float]] = {}
        self._last_alert: dict[tuple[str, int], float] = {}
        self._last_seen: dict[int, float] = {}
        self._episode_start = episode_start or (lambda key, t, gap: t)
        # predicted-entry warning rules per forecast kind, tuned on validation data (the trajectory
        # card records them); without them a forecast warns as soon as it enters within the zone's horizon
        self._warners: dict[tuple[str, str], EntryWarner] = {}
        self._entry_rules = dict(entry_rules or {})
        self._polygons: dict[tuple[str, str], np.ndarray] = {}
        self._confidence: dict[int, float] = {}   # smoothed detection confidence per track

    # -- helpers -----------------------------------------------------------------------------
    def _cooldown_ok(self, rule: str, track: int, t: float, cooldown: float) -> bool:
        last = self._last_alert.get((rule, track))
        if last is not None and t - last < cooldown:
            return False
        self._last_alert[(rule, track)] = t
        return True

    def _alert(self, out: list, t: float, cooldown: float, **kw) -> None:
        if not self._cooldown_ok(kw["rule"], kw["track"], t, cooldown):
            return
        key = f"{self.camera.id}|{kw['rule']}|{kw['track']}"
        start = self._episode_start(key, kw.pop("since", t), max(cooldown, 1.0))
        out.append(Alert(t_start=start, **kw))

    def _polygon(self, zone: ZoneConfig, frame: str) -> np.ndarray:
        key = (zone.id, frame)
        if key not in self._polygons:
            self._polygons[key] = np.asarray(zone.polygon_px if frame == "px" else zone.polygon_m, np.float64)
        return self._polygons[key]

    def _raw_inside(self, people: list[Person], machines: list[Machine]) -> dict[str, list[tuple[bool, int | None]]]:
        """Per zone, per person (in order): inside by the box's bottom-centre (image zones, one
        vectorised test for everyone) or within the radius of a machine ("around" zones), and
        which machine."""
        out: dict[str, list[tuple[bool, int | None]]] = {}
        feet = np.asarray([p.foot for p in people], np.float64).reshape(-1, 2)
        for zone in self.zones.values():
            if zone.shape == "around":
                row = []
                for p in people:
                    hit = None
                    if p.ground is not None:
                        hit = next((m.track for m in machines if m.ground is not None
                                    and np.hypot(*(p.ground - m.ground)) <= (zone.radius_m or 0.0)), None)
                    row.append((hit is not None, hit))
                out[zone.id] = row
            elif zone.polygon_px is None or not len(people):
                out[zone.id] = [(False, None)] * len(people)
            else:
                out[zone.id] = [(bool(v), None) for v in points_in_polygon(feet, self._polygon(zone, "px"))]
        return out

    def inside(self, zone_id: str, track: int) -> bool:
        s = self._presence.get((zone_id, track))
        return bool(s and s.inside)

    # -- the verb ----------------------------------------------------------------------------
    def update(self, t: float, people: list[Person], machines: list[Machine] = ()) -> list[Alert]:
        out: list[Alert] = []
        machines = list(machines)
        cooldown = self.config.cooldown_s
        seen = {p.track for p in people}
        for p in people:
            self._last_seen[p.track] = t
        # people gone for a while leave every zone and lose their timers
        for track, last in list(self._last_seen.items()):
            if track not in seen and t - last > TRACK_FORGET_S:
                self._forget(track)
        people = self._confident(people)

        inside_now = self._raw_inside(people, machines)
        entries = self._entry_decisions(people)
        for i, p in enumerate(people):
            for zone in self.zones.values():
                raw, machine = inside_now[zone.id][i]
                state = self._presence.setdefault((zone.id, p.track), _Presence())
                change = state.update(raw, zone.inertia_frames, t)
                if change is True and zone.kind in ("danger", "restricted"):
                    details = {"kind": zone.kind, "shape": zone.shape}
                    if machine is not None:
                        details["machine_track"] = int(machine)
                    self._alert(out, t, cooldown, type="zone_intrusion", rule=f"zone_intrusion:{zone.id}",
                                severity=zone.severity, track=p.track, confidence=p.confidence, zone=zone.id,
                                details=details, since=t)
                if change is False:
                    self._dwelled.discard((zone.id, p.track))
                if state.inside and zone.dwell_s > 0 and (zone.id, p.track) not in self._dwelled \
                        and t - state.since >= zone.dwell_s:
                    self._dwelled.add((zone.id, p.track))
                    self._alert(out, t, cooldown, type="zone_dwell", rule=f"zone_dwell:{zone.id}", severity="warning",
                                track=p.track, confidence=p.confidence, zone=zone.id,
                                details={"dwell_s": round(t - state.since, 2)}, since=state.since)
            self._predict(out, t, p, cooldown, entries)
            self._check_ppe(out, t, p)
            self._check_posture(out, t, p)
        return out

    def _warner(self, zone: ZoneConfig, kind: str) -> EntryWarner:
        key = (zone.id, kind)
        if key not in self._warners:
            tuned = self._entry_rules.get(kind)
            horizon = zone.predict_horizon_s
            rule = replace(tuned, horizon_s=min(tuned.horizon_s, horizon)) if tuned else EntryRule(horizon_s=horizon)
            self._warners[key] = EntryWarner(rule)
        return self._warners[key]

    def _entry_decisions(self, people: list[Person]) -> dict[tuple[str, int], tuple[bool, float]]:
        """Per (zone, track) with a forecast: whether it fires the zone's warning rule
        (EntryWarner.fires_all) and the time to entry within the zone's horizon (inf: none); one
        vectorised call per zone and forecast kind instead of one per person."""
        out: dict[tuple[str, int], tuple[bool, float]] = {}
        zones = [z for z in self.zones.values() if z.predict_horizon_s is not None and z.polygon_m is not None]
        if not zones:
            return out
        groups: dict[tuple, list[Person]] = {}
        for p in people:
            if p.forecast is not None and p.ground is not None:
                f = np.asarray(p.forecast, np.float64)
                modes = None if p.forecast_modes is None else np.shape(p.forecast_modes)
                groups.setdefault((p.forecast_kind, float(p.forecast_dt), f.shape, modes), []).append(p)
        stacked = {key: (np.stack([np.asarray(p.forecast, np.float64) for p in group]),
                         np.stack([np.asarray(p.ground, np.float64).reshape(2) for p in group]),
                         None if key[3] is None else np.stack([np.asarray(p.forecast_modes, np.float64) for p in group]),
                         None if key[3] is None else np.stack([np.asarray(p.forecast_probs, np.float64) for p in group]))
                   for key, group in groups.items()}
        for zone in zones:
            polygon = self._polygon(zone, "m")
            for (kind, dt, shape, modes), group in groups.items():
                paths, starts, alt, probs = stacked[(kind, dt, shape, modes)]
                warner = self._warner(zone, kind)
                outside = ~points_in_polygon(starts, polygon)
                # entry times over the zone's horizon (>= the rule's) give the time to entry and, for a
                # rule without margins, the warning too (one pass over the paths instead of two)
                if alt is not None and warner.rule.tau is not None:
                    # a multi-modal forecast warns on P(entry); the time to entry is that of the
                    # most probable path entering within the zone's horizon
                    t_alt = mode_entry_times(alt, dt, polygon, zone.predict_horizon_s, starts)
                    fires = warner.fires_from_times(t_alt, outside, probs)
                    if fires is None:
                        fires = warner.fires_modes(alt, probs, dt, polygon, starts)
                    best = np.argmax(np.where(np.isfinite(t_alt), probs, -1.0), axis=1)
                    when = t_alt[np.arange(len(t_alt)), best]
                else:
                    when = entry_times(paths, dt, polygon, zone.predict_horizon_s, starts)
                    fires = warner.fires_from_times(when, outside)
                    if fires is None:
                        fires = warner.fires_all(paths, dt, polygon, starts)
                for p, f, w in zip(group, fires, when):
                    out[(zone.id, p.track)] = (bool(f), float(w))
        return out

    def _predict(self, out: list, t: float, p: Person, cooldown: float,
                 entries: dict[tuple[str, int], tuple[bool, float]]) -> None:
        if p.forecast is None or p.ground is None:
            return
        for zone in self.zones.values():
            if zone.predict_horizon_s is None or zone.polygon_m is None or self.inside(zone.id, p.track):
                continue
            if p.speed_mps is not None and p.speed_mps < zone.predict_min_speed_mps:
                continue
            fires, time_s = entries[(zone.id, p.track)]
            if not self._warner(zone, p.forecast_kind).step((zone.id, p.track), t, fires):
                continue
            if np.isfinite(time_s) and time_s > 0:
                self._alert(out, t, cooldown, type="predicted_entry", rule=f"predicted_entry:{zone.id}",
                            severity=zone.severity, track=p.track, confidence=p.confidence, zone=zone.id,
                            details={"time_to_entry_s": round(time_s, 2), "horizon_s": zone.predict_horizon_s,
                                     "forecast": p.forecast_kind}, since=t)

    def _in_scope(self, zones: tuple[str, ...], track: int) -> bool:
        return not zones or any(self.inside(z, track) for z in zones if z in self.zones)

    def _check_ppe(self, out: list, t: float, p: Person) -> None:
        for item, prob in p.ppe.items():
            key = (p.track, item)
            prev = self._ppe_smooth.get(key)
            self._ppe_smooth[key] = prob if prev is None else (1 - PPE_SMOOTHING) * prev + PPE_SMOOTHING * prob
        for i, rule in enumerate(self.ppe):
            if rule.zones and not any(z in self.zones for z in rule.zones):
                continue  # the rule's zones are on other cameras
            key = (p.track, i)
            missing = [item for item in rule.require
                       if item in p.ppe and self._ppe_smooth[(p.track, item)] < PPE_PRESENT]
            if not missing or not self._in_scope(rule.zones, p.track):
                self._missing_since.pop(key, None)
                continue
            since = self._missing_since.setdefault(key, t)
            if t - since >= rule.grace_s:
                zone = next((z for z in rule.zones if self.inside(z, p.track)), None)
                self._alert(out, t, rule.cooldown_s, type="ppe_violation", rule=f"ppe_violation:{i}",
                            severity=rule.severity, track=p.track, confidence=p.confidence, zone=zone,
                            details={"missing": missing,
                                     "worn": {it: round(self._ppe_smooth[(p.track, it)], 3) for it in rule.require if it in p.ppe}},
                            since=since)

    def _check_posture(self, out: list, t: float, p: Person) -> None:
        for i, rule in enumerate(self.actions):
            key = (p.track, i)
            if p.posture not in rule.postures or not self._in_scope(rule.zones, p.track):
                self._posture_since.pop(key, None)
                continue
            posture, since = self._posture_since.get(key, (p.posture, t))
            if posture != p.posture:
                since = t
            self._posture_since[key] = (p.posture, since)
            if t - since >= rule.min_duration_s:
                self._alert(out, t, rule.cooldown_s, type="posture", rule=f"posture:{i}", severity=rule.severity,
                            track=p.track, confidence=p.posture_confidence, zone=None,
                            details={"posture": p.posture, "held_s": round(t - since, 2)}, since=since)

    def _confident(self, people: list[Person]) -> list[Person]:
        """The people the rules look at: with ``min_confidence`` set, those whose smoothed
        detection confidence reaches it (the smoothing runs for everyone, seen or not by the rules)."""
        floor = self.config.min_confidence
        for p in people:
            prev = self._confidence.get(p.track)
            c = float(p.confidence)
            self._confidence[p.track] = c if prev is None else (1 - CONFIDENCE_SMOOTHING) * prev + CONFIDENCE_SMOOTHING * c
        if floor <= 0:
            return people
        return [p for p in people if self._confidence[p.track] >= floor]

    def _forget(self, track: int) -> None:
        self._last_seen.pop(track, None)
        self._confidence.pop(track, None)
        for d in (self._presence,):
            for k in [k for k in d if k[1] == track]:
                del d[k]
        self._dwelled = {k for k in self._dwelled if k[1] != track}
        for d in (self._ppe_smooth, self._missing_since, self._posture_since):
            for k in [k for k in d if k[0] == track]:
                del d[k]
