"""The whole posture run: keypoints from the pose student on sim crops, the teacher MLP, the
student distilled from it and the same student without it (same initial weights and batches),
ONNX export and checks, and scores beside the torso-angle rule in the same run.

    python build.py distill posture [--variant posture-t|posture-s] [--smoke] [--seed 0] [--out models/]

Scored on the sim holdout on the POSE STUDENT's keypoints (never the exact ones), intact and
with joints dropped (per person one of: the whole face, the left side, the right side, a random
30%). Only rank 0 works under torchrun; the others wait at a barrier.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from compiler.modelcard import Metric, ModelCard, Preprocess, TensorSpec, Training, costs_of, sha256_of, write_card
from runtime import posture as rp

from ..common import export_onnx, is_distributed, is_main_process, seed_everything, torch_version
from ..pose import data as PD
from ..pose.pipeline import EXTRA_TRAIN, HOLDOUT_JITTER_SEED, VAL, VAL_JITTER_SEED
from . import data as D
from .model import STUDENT, TEACHER, VARIANTS, build
from .train import Recipe, predict, train

TASK = "posture"
ORDER = (TEACHER, STUDENT)
POSE_VARIANT = "pose-s64"              # the pose student that feeds the classifier on the device
THREADS = 1
TRAIN_JITTER_SEED = 21
EVAL_DROP_SEED = 77
RECIPES = {TEACHER: Recipe(steps=4000, batch=256, lr=3e-3),
           STUDENT: Recipe(steps=4000, batch=256, lr=4e-3, kd_alpha=0.7)}
# extra holdout frames of the re-cast scenes: more fallen, bending, crouching and arms-raised persons
EXTRA_HOLDOUT = PD.SimRecipe(PD.HOLDOUT_SEEDS, scenes=("fall-many", "work-many"), frames=(35, 70, 105),
                             min_size=PD.MIN_SIZE_EVAL)
# the validation split (pose's VAL: seeds neither trained on nor held out), scored like the holdout;
# here only the fallen decision's offset is chosen on it (choose_fallen_offset)
VAL_DROP_SEED = 78
OFFSETS = np.round(np.arange(-2.0, 2.0001, 0.05), 2)
SMOKE = dict(train=PD.SimRecipe(seeds=(0,), scenes=("fall-incident",), frames=(50,)),
             holdout=PD.SimRecipe(seeds=(1000,), scenes=("fall-incident",), frames=(60,), min_size=PD.MIN_SIZE_EVAL),
             val=PD.SimRecipe(seeds=(900,), scenes=("fall-incident",), frames=(90,), min_size=PD.MIN_SIZE_EVAL),
             steps=20, batch=32)
HOLDOUT_SPLIT = (f"sim holdout: seeds {PD.HOLDOUT_SEEDS[0]}-{PD.HOLDOUT_SEEDS[-1]} (TRAIN {PD.TRAIN_SEEDS[0]}-"
                 f"{PD.TRAIN_SEEDS[-1]}) x scenes {', '.join(PD.SCENES)}, every condition once per scene, frames "
                 f"{PD.HOLDOUT_FRAMES} (+ {EXTRA_HOLDOUT.frames} of fall-many, work-many), persons >= "
                 f"{PD.MIN_SIZE_EVAL} px; keypoints from the pose student {POSE_VARIANT} on jittered GT boxes; "
                 "'falling' frames left out")
VAL_SPLIT = (f"seeds {VAL.seeds[0]}-{VAL.seeds[-1]} x scenes {', '.join(VAL.scenes)}, frames {VAL.frames}, the same "
             "jitter, drops and pose student as the holdout")


def _pose_path(out: Path) -> Path:
    from ..cli import ZOO
    for root in (Path(out), ZOO):
        p = root / "pose" / POSE_VARIANT / "model.onnx"
        if p.is_file():
            return p
    raise FileNotFoundError(f"posture needs the pose student: run `python build.py distill pose` first "
                            f"(looked for pose/{POSE_VARIANT}/model.onnx under {out} and {ZOO})")


def load_data(out: Path, smoke: bool, seed: int, log) -> dict:
    t0 = time.perf_counter()
    pose_path = _pose_path(out)
    tr = SMOKE["train"] if smoke else PD.SimRecipe(PD.TRAIN_SEEDS)
    sim = PD.sim_set(tr, workers=1 if smoke else 2, log=log)
    if not smoke:   # the pose student's extra TRAIN seeds (re-cast fall/work scenes): more fallen and held poses
        sim = PD.PersonSet.concat([sim, PD.sim_set(EXTRA_TRAIN, workers=2, log=log)])
    parts = [PD.sim_set(SMOKE["holdout"] if smoke else PD.SimRecipe(PD.HOLDOUT_SEEDS, frames=PD.HOLDOUT_FRAMES,
                                                                   min_size=PD.MIN_SIZE_EVAL), workers=1 if smoke else 2, log=log)]
    if not smoke:
        parts.append(PD.sim_set(EXTRA_HOLDOUT, workers=2, log=log))
    # the pose run's holdout jitter (seeded per part) so the pose student sees the crops it was scored on
    hold_boxes = np.concatenate([D.person_boxes(p, HOLDOUT_JITTER_SEED + i, 0.5) for i, p in enumerate(parts)])
    holdout = PD.PersonSet.concat(parts)
    boxes = D.person_boxes(sim, TRAIN_JITTER_SEED)
    pred = D.pose_keypoints(pose_path, sim, boxes, log)
    hold_pred = D.pose_keypoints(pose_path, holdout, hold_boxes, log)
    rng = np.random.default_rng(seed + 5)
    y = D.labels_of(sim.meta["posture"])
    keep = y >= 0
    kp = np.concatenate([pred[keep], D.noisy_truth(sim.subset(keep), boxes[keep], rng)])
    train = {"kp": kp, "boxes": np.concatenate([boxes[keep], boxes[keep]]), "y": np.concatenate([y[keep], y[keep]])}
    hy = D.labels_of(holdout.meta["posture"])
    hk = hy >= 0
    hold = {"kp": hold_pred[hk], "boxes": hold_boxes[hk], "y": hy[hk], "truth_kp": holdout.keypoints[hk],
            "condition": holdout.meta["condition"][hk], "scene": holdout.meta["scene"][hk]}
    erng = np.random.default_rng(EVAL_DROP_SEED)
    hold["kp_dropped"] = D.drop(hold["kp"], D.random_modes(len(hold["kp"]), erng, D.EVAL_DROP_MODES, None), erng)
    vs = PD.sim_set(SMOKE["val"] if smoke else VAL, workers=1 if smoke else 2, log=log)
    vb = D.person_boxes(vs, VAL_JITTER_SEED, 0.5)
    vy = D.labels_of(vs.meta["posture"])
    vk = vy >= 0
    vrng = np.random.default_rng(VAL_DROP_SEED)
    vkp = D.pose_keypoints(pose_path, vs, vb, log)[vk]
    val = {"kp_dropped": D.drop(vkp, D.random_modes(len(vkp), vrng, D.EVAL_DROP_MODES, None), vrng),
           "boxes": vb[vk], "y": vy[vk]}
    counts = {c: int((hold["y"] == i).sum()) for i, c in enumerate(rp.CLASSES)}
    log(f"  data: {int(keep.sum())} sim train persons (x2: pose-student keypoints + noisy truth), "
        f"{int(vk.sum())} validation persons ({int((val['y'] == rp.FALLEN).sum())} fallen), "
        f"{int(hk.sum())} holdout persons {counts} ({time.perf_counter() - t0:.0f} s)")
    return {"train": train, "val": val, "holdout": hold, "pose_path": pose_path, "n_train": int(keep.sum()), "counts": counts}


def choose_fallen_offset(model: torch.nn.Module, val: dict) -> tuple[float, dict]:
    """The offset added to the fallen logit that maximises min(fallen precision, recall) on the
    validation split (joints dropped); ties go to the smallest offset. Returns (offset, its scores)."""
    logits = predict_logits(model, rp.features(val["kp_dropped"], val["boxes"]))
    y, f = val["y"], rp.FALLEN
    best = (0.0, {"fallen_precision": 0.0, "fallen_recall": 0.0})
    if not (y == f).any():
        return best
    key = None
    for b in sorted(OFFSETS, key=abs):
        z = logits.copy()
        z[:, f] += b
        pred = z.argmax(1)
        tp = int(((pred == f) & (y == f)).sum())
        pr, rc = tp / max(int((pred == f).sum()), 1), tp / int((y == f).sum())
        if key is None or min(pr, rc) > key:
            key, best = min(pr, rc), (float(b), {"fallen_precision": round(pr, 4), "fallen_recall": round(rc, 4)})
    return best


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    return model(torch.from_numpy(x)).numpy()


@torch.no_grad()
def shift_fallen(model: torch.nn.Module, offset: float) -> torch.nn.Module:
    """The model with ``offset`` added to its fallen logit's bias (what ships)."""
    model.head.bias[rp.FALLEN] += offset
    return model


def scores(pred: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, per-class recall, confusion matrix and fallen-vs-not precision/recall."""
    n = len(rp.CLASSES)
    cm = np.zeros((n, n), int)
    np.add.at(cm, (y, pred), 1)
    f = rp.FALLEN
    tp = int(((pred == f) & (y == f)).sum())
    prec = tp / max(int((pred == f).sum()), 1)
    rec = tp / max(int((y == f).sum()), 1)
    return {"accuracy": round(float((pred == y).mean()) if len(y) else 0.0, 4),
            "recall": {c: round(float(cm[i, i] / max(cm[i].sum(), 1)), 4) for i, c in enumerate(rp.CLASSES)},
            "fallen_precision": round(prec, 4), "fallen_recall": round(rec, 4), "confusion": cm.tolist()}


def evaluate(models: dict, hold: dict) -> dict:
    """{"intact"|"dropped": {name: scores}} for the rule and every model, on the same keypoints."""
    out = {}
    for which, key in (("intact", "kp"), ("dropped", "kp_dropped")):
        kp, boxes = hold[key], hold["boxes"]
        row = {"rule": scores(rp.rule_baseline(kp, boxes), hold["y"])}
        x = rp.features(kp, boxes)
        for name, m in models.items():
            row[name] = scores(predict(m, x).argmax(1), hold["y"])
        out[which] = row
    # the oracle: exact keypoints (what the classifier would do with a perfect pose model)
    tk = np.array(hold["truth_kp"], np.float32, copy=True)
    tk[..., 2] = (tk[..., 2] > 0).astype(np.float32)
    out["exact_keypoints"] = {"rule": scores(rp.rule_baseline(tk, hold["boxes"]), hold["y"]),
                              **{n: scores(predict(m, rp.features(tk, hold["boxes"])).argmax(1), hold["y"])
                                 for n, m in models.items()}}
    return out


def _metrics(ev: dict, key: str, cmd: str) -> list[Metric]:
    d, i = ev["dropped"][key], ev["intact"][key]
    ms = [Metric(name="accuracy", value=d["accuracy"], data="synthetic", split=HOLDOUT_SPLIT + "; joints dropped", command=cmd),
          Metric(name="accuracy_intact", value=i["accuracy"], data="synthetic", split=HOLDOUT_SPLIT, command=cmd),
          Metric(name="fallen_precision", value=d["fallen_precision"], data="synthetic", split=HOLDOUT_SPLIT + "; joints dropped", command=cmd),
          Metric(name="fallen_recall", value=d["fallen_recall"], data="synthetic", split=HOLDOUT_SPLIT + "; joints dropped", command=cmd),
          Metric(name="accuracy_rule_baseline", value=ev["dropped"]["rule"]["accuracy"], data="synthetic",
                 split=HOLDOUT_SPLIT + "; joints dropped", command=cmd)]
    return ms


def _card(name: str, path: Path, ev: dict, key: str, res, d: dict, seed: int, smoke: bool, cmd: str, seconds: float,
          teacher: Path | None, extra: str) -> ModelCard:
    v = VARIANTS[name]
    return ModelCard(
        task=TASK, variant=name,
        description=f"Single-frame skeleton posture ({', '.join(rp.CLASSES)}) from 17 keypoints: {v.description}.",
        sha256=sha256_of(path), bytes=path.stat().st_size, precision="fp32", quantize=False,
        inputs=[TensorSpec(name=rp.INPUT_NAME, shape=["batch", rp.N_FEATURES], layout="NC")],
        outputs=[TensorSpec(name=rp.OUTPUT_NAME, shape=["batch", len(rp.CLASSES)], layout="NC")],
        preprocess=Preprocess(notes=(
            "runtime.posture.features(keypoints, boxes): the pose model's (N, 17, 3) keypoints in frame pixels and "
            f"the person boxes; joints below confidence {rp.MIN_CONF} are missing (0, 0, 0); x, y centred on the "
            "mid-hip (else mid-shoulder, else the present joints' mean) and divided by the box's longer side; the "
            "52nd input is log(box w/h). runtime.posture.decode applies the softmax.")),
        decoder=rp.DECODER, classes=list(rp.CLASSES),
        costs=costs_of(path), metrics=_metrics(ev, key, cmd),
        training=Training(
            command=cmd, seed=seed,
            data=[f"sim persons of scenes {', '.join(PD.SCENES)} x TRAIN seeds {PD.TRAIN_SEEDS[0]}-{PD.TRAIN_SEEDS[-1]} "
                  f"and of {', '.join(EXTRA_TRAIN.scenes)} x seeds {EXTRA_TRAIN.seeds[0]}-{EXTRA_TRAIN.seeds[-1]} (the pose "
                  f"student's extra TRAIN seeds), all conditions: {d['n_train']} persons ('falling' left out), each twice: the pose student "
                  f"{POSE_VARIANT}'s keypoints on a jittered-box crop (model sha256 {sha256_of(d['pose_path'])[:16]}...) "
                  "and the exact keypoints with noise and random confidences",
                  "joints dropped afresh per batch: none 30%, whole face 15%, left side 10%, right side 10%, legs 10%, "
                  "a random 10-40% subset 25%"],
            teacher=(f"posture/{TEACHER} ({TEACHER}/model.onnx, sha256 {sha256_of(teacher)[:16]}...), soft targets at "
                     f"T={res.recipe.temperature:g} mixed {res.recipe.kd_alpha:g} with the labels") if teacher is not None else None,
            steps=res.steps, seconds=round(seconds, 1), framework=torch_version()),
        notes=("Scored on the pose student's own keypoints, not the exact ones, beside the torso-angle rule "
               "(runtime.posture.rule_baseline) on the same keypoints in the same run. 'accuracy' drops joints "
               "(per person one of: the face, the left side, the right side, a random 30%); 'accuracy_intact' does "
               "not. Fallen precision/recall: argmax decision, fallen vs the other five. Single frame: walking vs "
               "standing mid-stride is the main confusion. " + extra + " Tiny MLP: stays FP32 (quantize: false)."
               + (" SMOKE RUN: tiny data, few steps; numbers are meaningless." if smoke else "")))


def _join_torchrun() -> None:
    import os
    from datetime import timedelta
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed():
        torch.distributed.init_process_group("gloo", timeout=timedelta(hours=2))


def run(out: Path, variants=ORDER, seed: int = 0, smoke: bool = False, log=print, command: str = "") -> dict:
    """Everything ``build.py distill posture`` does; returns {variant: report}."""
    _join_torchrun()
    if is_distributed() and not is_main_process():
        torch.distributed.barrier()
        return {}
    t_all = time.perf_counter()
    seed_everything(seed, THREADS)
    command = command or f"python build.py distill posture --seed {seed}" + (" --smoke" if smoke else "")
    log(f"posture: variants {', '.join(variants)}{' (smoke)' if smoke else ''}")
    d = load_data(out, smoke, seed, log)
    tr, hold = d["train"], d["holdout"]
    reports, trained = {}, {}
    for name in [v for v in ORDER if v in variants]:
        t0 = time.perf_counter()
        folder = Path(out) / TASK / name
        path = folder / "model.onnx"
        recipe = RECIPES[name]
        if smoke:
            recipe = replace(recipe, steps=SMOKE["steps"], batch=SMOKE["batch"])
        teacher_path, teacher_model = None, None
        if name == STUDENT:
            tp = folder.parent / TEACHER / "model.onnx"
            if TEACHER in trained:
                teacher_model = trained[TEACHER]
            elif tp.is_file():
                teacher_model = _load_onnx_teacher(tp)
            teacher_path = tp if teacher_model is not None and tp.is_file() else None
            if teacher_model is None:
                log(f"  {name}: no teacher at {tp}; training without KD")
        seed_everything(seed, THREADS)
        models = {"kd" if teacher_model is not None else "nokd": build(name)}
        if teacher_model is not None:
            seed_everything(seed, THREADS)
            models["nokd"] = build(name)
        log(f"  {name}: {recipe.steps} steps of {recipe.batch} ({', '.join(models)})")
        res = train(models, tr["kp"], tr["boxes"], tr["y"], recipe, seed, teacher_model, log, name)
        offsets = {}
        for k, r in res.items():          # every twin gets its own offset, chosen on the validation split
            b, vsc = choose_fallen_offset(r.model, d["val"])
            shift_fallen(r.model, b)
            offsets[k] = {"offset": b, "val": vsc}
        ship = "kd" if "kd" in res else "nokd"
        model = res[ship].model
        trained[name] = model
        x = rp.features(hold["kp"], hold["boxes"])
        xt = torch.from_numpy(x[:256] if len(x) >= 4 else np.zeros((4, rp.N_FEATURES), np.float32))
        export_onnx(model, (xt[:4],), path, [rp.INPUT_NAME], [rp.OUTPUT_NAME], check_inputs=(xt,))
        evm = {f"{name}" if k == ship else f"{name}/{k}": r.model for k, r in res.items()}
        if name == STUDENT and TEACHER in trained:
            evm[TEACHER] = trained[TEACHER]
        ev = evaluate(evm, hold)
        extra = ""
        if "nokd" in res and ship == "kd":
            kdv, nov = ev["dropped"][name]["accuracy"], ev["dropped"][f"{name}/nokd"]["accuracy"]
            extra = (f"Distillation, measured on the sim holdout (joints dropped): accuracy {kdv:.4f} with the teacher "
                     f"vs {nov:.4f} without (same initial weights and batches).")
        seconds = time.perf_counter() - t0
        extra += (f" The fallen logit carries {offsets[ship]['offset']:+.2f} (in the exported bias), chosen on the validation "
                  f"split ({VAL_SPLIT}) to balance fallen precision and recall there "
                  f"({offsets[ship]['val']['fallen_precision']:.3f}/{offsets[ship]['val']['fallen_recall']:.3f}); "
                  "the holdout never chose anything.")
        write_card(_card(name, path, ev, name, res[ship], d, seed, smoke, command, seconds, teacher_path, extra), folder)
        report = {"variant": name, "seed": seed, "smoke": smoke, "command": command, "seconds": round(seconds, 1),
                  "pose_model": f"pose/{POSE_VARIANT}", "holdout_counts": d["counts"], "shipped": ship,
                  "fallen_offset": offsets,
                  "scores": ev, "training": {k: {"steps": r.steps, "seconds": round(r.seconds, 1), "history": r.history}
                                             for k, r in res.items()}}
        (folder / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        dr = ev["dropped"]
        log(f"  {name}: holdout accuracy (joints dropped) {dr[name]['accuracy']:.4f} vs rule {dr['rule']['accuracy']:.4f}; "
            f"fallen P/R {dr[name]['fallen_precision']:.3f}/{dr[name]['fallen_recall']:.3f}; wrote {path} ({seconds:.0f} s)")
        reports[name] = report
    if is_distributed():
        torch.distributed.barrier()
    log(f"posture: done in {time.perf_counter() - t_all:.0f} s")
    return reports


class _OnnxTeacher(torch.nn.Module):
    """A committed teacher's ONNX as a torch-callable (logits), for KD without retraining it."""

    def __init__(self, path: Path):
        super().__init__()
        import onnxruntime as ort
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {rp.INPUT_NAME: x.numpy()})[0])


def _load_onnx_teacher(path: Path) -> torch.nn.Module:
    return _OnnxTeacher(path)
