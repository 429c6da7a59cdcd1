#!/usr/bin/env python3
"""Pose benchmark: the committed teacher and students on the sim holdout, in one run.

    python bench/pose.py [--docs] [--out bench/results/pose.json]

Sim: PCK@0.2 (within 0.2 torso diameters of the exact keypoint) per condition on the sim
holdout (seeds never trained on; GT boxes jittered like a detector's, the same jitter as the
distillation run), through ``runtime.pose`` as training's own scoring. Latency: onnxruntime,
1 thread, ms per crop at batch 1 and 8 (median of 50), with the speed-up over the teacher.
``--docs`` also writes skeleton overlays on held-out real footage (SSDLite teacher person
boxes) to ``docs/pose/``: teacher | pose-m96 | pose-s64 side by side, for people to judge.
Footage: Intel sample-videos (CC BY 4.0).
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
from distill.pose import data as D  # noqa: E402
from distill.pose.evaluate import OnnxPose, pck_report  # noqa: E402
from distill.pose.model import TEACHER  # noqa: E402
from distill.pose.pipeline import HOLDOUT_JITTER_SEED  # noqa: E402
from distill.pose.train import cut, jitter_boxes  # noqa: E402
from runtime import pose as rt  # noqa: E402

ZOO = ROOT / "models" / "pose"
MIN_CONF_DRAW = 0.1
DOC_FRAMES = (("preview_worker-zone-detection.gif", 30), ("one-by-one-person-detection.mp4", None),
              ("preview_one-by-one-person-detection.gif", None))


def latency_ms(path: Path, size, batch: int, reps: int = 50) -> float:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
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


def lr_tolerant_pck(pred: np.ndarray, truth: np.ndarray, boxes: np.ndarray) -> float:
    """PCK@0.2 when a person's left/right labelling may be swapped as a whole (a diagnostic: how
    much of the error is front/back confusion, which posture does not care about)."""
    from distill.pose.evaluate import pck_hits
    a, scored = pck_hits(pred, truth, boxes)
    b, _ = pck_hits(pred[:, list(rt.FLIP)], truth, boxes)
    best = np.where(a.sum(axis=1, keepdims=True) >= b.sum(axis=1, keepdims=True), a, b)
    return round(float(best.sum() / max(scored.sum(), 1)), 4)


def table(res: dict) -> str:
    vs = list(res["variants"])
    conds = list(res["variants"][vs[0]]["sim_holdout"]["pck"])
    head = f"{'PCK@0.2':<12}" + "".join(f"{v:>11}" for v in vs)
    lines = ["sim holdout PCK@0.2 per condition", head, "-" * len(head)]
    for c in conds:
        lines.append(f"{c:<12}" + "".join(f"{res['variants'][v]['sim_holdout']['pck'][c]:>11.4f}" for v in vs))
    lines.append(f"{'box-normed':<12}" + "".join(f"{res['variants'][v]['sim_holdout']['pck_box']['all']:>11.4f}" for v in vs))
    lines.append(f"{'L/R-free':<12}" + "".join(f"{res['variants'][v]['pck_lr_tolerant']:>11.4f}" for v in vs))
    lines.append("")
    for v in vs:
        r = res["variants"][v]
        lines.append(f"{v:<10} {r['macs'] / 1e6:7.1f} MMACs {r['params']:>8} params  latency b1 {r['latency_ms']['batch1']:.3f} "
                     f"/ b8 {r['latency_ms']['batch8']:.3f} ms per crop  speed-up vs teacher (b1) {r['speedup_vs_teacher_b1']:.2f}x")
    return "\n".join(lines)


def write_docs(models: dict, out: Path) -> list[str]:
    """Side-by-side skeleton overlays (one panel per model) on held-out real frames, as small PNGs."""
    import cv2

    from distill.ppe.data import Teacher
    from sim.realdata import clip_info, holdout_start, iter_frames
    out.mkdir(parents=True, exist_ok=True)
    det = Teacher()
    written = []
    for clip, first in DOC_FRAMES:
        start = holdout_start(clip, clip_info(clip).frames) or 0
        for idx, _, frame in iter_frames(clip, start):
            if first is not None and idx < first:
                continue
            boxes, _ = det(frame, 0.5)
            if not len(boxes):
                continue
            panels = []
            # cut the frame to the persons (plus a margin) so the PNGs stay small
            x1, y1 = np.maximum(boxes[:, :2].min(axis=0) - 20, 0).astype(int)
            x2, y2 = np.minimum(boxes[:, 2:].max(axis=0) + 20, frame.shape[1::-1]).astype(int)
            for name, m in models.items():
                kp = m(frame, boxes)
                img = rt.draw(frame, kp, min_conf=MIN_CONF_DRAW)
                for b in boxes.astype(int):
                    cv2.rectangle(img, tuple(b[:2]), tuple(b[2:]), (255, 255, 255), 1)
                img = img[y1:y2, x1:x2]
                s = 300 / img.shape[0]
                img = cv2.resize(img, (max(1, int(img.shape[1] * s)), 300), interpolation=cv2.INTER_AREA)
                cv2.putText(img, name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3)
                cv2.putText(img, name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1)
                panels.append(img)
            p = out / f"real_{Path(clip).stem}_{idx}.png"
            cv2.imwrite(str(p), np.hstack(panels), [cv2.IMWRITE_PNG_COMPRESSION, 9])
            written.append(str(p.relative_to(ROOT)))
            break
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pose.json")
    ap.add_argument("--docs", action="store_true", help="also write real-footage overlays to docs/pose/")
    ap.add_argument("--variants", nargs="*", default=[p.name for p in sorted(ZOO.glob("*"), reverse=True)
                                                        if (p / "card.yaml").exists()])
    a = ap.parse_args(argv)
    if not a.variants:
        print("no pose models under models/pose/; run `python build.py distill pose` first", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    holdout = D.sim_set(D.SimRecipe(D.HOLDOUT_SEEDS, frames=D.HOLDOUT_FRAMES, min_size=D.MIN_SIZE_EVAL), log=print)
    boxes = jitter_boxes(holdout.boxes, HOLDOUT_JITTER_SEED, 0.5)
    res = {"about": __doc__.strip().splitlines()[0], "holdout_persons": len(holdout),
           "latency": "onnxruntime CPUExecutionProvider, 1 thread, no spinning; ms per crop, median of 50; this host "
                      "is a shared 2-core VM, so absolute times vary with load; ratios are measured back to back",
           "variants": {}}
    models = {}
    for v in a.variants:
        card = read_card(ZOO / v)
        m = OnnxPose(ZOO / v / "model.onnx")
        models[v] = m
        c = cut(holdout, m.size, boxes)
        pred = rt.decode(m.heatmaps(c.images), c.transforms)
        rep = pck_report(pred, holdout.keypoints, holdout.boxes, holdout.meta["condition"])
        res["variants"][v] = {"sha256": card.sha256, "size": list(m.size), "params": card.costs.params,
                              "macs": card.costs.macs, "sim_holdout": rep,
                              "pck_lr_tolerant": lr_tolerant_pck(pred, holdout.keypoints, holdout.boxes),
                              "latency_ms": {"batch1": latency_ms(ZOO / v / "model.onnx", m.size, 1),
                                             "batch8": latency_ms(ZOO / v / "model.onnx", m.size, 8)}}
    t = res["variants"].get(TEACHER)
    for v, r in res["variants"].items():
        r["speedup_vs_teacher_b1"] = round(t["latency_ms"]["batch1"] / r["latency_ms"]["batch1"], 2) if t else None
        r["pck_drop_vs_teacher_points"] = round(100 * (t["sim_holdout"]["pck"]["all"] - r["sim_holdout"]["pck"]["all"]), 2) if t else None
    if a.docs:
        res["docs"] = write_docs(models, ROOT / "docs" / "pose")
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(table(res))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {a.out.relative_to(ROOT) if a.out.is_relative_to(ROOT) else a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
