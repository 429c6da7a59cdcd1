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
on the test scenes, never used to choose a rule. The student is read as one path: for the
multi-modal student (traj-social-mm) that is its deterministic head, not its P(entry) warning.
bench/results/entry_rules.json was measured on the single-path student it replaced (traj-social-mlp).

"At equal lead": the same rule gives the two forecasters slightly different leads, so the bench
also sweeps the horizon finely (``SWEEP``, every depth margin) and compares each forecaster's best
F1 reachable at a given mean lead or more (its F1-vs-lead frontier), the student's against CV's at
CV's leads.
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
SWEEP = tuple(round(1.0 + 0.1 * i, 1) for i in range(21))   # horizons for the frontier, 1.0-3.0 s
SEED = 0


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(lead, F1) points -> for each point's lead, the best F1 of any point with that lead or more,
    sorted by lead (a non-increasing curve: a longer lead never buys a better F1 on it)."""
    pts = sorted(points)
    out, best = [], -1.0
    for lead, f1 in reversed(pts):
        best = max(best, f1)
        out.append((lead, best))
    return out[::-1]


def at_lead(front: list[tuple[float, float]], lead: float) -> float | None:
    """The frontier's F1 at ``lead``: the best F1 among its points with lead >= ``lead``."""
    ok = [f1 for ld, f1 in front if ld >= lead - 1e-9]
    return max(ok) if ok else None


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
    fronts = {}
    for who in ("student", "cv"):
        pts = []
        for h in SWEEP:
            for m in MARGINS:
                rule = EntryRule(horizon_s=h, margin_m=m)
                sc = entry.combine([entry.evaluate(g.prep, entry.fires(g.prep, d, t, rule))
                                    for g, (d, t) in zip(groups, depth[who])])
                pts.append((round(sc.mean_lead_s, 4), round(sc.f1, 4)))
        fronts[who] = frontier(pts)
    matched = []
    for lead, f1_cv in fronts["cv"]:
        f1_st = at_lead(fronts["student"], lead)
        if f1_st is not None:
            matched.append({"lead_s": lead, "f1_student": f1_st, "f1_cv": f1_cv, "f1_diff": round(f1_st - f1_cv, 4)})
    md = [m["f1_diff"] for m in matched]
    diffs = [r["f1_diff"] for r in rows]
    return {"bench": "entry_rules", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "about": __doc__.split("\n\n")[0],
            "scenes": list(realdata.SCENES), "seed": SEED, "zones": "distill/trajectory/zones.yaml",
            "horizon_s": entry.HORIZON_S, "rules": rows,
            "summary": {"student_better_f1": sum(d > 0 for d in diffs), "cv_better_f1": sum(d < 0 for d in diffs),
                        "f1_diff_min": min(diffs), "f1_diff_max": max(diffs),
                        "student_better_f1_at_equal_or_better_lead": sum(
                            r["f1_diff"] > 0 and r["lead_diff_s"] >= 0 for r in rows)},
            "frontier": {"horizons_s": list(SWEEP), "margins_m": list(MARGINS), "matched_at_cv_leads": matched,
                         "student_better": sum(d > 0 for d in md), "cv_better": sum(d < 0 for d in md),
                         "f1_diff_min": min(md) if md else None, "f1_diff_max": max(md) if md else None,
                         "f1_diff_mean": round(sum(md) / len(md), 4) if md else None},
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
    fr = r["frontier"]
    lines.append(f"frontier (horizons {fr['horizons_s'][0]}-{fr['horizons_s'][-1]} s x margins): best F1 at CV's "
                 f"lead or more, at {len(fr['matched_at_cv_leads'])} of CV's leads")
    for m in fr["matched_at_cv_leads"][::max(1, len(fr["matched_at_cv_leads"]) // 8)]:
        lines.append(f"  lead >= {m['lead_s']:.2f} s: student {m['f1_student']:.4f}  CV {m['f1_cv']:.4f}  {m['f1_diff']:+.4f}")
    lines.append(f"student better at {fr['student_better']} leads, CV at {fr['cv_better']}; differences "
                 f"{fr['f1_diff_min']:+.4f} .. {fr['f1_diff_max']:+.4f} (mean {fr['f1_diff_mean']:+.4f})")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=None, help="folder of trained leave-one-out models (default: "
                    "$SITEWARDEN_TRAJ_CACHE; none: train them, ~7 min)")
    args = ap.parse_args(argv)
    return finish(measure(args.cache), OUT, table)


if __name__ == "__main__":
    raise SystemExit(main())
