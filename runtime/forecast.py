"""Ground-plane trajectory forecasting and predicted zone entry (numpy + onnxruntime only).

The trajectory students are trained, evaluated and deployed through the SAME functions here, so
all three normalise and decode identically:

* :func:`encode` turns an observed track ``(N, obs_len, 2)`` in metres into the model input: the
  track translated so its last observed point is the origin and rotated so its last velocity
  points along +x (the *local frame*). No scaling: the input stays in metres.
* The model predicts ``(N, pred_len, 2)`` offsets, in the local frame, from the constant-velocity
  extrapolation of the last observed step.
* :func:`decode` adds those offsets to the CV extrapolation and rotates/translates back to the
  world frame.

Tracks from the tracker arrive at the camera's rate; :func:`resample` brings them to the rate
the model card records (2.5 Hz for the ETH/UCY students). :class:`OnnxForecaster` runs a
student (rate and lengths come from arguments: the runtime reads no model cards itself), and
falls back to :func:`constant_velocity` when a track is too short. :func:`predict_entry` says
whether a forecast path enters a zone polygon within a horizon, and when.

The *warning* decision is :func:`warn_entry` with an :class:`EntryRule` (effective horizon, depth
margin growing with time-to-point, temporal persistence), tuned per forecaster on validation data
and recorded in the model card's ``preprocess.notes`` (:func:`entry_rules_from_notes` reads it);
:class:`EntryWarner` keeps the per-track/zone persistence state. A multi-modal student (ONNX outputs
``path_offsets`` and ``path_logits`` beside ``offsets``; :meth:`OnnxForecaster.predict_modes`) warns
on the probability of entry instead: the probability mass of its alternative paths that fire the
rule, against the rule's ``tau`` (:meth:`EntryWarner.fires_modes`).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

import numpy as np

from .geometry import points_in_polygon

OBS_LEN, PRED_LEN = 8, 12
RATE_HZ = 2.5
N_NEIGHBOURS = 4          # nearest other people given to the social students
NEIGHBOUR_RADIUS_M = 8.0  # farther people are left out
NEIGHBOUR_FEATURES = 5    # x, y, vx, vy (local frame, metres and metres per step), present
MIN_SPEED_M = 1e-3  # metres per step below which the heading falls back to the track's overall direction


@dataclass(frozen=True)
class Frame:
    """Per-track local frame: ``local = (world - origin) @ rot.T``; ``world = local @ rot + origin``."""

    origin: np.ndarray  # (N, 2) last observed point
    rot: np.ndarray     # (N, 2, 2) world -> local rotation
    vel: np.ndarray     # (N, 2) last observed step (metres per step) in the local frame: (speed, ~0)


def _heading(obs: np.ndarray) -> np.ndarray:
    """(N, 2) unit heading of the last step; the overall displacement, then +x, when standing."""
    last = obs[:, -1] - obs[:, -2]
    whole = obs[:, -1] - obs[:, 0]
    ln, wn = np.linalg.norm(last, axis=-1), np.linalg.norm(whole, axis=-1)
    d = np.where((ln > MIN_SPEED_M)[:, None], last, np.where((wn > MIN_SPEED_M)[:, None], whole, [1.0, 0.0]))
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def encode(obs: np.ndarray) -> tuple[np.ndarray, Frame]:
    """Observed tracks (N, T, 2) or (T, 2), metres -> (model input (N, T, 2) float32, frame)."""
    obs = np.asarray(obs, dtype=np.float64)
    if obs.ndim == 2:
        obs = obs[None]
    if obs.ndim != 3 or obs.shape[-1] != 2 or obs.shape[1] < 2:
        raise ValueError(f"observed tracks must be (N, T>=2, 2), got {obs.shape}")
    h = _heading(obs)
    c, s = h[:, 0], h[:, 1]
    rot = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)  # rows: +x -> heading
    origin = obs[:, -1].copy()
    local = np.einsum("nij,ntj->nti", rot, obs - origin[:, None])
    vel = local[:, -1] - local[:, -2]
    return local.astype(np.float32), Frame(origin, rot, vel)


def cv_local(frame: Frame, pred_len: int = PRED_LEN) -> np.ndarray:
    """Constant-velocity extrapolation in the local frame: ``k * vel`` for k = 1..pred_len
    (``vel`` is (speed, 0) except for a standing track whose heading came from elsewhere), so
    decoding zero offsets gives exactly :func:`constant_velocity`."""
    k = np.arange(1, pred_len + 1, dtype=np.float64)
    return frame.vel[:, None, :] * k[None, :, None]


def decode(offsets: np.ndarray, frame: Frame) -> np.ndarray:
    """Model offsets (N, P, 2) in the local frame -> world positions (N, P, 2) float64."""
    off = np.asarray(offsets, dtype=np.float64)
    local = cv_local(frame, off.shape[1]) + off
    return np.einsum("nji,ntj->nti", frame.rot, local) + frame.origin[:, None]


def to_local(points: np.ndarray, frame: Frame) -> np.ndarray:
    """World points (N, P, 2) -> the local frame (for training targets)."""
    return np.einsum("nij,ntj->nti", frame.rot, np.asarray(points, np.float64) - frame.origin[:, None])


def target_offsets(fut: np.ndarray, frame: Frame) -> np.ndarray:
    """The offsets a perfect model would output for the true future (N, P, 2): the inverse of decode."""
    return (to_local(fut, frame) - cv_local(frame, np.asarray(fut).shape[1])).astype(np.float32)


def neighbour_features(frame: Frame, others: list[np.ndarray], k: int = N_NEIGHBOURS,
                       radius_m: float = NEIGHBOUR_RADIUS_M) -> np.ndarray:
    """Social input of the students: (N, k, 5) float32, per track its ``k`` nearest other people.

    ``others[i]`` holds (K_i, 2, 2) world positions of the other people seen at track i's last two
    observed steps ([previous, last]). Each neighbour becomes ``(x, y, vx, vy, 1)`` in track i's
    local frame (position at the last step, velocity per step), sorted by distance, those beyond
    ``radius_m`` dropped; empty slots are all zero."""
    out = np.zeros((len(others), k, NEIGHBOUR_FEATURES), np.float32)
    for i, nb in enumerate(others):
        nb = np.asarray(nb, np.float64).reshape(-1, 2, 2)
        if not len(nb):
            continue
        loc = np.einsum("ij,ktj->kti", frame.rot[i], nb - frame.origin[i])
        d = np.linalg.norm(loc[:, 1], axis=-1)
        order = np.argsort(d, kind="stable")[:k]
        order = order[d[order] <= radius_m]
        out[i, :len(order), 0:2] = loc[order, 1]
        out[i, :len(order), 2:4] = loc[order, 1] - loc[order, 0]
        out[i, :len(order), 4] = 1.0
    return out


def scene_others(obs: np.ndarray) -> list[np.ndarray]:
    """For tracks observed together (N, T, 2): each one's others, as :func:`neighbour_features` takes."""
    last2 = np.asarray(obs, np.float64)[:, -2:]
    return [np.delete(last2, i, axis=0) for i in range(len(last2))]


def constant_velocity(obs: np.ndarray, pred_len: int = PRED_LEN) -> np.ndarray:
    """CV from the last two observed points: (N, T, 2) -> (N, pred_len, 2)."""
    obs = np.asarray(obs, dtype=np.float64)
    if obs.ndim == 2:
        obs = obs[None]
    v = obs[:, -1] - obs[:, -2]
    return obs[:, -1:, :] + v[:, None, :] * np.arange(1, pred_len + 1)[None, :, None]


def resample(t: np.ndarray, xy: np.ndarray, rate_hz: float = RATE_HZ, n: int = OBS_LEN) -> np.ndarray | None:
    """The last ``n`` points of a track at ``rate_hz``, ending at its last sample.

    ``t`` (K,) seconds, increasing; ``xy`` (K, 2) metres, at any (even irregular) rate. Points are
    linearly interpolated at ``t[-1] - (n - 1 - i) / rate_hz``. Returns None when the track spans
    less than ``(n - 1) / rate_hz`` seconds (too short to forecast from).
    """
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(t) != len(xy):
        raise ValueError(f"{len(t)} times but {len(xy)} points")
    if len(t) < 2 or np.any(np.diff(t) <= 0):
        if len(t) >= 2:
            raise ValueError("track times must increase strictly")
        return None
    want = t[-1] - (n - 1 - np.arange(n)) / rate_hz
    if want[0] < t[0] - 1e-9:
        return None
    return np.stack([np.interp(want, t, xy[:, 0]), np.interp(want, t, xy[:, 1])], -1)


def pad_back(obs: np.ndarray, n: int) -> np.ndarray:
    """Observed tracks (N, m, 2) with 2 <= m <= n -> (N, n, 2): the missing earlier steps filled by
    walking the first observed step backwards (constant velocity into the past). The trajectory
    students are trained with windows padded this way (distill/trajectory/multimodal.py), so a
    short track can be forecast by the model instead of by constant velocity."""
    obs = np.asarray(obs, np.float64)
    m = obs.shape[1]
    if m >= n:
        return obs[:, -n:]
    if m < 2:
        raise ValueError("padding needs at least two observed steps")
    back = np.arange(n - m, 0, -1, dtype=np.float64)            # n-m .. 1 steps before the first
    v = obs[:, 1] - obs[:, 0]
    return np.concatenate([obs[:, :1] - back[None, :, None] * v[:, None], obs], axis=1)


def resample_short(t: np.ndarray, xy: np.ndarray, rate_hz: float = RATE_HZ, n: int = OBS_LEN,
                   min_steps: int = 3) -> np.ndarray | None:
    """Like :func:`resample`, for a track spanning less than ``n`` steps: its last ``m`` points at
    ``rate_hz`` (m as many as its span holds, at least ``min_steps``) padded to ``n`` by
    :func:`pad_back`. None when even ``min_steps`` do not fit."""
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if len(t) < 2:
        return None
    m = min(n, int(np.floor((t[-1] - t[0]) * rate_hz + 1e-9)) + 1)
    if m < max(2, min_steps):
        return None
    obs = resample(t, xy, rate_hz, m)
    return None if obs is None else pad_back(obs[None], n)[0]


@dataclass(frozen=True)
class Entry:
    """Outcome of :func:`predict_entry`."""

    enters: bool
    time_s: float | None  # seconds from the last observation to the first predicted point inside


def depth_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Signed depth (N,) of points (N, 2) in ``polygon`` (M, 2), metres: the distance to the
    boundary, positive inside, negative outside (so ``depth >= d`` means "inside the zone shrunk
    by d" for d > 0 and "within -d of the zone" for d < 0)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    a = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    ab = np.roll(a, -1, axis=0) - a
    ll = np.maximum((ab * ab).sum(-1), 1e-18)
    ax, ay = pts[:, None, 0] - a[None, :, 0], pts[:, None, 1] - a[None, :, 1]
    t = np.clip((ax * ab[None, :, 0] + ay * ab[None, :, 1]) / ll[None], 0.0, 1.0)
    dx = pts[:, None, 0] - (a[None, :, 0] + t * ab[None, :, 0])
    dy = pts[:, None, 1] - (a[None, :, 1] + t * ab[None, :, 1])
    d = np.sqrt(dx * dx + dy * dy).min(axis=1)
    return np.where(points_in_polygon(pts, a), d, -np.maximum(d, 1e-12))  # outside: strictly negative


def dense_path(paths: np.ndarray, dt: float, starts: np.ndarray | None = None,
               substeps: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Forecast paths (N, T, 2) [+ their start points (N, 2) at time 0] checked at ``substeps``
    points per segment: -> (points (N, S, 2), times (S,) seconds after the last observation)."""
    pts = np.asarray(paths, dtype=np.float64)
    if pts.ndim == 2:
        pts = pts[None]
    n = pts.shape[0]
    times = dt * np.arange(1, pts.shape[1] + 1, dtype=np.float64)
    if starts is not None:
        pts = np.concatenate([np.asarray(starts, np.float64).reshape(n, 1, 2), pts], axis=1)
        times = np.r_[0.0, times]
    if substeps > 1 and pts.shape[1] > 1:
        f = np.arange(substeps, dtype=np.float64) / substeps
        dense = pts[:, :-1, None] + (pts[:, 1:] - pts[:, :-1])[:, :, None] * f[None, None, :, None]
        dtimes = times[:-1, None] + (times[1:] - times[:-1])[:, None] * f[None]
        pts = np.concatenate([dense.reshape(n, -1, 2), pts[:, -1:]], axis=1)
        times = np.r_[dtimes.reshape(-1), times[-1]]
    return pts, times


def entry_times(paths: np.ndarray, dt: float, polygon: np.ndarray, horizon_s: float | None = None,
                starts: np.ndarray | None = None, substeps: int = 4, margin_m: float = 0.0,
                margin_per_s: float = 0.0) -> np.ndarray:
    """Vectorised :func:`predict_entry`: paths (N, T, 2) -> (N,) seconds to the first point
    inside ``polygon``, ``inf`` where the path does not enter within the horizon.

    With a margin, a point ``t`` seconds ahead counts only when it lies at least
    ``margin_m + margin_per_s * t`` metres inside the zone (see :func:`depth_in_polygon`): the
    forecast's error grows with time, so later points must go deeper in to count."""
    pts, times = dense_path(paths, dt, starts, substeps)
    n = pts.shape[0]
    if horizon_s is not None:
        keep = times <= horizon_s + 1e-9
        pts, times = pts[:, keep], times[keep]
    out = np.full(n, np.inf)
    if not pts.shape[1] or not n:
        return out
    if margin_m == 0.0 and margin_per_s == 0.0:
        inside = points_in_polygon(pts.reshape(-1, 2), polygon).reshape(n, -1)
    else:
        depth = depth_in_polygon(pts.reshape(-1, 2), polygon).reshape(n, -1)
        inside = depth - margin_per_s * times[None] >= margin_m
    hit = inside.any(axis=1)
    out[hit] = times[np.argmax(inside[hit], axis=1)]
    return out


def mode_entry_times(modes: np.ndarray, dt: float, polygon: np.ndarray, horizon_s: float | None,
                     starts: np.ndarray, substeps: int = 4, margin_m: float = 0.0,
                     margin_per_s: float = 0.0) -> np.ndarray:
    """:func:`entry_times` of multi-modal forecasts: modes (N, K, T, 2) from starts (N, 2) -> (N, K)."""
    modes = np.asarray(modes, np.float64)
    n, k = modes.shape[:2]
    return entry_times(modes.reshape(n * k, *modes.shape[2:]), dt, polygon, horizon_s,
                       np.repeat(np.asarray(starts, np.float64).reshape(n, 2), k, axis=0), substeps,
                       margin_m, margin_per_s).reshape(n, k)


def predict_entry(path: np.ndarray, dt: float, polygon: np.ndarray, horizon_s: float | None = None,
                  start: np.ndarray | None = None, substeps: int = 4) -> Entry:
    """Whether a forecast path (T, 2) at time step ``dt`` enters ``polygon`` (M, 2), metres,
    within ``horizon_s`` (default: the whole path), and the time to entry.

    ``path[k]`` lies ``(k + 1) * dt`` after the last observation ``start`` (if given, the segment
    from it to ``path[0]`` is checked too). Segments are checked at ``substeps`` points each so a
    fast track cannot jump over a thin zone unseen. A path that starts inside enters at 0 s.
    """
    t = entry_times(np.asarray(path, np.float64).reshape(1, -1, 2), dt, polygon, horizon_s,
                    None if start is None else np.asarray(start, np.float64).reshape(1, 2), substeps)[0]
    return Entry(True, float(t)) if np.isfinite(t) else Entry(False, None)


@dataclass(frozen=True)
class EntryRule:
    """When a forecast becomes a predicted-entry *warning*.

    A forecast made now fires when, within ``horizon_s``, a point ``t`` seconds ahead lies at
    least ``margin_m + margin_per_s * t`` metres inside the zone (the person being outside it now);
    the warning is raised once forecasts have fired continuously for ``persist_s`` seconds
    (0: the first firing forecast warns; at 2.5 Hz, 0.4 s = two consecutive forecasts).
    ``horizon_s`` here is the forecast horizon the rule looks at; it may be shorter than the zone's
    ``predict_entry.horizon_s`` (the time before entry a warning counts as timely).

    ``tau`` (multi-modal forecasters only): a forecast fires when the probability-weighted share of
    its alternative paths that fire as above is at least ``tau`` (:meth:`EntryWarner.fires_modes`);
    None: the deterministic path decides."""

    horizon_s: float = 3.0
    margin_m: float = 0.0
    margin_per_s: float = 0.0
    persist_s: float = 0.0
    tau: float | None = None

    def as_dict(self) -> dict:
        return {k: round(float(v), 4) for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> "EntryRule":
        return cls(**{k: float(v) for k, v in d.items() if k in cls.__dataclass_fields__})

    def persist_steps(self, dt: float) -> int:
        """Consecutive forecasts at step ``dt`` that must fire (1 + persist_s / dt)."""
        return 1 + int(round(self.persist_s / dt))


def warn_entry(path: np.ndarray, dt: float, polygon: np.ndarray, horizon_s: float = 3.0,
               start: np.ndarray | None = None, margin_m: float = 0.0, margin_per_s: float = 0.0,
               substeps: int = 4) -> bool:
    """Whether one forecast path (T, 2) fires a predicted-entry warning for ``polygon``: the
    person (at ``start``) is outside the zone and the path reaches ``margin_m + margin_per_s * t``
    metres inside it at some ``t <= horizon_s``. Persistence over successive forecasts is
    :class:`EntryWarner`'s job."""
    return bool(warn_entries(np.asarray(path, np.float64).reshape(1, -1, 2), dt, polygon, horizon_s,
                             None if start is None else np.asarray(start, np.float64).reshape(1, 2),
                             margin_m, margin_per_s, substeps)[0])


def warn_entries(paths: np.ndarray, dt: float, polygon: np.ndarray, horizon_s: float = 3.0,
                 starts: np.ndarray | None = None, margin_m: float = 0.0, margin_per_s: float = 0.0,
                 substeps: int = 4) -> np.ndarray:
    """Vectorised :func:`warn_entry`: paths (N, T, 2) [+ starts (N, 2)] -> (N,) bool."""
    fire = np.isfinite(entry_times(paths, dt, polygon, horizon_s, starts, substeps, margin_m, margin_per_s))
    if starts is not None:
        fire &= ~points_in_polygon(np.asarray(starts, np.float64).reshape(-1, 2), polygon)
    return fire


class EntryWarner:
    """Stateful :func:`warn_entry` with persistence, per (track, zone) key.

    ``update(key, now_s, path, dt, polygon, start)`` returns True while the warning is raised:
    the forecasts for ``key`` have fired at every update since at least ``rule.persist_s`` ago.
    A forecast that does not fire resets the key. ``forget(key)`` drops a lost track."""

    def __init__(self, rule: EntryRule, substeps: int = 4):
        self.rule, self.substeps = rule, substeps
        self._since: dict = {}

    def fires(self, path: np.ndarray, dt: float, polygon: np.ndarray, start: np.ndarray | None = None) -> bool:
        r = self.rule
        return warn_entry(path, dt, polygon, r.horizon_s, start, r.margin_m, r.margin_per_s, self.substeps)

    def fires_all(self, paths: np.ndarray, dt: float, polygon: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """:meth:`fires` for many forecasts at once: paths (N, T, 2), starts (N, 2) -> (N,) bool."""
        r = self.rule
        return warn_entries(paths, dt, polygon, r.horizon_s, starts, r.margin_m, r.margin_per_s, self.substeps)

    def probability(self, modes: np.ndarray, probs: np.ndarray, dt: float, polygon: np.ndarray,
                    starts: np.ndarray) -> np.ndarray:
        """P(entry) of multi-modal forecasts: modes (N, K, T, 2) with probabilities (N, K) -> (N,),
        the probability mass of the paths that fire the rule's horizon and margins (0 for a person
        already inside)."""
        r = self.rule
        hit = np.isfinite(mode_entry_times(modes, dt, polygon, r.horizon_s, starts, self.substeps,
                                           r.margin_m, r.margin_per_s))
        outside = ~points_in_polygon(np.asarray(starts, np.float64).reshape(-1, 2), polygon)
        return (np.asarray(probs, np.float64) * hit).sum(1) * outside

    @property
    def tau(self) -> float:
        """The P(entry) threshold of a multi-modal forecast: the rule's ``tau``, 0.5 when it has none."""
        return 0.5 if self.rule.tau is None else self.rule.tau

    def fires_from_times(self, times: np.ndarray, outside: np.ndarray, probs: np.ndarray | None = None) -> np.ndarray | None:
        """The same decision as :meth:`fires_all` (``times`` (N,)) or :meth:`fires_modes` (``times``
        (N, K) with ``probs``) from :func:`entry_times` already computed without margin and over a
        horizon at least the rule's, and whether each start is ``outside`` the zone; None when the
        rule has a margin (the times do not tell, call those methods)."""
        r = self.rule
        if r.margin_m != 0.0 or r.margin_per_s != 0.0:
            return None
        hit = np.asarray(times, np.float64) <= r.horizon_s + 1e-9
        if probs is None:
            return hit & outside
        return ((np.asarray(probs, np.float64) * hit).sum(1) >= self.tau) & outside

    def fires_modes(self, modes: np.ndarray, probs: np.ndarray, dt: float, polygon: np.ndarray,
                    starts: np.ndarray) -> np.ndarray:
        """Multi-modal :meth:`fires_all`: (N,) bool, P(entry) (:meth:`probability`) >= the rule's
        ``tau`` (0.5 when the rule has none)."""
        return self.probability(modes, probs, dt, polygon, starts) >= self.tau

    def update(self, key, now_s: float, path: np.ndarray, dt: float, polygon: np.ndarray,
               start: np.ndarray | None = None) -> bool:
        return self.step(key, now_s, self.fires(path, dt, polygon, start))

    def step(self, key, now_s: float, fired: bool) -> bool:
        """Persistence only: feed whether the forecast at ``now_s`` fired."""
        if not fired:
            self._since.pop(key, None)
            return False
        since = self._since.setdefault(key, float(now_s))
        return float(now_s) - since >= self.rule.persist_s - 1e-6

    def forget(self, key) -> None:
        self._since.pop(key, None)


_RULE_RE = re.compile(r"entry_rule(?:_(\w+))?=(\{[^}]*\})")


def entry_rules_from_notes(notes: str) -> dict[str, EntryRule]:
    """The tuned warning rules a trajectory card records in ``preprocess.notes`` as
    ``entry_rule={...}`` (the model) and ``entry_rule_cv={...}`` (the constant-velocity fallback):
    -> {"model": EntryRule, "cv": EntryRule}; missing ones are absent."""
    out = {}
    for name, body in _RULE_RE.findall(notes or ""):
        out[name or "model"] = EntryRule.from_dict(json.loads(body))
    return out


_MIN_OBS_RE = re.compile(r"short_track_min_obs=(\d+)")


def min_obs_from_notes(notes: str) -> int | None:
    """``short_track_min_obs=N`` in a trajectory card's ``preprocess.notes``: the model was trained on
    tracks padded back from N observed steps (:func:`pad_back`), so the runtime may forecast tracks
    that short with it (OnnxForecaster ``min_obs``); None when the card does not say so."""
    m = _MIN_OBS_RE.search(notes or "")
    return int(m.group(1)) if m else None


def entry_rule_note(rules: dict[str, EntryRule]) -> str:
    """The inverse of :func:`entry_rules_from_notes`."""
    return " ".join(f"entry_rule{'' if k == 'model' else '_' + k}={json.dumps(r.as_dict(), sort_keys=True)}"
                    for k, r in rules.items())


@dataclass(frozen=True)
class TrackForecast:
    """One track's forecast (:meth:`OnnxForecaster.track`): the deterministic ``path`` (P, 2), how
    it was made ('model' | 'cv' | 'none'), and for a multi-modal model its alternative paths
    ``modes`` (K, P, 2) with probabilities ``probs`` (K,) (None otherwise)."""

    path: np.ndarray
    kind: str
    modes: np.ndarray | None = None
    probs: np.ndarray | None = None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


class OnnxForecaster:
    """A trajectory student in ONNX: ``obs_local (N, obs_len, 2)`` [+ ``neighbours (N, k, 5)``]
    ``-> offsets (N, pred_len, 2)`` [+ ``path_offsets (N, K, pred_len, 2)``, ``path_logits (N, K)``:
    a multi-modal student's alternative paths and their logits].

    Outputs are read by name (a model with one output: that one is the offsets). ``rate_hz``,
    ``obs_len`` and ``pred_len`` come from the model card (the caller reads it). The session runs on
    the CPU provider without spinning threads.
    """

    def __init__(self, model_path, rate_hz: float = RATE_HZ, obs_len: int = OBS_LEN,
                 pred_len: int = PRED_LEN, threads: int = 1, min_obs: int | None = None):
        """``min_obs``: a track spanning fewer than ``obs_len`` steps but at least this many is
        padded back (:func:`resample_short`) and forecast by the model (only for a model trained on
        such padding: its card says so); None: such tracks get constant velocity."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
        ins = self.session.get_inputs()
        self.input_name = ins[0].name
        self.neighbour_input = ins[1].name if len(ins) > 1 else None
        self.n_neighbours = int(ins[1].shape[1]) if len(ins) > 1 else 0
        outs = [o.name for o in self.session.get_outputs()]
        self.offsets_output = "offsets" if "offsets" in outs else outs[0]
        self.multimodal = {"path_offsets", "path_logits"} <= set(outs)
        self.rate_hz, self.obs_len, self.pred_len = float(rate_hz), int(obs_len), int(pred_len)
        self.min_obs = None if min_obs is None else int(min_obs)

    @property
    def dt(self) -> float:
        return 1.0 / self.rate_hz

    def _run(self, obs: np.ndarray, others: list[np.ndarray] | None, modes: bool):
        x, frame = encode(obs)
        if x.shape[1] != self.obs_len:
            raise ValueError(f"the model observes {self.obs_len} steps, got {x.shape[1]}")
        feeds = {self.input_name: x}
        if self.neighbour_input:
            others = scene_others(obs if np.ndim(obs) == 3 else np.asarray(obs)[None]) if others is None else others
            feeds[self.neighbour_input] = neighbour_features(frame, others, self.n_neighbours)
        names = [self.offsets_output] + (["path_offsets", "path_logits"] if modes else [])
        return frame, self.session.run(names, feeds)

    def predict(self, obs: np.ndarray, others: list[np.ndarray] | None = None) -> np.ndarray:
        """Observed tracks at the model rate (N, obs_len, 2) -> world forecast (N, pred_len, 2).

        A social model also takes each track's ``others`` (see :func:`neighbour_features`); by
        default the N tracks are taken to be observed together and are each other's neighbours."""
        if not len(obs):
            return np.zeros((0, self.pred_len, 2))
        frame, (off,) = self._run(obs, others, False)
        return decode(off, frame)

    def predict_modes(self, obs: np.ndarray, others: list[np.ndarray] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A multi-modal model: (deterministic forecast (N, P, 2), alternative paths (N, K, P, 2),
        their probabilities (N, K)), all world frame."""
        if not self.multimodal:
            raise ValueError("this trajectory model has no path_offsets/path_logits outputs")
        frame, (off, paths, logits) = self._run(obs, others, True)
        k = paths.shape[1]
        modes = decode(np.asarray(paths).reshape(-1, *paths.shape[2:]),
                       Frame(np.repeat(frame.origin, k, 0), np.repeat(frame.rot, k, 0), np.repeat(frame.vel, k, 0)))
        return decode(off, frame), modes.reshape(paths.shape[0], k, *modes.shape[1:]), softmax(logits)

    def track(self, t: np.ndarray, xy: np.ndarray) -> TrackForecast:
        """One track at any rate -> its :class:`TrackForecast` at the model rate.

        Shorter than ``obs_len`` steps: padded back for the model when it spans ``min_obs`` steps.
        Too short for the model but with two samples: constant velocity from the last two samples,
        rescaled to the model step ('cv'). A single sample: the forecast stands still ('none')."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        obs = resample(t, xy, self.rate_hz, self.obs_len)
        if obs is None and self.min_obs is not None:
            obs = resample_short(t, xy, self.rate_hz, self.obs_len, self.min_obs)
        if obs is not None:
            alone = [np.zeros((0, 2, 2))]
            if self.multimodal:
                det, modes, probs = self.predict_modes(obs[None], alone)
                return TrackForecast(det[0], "model", modes[0], probs[0])
            return TrackForecast(self.predict(obs[None], alone)[0], "model")
        if len(xy) >= 2:
            t = np.asarray(t, np.float64)
            v = (xy[-1] - xy[-2]) / max(t[-1] - t[-2], 1e-6) * self.dt
            return TrackForecast(xy[-1] + v[None] * np.arange(1, self.pred_len + 1)[:, None], "cv")
        return TrackForecast(np.repeat(xy[-1:], self.pred_len, axis=0), "none")

    def forecast_track(self, t: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, str]:
        """:meth:`track`'s (path, kind)."""
        f = self.track(t, xy)
        return f.path, f.kind
