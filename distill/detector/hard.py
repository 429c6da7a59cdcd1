"""Hard samples from the field -> a training FrameSet labelled by the real teacher.

A hard sample is one frame a device uploaded (or an event snapshot an operator marked as a false
alarm), with the camera, the time and the student's own boxes. They are labelled the way the
detector distillation labels its real footage (``labels.fuse_kd``), per camera in time order:

* the teacher (``teacher.teacher_views``: letterboxed frame + 3 square crops, fused by NMS);
* a static camera's median background over that camera's samples (when it sent at least
  ``MIN_BG_FRAMES`` frames of one size) and the foreground blobs against it;
* IoU tracks over each run of the camera's samples that are at most ``SEGMENT_GAP_S`` apart
  (consecutive frames; sparse samples are not linked, so no box is interpolated across seconds):
  one strong teacher hit, or three weak ones, confirm a track; unconfirmed teacher boxes and
  unexplained foreground blobs are *ignored*, never negatives.

Everything else is background, so a student box on static background the teacher does not see is
a hard negative. On a ``false_alarm`` sample the operator has said the student's boxes were wrong:
ignore regions that overlap them are dropped, so they train as negatives (a teacher-confirmed
person stays a person: the alarm may have been false for another reason, e.g. the zone).

Frames of any size are letterboxed into the store size (16:9) the training pipeline uses.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import labels as L
from . import teacher as T
from .data import STORE, FrameSet

MIN_BG_FRAMES = 8
SEGMENT_GAP_S = 0.35
FALSE_ALARM_IOU = 0.3


@dataclass(frozen=True)
class Sample:
    """The part of a hard sample the labeller needs (``vms.teacher.HardSample`` carries the rest)."""

    id: str
    camera: str
    t: float
    reason: str
    image: np.ndarray           # BGR uint8
    boxes: np.ndarray           # (N, 5) student boxes x1 y1 x2 y2 score, image px


def to_store_any(img: np.ndarray) -> tuple[np.ndarray, float]:
    """Fit a frame of any aspect into STORE (top-left, pad 114); returns the image and the scale."""
    h, w = img.shape[:2]
    s = min(STORE[0] / w, STORE[1] / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    out = np.full((STORE[1], STORE[0], 3), 114, np.uint8)
    out[:nh, :nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return out, s


def label_camera(samples: list[Sample], teacher=None) -> tuple[list, list, list, dict]:
    """Labels of one camera's samples (in the given order): per frame (boxes, ignore), the teacher's
    raw output, and counts. ``teacher(bgr) -> (xyxy, scores)`` defaults to ``teacher_views``."""
    teacher = teacher or (lambda img: T.teacher_views(img, threads=1))
    views = [teacher(s.image) for s in samples]
    shapes = {s.image.shape for s in samples}
    if len(samples) >= MIN_BG_FRAMES and len(shapes) == 1:
        bg = T.median_background([s.image for s in samples])
        blobs = [T.foreground_blobs(s.image, bg) for s in samples]
    else:
        blobs = [np.zeros((0, 4), np.float32) for _ in samples]
    lab, ign, stats = [], [], {}
    cuts = [0] + [k for k in range(1, len(samples)) if samples[k].t - samples[k - 1].t > SEGMENT_GAP_S]
    for a, b in zip(cuts, cuts[1:] + [len(samples)]):
        la, ig, st = L.fuse_kd(views[a:b], blobs[a:b])
        lab += la
        ign += ig
        stats = {k: stats.get(k, 0) + v for k, v in st.items()}
    stats = dict(stats, segments=len(cuts), false_alarm_negatives=0, background_model=bool(len(samples) >= MIN_BG_FRAMES
                                                                       and len(shapes) == 1))
    for k, s in enumerate(samples):
        if s.reason != "false_alarm" or not len(s.boxes) or not len(ign[k]):
            continue
        fa = np.asarray(s.boxes, np.float32)[:, :4]
        hit = L.iou_matrix(ign[k], fa).max(axis=1) >= FALSE_ALARM_IOU
        stats["false_alarm_negatives"] += int(hit.sum())
        ign[k] = ign[k][~hit]
    return lab, ign, views, stats


def frameset(samples: list[Sample], teacher=None, log=print) -> tuple[FrameSet, dict]:
    """Teacher-labelled FrameSet of every sample (source ``"hard"``, person only) and label stats
    per camera. Cameras are labelled independently, each in time order."""
    by_cam: dict[str, list[Sample]] = {}
    for s in sorted(samples, key=lambda s: (s.camera, s.t, s.id)):
        by_cam.setdefault(s.camera, []).append(s)
    imgs, objs, igns, scene, stats = [], [], [], [], {}
    for cam, group in by_cam.items():
        lab, ign, _, st = label_camera(group, teacher)
        stats[cam] = dict(st, frames=len(group))
        for s, b, g in zip(group, lab, ign):
            img, k = to_store_any(s.image)
            imgs.append(img)
            objs.append(np.c_[b * k, np.zeros(len(b))].astype(np.float32).reshape(-1, 5))
            igns.append(np.c_[g * k, np.zeros(len(g))].astype(np.float32).reshape(-1, 5))
            scene.append(cam)
        log(f"  hard samples {cam}: {len(group)} frames, labels {st}")
    n = len(imgs)
    fs = FrameSet(np.stack(imgs) if n else np.zeros((0, STORE[1], STORE[0], 3), np.uint8), objs, igns,
                  np.zeros(n, bool), ["real"] * n, scene, ["hard"] * n)
    return fs, stats
