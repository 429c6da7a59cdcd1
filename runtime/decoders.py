"""Detector output decoders: raw model tensors -> `Detections` in original-frame pixels.

Training, evaluation and deployment all decode through this module, so they cannot disagree.

    lb = Letterbox.fit(frame_size=(w, h), input_size=(640, 640))
    blob = to_nchw_float(lb.apply(frame))                       # YOLO-style input
    dets = decode_yolov8(session.run(None, {name: blob})[0], conf=0.25, iou=0.45, letterbox=lb)

Sections:
- preprocessing: `Letterbox` (resize keeping aspect ratio + pad, and the inverse mapping of boxes),
  `to_nchw_float`, `to_nhwc_rgb`;
- `nms`: class-aware non-maximum suppression, delegated to OpenCV's `cv2.dnn.NMSBoxesBatched`;
- generic decoders: `decode_yolov8` (YOLOv8/YOLO11 heads, `[1, 4+nc, N]`) and `decode_ssd`
  (TF Object Detection API post-processed outputs, as in the SSDLite person teacher);
- our own student's decoder (added by the detector engineer, at the end of this module).

A `class_map` turns a model's class ids into ours: `{model_id: our_id}`; classes it does not list
(or maps to a negative id) are dropped before NMS, so e.g. COCO car/truck/bus can all become one
"machine" class and suppress each other.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .detections import Detections, cxcywh_to_xyxy

ClassMap = Mapping[int, int]


# ============================================================================ preprocessing


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into a model input: scaled by `scale` (input px per frame px),
    then padded by `pad` = (left, top) input pixels. Sizes are (width, height)."""

    scale: float
    pad: tuple[int, int]
    input_size: tuple[int, int]
    frame_size: tuple[int, int]

    @classmethod
    def fit(cls, frame_size: tuple[int, int], input_size: int | tuple[int, int], *,
            centre: bool = True, scale_up: bool = True) -> Letterbox:
        """The letterbox fitting a (w, h) frame into `input_size` (an int means a square).

        `centre=False` pads only right and bottom; `scale_up=False` never enlarges the frame."""
        fw, fh = (int(v) for v in frame_size)
        iw, ih = (int(input_size), int(input_size)) if np.isscalar(input_size) else (int(v) for v in input_size)
        if min(fw, fh, iw, ih) <= 0:
            raise ValueError(f"letterbox of a {fw}x{fh} frame into {iw}x{ih}: sizes must be positive")
        scale = min(iw / fw, ih / fh)
        if not scale_up:
            scale = min(scale, 1.0)
        nw, nh = round(fw * scale), round(fh * scale)
        pad = ((iw - nw) // 2, (ih - nh) // 2) if centre else (0, 0)
        return cls(scale, pad, (iw, ih), (fw, fh))

    @property
    def resized_size(self) -> tuple[int, int]:
        """(w, h) of the frame's image inside the input, before padding."""
        return round(self.frame_size[0] * self.scale), round(self.frame_size[1] * self.scale)

    def apply(self, image: np.ndarray, colour: int | tuple[int, ...] = 114,
              interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """The letterboxed image (same channels and dtype as `image`)."""
        h, w = image.shape[:2]
        if (w, h) != self.frame_size:
            raise ValueError(f"letterbox fitted for a {self.frame_size} frame, given {(w, h)}")
        nw, nh = self.resized_size
        resized = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=interpolation)
        iw, ih = self.input_size
        out = np.empty((ih, iw, *image.shape[2:]), image.dtype)
        out[...] = colour
        left, top = self.pad
        out[top:top + nh, left:left + nw] = resized
        return out

    def to_frame(self, xyxy: np.ndarray, clip: bool = True) -> np.ndarray:
        """(N, 4) boxes in input pixels -> frame pixels (clipped to the frame by default)."""
        b = np.asarray(xyxy, np.float32).reshape(-1, 4)
        shift = np.array([*self.pad, *self.pad], np.float32)
        out = (b - shift) / np.float32(self.scale)
        if clip:
            fw, fh = self.frame_size
            out = np.clip(out, 0, np.array([fw, fh, fw, fh], np.float32))
        return out

    def to_input(self, xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) boxes in frame pixels -> input pixels (the inverse of `to_frame`)."""
        b = np.asarray(xyxy, np.float32).reshape(-1, 4)
        return b * np.float32(self.scale) + np.array([*self.pad, *self.pad], np.float32)


def letterbox(image: np.ndarray, input_size: int | tuple[int, int], *, centre: bool = True,
              scale_up: bool = True, colour: int | tuple[int, ...] = 114) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio and pad to `input_size`; returns (image, Letterbox)."""
    h, w = image.shape[:2]
    lb = Letterbox.fit((w, h), input_size, centre=centre, scale_up=scale_up)
    return lb.apply(image, colour), lb


def to_nchw_float(image_bgr: np.ndarray, scale: float = 1 / 255) -> np.ndarray:
    """HWC BGR uint8 -> [1, 3, H, W] float32 RGB times `scale` (the YOLO input blob)."""
    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32)
    rgb *= np.float32(scale)
    return rgb[None]


def to_nhwc_rgb(image_bgr: np.ndarray) -> np.ndarray:
    """HWC BGR uint8 -> [1, H, W, 3] uint8 RGB (TF Object Detection API graphs such as the SSD teacher)."""
    return np.ascontiguousarray(image_bgr[:, :, ::-1])[None]


# ============================================================================ NMS


def nms(xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray | None = None,
        iou: float = 0.45, max_det: int | None = None) -> np.ndarray:
    """Indices of the boxes kept by non-maximum suppression, best score first.

    With `class_id`, boxes of different classes never suppress each other
    (`cv2.dnn.NMSBoxesBatched`); without, it is class-agnostic (`cv2.dnn.NMSBoxes`).
    OpenCV keeps only scores above 0, so a zero-score box is always dropped."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    if len(b) == 0:
        return np.zeros(0, np.intp)
    xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
    s = np.asarray(scores, np.float32).ravel()
    top_k = int(max_det) if max_det else 0
    if class_id is None:
        keep = cv2.dnn.NMSBoxes(xywh, s, 0.0, float(iou), top_k=top_k)
    else:
        keep = cv2.dnn.NMSBoxesBatched(xywh, s, np.asarray(class_id, np.int32).ravel(), 0.0, float(iou),
                                       top_k=top_k)
    keep = np.asarray(keep, np.intp).ravel()
    # OpenCV orders by score already; make it explicit (and stable) for callers that rely on it
    keep = keep[np.argsort(-s[keep], kind="stable")]
    return keep[:top_k] if top_k else keep


def _class_lookup(class_map: ClassMap | None, num_classes: int) -> np.ndarray | None:
    """Model class id -> our id (-1 = drop), as an array indexed by model id."""
    if class_map is None:
        return None
    lut = np.full(num_classes, -1, np.int64)
    for src, dst in class_map.items():
        if 0 <= int(src) < num_classes:
            lut[int(src)] = int(dst)
    return lut


def _finish(xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray, *, iou: float | None, max_det: int,
            class_agnostic: bool, min_size: float, data: dict[str, np.ndarray] | None = None) -> Detections:
    """Drop tiny boxes, run NMS (unless `iou` is None), keep `max_det`: the shared decoder tail."""
    data = data or {}
    wh = xyxy[:, 2:] - xyxy[:, :2]
    ok = (wh >= min_size).all(axis=1)
    xyxy, conf, cls = xyxy[ok], conf[ok], cls[ok]
    data = {k: v[ok] for k, v in data.items()}
    if iou is not None:
        keep = nms(xyxy, conf, None if class_agnostic else cls, iou, max_det)
    else:
        keep = np.argsort(-conf, kind="stable")[:max_det]
    return Detections.from_arrays(xyxy[keep], conf[keep], cls[keep], data={k: v[keep] for k, v in data.items()})


# ============================================================================ generic decoders


def decode_yolov8(output: np.ndarray | Sequence[np.ndarray], *, conf: float = 0.25, iou: float = 0.45,
                  letterbox: Letterbox | None = None, class_map: ClassMap | None = None,
                  num_classes: int | None = None, max_det: int = 300, class_agnostic: bool = False,
                  min_size: float = 1.0) -> Detections:
    """Decode a YOLOv8/YOLO11 detection head: `[1, 4+nc, N]` (as exported) or `[1, N, 4+nc]`.

    Each of the N candidates is (cx, cy, w, h) in input pixels followed by nc class scores
    (already sigmoid, no objectness). The class is the arg-max score; candidates under `conf`
    are dropped, then those whose class `class_map` does not keep, then boxes thinner than
    `min_size` frame pixels; class-aware NMS at `iou` (None: none) keeps at most `max_det`.
    With `letterbox`, boxes are mapped back to (and clipped to) the original frame; without it
    they stay in input pixels.

    The channel axis is the one of size 4 + `num_classes` if given, else the smaller axis
    (N, the number of anchors, is in the thousands).
    """
    out = np.asarray(output[0] if isinstance(output, (list, tuple)) else output, np.float32)
    if out.ndim == 3:
        if out.shape[0] != 1:
            raise ValueError(f"decode_yolov8 decodes one image; got batch {out.shape[0]}")
        out = out[0]
    if out.ndim != 2:
        raise ValueError(f"YOLO output must be [1, 4+nc, N] or [1, N, 4+nc]; got {np.shape(output)}")
    if num_classes is not None:
        c = 4 + num_classes
        if out.shape[0] == c and out.shape[1] != c:
            out = out.T
        elif out.shape[1] != c:
            raise ValueError(f"YOLO output {out.shape} has no axis of 4 + {num_classes} classes")
    elif out.shape[0] < out.shape[1]:
        out = out.T                                    # -> (N, 4+nc)
    if out.shape[1] < 5:
        raise ValueError(f"YOLO output needs 4 box channels and at least one class; got {out.shape[1]} channels")
    scores = out[:, 4:]
    cls = scores.argmax(axis=1)
    best = scores[np.arange(len(scores)), cls]
    keep = best >= conf
    boxes, best, cls = out[keep, :4], best[keep], cls[keep].astype(np.int64)
    lut = _class_lookup(class_map, scores.shape[1])
    if lut is not None:
        cls = lut[cls]
        mapped = cls >= 0
        boxes, best, cls = boxes[mapped], best[mapped], cls[mapped]
    xyxy = cxcywh_to_xyxy(boxes)
    if letterbox is not None:
        xyxy = letterbox.to_frame(xyxy)
    return _finish(xyxy, best, cls, iou=iou, max_det=max_det, class_agnostic=class_agnostic, min_size=min_size)


def decode_ssd(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray | None = None, *,
               conf: float = 0.3, iou: float | None = None, letterbox: Letterbox | None = None,
               frame_size: tuple[int, int] | None = None, class_map: ClassMap | None = None,
               max_det: int = 100, class_agnostic: bool = False, min_size: float = 2.0) -> Detections:
    """Decode post-processed SSD outputs (TF Object Detection API layout, e.g. the SSDLite person teacher).

    boxes: `[N, 4]` or `[1, N, 4]`, `ymin, xmin, ymax, xmax` normalised to [0, 1] of the image
    the model was given. scores: `[N]` or `[1, N]`. classes: `[N]` or `[1, N]` (TF label ids,
    1-based: the teacher's person is 1), or None for a single class 0.

    The model input was either the frame itself (pass `frame_size=(w, h)`) or a letterboxed
    frame (pass its `letterbox`); boxes come back in frame pixels, clipped. Candidates under
    `conf`, unmapped classes and boxes thinner than `min_size` pixels are dropped. Such graphs
    run NMS inside already, so `iou=None` skips it; give a value to suppress again (class-aware).
    """
    if (letterbox is None) == (frame_size is None):
        raise ValueError("decode_ssd needs exactly one of letterbox= or frame_size=")
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    s = np.asarray(scores, np.float32).ravel()
    if len(s) != len(b):
        raise ValueError(f"decode_ssd: {len(b)} boxes but {len(s)} scores")
    if classes is None:
        c = np.zeros(len(s), np.int64)
    else:
        c = np.rint(np.asarray(classes, np.float32).ravel()).astype(np.int64)
        if len(c) != len(b):
            raise ValueError(f"decode_ssd: {len(b)} boxes but {len(c)} classes")
    keep = s >= conf
    b, s, c = b[keep], s[keep], c[keep]
    if class_map is not None:
        c = np.array([class_map.get(int(k), -1) for k in c], np.int64).reshape(-1)
        mapped = c >= 0
        b, s, c = b[mapped], s[mapped], c[mapped]
    xyxy = b[:, [1, 0, 3, 2]]                          # -> xmin, ymin, xmax, ymax (normalised)
    if letterbox is not None:
        iw, ih = letterbox.input_size
        xyxy = letterbox.to_frame(xyxy * np.array([iw, ih, iw, ih], np.float32))
    else:
        fw, fh = frame_size
        xyxy = np.clip(xyxy, 0, 1) * np.array([fw, fh, fw, fh], np.float32)
    return _finish(xyxy, s, c, iou=iou, max_det=max_det, class_agnostic=class_agnostic, min_size=min_size)


# ============================================================================ our student detector
#
# The project's own student detector decoder belongs here (owned by the detector engineer, added
# with the student itself): `decode_student(outputs, *, conf, iou, letterbox, ...) -> Detections`.
# Reuse `Letterbox` for the input mapping and `_finish` / `nms` for the tail, so every decoder
# drops, suppresses and clips boxes the same way, and keep its class names on the model card.
