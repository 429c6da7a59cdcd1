"""Predicted zone entry on sim: the bundled trajectory forecaster against constant velocity, same run.

    python bench/predicted_entry.py [--seeds 12] [--seconds 20] [--frontier]   # table + bench/results/predicted_entry.json

The demo image (specs/demo-site.yaml for host-cpu: crane-swing zone, `predict_entry: {horizon_s: 3}`,
the card's tuned warning rules) runs on crane-swing scenes rendered once per seed; every seed's
scene has 3 workers who walk into the crane-swing zone and 3 who walk up to it and turn away just
short (the sim's `enter` and `near_miss` roles): a fixed 1:1 ratio of entries to near-misses. Each
seed runs twice per detection mode on the very same frames: with the bundled forecaster
(runtime.forecast.OnnxForecaster, constant velocity only for tracks too short) and with constant
velocity alone (the runtime's fallback, with its own tuned rule). Two detection modes:

* ``truth-boxes``: the runtime gets the sim's true person boxes as detections (tracker, ground
  positions, forecasts, rules as on a device), so the forecasters are compared without detector noise;
* ``detector``: the full pipeline with the image's own detector.

Scoring per approach (warnings mapped to true people by box IoU, compiler/groundtruth.py):
an entry is caught when a predicted_entry for that person and zone came within horizon + 1 s
before the true entry (lead = entry time - first such warning); a near-miss worker who gets any
predicted_entry for the zone counts as a false alarm, one who gets none as a true negative.
Precision, recall, F1, accuracy over the approaches; mean lead; every predicted_entry not followed
by that person's entry within horizon + 1 s counts as a false warning (per hour of footage). PPE,
posture and health rules are off in this bench (they do not touch predicted entry).

The two tuned rules look ahead differently (the bundled forecaster's rule and CV's were each chosen on
ETH/UCY val at a 1.5 s lead floor), so their leads differ. ``--frontier`` compares them at equal
lead: each forecaster's own rule rerun at rule horizons 1.6-3.0 s on the same frames, its F1-vs-lead
frontier, and each one's best F1 at the other's tuned lead.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import finish, machine  # noqa: E402

OUT = ROOT / "bench" / "results" / "predicted_entry.json"
SPEC = ROOT / "specs" / "demo-site.yaml"
ZONE = "crane-swing"
TOL_S = 1.0
FRONTIER_H = (1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 2.8, 3.0)   # --frontier: rule horizons swept per forecaster
NOON_UTC = 1_764_072_000.0


def render(seed: int, seconds: float, cam):
    from sim.render import SimSource

    src = SimSource(cam.source.split(":", 1)[1], seed=seed, resolution=tuple(cam.resolution), fps=cam.fps,
                    seconds=seconds)
    frames = [(f.t, f.image, f.truth) for f in src]
    roles = {}
    for _, _, tr in frames:
        for tid, cls, role in zip(tr.track_ids, tr.classes, tr.roles):
            if cls == "person":
                roles.setdefault(int(tid), role)
    return frames, roles


def run_once(config, image_dir, frames, use_model: bool, truth_boxes: bool, horizon_s: float | None = None):
    """predicted_entry events of one run; ``horizon_s``: the forecaster's tuned rule with this horizon."""
    from compiler.groundtruth import Observed
    from runtime.detections import Detections
    from runtime.forecast import EntryRule
    from runtime.pipeline import Device

    device = Device(config, image_dir, None, clips=None)
    if not use_model:
        device.forecaster = None  # the runtime's constant-velocity fallback, with its own tuned rule
    device.governor.evaluate_situations = lambda *a, **k: []
    cam_id = config.cameras[0].id
    pipe = device.cameras[cam_id]
    if horizon_s is not None:
        kind = "model" if use_model else "cv"
        pipe.rules._entry_rules[kind] = dataclasses.replace(pipe.rules._entry_rules.get(kind, EntryRule()),
                                                            horizon_s=horizon_s)
    person = pipe_classes(device).index("person")
    observed = []
    for t, image, tr in frames:
        if truth_boxes:
            p = tr[tr.is_person]
            dets = Detections.from_arrays(np.asarray(p.boxes, np.float32).reshape(-1, 4),
                                          np.full(len(p), 0.9, np.float32), np.full(len(p), person, np.int64))
            result = pipe.process(image, t, NOON_UTC + t, dets=dets)
        else:
            result = device.process(cam_id, image, t, NOON_UTC + t)
        boxes = {q.track: q.box for q in result.people}
        observed += [Observed(e, t, boxes.get(e.track)) for e in result.events if e.type == "predicted_entry"]
    return observed


def pipe_classes(device) -> tuple[str, ...]:
    return device.governor.current("detector").classes


def score(observed, truth, roles: dict, horizon: float) -> dict:
    from compiler.groundtruth import match_person

    warned: dict[int, list[float]] = {}
    false_warnings = 0
    entries = {e["track_id"]: e["t"] for e in sorted(truth.events, key=lambda e: -e["t"])
               if e["type"] == "zone_entry" and e["zone"] == ZONE}  # the first entry per person wins
    for o in observed:
        gid, _, _ = match_person(truth, o.t, o.box)
        if gid is None:
            false_warnings += 1
            continue
        warned.setdefault(gid, []).append(o.t)
        te = entries.get(gid)
        if te is None or not (o.t <= te <= o.t + horizon + TOL_S):
            false_warnings += 1
    t_end = truth.frames[-1].t
    tp = fn = fp = tn = 0
    leads = []
    for gid, te in entries.items():
        if roles.get(gid) != "enter" or te > t_end - TOL_S:
            continue
        ts = [t for t in warned.get(gid, []) if te - horizon - TOL_S <= t <= te]
        if ts:
            tp += 1
            leads.append(te - min(ts))
        else:
            fn += 1
    for gid, role in roles.items():
        if role == "near_miss" and gid not in entries:
            if warned.get(gid):
                fp += 1
            else:
                tn += 1
    return {"tp": tp, "fn": fn, "fp": fp, "tn": tn, "lead_sum": float(sum(leads)), "false_warnings": false_warnings}


def summarise(parts: list[dict], hours: float) -> dict:
    tp, fn, fp, tn = (sum(p[k] for p in parts) for k in ("tp", "fn", "fp", "tn"))
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    fw = sum(p["false_warnings"] for p in parts)
    return {"entries": tp + fn, "near_misses": fp + tn, "tp": tp, "fn": fn, "fp": fp, "tn": tn,
            "precision": round(prec, 4), "recall": round(rec, 4),
            "f1": round(2 * prec * rec / (prec + rec), 4) if prec + rec else 0.0,
            "accuracy": round((tp + tn) / max(1, tp + fn + fp + tn), 4),
            "mean_lead_s": round(sum(p["lead_sum"] for p in parts) / tp, 3) if tp else None,
            "false_warnings": fw, "false_warnings_per_hour": round(fw / hours, 1) if hours else None}


def main(argv=None) -> int:
    from compiler.groundtruth import Truth
    from compiler.replay import prepare

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--first-seed", type=int, default=100, help="sim seeds used: first .. first + seeds - 1")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--modes", nargs="*", default=["truth-boxes", "detector"])
    ap.add_argument("--frontier", action="store_true",
                    help="also sweep each forecaster's rule horizon (truth boxes) and compare F1 at equal lead")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        image_dir, config, _ = prepare(SPEC, Path(tmp))
        config = dataclasses.replace(config, ppe=(), actions=(), health=(), threads=1)
        cam = config.cameras[0]
        horizon = next(z.predict_horizon_s for z in cam.zones if z.id == ZONE)
        parts = {(m, f): [] for m in a.modes for f in ("model", "cv")}
        sweep = {(m, f, h): [] for m in a.modes for f in ("model", "cv") for h in (FRONTIER_H if a.frontier else ())}
        hours = 0.0
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            frames, roles = render(seed, a.seconds, cam)
            truth = Truth.from_sim([(t, tr) for t, _, tr in frames], fps=cam.fps)
            hours += truth.duration_s / 3600.0
            for mode in a.modes:
                for who in ("model", "cv"):
                    obs = run_once(config, image_dir, frames, who == "model", mode == "truth-boxes")
                    parts[(mode, who)].append(score(obs, truth, roles, horizon))
            for m, who, h in sweep:
                sweep[(m, who, h)].append(score(run_once(config, image_dir, frames, who == "model", m == "truth-boxes", h),
                                                truth, roles, horizon))
            line = "  ".join(f"{m}/{w} tp{parts[(m, w)][-1]['tp']} fp{parts[(m, w)][-1]['fp']}" for m in a.modes for w in ("model", "cv"))
            print(f"  seed {seed}: {line}", flush=True)
    res = {m: {who: summarise(parts[(m, who)], hours) for who in ("model", "cv")} for m in a.modes}
    result = {
        "bench": "predicted_entry", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "about": __doc__.strip().splitlines()[0],
        "spec": str(SPEC.relative_to(ROOT)), "scene": cam.source, "zone": ZONE, "horizon_s": horizon,
        "seeds": list(range(a.first_seed, a.first_seed + a.seeds)), "seconds_per_seed": a.seconds,
        "ratio": "3 entering and 3 near-miss workers per seed (1:1)", "footage_hours": round(hours, 4),
        "results": res,
        "model_beats_cv_f1_at_equal_or_better_lead": {
            m: bool(res[m]["model"]["f1"] > res[m]["cv"]["f1"]
                    and (res[m]["model"]["mean_lead_s"] or 0) >= (res[m]["cv"]["mean_lead_s"] or 0) - 1e-9)
            for m in a.modes},
        "machine": machine(),
        "seconds": round(time.perf_counter() - t0, 1)}
    if a.frontier:
        result["frontier"] = {m: equal_lead(res[m], {(w, h): summarise(v, hours) for (mm, w, h), v in sweep.items() if mm == m})
                              for m in a.modes}
    return finish(result, a.out, table)


def equal_lead(tuned: dict, swept: dict) -> dict:
    """Each forecaster's F1-vs-lead frontier over the rule horizons (bench.entry_rules.frontier: the
    best F1 at that mean lead or more), each one's F1 at the other's tuned lead, and at how many of
    CV's swept leads the bundled forecaster's frontier is at least as high. A diagnosis on the bench's
    scenes, run the same way for both; no rule is chosen from it."""
    from bench.entry_rules import at_lead, frontier

    fronts = {who: frontier([(r["mean_lead_s"], r["f1"]) for (w, _), r in swept.items()
                             if w == who and r["mean_lead_s"] is not None]) for who in ("model", "cv")}
    out = {"horizons_s": list(FRONTIER_H),
           "points": {f"{w}@{h:g}": {k: r[k] for k in ("f1", "accuracy", "mean_lead_s", "fp", "tp")}
                      for (w, h), r in swept.items()},
           "frontier": {w: [[round(ld, 3), f] for ld, f in fr] for w, fr in fronts.items()}}
    for who, other in (("model", "cv"), ("cv", "model")):
        lead = tuned[other]["mean_lead_s"]
        out[f"{who}_f1_at_{other}_lead"] = {"lead_s": lead, "f1": None if lead is None else at_lead(fronts[who], lead),
                                            f"{other}_f1": tuned[other]["f1"]}
    got = [(at_lead(fronts["model"], ld), f) for ld, f in fronts["cv"]]
    cmp = [m - f for m, f in got if m is not None]
    out["model_vs_cv_at_cv_leads"] = {"leads": len(got), "model_ahead": sum(d > 1e-9 for d in cmp),
                                      "tied": sum(abs(d) <= 1e-9 for d in cmp), "cv_ahead": sum(d < -1e-9 for d in cmp),
                                      "beyond_model_reach": sum(m is None for m, _ in got)}
    return out


def table(r: dict) -> str:
    lines = [f"predicted entry into '{r['zone']}' on {r['scene']}, {len(r['seeds'])} seeds x {r['seconds_per_seed']:g} s, "
             f"{r['ratio']}, horizon {r['horizon_s']:g} s",
             f"{'detections':<13}{'forecaster':<12}{'entries':>8}{'near':>6}{'P':>7}{'R':>7}{'F1':>7}{'acc':>7}{'lead s':>8}{'false/h':>9}"]
    for mode, rows in r["results"].items():
        for who, s in rows.items():
            lead = f"{s['mean_lead_s']:.2f}" if s["mean_lead_s"] is not None else "-"
            lines.append(f"{mode:<13}{('bundled' if who == 'model' else 'CV'):<12}{s['entries']:>8}{s['near_misses']:>6}"
                         f"{s['precision']:>7.3f}{s['recall']:>7.3f}{s['f1']:>7.3f}{s['accuracy']:>7.3f}{lead:>8}"
                         f"{s['false_warnings_per_hour']:>9.0f}")
    for mode, fr in (r.get("frontier") or {}).items():
        lines.append(f"equal lead, {mode} (each forecaster's tuned rule at horizons "
                     f"{', '.join(f'{h:g}' for h in fr['horizons_s'])} s): F1/lead/near-misses warned")
        for who in ("model", "cv"):
            pts = [fr["points"][f"{who}@{h:g}"] for h in fr["horizons_s"]]
            lines.append(f"  {('bundled' if who == 'model' else 'CV'):<8}"
                         + "  ".join(f"{p['f1']:.3f}/{p['mean_lead_s'] or 0:.2f}/{p['fp']}" for p in pts))
        for key, other in (("model_f1_at_cv_lead", "cv"), ("cv_f1_at_model_lead", "model")):
            x = fr[key]
            f1 = "none reaches it" if x["f1"] is None else f"{x['f1']:.3f}"
            lines.append(f"  {key}: best F1 at lead >= {x['lead_s'] or 0:.2f} s: {f1} (the other's tuned F1 "
                         f"{x[f'{other}_f1']:.3f})")
        c = fr["model_vs_cv_at_cv_leads"]
        lines.append(f"  at CV's {c['leads']} frontier leads the bundled forecaster is ahead at {c['model_ahead']}, "
                     f"tied at {c['tied']}, behind at {c['cv_ahead']}, cannot reach {c['beyond_model_reach']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
