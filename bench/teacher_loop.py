#!/usr/bin/env python3
"""Teacher-loop benchmark: one full VMS teacher round, before/after on the real holdout.

    python bench/teacher_loop.py [--seeds 0 1 2] [--out bench/results/teacher_loop.json]

1. Hard samples the way devices make them: the shipped det-s256 + the runtime's ByteTrack +
   ``runtime.hardsample`` over the TRAINING part of the real footage (never the holdout;
   ``sim.realdata.footage_split``), written as VMS hard-sample files.
2. ``vms.teacher.run_round`` per seed: teacher labels, fine-tune from the shipped weights on the
   training mix + the hard samples, export, evaluate current and candidate on the hand-checked
   real holdout (``data/labels/real_holdout.json``; headline = without the 3 frames flagged
   near-duplicates of training) and on the sim holdout, gate. A *control* fine-tune with the same
   schedule and seed but no hard samples shows what the hard samples themselves add.
3. A table and ``bench/results/teacher_loop.json``. Nothing is written to models/.

Real footage: Intel sample videos (CC BY 4.0). Small holdout (50 headline frames, 43 counted
boxes): differences of a couple of AP50 points are within the spread across seeds, which the
table shows. 1 torch / onnxruntime thread.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vms.teacher import GatePolicy, run_round  # noqa: E402
from vms.teachercli import harvest_footage  # noqa: E402

OUT = ROOT / "bench" / "results" / "teacher_loop.json"
SCRATCH = ROOT / "out" / "teacher-bench"
KEYS = ("real_AP50", "real_AP50_all_frames", "sim_person_AP50", "sim_machine_AP50")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="one round per seed (the first is 'the' round)")
    ap.add_argument("--variant", default="det-s256")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--scratch", type=Path, default=SCRATCH)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    samples = args.scratch / "hard_samples"
    if samples.exists():
        shutil.rmtree(samples)
    th = time.perf_counter()
    n = harvest_footage(samples, args.variant, log=print)
    harvest_s = round(time.perf_counter() - th, 1)
    print(f"harvested {n} hard samples in {harvest_s}s")
    policy = GatePolicy()
    rounds = []
    for seed in args.seeds:
        cmd = (f"python build.py teacher-round --samples {samples.relative_to(ROOT)} --from-footage "
               f"--variant {args.variant} --seed {seed}")
        r = run_round(samples, args.scratch / f"seed{seed}", variant=args.variant, seed=seed, control=True,
                      policy=policy, command=cmd, log=print)
        rounds.append({"seed": seed, "current": {k: r["current"][k] for k in KEYS},
                       "candidate": {k: r["candidate"][k] for k in KEYS},
                       "control_no_hard_samples": {k: r["control_no_hard_samples"][k] for k in KEYS},
                       "candidate_real_at_conf": r["candidate"]["real"]["headline"]["at_conf"],
                       "current_real_at_conf": r["current"]["real"]["headline"]["at_conf"],
                       "verdict": r["verdict"], "published_to": r.get("publish", {}).get("dir"),
                       "train": r["candidate"]["train"], "labels": r["labels"], "timings": r["timings"],
                       "start": r["start"], "command": cmd})
    first = rounds[0]
    import numpy as np
    deltas = [x["candidate"]["real_AP50"] - x["current"]["real_AP50"] for x in rounds]
    over_ctrl = [x["candidate"]["real_AP50"] - x["control_no_hard_samples"]["real_AP50"] for x in rounds]
    result = {
        "bench": "teacher_loop", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "variant": args.variant,
        "what": "one VMS teacher round: device-style hard samples from the TRAINING footage -> teacher labels -> "
                "fine-tune from the shipped weights -> real/sim holdout evaluation -> publish gate; plus a control "
                "fine-tune without hard samples (same schedule, seed, data otherwise)",
        "real_holdout": {"file": "data/labels/real_holdout.json", "headline": "50 frames (3 near-duplicates of "
                         "training excluded)", "all_frames": 53, "data": "real",
                         "source": "Intel sample videos (CC BY 4.0)"},
        "sim_holdout": {"seeds": [1000], "data": "synthetic", "frames": 280},
        "hard_samples": {"count": n, "harvest_s": harvest_s, "from": "TRAIN part of the real footage "
                         "(sim.realdata.footage_split); the shipped student + ByteTrack + runtime.hardsample",
                         "by_reason": rounds and run_summary(samples)},
        "gate_policy": {"min_real_gain": policy.min_real_gain, "max_sim_drop": policy.max_sim_drop},
        "rounds": rounds,
        "summary": {"the_round_seed": first["seed"], "published": first["verdict"]["publish"],
                    "real_AP50_before": first["current"]["real_AP50"], "real_AP50_after": first["candidate"]["real_AP50"],
                    "real_AP50_delta_mean_over_seeds": round(float(np.mean(deltas)), 4),
                    "real_AP50_delta_range": [round(min(deltas), 4), round(max(deltas), 4)],
                    "hard_samples_vs_control_mean": round(float(np.mean(over_ctrl)), 4),
                    "hard_samples_vs_control_range": [round(min(over_ctrl), 4), round(max(over_ctrl), 4)],
                    "published_rounds": sum(x["verdict"]["publish"] for x in rounds), "rounds": len(rounds),
                    "round_wall_s": first["timings"]["wall_s"]},
        "machine": {"python": platform.python_version(), "cpu": platform.machine(), "cpu_count": os.cpu_count(),
                    "threads": 1, "load_average_1min": round(os.getloadavg()[0], 2)},
        "seconds": round(time.perf_counter() - t0, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(table(result))
    return 0


def run_summary(samples: Path) -> dict:
    from vms.teacher import read_samples
    out: dict = {}
    for s in read_samples(samples):
        out[s.reason] = out.get(s.reason, 0) + 1
    return out


def table(r: dict) -> str:
    lines = [f"Teacher loop on {r['variant']}: {r['hard_samples']['count']} hard samples "
             f"{r['hard_samples']['by_reason']} from the training footage",
             "| seed | model | real AP50 (50 fr) | real AP50 (53 fr) | sim person AP50 | sim machine AP50 | gate |",
             "|---|---|---|---|---|---|---|"]
    for x in r["rounds"]:
        for name, key in (("current (shipped)", "current"), ("candidate (round)", "candidate"),
                          ("control (no hard samples)", "control_no_hard_samples")):
            m = x[key]
            gate = ("PUBLISH" if x["verdict"]["publish"] else "keep current") if key == "candidate" else ""
            lines.append(f"| {x['seed']} | {name} | {m['real_AP50']:.4f} | {m['real_AP50_all_frames']:.4f} | "
                         f"{m['sim_person_AP50']:.4f} | {m['sim_machine_AP50']:.4f} | {gate} |")
    s = r["summary"]
    lines.append(f"\nround (seed {s['the_round_seed']}): real AP50 {s['real_AP50_before']:.4f} -> {s['real_AP50_after']:.4f}, "
                 f"{'published' if s['published'] else 'NOT published'}; wall {s['round_wall_s']} s. Over "
                 f"{s['rounds']} seed(s): delta {s['real_AP50_delta_mean_over_seeds']:+.4f} "
                 f"(range {s['real_AP50_delta_range']}), vs control {s['hard_samples_vs_control_mean']:+.4f} "
                 f"(range {s['hard_samples_vs_control_range']})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
