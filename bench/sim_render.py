"""Rendering speed of the synthetic scenes (rendering only: no video encoding, no file output).

    python bench/sim_render.py [--frames 150] [--quick]

One core (cv2.setNumThreads(1)), 640x360. The headline row is crane-swing, day, 10 workers; the
other rows are its conditions and the other named scenes. Because the machine is shared and noisy,
the same run also times a bare `background.copy()` loop and reports every row relative to it and
to crane-swing/day. Prints a table and writes bench/results/sim_render.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from sim.render import SimSource  # noqa: E402
from sim.scenes import SCENES  # noqa: E402

CONDITIONS = ["day", "dusk", "night", "rain", "snow", "fog", "wind", "blur", "jpeg", "night+rain+wind"]


def _time(fn, n: int, repeats: int = 3) -> tuple[float, float]:
    """Best-of-repeats (wall-clock, process-CPU) calls per second of n calls of fn(i). The CPU
    figure is what one free core would give; the wall figure includes whatever else the shared
    machine is doing."""
    best_wall = best_cpu = 0.0
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            fn(i)
        best_wall = max(best_wall, n / (time.perf_counter() - t0))
        best_cpu = max(best_cpu, n / max(time.process_time() - c0, 1e-9))
    return best_wall, best_cpu


def bench_source(scene: str, condition: str | None, n: int) -> tuple[float, int]:
    src = SimSource(scene, seed=0, resolution=(640, 360), fps=10.0, condition=condition)
    src.frame(0)  # builds background and effect layers (one-off)
    for w in src.workers:  # motion timelines for the whole run (one-off, like the background)
        w.state(n / 10.0 + 1.0)
    return (*_time(lambda i: src.frame(1 + i), n), len(src.workers))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--quick", action="store_true", help="crane-swing day only")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sim_render.json"))
    a = ap.parse_args(argv)
    cv2.setNumThreads(1)
    n = a.frames

    src = SimSource("crane-swing", seed=0, resolution=(640, 360))
    bg = src.background(src.camera).image
    copy_fps, _ = _time(lambda i: bg.copy(), n * 10)

    rows = []
    cases = [("crane-swing", c) for c in (["day"] if a.quick else CONDITIONS)]
    if not a.quick:
        cases += [(s, None) for s in SCENES if s != "crane-swing"]
    for scene, cond in cases:
        fps, cpu_fps, n_workers = bench_source(scene, cond, n)
        label = cond or SCENES[scene].condition.name
        rows.append({"scene": scene, "condition": label, "workers": n_workers, "fps": round(fps, 1),
                     "cpu_fps": round(cpu_fps, 1)})
    day_row = next(r for r in rows if r["scene"] == "crane-swing" and r["condition"] == "day")
    day, day_cpu = day_row["fps"], day_row["cpu_fps"]
    for r in rows:
        r["relative_to_day"] = round(r["cpu_fps"] / day_cpu, 3)
        r["relative_to_bg_copy"] = round(r["fps"] / copy_fps, 5)

    print(f"{'scene':15s} {'condition':18s} {'workers':>7s} {'frames/s':>9s} {'cpu f/s':>8s} {'vs day':>7s}")
    for r in rows:
        print(f"{r['scene']:15s} {r['condition']:18s} {r['workers']:7d} {r['fps']:9.1f} {r['cpu_fps']:8.1f} {r['relative_to_day']:7.2f}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"baseline: background.copy() {copy_fps:,.0f}/s; load average {load:.2f} on {os.cpu_count()} cores")
    print(f"target crane-swing day >= 100 frames/s on one core: {'met' if day_cpu >= 100 else 'NOT met'} "
          f"(cpu {day_cpu:.1f}, wall {day:.1f})")
    result = {
        "bench": "sim_render", "resolution": [640, 360], "frames_per_case": n, "threads": 1,
        "what": "rendering only (entities, conditions, ground truth); no video encoding, no file output; best of 3",
        "target": {"scene": "crane-swing", "condition": "day", "workers": 10, "fps": 100},
        "target_met": day_cpu >= 100,
        "target_measure": "cpu_fps: frames per second of process CPU time (one thread), best of 3; fps is wall-clock",
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "baseline_background_copy_per_s": round(copy_fps, 1),
        "rows": rows,
        "machine": {"python": platform.python_version(), "opencv": cv2.__version__, "numpy": np.__version__,
                    "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
