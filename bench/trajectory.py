"""Trajectory forecasting and predicted zone entry on real ETH/UCY tracks (one run).

Leave-one-scene-out over the five standard scenes (observe 8 steps, predict 12 at 2.5 Hz):
per-scene and average deterministic ADE/FDE (m) of constant velocity (CV), the teacher, the
student distilled from it (KD) and the same student trained without it (no-KD), all from the same
run; then predicted danger-zone entry on the real test tracks with the zones of
``distill/trajectory/zones.yaml``: precision, recall, F1, accuracy, mean lead time and false
warnings per hour, student vs CV on the same decision steps.

Run:  python bench/trajectory.py                 # trains the leave-one-out models itself (~15 min)
      python bench/trajectory.py --report models/trajectory/traj-mlp-s/report.json
                                                 # tabulates the report `build.py distill trajectory` wrote
Writes bench/results/trajectory.json (``--smoke``: trajectory-smoke.json).
Data: ETH (Pellegrini et al., ICCV 2009) and UCY (Lerner et al., 2007), splits as kept by
Social-STGCNN (MIT).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PUBLISHED = {  # deterministic ADE/FDE (m), average of the 5 scenes; see ../shared/REFERENCES.md
    "Linear (Social-GAN paper, Table 1)": (0.79, 1.59),
    "Social-LSTM (Social-GAN paper, Table 1)": (0.72, 1.54),
    "Social-STGCNN, deterministic (public reproduction)": (0.69, 1.36),
    "Constant velocity (public reproduction)": (0.52, 1.14),
}
PUBLISHED_ENTRY_ACCURACY = 0.9473  # the published crane-camera system (DESIGN.md, Origin)


def table(report: dict) -> str:
    cols = [("cv", "CV"), ("teacher", "teacher"), ("student_kd", "student KD"), ("student_nokd", "student no-KD")]
    lines = ["ADE/FDE (m), leave-one-scene-out test, deterministic",
             f"{'scene':<8}{'windows':>8}  " + "".join(f"{n:>16}" for _, n in cols)]
    for s, row in report["scenes"].items():
        lines.append(f"{s:<8}{row['windows']:>8}  " + "".join(
            f"{row[k]['ade']:>8.3f}/{row[k]['fde']:<7.3f}" for k, _ in cols))
    avg = report["average"]
    lines.append(f"{'average':<8}{'':>8}  " + "".join(f"{avg[k]['ade']:>8.3f}/{avg[k]['fde']:<7.3f}" for k, _ in cols))
    lines.append(f"params: teacher {report['params']['teacher']}, student {report['params']['student']}")
    lines.append("")
    e = report["entry"]
    st = e["student"]
    lines.append(f"Predicted entry (horizon {report.get('entry_horizon_s', 3.0):g} s): {st['entries']} entries + "
                 f"{st['near_misses']} near-misses ({st['entries'] / max(1, st['entries'] + st['near_misses']):.1%} "
                 f"entries), {st['hours'] * 60:.1f} min of footage")
    keys = [("precision", ".3f"), ("recall", ".3f"), ("f1", ".3f"), ("accuracy", ".4f"), ("mean_lead_s", ".2f"),
            ("false_warnings_per_hour", ".1f")]
    lines.append(f"{'':<10}" + "".join(f"{k:>24}" for k, _ in keys))
    for who in ("student", "cv"):
        lines.append(f"{who:<10}" + "".join(f"{e[who][k]:>24{f}}" for k, f in keys))
    lines.append("")
    lines.append("Published, deterministic average ADE/FDE (m): " + "; ".join(
        f"{k} {a:.2f}/{f:.2f}" for k, (a, f) in PUBLISHED.items()))
    lines.append(f"Published danger-zone entry accuracy (crane camera, own data): {PUBLISHED_ENTRY_ACCURACY:.2%}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", type=Path, help="tabulate this report instead of training")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny data, few steps (checks the path)")
    ap.add_argument("--out", type=Path, default=None, help="JSON to write")
    args = ap.parse_args(argv)
    if args.report:
        report = json.loads(args.report.read_text())
        source = f"report {args.report}"
    else:
        from distill.common import seed_everything
        from distill.trajectory import pipeline

        seed_everything(args.seed, threads=pipeline.THREADS)
        t0 = time.perf_counter()
        report = pipeline.leave_one_out(args.seed, args.smoke, print)
        from distill.trajectory.models import Teacher, n_params
        report["params"] = {"teacher": n_params(pipeline._teacher(0)), "student": n_params(pipeline._student(0))}
        report["seconds"] = {"leave_one_out": round(time.perf_counter() - t0, 1)}
        report["smoke"] = args.smoke
        source = f"python bench/trajectory.py --seed {args.seed}" + (" --smoke" if args.smoke else "")
    from distill.trajectory import entry
    report.setdefault("entry_horizon_s", entry.HORIZON_S)
    report["zones"] = "distill/trajectory/zones.yaml"
    report["source"] = source
    report["machine"] = {"python": platform.python_version(), "processor": platform.machine()}
    report["published"] = {"ade_fde_average": {k: list(v) for k, v in PUBLISHED.items()},
                           "entry_accuracy": PUBLISHED_ENTRY_ACCURACY}
    report["data"] = ("ETH/UCY real pedestrian trajectories: ETH (Pellegrini et al., ICCV 2009), UCY (Lerner et al., "
                      "2007); splits as kept by Social-STGCNN (MIT)")
    text = table(report)
    print(text)
    out = args.out or ROOT / "bench" / "results" / ("trajectory-smoke.json" if report.get("smoke") else "trajectory.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
