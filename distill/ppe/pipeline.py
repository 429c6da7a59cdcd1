"""The whole PPE run: data, the large classifier (the teacher), the small one distilled from it
(and, measured beside it, the same small one without the teacher), ONNX export and checks,
scores beside the colour baseline, model cards.

    python build.py distill ppe [--variant all|large|small] [--smoke] [--seed 0] [--out models/]

Only rank 0 does the work under torchrun: the run is single-process by design (a few minutes of
CPU), and the other ranks wait at a barrier, so a torchrun launch writes the same bytes.
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
from runtime import ppe as rt

from ..common import export_onnx, is_distributed, is_main_process, seed_everything, torch_version
from . import data as D
from .evaluate import baseline_scores, fit_thresholds, onnx_classifier, real_report, sim_report
from .models import VARIANTS, build
from .train import Recipe, clean_inputs, masked_accuracy, predict, train

TASK = "ppe"
ORDER = ("large", "small")
TEACHER_OF = {"small": "large"}
VAL_SEED = D.TRAIN_SEEDS[-1]          # the last TRAIN seed selects steps; never trained on
RECIPES = {"large": Recipe(steps=1400, lr=4e-3, real_fraction=0.25, eval_every=200),
           "small": Recipe(steps=1400, lr=4e-3, real_fraction=0.25, kd_alpha=0.5, eval_every=200)}
SMOKE = dict(sim=D.SimRecipe(seeds=(0, VAL_SEED), scenes=("ppe-mix",), conditions=("day", "night"), frames=(3,)),
             holdout=D.SimRecipe(seeds=(D.HOLDOUT_SEEDS[0],), scenes=("ppe-mix",), conditions=("day", "night"),
                                 frames=(5,), min_box_h=D.MIN_BOX_H_EVAL),
             real_limit=2, real_eval_limit=2, steps=4, batch=16)
HOLDOUT_SPLIT = (f"sim holdout: seeds {', '.join(map(str, D.HOLDOUT_SEEDS))} (TRAIN: {D.TRAIN_SEEDS[0]}-{D.TRAIN_SEEDS[-1]}), "
                 f"scenes {', '.join(D.SCENES)} (fall-incident's camera unseen in training) x {len(D.CONDITIONS)} conditions, persons >= {D.MIN_BOX_H_EVAL} px tall, GT boxes")
REAL_SPLIT = {"preview_worker-zone-detection.gif": "worker-zone GIF (whole clip held out; one worker wearing both)",
              "one-by-one-person-detection.mp4": "one-by-one mp4, last 30% (nobody wears PPE)",
              "preview_one-by-one-person-detection.gif": "one-by-one preview GIF, last 30% (nobody wears PPE)"}


def load_data(smoke: bool, log) -> dict:
    t0 = time.perf_counter()
    recipe = SMOKE["sim"] if smoke else D.SimRecipe(D.TRAIN_SEEDS, scenes=D.TRAIN_SCENES)
    hold = SMOKE["holdout"] if smoke else D.SimRecipe(D.HOLDOUT_SEEDS, frames=D.HOLDOUT_FRAMES, min_box_h=D.MIN_BOX_H_EVAL)
    sim = D.sim_set(recipe, workers=1 if smoke else 2, log=log)
    holdout = D.sim_set(hold, workers=1 if smoke else 2, log=log)
    real = D.real_train_set(SMOKE["real_limit"] if smoke else None, log=log)
    is_val = sim.meta["seed"] == VAL_SEED
    train_set = D.CropSet.concat([sim.subset(~is_val), real])
    val = sim.subset(is_val & (sim.meta["box_h"] >= D.MIN_BOX_H_EVAL))
    log(f"  data: {len(train_set)} train crops ({len(real)} real), {len(val)} val, {len(holdout)} sim holdout "
        f"({time.perf_counter() - t0:.0f} s)")
    base_thr = fit_thresholds(baseline_scores(sim.subset(~is_val)), sim.labels[~is_val], sim.known[~is_val])
    return {"train": train_set, "val": val, "holdout": holdout, "n_real": len(real), "n_sim": int((~is_val).sum()),
            "baseline_thresholds": base_thr}


def _soft_targets(teacher_path: Path, teacher_variant: str, data: D.CropSet) -> np.ndarray:
    """The teacher's probabilities on the clean crops of every training person (its own size)."""
    return onnx_classifier(teacher_path)(clean_inputs(data, VARIANTS[teacher_variant].size))


def train_variant(name: str, d: dict, seed: int, smoke: bool, log, teacher: Path | None = None) -> dict:
    v = VARIANTS[name]
    recipe = RECIPES[name]
    if smoke:
        recipe = replace(recipe, steps=SMOKE["steps"], batch=SMOKE["batch"], eval_every=2)
    val = (clean_inputs(d["val"], v.size), d["val"].labels, d["val"].known)
    out = {}
    soft = None
    if teacher is not None and recipe.kd_alpha > 0:
        log(f"  {name}: soft targets from {teacher}")
        soft = _soft_targets(teacher, TEACHER_OF[name], d["train"])
        seed_everything(seed)
        models = {"kd": build(name)}
        seed_everything(seed)
        models["nokd"] = build(name)                       # the same initial weights
        log(f"  {name}: training with KD (alpha {recipe.kd_alpha}) and, on the same batches, without it; "
            f"{recipe.steps} steps of {recipe.batch}")
        out.update(train(models, d["train"], v.size, recipe, seed, val, soft, log))
        out["ship"] = "kd"
    else:
        recipe = replace(recipe, kd_alpha=0.0)
        seed_everything(seed)
        log(f"  {name}: training, {recipe.steps} steps of {recipe.batch}")
        out.update(train({"nokd": build(name)}, d["train"], v.size, recipe, seed, val, None, log))
        out["ship"] = "nokd"
    out["recipe"] = recipe
    return out


def _metrics(sim: dict, real: dict, cmd: str) -> list[Metric]:
    ms = []
    for cond, row in sim["conditions"].items():
        name = "both_correct" if cond == "all" else f"both_correct_{cond}"
        ms.append(Metric(name=name, value=row["model"]["both"], data="synthetic", split=HOLDOUT_SPLIT, command=cmd))
    allrow = sim["conditions"]["all"]
    for item in ("helmet", "vest"):
        ms.append(Metric(name=f"{item}_accuracy", value=allrow["model"][item], data="synthetic", split=HOLDOUT_SPLIT, command=cmd))
    ms.append(Metric(name="both_correct_colour_baseline", value=allrow["baseline"]["both"], data="synthetic",
                     split=HOLDOUT_SPLIT, command=cmd))
    for clip, res in real["clips"].items():
        split = REAL_SPLIT[clip] + f"; teacher person boxes (score >= {real['boxes'].split()[-1]}), per frame"
        for k, val in res["model"].items():
            if val is not None:
                short = "worker_zone" if "worker-zone" in clip else ("one_by_one_mp4" if clip.endswith(".mp4") else "one_by_one_gif")
                ms.append(Metric(name=f"{k}_rate_{short}", value=val, data="real", split=split, command=cmd))
    return ms


def _card(name: str, path: Path, res: dict, sim: dict, real: dict, d: dict, seed: int, smoke: bool, cmd: str,
          seconds: float, teacher: Path | None, extra: dict) -> ModelCard:
    v = VARIANTS[name]
    shipped = res[res["ship"]]
    W, H = v.size
    kd_note = ""
    if "kd" in res:
        kd_note = (f" Distillation, measured: val both-correct {res['kd'].val_score:.4f} with the teacher vs "
                   f"{res['nokd'].val_score:.4f} without; sim holdout both-correct {extra['kd_holdout']:.4f} vs "
                   f"{extra['nokd_holdout']:.4f}.")
    return ModelCard(
        task=TASK, variant=name,
        description=f"Per-person hard hat and hi-vis vest classifier: {v.description}.",
        sha256=sha256_of(path), bytes=path.stat().st_size, precision="fp32", quantize=True,
        inputs=[TensorSpec(name=rt.INPUT_NAME, shape=["batch", 3, H, W], layout="NCHW")],
        outputs=[TensorSpec(name=rt.OUTPUT_NAME, shape=["batch", 2], layout="NC")],
        preprocess=Preprocess(color="rgb", resize="letterbox", crop="person", scale=1 / 255, notes=(
            f"One crop per tracked person: runtime.ppe.person_crops(frame, boxes, size=({W}, {H})) grows the person box "
            f"by {rt.MARGIN[0]:g} of its width and {rt.MARGIN[1]:g} of its height per side, clips it to the frame and "
            f"letterboxes it (centred, grey {rt.PAD_VALUE}) into {W}x{H}; runtime.ppe.preprocess makes RGB/255 NCHW. "
            "Outputs are logits; runtime.ppe.decode applies the sigmoid (P(helmet), P(vest)); 0.5 is the operating "
            "point scored here.")),
        decoder=rt.DECODER, classes=list(rt.CLASSES),
        costs=costs_of(path), metrics=_metrics(sim, real, cmd),
        training=Training(
            command=cmd, seed=seed,
            data=[f"sim person crops: scenes {', '.join(D.TRAIN_SCENES)} x conditions {', '.join(D.CONDITIONS)} x TRAIN seeds "
                  f"{D.TRAIN_SEEDS[0]}-{D.TRAIN_SEEDS[-2]} (seed {VAL_SEED} selects the step), GT boxes jittered "
                  f"like a detector's, {d['n_sim']} persons",
                  f"real person crops from the TRAIN footage (people-detection, store-aisle, person-bicycle-car GIFs, "
                  f"first 70% of the one-by-one mp4 and its preview): {d['n_real']} SSDLite teacher boxes "
                  f"(score >= {D.TEACHER_THRESHOLD}), all negatives, half of them with painted vests/hats/"
                  "lookalike shirts; Intel sample-videos, CC BY 4.0",
                  "augmentation: box jitter and truncation, light, white balance, saturation, blur, low resolution, "
                  "noise, JPEG, mirror"],
            teacher=(f"ppe/{TEACHER_OF[name]} ({teacher.parent.name}/model.onnx, sha256 {sha256_of(teacher)[:16]}...), "
                     f"soft targets mixed {res['recipe'].kd_alpha:g} with the labels") if teacher is not None and "kd" in res else None,
            steps=shipped.steps, seconds=round(seconds, 1), framework=torch_version()),
        notes=("A classifier on the tracker's person boxes rather than extra detector classes: it reuses any person "
               "detector (so the detector's tiers and this one's are planned independently), sees the person at a "
               "fixed resolution however far away, and is ~0.2 ms per person on a CPU. Scored beside the colour "
               f"baseline (runtime.ppe.colour_baseline: hi-vis pixel fraction of the head/torso regions, thresholds "
               f"{d['baseline_thresholds'][0]:g}/{d['baseline_thresholds'][1]:g} fitted on the sim TRAIN crops) in the "
               "same run; bench/ppe.py repeats it on the committed files." + kd_note
               + " Ships FP32 here; the image builder quantizes to INT8."
               + (" SMOKE RUN: tiny data, few steps; numbers are meaningless." if smoke else "")))


def _join_torchrun() -> None:
    """Under torchrun (WORLD_SIZE > 1), join the process group so that the ranks can wait for rank 0."""
    import os
    from datetime import timedelta
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed():
        torch.distributed.init_process_group("gloo", timeout=timedelta(hours=2))


def run(out: Path, variants=ORDER, seed: int = 0, smoke: bool = False, log=print, command: str = "") -> dict:
    """Everything ``build.py distill ppe`` does; returns {variant: report}."""
    _join_torchrun()
    if is_distributed() and not is_main_process():
        torch.distributed.barrier()
        return {}
    t_all = time.perf_counter()
    seed_everything(seed)
    command = command or f"python build.py distill ppe --seed {seed}" + (" --smoke" if smoke else "")
    log(f"ppe: variants {', '.join(variants)}{' (smoke)' if smoke else ''}")
    d = load_data(smoke, log)
    reports = {}
    for name in [v for v in ORDER if v in variants]:
        t0 = time.perf_counter()
        v = VARIANTS[name]
        folder = Path(out) / TASK / name
        path = folder / "model.onnx"
        teacher = None
        if name in TEACHER_OF:
            tp = Path(out) / TASK / TEACHER_OF[name] / "model.onnx"
            teacher = tp if tp.is_file() else None
            if teacher is None:
                log(f"  {name}: no teacher at {tp}; training without KD")
        res = train_variant(name, d, seed, smoke, log, teacher)
        model = res[res["ship"]].model.eval()
        hx = clean_inputs(d["holdout"], v.size)
        example = torch.from_numpy(hx[:4] if len(hx) >= 4 else np.zeros((4, 3, v.size[1], v.size[0]), np.float32))
        export_onnx(model, (example,), path, [rt.INPUT_NAME], [rt.OUTPUT_NAME],
                    check_inputs=(torch.from_numpy(hx[:256]),) if len(hx) else None)
        classify = onnx_classifier(path)
        prob = classify(hx)
        torch_prob = predict(model, hx)
        if len(hx) and not np.allclose(prob, torch_prob, atol=1e-4):
            raise RuntimeError(f"{path}: onnxruntime probabilities differ from torch by {np.abs(prob - torch_prob).max():.3g}")
        base = baseline_scores(d["holdout"])
        sim = sim_report(prob, base, d["baseline_thresholds"], d["holdout"])
        real = real_report(classify, v.size, d["baseline_thresholds"], SMOKE["real_eval_limit"] if smoke else None)
        extra = {}
        if "kd" in res:
            for k in ("kd", "nokd"):
                extra[f"{k}_holdout"] = masked_accuracy(predict(res[k].model, hx), d["holdout"].labels, d["holdout"].known)
        seconds = time.perf_counter() - t0
        card = _card(name, path, res, sim, real, d, seed, smoke, command, seconds, teacher, extra)
        write_card(card, folder)
        report = {"variant": name, "seed": seed, "smoke": smoke, "command": command, "seconds": round(seconds, 1),
                  "sim_holdout": sim, "real": real, "baseline_thresholds": list(d["baseline_thresholds"]),
                  "training": {k: {"val_both_correct": round(res[k].val_score, 4), "best_step": res[k].best_step,
                                   "history": res[k].history, "seconds": round(res[k].seconds, 1)}
                               for k in ("kd", "nokd") if k in res},
                  "shipped": res["ship"], **{k: round(x, 4) for k, x in extra.items()}}
        (folder / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        allrow = sim["conditions"]["all"]
        log(f"  {name}: sim holdout both-correct {allrow['model']['both']} (colour baseline {allrow['baseline']['both']}); "
            f"wrote {path} ({seconds:.0f} s)")
        reports[name] = report
    if is_distributed():
        torch.distributed.barrier()
    log(f"ppe: done in {time.perf_counter() - t_all:.0f} s")
    return reports
