"""`build.py distill detector`: data -> train -> export -> evaluate -> model card, per variant.

For the smallest variant the same run also trains its no-KD twin (same student, frames, steps and
seed; real frames labelled by the background/temporal evidence alone) and reports both; the twin's
ONNX stays in the cache, out of the zoo. Only rank 0 writes files under torchrun.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from compiler.modelcard import (Metric, ModelCard, Preprocess, TensorSpec, Training, costs_of, sha256_of,
                                write_card)
from runtime.detector_decoder import DECODER_KIND

from ..common import is_main_process, seed_everything, torch_version
from . import data as D
from .evaluate import DEPLOY_CONF, OnnxStudent, eval_real, eval_sim, latency_ms, student_predict
from .export import INPUT, OUTPUTS, export
from .model import STRIDE
from .train import Recipe, train
from .variants import SMALLEST, VARIANTS, Variant

THREADS = 1   # one intra-op thread: on a shared 2-core machine a second OpenMP thread mostly waits
TEACHER_MACS = 617_000_000   # replaced by the measured figure where the teacher file is present
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
ZOO = Path(__file__).resolve().parents[2] / "models"


def init_distributed() -> None:
    """Under torchrun (WORLD_SIZE > 1) join the process group (gloo, CPU); a no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")


def teacher_macs() -> int:
    from compiler.onnxinfo import analyse
    from .teacher import teacher_path
    p = teacher_path()
    return analyse(p).macs if p.exists() else TEACHER_MACS


def load_data(v: Variant, smoke: bool, log) -> dict:
    if smoke:
        sim_train = D.sim_frames(scenes=("crane-swing",), conditions=("day",), seeds=(0,), per_source=2, log=log)
        sim_hold = D.sim_frames(scenes=("crane-swing",), conditions=("day",), seeds=D.SIM_HOLDOUT_SEEDS,
                                per_source=2, log=log)
        holdout = D.real_holdout(limit=4)
    else:
        sim_train = D.sim_frames(log=log)
        if v.extra_sim:
            sim_train = D.FrameSet.concat([sim_train, D.sim_frames(conditions=v.extra_sim,
                                                                   seeds=D.NIGHT_EXTRA_SEEDS, every_seed=True,
                                                                   per_source=D.NIGHT_EXTRA_FRAMES, log=log)])
        def sim_hold():   # loaded after training (its cache may still be rendering when training starts)
            return D.sim_frames(scenes=D.SIM_HOLDOUT_SCENES, seeds=D.SIM_HOLDOUT_SEEDS,
                                per_source=D.SIM_HOLDOUT_FRAMES, log=log)
        holdout = D.real_holdout()
    return {"sim_train": sim_train, "sim_holdout": sim_hold, "real_holdout": holdout}


SMOKE_CLIPS = ("preview_people-detection.gif",)


def evaluate(onnx_path: Path, size: int, data: dict) -> dict:
    model = OnnxStudent(onnx_path, size, threads=THREADS)
    out = {}
    if data["real_holdout"] is not None:
        out["real"] = eval_real(student_predict(model), data["real_holdout"], conf=DEPLOY_CONF)
    sim = data["sim_holdout"]
    out["sim"] = eval_sim(model, sim() if callable(sim) else sim)
    x = np.zeros((1, 3, size, size), np.float32)
    out["latency_ms"] = latency_ms(lambda a: model.sess.run(None, {INPUT: a}), x)
    return out


def fit(v: Variant, mode: str, data: dict, seed: int, smoke: bool, out_path: Path, log, init=None,
        ckpt: Path | None = None):
    real, stats = D.real_frames(mode, smoke, SMOKE_CLIPS if smoke else D.REAL_TRAIN_CLIPS, log)
    frames = D.FrameSet.concat([real, data["sim_train"]])
    recipe = Recipe(steps=3, batch=4) if smoke else v.recipe
    log(f"  {v.name} [{mode}]: {len(real)} real + {len(data['sim_train'])} sim frames, {recipe.steps} steps "
        f"x {recipe.batch}")
    model, info = train(v.arch, frames, recipe, seed, init=init, log=log)
    info.update({"real_frames": len(real), "sim_frames": len(data["sim_train"]), "label_stats": stats,
                 "recipe": recipe.__dict__})
    if not is_main_process():
        return model, info, None
    if ckpt is not None:
        torch.save(model.state_dict(), ckpt)
    export(model, out_path, seed)
    info["eval"] = evaluate(out_path, v.arch.size, data)
    return model, info, out_path


def metrics_of(ev: dict, command: str) -> list[Metric]:
    ms = []
    if "real" in ev:
        r = ev["real"]
        split = (f"hand-checked real holdout (data/labels/real_holdout.json, {r['frames']} frames: worker-zone GIF, "
                 f"last 30% of the one-by-one mp4 and its preview GIF; difficult boxes ignored)")
        ms.append(Metric(name="AP50_person", value=r["AP50"], data="real", split=split, command=command))
        ms.append(Metric(name=f"precision_person@{DEPLOY_CONF}", value=r["at_conf"]["precision"], data="real",
                         split=split, command=command))
        ms.append(Metric(name=f"recall_person@{DEPLOY_CONF}", value=r["at_conf"]["recall"], data="real",
                         split=split, command=command))
    s = ev["sim"]
    for cond, val in s["person"].items():
        ms.append(Metric(name=f"AP50_person_{cond}", value=val, data="synthetic",
                         split=f"sim holdout seed {list(D.SIM_HOLDOUT_SEEDS)}, all scenes, condition {cond}",
                         command=command))
    ms.append(Metric(name="AP50_machine", value=s["machine"]["all"], data="synthetic",
                     split=f"sim holdout seed {list(D.SIM_HOLDOUT_SEEDS)}, all scenes and conditions", command=command))
    return ms


def make_card(v: Variant, onnx_path: Path, info: dict, seed: int, command: str, t_macs: int,
              smoke: bool) -> ModelCard:
    costs = costs_of(onnx_path)
    size = v.arch.size
    g = size // STRIDE
    notes = [f"Anchor-free CenterNet/TTFNet-style head at stride {STRIDE} on a depthwise-separable backbone with a "
             "nearest-Resize + Add FPN; outputs are raw conv maps so the NPU runs convolutions only; sigmoid, 3x3 "
             "peak picking, box decoding and NMS run in runtime/detector_decoder.py (decoder "
             f"'{DECODER_KIND}'), the same code the training-side evaluation used. BatchNorm folded on export.",
             f"Costs: {costs.macs / 1e6:.1f} MMACs vs the teacher's {t_macs / 1e6:.1f} MMACs measured by "
             f"compiler.onnxinfo.analyse on teacher.onnx ({costs.macs / t_macs:.3f} of it).",
             "Real metrics come from real footage; AP50_person_<condition> and AP50_machine from synthetic sim "
             "scenes (machines exist only in sim). Real frames carry person labels only (machine loss masked).",
             f"Trained with {THREADS} torch threads; results are reproducible for the same thread count."]
    if v.name == SMALLEST:
        notes.append("KD vs no-KD on this variant (same student, frames, steps, seed; no-KD real labels from the "
                     "background/temporal evidence alone): see bench/results/detector.json.")
    if v.extra_sim:
        notes.append(f"Condition-specialised: fine-tuned from {v.base} with extra sim seeds "
                     f"{list(D.NIGHT_EXTRA_SEEDS)} in {list(v.extra_sim)}; the runtime's situations switch to it.")
    elif v.base:
        notes.append(f"Initialised from {v.base} (fully convolutional: same weights; added residual blocks start "
                     f"as identities) and trained further at {size}x{size}.")
    if smoke:
        notes.append("SMOKE RUN: tiny data and 3 steps; the numbers mean nothing.")
    data = ["real: first 70% of one-by-one-person-detection.mp4 (every 2nd frame) + preview_people, "
            "preview_person-bicycle-car, preview_store-aisle GIFs (Intel sample videos, CC BY 4.0), "
            "teacher pseudo-labels (letterbox + 3 crops) fused with IoU tracks, interpolation and a "
            "median-background foreground model",
            f"synthetic: sim scenes {list(D.SIM_SCENES)} x conditions {list(D.SIM_CONDITIONS)}, seeds "
            f"{list(D.SIM_TRAIN_SEEDS)}, exact ground truth (person, machine)"]
    if v.extra_sim:
        data.append(f"synthetic extra: {list(v.extra_sim)} seeds {list(D.NIGHT_EXTRA_SEEDS)}")
    return ModelCard(
        task="detector", variant=v.name,
        description=f"Person + machine detector, {size}x{size} letterboxed input, for {v.boards}.",
        sha256=sha256_of(onnx_path), bytes=onnx_path.stat().st_size, quantize=True,
        inputs=[TensorSpec(name=INPUT, shape=["batch", 3, size, size], layout="NCHW")],
        outputs=[TensorSpec(name=OUTPUTS[0], shape=["batch", v.arch.classes, g, g], layout="NCHW"),
                 TensorSpec(name=OUTPUTS[1], shape=["batch", 4, g, g], layout="NCHW")],
        preprocess=Preprocess(color="rgb", resize="letterbox", scale=1 / 255, mean=[0.0, 0.0, 0.0],
                              std=[1.0, 1.0, 1.0],
                              notes=f"letterbox centred, pad value 114; decoder stride {STRIDE}; heatmap = class "
                                    "logits, box = log(ltrb distance / stride)"),
        decoder=DECODER_KIND, classes=list(D.CLASSES), conditions=list(v.conditions), costs=costs,
        metrics=metrics_of(info["eval"], command),
        training=Training(command=command, seed=seed, data=data, teacher="ssdlite-voc-person/teacher.onnx "
                          "(SSDLite MobileNetV2, PASCAL VOC person; sha256 98befc59...)", steps=info["steps"],
                          seconds=info["seconds"], framework=torch_version()),
        notes=" ".join(notes))


def run(out: Path, variant: str, seed: int = 0, smoke: bool = False, command: str = "", kd: bool = True,
        log=print) -> dict:
    """Train, export, evaluate and card one variant. ``kd=False`` trains the no-KD twin of the
    smallest variant instead (same student, frames, steps, seed; real labels from the background and
    temporal evidence alone): its ONNX stays in the cache and only its report is written."""
    v = VARIANTS[variant]
    if not kd and (v.name != SMALLEST or v.base):
        raise ValueError(f"the no-KD baseline is defined for {SMALLEST} only")
    t0 = time.perf_counter()
    init_distributed()
    seed_everything(seed, threads=THREADS)
    data = load_data(v, smoke, log)
    folder = Path(out) / "detector" / v.name
    tag = f"-seed{seed}{'-smoke' if smoke else ''}"
    init = None
    if v.base:
        ckpt = D.cache_root() / f"{v.base}{tag}.pt"
        if not ckpt.exists():
            raise FileNotFoundError(f"{v.name} starts from {v.base}: run `build.py distill detector --variant "
                                    f"{v.base}{' --smoke' if smoke else ''}` first ({ckpt} missing)")
        init = torch.load(ckpt, weights_only=True)
    D.cache_root().mkdir(parents=True, exist_ok=True)
    if not kd:
        _, info, path = fit(v, "nokd", data, seed, smoke, D.cache_root() / f"{v.name}-nokd{tag}.onnx", log)
        if not is_main_process():
            return {}
        report = {"variant": f"{v.name}-nokd", "command": command, "seed": seed, "smoke": smoke,
                  "threads": THREADS, "wall_s": round(time.perf_counter() - t0, 1), "nokd": info,
                  "costs": costs_of(path).model_dump()}
        _write_report(report, f"{v.name}-nokd", smoke, out)
        return report
    folder.mkdir(parents=True, exist_ok=True)
    model, info, path = fit(v, "kd", data, seed, smoke, folder / "model.onnx", log, init=init,
                            ckpt=D.cache_root() / f"{v.name}{tag}.pt")
    if not is_main_process():
        return {}
    t_macs = teacher_macs()
    card = make_card(v, path, info, seed, command, t_macs, smoke)
    write_card(card, folder)
    report = {"variant": v.name, "command": command, "seed": seed, "smoke": smoke, "threads": THREADS,
              "wall_s": round(time.perf_counter() - t0, 1), "teacher_macs": t_macs, "kd": info,
              "costs": card.costs.model_dump(), "sha256": card.sha256}
    _write_report(report, v.name, smoke, out)
    return report


def _write_report(report: dict, name: str, smoke: bool, out: Path) -> None:
    """bench/results/detector_train_<name>.json for a run into the repo's zoo (models/); a run into
    another zoo (an experiment, a checkpoint regeneration) writes its report there instead."""
    if smoke:
        return
    dest = RESULTS if Path(out).resolve() == ZOO.resolve() else Path(out) / "detector"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"detector_train_{name}.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
