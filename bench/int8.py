"""INT8 against FP32 for every convolutional zoo variant on this CPU, in one run: latency and accuracy.

    python bench/int8.py            # prints the table, writes bench/results/int8.json

Three builds of each model, quantized as the builder does (compiler/builder.py), calibrated on 48
frames of the kind the model will see: for detectors, frames spread over the TRAIN part of the real
footage (as a site whose camera shows real people gets: the builder calibrates on the camera's own
source), for the crop models (pose, PPE) sim crane-swing at 640x360, seed 0 (the demo spec's camera):
  fp32         the zoo's ONNX as distilled
  int8-all     every convolution in INT8 (what NPU boards get)
  int8-stem    the stem convolution (+ the depthwise one right after it) kept FP32: what CPU boards
               such as host-cpu get (compiler/quantize.py explains why)
Latency: onnxruntime CPU provider, 1 thread, no spinning, batch 1; the three sessions are timed in
interleaved rounds and the median per build is kept, so load on this shared 2-core VM hits all three
alike; the ratio fp32/int8 is what we report. Accuracy, same run: detectors by person AP50 on the 53
hand-checked real holdout frames (data/labels) at the runtime's decoder; pose by PCK@0.2 on the sim
pose holdout; PPE by agreement of the helmet/vest decisions with FP32 on the gate crops; and all by the
builder's own task gate (compiler/gates.py: decisions equal to FP32's) and the raw output cosine on
held-out frames of the calibration's kind (12 frames; seed 1000 for sim). For detectors the run also
scores an int8-stem build calibrated on sim frames against the same real holdout
(``real_AP50_sim_calibrated``): calibrating on the wrong domain is what costs accuracy, not INT8.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import finish, machine  # noqa: E402

from compiler.builder import CALIBRATION_FRAMES, GATE_FRAMES  # noqa: E402
from compiler.calibrate import frames_for, samples  # noqa: E402
from compiler.modelcard import zoo  # noqa: E402
from compiler.gates import MAX_DISAGREEMENT, task_gate  # noqa: E402
from compiler.quantize import accuracy_gate, output_agreement, quantize_int8, session  # noqa: E402
from runtime.config import CameraConfig  # noqa: E402

OUT = ROOT / "bench" / "results" / "int8.json"
BUILDS = ("fp32", "int8-all", "int8-stem")
CAMERA = CameraConfig(id="bench", source="sim:crane-swing", resolution=(640, 360), fps=10.0)


def timed(sessions: dict, feed: dict, rounds: int, per_round: int) -> dict[str, float]:
    """Median ms per build over interleaved rounds."""
    times = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(5):
            s.run(None, feed)
    for _ in range(rounds):
        for k, s in sessions.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                s.run(None, feed)
                times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def real_train_pairs(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` frames spread over the TRAIN part of every real clip (never the holdout: sim/realdata.py)."""
    from sim import realdata as R

    clips = [c.name for c in R.list_clips() if R.holdout_start(c.name) != 0]
    per = -(-count // len(clips))
    out = []
    for name in clips:
        stop = R.holdout_start(name) or R.clip_info(name).frames
        wanted = set(np.linspace(0, stop - 1, per).astype(int).tolist())
        out += [(f, np.zeros((0, 4), np.float32)) for i, _, f in R.iter_frames(name, 0, stop) if i in wanted]
    return out[:count]


def detector_ap(paths: dict, size: int) -> dict[str, float]:
    from distill.detector import data as D
    from distill.detector.evaluate import OnnxStudent, eval_real, student_predict

    holdout = D.real_holdout()
    return {k: eval_real(student_predict(OnnxStudent(p, size, threads=1)), holdout)["AP50"] for k, p in paths.items()}


def pose_pck(paths: dict) -> dict[str, float]:
    from distill.pose import data as D
    from distill.pose.evaluate import OnnxPose, pck_report
    from distill.pose.pipeline import HOLDOUT_JITTER_SEED
    from distill.pose.train import cut, jitter_boxes
    from runtime import pose as rt

    holdout = D.sim_set(D.SimRecipe(D.HOLDOUT_SEEDS, frames=D.HOLDOUT_FRAMES, min_size=D.MIN_SIZE_EVAL), log=lambda *_: None)
    boxes = jitter_boxes(holdout.boxes, HOLDOUT_JITTER_SEED, 0.5)
    out = {}
    for k, p in paths.items():
        m = OnnxPose(p)
        c = cut(holdout, m.size, boxes)
        pred = rt.decode(m.heatmaps(c.images), c.transforms)
        out[k] = pck_report(pred, holdout.keypoints, holdout.boxes, holdout.meta["condition"])["pck"]["all"]
    return out


def decision_agreement(paths: dict, feeds: list[dict]) -> dict[str, float]:
    """Share of crops where each build's thresholded PPE outputs equal FP32's."""
    sess = {k: session(p) for k, p in paths.items()}
    ref = [np.asarray(sess["fp32"].run(None, f)[0]) >= 0 for f in feeds]  # sigmoid >= 0.5
    return {k: float(np.mean([np.array_equal(np.asarray(s.run(None, f)[0]) >= 0, r) for f, r in zip(feeds, ref)]))
            for k, s in sess.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="*", default=["detector", "pose", "ppe"])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    sim_calib = frames_for(CAMERA, ROOT, CALIBRATION_FRAMES, 0)
    sim_gate = frames_for(CAMERA, ROOT, GATE_FRAMES, 1000)
    real = real_train_pairs(CALIBRATION_FRAMES + GATE_FRAMES) if "detector" in a.tasks else []
    real_calib, real_gate = [p for i, p in enumerate(real) if i % 5 != 2], real[2::5]  # 48 + 12, interleaved
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for card in zoo(ROOT / "models", verify=True):
            if card.task not in a.tasks or not card.quantize:
                continue
            fp32 = ROOT / "models" / card.task / card.variant / card.file
            det = card.task == "detector"
            calib_pairs, gate_pairs = (real_calib, real_gate) if det else (sim_calib, sim_gate)
            calib, gate = list(samples(card, calib_pairs)), list(samples(card, gate_pairs))[:GATE_FRAMES * 2]
            paths = {"fp32": fp32}
            for build, keep in (("int8-all", "none"), ("int8-stem", "stem")):
                paths[build] = Path(tmp) / f"{card.task}-{card.variant}-{build}.onnx"
                quantize_int8(fp32, paths[build], calib, keep_fp32=keep)
            sessions = {k: session(p) for k, p in paths.items()}
            ms = timed(sessions, gate[0], a.rounds, 20)
            cosine = {k: round(output_agreement(sessions["fp32"], s, gate)[0], 5) for k, s in sessions.items()}
            judge = task_gate(card)
            verdicts = {k: accuracy_gate(fp32, paths[k], gate, task_gate=judge, max_drop=MAX_DISAGREEMENT)
                        for k in BUILDS[1:]} if judge else {}
            extra = {}
            if det:
                metric, acc = "real AP50", detector_ap(paths, int(card.inputs[0].shape[-1]))
                simcal = Path(tmp) / f"{card.variant}-simcal.onnx"
                quantize_int8(fp32, simcal, list(samples(card, sim_calib)), keep_fp32="stem")
                extra["real_AP50_sim_calibrated"] = detector_ap({"x": simcal}, int(card.inputs[0].shape[-1]))["x"]
            elif card.task == "pose":
                metric, acc = "sim PCK@0.2", pose_pck(paths)
            else:
                metric, acc = "decisions = FP32", decision_agreement(paths, gate)
            row = {"model": f"{card.task}/{card.variant}", "macs": card.costs.macs, "ms": {k: round(v, 3) for k, v in ms.items()},
                   "speedup_vs_fp32": {k: round(ms["fp32"] / ms[k], 3) for k in BUILDS[1:]},
                   "metric": metric, "accuracy": {k: round(float(v), 4) for k, v in acc.items()},
                   "accuracy_drop_points": {k: round(100 * (acc["fp32"] - acc[k]), 2) for k in BUILDS[1:]},
                   "output_cosine": cosine,
                   "builder_gate": {k: {"passed": v.passed, "agreement": round(1 - v.value, 4), "metric": v.metric}
                                    for k, v in verdicts.items()}, "calibration": "real footage, TRAIN part" if det else "sim crane-swing",
                   **extra}
            rows.append(row)
            print(f"  {row['model']}: fp32 {ms['fp32']:.3f} ms, int8-stem {ms['int8-stem']:.3f} ms", flush=True)
    shipped = [r["speedup_vs_fp32"]["int8-stem"] for r in rows]
    result = {
        "bench": "int8", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "about": __doc__.strip().splitlines()[0],
        "protocol": "interleaved rounds, median ms, 1 thread, batch 1; calibration as the builder does for specs/demo-site.yaml",
        "rows": rows,
        "summary": {"shipped_build": "int8-stem (host-cpu)", "min_speedup": min(shipped, default=None),
                    "geomean_speedup": round(float(np.exp(np.mean(np.log(shipped)))), 3) if shipped else None,
                    "max_accuracy_drop_points": max((r["accuracy_drop_points"]["int8-stem"] for r in rows), default=None),
                    "all_faster": all(s > 1.0 for s in shipped),
                    "all_pass_builder_gate": all(r["builder_gate"].get("int8-stem", {}).get("passed", True) for r in rows)},
        "machine": machine(threads=1),
        "seconds": round(time.perf_counter() - t0, 1)}
    return finish(result, a.out, table)


def table(r: dict) -> str:
    lines = [f"{'model':<24}{'FP32':>9}{'INT8-all':>10}{'INT8-stem':>11}{'x all':>7}{'x stem':>8}  "
             f"{'metric':<17}{'FP32':>7}{'all':>7}{'stem':>7}"]
    for row in r["rows"]:
        ms, sp, acc = row["ms"], row["speedup_vs_fp32"], row["accuracy"]
        lines.append(f"{row['model']:<24}{ms['fp32']:>7.3f}ms{ms['int8-all']:>8.3f}ms{ms['int8-stem']:>9.3f}ms"
                     f"{sp['int8-all']:>7.2f}{sp['int8-stem']:>8.2f}  {row['metric']:<17}"
                     f"{acc['fp32']:>7.3f}{acc['int8-all']:>7.3f}{acc['int8-stem']:>7.3f}")
    s = r["summary"]
    for row in r["rows"]:
        g = row["builder_gate"].get("int8-stem")
        if g:
            lines.append(f"  gate {row['model']:<22} {'pass' if g['passed'] else 'REFUSED'}  {g['agreement']:.3f} {g['metric']}")
    lines.append(f"shipped (int8-stem): min {s['min_speedup']}x, geomean {s['geomean_speedup']}x faster than FP32; "
                 f"worst accuracy drop {s['max_accuracy_drop_points']} points")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
