"""Training the posture MLPs: cross-entropy on the labels, optionally mixed with the teacher's
softened probabilities (KD, temperature ``T``), with joints dropped afresh in every batch."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from runtime import posture as rp

from .data import drop, random_modes


@dataclass
class Recipe:
    steps: int = 3000
    batch: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    kd_alpha: float = 0.0
    temperature: float = 2.0
    label_smoothing: float = 0.05


@dataclass
class Result:
    model: torch.nn.Module
    steps: int
    seconds: float
    history: list = field(default_factory=list)
    recipe: Recipe | None = None


def class_weights(y: np.ndarray) -> torch.Tensor:
    """Inverse square-root frequency, mean 1: rare postures (fallen) count more than walking."""
    cnt = np.bincount(y, minlength=len(rp.CLASSES)).astype(np.float64)
    w = 1.0 / np.sqrt(np.maximum(cnt, 1.0))
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def train(models: dict, kp: np.ndarray, boxes: np.ndarray, y: np.ndarray, recipe: Recipe, seed: int,
          teacher: torch.nn.Module | None = None, log=print, name: str = "") -> dict:
    """Train every model in ``models`` on the same batches (same drops); those keyed "kd" also
    learn from ``teacher``. Returns {key: Result}."""
    rng = np.random.default_rng(seed + 29)
    n = len(kp)
    cw = class_weights(y)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay) for k, m in models.items()}
    scheds = {k: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=recipe.lr, total_steps=recipe.steps, pct_start=0.1)
              for k, o in opts.items()}
    t0 = time.perf_counter()
    hist = {k: [] for k in models}
    for m in models.values():
        m.train()
    for step in range(1, recipe.steps + 1):
        idx = rng.integers(0, n, recipe.batch)
        k_ = drop(kp[idx], random_modes(recipe.batch, rng), rng)
        x = torch.from_numpy(rp.features(k_, boxes[idx]))
        t = torch.from_numpy(y[idx])
        soft = None
        if teacher is not None and "kd" in models:
            with torch.no_grad():
                soft = F.softmax(teacher(x) / recipe.temperature, dim=1)
        for k, m in models.items():
            logits = m(x)
            loss = F.cross_entropy(logits, t, weight=cw, label_smoothing=recipe.label_smoothing)
            if k == "kd" and soft is not None:
                kd = F.kl_div(F.log_softmax(logits / recipe.temperature, dim=1), soft, reduction="batchmean")
                loss = (1 - recipe.kd_alpha) * loss + recipe.kd_alpha * recipe.temperature ** 2 * kd
            opts[k].zero_grad(set_to_none=True)
            loss.backward()
            opts[k].step()
            scheds[k].step()
            if step % 500 == 0 or step == recipe.steps:
                hist[k].append({"step": step, "loss": round(float(loss.detach()), 4)})
        if step % 1000 == 0 or step == recipe.steps:
            log(f"    {name} step {step}/{recipe.steps} ({time.perf_counter() - t0:.0f} s)")
    secs = time.perf_counter() - t0
    out = {}
    for k, m in models.items():
        m.eval()
        out[k] = Result(m, recipe.steps, secs, hist[k], recipe)
    return out


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    return rp.decode(model(torch.from_numpy(x)).numpy())
