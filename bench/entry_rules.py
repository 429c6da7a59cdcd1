"""Predicted entry on real ETH/UCY tracks: the student against constant velocity under the SAME
warning rules, so the forecasts are compared and not the rule tuning.

    python bench/entry_rules.py [--cache DIR]   # table + bench/results/entry_rules.json

``build.py distill trajectory`` tunes one rule per forecaster on each fold's val files and scores
the test scenes with it (issue 6's headline). This bench answers the question behind that number:
does the student's forecast, under any fixed rule, warn better than constant velocity? For every
rule of a small grid (horizon, depth margin; no time-growing margin, no persistence) it scores both
forecasters' warnings on the five test scenes, pooled, with the leave-one-scene-out students of the
recipe in distill/trajectory/pipeline.py (trained, or read from ``--cache`` /
``$SITEWARDEN_TRAJ_CACHE`` where ``build.py distill trajectory`` left them). This is a diagnosis
on the test scenes, never used to choose a rule.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import finish, machine  # noqa: E402

OUT = ROOT / "bench" / "results" / "entry_rules.json"
HORIZONS = (1.6, 2.0, 2.4, 2.8)
MARGINS = (0.0, 0.1, 0.2, 0.3)
SEED = 0


def measure(cache: str | None, log=print) -> dict:
    import torch

    from distill.trajectory import entry, pipeline, tune
    from runtime.forecast import EntryRule
    from sim import realdata

    torch.set_num_threads(1)
    zones = entry.load_zones()
    cache_dir = pipeline.cache_dir(cache)
    groups, depth = [], {"student": [], "cv": []}
    for scene in realdata.SCENES:
        res = pipeline.train_set(scene, SEED, False, log, cache_dir)
        test = tune.decisions(f"{scene}/test", entry.test_runs(scene), zones[scene])
        groups.append(test)
        depth["student"].append(entry.path_depth(test.prep, test.forecast(res["kd"].model)))
        depth["cv"].append(entry.path_depth(test.prep, test.forecast(None)))
    rows = []
    for h in HORIZONS:
        for m in MARGINS:
            rule = EntryRule(horizon_s=h, margin_m=m)
            row = {"rule": rule.as_dict()}
            for who in ("student", "cv"):
                parts = [entry.evaluate(g.prep, entry.fires(g.prep, d, t, rule)) for g, (d, t) in zip(groups, depth[who])]
                row[who] = entry.combine(parts).as_dict()
            row["f1_diff"] = round(row["student"]["f1"] - row["cv"]["f1"], 4)
            row["lead_diff_s"] = round(row["student"]["mean_lead_s"] - row["cv"]["mean_lead_s"], 4)
            rows.append(row)
    diffs = [r["f1_diff"] for r in rows]
    return {"bench": "entry_rules", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "about": __doc__.split("\n\n")[0],
            "scenes": list(realdata.SCENES), "seed": SEED, "zones": "distill/trajectory/zones.yaml",
            "horizon_s": entry.HORIZON_S, "rules": rows,
            "summary": {"student_better_f1": sum(d > 0 for d in diffs), "cv_better_f1": sum(d < 0 for d in diffs),
                        "f1_diff_min": min(diffs), "f1_diff_max": max(diffs),
                        "student_better_f1_at_equal_or_better_lead": sum(
                            r["f1_diff"] > 0 and r["lead_diff_s"] >= 0 for r in rows)},
            "machine": machine()}


def table(r: dict) -> str:
    lines = ["predicted entry on the five ETH/UCY test scenes (pooled), student vs CV under the same rule",
             f"{'horizon':>8}{'margin':>8}  {'F1 st':>7}{'F1 CV':>7}{'diff':>8}  {'lead st':>8}{'lead CV':>8}"]
    for row in r["rules"]:
        ru, s, c = row["rule"], row["student"], row["cv"]
        lines.append(f"{ru['horizon_s']:>8.1f}{ru['margin_m']:>8.1f}  {s['f1']:>7.4f}{c['f1']:>7.4f}"
                     f"{row['f1_diff']:>+8.4f}  {s['mean_lead_s']:>8.2f}{c['mean_lead_s']:>8.2f}")
    sm = r["summary"]
    lines.append(f"student better F1 under {sm['student_better_f1']} rules, CV under {sm['cv_better_f1']}; "
                 f"differences {sm['f1_diff_min']:+.4f} .. {sm['f1_diff_max']:+.4f}; student better F1 at equal "
                 f"or better lead under {sm['student_better_f1_at_equal_or_better_lead']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=None, help="folder of trained leave-one-out models (default: "
                    "$SITEWARDEN_TRAJ_CACHE; none: train them, ~7 min)")
    args = ap.parse_args(argv)
    return finish(measure(args.cache), OUT, table)


if __name__ == "__main__":
    raise SystemExit(main())
