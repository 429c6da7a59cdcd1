"""Hard samples the way devices make them, from the TRAINING part of the real footage.

Each training clip stands for one camera: the shipped student runs on every frame, the runtime's
ByteTrack (with the runtime's thresholds for this decoder) follows the people, and
``runtime.hardsample.HardSampleSelector`` decides per frame whether the device would upload it.
Held-out frames (``sim.realdata.footage_split``) are never read: the harvest stops at a clip's
first holdout frame and skips clips held out whole or excluded from training.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.hardsample import HardSamplePolicy, HardSampleSelector
from runtime.tracker import ByteTrack, TrackState

from .data import EXCLUDED_CLIPS, REAL_TRAIN_CLIPS
from .evaluate import OnnxStudent

DEVICE = "footage-replay"
TRACKER_THRESHOLDS = (0.3, 0.12, 0.35)   # runtime.pipeline.TRACK_THRESHOLDS["centernet-ltrb"]
# The footage is short (the mp4's training part is 92 s), so the replay uploads at most one frame
# per camera every 0.5 s instead of the device default of 2 s; "confident" is the tracker's high
# threshold for this decoder.
REPLAY_INTERVAL_S = 0.5


def camera_of(clip: str) -> str:
    return Path(clip).stem


def harvest(student_onnx: Path, size: int, clips=REAL_TRAIN_CLIPS, policy: HardSamplePolicy | None = None,
            limit: int | None = None, log=print) -> list[tuple[np.ndarray, dict]]:
    """(BGR frame, sample metadata) of every frame the selector picks, clip by clip."""
    from sim.realdata import clip_info, footage_split, iter_frames
    try:
        from runtime.pipeline import TRACK_THRESHOLDS
        high, low, new = TRACK_THRESHOLDS["centernet-ltrb"]
    except Exception:   # noqa: BLE001 - the pipeline's optional deps; same numbers
        high, low, new = TRACKER_THRESHOLDS
    policy = policy or HardSamplePolicy(confident=high, min_interval_s=REPLAY_INTERVAL_S)
    model = OnnxStudent(student_onnx, size, threads=1)
    out: list[tuple[np.ndarray, dict]] = []
    for clip in clips:
        if clip in EXCLUDED_CLIPS:
            continue
        n = clip_info(clip).frames
        if footage_split(clip, 0, n) != "train":
            continue
        tracker = ByteTrack(fps=10, high=high, low=low, new_track=new)
        selector = HardSampleSelector(policy)
        cam, picked, seen = camera_of(clip), 0, 0
        for i, t, frame in iter_frames(clip):
            if footage_split(clip, i, n) != "train":
                break
            seen += 1
            d = model(frame, conf=low)
            d = d[d.class_id == 0]
            tracker.update(d)
            n_tracks = sum(1 for v in tracker.tracks if v.class_id == 0 and v.state != TrackState.TENTATIVE)
            reason = selector.offer(cam, t, d.confidence, n_tracks)
            if reason is None:
                continue
            boxes = np.c_[d.xyxy, d.confidence].round(2).tolist()
            out.append((frame, {"id": f"{cam}-{i:05d}", "device": DEVICE, "camera": cam, "t": round(float(t), 3),
                                "reason": reason, "boxes": boxes, "source": "device", "event_id": None,
                                "clip": clip, "frame_index": i, "split": "train"}))
            picked += 1
            if limit and len(out) >= limit:
                break
        log(f"  harvest {clip}: {picked} of {seen} train frames picked")
        if limit and len(out) >= limit:
            break
    return out
