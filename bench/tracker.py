"""Benchmark the ByteTrack tracker against a naive greedy IoU matcher, in the same run.

Two measurements, both on generated scenes (deterministic for a given --seed):

speed     `update()` time per frame with 1, 10 and 50 objects in view (median and p95 over the
          frames of a 10 fps scene), for ByteTrack and for the baseline.
accuracy  MOTA / IDF1 / id switches (motmetrics, IoU >= 0.5) on one fixed busy scene: people and
          machines walking at constant velocity and bouncing off the frame edges (so they cross),
          box jitter, some hidden for about a second, some only weakly detected for a while
          (partial occlusion), a few false positives.

The baseline is what one writes first: greedy matching of detections (score >= 0.5) to each
track's last box by IoU >= 0.3, a new id for every unmatched detection, tracks forgotten after
the same buffer as ByteTrack's. No motion model, no second stage, no confirmation.

Run:  python bench/tracker.py            (writes bench/results/tracker.json)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from runtime.detections import Detections, iou  # noqa: E402
from runtime.tracker import ByteTrack  # noqa: E402

FPS = 10
FRAME_W, FRAME_H = 1280, 720


# ============================================================================ scenes


def make_scene(n_objects: int, n_frames: int, seed: int, noise_px: float = 2.5, hide_p: float = 0.3,
               weak_p: float = 0.3, fp_rate: float = 0.2):
    """Frames of (gt_ids, gt_boxes, Detections). Objects bounce inside the frame; some are hidden for
    8-12 frames, some detected at score 0.2-0.45 for 5-10 frames; `fp_rate` false positives per frame."""
    rng = np.random.default_rng(seed)
    cls = (rng.uniform(size=n_objects) < 0.2).astype(np.int64)          # ~20 % machines
    wh = np.where(cls[:, None] == 1, rng.uniform([90, 60], [180, 120], (n_objects, 2)),
                  rng.uniform([25, 60], [45, 130], (n_objects, 2)))
    pos = rng.uniform(wh / 2, [FRAME_W, FRAME_H] - wh / 2)
    speed = np.where(cls == 1, rng.uniform(1, 4, n_objects), rng.uniform(2, 9, n_objects))
    ang = rng.uniform(0, 2 * np.pi, n_objects)
    vel = np.stack([np.cos(ang), np.sin(ang)], 1) * speed[:, None]
    hidden, weak = [], []
    for _ in range(n_objects):
        s = rng.integers(0, n_frames)
        hidden.append(range(s, s + rng.integers(8, 13)) if rng.uniform() < hide_p else range(0))
        s = rng.integers(0, n_frames)
        weak.append(range(s, s + rng.integers(5, 11)) if rng.uniform() < weak_p else range(0))
    frames = []
    for f in range(n_frames):
        if f:
            pos = pos + vel
            lo, hi = wh / 2, np.array([FRAME_W, FRAME_H]) - wh / 2
            bounce = (pos < lo) | (pos > hi)
            vel = np.where(bounce, -vel, vel)
            pos = np.clip(pos, lo, hi)
        boxes = np.concatenate([pos - wh / 2, pos + wh / 2], 1)
        vis = np.array([f not in h for h in hidden])
        score = np.where([f in w for w in weak], rng.uniform(0.2, 0.45, n_objects), rng.uniform(0.6, 0.95, n_objects))
        det_boxes = boxes[vis] + rng.normal(0, noise_px, (int(vis.sum()), 4))
        det_score, det_cls = score[vis], cls[vis]
        n_fp = rng.poisson(fp_rate)
        if n_fp:
            c = rng.uniform([0, 0], [FRAME_W - 40, FRAME_H - 90], (n_fp, 2))
            det_boxes = np.concatenate([det_boxes, np.concatenate([c, c + [40, 90]], 1)])
            det_score = np.concatenate([det_score, rng.uniform(0.1, 0.65, n_fp)])
            det_cls = np.concatenate([det_cls, np.zeros(n_fp, np.int64)])
        dets = Detections.from_arrays(det_boxes, det_score, det_cls)
        frames.append((np.flatnonzero(vis), boxes[vis], dets))
    return frames


# ============================================================================ baseline


class GreedyIoU:
    """The naive baseline: greedy IoU matching to last boxes, new id per unmatched detection."""

    def __init__(self, fps: float = FPS, min_score: float = 0.5, min_iou: float = 0.3, buffer_s: float = 3.0):
        self.min_score, self.min_iou = min_score, min_iou
        self.buffer = max(1, round(buffer_s * fps))
        self.reset()

    def reset(self) -> None:
        self.boxes = np.zeros((0, 4), np.float32)
        self.cls = np.zeros(0, np.int64)
        self.ids = np.zeros(0, np.int64)
        self.age = np.zeros(0, np.int64)
        self.next_id = 1

    def update(self, dets: Detections) -> Detections:
        dets = dets[dets.confidence >= self.min_score]
        o = iou(self.boxes, dets.xyxy)
        o[self.cls[:, None] != dets.class_id[None, :]] = 0
        out_ids = np.full(len(dets), -1, np.int64)
        used_t = np.zeros(len(self.boxes), bool)
        for flat in np.argsort(-o, axis=None):
            t, d = divmod(int(flat), max(len(dets), 1))
            if o[t, d] < self.min_iou:
                break
            if used_t[t] or out_ids[d] >= 0:
                continue
            used_t[t] = True
            out_ids[d] = self.ids[t]
            self.boxes[t] = dets.xyxy[d]
        self.age = np.where(used_t, 0, self.age + 1)
        new = np.flatnonzero(out_ids < 0)
        out_ids[new] = np.arange(self.next_id, self.next_id + len(new))
        self.next_id += len(new)
        keep = self.age <= self.buffer
        self.boxes = np.concatenate([self.boxes[keep], dets.xyxy[new]])
        self.cls = np.concatenate([self.cls[keep], dets.class_id[new]])
        self.ids = np.concatenate([self.ids[keep], out_ids[new]])
        self.age = np.concatenate([self.age[keep], np.zeros(len(new), np.int64)])
        return dets.with_(tracker_id=out_ids)


# ============================================================================ measurements


def time_per_frame(tracker, frames, repeats: int) -> dict[str, float]:
    samples = []
    for _ in range(repeats):
        tracker.reset()
        for _, _, dets in frames:
            t0 = time.perf_counter()
            tracker.update(dets)
            samples.append(time.perf_counter() - t0)
    samples.sort()
    return {"median_ms": statistics.median(samples) * 1e3, "p95_ms": samples[int(0.95 * (len(samples) - 1))] * 1e3}


def mot_metrics(tracker, frames) -> dict[str, float]:
    import motmetrics as mm

    tracker.reset()
    acc = mm.MOTAccumulator(auto_id=True)
    for gt_ids, gt_boxes, dets in frames:
        out = tracker.update(dets)
        d = 1.0 - iou(gt_boxes, out.xyxy).astype(np.float64)
        d[d > 0.5] = np.nan
        acc.update(gt_ids.tolist(), out.tracker_id.tolist(), d)
    s = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches", "num_false_positives", "num_misses"],
                                    name="x")
    return {k: round(float(s[k].iloc[0]), 4) for k in s.columns}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--frames", type=int, default=200, help="frames per timing scene")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--solver", default="auto", choices=["auto", "lap", "scipy"])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tracker.json")
    args = ap.parse_args(argv)

    byte = ByteTrack(fps=FPS, solver=args.solver)
    greedy = GreedyIoU(fps=FPS)
    speed = {}
    for n in (1, 10, 50):
        frames = make_scene(n, args.frames, args.seed + n)
        b, g = time_per_frame(byte, frames, args.repeats), time_per_frame(greedy, frames, args.repeats)
        speed[str(n)] = {"bytetrack": b, "greedy": g, "ratio_median": b["median_ms"] / g["median_ms"]}

    scene = make_scene(20, 300, args.seed)
    acc = {"scene": "20 objects, 300 frames at 10 fps, 1280x720, jitter 2.5 px, 30% hidden ~1 s, "
                    "30% weak (0.2-0.45) 5-10 frames, 0.2 false positives/frame",
           "bytetrack": mot_metrics(byte, scene), "greedy": mot_metrics(greedy, scene)}
    acc["idf1_ratio"] = acc["bytetrack"]["idf1"] / acc["greedy"]["idf1"]
    acc["mota_ratio"] = acc["bytetrack"]["mota"] / acc["greedy"]["mota"]

    print(f"ByteTrack (solver {byte.solver}) vs greedy IoU baseline, same run; {platform.processor() or platform.machine()}")
    print(f"{'objects':>8} {'byte med ms':>12} {'byte p95 ms':>12} {'greedy med ms':>14} {'ratio':>6}")
    for n, r in speed.items():
        print(f"{n:>8} {r['bytetrack']['median_ms']:>12.3f} {r['bytetrack']['p95_ms']:>12.3f} "
              f"{r['greedy']['median_ms']:>14.3f} {r['ratio_median']:>6.2f}")
    print(f"\naccuracy on: {acc['scene']}")
    print(f"{'tracker':>10} {'MOTA':>7} {'IDF1':>7} {'IDsw':>5} {'FP':>5} {'miss':>5}")
    for name in ("bytetrack", "greedy"):
        m = acc[name]
        print(f"{name:>10} {m['mota']:>7.3f} {m['idf1']:>7.3f} {int(m['num_switches']):>5} "
              f"{int(m['num_false_positives']):>5} {int(m['num_misses']):>5}")
    print(f"IDF1 ratio {acc['idf1_ratio']:.2f}, MOTA ratio {acc['mota_ratio']:.2f}")

    result = {
        "bench": "tracker", "seed": args.seed, "fps": FPS, "frames_per_timing_scene": args.frames,
        "repeats": args.repeats, "solver": byte.solver, "python": platform.python_version(),
        "numpy": np.__version__, "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),  # timings are noisy on a shared, loaded host
        "speed": speed, "accuracy": acc,
        "baseline": "greedy IoU (>=0.3) to last boxes, detections >= 0.5, same 3 s buffer, no motion model",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
