#!/usr/bin/env python3
"""Posture benchmark: the committed posture teacher and student beside the torso-angle rule, in one run.

    python bench/posture.py [--out bench/results/posture.json]

All are scored on the sim holdout on the keypoints of the committed POSE STUDENT (pose-s64) run
on jittered GT boxes, never the exact ones: intact, and with joints dropped (per person one of:
the face, the left side, the right side, a random 30%); the exact-keypoint scores are shown as
the ceiling a perfect pose model would give. 'falling' frames are left out (see runtime.posture).
The student without the teacher (KD vs no-KD) is not shipped: its scores come from the
distillation run's report (models/posture/posture-s/report.json), measured on the same holdout.
Latency: onnxruntime, 1 thread, per person, posture alone and pose-s64 + posture together.
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
from distill.posture.pipeline import POSE_VARIANT, _OnnxTeacher, evaluate, load_data  # noqa: E402
from runtime import posture as rp  # noqa: E402

ZOO = ROOT / "models"
VARIANTS = ("posture-t", "posture-s")


def latency_ms(path: Path, shape, name: str, batch: int, reps: int = 200) -> float:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((batch, *shape), np.float32)
    for _ in range(10):
        sess.run(None, {name: x})
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        t.append(time.perf_counter() - t0)
    return round(float(np.median(t)) * 1000 / batch, 4)


def table(res: dict) -> str:
    lines = []
    for which in ("dropped", "intact", "exact_keypoints"):
        rows = res["scores"][which]
        lines.append(f"sim holdout, {which.replace('_', ' ')} ({res['holdout_persons']} persons): accuracy, fallen P/R, recall per class")
        for name, s in rows.items():
            rec = " ".join(f"{c[:5]} {v:.2f}" for c, v in s["recall"].items())
            lines.append(f"  {name:<16} acc {s['accuracy']:.4f}  fallen P {s['fallen_precision']:.3f} R {s['fallen_recall']:.3f}   {rec}")
    if res.get("kd_vs_nokd"):
        lines.append("KD vs no-KD (student, from the distillation run): " + json.dumps(res["kd_vs_nokd"]))
    lines.append("latency (ms per person, 1 thread): " + json.dumps(res["latency_ms"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "posture.json")
    a = ap.parse_args(argv)
    missing = [v for v in VARIANTS if not (ZOO / "posture" / v / "card.yaml").exists()]
    if missing:
        print(f"missing {missing} under models/posture/; run `python build.py distill posture` first", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    d = load_data(ZOO, smoke=False, seed=0, log=print)
    models = {v: _OnnxTeacher(ZOO / "posture" / v / "model.onnx") for v in VARIANTS}
    ev = evaluate(models, d["holdout"])
    res = {"about": __doc__.strip().splitlines()[0], "pose_model": f"pose/{POSE_VARIANT}",
           "holdout_persons": int(len(d["holdout"]["y"])), "holdout_counts": d["counts"], "scores": ev,
           "cards": {v: {"sha256": read_card(ZOO / "posture" / v).sha256, "params": read_card(ZOO / "posture" / v).costs.params,
                         "macs": read_card(ZOO / "posture" / v).costs.macs} for v in VARIANTS}}
    rep = ZOO / "posture" / "posture-s" / "report.json"
    if rep.is_file():
        r = json.loads(rep.read_text())["scores"]
        res["kd_vs_nokd"] = {w: {"kd": r[w]["posture-s"]["accuracy"], "nokd": r[w]["posture-s/nokd"]["accuracy"]}
                             for w in ("dropped", "intact") if "posture-s/nokd" in r[w]}
    pose_path = ZOO / "pose" / POSE_VARIANT / "model.onnx"
    lat = {v: {f"batch{b}": latency_ms(ZOO / "posture" / v / "model.onnx", (rp.N_FEATURES,), rp.INPUT_NAME, b)
               for b in (1, 8)} for v in VARIANTS}
    pose_b1 = latency_ms(pose_path, (3, 128, 64), "crops", 1, reps=50)
    lat["pose-s64+posture-s_batch1"] = round(pose_b1 + lat["posture-s"]["batch1"], 4)
    res["latency_ms"] = lat
    d_ = ev["dropped"]
    res["must"] = {
        "student_beats_rule": d_["posture-s"]["accuracy"] > d_["rule"]["accuracy"],
        "student_within_3_points_of_teacher": 100 * (d_["posture-t"]["accuracy"] - d_["posture-s"]["accuracy"]) <= 3.0,
        "fallen_recall_ge_0.9_at_precision_ge_0.9": d_["posture-s"]["fallen_recall"] >= 0.9 and d_["posture-s"]["fallen_precision"] >= 0.9,
    }
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(table(res))
    print("must:", res["must"])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {a.out.relative_to(ROOT) if a.out.is_relative_to(ROOT) else a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
