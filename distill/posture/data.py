"""Posture data: keypoints of sim persons as the POSE STUDENT sees them (its own predictions on
jittered-box crops), plus the exact keypoints with noise, and joint dropping.

The posture classifier never sees clean truth at test time: on the device it gets the pose
model's keypoints, so that is what it is trained and scored on. The exact keypoints (noised,
with random confidences) double the training set and cover poses the pose model gets wrong.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from compiler.modelcard import sha256_of
from runtime import posture as rp

from ..pose import data as PD
from ..pose.evaluate import OnnxPose
from ..pose.train import cut, jitter_boxes

from runtime import pose as rt

DROP_MODES = ("none", "face", "left", "right", "legs", "random")
TRAIN_DROP_P = (0.30, 0.15, 0.10, 0.10, 0.10, 0.25)
EVAL_DROP_MODES = ("face", "left", "right", "random")     # one per person, seeded, in the "dropped" score
LEGS = (13, 14, 15, 16)


def labels_of(postures) -> np.ndarray:
    """(N,) class index, -1 for postures left out (falling) or unknown."""
    return np.array([rp.LABELS.get(str(p), -1) for p in postures], np.int64)


def drop(kp: np.ndarray, modes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of (N, 17, 3) keypoints with joints removed (confidence 0) per person's mode."""
    out = np.array(kp, np.float32, copy=True)
    groups = {"face": rp.FACE, "left": rp.LEFT, "right": rp.RIGHT, "legs": LEGS}
    for mode, idx in groups.items():
        m = modes == mode
        if m.any():
            sel = np.nonzero(m)[0][:, None]
            out[sel, list(idx), 2] = 0.0
    m = np.nonzero(modes == "random")[0]
    if len(m):
        p = rng.uniform(0.1, 0.4, (len(m), 1))
        gone = rng.random((len(m), rp.N_JOINTS)) < p
        sub = out[m]
        sub[..., 2] = np.where(gone, 0.0, sub[..., 2])
        out[m] = sub
    return out


def random_modes(n: int, rng: np.random.Generator, modes=DROP_MODES, p=TRAIN_DROP_P) -> np.ndarray:
    return np.asarray(modes)[rng.choice(len(modes), size=n, p=None if p is None else np.asarray(p) / np.sum(p))]


def noisy_truth(ps: PD.PersonSet, boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The exact keypoints with pose-model-like noise (2.5% of the box's longer side) and random
    confidences: visible 0.4-1, occluded 0.3-0.9, outside the frame 0."""
    kp = np.array(ps.keypoints, np.float32, copy=True)
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])[:, None]
    kp[..., 0] += rng.normal(0, 0.025, kp.shape[:2]) * side
    kp[..., 1] += rng.normal(0, 0.025, kp.shape[:2]) * side
    v = ps.keypoints[..., 2]
    conf = np.where(v == 2, rng.uniform(0.4, 1.0, v.shape), np.where(v == 1, rng.uniform(0.3, 0.9, v.shape), 0.0))
    kp[..., 2] = conf
    return kp


def pose_keypoints(pose_path: Path, ps: PD.PersonSet, boxes: np.ndarray, log=None) -> np.ndarray:
    """(N, 17, 3) the pose model's keypoints (patch pixels, confidence) on crops of ``boxes``; cached
    by the model's sha256 and the persons."""
    h = hashlib.sha256()
    h.update(sha256_of(pose_path).encode())
    h.update(np.ascontiguousarray(boxes, np.float32).tobytes())
    h.update(repr((len(ps), ps.meta.get("seed", np.zeros(0)).tolist()[:50])).encode())

    def build():
        model = OnnxPose(pose_path, threads=2)
        if log:
            log(f"  running {pose_path.parent.name} on {len(ps)} person crops")
        out = []
        for i in range(0, len(ps), 512):
            sub = ps.subset(np.arange(i, min(i + 512, len(ps))))
            c = cut(sub, model.size, boxes[i:i + 512])
            out.append(rt.decode(model.heatmaps(c.images), c.transforms))
        return np.concatenate(out) if out else np.zeros((0, 17, 3), np.float32)

    return PD.cached("posekp", h.hexdigest(), build)


def person_boxes(ps: PD.PersonSet, seed: int, scale: float = 1.0) -> np.ndarray:
    return jitter_boxes(ps.boxes, seed, scale)
