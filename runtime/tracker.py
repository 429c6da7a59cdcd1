"""ByteTrack-style multi-object tracking: `ByteTrack(...).update(dets) -> dets` with `tracker_id`.

The algorithm (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection
Box", ECCV 2022), per frame:

1. every track's Kalman filter predicts its box (constant velocity on centre and size);
2. high-score detections (`>= high`) are matched to confirmed and lost tracks by IoU;
3. low-score detections (`low <= score < high`, e.g. a partly occluded worker) are matched to the
   tracks still unmatched that were seen last frame: they keep a track alive, they never start one;
4. tentative tracks may take the high-score detections left over; they are confirmed after
   `min_hits` consecutive hits and dropped at their first miss;
5. high-score detections still unmatched with score `>= new_track` start tentative tracks, except
   (with `spawn_overlap`) those lying mostly on a track matched this frame: a second box on the
   same object (a detector's box on a person's upper body beside the one on the whole person);
6. tracks unmatched for longer than `buffer_s` seconds are forgotten; until then they coast on
   their prediction and take their id back when matched again (short occlusions keep the id).

Matching is per class (a person never takes a machine's track) and solved as a linear
assignment with a cost limit: `lap.lapjv` when `lap` is installed, otherwise
`scipy.optimize.linear_sum_assignment` on the same extended matrix. Either is imported only
when a tracker is built (`pip install 'sitewarden[track]'`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .detections import Detections, box_area, intersection, iou

Assign = Callable[[np.ndarray, float], "tuple[np.ndarray, np.ndarray, np.ndarray]"]
_BLOCKED = 1e6  # cost of a pair that must never match (different classes)


# ============================================================================ assignment


def load_solver(prefer: str = "auto") -> Assign:
    """An assignment function `assign(cost, limit) -> (matches (K, 2), unmatched_rows, unmatched_cols)`.

    Pairs costing more than `limit` are never matched. `prefer`: "auto" (lap, else scipy),
    "lap" or "scipy". Raises ImportError saying what to install when no solver is available."""
    if prefer not in ("auto", "lap", "scipy"):
        raise ValueError(f"unknown assignment solver {prefer!r}: use 'auto', 'lap' or 'scipy'")
    errors = []
    for name in (("lap", "scipy") if prefer == "auto" else (prefer,)):
        try:
            return _LOADERS[name]()
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise ImportError(
        "the tracker needs an assignment solver, and none could be imported ("
        + "; ".join(errors)
        + "). Install one: pip install 'sitewarden[track]' (lap), or pip install scipy"
    )


def _split(matches: list[tuple[int, int]], n_rows: int, n_cols: int):
    m = np.asarray(matches, np.intp).reshape(-1, 2)
    return (m, np.setdiff1d(np.arange(n_rows), m[:, 0]), np.setdiff1d(np.arange(n_cols), m[:, 1]))


def _load_lap() -> Assign:
    import lap

    def assign(cost: np.ndarray, limit: float):
        n, m = cost.shape
        if n == 0 or m == 0:
            return _split([], n, m)
        _, x, _ = lap.lapjv(np.asarray(cost, np.float64), extend_cost=True, cost_limit=limit)
        return _split([(i, j) for i, j in enumerate(x) if j >= 0], n, m)

    assign.solver = "lap"  # type: ignore[attr-defined]
    return assign


def _load_scipy() -> Assign:
    from scipy.optimize import linear_sum_assignment

    def assign(cost: np.ndarray, limit: float):
        n, m = cost.shape
        if n == 0 or m == 0:
            return _split([], n, m)
        # lap's cost_limit formulation: every row and column may instead pair with a dummy at
        # limit/2, so a real pair is chosen only where it costs less than leaving both unmatched.
        ext = np.full((n + m, n + m), limit / 2, np.float64)
        ext[n:, m:] = 0
        ext[:n, :m] = cost
        rows, cols = linear_sum_assignment(ext)
        return _split([(i, j) for i, j in zip(rows, cols) if i < n and j < m], n, m)

    assign.solver = "scipy"  # type: ignore[attr-defined]
    return assign


_LOADERS = {"lap": _load_lap, "scipy": _load_scipy}


# ============================================================================ Kalman filter


class KalmanFilter:
    """Constant-velocity Kalman filter on boxes, batched over tracks.

    State: (cx, cy, w, h, vcx, vcy, vw, vh), velocities per frame; measurement: (cx, cy, w, h).
    Noise scales with the box size (`std_position`, `std_velocity` are fractions of w and h per
    frame), as in ByteTrack/BoT-SORT, so near and far objects are treated alike."""

    def __init__(self, std_position: float = 1 / 20, std_velocity: float = 1 / 160):
        self.std_position = std_position
        self.std_velocity = std_velocity
        self._F = np.eye(8)
        self._F[:4, 4:] = np.eye(4)
        self._H = np.eye(4, 8)

    def _wh4(self, mean: np.ndarray) -> np.ndarray:
        w, h = np.maximum(mean[:, 2], 1.0), np.maximum(mean[:, 3], 1.0)
        return np.stack([w, h, w, h], axis=1)

    def initiate(self, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New states (K, 8) and covariances (K, 8, 8) from (K, 4) boxes, at rest."""
        z = xyxy_to_cxcywh(xyxy)
        mean = np.concatenate([z, np.zeros_like(z)], axis=1)
        wh = self._wh4(mean)
        std = np.concatenate([2 * self.std_position * wh, 10 * self.std_velocity * wh], axis=1)
        return mean, _diag(std**2)

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead for every track."""
        wh = self._wh4(mean)
        q = _diag(np.concatenate([self.std_position * wh, self.std_velocity * wh], axis=1) ** 2)
        return mean @ self._F.T, self._F @ cov @ self._F.T + q

    def update(self, mean: np.ndarray, cov: np.ndarray, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct every track with its matched (K, 4) box."""
        r = _diag((self.std_position * self._wh4(mean)) ** 2)
        s = self._H @ cov @ self._H.T + r                         # (K, 4, 4)
        pht = cov @ self._H.T                                     # (K, 8, 4)
        gain = np.linalg.solve(s, pht.transpose(0, 2, 1)).transpose(0, 2, 1)  # P H^T S^-1
        innovation = xyxy_to_cxcywh(xyxy) - mean[:, :4]
        new_mean = mean + (gain @ innovation[:, :, None])[:, :, 0]
        new_cov = cov - gain @ s @ gain.transpose(0, 2, 1)
        return new_mean, new_cov


def _diag(v: np.ndarray) -> np.ndarray:
    out = np.zeros((*v.shape, v.shape[-1]))
    idx = np.arange(v.shape[-1])
    out[..., idx, idx] = v
    return out


def xyxy_to_cxcywh(xyxy: np.ndarray) -> np.ndarray:
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)


def cxcywh_to_xyxy64(z: np.ndarray) -> np.ndarray:
    half = np.maximum(z[:, 2:4], 1.0) / 2
    return np.concatenate([z[:, :2] - half, z[:, :2] + half], axis=1)


# ============================================================================ tracks


class TrackState(IntEnum):
    TENTATIVE = 0  # seen, not yet `min_hits` frames in a row; has no id
    TRACKED = 1    # confirmed and matched last frame
    LOST = 2       # confirmed, unmatched for a while: coasting on its prediction


@dataclass(frozen=True)
class TrackView:
    """A read-only snapshot of one track, for display, debugging and forecasting."""

    track_id: int           # -1 while tentative
    class_id: int
    state: TrackState
    xyxy: np.ndarray        # (4,) the filter's box (predicted when not matched this frame)
    velocity: np.ndarray    # (2,) centre velocity, pixels per frame
    hits: int               # frames matched in total
    frames_lost: int        # frames since last matched


class _Track:
    __slots__ = ("mean", "cov", "class_id", "state", "track_id", "hits", "streak", "last_frame")

    def __init__(self, mean, cov, class_id: int, frame: int):
        self.mean, self.cov = mean, cov
        self.class_id = class_id
        self.state = TrackState.TENTATIVE
        self.track_id = -1
        self.hits = self.streak = 1
        self.last_frame = frame


# ============================================================================ tracker


class ByteTrack:
    """ByteTrack multi-object tracker (see the module docstring). Configure once, then
    `update(dets)` every frame, in order; `reset()` between unrelated clips.

    fps: frames per second of the stream (scales `buffer_s` into frames).
    high: detections at or above this score are matched first and may start tracks.
    low: detections under this are ignored; between `low` and `high` they only extend tracks.
    new_track: minimum score of an unmatched detection to start a track.
    match_iou: minimum IoU between a track's predicted box and a high-score detection.
    low_match_iou: minimum IoU for the second (low-score) stage, stricter by default.
    buffer_s: how long a lost track is remembered (and can take its id back).
    min_hits: consecutive matched frames before a track is confirmed and given an id.
    keep_untracked: return every input detection (tracker_id -1 where untracked) instead of
        only those on confirmed tracks.
    solver: "auto" (lap if installed, else scipy), "lap" or "scipy".
    spawn_overlap: with a value, an unmatched detection whose intersection with a track matched
        this frame (same class) covers at least this share of the smaller of the two boxes starts
        no track; None (the default): plain ByteTrack.
    """

    def __init__(self, fps: float = 10, high: float = 0.5, low: float = 0.1, new_track: float = 0.6,
                 match_iou: float = 0.2, buffer_s: float = 3.0, min_hits: int = 2, *,
                 low_match_iou: float = 0.5, keep_untracked: bool = False, solver: str = "auto",
                 spawn_overlap: float | None = None):
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high; got low={low}, high={high}")
        if fps <= 0 or buffer_s < 0 or min_hits < 1:
            raise ValueError("fps must be > 0, buffer_s >= 0 and min_hits >= 1")
        self.fps, self.high, self.low, self.new_track = float(fps), high, low, new_track
        self.match_iou, self.low_match_iou = match_iou, low_match_iou
        self.buffer_frames = max(1, round(buffer_s * fps))
        self.min_hits = int(min_hits)
        self.keep_untracked = keep_untracked
        self.spawn_overlap = spawn_overlap
        self.kalman = KalmanFilter()
        self._assign = load_solver(solver)
        self.reset()

    @property
    def solver(self) -> str:
        return getattr(self._assign, "solver", "?")

    def reset(self) -> None:
        """Forget every track; ids start again at 1."""
        self._tracks: list[_Track] = []
        self._frame = 0
        self._next_id = 1

    # ------------------------------------------------------------------ the verb

    def update(self, dets: Detections) -> Detections:
        """Associate this frame's detections with the tracks; returns the detections on confirmed
        tracks (or all of them with `keep_untracked`) with `tracker_id` filled. The input is not changed."""
        self._frame += 1
        frame = self._frame
        self._predict()

        n = len(dets)
        det_id = np.full(n, -1, np.int64)                        # track index per detection
        conf = dets.confidence
        high_idx = np.flatnonzero(conf >= self.high)
        low_idx = np.flatnonzero((conf >= self.low) & (conf < self.high))
        pool = [i for i, t in enumerate(self._tracks) if t.state != TrackState.TENTATIVE]
        tentative = [i for i, t in enumerate(self._tracks) if t.state == TrackState.TENTATIVE]
        matched: list[tuple[int, int]] = []

        # stage 1: high-score detections vs confirmed + lost tracks
        m, u_pool, u_high = self._match(pool, dets, high_idx, self.match_iou)
        matched += m
        # stage 2: low-score detections vs tracks that were tracked last frame and are still unmatched
        recent = [pool[i] for i in u_pool if self._tracks[pool[i]].state == TrackState.TRACKED]
        m, u_recent, _ = self._match(recent, dets, low_idx, self.low_match_iou)
        matched += m
        for i in u_recent:
            self._tracks[recent[i]].state = TrackState.LOST
        # stage 3: tentative tracks vs the high-score detections left
        left_high = high_idx[u_high]
        m, u_tent, u_left = self._match(tentative, dets, left_high, max(self.match_iou, 0.3))
        matched += m

        for t_idx, d_idx in matched:
            det_id[d_idx] = t_idx
        if matched:
            t_idx = np.array([t for t, _ in matched])
            d_idx = np.array([d for _, d in matched])
            mean = np.stack([self._tracks[t].mean for t in t_idx])
            cov = np.stack([self._tracks[t].cov for t in t_idx])
            mean, cov = self.kalman.update(mean, cov, dets.xyxy[d_idx])
            for k, t in enumerate(t_idx):
                self._hit(self._tracks[t], mean[k], cov[k], frame)

        # tentative tracks die at their first miss; lost tracks after the buffer
        dead = {tentative[i] for i in u_tent}
        dead |= {i for i, t in enumerate(self._tracks)
                 if t.state == TrackState.LOST and frame - t.last_frame > self.buffer_frames}
        # stage 4: new tentative tracks from confident unmatched detections
        new = [int(d) for d in left_high[u_left] if conf[d] >= self.new_track]
        if new and self.spawn_overlap is not None:
            new = self._not_on_a_track(dets, new, frame)
        if new:
            means, covs = self.kalman.initiate(dets.xyxy[new])
            for k, d in enumerate(new):
                track = _Track(means[k], covs[k], int(dets.class_id[d]), frame)
                if self.min_hits <= 1:
                    self._confirm(track)
                det_id[d] = len(self._tracks)
                self._tracks.append(track)

        ids = np.array([self._tracks[t].track_id if t >= 0 else -1 for t in det_id], np.int64)
        if dead:
            self._tracks = [t for i, t in enumerate(self._tracks) if i not in dead]
        out = dets.with_(tracker_id=ids)
        return out if self.keep_untracked else out[ids >= 0]

    # ------------------------------------------------------------------ inspection

    @property
    def tracks(self) -> tuple[TrackView, ...]:
        """Every live track (tentative, tracked and lost) as read-only snapshots."""
        views = []
        for t in self._tracks:
            box = cxcywh_to_xyxy64(t.mean[None, :4])[0].astype(np.float32)
            views.append(TrackView(t.track_id, t.class_id, t.state, box, t.mean[4:6].copy(), t.hits,
                                   self._frame - t.last_frame))
        return tuple(views)

    # ------------------------------------------------------------------ internals

    def _predict(self) -> None:
        if not self._tracks:
            return
        mean = np.stack([t.mean for t in self._tracks])
        cov = np.stack([t.cov for t in self._tracks])
        lost = np.array([t.state == TrackState.LOST for t in self._tracks])
        mean[lost, 6:8] = 0  # a coasting track keeps moving but stops growing or shrinking
        mean, cov = self.kalman.predict(mean, cov)
        for k, t in enumerate(self._tracks):
            t.mean, t.cov = mean[k], cov[k]

    def _match(self, tracks: list[int], dets: Detections, det_idx: np.ndarray, min_iou: float):
        """Match track indices to detection indices by IoU >= min_iou within a class.
        Returns ([(track index, detection index)], unmatched positions in `tracks`, in `det_idx`)."""
        if not tracks or len(det_idx) == 0:
            return [], np.arange(len(tracks)), np.arange(len(det_idx))
        boxes = cxcywh_to_xyxy64(np.stack([self._tracks[t].mean[:4] for t in tracks]))
        cost = 1.0 - iou(boxes, dets.xyxy[det_idx]).astype(np.float64)
        classes = np.array([self._tracks[t].class_id for t in tracks])
        cost[classes[:, None] != dets.class_id[det_idx][None, :]] = _BLOCKED
        pairs, u_rows, u_cols = self._assign(cost, 1.0 - min_iou)
        keep = cost[pairs[:, 0], pairs[:, 1]] <= 1.0 - min_iou
        u_rows = np.union1d(u_rows, pairs[~keep, 0]).astype(np.intp)
        u_cols = np.union1d(u_cols, pairs[~keep, 1]).astype(np.intp)
        pairs = pairs[keep]
        return [(tracks[r], int(det_idx[c])) for r, c in pairs], u_rows, u_cols

    def _not_on_a_track(self, dets: Detections, new: list[int], frame: int) -> list[int]:
        """``new`` without the detections that overlap a confirmed track matched this frame by
        ``spawn_overlap`` or more of the smaller box's area (a second box on the same person)."""
        live = [t for t in self._tracks if t.state == TrackState.TRACKED and t.last_frame == frame]
        if not live:
            return new
        tb = cxcywh_to_xyxy64(np.stack([t.mean[:4] for t in live]))
        tc = np.array([t.class_id for t in live])
        db = dets.xyxy[new]
        smaller = np.minimum(box_area(db)[:, None], box_area(tb)[None, :])
        on = ((intersection(db, tb) >= self.spawn_overlap * np.maximum(smaller, 1e-9))
              & (dets.class_id[new][:, None] == tc[None, :]))
        return [d for d, hit in zip(new, on.any(axis=1)) if not hit]

    def _hit(self, track: _Track, mean: np.ndarray, cov: np.ndarray, frame: int) -> None:
        track.mean, track.cov = mean, cov
        track.hits += 1
        track.streak = track.streak + 1 if track.last_frame == frame - 1 else 1
        track.last_frame = frame
        if track.state == TrackState.TENTATIVE:
            if track.streak >= self.min_hits:
                self._confirm(track)
        else:
            track.state = TrackState.TRACKED

    def _confirm(self, track: _Track) -> None:
        track.state = TrackState.TRACKED
        track.track_id = self._next_id
        self._next_id += 1
