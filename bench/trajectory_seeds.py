"""The shipped trajectory recipe over several training seeds: is its lead over constant velocity a seed's luck?

    python bench/trajectory_seeds.py --train 1 2          # trains seeds 1 and 2 (~10 min each, one thread)
    python bench/trajectory_seeds.py --reports models/trajectory/traj-social-mm/report.json DIR/.../report.json

Each seed is a whole `python build.py distill trajectory --seed S --out DIR` run (leave-one-scene-out
ADE/FDE of the KD and no-KD students, predicted entry on the five ETH/UCY test scenes with every
forecaster's rule tuned on the fold's val files). The table puts the seeds side by side with CV (the
same in every run) at each lead floor; bench/results/trajectory_seeds.json keeps the rows.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import finish, machine  # noqa: E402

OUT = ROOT / "bench" / "results" / "trajectory_seeds.json"
SHIPPED = ROOT / "models" / "trajectory" / "traj-social-mm" / "report.json"


def row(report: dict) -> dict:
    avg = report["average"]
    entry = {k.removeprefix("min_lead_"): {w: {m: v[w][m] for m in ("f1", "accuracy", "mean_lead_s", "false_warnings_per_hour")}
                                            for w in ("student", "cv")}
             for k, v in report["entry_settings"].items() if k.startswith("min_lead_")}
    return {"seed": report["seed"], "command": report["command"], "paths_k": report.get("paths_k"),
            "ade_fde": {k: avg[k] for k in ("student_kd", "student_nokd", "teacher", "cv")}, "entry": entry}


def table(r: dict) -> str:
    rows = r["rows"]
    lines = [f"{'seed':<6}{'ADE/FDE KD':>14}{'no-KD':>14}{'CV':>14}   " + "  ".join(
        f"{'floor ' + L:>22}" for L in rows[0]["entry"])]
    for x in rows:
        a = x["ade_fde"]
        cells = "  ".join(f"{e['student']['f1']:.4f}@{e['student']['mean_lead_s']:.2f}s vs {e['cv']['f1']:.4f}@{e['cv']['mean_lead_s']:.2f}"
                          for e in x["entry"].values())
        lines.append(f"{x['seed']:<6}" + "".join(f"{a[k]['ade']:>7.3f}/{a[k]['fde']:.3f}" for k in ("student_kd", "student_nokd", "cv"))
                     + "   " + cells)
    lines.append("entry cells: student F1 @ mean lead vs CV F1 @ mean lead, rules tuned on val at that lead floor")
    wins = [x["seed"] for x in rows if x["entry"]["1.5"]["student"]["f1"] > x["entry"]["1.5"]["cv"]["f1"]
            and x["entry"]["1.5"]["student"]["mean_lead_s"] >= x["entry"]["1.5"]["cv"]["mean_lead_s"]
            and x["ade_fde"]["student_kd"]["ade"] < x["ade_fde"]["cv"]["ade"]
            and x["ade_fde"]["student_kd"]["fde"] < x["ade_fde"]["cv"]["fde"]]
    lines.append(f"issue 6's Must (ADE and FDE below CV; F1 above CV at equal or longer lead, 1.5 s floor) holds for "
                 f"seeds {wins} of {[x['seed'] for x in rows]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reports", type=Path, nargs="*", default=[], help="report.json files of finished runs")
    ap.add_argument("--train", type=int, nargs="*", default=[], help="seeds to train now (besides the shipped report)")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    reports = list(a.reports) or [SHIPPED]
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.train:
            out = Path(tmp) / f"seed{seed}"
            subprocess.run([sys.executable, str(ROOT / "build.py"), "distill", "trajectory", "--seed", str(seed),
                            "--out", str(out)], check=True, cwd=ROOT)
            reports.append(out / "trajectory" / "traj-social-mm" / "report.json")
        rows = sorted((row(json.loads(p.read_text())) for p in reports), key=lambda x: x["seed"])
    return finish({"bench": "trajectory_seeds", "about": __doc__.split("\n")[0], "rows": rows, "machine": machine()},
                  a.out, table)


if __name__ == "__main__":
    raise SystemExit(main())
