"""Predicted entry on real ETH/UCY tracks: a multi-modal student warning on P(entry) against CV,
each with its warning rule tuned on the fold's val files, as `build.py distill trajectory` does.

    python bench/entry_multimodal.py [--seeds 0 1 2]   # ~2 min a seed on 2 cores; tables + bench/results/entry_multimodal.json

A single-path student forecasts one path, and under any rule it warned no better than constant
velocity (bench/entry_rules.py). This bench tests the next idea: K = 3 paths with probabilities
(distill/trajectory/multimodal.py, <= 50k parameters, trained per leave-one-scene-out fold on the
fold's train files) and a warning when the probability that the forecast enters the zone within
the horizon reaches a threshold. Per fold, each forecaster's rule is chosen on the fold's val files
(best val F1 with mean lead >= the floor: the issue's 1.5 s and stricter floors), then applied to
the held-out test scene; scores are pooled over the five test scenes. A second multi-modal row is
lead-matched: its rule must also reach, on val, the mean lead of the rule CV chose there. Also: deterministic ADE/FDE of
the multi-modal student's deterministic head, against CV. The students here train without KD, over several seeds;
`build.py distill trajectory` ships the same student with KD on its deterministic head (traj-social-mm).
bench/results/entry_multimodal.json holds the K = 3 runs without short-track padding (session 5); a
rerun measures the current recipe (K and padding from distill/trajectory/multimodal.py).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import finish, machine  # noqa: E402

OUT = ROOT / "bench" / "results" / "entry_multimodal.json"
MIN_LEADS = (1.5, 1.6, 1.7, 1.8)
SEED = 0
SEEDS = (0, 1, 2)


def measure(seed: int = SEED, log=print) -> dict:
    import torch

    from distill.trajectory import data, entry, multimodal, pipeline, tune
    from distill.trajectory.models import n_params
    from distill.trajectory.train import ade_fde
    from runtime.forecast import constant_velocity
    from sim import realdata

    torch.set_num_threads(2)
    zones = entry.load_zones()
    whos = ("multimodal", "multimodal_matched", "cv")
    parts = {(who, L): [] for who in whos for L in MIN_LEADS}
    per_scene, params = {}, None
    for scene in realdata.SCENES:
        t0 = time.perf_counter()
        tr, va, te = data.load(scene, "train"), data.load(scene, "val"), data.load(scene, "test")
        model = multimodal.train(tr, va, seed).model
        params = n_params(model)
        ade = {"multimodal_det": ade_fde(multimodal.deterministic(model, te.x, te.soc, te.frame), te.fut),
               "cv": ade_fde(constant_velocity(te.obs), te.fut)}
        vgroups = pipeline._val_decisions(realdata.load_split(scene, "val"), zones, False)
        vf = [pipeline.student_depths(model, g) for g in vgroups]
        mm_res = multimodal.sweep(vgroups, [d for d, _ in vf], [pp for _, pp in vf])
        cv_res = tune.sweep(vgroups, tune.depths(vgroups, [g.forecast(None) for g in vgroups]), tune.GRID)
        test = tune.decisions(f"{scene}/test", entry.test_runs(scene), zones[scene])
        tdep, tp = pipeline.student_depths(model, test)
        cd, ct = entry.path_depth(test.prep, test.forecast(None))
        row = {"ade_fde": {k: {"ade": round(a, 4), "fde": round(f, 4)} for k, (a, f) in ade.items()}, "rules": {}}
        for L in MIN_LEADS:
            rule, _ = tune.choose(mm_res, L)
            crule, cval = tune.choose(cv_res, L)
            # lead-matched: the multi-modal rule must also reach CV's chosen rule's val lead
            mrule, _ = tune.choose(mm_res, max(L, cval.mean_lead_s))
            parts[("multimodal", L)].append(entry.evaluate(test.prep, multimodal.warn(test.prep, tdep, tp, rule)))
            parts[("multimodal_matched", L)].append(
                entry.evaluate(test.prep, multimodal.warn(test.prep, tdep, tp, mrule)))
            parts[("cv", L)].append(entry.evaluate(test.prep, entry.fires(test.prep, cd, ct, crule)))
            row["rules"][f"min_lead_{L:g}"] = {"multimodal": rule.as_dict(), "multimodal_matched": mrule.as_dict(),
                                               "cv": crule.as_dict()}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        per_scene[scene] = row
        log(f"  [{scene}] ADE/FDE deterministic head {row['ade_fde']['multimodal_det']}  CV {row['ade_fde']['cv']}  "
            f"({row['seconds']:.0f} s)")
    pooled = {f"min_lead_{L:g}": {who: entry.combine(parts[(who, L)]).as_dict() for who in whos}
              for L in MIN_LEADS}
    avg = {k: {m: round(float(np.mean([r["ade_fde"][k][m] for r in per_scene.values()])), 4) for m in ("ade", "fde")}
           for k in ("multimodal_det", "cv")}
    return {"bench": "entry_multimodal", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "about": __doc__.split("\n\n")[0],
            "seed": seed, "k": multimodal.K, "params": params, "grid": {k: list(v) for k, v in multimodal.GRID.items()},
            "cv_grid": {k: list(v) for k, v in tune.GRID.items()}, "scenes": per_scene, "average_ade_fde": avg,
            "entry": pooled}


def table(r: dict) -> str:
    a = r["average_ade_fde"]
    lines = [f"seed {r['seed']}: multi-modal student (K={r['k']}, {r['params']} params) vs CV, five ETH/UCY test scenes, rules tuned on val",
             f"ADE/FDE (5-scene average): deterministic head {a['multimodal_det']['ade']:.3f}/{a['multimodal_det']['fde']:.3f}  "
             f"CV {a['cv']['ade']:.3f}/{a['cv']['fde']:.3f}",
             f"{'lead floor':>10}  {'F1 mm':>7}{'lead':>6}{'fw/h':>6}  {'F1 mm=':>7}{'lead':>6}{'fw/h':>6}  "
             f"{'F1 CV':>7}{'lead':>6}{'fw/h':>6}"]
    for key, row in r["entry"].items():
        cells = "  ".join(f"{x['f1']:>7.4f}{x['mean_lead_s']:>6.2f}{x['false_warnings_per_hour']:>6.0f}"
                          for x in (row["multimodal"], row["multimodal_matched"], row["cv"]))
        lines.append(f"{key.removeprefix('min_lead_'):>10}  {cells}")
    lines.append("mm: rule chosen on val at the lead floor; mm=: also at least CV's chosen val lead (lead-matched)")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    runs = [measure(s) for s in args.seeds]
    return finish({"bench": "entry_multimodal", "about": __doc__.split("\n\n")[0], "seeds": args.seeds,
                   "runs": runs, "machine": machine()}, args.out, lambda r: "\n\n".join(table(x) for x in r["runs"]))


if __name__ == "__main__":
    raise SystemExit(main())
