"""Trajectory forecasting and predicted zone entry on real ETH/UCY tracks (one run).

Leave-one-scene-out over the five standard scenes (observe 8 steps, predict 12 at 2.5 Hz):
per-scene and average deterministic ADE/FDE (m) of constant velocity (CV), the teacher, the
student distilled from it (KD) and the same student trained without it (no-KD), all from the same
run; then predicted danger-zone entry on the real test tracks with the zones of
``distill/trajectory/zones.yaml``: precision, recall, F1, accuracy, mean lead time and false
warnings per hour, student vs CV on the same decision steps: with the plain rule (warn when any
forecast point within 3 s is inside) and with each forecaster's own warning rule (horizon, depth
margin growing with time, persistence: runtime.forecast.EntryRule) tuned by the same procedure on
the fold's val files only (distill/trajectory/tune.py), at lead-time floors 1.5-1.8 s.

Run:  python bench/trajectory.py                 # trains the leave-one-out models itself (~20 min), or
                                                 # reuses them from ~/.cache/sitewarden/trajectory (~2 min)
      python bench/trajectory.py --report models/trajectory/traj-social-mm/report.json
                                                 # tabulates the report `build.py distill trajectory` wrote
      python bench/trajectory.py --grid-ablation    # smaller warning-rule families, student vs CV
Writes bench/results/trajectory.json (``--smoke``: trajectory-smoke.json; ``--grid-ablation``:
trajectory-grids.json).
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
    lines += entry_table(report)
    lines.append("")
    lines.append("Published, deterministic average ADE/FDE (m): " + "; ".join(
        f"{k} {a:.2f}/{f:.2f}" for k, (a, f) in PUBLISHED.items()))
    lines.append(f"Published danger-zone entry accuracy (crane camera, own data): {PUBLISHED_ENTRY_ACCURACY:.2%}")
    return "\n".join(lines)


ENTRY_KEYS = [("precision", ".3f"), ("recall", ".3f"), ("f1", ".4f"), ("accuracy", ".4f"), ("mean_lead_s", ".2f"),
              ("false_warnings_per_hour", ".0f")]


def _rule(r: dict) -> str:
    return (f"h {r['horizon_s']:g} s, margin {r['margin_m']:g} m + {r['margin_per_s']:g} m/s, "
            f"persist {r['persist_s']:g} s" + (f", P(entry) >= {r['tau']:g}" if "tau" in r else ""))


def entry_table(report: dict) -> list[str]:
    """Predicted-entry scores, student vs CV from the same run: the plain 3 s rule and each
    forecaster's own val-tuned rule (test and val), per lead-time floor."""
    st = report["entry"]["student"]
    lines = [f"Predicted entry (zone horizon {report.get('entry_horizon_s', 3.0):g} s): {st['entries']} entries + "
             f"{st['near_misses']} near-misses ({st['entries'] / max(1, st['entries'] + st['near_misses']):.1%} "
             f"entries, {st['near_misses'] / max(1, st['entries'] + st['near_misses']):.1%} near-misses), "
             f"{st['hours'] * 60:.1f} min of test footage, leave-one-scene-out"]
    tuning = report.get("entry_tuning")
    if tuning:
        lines.append(f"Warning rule: {tuning['objective']}")
    lines.append(f"{'':<34}" + "".join(f"{k.replace('false_warnings_per_hour', 'false/h'):>12}" for k, _ in ENTRY_KEYS))
    settings = report.get("entry_settings") or {"default": report["entry"]}
    for key, res in settings.items():
        name = "plain 3 s rule" if key == "default" else f"tuned, lead>={key.split('_')[-1]}"
        for who in ("student", "cv"):
            lines.append(f"{'test  ' + name[:22] + ' ' + who:<34}" +
                         "".join(f"{res[who][k]:>12{f}}" for k, f in ENTRY_KEYS))
        if report.get("entry_val"):
            for who in ("student", "cv"):
                v = report["entry_val"][key][who]
                lines.append(f"{'  val ' + name[:22] + ' ' + who:<34}" +
                             "".join(f"{v[k]:>12{f}}" for k, f in ENTRY_KEYS))
    if tuning:
        head = tuning["headline"]
        lines.append(f"Rules per fold ({head}, tuned on that fold's val files):")
        for s, row in report["scenes"].items():
            r = row["entry_rules"][head]
            lines.append(f"  {s:<6} student: {_rule(r['student'])};  CV: {_rule(r['cv'])}")
        if "ship" in report and "entry_rules" in report["ship"]:
            sr = report["ship"]["entry_rules"]
            lines.append(f"  shipped (all five val splits) student: {_rule(sr['model'])};  CV: {_rule(sr['cv'])}")
        e = report["entry"]
        verdict = ("beats" if e["student"]["f1"] > e["cv"]["f1"] else "does NOT beat")
        lead_ok = e["student"]["mean_lead_s"] >= e["cv"]["mean_lead_s"] - 1e-9
        lines.append(f"Headline ({head}): student {verdict} CV on test F1 ({e['student']['f1']:.4f} vs "
                     f"{e['cv']['f1']:.4f}) at {'equal or better' if lead_ok else 'SHORTER'} mean lead "
                     f"({e['student']['mean_lead_s']:.2f} vs {e['cv']['mean_lead_s']:.2f} s)")
    return lines


def grid_ablation(cache: Path | None, seed: int = 0) -> dict:
    """The same val-only tuning with smaller rule families (horizon only; + margin; + persistence;
    margins at the full 3 s), student vs CV on every leave-one-out fold: is any family one where the
    student wins? Uses the cached leave-one-out students (trains them if absent)."""
    from distill.trajectory import entry, pipeline, tune
    from sim import realdata

    g = tune.GRID
    families = {"full grid": g,
                "horizon only": {**g, "margin_m": (0.0,), "margin_per_s": (0.0,), "persist_s": (0.0,)},
                "horizon + depth margin": {**g, "margin_per_s": (0.0,), "persist_s": (0.0,)},
                "horizon + persistence": {**g, "margin_m": (0.0,), "margin_per_s": (0.0,)},
                "3 s horizon + margins + persistence": {**g, "horizon_s": (entry.HORIZON_S,)}}
    zones = entry.load_zones()
    parts = {(f, w, k): [] for f in families for w in ("student", "cv") for k in ("val", "test")}
    for scene in realdata.SCENES:
        model = pipeline.train_set(scene, seed, False, print, pipeline.cache_dir(cache))["kd"].model
        groups = tune.val_decisions(realdata.load_split(scene, "val"), zones)
        test = tune.decisions(scene, entry.test_runs(scene), zones[scene])
        for who, m in (("student", model), ("cv", None)):
            dep = tune.depths(groups, [grp.forecast(m) for grp in groups])
            depth, times = entry.path_depth(test.prep, test.forecast(m))
            for f, grid in families.items():
                rule, val = tune.choose(tune.sweep(groups, dep, grid), tune.MIN_LEAD_S)
                parts[(f, who, "val")].append(val)
                parts[(f, who, "test")].append(entry.evaluate(test.prep, entry.fires(test.prep, depth, times, rule)))
    return {f: {k: {w: entry.combine(parts[(f, w, k)]).as_dict() for w in ("student", "cv")} for k in ("val", "test")}
            for f in families}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", type=Path, help="tabulate this report instead of training")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny data, few steps (checks the path)")
    ap.add_argument("--out", type=Path, default=None, help="JSON to write")
    ap.add_argument("--cache", type=Path, default=Path("~/.cache/sitewarden/trajectory").expanduser(),
                    help="keep/reuse the trained leave-one-out models here (training is seeded: same models)")
    ap.add_argument("--no-cache", action="store_true", help="train every leave-one-out model afresh")
    ap.add_argument("--grid-ablation", action="store_true",
                    help="compare smaller warning-rule families (writes trajectory-grids.json)")
    args = ap.parse_args(argv)
    if args.grid_ablation:
        from distill.common import seed_everything
        from distill.trajectory import pipeline, tune

        seed_everything(args.seed, threads=pipeline.THREADS)
        res = grid_ablation(None if args.no_cache else args.cache, args.seed)
        print(f"Warning-rule families, each tuned on val only (F1 at val mean lead >= {tune.MIN_LEAD_S:g} s)")
        print(f"{'':<46}" + "".join(f"{k.replace('false_warnings_per_hour', 'false/h'):>12}" for k, _ in ENTRY_KEYS))
        for f, r in res.items():
            for k in ("test", "val"):
                for w in ("student", "cv"):
                    print(f"{f[:30]:<31}{k:<5}{w:<10}" + "".join(f"{r[k][w][kk]:>12{fm}}" for kk, fm in ENTRY_KEYS))
        out = args.out or ROOT / "bench" / "results" / "trajectory-grids.json"
        out.write_text(json.dumps({"source": f"python bench/trajectory.py --grid-ablation --seed {args.seed}",
                                   "min_lead_s": tune.MIN_LEAD_S, "families": res}, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}")
        return 0
    if args.report:
        report = json.loads(args.report.read_text())
        source = f"report {args.report}"
    else:
        from distill.common import seed_everything
        from distill.trajectory import pipeline

        seed_everything(args.seed, threads=pipeline.THREADS)
        t0 = time.perf_counter()
        report = pipeline.leave_one_out(args.seed, args.smoke, print, cache=None if args.no_cache else args.cache)
        from distill.trajectory.models import n_params
        report["params"] = {"teacher": n_params(pipeline._teacher(0)), "student": n_params(pipeline._student(0))}
        report["seconds"] = {"leave_one_out": round(time.perf_counter() - t0, 1)}
        report["smoke"] = args.smoke
        report["cache"] = None if args.no_cache else str(args.cache)
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
