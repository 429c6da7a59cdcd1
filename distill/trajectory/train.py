"""Training and deterministic scoring of the trajectory teacher and students."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from runtime.forecast import decode

from ..common import generator
from .data import Split
from .models import deterministic


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one training run (chosen on the val splits only)."""

    epochs: int = 30
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    flip: bool = True              # mirror the local frame (y -> -y) with probability 1/2
    scale: tuple[float, float] = (1.0, 1.0)  # random speed scaling of the whole window
    kd_alpha: float = 0.0          # weight of the teacher's prediction in the target (0: no KD)
    max_steps: int | None = None   # smoke runs


@dataclass
class Result:
    model: nn.Module
    best_epoch: int
    val_ade: float
    steps: int
    seconds: float
    history: list[float] = field(default_factory=list)


def distance_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Euclidean distance per predicted point (the ADE itself, so the median is learned);
    ``weights`` (P,) weigh the predicted steps (normalised to mean 1)."""
    d = torch.linalg.vector_norm(pred - target, dim=-1)
    if weights is None:
        return d.mean()
    return (d * (weights / weights.mean())[None]).mean()


def step_weights(pred_len: int, first: int, weight: float) -> torch.Tensor:
    """(P,) ``weight`` for the first ``first`` predicted steps, 1 after them."""
    w = torch.ones(pred_len)
    w[:first] = weight
    return w


def model_inputs(model: nn.Module, split: Split) -> list[torch.Tensor]:
    """The tensors a model reads, by its ``inputs`` names (x, nb, soc)."""
    return [torch.from_numpy(getattr(split, name)) for name in getattr(model, "inputs", ("x",))]


def predict_offsets(model: nn.Module, split: Split, batch: int = 4096) -> np.ndarray:
    model.eval()
    ins = model_inputs(model, split)
    out = []
    with torch.no_grad():
        for i in range(0, len(split), batch):
            out.append(deterministic(model(*[t[i:i + batch] for t in ins])).numpy())
    return np.concatenate(out) if out else np.zeros((0,) + split.y.shape[1:], np.float32)


def _flip(name: str, t: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    m = torch.ones(t.shape[-1])
    m[{"x": [1], "nb": [1], "soc": [1, 3]}[name]] = -1.0
    shape = (len(sign),) + (1,) * (t.dim() - 1)
    return torch.where(sign.view(shape) < 0, t * m, t)


def _scale(name: str, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    m = torch.zeros(t.shape[-1])
    m[{"x": [0, 1], "nb": [0, 1], "soc": [0, 1, 2, 3]}[name]] = 1.0
    shape = (len(s),) + (1,) * (t.dim() - 1)
    return t * (1 + (s.view(shape) - 1) * m)


def ade_fde(pred_world: np.ndarray, fut: np.ndarray) -> tuple[float, float]:
    err = np.linalg.norm(pred_world - fut, axis=-1)
    return float(err.mean()), float(err[:, -1].mean())


def score(model: nn.Module, split: Split, steps: int | None = None) -> tuple[float, float]:
    """Deterministic ADE/FDE (m) on a split, decoded through runtime.forecast.decode (over the
    first ``steps`` predicted steps when given)."""
    pred = decode(predict_offsets(model, split), split.frame)
    return ade_fde(pred[:, :steps], split.fut[:, :steps]) if steps else ade_fde(pred, split.fut)


def train(model: nn.Module, train_split: Split, val_split: Split, recipe: Recipe, seed: int,
          kd_targets: np.ndarray | None = None, log=None, weights: torch.Tensor | None = None,
          val_steps: int | None = None) -> Result:
    """Train with AdamW + cosine schedule; keep the epoch with the best val ADE (over the first
    ``val_steps`` predicted steps when given). ``weights`` (P,) weigh the predicted steps in the loss."""
    t0 = time.perf_counter()
    g = generator(seed)
    names = getattr(model, "inputs", ("x",))
    ins = model_inputs(model, train_split)
    y = torch.from_numpy(train_split.y)
    kd = torch.from_numpy(kd_targets) if kd_targets is not None else None
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    n = len(y)
    per_epoch = max(1, n // recipe.batch)
    total = recipe.epochs * per_epoch if recipe.max_steps is None else min(recipe.max_steps, recipe.epochs * per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=total, pct_start=0.1)
    best, best_state, best_epoch, history, step = float("inf"), None, -1, [], 0
    for epoch in range(recipe.epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        for b in range(per_epoch):
            if step >= total:
                break
            idx = perm[b * recipe.batch:(b + 1) * recipe.batch]
            batch = {k: t[idx] for k, t in zip(names, ins)}
            yb = y[idx]
            tb = kd[idx] if kd is not None else None
            if recipe.flip:   # mirror the local frame: every y and vy changes sign
                sign = torch.where(torch.rand(len(idx), generator=g) < 0.5, -1.0, 1.0)
                s2 = torch.stack([torch.ones_like(sign), sign], -1)[:, None, :]
                yb = yb * s2
                tb = tb * s2 if tb is not None else None
                batch = {k: _flip(k, v, sign) for k, v in batch.items()}
            if recipe.scale != (1.0, 1.0):
                lo, hi = recipe.scale
                s = lo + (hi - lo) * torch.rand(len(idx), generator=g)
                yb = yb * s[:, None, None]
                tb = tb * s[:, None, None] if tb is not None else None
                batch = {k: _scale(k, v, s) for k, v in batch.items()}
            pred = model(*batch.values())
            loss = distance_loss(pred, yb, weights)
            if tb is not None and recipe.kd_alpha > 0:
                loss = (1 - recipe.kd_alpha) * loss + recipe.kd_alpha * distance_loss(pred, tb, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        val = score(model, val_split, val_steps)[0]
        history.append(round(val, 5))
        if log:
            log(f"    epoch {epoch + 1:>3}/{recipe.epochs} step {step} loss {loss.item():.4f} val ADE {val:.4f}")
        if val < best:
            best, best_state, best_epoch = val, copy.deepcopy(model.state_dict()), epoch + 1
        if step >= total:
            break
    model.load_state_dict(best_state)
    model.eval()
    return Result(model, best_epoch, best, step, time.perf_counter() - t0, history)
