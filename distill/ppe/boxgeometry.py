"""How a detector's person boxes differ from the true ones, measured on sim TRAIN frames.

At run time a PPE crop is cut from a *detector* box, but the sim training crops come from ground
truth. This measures, for every true person (>= MIN_BOX_H_TRAIN px tall) that a detector finds
(its best box at IoU >= MATCH_IOU, confidence >= the deploy threshold), the box's offset relative
to the true box: centre shift in box widths / heights and log width / height ratios. Training
(:func:`distill.ppe.train.jitter_box`, with ``Recipe.detector_offsets`` > 0) samples these offsets,
so the crops it learns from wander like the runtime's do. Off in the committed recipes: at seed 0
and 1 torch thread it lifted the large classifier's worker-zone helmet rate from 0.32 (same recipe
without it) to 0.95-1.00 but cost both variants sim holdout accuracy (small 0.774 -> 0.69-0.73). Frames: TRAIN scenes x every condition x TRAIN seeds 0-4 (never the
validation seed, never a holdout seed); detectors: the committed detector students and the shared
SSDLite teacher (the box source of the real footage).

    python -m distill.ppe.boxgeometry      # writes distill/ppe/box_offsets.json (about 5 minutes)
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from . import data as D

OUT = Path(__file__).with_name("box_offsets.json")
SEEDS = (0, 1, 2, 3, 4)             # TRAIN seeds; the last TRAIN seed (5) is the validation seed
FRAMES = (6, 20, 34)
MATCH_IOU = 0.3
DETECTORS = ("det-s256", "det-m320")
FIELDS = ("dx", "dy", "log_w", "log_h")


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(-1, 4)[:, None], b.reshape(-1, 4)[None]
    iw = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
    ih = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(0)
    inter = iw * ih
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def offsets(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, 4) dx, dy (centre shift in true widths / heights), log width and height ratio."""
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    dw, dh = det[:, 2] - det[:, 0], det[:, 3] - det[:, 1]
    return np.stack([((det[:, 0] + det[:, 2]) - (gt[:, 0] + gt[:, 2])) / 2 / gw,
                     ((det[:, 1] + det[:, 3]) - (gt[:, 1] + gt[:, 3])) / 2 / gh,
                     np.log(dw / gw), np.log(dh / gh)], axis=1)


def _match(det: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching by IoU; (gt index, det index) pairs at IoU >= MATCH_IOU."""
    if not len(det) or not len(gt):
        return np.zeros(0, int), np.zeros(0, int)
    m = _iou(gt, det)
    gi, di = [], []
    while True:
        g, d = np.unravel_index(int(m.argmax()), m.shape)
        if m[g, d] < MATCH_IOU:
            break
        gi.append(g)
        di.append(d)
        m[g, :] = -1
        m[:, d] = -1
    return np.array(gi, int), np.array(di, int)


def measure(log=print) -> dict:
    from distill.detector.evaluate import DEPLOY_CONF, OnnxStudent, student_predict
    from sim.render import SimSource

    root = D.ROOT / "models" / "detector"
    predictors = {}
    for name in DETECTORS:
        size = _input_size(root / name)
        predictors[name] = (student_predict(OnnxStudent(root / name / "model.onnx", size, threads=1)), DEPLOY_CONF)
    teacher = D.Teacher()
    predictors["ssdlite-teacher"] = (lambda im: teacher(im, 0.3), None)
    rows = {k: [] for k in predictors}
    n_gt = 0
    t0 = time.perf_counter()
    for scene in D.TRAIN_SCENES:
        for cond in D.CONDITIONS:
            for seed in SEEDS:
                src = SimSource(scene, seed=seed, resolution=D.RESOLUTIONS[seed % len(D.RESOLUTIONS)], condition=cond)
                for i in FRAMES:
                    fr = src.frame(i)
                    tr = fr.truth[fr.truth.is_person]
                    gt = np.asarray(tr.boxes, np.float64).reshape(-1, 4)
                    gt = gt[(gt[:, 3] - gt[:, 1]) >= D.MIN_BOX_H_TRAIN]
                    n_gt += len(gt)
                    for name, (pred, conf) in predictors.items():
                        b, s = pred(fr.image)
                        b = np.asarray(b, np.float64).reshape(-1, 4)
                        if conf is not None:
                            b = b[np.asarray(s) >= conf]
                        gi, di = _match(b, gt)
                        if len(gi):
                            rows[name].append(offsets(b[di], gt[gi]))
        log(f"  {scene}: done ({time.perf_counter() - t0:.0f} s)")
    out = {"about": __doc__.strip().splitlines()[0], "command": "python -m distill.ppe.boxgeometry",
           "frames": {"scenes": list(D.TRAIN_SCENES), "conditions": list(D.CONDITIONS), "seeds": list(SEEDS),
                      "frames": list(FRAMES)},
           "true_persons": n_gt, "match_iou": MATCH_IOU, "fields": list(FIELDS), "detectors": {}}
    for name, parts in rows.items():
        a = np.concatenate(parts) if parts else np.zeros((0, 4))
        if len(a) < 20:
            log(f"  {name}: {len(a)} matches, too few to describe (left out)")
            out["left_out"] = {**out.get("left_out", {}), name: len(a)}
            continue
        out["detectors"][name] = {
            "matched": len(a), "recall": round(len(a) / max(n_gt, 1), 4),
            "mean": [round(float(x), 4) for x in a.mean(axis=0)], "std": [round(float(x), 4) for x in a.std(axis=0)],
            "quantiles_5_50_95": [[round(float(q), 4) for q in np.quantile(a[:, j], (0.05, 0.5, 0.95))] for j in range(4)],
            "offsets": np.round(a, 3).tolist()}
    return out


def _input_size(folder: Path) -> int:
    from compiler.modelcard import read_card
    return int(read_card(folder).inputs[0].shape[-1])


def load_offsets(path: Path = OUT) -> np.ndarray:
    """(N, 4) measured offsets of every detector, pooled (each detector weighted by its matches)."""
    d = json.loads(Path(path).read_text())
    return np.concatenate([np.asarray(v["offsets"], np.float32).reshape(-1, 4) for v in d["detectors"].values()])


def main() -> int:
    res = measure()
    OUT.write_text(json.dumps(res, separators=(",", ":")) + "\n", encoding="utf-8")
    for name, v in res["detectors"].items():
        print(f"{name:<16} matched {v['matched']:>5} (recall {v['recall']:.2f})  mean {v['mean']}  std {v['std']}")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
