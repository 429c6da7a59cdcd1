#!/usr/bin/env python3
"""Detector benchmark: the SSDLite teacher vs every student in models/detector/, and KD vs no-KD.

    python bench/detector.py            # prints a table, writes bench/results/detector.json

Real data: the hand-checked holdout (data/labels/real_holdout.json; Intel sample videos, CC BY 4.0).
Synthetic: the sim holdout (seed 1000, every scene x condition). Students run as ONNX through
onnxruntime and runtime/detector_decoder.py; the teacher letterboxed to a square (its best input).
Latency: onnxruntime CPU, 2 threads, batch 1, median of 30 runs after 3 warm-ups, on this machine
(shared with other jobs: compare within one run only).
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler.modelcard import zoo  # noqa: E402
from compiler.onnxinfo import analyse  # noqa: E402
from distill.detector import data as D  # noqa: E402
from distill.detector.evaluate import (DEPLOY_CONF, OnnxStudent, eval_real, eval_sim, latency_ms,  # noqa: E402
                                       student_predict, teacher_eval)
from distill.detector.teacher import teacher_path, teacher_views  # noqa: E402
from distill.detector.variants import SMALLEST  # noqa: E402

OUT = ROOT / "bench" / "results" / "detector.json"


def student_row(onnx_path: Path, size: int, holdout, sim) -> dict:
    model = OnnxStudent(onnx_path, size, threads=2)
    info = analyse(onnx_path)
    real = eval_real(student_predict(model), holdout, conf=DEPLOY_CONF)
    x = np.zeros((1, 3, size, size), np.float32)
    return {"real": real, "sim": eval_sim(model, sim), "params": info.params, "macs": info.macs,
            "peak_activation_bytes": info.peak_activation_bytes,
            "latency_ms": latency_ms(lambda a: model.sess.run(None, {model.input: a}), x)}


def main() -> int:
    t0 = time.perf_counter()
    holdout = D.real_holdout()
    sim = D.sim_frames(scenes=D.SIM_HOLDOUT_SCENES, seeds=D.SIM_HOLDOUT_SEEDS, per_source=D.SIM_HOLDOUT_FRAMES)
    t_info = analyse(teacher_path())
    teacher = teacher_eval(holdout, sim)
    teacher.update({"params": t_info.params, "macs": t_info.macs, "input": "letterboxed to a square, RGB uint8"})
    views = eval_real(lambda im: teacher_views(im), holdout, conf=None)
    rows = {}
    for card in zoo(ROOT / "models", task="detector", verify=True):
        size = int(card.inputs[0].shape[-1])
        rows[card.variant] = student_row(ROOT / "models" / "detector" / card.variant / card.file, size, holdout, sim)
        rows[card.variant]["conditions"] = card.conditions
        print(f"  {card.variant}: done", flush=True)
    seed = 0
    nokd_path = D.cache_root() / f"{SMALLEST}-nokd-seed{seed}.onnx"
    kd = None
    if nokd_path.exists() and SMALLEST in rows:
        nokd = student_row(nokd_path, int(SMALLEST.split("s")[-1]), holdout, sim)
        kd = {"student": SMALLEST, "kd": {"real_AP50": rows[SMALLEST]["real"]["AP50"],
                                          "sim_person_AP50": rows[SMALLEST]["sim"]["person"]["all"]},
              "nokd": {"real_AP50": nokd["real"]["AP50"], "sim_person_AP50": nokd["sim"]["person"]["all"],
                       "real": nokd["real"]},
              "delta_real_AP50_points": round(100 * (rows[SMALLEST]["real"]["AP50"] - nokd["real"]["AP50"]), 2),
              "protocol": "same student, frames, steps, seed and sim truth; KD: real frames labelled by the "
                          "teacher (letterbox + 3 crops) fused with tracks, interpolation and the background "
                          "model; no-KD: the same background/temporal evidence without the teacher",
              "nokd_onnx": str(nokd_path), "nokd_command": f"python build.py distill detector --variant {SMALLEST} --no-kd"}
    result = {
        "bench": "detector", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "real_holdout": {"file": "data/labels/real_holdout.json", "frames": len(holdout.keys),
                         "person_boxes": int(sum(len(b) for b in holdout.boxes)),
                         "source": "Intel sample videos (CC BY 4.0)", "data": "real"},
        "sim_holdout": {"frames": len(sim), "seeds": list(D.SIM_HOLDOUT_SEEDS), "scenes": list(D.SIM_HOLDOUT_SCENES),
                        "data": "synthetic"},
        "teacher": teacher, "teacher_multi_view_real": views, "students": rows, "kd_vs_nokd": kd,
        "must": {
            "smallest_macs_le_fifth_of_teacher": bool(SMALLEST in rows and rows[SMALLEST]["macs"] * 5 <= t_info.macs),
            "smallest_real_AP50_gt_teacher": bool(SMALLEST in rows and teacher["real"]
                                                  and rows[SMALLEST]["real"]["AP50"] > teacher["real"]["AP50"]),
            "kd_beats_nokd": bool(kd and kd["delta_real_AP50_points"] > 0)},
        "machine": {"python": platform.python_version(), "cpu": platform.machine(), "threads": 2},
        "seconds": round(time.perf_counter() - t0, 1)}
    overlays(holdout, sim)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(table(result))
    return 0


def overlays(holdout, sim, out: Path = ROOT / "docs" / "detector") -> None:
    """Small PNGs: ground truth (white), teacher (red, >= its best threshold) and the smallest student
    (green, >= the deployment threshold) on held-out real frames and a sim night frame."""
    import cv2

    from distill.detector.teacher import run_teacher
    path = ROOT / "models" / "detector" / SMALLEST / "model.onnx"
    if not path.exists():
        return
    model = OnnxStudent(path, int(SMALLEST.split("s")[-1]))
    thr = 0.5
    out.mkdir(parents=True, exist_ok=True)
    picks = [k for k in ("one-by-one-person-detection.mp4#1045", "preview_worker-zone-detection.gif#10")
             if k in holdout.keys]
    tiles = []
    for key in picks:
        i = holdout.keys.index(key)
        img = holdout.images[i].copy()
        for b in holdout.boxes[i]:
            cv2.rectangle(img, tuple(int(v) for v in b[:2]), tuple(int(v) for v in b[2:]), (255, 255, 255), 3)
        tb, ts = run_teacher(holdout.images[i])
        for b in tb[ts >= thr]:
            cv2.rectangle(img, tuple(int(v) for v in b[:2]), tuple(int(v) for v in b[2:]), (0, 0, 255), 2)
        d = model(holdout.images[i], conf=DEPLOY_CONF)
        for b in d.xyxy[d.class_id == 0]:
            cv2.rectangle(img, tuple(int(v) for v in b[:2]), tuple(int(v) for v in b[2:]), (0, 255, 0), 2)
        tiles.append(cv2.resize(img, (384, 216), interpolation=cv2.INTER_AREA))
    night = [i for i, c in enumerate(sim.condition) if c == "night-rain"]
    if night:
        i = night[len(night) // 2]
        img = sim.images[i].copy()
        d = model(img, conf=DEPLOY_CONF)
        for b, c in zip(d.xyxy, d.class_id):
            cv2.rectangle(img, tuple(int(v) for v in b[:2]), tuple(int(v) for v in b[2:]),
                          (0, 255, 0) if c == 0 else (255, 128, 0), 1)
        tiles.append(cv2.resize(img, (384, 216), interpolation=cv2.INTER_AREA))
    if tiles:
        cv2.imwrite(str(out / "overlays.png"), np.hstack(tiles), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def table(r: dict) -> str:
    t = r["teacher"]
    conds = [c for c in t["sim_person_AP50"] if c != "all"]
    lines = ["| model | input | params | MMACs | CPU ms | real AP50 | real P / R | sim AP50 (all) | "
             + " | ".join(conds) + " |", "|" + "---|" * (8 + len(conds))]
    tr = t["real"]
    lines.append(f"| teacher SSDLite (letterboxed) | 300 | {t['params']:,} | {t['macs'] / 1e6:.0f} | {t['latency_ms']} | "
                 f"{tr['AP50']:.3f} | {tr['best_f1']['precision']:.2f} / {tr['best_f1']['recall']:.2f} (best thr) | "
                 f"{t['sim_person_AP50']['all']:.3f} | " + " | ".join(f"{t['sim_person_AP50'][c]:.2f}" for c in conds) + " |")
    for name, s in r["students"].items():
        sr = s["real"]
        lines.append(f"| {name} | {name.split('-')[1][1:]} | {s['params']:,} | {s['macs'] / 1e6:.0f} | {s['latency_ms']} | "
                     f"{sr['AP50']:.3f} | {sr['at_conf']['precision']:.2f} / {sr['at_conf']['recall']:.2f} (@{DEPLOY_CONF}) | "
                     f"{s['sim']['person']['all']:.3f} | " + " | ".join(f"{s['sim']['person'].get(c, 0):.2f}" for c in conds) + " |")
    if r.get("kd_vs_nokd"):
        k = r["kd_vs_nokd"]
        lines.append(f"\nKD vs no-KD ({k['student']}): real AP50 {k['kd']['real_AP50']:.3f} vs {k['nokd']['real_AP50']:.3f} "
                     f"({k['delta_real_AP50_points']:+.1f} points)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
