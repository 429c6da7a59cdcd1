#!/usr/bin/env python3
"""PPE benchmark: the committed classifiers beside the colour baseline, in one run.

    python bench/ppe.py [--docs] [--out bench/results/ppe.json]

Sim: helmet / vest / both-correct accuracy per condition on the sim holdout (seeds never trained
on; GT person boxes). Real: per-frame rates on the held-out footage with the teacher's person
boxes (worker-zone GIF: helmet / vest / both predicted present; one-by-one mp4 and preview GIF
holdout: nothing predicted present), plus per-person accuracy on the hand-checked labels where
they exist. Latency: onnxruntime, 1 thread, per crop. Everything goes through ``runtime.ppe``
and ``distill.ppe.evaluate`` as training's own scoring does. ``--docs`` also writes example
crops and overlays to ``docs/ppe/``. Footage: Intel sample-videos (CC BY 4.0).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler.modelcard import read_card  # noqa: E402
from distill.ppe import data as D  # noqa: E402
from distill.ppe.evaluate import baseline_scores, onnx_classifier, real_report, sim_report  # noqa: E402
from distill.ppe.models import VARIANTS  # noqa: E402
from distill.ppe.train import clean_inputs  # noqa: E402
from runtime import ppe as rt  # noqa: E402

ZOO = ROOT / "models" / "ppe"


def latency_ms(path: Path, size, batch: int, reps: int = 50) -> float:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((batch, 3, size[1], size[0]), np.float32)
    for _ in range(5):
        sess.run(None, {rt.INPUT_NAME: x})
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sess.run(None, {rt.INPUT_NAME: x})
        t.append(time.perf_counter() - t0)
    return round(float(np.median(t)) * 1000 / batch, 3)


def thresholds_of(variant: str) -> tuple[float, float]:
    rep = ZOO / variant / "report.json"
    if rep.is_file():
        return tuple(json.loads(rep.read_text())["baseline_thresholds"])
    return rt.BASELINE_THRESHOLDS


def table(res: dict) -> str:
    lines = []
    conds = list(next(iter(res["variants"].values()))["sim_holdout"]["conditions"])
    head = f"{'condition':<12}{'n':>6}  " + "  ".join(f"{v + ' H/V/both':>20}" for v in res["variants"]) + f"  {'colour H/V/both':>20}"
    lines += ["sim holdout accuracy (helmet / vest / both correct)", head, "-" * len(head)]
    for c in conds:
        row, base = "", None
        n = 0
        for v, r in res["variants"].items():
            m = r["sim_holdout"]["conditions"][c]["model"]
            base = r["sim_holdout"]["conditions"][c]["baseline"]
            n = m["n"]
            row += f"  {m['helmet']:>6.3f} {m['vest']:>6.3f} {m['both']:>6.3f}"
        row += f"  {base['helmet']:>6.3f} {base['vest']:>6.3f} {base['both']:>6.3f}"
        lines.append(f"{c:<12}{n:>6}{row}")
    lines.append("")
    lines.append("real footage, per frame with a person box (teacher boxes)")
    for v, r in res["variants"].items():
        for clip, cr in r["real"]["clips"].items():
            lines.append(f"  {v:<6} {clip:<42} frames {cr['frames_with_person']:>4}  model {cr['model']}  colour {cr['baseline']}")
        for clip, cr in (r["real"].get("labelled") or {}).items():
            lines.append(f"  {v:<6} {clip:<42} labelled persons: model {cr['model']}  colour {cr['baseline']}")
    lines.append("")
    lines.append("latency (onnxruntime, 1 thread, ms per crop): " +
                 ", ".join(f"{v} b1 {r['latency_ms']['batch1']} / b8 {r['latency_ms']['batch8']}" for v, r in res["variants"].items()))
    return "\n".join(lines)


def write_docs(variant: str, holdout: D.CropSet, prob: np.ndarray, base: np.ndarray, thr, out: Path) -> list[str]:
    """Example sim holdout crops (green/red bars: model helmet, vest; below: colour baseline) and
    overlays of a worker-zone and an mp4 holdout frame."""
    import cv2

    from distill.ppe.evaluate import EVAL_TEACHER_THRESHOLD, classify_frame
    from sim.realdata import clip_info, holdout_start, iter_frames
    out.mkdir(parents=True, exist_ok=True)
    size = VARIANTS[variant].size
    written = []
    rng = np.random.default_rng(0)
    tiles = []
    for cond in D.CONDITIONS:
        idx = np.nonzero((holdout.meta["condition"] == cond) & holdout.known.all(axis=1) & (holdout.meta["box_h"] >= 48))[0]
        for i in rng.choice(idx, min(4, len(idx)), replace=False) if len(idx) else []:
            crop = rt.person_crops(holdout.patches[i], holdout.boxes[i][None], size)[0]
            tile = crop
            bar = np.full((28, tile.shape[1], 3), 255, np.uint8)
            for j, lab in enumerate(("H", "V")):
                ok_m = (prob[i, j] >= 0.5) == (holdout.labels[i, j] >= 0.5)
                ok_b = (base[i, j] >= thr[j]) == (holdout.labels[i, j] >= 0.5)
                x0 = j * tile.shape[1] // 2
                cv2.putText(bar, f"{lab}{int(holdout.labels[i, j])}", (x0 + 1, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1)
                cv2.rectangle(bar, (x0 + 16, 3), (x0 + 23, 11), (0, 160, 0) if ok_m else (0, 0, 220), -1)
                cv2.rectangle(bar, (x0 + 26, 3), (x0 + 33, 11), (0, 160, 0) if ok_b else (0, 0, 220), -1)
            cv2.putText(bar, cond, (1, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.28, (60, 60, 60), 1)
            tiles.append(np.vstack([tile, bar]))
    if tiles:
        per_row = 12
        rows = [np.hstack(tiles[k:k + per_row] + [np.full_like(tiles[0], 255)] * (per_row - len(tiles[k:k + per_row])))
                for k in range(0, len(tiles), per_row)]
        p = out / f"sim_holdout_{variant}.jpg"
        cv2.imwrite(str(p), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 85])
        written.append(str(p.relative_to(ROOT)))
    classify = onnx_classifier(ZOO / variant / "model.onnx")
    teacher = D.Teacher()
    for clip, want in (("preview_worker-zone-detection.gif", 30), ("one-by-one-person-detection.mp4", None)):
        start = holdout_start(clip, clip_info(clip).frames) or 0
        for idx, _, frame in iter_frames(clip, start):
            if want is not None and idx < want:
                continue
            boxes, _ = teacher(frame, EVAL_TEACHER_THRESHOLD)
            if not len(boxes):
                continue
            pm = classify_frame(frame, boxes, classify, size)
            pb = rt.colour_scores(frame, boxes)
            img = frame.copy()
            for b, p, c in zip(boxes.astype(int), pm, pb):
                cv2.rectangle(img, tuple(b[:2]), tuple(b[2:]), (255, 255, 255), 1)
                for r in (rt.head_boxes(b[None], frame.shape)[0], rt.torso_boxes(b[None], frame.shape)[0]):
                    cv2.rectangle(img, tuple(r[:2]), tuple(r[2:] - 1), (200, 200, 0), 1)
                txt = f"model H{p[0]:.2f} V{p[1]:.2f} | colour H{c[0]:.2f} V{c[1]:.2f}"
                cv2.putText(img, txt, (max(0, b[0] - 40), max(12, b[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3)
                cv2.putText(img, txt, (max(0, b[0] - 40), max(12, b[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
            p = out / f"real_{Path(clip).stem}_{idx}_{variant}.jpg"
            cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 80])
            written.append(str(p.relative_to(ROOT)))
            break
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ppe.json")
    ap.add_argument("--docs", action="store_true", help="also write example crops/overlays to docs/ppe/")
    ap.add_argument("--variants", nargs="*", default=[p.name for p in sorted(ZOO.glob("*")) if (p / "card.yaml").exists()])
    a = ap.parse_args(argv)
    if not a.variants:
        print("no PPE models under models/ppe/; run `python build.py distill ppe` first", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    holdout = D.sim_set(D.SimRecipe(D.HOLDOUT_SEEDS, frames=D.HOLDOUT_FRAMES, min_box_h=D.MIN_BOX_H_EVAL), log=print)
    base = baseline_scores(holdout)
    res = {"about": __doc__.strip().splitlines()[0], "holdout_persons": len(holdout), "variants": {}}
    docs = []
    for v in a.variants:
        card = read_card(ZOO / v)
        size = VARIANTS[v].size
        thr = thresholds_of(v)
        classify = onnx_classifier(ZOO / v / "model.onnx")
        prob = classify(clean_inputs(holdout, size))
        res["variants"][v] = {
            "sha256": card.sha256, "params": card.costs.params, "macs": card.costs.macs,
            "baseline_thresholds": list(thr),
            "sim_holdout": sim_report(prob, base, thr, holdout),
            "real": real_report(classify, size, thr),
            "latency_ms": {"batch1": latency_ms(ZOO / v / "model.onnx", size, 1),
                           "batch8": latency_ms(ZOO / v / "model.onnx", size, 8)},
        }
        if a.docs:
            docs += write_docs(v, holdout, prob, base, thr, ROOT / "docs" / "ppe")
    res["seconds"] = round(time.perf_counter() - t0, 1)
    if docs:
        res["docs"] = docs
    print(table(res))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {a.out.relative_to(ROOT) if a.out.is_relative_to(ROOT) else a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
