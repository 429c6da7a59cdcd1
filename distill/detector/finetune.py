"""Fine-tuning the shipped student on its training mix + teacher-labelled hard samples (the VMS
teacher loop's training step; ``vms.teacher`` runs the round, gates and publishes).

Starts from the shipped variant's torch checkpoint, which ``build.py distill detector`` saves in
the detector cache (``<cache>/detector/<variant>-seed<seed>.pt``); it is used only after its
export is checked to reproduce the shipped ONNX, so the round starts from exactly what devices
run. Each batch mixes the original real frames, sim frames and hard samples in fixed shares,
drawn by step from one seeded generator (the same scheme as ``train.py``). Losses, targets,
augmentation and export are ``train.py``'s and ``export.py``'s.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import data as D
from .export import INPUT, export
from .model import Student
from .train import batch_arrays, train_step
from .variants import VARIANTS


@dataclass(frozen=True)
class FinetuneRecipe:
    steps: int = 150
    batch: int = 16
    lr: float = 1e-4
    weight_decay: float = 5e-4
    warmup: int = 10
    hard_fraction: float = 0.25     # share of each batch drawn from the hard samples (part of the real share)
    real_fraction: float = 0.5      # share of real frames, hard samples included (as train.Recipe; rest: sim)
    box_weight: float = 5.0


SMOKE_RECIPE = FinetuneRecipe(steps=3, batch=4)


class CheckpointMismatch(RuntimeError):
    """The cached checkpoint does not export to the shipped ONNX (or is missing)."""


def checkpoint_path(variant: str, seed: int = 0) -> Path:
    return D.cache_root() / f"{variant}-seed{seed}.pt"


def regenerate_command(variant: str, seed: int = 0) -> str:
    return f"python build.py distill detector --variant {variant} --seed {seed} --out <scratch dir>"


def load_current(variant: str, shipped_onnx: Path, seed: int = 0, scratch: Path | None = None,
                 check: bool = True) -> Student:
    """The shipped student as a torch model, from its cached checkpoint, checked (when ``check``)
    to export to outputs equal to ``shipped_onnx`` within 1e-4."""
    path = checkpoint_path(variant, seed)
    how = (f"the training command saves it: `{regenerate_command(variant, seed)}` (writes the checkpoint "
           f"to {path}; the scratch zoo can be deleted)")
    if not path.exists():
        raise CheckpointMismatch(f"no checkpoint of {variant} at {path}; {how}")
    model = Student(VARIANTS[variant].arch)
    model.load_state_dict(torch.load(path, weights_only=True))
    model.eval()
    if check:
        from compiler.quantize import session
        tmp = Path(scratch or D.cache_root()) / f"{variant}-checkpoint-check.onnx"
        export(model, tmp, seed)
        size = model.arch.size
        x = np.random.default_rng(seed).random((2, 3, size, size), dtype=np.float32)
        a = session(tmp, threads=1).run(None, {INPUT: x})
        b = session(shipped_onnx, threads=1).run(None, {INPUT: x})
        tmp.unlink(missing_ok=True)
        err = max(float(np.abs(p - q).max()) for p, q in zip(a, b))
        if err > 1e-4:
            raise CheckpointMismatch(f"{path} exports to outputs {err:.3g} away from {shipped_onnx}: the "
                                     f"cache is stale; {how}")
    return model


def draw_batches(pools: dict[str, np.ndarray], shares: dict[str, int], steps: int, seed: int):
    rng = np.random.default_rng([seed, 11])
    for _ in range(steps):
        idx = []
        for name, n in shares.items():
            if n and len(pools[name]):
                idx += rng.choice(pools[name], n).tolist()
        yield idx


def shares_of(frames: D.FrameSet, recipe: FinetuneRecipe) -> tuple[dict, dict]:
    """Pools of frame indices and how many of each a batch takes: ``real_fraction`` of the batch is
    real footage (as in the original training), of which ``hard_fraction`` (of the batch) are hard
    samples; the rest is sim. Without hard samples the real share goes to the original real frames
    (the control run), without sim frames everything is real."""
    src = np.array(frames.source)
    pools = {"hard": np.flatnonzero(src == "hard"), "real": np.flatnonzero(src == "real"),
             "sim": np.flatnonzero((src != "hard") & (src != "real"))}
    n_real_all = int(round(recipe.batch * recipe.real_fraction)) if len(pools["sim"]) else recipe.batch
    n_hard = min(int(round(recipe.batch * recipe.hard_fraction)), n_real_all) if len(pools["hard"]) else 0
    if not len(pools["real"]):
        n_hard = n_real_all if len(pools["hard"]) else 0
    n_real = n_real_all - n_hard if len(pools["real"]) else 0
    n_sim = recipe.batch - n_hard - n_real if len(pools["sim"]) else 0
    return pools, {"hard": n_hard, "real": n_real, "sim": n_sim}


def finetune(model: Student, frames: D.FrameSet, recipe: FinetuneRecipe, seed: int,
             log=print) -> tuple[Student, dict]:
    """Fine-tune ``model`` (a copy is trained) on ``frames`` (sources 'hard', 'real', 'sim')."""
    import copy
    torch.manual_seed(seed)
    model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    arch = model.arch
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)

    def lr_at(step):
        if step < recipe.warmup:
            return recipe.lr * (step + 1) / recipe.warmup
        q = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
        return recipe.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * q)))

    pools, shares = shares_of(frames, recipe)
    t0 = time.perf_counter()
    hist = []
    model.train()
    for step, idx in enumerate(draw_batches(pools, shares, recipe.steps, seed)):
        batch = batch_arrays(frames, idx, arch.size, arch.classes, seed + 101, step)
        hist.append(train_step(model, model, opt, batch, lr_at(step), recipe.box_weight))
        if step % 25 == 0 or step == recipe.steps - 1:
            a = np.mean(hist[-25:], axis=0)
            log(f"    step {step:4d}/{recipe.steps}  heat {a[0]:.3f}  giou {a[1]:.3f}  lr {lr_at(step):.2e}  "
                f"{time.perf_counter() - t0:.0f}s")
    model = model.to(memory_format=torch.contiguous_format).eval()
    return model, {"steps": recipe.steps, "seconds": round(time.perf_counter() - t0, 1),
                   "batch_shares": shares, "pool_sizes": {k: int(len(v)) for k, v in pools.items()},
                   "final_loss": [round(float(v), 4) for v in np.mean(hist[-25:], axis=0)]}
