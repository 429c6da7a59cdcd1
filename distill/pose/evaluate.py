"""Pose scores: PCK@0.2 (a joint is correct within 0.2 torso diameters of the truth) per condition,
and running an exported ONNX pose model on crops."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime import pose as rt

PCK_ALPHA = 0.2


def torso_diameter(kp: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) the larger shoulder-to-opposite-hip distance of the true keypoints; 0.35 x the box's
    longer side where those joints are outside the frame."""
    def d(a, b):
        ok = (kp[:, a, 2] > 0) & (kp[:, b, 2] > 0)
        return np.where(ok, np.hypot(kp[:, a, 0] - kp[:, b, 0], kp[:, a, 1] - kp[:, b, 1]), 0.0)
    t = np.maximum(d(5, 12), d(6, 11))
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return np.where(t > 0, t, 0.35 * side)


def pck_hits(pred: np.ndarray, truth: np.ndarray, boxes: np.ndarray, alpha: float = PCK_ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """(N, 17) bool hits and (N, 17) bool scored (true joints inside the frame, v > 0)."""
    thr = alpha * torso_diameter(truth, boxes)
    err = np.hypot(pred[..., 0] - truth[..., 0], pred[..., 1] - truth[..., 1])
    scored = truth[..., 2] > 0
    return (err <= thr[:, None]) & scored, scored


def pck_box_hits(pred: np.ndarray, truth: np.ndarray, boxes: np.ndarray, alpha: float = PCK_ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """The lenient variant: within ``alpha`` x the person box's longer side."""
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    err = np.hypot(pred[..., 0] - truth[..., 0], pred[..., 1] - truth[..., 1])
    scored = truth[..., 2] > 0
    return (err <= alpha * side[:, None]) & scored, scored


def _rates(hits: np.ndarray, scored: np.ndarray, conditions: np.ndarray) -> dict:
    out = {"all": round(float(hits.sum() / max(scored.sum(), 1)), 4)}
    for c in sorted(set(conditions.tolist())):
        m = conditions == c
        out[str(c)] = round(float(hits[m].sum() / max(scored[m].sum(), 1)), 4)
    return out


def pck_report(pred: np.ndarray, truth: np.ndarray, boxes: np.ndarray, conditions: np.ndarray) -> dict:
    """{"all": pck, condition: pck, ...} (torso-normalised), the same with the box's longer side
    ("pck_box"), and per-joint PCK, rounded to 4 places."""
    hits, scored = pck_hits(pred, truth, boxes)
    joints = {name: round(float(hits[:, j].sum() / max(scored[:, j].sum(), 1)), 4) for j, name in enumerate(rt.KEYPOINTS)}
    return {"pck": _rates(hits, scored, conditions), "pck_box": _rates(*pck_box_hits(pred, truth, boxes), conditions),
            "per_joint": joints, "persons": int(len(pred)), "joints_scored": int(scored.sum())}


class OnnxPose:
    """An exported pose model: uint8 crops -> heatmaps, through onnxruntime (1 thread)."""

    def __init__(self, path: Path, threads: int = 1):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        self.size = (int(shape[3]), int(shape[2]))

    def heatmaps(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        outs = [self.session.run(None, {rt.INPUT_NAME: rt.preprocess(images[i:i + batch])})[0]
                for i in range(0, len(images), batch)]
        return np.concatenate(outs) if outs else np.zeros((0, rt.N_JOINTS, 1, 1), np.float32)

    def __call__(self, frame: np.ndarray, boxes) -> np.ndarray:
        """(N, 17, 3) keypoints in frame pixels for person boxes in a BGR frame."""
        crops, tf = rt.person_crops(frame, boxes, self.size)
        return rt.decode(self.heatmaps(crops), tf)
