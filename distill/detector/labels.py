"""Pseudo-labels for real training frames: teacher detections fused with temporal evidence.

Two label sets over the *same* frames, so KD vs no-KD differs only in the teacher's signal:

``kd``    teacher boxes (letterbox + crops) linked into IoU tracks; a track with one strong hit
          (>= STRONG) or MIN_WEAK weak ones (>= WEAK) is confirmed, and its gaps up to MAX_GAP
          frames are filled by linear interpolation. Foreground-blob tracks (median background)
          that touch a confirmed teacher box become people too, so frames where the teacher
          misses a confirmed person still get a box. Unconfirmed teacher boxes and blobs are
          *ignored* (no loss), never used as negatives.
``nokd``  the same blob tracks without the teacher: a blob track is a person when it lasts
          >= NOKD_MIN_LEN frames and its median height/width >= NOKD_MIN_ASPECT (upright);
          other blobs are ignored.
"""
from __future__ import annotations

import numpy as np

STRONG, WEAK, MIN_WEAK = 0.5, 0.15, 3
MAX_GAP = 8
LINK_IOU = 0.3
NOKD_MIN_LEN, NOKD_MIN_ASPECT = 5, 1.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-6)


def link(boxes: list[np.ndarray], max_gap: int = 2, min_iou: float = LINK_IOU) -> list[np.ndarray]:
    """Greedy IoU linking over frames. Returns per frame an (N,) array of track ids."""
    ids: list[np.ndarray] = []
    active: dict[int, tuple[int, np.ndarray]] = {}   # id -> (last frame, last box)
    next_id = 0
    for t, b in enumerate(boxes):
        b = np.asarray(b, np.float32).reshape(-1, 4)
        tid = np.full(len(b), -1, np.int64)
        live = [(k, v) for k, v in active.items() if t - v[0] <= max_gap + 1]
        if live and len(b):
            m = iou_matrix(b, np.stack([v[1] for _, v in live]))
            while m.size and m.max() >= min_iou:
                i, j = np.unravel_index(int(m.argmax()), m.shape)
                tid[i] = live[j][0]
                m[i, :] = -1
                m[:, j] = -1
        for i in range(len(b)):
            if tid[i] < 0:
                tid[i] = next_id
                next_id += 1
            active[int(tid[i])] = (t, b[i])
        ids.append(tid)
    return ids


def _tracks(ids: list[np.ndarray]) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list[tuple[int, int]]] = {}
    for t, tid in enumerate(ids):
        for i, k in enumerate(tid.tolist()):
            out.setdefault(k, []).append((t, i))
    return out


def fuse_kd(teacher: list[tuple[np.ndarray, np.ndarray]], blobs: list[np.ndarray]
            ) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """KD labels per frame: (person boxes, ignore boxes) lists, and counts of where boxes came from."""
    n = len(teacher)
    tb = [np.asarray(b, np.float32).reshape(-1, 4)[np.asarray(s) >= WEAK] for b, s in teacher]
    ts = [np.asarray(s, np.float32)[np.asarray(s) >= WEAK] for _, s in teacher]
    tids = link(tb, max_gap=MAX_GAP)
    labels = [[] for _ in range(n)]
    ignore = [[] for _ in range(n)]
    stats = {"teacher": 0, "interpolated": 0, "blob": 0, "ignored": 0}
    for _, members in _tracks(tids).items():
        sc = np.array([ts[t][i] for t, i in members])
        confirmed = sc.max() >= STRONG or (sc >= WEAK).sum() >= MIN_WEAK
        for t, i in members:
            (labels if confirmed else ignore)[t].append(tb[t][i])
            stats["teacher" if confirmed else "ignored"] += 1
        if confirmed:
            for (t0, i0), (t1, i1) in zip(members, members[1:]):
                if 1 < t1 - t0 <= MAX_GAP + 1:
                    for t in range(t0 + 1, t1):
                        a = (t - t0) / (t1 - t0)
                        labels[t].append((1 - a) * tb[t0][i0] + a * tb[t1][i1])
                        stats["interpolated"] += 1
    lab = [np.asarray(x, np.float32).reshape(-1, 4) for x in labels]
    bids = link(blobs, max_gap=2)
    for _, members in _tracks(bids).items():
        hit = any(len(lab[t]) and iou_matrix(blobs[t][i][None], lab[t]).max() >= LINK_IOU for t, i in members)
        for t, i in members:
            box = blobs[t][i]
            near_teacher = len(tb[t]) and iou_matrix(box[None], tb[t]).max() >= LINK_IOU
            near_label = len(lab[t]) and iou_matrix(box[None], lab[t]).max() >= LINK_IOU
            if hit and not near_teacher and not near_label:
                labels[t].append(box)
                stats["blob"] += 1
            elif not near_label:
                ignore[t].append(box)
    return ([np.asarray(x, np.float32).reshape(-1, 4) for x in labels],
            [np.asarray(x, np.float32).reshape(-1, 4) for x in ignore], stats)


def fuse_nokd(blobs: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """no-KD labels per frame from the blob tracks alone (see the module docstring)."""
    n = len(blobs)
    labels = [[] for _ in range(n)]
    ignore = [[] for _ in range(n)]
    stats = {"blob": 0, "ignored": 0}
    for _, members in _tracks(link(blobs, max_gap=2)).items():
        bx = np.stack([blobs[t][i] for t, i in members])
        aspect = np.median((bx[:, 3] - bx[:, 1]) / np.maximum(bx[:, 2] - bx[:, 0], 1))
        ok = len(members) >= NOKD_MIN_LEN and aspect >= NOKD_MIN_ASPECT
        for t, i in members:
            (labels if ok else ignore)[t].append(blobs[t][i])
            stats["blob" if ok else "ignored"] += 1
    return ([np.asarray(x, np.float32).reshape(-1, 4) for x in labels],
            [np.asarray(x, np.float32).reshape(-1, 4) for x in ignore], stats)
