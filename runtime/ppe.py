"""Per-person PPE: crops, the classifier's pre- and post-processing, and the colour baseline.

numpy (plus OpenCV's resize where installed, matching the numpy reference), so training
(``distill.ppe``), evaluation, benchmarks and the device all cut, scale and decode the same way:

    crops = person_crops(frame_bgr, boxes, size=(64, 128))   # (N, 128, 64, 3) uint8, BGR, letterboxed
    x = preprocess(crops)                                   # (N, 3, 128, 64) float32, RGB / 255
    p = decode(session.run(None, {"crops": x})[0])          # (N, 2) P(helmet), P(vest)

    flags = colour_baseline(frame_bgr, boxes)               # (N, 2) bool: hi-vis pixels on head / torso

Geometry is in fractions of the person box: the *head* region is the top of the box across its
whole width (heads sit anywhere across a walking person's box), the *torso* region the middle
band where a vest is worn. Both are clipped to the frame, so a person at the edge gives smaller
(possibly empty) regions, never an index error.
"""
from __future__ import annotations

import numpy as np

try:  # a runtime dependency; the crops fall back to the numpy reference without it
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None

CLASSES = ("helmet", "vest")
DECODER = "ppe-sigmoid"           # the model card's decoder kind: (N, 2) logits -> sigmoid
INPUT_NAME, OUTPUT_NAME = "crops", "logits"
PAD_VALUE = 114                   # letterbox fill (grey), as the detectors use
MARGIN = (0.10, 0.05)             # the person box grows by this fraction of its width / height per side
HEAD_REGION = (0.0, 0.0, 1.0, 0.22)       # x0, y0, x1, y1 as fractions of the person box
TORSO_REGION = (0.15, 0.17, 0.85, 0.55)
# the colour baseline: hue (degrees) from orange through yellow to lime, strongly saturated, lit
HIVIS_HUE_DEG = (8.0, 85.0)
HIVIS_MIN_SAT = 0.55
HIVIS_MIN_VAL = 0.35
BASELINE_THRESHOLDS = (0.12, 0.20)        # hi-vis fraction of the head / torso region that flags an item


# ----------------------------------------------------------------------------- geometry

def _boxes(boxes) -> np.ndarray:
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def region_boxes(boxes, fractions, frame_shape) -> np.ndarray:
    """(N, 4) integer pixel boxes ``x1 y1 x2 y2`` (exclusive right/bottom) of a region given as
    box fractions ``(x0, y0, x1, y1)``, clipped to a frame of ``frame_shape`` (h, w, ...)."""
    b = _boxes(boxes)
    h, w = frame_shape[:2]
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    fx0, fy0, fx1, fy1 = fractions
    r = np.stack([b[:, 0] + fx0 * bw, b[:, 1] + fy0 * bh, b[:, 0] + fx1 * bw, b[:, 1] + fy1 * bh], axis=1)
    r = np.stack([np.floor(r[:, 0]), np.floor(r[:, 1]), np.ceil(r[:, 2]), np.ceil(r[:, 3])], axis=1)
    r[:, [0, 2]] = r[:, [0, 2]].clip(0, w)
    r[:, [1, 3]] = r[:, [1, 3]].clip(0, h)
    r[:, 2] = np.maximum(r[:, 2], r[:, 0])
    r[:, 3] = np.maximum(r[:, 3], r[:, 1])
    return r.astype(np.int64)


def head_boxes(boxes, frame_shape) -> np.ndarray:
    return region_boxes(boxes, HEAD_REGION, frame_shape)


def torso_boxes(boxes, frame_shape) -> np.ndarray:
    return region_boxes(boxes, TORSO_REGION, frame_shape)


def crop_boxes(boxes, frame_shape, margin=MARGIN) -> np.ndarray:
    """The pixels a person crop is cut from: the box grown by ``margin``, clipped to the frame."""
    mx, my = margin
    return region_boxes(boxes, (-mx, -my, 1.0 + mx, 1.0 + my), frame_shape)


# ----------------------------------------------------------------------------- resampling

def _block_mean(img: np.ndarray, k: int) -> np.ndarray:
    """Average k x k blocks (anti-aliasing before a large downscale); edges are trimmed."""
    h, w = (img.shape[0] // k) * k, (img.shape[1] // k) * k
    if h == 0 or w == 0:
        return img
    v = img[:h, :w].astype(np.float32).reshape(h // k, k, w // k, k, -1)
    return v.mean(axis=(1, 3))


def resize_bilinear(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Bilinear resize with pixel-centre alignment (OpenCV's INTER_LINEAR convention); downscales
    by 2x or more are block-averaged first. Returns float32 (h, w, c).

    Runs on OpenCV (INTER_AREA at an integer factor is exactly the block mean; INTER_LINEAR on
    float32 the same interpolation), 10x faster than :func:`resize_bilinear_numpy`, the reference
    it matches to 5e-3 of 255 (tests/runtime/test_ppe.py); the numpy one serves where OpenCV is absent."""
    if cv2 is None:
        return resize_bilinear_numpy(img, out_w, out_h)
    src = img if img.ndim == 3 else img[..., None]
    k = int(min(src.shape[0] / max(out_h, 1), src.shape[1] / max(out_w, 1)) // 2) * 2
    if k >= 2:
        h, w = (src.shape[0] // k) * k, (src.shape[1] // k) * k
        src = cv2.resize(src[:h, :w].astype(np.float32), (w // k, h // k), interpolation=cv2.INTER_AREA)
    else:
        src = src.astype(np.float32)
    return cv2.resize(src, (out_w, out_h), interpolation=cv2.INTER_LINEAR).reshape(out_h, out_w, -1)


def resize_bilinear_numpy(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """The reference of :func:`resize_bilinear` in plain numpy."""
    src = img if img.ndim == 3 else img[..., None]
    k = int(min(src.shape[0] / max(out_h, 1), src.shape[1] / max(out_w, 1)) // 2) * 2
    src = _block_mean(src, k) if k >= 2 else src.astype(np.float32)
    h, w = src.shape[:2]
    ys = ((np.arange(out_h) + 0.5) * (h / out_h) - 0.5).clip(0, h - 1)
    xs = ((np.arange(out_w) + 0.5) * (w / out_w) - 0.5).clip(0, w - 1)
    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0).astype(np.float32)[:, None, None], (xs - x0).astype(np.float32)[None, :, None]
    top = src[y0][:, x0] * (1 - wx) + src[y0][:, x1] * wx
    bot = src[y1][:, x0] * (1 - wx) + src[y1][:, x1] * wx
    return top * (1 - wy) + bot * wy


def letterbox(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``img`` (h, w, 3 uint8) to fit ``size`` = (width, height) keeping its aspect, centred
    on a grey canvas. An empty image gives an all-grey crop."""
    out_w, out_h = size
    canvas = np.full((out_h, out_w, 3), PAD_VALUE, np.uint8)
    h, w = img.shape[:2]
    if h == 0 or w == 0:
        return canvas
    s = min(out_w / w, out_h / h)
    nw, nh = max(1, min(out_w, int(round(w * s)))), max(1, min(out_h, int(round(h * s))))
    x0, y0 = (out_w - nw) // 2, (out_h - nh) // 2
    canvas[y0:y0 + nh, x0:x0 + nw] = np.clip(resize_bilinear(img, nw, nh) + 0.5, 0, 255).astype(np.uint8)
    return canvas


def person_crops(frame: np.ndarray, boxes, size: tuple[int, int] = (64, 128), margin=MARGIN) -> np.ndarray:
    """(N, H, W, 3) uint8 letterboxed person crops, in the frame's channel order (BGR)."""
    cb = crop_boxes(boxes, frame.shape, margin)
    out = np.empty((len(cb), size[1], size[0], 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(cb):
        out[i] = letterbox(frame[y1:y2, x1:x2], size)
    return out


def preprocess(crops: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR crops -> (N, 3, H, W) float32 RGB in [0, 1] (the model's input)."""
    c = np.asarray(crops)
    if c.ndim == 3:
        c = c[None]
    return np.ascontiguousarray(c[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def decode(logits: np.ndarray) -> np.ndarray:
    """(N, 2) (or (N, 2, 1, 1)) logits -> (N, 2) probabilities of helmet and vest."""
    z = np.asarray(logits, np.float64).reshape(len(logits), -1)[:, :len(CLASSES)]
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


# ----------------------------------------------------------------------------- colour baseline

def hsv(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1], from BGR uint8."""
    f = np.asarray(bgr, np.float32) / 255.0
    b, g, r = f[..., 0], f[..., 1], f[..., 2]
    v = f.max(axis=-1)
    c = v - f.min(axis=-1)
    s = np.where(v > 0, c / np.maximum(v, 1e-6), 0.0)
    cz = np.maximum(c, 1e-6)
    h = np.where(v == r, ((g - b) / cz) % 6.0, np.where(v == g, (b - r) / cz + 2.0, (r - g) / cz + 4.0))
    h = np.where(c > 0, h * 60.0, 0.0)
    return h, s, v


def hivis_mask(bgr: np.ndarray) -> np.ndarray:
    """Pixels with a hi-vis colour: orange, yellow or lime, strongly saturated and lit."""
    h, s, v = hsv(bgr)
    return (h >= HIVIS_HUE_DEG[0]) & (h <= HIVIS_HUE_DEG[1]) & (s >= HIVIS_MIN_SAT) & (v >= HIVIS_MIN_VAL)


def hivis_fractions(frame: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(N,) fraction of hi-vis pixels inside each integer region box (0 for an empty region)."""
    out = np.zeros(len(regions), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(regions, np.int64).reshape(-1, 4)):
        patch = frame[y1:y2, x1:x2]
        if patch.size:
            out[i] = float(hivis_mask(patch).mean())
    return out


def colour_scores(frame: np.ndarray, boxes) -> np.ndarray:
    """(N, 2) hi-vis pixel fraction in the head and torso regions of each person box."""
    return np.stack([hivis_fractions(frame, head_boxes(boxes, frame.shape)),
                     hivis_fractions(frame, torso_boxes(boxes, frame.shape))], axis=1).reshape(-1, 2)


def colour_baseline(frame: np.ndarray, boxes, thresholds=BASELINE_THRESHOLDS) -> np.ndarray:
    """(N, 2) bool: helmet / vest flagged where the hi-vis fraction reaches its threshold."""
    return colour_scores(frame, boxes) >= np.asarray(thresholds, np.float32)
