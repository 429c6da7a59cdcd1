"""Top-down pose: person crops in, 17 COCO keypoints per person out, in frame pixels.

numpy only, so training (``distill.pose``), evaluation, benchmarks and the device cut, scale and
decode the same way:

    crops, tf = person_crops(frame_bgr, boxes, size=(64, 128))   # (N, 128, 64, 3) uint8 BGR + (N, 4)
    x = preprocess(crops)                                       # (N, 3, 128, 64) float32, RGB / 255
    kp = decode(session.run(None, {"crops": x})[0], tf)         # (N, 17, 3): x, y px, confidence

The crop geometry is the PPE classifier's (:mod:`runtime.ppe`): the person box grows by
``MARGIN`` per side, is clipped to the frame and letterboxed (centred, grey) into the model's
input. ``tf`` records that mapping per crop as an (N, 6) array ``x1, y1, sx, sy, ox, oy``:
frame ``x = x1 + (u - ox) / sx`` for a crop coordinate ``u`` (pixel edges at integers, so pixel
i covers [i, i + 1)); likewise y.

Models output heatmaps at stride ``STRIDE`` (4): one channel per joint, peak ~1 where the joint
is. :func:`decode` takes the argmax, refines it to sub-pixel by a quarter-cell step towards the
higher neighbour, blended with a parabola fit (the usual SimpleBaseline decoding), and reads the
confidence as the peak value clipped to [0, 1]. Cell ``j`` is centred on crop coordinate
``(j + 0.5) * STRIDE``.
"""
from __future__ import annotations

import numpy as np

from .ppe import MARGIN, PAD_VALUE, crop_boxes, resize_bilinear

KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
FLIP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)   # joint index after a mirror
SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
            (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))   # 0-based COCO
DECODER = "pose-heatmap"          # the model card's decoder kind
INPUT_NAME, OUTPUT_NAME = "crops", "heatmaps"
STRIDE = 4
N_JOINTS = 17


# ----------------------------------------------------------------------------- crops

def _fit(w: int, h: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Letterbox of a w x h region into size=(W, H): the scaled size and the centring offset
    (the same arithmetic as :func:`runtime.ppe.letterbox`)."""
    out_w, out_h = size
    if w <= 0 or h <= 0:
        return 0, 0, 0, 0
    s = min(out_w / w, out_h / h)
    nw, nh = max(1, min(out_w, int(round(w * s)))), max(1, min(out_h, int(round(h * s))))
    return nw, nh, (out_w - nw) // 2, (out_h - nh) // 2


def crop_transforms(boxes, frame_shape, size: tuple[int, int], margin=MARGIN) -> np.ndarray:
    """(N, 6) float64 ``x1, y1, sx, sy, ox, oy`` mapping crop coordinates to frame pixels."""
    cb = crop_boxes(boxes, frame_shape, margin)
    out = np.zeros((len(cb), 6), np.float64)
    for i, (x1, y1, x2, y2) in enumerate(cb):
        w, h = int(x2 - x1), int(y2 - y1)
        nw, nh, ox, oy = _fit(w, h, size)
        out[i] = (x1, y1, nw / w if w else 1.0, nh / h if h else 1.0, ox, oy)
    return out


def person_crops(frame: np.ndarray, boxes, size: tuple[int, int] = (64, 128),
                 margin=MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 letterboxed crops in the frame's channel order, and their (N, 6)
    crop -> frame transforms. A box outside the frame gives an all-grey crop."""
    cb = crop_boxes(boxes, frame.shape, margin)
    out = np.full((len(cb), size[1], size[0], 3), PAD_VALUE, np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(cb):
        nw, nh, ox, oy = _fit(int(x2 - x1), int(y2 - y1), size)
        if nw:
            img = resize_bilinear(frame[y1:y2, x1:x2], nw, nh)
            out[i, oy:oy + nh, ox:ox + nw] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return out, crop_transforms(boxes, frame.shape, size, margin)


def preprocess(crops: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR crops -> (N, 3, H, W) float32 RGB in [0, 1] (the model's input)."""
    c = np.asarray(crops)
    if c.ndim == 3:
        c = c[None]
    return np.ascontiguousarray(c[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def to_frame(kp_crop: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """(N, 17, >=2) crop coordinates -> the same array with x, y in frame pixels."""
    out = np.array(kp_crop, np.float32, copy=True)
    t = np.asarray(transforms, np.float64).reshape(-1, 1, 6)
    out[..., 0] = t[..., 0] + (out[..., 0] - t[..., 4]) / t[..., 2]
    out[..., 1] = t[..., 1] + (out[..., 1] - t[..., 5]) / t[..., 3]
    return out


def to_crop(kp_frame: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_frame`."""
    out = np.array(kp_frame, np.float32, copy=True)
    t = np.asarray(transforms, np.float64).reshape(-1, 1, 6)
    out[..., 0] = t[..., 4] + (out[..., 0] - t[..., 0]) * t[..., 2]
    out[..., 1] = t[..., 5] + (out[..., 1] - t[..., 1]) * t[..., 3]
    return out


# ----------------------------------------------------------------------------- decoding

def decode_crop(heatmaps: np.ndarray, stride: int = STRIDE) -> np.ndarray:
    """(N, 17, h, w) heatmaps -> (N, 17, 3) x, y in crop pixels and confidence in [0, 1]."""
    hm = np.asarray(heatmaps, np.float32)
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, h * w)
    idx = flat.argmax(axis=2)
    peak = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    py, px = idx // w, idx % w

    def at(yy, xx):
        yy, xx = np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)
        return np.take_along_axis(flat, (yy * w + xx)[..., None], axis=2)[..., 0]

    left, right = at(py, px - 1), at(py, px + 1)
    up, down = at(py - 1, px), at(py + 1, px)
    dx = _refine(left, peak, right, px > 0, px < w - 1)
    dy = _refine(up, peak, down, py > 0, py < h - 1)
    out = np.empty((n, k, 3), np.float32)
    out[..., 0] = (px + 0.5 + dx) * stride
    out[..., 1] = (py + 0.5 + dy) * stride
    out[..., 2] = np.clip(peak, 0.0, 1.0)
    return out


def _refine(a: np.ndarray, b: np.ndarray, c: np.ndarray, has_a: np.ndarray, has_c: np.ndarray) -> np.ndarray:
    """Sub-cell offset of a peak b between neighbours a (before) and c (after): the vertex of the
    parabola through the three values, limited to half a cell; a quarter cell towards the higher
    neighbour where the parabola is degenerate or a neighbour is missing (at the border)."""
    den = a - 2.0 * b + c
    both = has_a & has_c & (den < -1e-6)
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.where(both, 0.5 * (a - c) / np.where(both, den, -1.0), 0.0)
    quarter = 0.25 * np.sign(np.where(has_c, c, -np.inf) - np.where(has_a, a, -np.inf))
    quarter = np.nan_to_num(quarter)
    return np.where(both, np.clip(vertex, -0.5, 0.5), quarter).astype(np.float32)


def decode(heatmaps: np.ndarray, transforms: np.ndarray, stride: int = STRIDE) -> np.ndarray:
    """(N, 17, h, w) heatmaps and (N, 6) crop transforms -> (N, 17, 3) x, y frame px, confidence."""
    return to_frame(decode_crop(heatmaps, stride), transforms)


def gaussian_heatmaps(kp_crop: np.ndarray, present: np.ndarray, size: tuple[int, int], sigma: float,
                      stride: int = STRIDE) -> np.ndarray:
    """Training targets: (N, 17, H/stride, W/stride) float32 Gaussians (peak 1) centred on the
    crop keypoints where ``present``, zero elsewhere. ``sigma`` in heatmap cells. Decoding a
    target with :func:`decode_crop` gives the keypoint back to within a small fraction of a cell."""
    kp = np.asarray(kp_crop, np.float32).reshape(-1, N_JOINTS, kp_crop.shape[-1])
    w, h = size[0] // stride, size[1] // stride
    gx = (kp[..., 0] / stride - 0.5)[..., None, None]
    gy = (kp[..., 1] / stride - 0.5)[..., None, None]
    xs = np.arange(w, dtype=np.float32)[None, None, None, :]
    ys = np.arange(h, dtype=np.float32)[None, None, :, None]
    g = np.exp(-((xs - gx) ** 2 + (ys - gy) ** 2) / (2.0 * sigma * sigma)).astype(np.float32)
    return g * np.asarray(present, np.float32).reshape(len(kp), N_JOINTS, 1, 1)


def flip_heatmaps(hm: np.ndarray) -> np.ndarray:
    """Heatmaps of the mirrored crop: flip x and swap left/right joints."""
    return np.ascontiguousarray(np.asarray(hm)[:, list(FLIP), :, ::-1])


# ----------------------------------------------------------------------------- drawing (host-side overlays)

def draw(frame: np.ndarray, keypoints: np.ndarray, min_conf: float = 0.3, colour=(0, 255, 255)) -> np.ndarray:
    """A copy of ``frame`` with skeletons drawn (needs OpenCV; for overlays and debugging)."""
    import cv2

    out = frame.copy()
    for kp in np.asarray(keypoints).reshape(-1, N_JOINTS, 3):
        for a, b in SKELETON:
            if kp[a, 2] >= min_conf and kp[b, 2] >= min_conf:
                cv2.line(out, (int(kp[a, 0]), int(kp[a, 1])), (int(kp[b, 0]), int(kp[b, 1])), colour, 1, cv2.LINE_AA)
        for j in range(N_JOINTS):
            if kp[j, 2] >= min_conf:
                c = (0, 0, 255) if j in (5, 7, 9, 11, 13, 15) else ((255, 0, 0) if j in (6, 8, 10, 12, 14, 16) else (0, 255, 0))
                cv2.circle(out, (int(kp[j, 0]), int(kp[j, 1])), 2, c, -1, cv2.LINE_AA)
    return out
