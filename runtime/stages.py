"""Model stages: one small adapter per decoder kind, so the pipeline runs any bundled tier.

Each stage takes the onnxruntime session and the tier's `ModelConfig` and does exactly what the
model card says (preprocessing, decoding), through the same functions training used.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import pose as pose_mod
from . import posture as posture_mod
from . import ppe as ppe_mod
from .config import ModelConfig
from .decoders import Letterbox, decode_ssd, decode_yolov8
from .detections import Detections
from .detector_decoder import decode_student, preprocess as student_input

DETECT_CONF = 0.3


class Sessions:
    """onnxruntime sessions by model file, shared by every camera of the device."""

    def __init__(self, image_dir: Path, threads: int):
        self.image_dir = Path(image_dir)
        self.threads = threads
        self._cache: dict[str, ort.InferenceSession] = {}

    def get(self, model: ModelConfig) -> ort.InferenceSession:
        if model.file not in self._cache:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.log_severity_level = 3
            self._cache[model.file] = ort.InferenceSession(str(self.image_dir / model.file), opts,
                                                           providers=["CPUExecutionProvider"])
        return self._cache[model.file]

    def drop_except(self, keep: set[str]) -> None:
        for f in [f for f in self._cache if f not in keep]:
            del self._cache[f]


def _input_hw(model: ModelConfig) -> tuple[int, int]:
    shape = model.inputs[0]["shape"]
    return int(shape[2]), int(shape[3])


def detect(session: ort.InferenceSession, model: ModelConfig, frame: np.ndarray, conf: float = DETECT_CONF) -> Detections:
    """Detections in frame pixels; class ids index `model.classes` (person, machine, ...)."""
    name = model.inputs[0]["name"]
    if model.decoder == "ssd":  # any input size: the graph resizes (symbolic H and W are fine)
        rgb = np.ascontiguousarray(frame[:, :, ::-1])[None]
        outs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {name: rgb})))
        boxes = next(v for k, v in outs.items() if "boxes" in k)[0]
        scores = next(v for k, v in outs.items() if "scores" in k)[0]
        return decode_ssd(boxes, scores, conf=conf, frame_size=frame.shape[1::-1])
    h, w = _input_hw(model)
    if model.decoder == "centernet-ltrb":
        lb = Letterbox.fit(frame.shape[1::-1], (w, h))
        heat, box = session.run(None, {name: student_input(frame, lb)})
        stride = h // heat.shape[2]
        return decode_student(heat, box, stride=stride, conf=conf, letterbox=lb)
    if model.decoder == "yolov8":
        from .decoders import to_nchw_float

        lb = Letterbox.fit(frame.shape[1::-1], (w, h))
        (out,) = session.run(None, {name: to_nchw_float(lb.apply(frame))})
        return decode_yolov8(out, conf=conf, letterbox=lb)
    raise ValueError(f"no decoder '{model.decoder}' for the detector")


def batchable(model: ModelConfig) -> bool:
    """Whether one session call can take several frames: a letterboxed decoder and a free batch axis."""
    first = model.inputs[0]["shape"][0] if model.inputs and model.inputs[0].get("shape") else 1
    return model.decoder in ("centernet-ltrb", "yolov8") and not isinstance(first, int)


def detect_batch(session: ort.InferenceSession, model: ModelConfig, frames: list[np.ndarray],
                 conf: float | list[float] = DETECT_CONF) -> list[Detections]:
    """:func:`detect` on several frames (several cameras) with one session call where the model
    allows (:func:`batchable`), else one call each; the same detections as frame-by-frame."""
    confs = conf if isinstance(conf, list) else [conf] * len(frames)
    if len(frames) <= 1 or not batchable(model):
        return [detect(session, model, f, c) for f, c in zip(frames, confs)]
    h, w = _input_hw(model)
    name = model.inputs[0]["name"]
    lbs = [Letterbox.fit(f.shape[1::-1], (w, h)) for f in frames]
    if model.decoder == "centernet-ltrb":
        heat, box = session.run(None, {name: np.concatenate([student_input(f, lb) for f, lb in zip(frames, lbs)])})
        stride = h // heat.shape[2]
        return [decode_student(heat[i:i + 1], box[i:i + 1], stride=stride, conf=c, letterbox=lb)
                for i, (lb, c) in enumerate(zip(lbs, confs))]
    from .decoders import to_nchw_float

    (out,) = session.run(None, {name: np.concatenate([to_nchw_float(lb.apply(f)) for f, lb in zip(frames, lbs)])})
    return [decode_yolov8(out[i:i + 1], conf=c, letterbox=lb) for i, (lb, c) in enumerate(zip(lbs, confs))]


def crop_size(model: ModelConfig) -> tuple[int, int]:
    h, w = _input_hw(model)
    return w, h


def ppe_probs(session, model: ModelConfig, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, 2) probabilities that helmet and vest are worn."""
    if not len(boxes):
        return np.zeros((0, 2), np.float32)
    crops = ppe_mod.person_crops(frame, boxes, crop_size(model))
    (logits,) = session.run(None, {model.inputs[0]["name"]: ppe_mod.preprocess(crops)})
    return ppe_mod.decode(logits)


def keypoints(session, model: ModelConfig, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, 17, 3) keypoints in frame pixels with a confidence per joint."""
    if not len(boxes):
        return np.zeros((0, 17, 3), np.float32)
    crops, transforms = pose_mod.person_crops(frame, boxes, crop_size(model))
    outs = session.run(None, {model.inputs[0]["name"]: pose_mod.preprocess(crops)})
    return pose_mod.decode(outs[0], transforms)


def postures(session, model: ModelConfig, kps: np.ndarray, boxes: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Posture label and its probability per person."""
    if not len(kps):
        return [], np.zeros(0, np.float32)
    (logits,) = session.run(None, {model.inputs[0]["name"]: posture_mod.features(kps, boxes)})
    probs = posture_mod.decode(logits)
    idx = probs.argmax(axis=1)
    return [posture_mod.CLASSES[i] for i in idx], probs[np.arange(len(idx)), idx]
