"""Benchmark the camera-health monitor on the simulator: detection delay per check, false raises,
and what it costs per frame against a plain frame copy in the same run.

delay        camera-faults scene (dusk; lens blocked 2-4 s, defocus 5-7 s, knocked at 8 s for good,
             lights out 11-13 s), several seeds at 10 fps: for each fault, the time from its onset
             to the raise of its own check ("raise", with after_s = --after-s) and to the first
             frame whose instantaneous verdict was bad ("seen", independent of after_s).
false raises fault-free scenes (crane-swing day, night-rain) and the camera-faults scene: raises of a
             check whose fault was not active, per hour of video; plus the per-frame rate of bad
             verdicts before persistence (what after_s has to absorb).
cost         HealthMonitor.update per frame at 640x360 and 1280x720 (median, p95, the ORB frames'
             median) and a plain `image.copy()` of the same frames as the same-run baseline.

Run:  python bench/health.py            (writes bench/results/health.json)
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

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from runtime.config import HealthRuleConfig  # noqa: E402
from runtime.health import CHECKS, HealthMonitor, HealthThresholds  # noqa: E402
from sim.render import SimSource  # noqa: E402

FAULT_CHECK = {"blocked": "blocked", "defocus": "defocused", "knocked": "moved", "lights_out": "too_dark"}
CHECK_FAULT = {v: k for k, v in FAULT_CHECK.items()}


def render(scene: str, seed: int, fps: float, resolution=(640, 360)):
    src = SimSource(scene, seed=seed, resolution=resolution, fps=fps)
    n = int(round(src.spec.duration_s * fps))
    out = []
    for i in range(n):
        f = src.frame(i)
        out.append((f.t, f.image, tuple(f.truth.faults)))
    return out


def run_monitor(frames, fps: float, after_s: float):
    mon = HealthMonitor("cam", [HealthRuleConfig(checks=CHECKS, after_s=after_s)], fps=fps)
    changes, verdicts = [], []
    for t, img, faults in frames:
        changes += mon.update(img, t)
        m = mon.last
        verdicts.append((t, faults, dict(mon.observed),
                         {"too_dark": m.luma, "blocked": m.uniform_share, "defocused": m.sharpness_ratio,
                          "moved": m.shift_px, "moved_rot": m.rotation_deg}))
    return changes, verdicts


def margins(verdicts_by_scene):
    """Per check, the measured value on frames with its fault vs on frames without any fault: how far
    each side sits from the threshold (the worst frame of each side)."""
    th = HealthThresholds()
    spec = {"too_dark": ("mean luma", th.dark_luma, "max", "min"),
            "blocked": ("uniform tile share", th.blocked_share, "min", "max"),
            "defocused": ("sharpness / baseline", th.defocus_ratio, "max", "min"),
            "moved": ("shift px (640x360)", th.moved_shift * float(np.hypot(640, 360)), "min", "max")}
    out = {}
    for check, (what, thr, worst_fault, worst_clean) in spec.items():
        fault = CHECK_FAULT[check]
        on, off = [], []
        for verdicts in verdicts_by_scene.values():
            for _, faults, _, vals in verdicts:
                v = vals[check]
                if v is None:
                    continue
                if fault in faults and (check == "too_dark" or "lights_out" not in faults):
                    on.append(v)
                elif not faults:
                    off.append(v)
        pick = {"min": min, "max": max}
        out[check] = {"measure": what, "threshold": round(thr, 3),
                      "fault_worst": round(pick[worst_fault](on), 3) if on else None,
                      "clean_worst": round(pick[worst_clean](off), 3) if off else None,
                      "fault_frames": len(on), "clean_frames": len(off)}
    return out


def delays(frames, changes, verdicts):
    """Per fault: onset, seen (first bad verdict of its check), raise (first raise of its check)."""
    out = {}
    for fault, check in FAULT_CHECK.items():
        onsets = [t for t, _, faults in frames if fault in faults]
        if not onsets:
            continue
        onset = onsets[0]
        seen = next((t for t, faults, obs, _ in verdicts if t >= onset and obs.get(check)), None)
        raised = next((c.t for c in changes if c.check == check and c.state == "raised" and c.t >= onset), None)
        out[check] = {"onset_s": onset, "seen_s": None if seen is None else round(seen - onset, 3),
                      "raise_s": None if raised is None else round(raised - onset, 3)}
    return out


def false_raises(frames, changes):
    """Raises whose check's fault was not active at any frame of the episode [t_start, t]."""
    bad = []
    for c in changes:
        if c.state != "raised" or c.check == "silent":
            continue
        fault = CHECK_FAULT[c.check]
        active = [fault in faults for t, _, faults in frames if c.t_start <= t <= c.t]
        if not any(active):
            bad.append({"check": c.check, "t": round(c.t, 2), "value": c.value})
    return bad


def bad_verdict_rate(verdicts):
    """Per check: share of frames whose instantaneous verdict was bad while its fault was absent."""
    rate = {}
    for check in FAULT_CHECK.values():
        fault = CHECK_FAULT[check]
        judged = [obs.get(check) for _, faults, obs, _ in verdicts if fault not in faults and obs.get(check) is not None]
        rate[check] = round(sum(bool(v) for v in judged) / max(len(judged), 1), 4)
    return rate


def silent_delay(after_s: float, fps: float, poll_s: float = 0.1):
    mon = HealthMonitor("cam", [HealthRuleConfig(checks=("silent",), after_s=after_s)], fps=fps)
    img = np.zeros((90, 160, 3), np.uint8)
    t = 0.0
    while t < 1.0:
        mon.update(img, t)
        t += 1 / fps
    last = t - 1 / fps
    while True:
        got = mon.update(None, t)
        if got:
            return round(got[0].t - last, 3)
        t += poll_s


def cost(frames, fps: float, size, repeats: int = 1):
    imgs = [cv2.resize(img, size, interpolation=cv2.INTER_LINEAR) if (img.shape[1], img.shape[0]) != size else img
            for _, img, _ in frames]
    ts = [t for t, _, _ in frames]
    mon_ms, orb_ms, copy_ms = [], [], []
    for _ in range(repeats):
        mon = HealthMonitor("cam", [HealthRuleConfig(checks=CHECKS, after_s=1.0)], fps=fps)
        for t, img in zip(ts, imgs):
            before = mon._next_match
            t0 = time.perf_counter()
            mon.update(img, t)
            dt = (time.perf_counter() - t0) * 1000
            (orb_ms if mon._next_match != before else mon_ms).append(dt)
            t0 = time.perf_counter()
            img.copy()
            copy_ms.append((time.perf_counter() - t0) * 1000)
    every = sorted(mon_ms + orb_ms)
    med = statistics.median(every)
    cp = statistics.median(copy_ms)
    return {"size": list(size), "frames": len(every), "monitor_ms_median": round(med, 3),
            "monitor_ms_p95": round(every[int(0.95 * (len(every) - 1))], 3),
            "monitor_ms_mean": round(statistics.fmean(every), 3),
            "cheap_frames_ms_median": round(statistics.median(mon_ms), 3) if mon_ms else None,
            "orb_frames_ms_median": round(statistics.median(orb_ms), 3) if orb_ms else None,
            "copy_ms_median": round(cp, 4), "ratio_median_vs_copy": round(med / max(cp, 1e-6), 1),
            "ratio_mean_vs_copy": round(statistics.fmean(every) / max(statistics.fmean(copy_ms), 1e-6), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--after-s", type=float, default=1.0)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "health.json"))
    args = ap.parse_args()
    cv2.setNumThreads(1)  # a device runs this beside the detector: measure one core

    t_start = time.time()
    per_seed, fr_all, verdicts_all, false_all, video_s = [], {}, {}, {}, {}
    cost_frames = None
    for scene, seeds in (("camera-faults", range(args.seeds)), ("crane-swing", range(max(1, args.seeds - 1))),
                         ("night-rain", range(max(1, args.seeds - 1)))):
        for seed in seeds:
            frames = render(scene, seed, args.fps)
            if scene == "camera-faults" and cost_frames is None:
                cost_frames = frames
            changes, verdicts = run_monitor(frames, args.fps, args.after_s)
            video_s[scene] = video_s.get(scene, 0.0) + len(frames) / args.fps
            false_all.setdefault(scene, []).extend(false_raises(frames, changes))
            verdicts_all.setdefault(scene, []).extend(verdicts)
            if scene == "camera-faults":
                per_seed.append({"seed": seed, "delays": delays(frames, changes, verdicts),
                                 "changes": [(c.check, c.state, round(c.t, 2)) for c in changes]})
            print(f"{scene} seed {seed}: {len(frames)} frames, {len(changes)} changes", file=sys.stderr)

    rows = {}
    for check in FAULT_CHECK.values():
        d = [s["delays"].get(check, {}) for s in per_seed]
        raised = [x["raise_s"] for x in d if x.get("raise_s") is not None]
        seen = [x["seen_s"] for x in d if x.get("seen_s") is not None]
        rows[check] = {"detected": f"{len(raised)}/{len(d)}",
                       "seen_s_mean": round(statistics.fmean(seen), 3) if seen else None,
                       "raise_s_mean": round(statistics.fmean(raised), 3) if raised else None,
                       "raise_s_max": max(raised) if raised else None}
    rows["silent"] = {"detected": "1/1", "seen_s_mean": None,
                      "raise_s_mean": silent_delay(args.after_s, args.fps), "raise_s_max": None}
    false_summary = {scene: {"video_s": round(video_s[scene], 1), "false_raises": len(v),
                             "per_hour": round(len(v) / (video_s[scene] / 3600.0), 2), "list": v,
                             "bad_verdict_rate": bad_verdict_rate(verdicts_all[scene])}
                     for scene, v in false_all.items()}
    margin = margins(verdicts_all)
    costs = [cost(cost_frames, args.fps, (640, 360), repeats=3), cost(cost_frames, args.fps, (1280, 720), repeats=2)]

    print(f"\ncamera health, after_s = {args.after_s} s, {args.fps:g} fps, {args.seeds} camera-faults seeds")
    print(f"{'check':<10} {'detected':>8} {'seen s':>7} {'raise s':>8} {'max s':>6}")
    for check, r in rows.items():
        f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"{check:<10} {r['detected']:>8} {f(r['seen_s_mean']):>7} {f(r['raise_s_mean']):>8} {f(r['raise_s_max']):>6}")
    print(f"\n{'scene':<14} {'video s':>8} {'false raises':>12} {'per hour':>9}  bad verdicts per frame (before after_s)")
    for scene, s in false_summary.items():
        print(f"{scene:<14} {s['video_s']:>8} {s['false_raises']:>12} {s['per_hour']:>9}  {s['bad_verdict_rate']}")
    print(f"\n{'check':<10} {'measure':<22} {'threshold':>9} {'worst fault frame':>17} {'worst clean frame':>17}")
    for check, m in margin.items():
        print(f"{check:<10} {m['measure']:<22} {m['threshold']:>9} {m['fault_worst']!s:>17} {m['clean_worst']!s:>17}")
    print(f"\n{'frame':<10} {'monitor ms med':>14} {'mean':>6} {'p95':>6} {'ORB frames':>10} {'copy ms':>8} "
          f"{'x copy (med)':>12} {'x copy (mean)':>13}")
    for c in costs:
        print(f"{c['size'][0]}x{c['size'][1]:<5} {c['monitor_ms_median']:>14} {c['monitor_ms_mean']:>6} "
              f"{c['monitor_ms_p95']:>6} {c['orb_frames_ms_median']:>10} {c['copy_ms_median']:>8} "
              f"{c['ratio_median_vs_copy']:>12} {c['ratio_mean_vs_copy']:>13}")

    result = {
        "bench": "health", "after_s": args.after_s, "fps": args.fps, "seeds": args.seeds,
        "thresholds": HealthThresholds().__dict__, "delay": rows, "false_raises": false_summary, "margins": margin,
        "cost": costs, "per_seed": per_seed,
        "host": {"python": platform.python_version(), "opencv": cv2.__version__, "machine": platform.machine(),
                 "cpus": os.cpu_count(), "cv2_threads": 1,
                 "loadavg_1m_at_end": round(os.getloadavg()[0], 2)},  # the cores are shared: ORB timings vary
        "wall_s": round(time.time() - t_start, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"\nwrote {Path(args.out).relative_to(REPO) if Path(args.out).is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
