"""The whole trajectory run: leave-one-scene-out teacher/students + CV on the five test scenes,
predicted-entry scores, then the shipped student trained on all five train splits, exported to
ONNX with its model card.

    python build.py distill trajectory [--smoke] [--seed 0] [--out models/]
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from compiler.modelcard import (Metric, ModelCard, Preprocess, TensorSpec, Training, costs_of, sha256_of,
                                write_card)
from runtime.forecast import (N_NEIGHBOURS, NEIGHBOUR_FEATURES, OnnxForecaster, constant_velocity, decode, encode,
                              neighbour_features)
from sim import realdata

from ..common import export_onnx, is_main_process, seed_everything, torch_version
from . import data, entry
from .models import STUDENTS, Teacher, n_params
from .train import Recipe, ade_fde, predict_offsets, score, train

TASK = "trajectory"
STUDENT_KIND = "social-mlp"
STUDENT_VARIANT = "traj-social-mlp"
RATE_HZ = 1.0 / realdata.DT_S
TEACHER_RECIPE = Recipe(epochs=12, lr=1e-3, batch=256)
STUDENT_RECIPE = Recipe(epochs=30, lr=2e-3, batch=256)
KD_ALPHA = 0.5
SMOKE_LIMIT = {"train": 1500, "val": 300, "test": 300}
THREADS = 1  # tiny models train faster on one thread, and one thread keeps runs identical under load
SPLIT_NAME = "ethucy test (5 scenes, leave-one-scene-out, 8 obs -> 12 pred at 2.5 Hz)"


def _smoke(recipe: Recipe) -> Recipe:
    return replace(recipe, epochs=2, max_steps=6)


def _student(seed: int):
    torch.manual_seed(seed)
    return STUDENTS[STUDENT_KIND]()


def _teacher(seed: int):
    torch.manual_seed(seed)
    return Teacher(d=64, layers=2)


def train_set(scene: str | None, seed: int, smoke: bool, log) -> dict:
    """Teacher, KD student and no-KD student for one leave-one-out scene (None: all five)."""
    lim = SMOKE_LIMIT if smoke else {}
    tr = data.load(scene, "train", limit=lim.get("train"))
    va = data.load(scene, "val", limit=lim.get("val"))
    tr_r, st_r = (_smoke(TEACHER_RECIPE), _smoke(STUDENT_RECIPE)) if smoke else (TEACHER_RECIPE, STUDENT_RECIPE)
    log(f"  [{scene or 'all'}] teacher on {len(tr)} train windows ({len(va)} val)")
    teacher = train(_teacher(seed), tr, va, tr_r, seed)
    log(f"    teacher: best epoch {teacher.best_epoch}, val ADE {teacher.val_ade:.4f}, {teacher.seconds:.0f} s")
    kd_targets = predict_offsets(teacher.model, tr)
    kd = train(_student(seed), tr, va, replace(st_r, kd_alpha=KD_ALPHA), seed, kd_targets=kd_targets)
    log(f"    student KD: best epoch {kd.best_epoch}, val ADE {kd.val_ade:.4f}, {kd.seconds:.0f} s")
    out = {"teacher": teacher, "kd": kd, "train": tr, "val": va}
    if scene is not None:
        nokd = train(_student(seed), tr, va, st_r, seed)
        log(f"    student no-KD: best epoch {nokd.best_epoch}, val ADE {nokd.val_ade:.4f}, {nokd.seconds:.0f} s")
        out["nokd"] = nokd
    return out


def _pair(ade_fde_: tuple[float, float]) -> dict:
    return {"ade": round(ade_fde_[0], 4), "fde": round(ade_fde_[1], 4)}


def leave_one_out(seed: int, smoke: bool, log, scenes=realdata.SCENES) -> dict:
    """Per-scene and average ADE/FDE for CV, teacher, student KD and no-KD; entry scores."""
    zones = entry.load_zones()
    per_scene, entry_parts = {}, {"student": [], "cv": []}
    for scene in scenes:
        t0 = time.perf_counter()
        res = train_set(scene, seed, smoke, log)
        te = data.load(scene, "test", limit=SMOKE_LIMIT["test"] if smoke else None)
        row = {"windows": len(te),
               "cv": _pair(ade_fde(constant_velocity(te.obs), te.fut)),
               "teacher": _pair(score(res["teacher"].model, te)),
               "student_kd": _pair(score(res["kd"].model, te)),
               "student_nokd": _pair(score(res["nokd"].model, te)),
               "best_epoch": {k: res[k].best_epoch for k in ("teacher", "kd", "nokd")}}
        # predicted entry on the scene's real test tracks, student (KD) vs CV, same decision steps
        runs = entry.test_runs(scene)
        if smoke:
            runs = entry.first_runs(runs, 40)
        obs, where = entry.decision_obs(runs)
        x, frame = encode(obs)
        soc = neighbour_features(frame, entry.decision_others(runs, where))
        with torch.no_grad():
            off = res["kd"].model(torch.from_numpy(x), torch.from_numpy(soc)).numpy()
        fc = {"student": decode(off, frame), "cv": constant_velocity(obs)}
        row["entry"] = {}
        for k, f in fc.items():
            s = entry.score(runs, where, f, zones[scene])
            entry_parts[k].append(s)
            row["entry"][k] = s.as_dict()
        row["seconds"] = round(time.perf_counter() - t0, 1)
        per_scene[scene] = row
        log(f"  [{scene}] test ADE/FDE  CV {row['cv']['ade']:.3f}/{row['cv']['fde']:.3f}  "
            f"teacher {row['teacher']['ade']:.3f}/{row['teacher']['fde']:.3f}  "
            f"KD {row['student_kd']['ade']:.3f}/{row['student_kd']['fde']:.3f}  "
            f"no-KD {row['student_nokd']['ade']:.3f}/{row['student_nokd']['fde']:.3f}  "
            f"entry F1 student {row['entry']['student']['f1']:.3f} CV {row['entry']['cv']['f1']:.3f}  "
            f"({row['seconds']:.0f} s)")
    avg = {m: {k: round(float(np.mean([per_scene[s][m][k] for s in per_scene])), 4) for k in ("ade", "fde")}
           for m in ("cv", "teacher", "student_kd", "student_nokd")}
    return {"scenes": per_scene, "average": avg, "entry_horizon_s": entry.HORIZON_S,
            "entry": {k: entry.combine(v).as_dict() for k, v in entry_parts.items()}}


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
              f"horizon {entry.HORIZON_S:g} s, {en['entries']} entries + {en['near_misses']} near-misses")
    for k, name in (("accuracy", "entry_accuracy"), ("precision", "entry_precision"), ("recall", "entry_recall"),
                    ("f1", "entry_f1"), ("mean_lead_s", "entry_mean_lead_s")):
        metrics.append(Metric(name=name, value=en[k], data="real", split=esplit, command=cmd))
    metrics.append(Metric(name="entry_false_warnings_per_hour", value=en["false_warnings_per_hour"], data="real",
                          split=esplit, higher_is_better=False, command=cmd))
    train_files = sorted(ship["train"].files)
    return ModelCard(
        task=TASK, variant=STUDENT_VARIANT,
        description=(f"Pedestrian/worker ground-plane forecaster: social MLP student ({n_params(ship['kd'].model)} "
                     "params; own track + 4 nearest people), 8 observed steps -> 12 predicted at 2.5 Hz, "
                     "distilled from a transformer teacher with neighbours."),
        sha256=sha256_of(path), bytes=path.stat().st_size, precision="fp32", quantize=False,
        inputs=[TensorSpec(name="obs_local", shape=["batch", realdata.OBS_LEN, 2], layout="NTC"),
                TensorSpec(name="neighbours", shape=["batch", N_NEIGHBOURS, NEIGHBOUR_FEATURES], layout="NKC")],
        outputs=[TensorSpec(name="offsets", shape=["batch", realdata.PRED_LEN, 2], layout="NTC")],
        preprocess=Preprocess(rate_hz=RATE_HZ, notes=(
            "Input: the last 8 ground-plane positions (metres) resampled to 2.5 Hz (runtime.forecast.resample), "
            "encoded by runtime.forecast.encode: translated so the last point is the origin, rotated so the last "
            "velocity points along +x (overall displacement when standing), no scaling. Output: offsets in that "
            "frame from the constant-velocity extrapolation of the last step; runtime.forecast.decode adds them "
            "to CV and rotates/translates back. Too short a track: constant velocity. Second input: "
            "runtime.forecast.neighbour_features, the 4 nearest other people within 8 m seen at the last two "
            "steps, as (x, y, vx, vy, 1) in the track's local frame, zero rows when absent.")),
        decoder="trajectory-cv-offsets",
        costs=costs_of(path), metrics=metrics,
        training=Training(
            command=cmd, seed=seed,
            data=[f"ETH/UCY (real) train splits of all five scenes, each file once: {', '.join(train_files)}",
                  "epochs selected on the matching val files"],
            teacher=(f"transformer over the observed track + {data.N_NEIGHBOURS} nearest neighbours "
                     f"({n_params(ship['teacher'].model)} params, same data, server side)"),
            steps=ship["kd"].steps, seconds=round(seconds, 1), framework=torch_version()),
        notes=("FP32 on purpose: a ~38k-parameter MLP costs about 38k MACs, INT8 gains nothing and would add "
               "quantization error to metres. Metrics are of the same recipe trained leave-one-scene-out (the "
               "shipped file saw every scene's train split, which overlaps the test sequences, so it is not "
               f"scored on test itself). KD target: {KD_ALPHA:g} teacher prediction + {1 - KD_ALPHA:g} ground truth. "
               "ETH/UCY: Pellegrini et al. ICCV 2009, Lerner et al. 2007; splits as kept by Social-STGCNN (MIT)."
               + (" SMOKE RUN: tiny data, few steps; numbers are meaningless." if smoke else "")))


def run(out: Path, seed: int = 0, smoke: bool = False, log=print, scenes=realdata.SCENES,
        report: Path | None = None, command: str = "") -> dict:
    """Everything ``build.py distill trajectory`` does; returns the report dict."""
    t0, c0 = time.perf_counter(), time.process_time()
    seed_everything(seed, threads=THREADS)
    command = command or f"python build.py distill trajectory --seed {seed}" + (" --smoke" if smoke else "")
    log(f"trajectory: leave-one-scene-out over {', '.join(scenes)}{' (smoke)' if smoke else ''}")
    loo = leave_one_out(seed, smoke, log, scenes)
    t_loo = time.perf_counter() - t0
    log("trajectory: shipped student on all five train splits")
    t1 = time.perf_counter()
    seed_everything(seed, threads=THREADS)
    ship = train_set(None, seed, smoke, log)
    model = ship["kd"].model.eval()
    folder = Path(out) / TASK / STUDENT_VARIANT
    path = folder / "model.onnx"
    report_doc = {"seed": seed, "smoke": smoke, "command": command, **loo,
                  "params": {"teacher": n_params(ship["teacher"].model), "student": n_params(model)}}
    if is_main_process():
        va = ship["val"]
        export_onnx(model, (torch.from_numpy(va.x[:4]), torch.from_numpy(va.soc[:4])), path,
                    ["obs_local", "neighbours"], ["offsets"],
                    check_inputs=(torch.from_numpy(va.x[:512]), torch.from_numpy(va.soc[:512])))
        # the deployed path (ONNX through the runtime) must reproduce torch's val ADE
        fc = OnnxForecaster(path, rate_hz=RATE_HZ)
        x, frame = encode(va.obs)
        (off,) = fc.session.run(None, {"obs_local": x, "neighbours": va.soc})
        onnx_val = ade_fde(decode(off, frame), va.fut)
        torch_val = ade_fde(decode(predict_offsets(model, va), va.frame), va.fut)
        if abs(onnx_val[0] - torch_val[0]) > 1e-4:
            raise RuntimeError(f"ONNX val ADE {onnx_val[0]} differs from torch {torch_val[0]}")
        seconds = time.perf_counter() - t0
        report_doc["ship"] = {"val": _pair(onnx_val), "steps": ship["kd"].steps,
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
