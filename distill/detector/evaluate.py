"""Evaluation of students (through ONNX + ``runtime.detector_decoder``) and of the teacher.

AP50: all-point interpolated average precision at IoU 0.5 over every detection (conf >= 0.01),
greedy matching by score. ``difficult`` / ignored ground truth is neither a hit nor a miss: a
detection matched to it is dropped. Precision and recall are reported at a stated threshold.
"""
from __future__ import annotations

import time

import numpy as np

from runtime.decoders import Letterbox
from runtime.detector_decoder import decode_student, preprocess

from .data import CLASSES, FrameSet, RealHoldout, place
from .labels import iou_matrix
from .model import STRIDE

EVAL_CONF = 0.01
DEPLOY_CONF = 0.3


def match(dets: list[tuple[np.ndarray, np.ndarray]], gts: list[np.ndarray], ignore: list[np.ndarray],
          iou_thr: float = 0.5) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores, is_tp) over all kept detections and the number of counted ground-truth boxes."""
    scores, tps, n_gt = [], [], 0
    for (b, s), g, ig in zip(dets, gts, ignore):
        g = np.asarray(g, np.float32).reshape(-1, 4)
        ig = np.asarray(ig, np.float32).reshape(-1, 4)
        n_gt += len(g)
        order = np.argsort(-s, kind="stable")
        b, s = b[order], s[order]
        used = np.zeros(len(g), bool)
        m = iou_matrix(b, g)
        mi = iou_matrix(b, ig)
        for k in range(len(b)):
            best, j = -1.0, -1
            if len(g):
                cand = np.where(~used, m[k], -1.0)
                j = int(cand.argmax())
                best = float(cand[j])
            if best >= iou_thr:
                used[j] = True
                scores.append(s[k])
                tps.append(True)
            elif len(ig) and mi[k].max() >= iou_thr:
                continue
            else:
                scores.append(s[k])
                tps.append(False)
    return np.asarray(scores, np.float32), np.asarray(tps, bool), n_gt


def ap_pr(scores, tps, n_gt, conf: float | None = None) -> dict:
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(tps[order])
    fp = np.cumsum(~tps[order])
    rec = tp / max(n_gt, 1)
    prec = tp / np.maximum(tp + fp, 1)
    if len(scores):
        mpre = np.concatenate([[0.0], prec, [0.0]])
        mrec = np.concatenate([[0.0], rec, [rec[-1]]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        ap = float(np.sum((mrec[1:] - mrec[:-1]) * mpre[1:]))
        f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-9)
        k = int(f1.argmax())
        best = {"threshold": float(scores[order][k]), "precision": float(prec[k]), "recall": float(rec[k]),
                "f1": float(f1[k])}
    else:
        ap, best = 0.0, {"threshold": None, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    out = {"AP50": round(ap, 4), "n_gt": int(n_gt), "best_f1": {k: (round(v, 4) if isinstance(v, float) else v)
                                                                for k, v in best.items()}}
    if conf is not None:
        sel = scores >= conf
        t = int(tps[sel].sum())
        out["at_conf"] = {"threshold": conf, "precision": round(t / max(int(sel.sum()), 1), 4),
                          "recall": round(t / max(n_gt, 1), 4)}
    return out


class OnnxStudent:
    """A student ONNX file run through onnxruntime and decoded by the runtime decoder."""

    def __init__(self, path, size: int, threads: int = 2):
        from compiler.quantize import session
        self.sess = session(path, threads=threads)
        self.size = size
        self.input = self.sess.get_inputs()[0].name

    def __call__(self, bgr: np.ndarray, conf: float = EVAL_CONF):
        h, w = bgr.shape[:2]
        lb = Letterbox.fit((w, h), self.size)
        heat, box = self.sess.run(None, {self.input: preprocess(bgr, lb)})
        return decode_student(heat, box, stride=STRIDE, conf=conf, iou=0.5, letterbox=lb)


def eval_real(predict, holdout: RealHoldout, conf: float | None = DEPLOY_CONF) -> dict:
    """Person AP50 / P / R of ``predict(bgr) -> (xyxy, scores)`` on the hand-checked holdout."""
    dets, gts, igs = [], [], []
    for img, b, d in zip(holdout.images, holdout.boxes, holdout.difficult):
        xyxy, s = predict(img)
        dets.append((xyxy, s))
        gts.append(b[~d])
        igs.append(b[d])
    r = ap_pr(*match(dets, gts, igs), conf=conf)
    r["frames"] = len(holdout.images)
    r["difficult_boxes"] = int(sum(int(d.sum()) for d in holdout.difficult))
    return r


def student_predict(model: OnnxStudent, cls: int = 0):
    def f(bgr):
        d = model(bgr)
        m = d.class_id == cls
        return d.xyxy[m], d.confidence[m]
    return f


def eval_sim(model: OnnxStudent, frames: FrameSet) -> dict:
    """AP50 per class and per condition on stored sim holdout frames (store px)."""
    per: dict[str, dict] = {}
    preds = [model(img) for img in frames.images]
    conds = sorted(set(frames.condition))
    for ci, cname in enumerate(CLASSES):
        rows = {}
        for cond in ["all", *conds]:
            idx = [i for i, c in enumerate(frames.condition) if cond in ("all", c)]
            dets, gts, igs = [], [], []
            for i in idx:
                d = preds[i]
                m = d.class_id == ci
                dets.append((d.xyxy[m], d.confidence[m]))
                o, g = frames.objects[i], frames.ignore[i]
                gts.append(o[o[:, 4] == ci, :4])
                igs.append(g[(g[:, 4] == ci) | (g[:, 4] < 0), :4])
            rows[cond] = ap_pr(*match(dets, gts, igs))["AP50"]
        per[cname] = rows
    day = [i for i, (c, s) in enumerate(zip(frames.condition, frames.scene)) if c == "day"]
    per["frames"] = len(frames)
    per["day_frames"] = len(day)
    return per


def latency_ms(sess_run, x, runs: int = 30) -> float:
    for _ in range(3):
        sess_run(x)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        sess_run(x)
        ts.append(time.perf_counter() - t)
    return round(1000 * float(np.median(ts)), 2)


def teacher_eval(holdout: RealHoldout, sim: FrameSet | None) -> dict:
    """The teacher letterboxed (its documented best input) on the same holdouts."""
    from .teacher import run_teacher, teacher_session
    out = {"real": eval_real(lambda img: run_teacher(img), holdout, conf=None) if holdout else None}
    if out["real"]:
        out["real"]["note"] = "P/R at the teacher's best-F1 threshold on this holdout (its best threshold)"
    if sim is not None:
        rows = {}
        for cond in ["all", *sorted(set(sim.condition))]:
            idx = [i for i, c in enumerate(sim.condition) if cond in ("all", c)]
            dets, gts, igs = [], [], []
            for i in idx:
                dets.append(run_teacher(sim.images[i]))
                o, g = sim.objects[i], sim.ignore[i]
                gts.append(o[o[:, 4] == 0, :4])
                igs.append(g[g[:, 4] <= 0, :4])
            rows[cond] = ap_pr(*match(dets, gts, igs))["AP50"]
        out["sim_person_AP50"] = rows
    sess = teacher_session(2)
    x = np.zeros((1, 432, 768, 3), np.uint8)
    out["latency_ms"] = latency_ms(lambda a: sess.run(None, {"image_tensor:0": a}), x)
    return out


__all__ = ["OnnxStudent", "eval_real", "eval_sim", "teacher_eval", "student_predict", "latency_ms", "place"]
