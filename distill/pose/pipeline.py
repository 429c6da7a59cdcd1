"""The whole pose run: data, the teacher, the students distilled from it (and, measured beside the
smallest, the same student without the teacher), ONNX export and checks, PCK per condition on
the sim holdout, model cards.

    python build.py distill pose [--variant pose-t96|pose-m96|pose-s64] [--smoke] [--seed 0] [--out models/]

Students learn from the teacher's heatmaps (KD) mixed with the sim ground truth, and from the
teacher alone on the real TRAIN person crops where the teacher is confident (no labels needed).
Only rank 0 works under torchrun; other ranks wait at a barrier, so a torchrun launch writes the
same bytes.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from compiler.modelcard import Metric, ModelCard, Preprocess, TensorSpec, Training, costs_of, sha256_of, write_card
from runtime import pose as rt

from ..common import export_onnx, is_distributed, is_main_process, seed_everything, torch_version
from . import data as D
from .evaluate import OnnxPose, pck_report
from .model import STUDENTS, TEACHER, VARIANTS, build
from .train import Recipe, cut, jitter_boxes, predict, train

TASK = "pose"
ORDER = (TEACHER, *STUDENTS)
NOKD_TWIN = "pose-s64"                 # trained twice, with and without the teacher, on the same batches
THREADS = 1                            # under CPU contention one thread is faster than two
REAL_CONF_QUANTILE = 0.25              # a real crop teaches when the teacher's median joint confidence on it is at
                                       # least this quantile of the same on its sim training crops
# pose-s64 feeds the posture classifier on the device: it also learns from EXTRA_TRAIN and draws
# fallen/falling persons LYING_WEIGHT times as often (lying people were 4% of the crops and its
# keypoints on them scored PCK 0.27, which held fallen recall at ~0.85); 8x beat 4x on the posture
# validation split's fallen P/R (0.911/0.917 vs 0.906/0.902)
LYING_WEIGHT = 8.0
RECIPES = {"pose-t96": Recipe(steps=800, batch=24, lr=3e-3),
           "pose-m96": Recipe(steps=1800, batch=24, lr=3e-3, kd_alpha=0.5),
           "pose-s64": Recipe(steps=6000, batch=24, lr=3e-3, kd_alpha=0.5, lying_weight=LYING_WEIGHT, more_lying=True)}
# more falls, bends and crouches: the re-cast scenes on TRAIN-only seeds 20-79 (never holdout seeds)
EXTRA_TRAIN = D.SimRecipe(tuple(range(20, 80)), scenes=("fall-many", "work-many"))
LYING = ("fallen", "falling")
SMOKE = dict(train=D.SimRecipe(seeds=(0,), scenes=("fall-incident",), frames=(50,)),
             extra=D.SimRecipe(seeds=(20,), scenes=("fall-many",), frames=(80,)),
             holdout=D.SimRecipe(seeds=(1000,), scenes=("fall-incident",), frames=(60,), min_size=D.MIN_SIZE_EVAL),
             val=D.SimRecipe(seeds=(900,), scenes=("fall-incident",), frames=(90,), min_size=D.MIN_SIZE_EVAL),
             real_limit=2, steps=3, batch=4)
HOLDOUT_JITTER_SEED = 4242
# the validation split (seeds neither trained on nor held out): it chooses between the KD student and
# its no-KD twin here, and the posture models' fallen offset (distill/posture/pipeline.py)
VAL = D.SimRecipe(tuple(range(900, 930)), frames=(20, 35, 55, 70, 90, 105), min_size=D.MIN_SIZE_EVAL)
VAL_JITTER_SEED = 4343
HOLDOUT_SPLIT = (f"sim holdout: seeds {D.HOLDOUT_SEEDS[0]}-{D.HOLDOUT_SEEDS[-1]} (TRAIN {D.TRAIN_SEEDS[0]}-{D.TRAIN_SEEDS[-1]}) "
                 f"x scenes {', '.join(D.SCENES)}, every condition once per scene, frames {D.HOLDOUT_FRAMES}, persons "
                 f">= {D.MIN_SIZE_EVAL} px, GT boxes jittered like a detector's")


def load_data(smoke: bool, log, more_lying: bool = False, val: bool = False) -> dict:
    t0 = time.perf_counter()
    tr = SMOKE["train"] if smoke else D.SimRecipe(D.TRAIN_SEEDS)
    ho = SMOKE["holdout"] if smoke else D.SimRecipe(D.HOLDOUT_SEEDS, frames=D.HOLDOUT_FRAMES, min_size=D.MIN_SIZE_EVAL)
    sim = D.sim_set(tr, workers=1 if smoke else 2, log=log)
    holdout = D.sim_set(ho, workers=1 if smoke else 2, log=log)
    real = D.real_train_set(SMOKE["real_limit"] if smoke else None, log=log)
    extra = D.sim_set(SMOKE["extra"] if smoke else EXTRA_TRAIN, workers=1 if smoke else 2, log=log) if more_lying else None
    log(f"  data: {len(sim)} sim train persons" + (f" (+ {len(extra)} of the extra seeds)" if extra is not None else "")
        + f", {len(real)} real TRAIN crops, {len(holdout)} sim holdout persons ({time.perf_counter() - t0:.0f} s)")
    d = {"sim": sim, "real": real, "holdout": holdout,
         "sim_boxes": jitter_boxes(sim.boxes, 11), "real_boxes": jitter_boxes(real.boxes, 12, 0.5),
         "holdout_boxes": jitter_boxes(holdout.boxes, HOLDOUT_JITTER_SEED, 0.5)}
    if extra is not None:
        d.update(extra=extra, extra_boxes=jitter_boxes(extra.boxes, 13))
    if val:
        vs = D.sim_set(SMOKE["val"] if smoke else VAL, workers=1 if smoke else 2, log=log)
        d.update(val=vs, val_boxes=jitter_boxes(vs.boxes, VAL_JITTER_SEED, 0.5))
    return d


def _concat(a, b):
    return type(a)(np.concatenate([a.images, b.images]), np.concatenate([a.keypoints, b.keypoints]),
                   np.concatenate([a.transforms, b.transforms]), a.size)


class _CropCache:
    """Crops per size, cut once."""

    def __init__(self, d: dict):
        self.d, self.cache = d, {}

    def __call__(self, which: str, size: tuple[int, int]):
        key = (which, size)
        if key not in self.cache:
            self.cache[key] = cut(self.d[which], size, self.d[f"{which}_boxes"])
        return self.cache[key]


def evaluate(heatmaps: np.ndarray, crops, holdout: D.PersonSet) -> dict:
    pred = rt.decode(heatmaps, crops.transforms)
    return pck_report(pred, holdout.keypoints, holdout.boxes, holdout.meta["condition"])


def _metrics(rep: dict, cmd: str) -> list[Metric]:
    ms = [Metric(name="PCK@0.2", value=rep["pck"]["all"], data="synthetic", split=HOLDOUT_SPLIT, command=cmd)]
    for c, v in rep["pck"].items():
        if c != "all":
            ms.append(Metric(name=f"PCK@0.2_{c}", value=v, data="synthetic", split=HOLDOUT_SPLIT, command=cmd))
    return ms


def _card(name: str, path: Path, rep: dict, res, d: dict, seed: int, smoke: bool, cmd: str, seconds: float,
          teacher: Path | None, n_real: int, extra: str) -> ModelCard:
    v = VARIANTS[name]
    W, H = v.size
    data = [f"sim person crops with exact keypoints: scenes {', '.join(D.SCENES)} (fall-many / work-many re-cast "
            f"fall-incident / ppe-mix with more falls and held poses) x TRAIN seeds {D.TRAIN_SEEDS[0]}-{D.TRAIN_SEEDS[-1]}, "
            f"conditions {', '.join(D.CONDITIONS)} cycled per source, {len(d['sim'])} persons, GT boxes jittered like a "
            "detector's, mirrored"]
    if res.recipe.more_lying:
        e = EXTRA_TRAIN
        data.append(f"more falls, bends and crouches: scenes {', '.join(e.scenes)} x TRAIN-only seeds {e.seeds[0]}-"
                    f"{e.seeds[-1]}, {len(d['extra'])} persons, the same conditions and jitter")
    if res.recipe.lying_weight != 1.0:
        data.append(f"fallen and falling persons drawn {res.recipe.lying_weight:g}x as often as the others")
    if teacher is not None:
        data.append(f"real person crops from the TRAIN footage (SSDLite teacher boxes; people-detection, store-aisle, "
                    f"person-bicycle-car GIFs, first 70% of the one-by-one mp4): {n_real} of {len(d['real'])} where the "
                    f"pose teacher's median joint confidence >= {d.get('real_min_conf', 0):.3f} (the {REAL_CONF_QUANTILE:g} "
                    "quantile of the same on its sim crops), learnt from the teacher's heatmaps only (no labels); "
                    "Intel sample-videos, CC BY 4.0")
    return ModelCard(
        task=TASK, variant=name,
        description=f"Top-down 17-keypoint COCO pose on person crops: {v.description}.",
        sha256=sha256_of(path), bytes=path.stat().st_size, precision="fp32", quantize=True,
        inputs=[TensorSpec(name=rt.INPUT_NAME, shape=["batch", 3, H, W], layout="NCHW")],
        outputs=[TensorSpec(name=rt.OUTPUT_NAME, shape=["batch", rt.N_JOINTS, H // rt.STRIDE, W // rt.STRIDE], layout="NCHW")],
        preprocess=Preprocess(color="rgb", resize="letterbox", crop="person", scale=1 / 255, notes=(
            f"One crop per tracked person: runtime.pose.person_crops(frame, boxes, size=({W}, {H})) cuts the PPE "
            "classifier's crop (the box grown by 0.10 of its width and 0.05 of its height per side, clipped, "
            "letterboxed centred on grey 114) and returns the crop -> frame transforms; runtime.pose.preprocess makes "
            f"RGB/255 NCHW. Outputs are heatmaps at stride {rt.STRIDE}; runtime.pose.decode gives (N, 17, 3) x, y in "
            "frame pixels and a confidence (the heatmap peak, clipped to [0, 1]).")),
        decoder=rt.DECODER, classes=list(rt.KEYPOINTS),
        costs=costs_of(path), metrics=_metrics(rep, cmd),
        training=Training(
            command=cmd, seed=seed, data=data,
            teacher=(f"pose/{TEACHER} ({TEACHER}/model.onnx, sha256 {sha256_of(teacher)[:16]}...), heatmaps mixed "
                     f"{res.recipe.kd_alpha:g} with the Gaussian targets") if teacher is not None else None,
            steps=res.steps, seconds=round(seconds, 1), framework=torch_version()),
        notes=("PCK@0.2: a joint is correct within 0.2 of the person's torso diameter (the larger shoulder-to-opposite-"
               "hip distance) of the exact sim keypoint; every in-frame joint is scored, occluded ones included. "
               + extra + " Ships FP32 here; the image builder quantizes to INT8."
               + (" SMOKE RUN: tiny data, few steps; numbers are meaningless." if smoke else "")))


def _join_torchrun() -> None:
    import os
    from datetime import timedelta
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed():
        torch.distributed.init_process_group("gloo", timeout=timedelta(hours=2))


def _export(model, v, path: Path, hold_crops) -> None:
    W, H = v.size
    x = torch.from_numpy(rt.preprocess(hold_crops.images[:4])) if len(hold_crops.images) >= 4 else torch.rand(4, 3, H, W)
    export_onnx(model, (x,), path, [rt.INPUT_NAME], [rt.OUTPUT_NAME], rtol=1e-3, atol=1e-4)


def run(out: Path, variants=ORDER, seed: int = 0, smoke: bool = False, log=print, command: str = "",
        kd_baseline: bool = True) -> dict:
    """Everything ``build.py distill pose`` does; returns {variant: report}."""
    _join_torchrun()
    if is_distributed() and not is_main_process():
        torch.distributed.barrier()
        return {}
    t_all = time.perf_counter()
    seed_everything(seed, THREADS)
    command = command or f"python build.py distill pose --seed {seed}" + (" --smoke" if smoke else "")
    log(f"pose: variants {', '.join(variants)}{' (smoke)' if smoke else ''}")
    d = load_data(smoke, log, more_lying=any(RECIPES[v].more_lying for v in variants if v in RECIPES),
                  val=kd_baseline and NOKD_TWIN in variants)
    crops = _CropCache(d)
    reports = {}
    for name in [v for v in ORDER if v in variants]:
        t0 = time.perf_counter()
        v = VARIANTS[name]
        folder = Path(out) / TASK / name
        path = folder / "model.onnx"
        recipe = RECIPES[name]
        if smoke:
            recipe = replace(recipe, steps=SMOKE["steps"], batch=SMOKE["batch"], log_every=1)
        sim_c = crops("sim", v.size)
        postures = d["sim"].meta["posture"]
        if recipe.more_lying:
            sim_c = _concat(sim_c, crops("extra", v.size))
            postures = np.concatenate([postures, d["extra"].meta["posture"]])
        lying = np.isin(postures, LYING)
        hold_c = crops("holdout", v.size)
        teacher = None
        soft, gt_mask, train_c, n_real = None, None, sim_c, 0
        if name != TEACHER:
            tp = Path(out) / TASK / TEACHER / "model.onnx"
            teacher = tp if tp.is_file() else None
            if teacher is None:
                log(f"  {name}: no teacher at {tp}; training without KD")
        if teacher is not None:
            if "soft" not in d:                # once per run, shared by the students
                tmodel = OnnxPose(teacher, threads=THREADS)
                log(f"  teacher heatmaps on {len(d['sim'])} sim + {len(d['real'])} real crops")
                d["soft"] = (tmodel.heatmaps(crops("sim", tmodel.size).images).astype(np.float16),
                             tmodel.heatmaps(crops("real", tmodel.size).images).astype(np.float16))
            s_sim, s_real = d["soft"]
            if recipe.more_lying:
                if "soft_extra" not in d:
                    log(f"  teacher heatmaps on {len(d['extra'])} extra sim crops")
                    d["soft_extra"] = OnnxPose(teacher, threads=THREADS).heatmaps(
                        crops("extra", VARIANTS[TEACHER].size).images).astype(np.float16)
                s_sim = np.concatenate([s_sim, d["soft_extra"]])
            conf = rt.decode_crop(s_real.astype(np.float32))[..., 2]
            sim_conf = np.median(rt.decode_crop(s_sim[:4000].astype(np.float32))[..., 2], axis=1)
            d["real_min_conf"] = float(np.quantile(sim_conf, REAL_CONF_QUANTILE)) if len(sim_conf) else 1.0
            keep = np.median(conf, axis=1) >= d["real_min_conf"] if len(conf) else np.zeros(0, bool)
            n_real = int(keep.sum())
            real_c = crops("real", v.size)
            train_c = _concat(sim_c, type(sim_c)(real_c.images[keep], real_c.keypoints[keep], real_c.transforms[keep], v.size))
            soft = np.concatenate([s_sim, s_real[keep]])
            gt_mask = np.r_[np.ones(len(sim_c.images), bool), np.zeros(n_real, bool)]
            log(f"  {name}: {n_real} confident real crops join the sim crops")
        runs = {}
        seed_everything(seed, THREADS)
        runs["kd" if teacher is not None else "nokd"] = build(name)
        if teacher is not None and name == NOKD_TWIN and kd_baseline:
            seed_everything(seed, THREADS)
            runs["nokd"] = build(name)         # the same initial weights
        results = {}
        for k, model in runs.items():
            r = recipe if k == "kd" else replace(recipe, kd_alpha=0.0)
            log(f"  {name} ({k}): {r.steps} steps of {r.batch} on {len(train_c.images) if k == 'kd' else len(sim_c.images)} crops")
            if k == "kd":
                res = train(model, train_c, r, seed, soft, gt_mask, log, f"{name}/{k}",
                            lying=np.r_[lying, np.zeros(len(train_c.images) - len(lying), bool)])
            else:
                res = train(model, sim_c, r, seed, None, None, log, f"{name}/{k}", lying=lying)
            res.recipe = r
            results[k] = res
        extra, kd_rows, val_rows = "", {}, {}
        if "nokd" in results and "kd" in results:
            val_c = crops("val", v.size)
            for k in ("kd", "nokd"):
                kd_rows[k] = evaluate(predict(results[k].model, hold_c.images), hold_c, d["holdout"])["pck"]
                val_rows[k] = evaluate(predict(results[k].model, val_c.images), val_c, d["val"])["pck"]["all"]
        # ship the student the teacher made better; where it did not (measured on the validation split,
        # a two-way choice), ship the twin trained without it and say so
        ship = "kd" if "kd" in results else "nokd"
        if val_rows and val_rows["nokd"] > val_rows["kd"]:
            ship = "nokd"
        if kd_rows:
            extra = (f"Distillation, measured on the sim holdout: PCK@0.2 {kd_rows['kd']['all']:.4f} with the teacher vs "
                     f"{kd_rows['nokd']['all']:.4f} without (same initial weights and batches); on the validation split "
                     f"(seeds {VAL.seeds[0]}-{VAL.seeds[-1]}) {val_rows['kd']:.4f} vs {val_rows['nokd']:.4f}, which chose "
                     "between the two; shipped: "
                     + ("with the teacher." if ship == "kd" else "WITHOUT the teacher, which made this student worse "
                        f"(the teacher, trained {RECIPES[TEACHER].steps} steps, is weaker than this student trained {recipe.steps})."))
        model = results[ship].model.eval()
        _export(model, v, path, hold_c)
        onnx_model = OnnxPose(path, threads=THREADS)
        hm = onnx_model.heatmaps(hold_c.images)
        rep = evaluate(hm, hold_c, d["holdout"])
        torch_hm = predict(model, hold_c.images[:64])
        if len(torch_hm) and not np.allclose(hm[:64], torch_hm, atol=1e-3):
            raise RuntimeError(f"{path}: onnxruntime heatmaps differ from torch by {np.abs(hm[:64] - torch_hm).max():.3g}")
        if ship == "nokd":
            teacher, n_real = None, 0
        seconds = time.perf_counter() - t0
        card = _card(name, path, rep, results[ship], d, seed, smoke, command, seconds, teacher, n_real, extra)
        write_card(card, folder)
        report = {"variant": name, "seed": seed, "smoke": smoke, "command": command, "seconds": round(seconds, 1),
                  "size": list(v.size), "sim_holdout": rep, "shipped": ship, "real_crops_used": n_real, "real_min_conf": d.get("real_min_conf"),
                  "training": {k: {"steps": r.steps, "seconds": round(r.seconds, 1), "history": r.history,
                                   "kd_alpha": r.recipe.kd_alpha} for k, r in results.items()},
                  "kd_vs_nokd": kd_rows, "kd_vs_nokd_validation": val_rows}
        (folder / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        log(f"  {name}: sim holdout PCK@0.2 {rep['pck']['all']:.4f}; wrote {path} ({seconds:.0f} s)")
        reports[name] = report
    if is_distributed():
        torch.distributed.barrier()
    log(f"pose: done in {time.perf_counter() - t_all:.0f} s")
    return reports
