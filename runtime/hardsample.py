"""Device-side hard-sample selection: which sampled frames a device uploads to the VMS teacher.

The VMS re-distils the student from the frames it is least sure about (DESIGN.md, "teacher
loop"). A device cannot run the teacher, so it judges a frame by the student's own output and
by the tracker, on frames it samples anyway (numpy only, no model):

``low_confidence``  the student's best person score lies in the uncertain band
                    ``[low, high)`` (default 0.2-0.5): it saw something, but not clearly;
``disagreement``    the number of confident boxes (>= ``confident``) differs from the number of
                    confirmed tracks by at least ``count_gap``: the detector and the tracker's
                    temporal evidence disagree (a missed or a spurious person).

A frame that is both counts as ``disagreement`` (the stronger evidence). A selector keeps at
most one upload per camera every ``min_interval_s`` seconds so a device never floods the VMS.
Operators' false-alarm marks become hard samples on the VMS side (``vms.teacher``).

    sel = HardSampleSelector(HardSamplePolicy())
    reason = sel.offer(camera, t, det.confidence[det.class_id == 0], n_tracks)
    if reason: upload(frame, reason, boxes)       # -> <data_dir>/hard_samples/<id>.jpg + .json
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REASONS = ("low_confidence", "disagreement", "false_alarm")


@dataclass(frozen=True)
class HardSamplePolicy:
    low: float = 0.2            # uncertain band of the best person score: [low, high)
    high: float = 0.5
    confident: float = 0.5      # a box at or above this counts as a detection for the tracker check
    count_gap: int = 1          # |confident boxes - confirmed tracks| that makes a disagreement
    min_interval_s: float = 2.0  # at most one upload per camera per this many seconds

    def __post_init__(self) -> None:
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ValueError(f"need 0 <= low < high <= 1, got low={self.low} high={self.high}")
        if self.count_gap < 1 or self.min_interval_s < 0:
            raise ValueError("count_gap must be >= 1 and min_interval_s >= 0")


def hard_reason(scores, n_tracks: int | None = None, policy: HardSamplePolicy = HardSamplePolicy()) -> str | None:
    """Why a frame is hard (``"disagreement"`` / ``"low_confidence"``), or None. ``scores``: the
    student's person scores on the frame; ``n_tracks``: confirmed tracks now (None: no tracker)."""
    s = np.asarray(scores, np.float32).reshape(-1)
    if n_tracks is not None and abs(int((s >= policy.confident).sum()) - int(n_tracks)) >= policy.count_gap:
        return "disagreement"
    best = float(s.max()) if s.size else 0.0
    if policy.low <= best < policy.high:
        return "low_confidence"
    return None


@dataclass
class HardSampleSelector:
    """:func:`hard_reason` plus a per-camera rate limit (the only state)."""

    policy: HardSamplePolicy = HardSamplePolicy()
    _last: dict = field(default_factory=dict)

    def offer(self, camera: str, t: float, scores, n_tracks: int | None = None) -> str | None:
        last = self._last.get(camera)
        if last is not None and t - last < self.policy.min_interval_s:
            return None
        reason = hard_reason(scores, n_tracks, self.policy)
        if reason is not None:
            self._last[camera] = t
        return reason
