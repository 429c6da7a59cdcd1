"""Cutting training crops, heatmap targets, and the training loop (GT and/or teacher heatmaps).

Crops are cut once per person from its context patch with a jittered box (the way a detector's
boxes wander: centre shifts and size changes of a few percent) through
:func:`runtime.pose.person_crops`, the runtime's own crop. Mirroring is applied per batch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from runtime import pose as rt

from .data import PersonSet

SIGMA = 1.5                    # Gaussian sigma of the targets, in heatmap cells (stride-4 cells), every size
JITTER = (0.06, 0.06, 0.10)    # centre shift (fraction of w, of h), log-size change (sd)


@dataclass
class Crops:
    """Crops of one PersonSet at one size: uint8 BGR images and keypoints in crop pixels."""

    images: np.ndarray          # (N, H, W, 3) uint8
    keypoints: np.ndarray       # (N, 17, 3) x, y crop px, present (v > 0 and inside the crop) 0/1
    transforms: np.ndarray      # (N, 6) crop -> patch
    size: tuple[int, int]


def jitter_boxes(boxes: np.ndarray, seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    n = len(b)
    cx = cx + rng.normal(0, JITTER[0] * scale, n) * w
    cy = cy + rng.normal(0, JITTER[1] * scale, n) * h
    sw = np.exp(rng.normal(0, JITTER[2] * scale, n))
    sh = np.exp(rng.normal(0, JITTER[2] * scale, n))
    return np.stack([cx - w * sw / 2, cy - h * sh / 2, cx + w * sw / 2, cy + h * sh / 2], axis=1).astype(np.float32)


def cut(ps: PersonSet, size: tuple[int, int], boxes: np.ndarray | None = None) -> Crops:
    """Crops of every person of ``ps`` (with ``boxes`` in patch pixels, default the true ones)."""
    boxes = ps.boxes if boxes is None else boxes
    n = len(ps)
    images = np.empty((n, size[1], size[0], 3), np.uint8)
    tfs = np.zeros((n, 6))
    for i in range(n):
        c, t = rt.person_crops(ps.patches[i], boxes[i:i + 1], size)
        images[i], tfs[i] = c[0], t[0]
    kp = rt.to_crop(ps.keypoints, tfs) if n else np.zeros((0, 17, 3), np.float32)
    inside = (kp[..., 0] >= 0) & (kp[..., 0] < size[0]) & (kp[..., 1] >= 0) & (kp[..., 1] < size[1])
    kp[..., 2] = ((ps.keypoints[..., 2] > 0) & inside).astype(np.float32)
    return Crops(images, kp, tfs, size)


def sigma_for(size: tuple[int, int]) -> float:
    return SIGMA


def targets(kp: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return rt.gaussian_heatmaps(kp, kp[..., 2] > 0, size, sigma_for(size))


def to_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rt.preprocess(images))


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, batch: int = 128) -> np.ndarray:
    """(N, 17, h, w) float32 heatmaps."""
    model.eval()
    outs = [model(to_input(images[i:i + batch])).numpy() for i in range(0, len(images), batch)]
    return np.concatenate(outs) if outs else np.zeros((0, rt.N_JOINTS, 1, 1), np.float32)


@dataclass
class Recipe:
    steps: int = 1500
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    kd_alpha: float = 0.0          # weight of the teacher's heatmaps (1 - alpha: ground truth)
    log_every: int = 100
    lying_weight: float = 1.0      # how much more often fallen/falling persons are drawn into a batch
    more_lying: bool = False       # train on the extra re-cast sim seeds too (pipeline.EXTRA_TRAIN)


@dataclass
class Result:
    model: torch.nn.Module
    steps: int
    seconds: float
    history: list = field(default_factory=list)


def train(model: torch.nn.Module, crops: Crops, recipe: Recipe, seed: int, soft: np.ndarray | None = None,
          gt_mask: np.ndarray | None = None, log=print, name: str = "", lying: np.ndarray | None = None) -> Result:
    """Heatmap MSE against the Gaussian targets (where ``gt_mask``; default all rows) mixed with
    the teacher's heatmaps ``soft`` (resampled to this model's grid) by ``recipe.kd_alpha``;
    rows without ground truth (real crops) learn from the teacher alone. Random mirroring.
    Rows where ``lying`` (fallen or falling persons) are drawn ``recipe.lying_weight`` times as
    often as the others."""
    rng = np.random.default_rng(seed + 17)
    n = len(crops.images)
    gt_mask = np.ones(n, bool) if gt_mask is None else gt_mask
    p = None
    if lying is not None and recipe.lying_weight != 1.0:
        w = np.where(np.asarray(lying, bool), recipe.lying_weight, 1.0)
        p = w / w.sum()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps, pct_start=0.15)
    hw = (crops.size[1] // rt.STRIDE, crops.size[0] // rt.STRIDE)
    t0, hist, run = time.perf_counter(), [], 0.0
    model.train()
    for step in range(1, recipe.steps + 1):
        idx = rng.integers(0, n, recipe.batch) if p is None else rng.choice(n, recipe.batch, p=p)
        flip = rng.random(recipe.batch) < 0.5
        imgs = crops.images[idx].copy()
        imgs[flip] = imgs[flip][:, :, ::-1]
        kp = crops.keypoints[idx].copy()
        kp[flip, :, 0] = crops.size[0] - kp[flip, :, 0]
        kp[flip] = kp[flip][:, list(rt.FLIP)]
        tgt = torch.from_numpy(targets(kp, crops.size))
        x = to_input(imgs)
        out = model(x)
        g = torch.from_numpy(gt_mask[idx].astype(np.float32)).view(-1, 1, 1, 1)
        per = (out - tgt).pow(2)
        if soft is not None:
            s = soft[idx].astype(np.float32)
            s[flip] = rt.flip_heatmaps(s[flip])
            st = torch.from_numpy(s)
            if st.shape[-2:] != hw:
                st = F.interpolate(st, size=hw, mode="bilinear", align_corners=False)
            a = recipe.kd_alpha
            w_gt = g * (1.0 - a)
            w_kd = g * a + (1.0 - g)
            per = w_gt * per + w_kd * (out - st).pow(2)
        else:
            per = g * per
        loss = per.mean() * 1000.0
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        lv = float(loss.detach())
        run = 0.9 * run + 0.1 * lv if step > 1 else lv
        if step % recipe.log_every == 0 or step == recipe.steps:
            el = time.perf_counter() - t0
            hist.append({"step": step, "loss": round(run, 4), "seconds": round(el, 1)})
            log(f"    {name} step {step}/{recipe.steps} loss {run:.4f} ({el:.0f} s)")
    model.eval()
    return Result(model, recipe.steps, time.perf_counter() - t0, hist)
