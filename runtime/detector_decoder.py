"""Decoder of sitewarden's own student detectors (``decoder: centernet-ltrb`` on the model card).

The student's ONNX graph ends in two raw convolution maps, so an NPU runs convolutions only:

    heatmap  [1, C, H/s, W/s]  class logits per grid cell (C classes, e.g. person, machine)
    box      [1, 4, H/s, W/s]  log distances (left, top, right, bottom) from the cell centre to the
                               box edges, in units of the stride ``s``

Decoding (numpy + OpenCV, no torch; training-side evaluation calls this same function):

1. sigmoid of the heatmap;
2. peaks: a cell is kept if it is the maximum of its 3x3 neighbourhood in its class (the
   CenterNet "max-pool NMS", done with ``cv2.dilate``) and its score is at least ``conf``;
3. box of a peak at cell (i, j): centre ``((j + 0.5) s, (i + 0.5) s)``, edges at
   ``s * exp(clip(d, -LOG_CLIP, LOG_CLIP))`` from it, in input pixels;
4. back to frame pixels through the :class:`~runtime.decoders.Letterbox` (if given), then the
   shared decoder tail of ``runtime.decoders`` (drop thin boxes, class-aware NMS with
   ``cv2.dnn.NMSBoxesBatched``, keep ``max_det``).

    lb = Letterbox.fit((w, h), 256)
    heat, box = session.run(None, {"images": preprocess(frame, lb)})
    dets = decode_student(heat, box, stride=8, conf=0.3, letterbox=lb)
"""
from __future__ import annotations

import cv2
import numpy as np

from .decoders import Letterbox, _finish, to_nchw_float
from .detections import Detections

DECODER_KIND = "centernet-ltrb"
LOG_CLIP = 6.0


def preprocess(frame_bgr: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """A BGR frame -> the student's input: letterboxed (pad 114), RGB, /255, NCHW float32."""
    return to_nchw_float(letterbox.apply(frame_bgr))


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))).astype(np.float32)


def peaks(scores: np.ndarray, conf: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class, row, col) of every local 3x3 maximum of ``scores`` [C, H, W] that is >= ``conf``."""
    scores = np.asarray(scores, np.float32)
    kernel = np.ones((3, 3), np.uint8)
    hits = []
    for c in range(scores.shape[0]):
        s = scores[c]
        m = cv2.dilate(s, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0.0)
        hits.append((s >= m) & (s >= conf))
    return np.nonzero(np.stack(hits)) if hits else (np.zeros(0, np.intp),) * 3


def decode_student(heatmap: np.ndarray, box: np.ndarray, *, stride: int = 8, conf: float = 0.3,
                   iou: float | None = 0.5, letterbox: Letterbox | None = None, max_det: int = 100,
                   class_agnostic: bool = False, min_size: float = 2.0) -> Detections:
    """Decode one image's raw student outputs into :class:`Detections` (frame pixels with
    ``letterbox``, else input pixels). ``heatmap`` is [1, C, h, w] or [C, h, w] logits, ``box``
    [1, 4, h, w] or [4, h, w] log-distances in strides. ``data['score_map']`` is not kept."""
    heat = np.asarray(heatmap, np.float32)
    reg = np.asarray(box, np.float32)
    if heat.ndim == 4:
        if heat.shape[0] != 1:
            raise ValueError(f"decode_student decodes one image; got batch {heat.shape[0]}")
        heat = heat[0]
    if reg.ndim == 4:
        reg = reg[0]
    if heat.ndim != 3 or reg.shape != (4, *heat.shape[1:]):
        raise ValueError(f"student outputs must be heatmap [C,h,w] and box [4,h,w] on the same grid; "
                         f"got {heat.shape} and {reg.shape}")
    scores = sigmoid(heat)
    cls, rows, cols = peaks(scores, conf)
    conf_v = scores[cls, rows, cols]
    d = np.exp(np.clip(reg[:, rows, cols].T, -LOG_CLIP, LOG_CLIP)) * np.float32(stride)  # (N, 4) l t r b
    cx = (cols.astype(np.float32) + 0.5) * stride
    cy = (rows.astype(np.float32) + 0.5) * stride
    xyxy = np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], axis=1).astype(np.float32)
    if letterbox is not None:
        xyxy = letterbox.to_frame(xyxy)
    return _finish(xyxy.reshape(-1, 4), conf_v.astype(np.float32), cls.astype(np.int64), iou=iou,
                   max_det=max_det, class_agnostic=class_agnostic, min_size=min_size)


def encode_box(xyxy: np.ndarray, row: int, col: int, stride: int) -> np.ndarray:
    """The inverse of step 3 for one box and cell (tests and golden data): log-distances in strides."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    cx, cy = (col + 0.5) * stride, (row + 0.5) * stride
    return np.log(np.maximum(np.array([cx - x1, cy - y1, x2 - cx, y2 - cy], np.float64), 1e-6) / stride
                  ).astype(np.float32)
