"""Scoring: the classifier beside the colour baseline, on the sim holdout and the real footage.

Both go through ``runtime.ppe`` exactly as the device does: crops by :func:`person_crops`, input
by :func:`preprocess`, probabilities by :func:`decode`; the baseline by :func:`colour_scores`.
A *classifier* here is any callable ``(N, 3, H, W) float32 -> (N, 2) probabilities`` (torch in
training, onnxruntime in the benchmark), so both score the same way.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from runtime import ppe as rt

from .data import HOLDOUT_CLIPS, CropSet, Teacher, _cached, holdout_labels

Classifier = Callable[[np.ndarray], np.ndarray]
EVAL_TEACHER_THRESHOLD = 0.3   # real footage: person boxes for scoring (recall matters more here)
LOOKALIKE_SHIRTS = ("orange-shirt", "yellow-jacket", "rust", "mustard")
CAPLIKE = ("cap", "beanie", "hood")


def onnx_classifier(path) -> Classifier:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> np.ndarray:
        out = [sess.run(None, {rt.INPUT_NAME: x[i:i + 256]})[0] for i in range(0, len(x), 256)]
        return rt.decode(np.concatenate(out)) if out else np.zeros((0, 2), np.float32)
    return run


# ----------------------------------------------------------------------------- sim

def baseline_scores(data: CropSet) -> np.ndarray:
    """(N, 2) hi-vis fractions of head / torso of each stored person (on its context patch)."""
    if not len(data):
        return np.zeros((0, 2), np.float32)
    return np.concatenate([rt.colour_scores(p, b[None]) for p, b in zip(data.patches, data.boxes)])


def fit_thresholds(scores: np.ndarray, labels: np.ndarray, known: np.ndarray) -> tuple[float, float]:
    """The baseline's best thresholds on a TRAIN set (per item, by accuracy): a fair baseline."""
    out = []
    grid = np.round(np.arange(0.01, 0.61, 0.01), 2)
    for j in range(2):
        k = known[:, j]
        accs = [((scores[k, j] >= t) == (labels[k, j] >= 0.5)).mean() if k.any() else 0 for t in grid]
        out.append(float(grid[int(np.argmax(accs))]))
    return out[0], out[1]


def _acc(pred: np.ndarray, labels: np.ndarray, known: np.ndarray) -> dict:
    ok = pred == (labels >= 0.5)
    kh, kv = known[:, 0], known[:, 1]
    any_k = known.any(axis=1)
    both = (ok | ~known).all(axis=1)
    return {
        "n": int(any_k.sum()),
        "helmet": round(float(ok[kh, 0].mean()), 4) if kh.any() else None,
        "vest": round(float(ok[kv, 1].mean()), 4) if kv.any() else None,
        "both": round(float(both[any_k].mean()), 4) if any_k.any() else None,
    }


def sim_report(prob: np.ndarray, base: np.ndarray, thresholds, data: CropSet) -> dict:
    """Accuracy (helmet, vest, both correct) per condition, overall and on hard negatives, for
    the classifier (``prob`` >= 0.5) and the baseline (``base`` >= thresholds)."""
    pm = prob >= 0.5
    pb = base >= np.asarray(thresholds, np.float32)
    known = data.known & (data.meta["box_h"][:, None] >= 0)
    conds = data.meta["condition"]
    out = {"thresholds": [float(t) for t in thresholds], "conditions": {}}
    for c in list(dict.fromkeys(conds.tolist())) + ["all"]:
        m = np.ones(len(data), bool) if c == "all" else conds == c
        out["conditions"][c] = {"model": _acc(pm[m], data.labels[m], known[m]),
                                "baseline": _acc(pb[m], data.labels[m], known[m])}
    out["by_height"] = {}
    for lo, hi in ((0, 48), (48, 96), (96, 10_000)):
        m = (data.meta["box_h"] >= lo) & (data.meta["box_h"] < hi)
        out["by_height"][f"{lo}-{hi}px" if hi < 10_000 else f">={lo}px"] = {
            "model": _acc(pm[m], data.labels[m], known[m]), "baseline": _acc(pb[m], data.labels[m], known[m])}
    hard = {}
    shirt, head = data.meta.get("shirt"), data.meta.get("headwear")
    if shirt is not None:
        m = np.isin(shirt, LOOKALIKE_SHIRTS) & (data.labels[:, 1] < 0.5) & known[:, 1]
        hard["lookalike_shirt_no_vest"] = {"n": int(m.sum()), "model": round(float((~pm[m, 1]).mean()), 4) if m.any() else None,
                                           "baseline": round(float((~pb[m, 1]).mean()), 4) if m.any() else None}
    if head is not None:
        m = np.isin(head, CAPLIKE) & known[:, 0]
        hard["cap_hood_beanie_no_helmet"] = {"n": int(m.sum()), "model": round(float((~pm[m, 0]).mean()), 4) if m.any() else None,
                                             "baseline": round(float((~pb[m, 0]).mean()), 4) if m.any() else None}
    out["hard_negatives"] = hard
    return out


# ----------------------------------------------------------------------------- real footage

def real_boxes(limit: int | None = None) -> dict:
    """Teacher person boxes on every HOLDOUT frame of the holdout clips (cached):
    {clip: [(index, boxes (K, 4)), ...]}."""
    from sim.realdata import clip_info, footage_split, holdout_start, iter_frames, shared_root

    def build():
        teacher = Teacher()
        out = {}
        for clip in HOLDOUT_CLIPS:
            n, rows = clip_info(clip).frames, []
            for idx, _, frame in iter_frames(clip, holdout_start(clip, n) or 0):
                if footage_split(clip, idx, n) != "holdout":
                    continue
                b, _ = teacher(frame, EVAL_TEACHER_THRESHOLD)
                rows.append((idx, b))
                if limit is not None and len(rows) >= limit:
                    break
            out[clip] = rows
        return out

    return _cached("realboxes", f"{limit}|{EVAL_TEACHER_THRESHOLD}|{HOLDOUT_CLIPS}|{shared_root()}", build)


def _frames(clip: str, indices: set[int]):
    from sim.realdata import iter_frames
    if not indices:
        return
    for idx, _, frame in iter_frames(clip, min(indices), max(indices) + 1):
        if idx in indices:
            yield idx, frame


def classify_frame(frame: np.ndarray, boxes: np.ndarray, classify: Classifier, size) -> np.ndarray:
    if not len(boxes):
        return np.zeros((0, 2), np.float32)
    return classify(rt.preprocess(rt.person_crops(frame, boxes, size)))


def real_report(classify: Classifier, size, thresholds, limit: int | None = None) -> dict:
    """Per-frame rates on the held-out footage, classifier beside baseline.

    worker-zone GIF (one worker wearing both): share of frames with a person box where helmet /
    vest / both are predicted present. One-by-one mp4 and its preview GIF holdout (nobody wears
    either): share of such frames where nothing is predicted present. Boxes: the teacher's
    (score >= EVAL_TEACHER_THRESHOLD) on every held-out frame; where the hand-checked labels
    exist, per-person accuracy on their labelled boxes too."""
    boxes = real_boxes(limit)
    out = {"boxes": f"teacher >= {EVAL_TEACHER_THRESHOLD}", "clips": {}}
    thr = np.asarray(thresholds, np.float32)
    for clip, rows in boxes.items():
        want = {i for i, b in rows if len(b)}
        per = {"model": [], "baseline": []}
        for idx, frame in _frames(clip, want):
            b = dict(rows)[idx]
            pm = classify_frame(frame, b, classify, size) >= 0.5
            pb = rt.colour_scores(frame, b) >= thr
            per["model"].append(pm.any(axis=0))
            per["baseline"].append(pb.any(axis=0))
        n = len(per["model"])
        res = {"frames": len(rows), "frames_with_person": n}
        for who, flags in per.items():
            f = np.array(flags, bool).reshape(-1, 2)
            if "worker-zone" in clip:
                res[who] = {"helmet_present": _rate(f[:, 0]), "vest_present": _rate(f[:, 1]),
                            "both_present": _rate(f.all(axis=1))}
            else:
                res[who] = {"helmet_absent": _rate(~f[:, 0]), "vest_absent": _rate(~f[:, 1]),
                            "both_absent": _rate(~f.any(axis=1))}
        out["clips"][clip] = res
    labels = holdout_labels()
    if labels is not None:
        out["labelled"] = labelled_report(labels, classify, size, thr)
    return out


def _rate(x: np.ndarray) -> float | None:
    return round(float(x.mean()), 4) if len(x) else None


def labelled_report(coco: dict, classify: Classifier, size, thr: np.ndarray) -> dict:
    """Per-person accuracy on the hand-checked holdout boxes with a yes/no PPE state."""
    by_img: dict = {}
    for a in coco["annotations"]:
        if not a.get("ignore"):
            by_img.setdefault(a["image_id"], []).append(a)
    imgs = {im["id"]: im for im in coco["images"]}
    per_clip: dict = {}
    for img_id, anns in sorted(by_img.items()):
        im = imgs[img_id]
        per_clip.setdefault(im["clip"], []).append((im["frame_index"], anns))
    out = {}
    for clip, items in per_clip.items():
        rows = dict(items)
        acc = {"model": [[], []], "baseline": [[], []]}
        for idx, frame in _frames(clip, set(rows)):
            anns = rows[idx]
            b = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
            pm = classify_frame(frame, b, classify, size) >= 0.5
            pb = rt.colour_scores(frame, b) >= thr
            for k, a in enumerate(anns):
                for j, item in enumerate(("helmet", "vest")):
                    if a.get(item) in ("yes", "no"):
                        truth = a[item] == "yes"
                        acc["model"][j].append(pm[k, j] == truth)
                        acc["baseline"][j].append(pb[k, j] == truth)
        out[clip] = {who: {"helmet": _rate(np.array(v[0], bool)), "vest": _rate(np.array(v[1], bool)),
                           "n": [len(v[0]), len(v[1])]} for who, v in acc.items()}
    return out
