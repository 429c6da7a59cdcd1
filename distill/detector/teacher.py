"""The real SSDLite person teacher and the temporal evidence its pseudo-labels are fused with.

Teacher views per frame (``../shared/models/ssdlite-voc-person/teacher.onnx``, RGB uint8, any size):
the whole frame letterboxed to a square, plus overlapping square crops along the long side
(each an upscaled view: higher recall on small and high-angle people). Crop boxes that touch an
inner crop edge are dropped (cut people); the views are fused by NMS.

Background evidence: a static camera's median background and the foreground blobs against it
(the same rule as ``tools/label_holdout.py``, which made the holdout proposals).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from runtime.decoders import Letterbox, decode_ssd, nms

TEACHER_FILE = "teacher.onnx"
TEACHER_DIR = ("models", "ssdlite-voc-person")
BG_DIFF_THRESHOLD = 30
BG_MIN_AREA_FRAC = 0.0015
# Frames the median background is taken from where the whole clip's median keeps people (in the
# mp4 people stand at the table most of the time; frames 0..69 show the empty scene).
BACKGROUND_FRAMES: dict[str, tuple[int, int]] = {"one-by-one-person-detection.mp4": (0, 70)}


def teacher_path(dense: bool = False) -> Path:
    from sim.realdata import shared_root
    return shared_root().joinpath(*TEACHER_DIR, "teacher_dense.onnx" if dense else TEACHER_FILE)


@lru_cache(maxsize=2)
def teacher_session(threads: int = 2):
    from compiler.quantize import session
    return session(teacher_path(), threads=threads)


def run_teacher(bgr: np.ndarray, threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Teacher on one frame, letterboxed to a square (pad 0): (N, 4) xyxy frame px, (N,) scores
    (every box the graph keeps above 0.01)."""
    h, w = bgr.shape[:2]
    side = max(h, w)
    lb = Letterbox.fit((w, h), side)
    img = lb.apply(bgr[:, :, ::-1], colour=0)
    sess = teacher_session(threads)
    boxes, scores = sess.run(["detection_boxes:0", "detection_scores:0"], {"image_tensor:0": img[None]})
    d = decode_ssd(boxes[0], scores[0], conf=0.01, letterbox=lb, max_det=100, min_size=1.0)
    return d.xyxy.copy(), d.confidence.copy()


def teacher_views(bgr: np.ndarray, threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Teacher on the letterboxed frame and on three overlapping square crops (long side), fused
    by NMS (IoU 0.5)."""
    h, w = bgr.shape[:2]
    boxes, scores = [], []
    b, s = run_teacher(bgr, threads)
    boxes.append(b)
    scores.append(s)
    side = min(h, w)
    long = max(h, w)
    if long > side * 1.2:
        for k in range(3):
            off = int(round(k * (long - side) / 2))
            crop = bgr[:, off:off + side] if w >= h else bgr[off:off + side]
            b, s = run_teacher(crop, threads)
            if w >= h:
                b = b + np.array([off, 0, off, 0], np.float32)
                lo, hi, axis = off, off + side, (0, 2)
                edge_lo, edge_hi = lo > 0, hi < w
            else:
                b = b + np.array([0, off, 0, off], np.float32)
                lo, hi, axis = off, off + side, (1, 3)
                edge_lo, edge_hi = lo > 0, hi < h
            cut = np.zeros(len(b), bool)
            if edge_lo:
                cut |= b[:, axis[0]] <= lo + 4
            if edge_hi:
                cut |= b[:, axis[1]] >= hi - 4
            boxes.append(b[~cut])
            scores.append(s[~cut])
    b = np.concatenate(boxes).reshape(-1, 4).astype(np.float32)
    s = np.concatenate(scores).astype(np.float32)
    keep = nms(b, s, None, 0.5, 100)
    return b[keep], s[keep]


def median_background(frames: list[np.ndarray]) -> np.ndarray:
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


def foreground_blobs(bgr: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy boxes of foreground blobs against the median background."""
    h, w = bgr.shape[:2]
    diff = np.abs(bgr.astype(np.int16) - background.astype(np.int16)).max(axis=2)
    mask = (diff > BG_DIFF_THRESHOLD).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 15)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = [[x, y, x + bw, y + bh] for x, y, bw, bh, area in stats[1:].tolist()
           if area >= BG_MIN_AREA_FRAC * h * w]
    return np.asarray(out, np.float32).reshape(-1, 4)
