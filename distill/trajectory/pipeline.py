"""The whole trajectory run: leave-one-scene-out teacher/students + CV on the five test scenes,
predicted-entry scores, then the shipped student trained on all five train splits, exported to
ONNX with its model card.

The student is the multi-modal social MLP (distill/trajectory/multimodal.py): a deterministic path
(ADE/FDE; with KD its target blends the transformer teacher's forecast) and K alternative paths with
probabilities, from which it warns on P(zone entry). CV warns from its one path. Each forecaster's
warning rule is tuned on the fold's val files only.

    python build.py distill trajectory [--smoke] [--seed 0] [--out models/]
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from compiler.modelcard import (Metric, ModelCard, Preprocess, TensorSpec, Training, costs_of, sha256_of,
                                write_card)
from runtime.forecast import (N_NEIGHBOURS, NEIGHBOUR_FEATURES, OnnxForecaster, constant_velocity, decode, encode,
                              entry_rule_note)
from sim import realdata

from ..common import export_onnx, is_main_process, seed_everything, torch_version
from . import data, entry, multimodal, tune
from .models import Teacher, n_params
from .train import Recipe, Result, ade_fde, predict_offsets, score, train

TASK = "trajectory"
STUDENT_KIND = "social-mm"
STUDENT_VARIANT = "traj-social-mm"
RATE_HZ = 1.0 / realdata.DT_S
TEACHER_RECIPE = Recipe(epochs=12, lr=1e-3, batch=256)
STUDENT_RECIPE = Recipe(epochs=30, lr=2e-3, batch=256)
KD_ALPHA = 0.5
SMOKE_LIMIT = {"train": 1500, "val": 300, "test": 300}
THREADS = 1  # tiny models train faster on one thread, and one thread keeps runs identical under load
CACHE_ENV = "SITEWARDEN_TRAJ_CACHE"  # a folder: trained leave-one-out models are kept there and reused
CACHE_VERSION = 2
SPLIT_NAME = "ethucy test (5 scenes, leave-one-scene-out, 8 obs -> 12 pred at 2.5 Hz)"


def _smoke(recipe: Recipe) -> Recipe:
    return replace(recipe, epochs=2, max_steps=6)


def _student(seed: int):
    return multimodal.student(seed)


def _train_student(tr, va, recipe: Recipe, seed: int, kd_targets=None):
    return multimodal.train(tr, va, seed, epochs=recipe.epochs, lr=recipe.lr, batch=recipe.batch,
                            max_steps=recipe.max_steps, kd_targets=kd_targets, kd_alpha=recipe.kd_alpha)


def _teacher(seed: int):
    torch.manual_seed(seed)
    return Teacher(d=64, layers=2)


def cache_dir(cache: Path | str | None = None) -> Path | None:
    """The model cache folder: ``cache`` if given, else ``$SITEWARDEN_TRAJ_CACHE``, else none."""
    c = cache if cache is not None else os.environ.get(CACHE_ENV) or None
    return Path(c).expanduser() if c else None


def _cache_key(scene: str | None, seed: int, smoke: bool) -> str:
    recipe = json.dumps({"v": CACHE_VERSION, "teacher": asdict(TEACHER_RECIPE), "student": asdict(STUDENT_RECIPE),
                         "kd_alpha": KD_ALPHA, "kind": STUDENT_KIND, "k": multimodal.K, "short": [multimodal.SHORT_SHARE, multimodal.MIN_OBS], "smoke": smoke,
                         "limit": SMOKE_LIMIT},
                        sort_keys=True)
    return f"{scene or 'all'}-seed{seed}{'-smoke' if smoke else ''}-{hashlib.sha256(recipe.encode()).hexdigest()[:10]}"


def _cache_save(path: Path, res: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {k: {"state": r.model.state_dict(), "best_epoch": r.best_epoch, "val_ade": r.val_ade, "steps": r.steps,
               "seconds": r.seconds, "history": r.history}
           for k, r in res.items() if k in ("teacher", "kd", "nokd")}
    tmp = path.with_suffix(".tmp")
    torch.save(doc, tmp)
    tmp.replace(path)


def _cache_load(path: Path, seed: int) -> dict:
    doc = torch.load(path, map_location="cpu", weights_only=True)
    out = {}
    for k, d in doc.items():
        m = _teacher(seed) if k == "teacher" else _student(seed)
        m.load_state_dict(d["state"])
        out[k] = Result(m.eval(), d["best_epoch"], d["val_ade"], d["steps"], d["seconds"], d["history"])
    return out


def train_set(scene: str | None, seed: int, smoke: bool, log, cache: Path | None = None) -> dict:
    """Teacher, KD student and no-KD student for one leave-one-out scene (None: all five).

    With a ``cache`` folder the trained models are stored there and, when already there for the
    same scene, seed and recipes, loaded instead of trained (training is seeded and deterministic,
    so both give the same models)."""
    lim = SMOKE_LIMIT if smoke else {}
    tr = data.load(scene, "train", limit=lim.get("train"))
    va = data.load(scene, "val", limit=lim.get("val"))
    path = cache / f"{_cache_key(scene, seed, smoke)}.pt" if cache else None
    if path is not None and path.exists():
        log(f"  [{scene or 'all'}] models from the cache {path}")
        return {**_cache_load(path, seed), "train": tr, "val": va}
    tr_r, st_r = (_smoke(TEACHER_RECIPE), _smoke(STUDENT_RECIPE)) if smoke else (TEACHER_RECIPE, STUDENT_RECIPE)
    log(f"  [{scene or 'all'}] teacher on {len(tr)} train windows ({len(va)} val)")
    teacher = train(_teacher(seed), tr, va, tr_r, seed)
    log(f"    teacher: best epoch {teacher.best_epoch}, val ADE {teacher.val_ade:.4f}, {teacher.seconds:.0f} s")
    kd_targets = predict_offsets(teacher.model, tr)
    kd = _train_student(tr, va, replace(st_r, kd_alpha=KD_ALPHA), seed, kd_targets)
    log(f"    student KD: best epoch {kd.best_epoch}, val ADE {kd.val_ade:.4f}, {kd.seconds:.0f} s")
    out = {"teacher": teacher, "kd": kd, "train": tr, "val": va}
    if scene is not None:
        nokd = _train_student(tr, va, st_r, seed)
        log(f"    student no-KD: best epoch {nokd.best_epoch}, val ADE {nokd.val_ade:.4f}, {nokd.seconds:.0f} s")
        out["nokd"] = nokd
    if path is not None:
        _cache_save(path, out)
    return out


def _pair(ade_fde_: tuple[float, float]) -> dict:
    return {"ade": round(ade_fde_[0], 4), "fde": round(ade_fde_[1], 4)}


MIN_LEADS = (1.5, 1.6, 1.7, 1.8)  # the same tuning at stricter lead-time floors: F1 at equal lead


def _val_decisions(rows: realdata.TrackRows, zones: dict, smoke: bool) -> list[tune.Decisions]:
    groups = entry.val_groups(rows, zones)
    if smoke:
        groups = [(n, entry.first_runs(r, 40), z) for n, r, z in groups]
    return [tune.decisions(n, r, z) for n, r, z in groups]


STUDENT_DEFAULT_RULE = replace(tune.DEFAULT_RULE, tau=0.5)   # untuned reference: the more probable half enters


def student_depths(model, group: tune.Decisions) -> tuple[list, np.ndarray]:
    """The multi-modal student on one footage group: (each path's entry.path_depth, path probabilities)."""
    paths, p = multimodal.forecast(model, group.obs, group.others)
    return multimodal.path_depths(group.prep, paths), p


def tune_rules(model, rows: realdata.TrackRows, zones: dict, smoke: bool, min_leads=MIN_LEADS) -> dict:
    """Warning rules for the student ``model`` (on P(entry), multimodal.sweep) and for CV (on its
    path, tune.sweep), each tuned on the val footage ``rows`` by the same choice (tune.choose), at
    every lead floor."""
    groups = _val_decisions(rows, zones, smoke)
    out = {"groups": [g.name for g in groups]}
    sd = [student_depths(model, g) for g in groups]
    results = multimodal.sweep(groups, [d for d, _ in sd], [p for _, p in sd],
                               multimodal.SMOKE_GRID if smoke else multimodal.GRID)
    out["student"] = {"default": entry.combine([entry.evaluate(g.prep, multimodal.warn(g.prep, d, p, STUDENT_DEFAULT_RULE))
                                                for g, (d, p) in zip(groups, sd)])}
    for lead in min_leads:
        out["student"][lead] = tune.choose(results, lead)
    dep = tune.depths(groups, [g.forecast(None) for g in groups])
    results = tune.sweep(groups, dep, tune.SMOKE_GRID if smoke else tune.GRID)
    out["cv"] = {"default": tune.scores(groups, dep, tune.DEFAULT_RULE)}
    for lead in min_leads:
        out["cv"][lead] = tune.choose(results, lead)
    return out


def leave_one_out(seed: int, smoke: bool, log, scenes=realdata.SCENES, cache: Path | str | None = None) -> dict:
    """Per-scene and average ADE/FDE for CV, teacher, student KD and no-KD; entry scores (the
    warning rule of each forecaster tuned on the fold's val footage, then applied to its test)."""
    zones = entry.load_zones()
    cache = cache_dir(cache)
    settings = ["default"] + list(MIN_LEADS)
    per_scene = {}
    parts = {(who, st): [] for who in ("student", "cv") for st in settings}
    val_parts = {(who, st): [] for who in ("student", "cv") for st in settings}
    for scene in scenes:
        t0 = time.perf_counter()
        res = train_set(scene, seed, smoke, log, cache)
        te = data.load(scene, "test", limit=SMOKE_LIMIT["test"] if smoke else None)
        row = {"windows": len(te),
               "cv": _pair(ade_fde(constant_velocity(te.obs), te.fut)),
               "teacher": _pair(score(res["teacher"].model, te)),
               "student_kd": _pair(score(res["kd"].model, te)),
               "student_nokd": _pair(score(res["nokd"].model, te)),
               "best_epoch": {k: res[k].best_epoch for k in ("teacher", "kd", "nokd")}}
        # warning rules tuned on this fold's val files (never the held-out scene's sequence)
        rules = tune_rules(res["kd"].model, realdata.load_split(scene, "val"), zones, smoke)
        # predicted entry on the scene's real test tracks, student (KD) vs CV, same decision steps
        runs = entry.test_runs(scene)
        if smoke:
            runs = entry.first_runs(runs, 40)
        test = tune.decisions(f"{scene}/test", runs, zones[scene])
        row["entry"], row["entry_rules"], row["entry_val"] = {}, {}, {}
        sdep, sp = student_depths(res["kd"].model, test)
        cdep = entry.path_depth(test.prep, test.forecast(None))
        for who in ("student", "cv"):
            for st in settings:
                if st == "default":
                    rule, val = (STUDENT_DEFAULT_RULE if who == "student" else tune.DEFAULT_RULE), rules[who][st]
                else:
                    rule, val = rules[who][st]
                fired = (multimodal.warn(test.prep, sdep, sp, rule) if who == "student"
                         else entry.fires(test.prep, *cdep, rule))
                sc = entry.evaluate(test.prep, fired)
                parts[(who, st)].append(sc)
                val_parts[(who, st)].append(val)
                key = "default" if st == "default" else f"min_lead_{st:g}"
                row["entry"].setdefault(key, {})[who] = sc.as_dict()
                row["entry_val"].setdefault(key, {})[who] = val.as_dict()
                if st != "default":
                    row["entry_rules"].setdefault(key, {})[who] = rule.as_dict()
        row["entry_val_files"] = rules["groups"]
        row["seconds"] = round(time.perf_counter() - t0, 1)
        per_scene[scene] = row
        head = row["entry"][f"min_lead_{MIN_LEADS[0]:g}"]
        log(f"  [{scene}] test ADE/FDE  CV {row['cv']['ade']:.3f}/{row['cv']['fde']:.3f}  "
            f"teacher {row['teacher']['ade']:.3f}/{row['teacher']['fde']:.3f}  "
            f"KD {row['student_kd']['ade']:.3f}/{row['student_kd']['fde']:.3f}  "
            f"no-KD {row['student_nokd']['ade']:.3f}/{row['student_nokd']['fde']:.3f}  "
            f"entry F1 (tuned) student {head['student']['f1']:.3f} CV {head['cv']['f1']:.3f}  "
            f"({row['seconds']:.0f} s)")
    avg = {m: {k: round(float(np.mean([per_scene[s][m][k] for s in per_scene])), 4) for k in ("ade", "fde")}
           for m in ("cv", "teacher", "student_kd", "student_nokd")}
    pooled = {("default" if st == "default" else f"min_lead_{st:g}"):
              {who: entry.combine(parts[(who, st)]).as_dict() for who in ("student", "cv")} for st in settings}
    pooled_val = {("default" if st == "default" else f"min_lead_{st:g}"):
                  {who: entry.combine(val_parts[(who, st)]).as_dict() for who in ("student", "cv")} for st in settings}
    head = f"min_lead_{MIN_LEADS[0]:g}"
    return {"scenes": per_scene, "average": avg, "entry_horizon_s": entry.HORIZON_S,
            "entry": pooled[head], "entry_default": pooled["default"], "entry_settings": pooled,
            "entry_val": pooled_val,
            "entry_tuning": {"objective": tune.OBJECTIVE, "min_lead_s": MIN_LEADS[0], "min_leads": list(MIN_LEADS),
                             "grid": {k: list(v) for k, v in (tune.SMOKE_GRID if smoke else tune.GRID).items()},
                             "headline": head}}


def _card(path: Path, loo: dict, ship: dict, seed: int, smoke: bool, command: str, seconds: float) -> ModelCard:
    cmd = command
    metrics = []
    for s, row in loo["scenes"].items():
        for k in ("ade", "fde"):
            metrics.append(Metric(name=f"{k.upper()}_m_{s}", value=row["student_kd"][k], data="real",
                                  split=f"ethucy {s} test (leave-one-scene-out)", higher_is_better=False, command=cmd))
    for k in ("ade", "fde"):
        metrics.append(Metric(name=f"{k.upper()}_m", value=loo["average"]["student_kd"][k], data="real",
                              split=SPLIT_NAME, higher_is_better=False, command=cmd))
        metrics.append(Metric(name=f"{k.upper()}_m_cv_baseline", value=loo["average"]["cv"][k], data="real",
                              split=SPLIT_NAME, higher_is_better=False, command=cmd))
    en = loo["entry"]["student"]
    esplit = (f"ethucy test tracks, {len(loo['scenes'])} scenes, zones in distill/trajectory/zones.yaml, "
              f"horizon {entry.HORIZON_S:g} s, {en['entries']} entries + {en['near_misses']} near-misses; "
              f"warning rule tuned per leave-one-out fold on its val files (mean lead >= "
              f"{loo['entry_tuning']['min_lead_s']:g} s)")
    for who, suffix in (("student", ""), ("cv", "_cv_baseline")):
        e = loo["entry"][who]
        for k, name in (("accuracy", "entry_accuracy"), ("precision", "entry_precision"),
                        ("recall", "entry_recall"), ("f1", "entry_f1"), ("mean_lead_s", "entry_mean_lead_s")):
            metrics.append(Metric(name=name + suffix, value=e[k], data="real", split=esplit, command=cmd))
        metrics.append(Metric(name="entry_false_warnings_per_hour" + suffix, value=e["false_warnings_per_hour"],
                              data="real", split=esplit, higher_is_better=False, command=cmd))
    train_files = sorted(ship["train"].files)
    return ModelCard(
        task=TASK, variant=STUDENT_VARIANT,
        description=(f"Pedestrian/worker ground-plane forecaster: multi-modal social MLP student "
                     f"({n_params(ship['kd'].model)} params; own track + 4 nearest people), 8 observed steps -> "
                     f"12 predicted at 2.5 Hz: one deterministic path (distilled from a transformer teacher with "
                     f"neighbours) and {multimodal.K} alternative paths with probabilities, from which it warns "
                     "on P(zone entry)."),
        sha256=sha256_of(path), bytes=path.stat().st_size, precision="fp32", quantize=False,
        inputs=[TensorSpec(name="obs_local", shape=["batch", realdata.OBS_LEN, 2], layout="NTC"),
                TensorSpec(name="neighbours", shape=["batch", N_NEIGHBOURS, NEIGHBOUR_FEATURES], layout="NKC")],
        outputs=[TensorSpec(name="offsets", shape=["batch", realdata.PRED_LEN, 2], layout="NTC"),
                 TensorSpec(name="path_offsets", shape=["batch", multimodal.K, realdata.PRED_LEN, 2], layout="NKTC"),
                 TensorSpec(name="path_logits", shape=["batch", multimodal.K], layout="NK")],
        preprocess=Preprocess(rate_hz=RATE_HZ, notes=(
            "Input: the last 8 ground-plane positions (metres) resampled to 2.5 Hz (runtime.forecast.resample), "
            "encoded by runtime.forecast.encode: translated so the last point is the origin, rotated so the last "
            "velocity points along +x (overall displacement when standing), no scaling. Output offsets: in that "
            "frame from the constant-velocity extrapolation of the last step; runtime.forecast.decode adds them "
            "to CV and rotates/translates back. path_offsets: the alternative paths, decoded the same way; "
            "path_logits: their logits (softmax gives the probabilities; runtime.forecast.OnnxForecaster."
            "predict_modes). A track spanning fewer than 8 steps but at least "
            f"short_track_min_obs={multimodal.MIN_OBS} is padded back at its first velocity "
            "(runtime.forecast.resample_short; the student trained on windows padded that way, "
            f"{multimodal.SHORT_SHARE:g} of them); shorter still: constant velocity. Second input: "
            "runtime.forecast.neighbour_features, the 4 nearest other people within 8 m seen at the last two "
            "steps, as (x, y, vx, vy, 1) in the track's local frame, zero rows when absent. Predicted-entry "
            "warnings: this model on P(entry) (runtime.forecast.EntryWarner.fires_modes: the probability of the "
            "paths reaching margin_m inside the zone within horizon_s is >= tau), the constant-velocity fallback "
            "on its path (warn_entry); the rules below for this model (entry_rule) and for the fallback "
            "(entry_rule_cv), tuned on the val files of all five scenes "
            f"(best val F1 at mean lead >= {tune.MIN_LEAD_S:g} s; runtime.forecast.entry_rules_from_notes reads "
            "them): " + entry_rule_note(ship["entry_rules"]))),
        decoder="trajectory-cv-offsets",
        costs=costs_of(path), metrics=metrics,
        training=Training(
            command=cmd, seed=seed,
            data=[f"ETH/UCY (real) train splits of all five scenes, each file once: {', '.join(train_files)}",
                  "epochs selected on the matching val files"],
            teacher=(f"transformer over the observed track + {data.N_NEIGHBOURS} nearest neighbours "
                     f"({n_params(ship['teacher'].model)} params, same data, server side)"),
            steps=ship["kd"].steps, seconds=round(seconds, 1), framework=torch_version()),
        notes=(f"FP32 on purpose: a {n_params(ship['kd'].model) / 1000:.0f}k-parameter MLP costs about as many MACs, "
               "INT8 gains nothing and would add "
               "quantization error to metres. Metrics are of the same recipe trained leave-one-scene-out (the "
               "shipped file saw every scene's train split, which overlaps the test sequences, so it is not "
               f"scored on test itself). KD target of the deterministic path: {KD_ALPHA:g} teacher prediction + "
               f"{1 - KD_ALPHA:g} ground truth; the alternative paths learn winner-takes-all from the ground truth. "
               f"K = {multimodal.K} alternative paths, chosen on the folds' val files (distill/trajectory/multimodal.py). "
               "ETH/UCY: Pellegrini et al. ICCV 2009, Lerner et al. 2007; splits as kept by Social-STGCNN (MIT)."
               + (" SMOKE RUN: tiny data, few steps; numbers are meaningless." if smoke else "")))


def run(out: Path, seed: int = 0, smoke: bool = False, log=print, scenes=realdata.SCENES,
        report: Path | None = None, command: str = "", cache: Path | str | None = None) -> dict:
    """Everything ``build.py distill trajectory`` does; returns the report dict."""
    t0, c0 = time.perf_counter(), time.process_time()
    seed_everything(seed, threads=THREADS)
    command = command or f"python build.py distill trajectory --seed {seed}" + (" --smoke" if smoke else "")
    log(f"trajectory: leave-one-scene-out over {', '.join(scenes)}{' (smoke)' if smoke else ''}")
    loo = leave_one_out(seed, smoke, log, scenes, cache)
    t_loo = time.perf_counter() - t0
    log("trajectory: shipped student on all five train splits")
    t1 = time.perf_counter()
    seed_everything(seed, threads=THREADS)
    ship = train_set(None, seed, smoke, log, cache_dir(cache))
    model = ship["kd"].model.eval()
    folder = Path(out) / TASK / STUDENT_VARIANT
    path = folder / "model.onnx"
    report_doc = {"seed": seed, "smoke": smoke, "command": command, "paths_k": multimodal.K, **loo,
                  "params": {"teacher": n_params(ship["teacher"].model), "student": n_params(model)}}
    if is_main_process():
        va = ship["val"]
        export_onnx(model, (torch.from_numpy(va.x[:4]), torch.from_numpy(va.soc[:4])), path,
                    ["obs_local", "neighbours"], ["offsets", "path_offsets", "path_logits"],
                    check_inputs=(torch.from_numpy(va.x[:512]), torch.from_numpy(va.soc[:512])))
        # the deployed path (ONNX through the runtime) must reproduce torch's val ADE
        fc = OnnxForecaster(path, rate_hz=RATE_HZ)
        x, frame = encode(va.obs)
        (off,) = fc.session.run(["offsets"], {"obs_local": x, "neighbours": va.soc})
        onnx_val = ade_fde(decode(off, frame), va.fut)
        torch_val = ade_fde(decode(predict_offsets(model, va), va.frame), va.fut)
        if abs(onnx_val[0] - torch_val[0]) > 1e-4:
            raise RuntimeError(f"ONNX val ADE {onnx_val[0]} differs from torch {torch_val[0]}")
        # the shipped warning rules: tuned on the union of the five val splits, shipped student and CV
        rules = tune_rules(model, data.union_rows("val"), entry.load_zones(), smoke, min_leads=(tune.MIN_LEAD_S,))
        ship["entry_rules"] = {"model": rules["student"][tune.MIN_LEAD_S][0], "cv": rules["cv"][tune.MIN_LEAD_S][0]}
        seconds = time.perf_counter() - t0
        report_doc["ship"] = {"entry_rules": {k: r.as_dict() for k, r in ship["entry_rules"].items()},
                              "entry_val": {w: {"default": rules[w]["default"].as_dict(),
                                                "tuned": rules[w][tune.MIN_LEAD_S][1].as_dict()}
                                            for w in ("student", "cv")},
                              "entry_val_files": rules["groups"],
                              "val": _pair(onnx_val), "steps": ship["kd"].steps,
                              "best_epoch": {k: ship[k].best_epoch for k in ("teacher", "kd")},
                              "seconds": round(time.perf_counter() - t1, 1)}
        report_doc["seconds"] = {"leave_one_out": round(t_loo, 1), "total": round(seconds, 1),
                                 "cpu_total": round(time.process_time() - c0, 1),
                                 "threads": torch.get_num_threads()}
        card = _card(path, loo, ship, seed, smoke, command, seconds)
        write_card(card, folder)
        (report or folder / "report.json").write_text(json.dumps(report_doc, indent=1) + "\n", encoding="utf-8")
        log(f"trajectory: wrote {path} and its card ({seconds:.0f} s in all)")
    return report_doc
