"""Training of a student detector (CenterNet focal loss on a Gaussian heatmap + GIoU on ltrb boxes).

Batches are drawn by step from one seeded generator, identically on every rank; under torchrun
each rank takes its slice ``rank::world`` of the global batch and DDP averages the gradients, so
the global batch, the data order and the augmentations do not depend on the number of processes
(the role of a DistributedSampler, without epochs over a weighted mix).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..common import is_distributed
from .data import FrameSet, augment_params, close_up_zoom, map_boxes, place, targets
from .model import STRIDE, Arch, DWBlock, Student


@dataclass(frozen=True)
class Recipe:
    steps: int = 600
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup: int = 50
    real_fraction: float = 0.5     # share of each batch drawn from real frames (when there are any)
    box_weight: float = 5.0
    close_up: float = 0.0          # share of sim frames zoomed in CLOSE_UP_ZOOM (data.close_up_zoom)


def batch_arrays(frames: FrameSet, idx: list[int], size: int, n_cls: int, seed: int, step: int,
                 train: bool = True, close_up: float = 0.0):
    imgs, heats, masks, boxes, wgts = [], [], [], [], []
    for j, i in enumerate(idx):
        rng = np.random.default_rng([seed, step, j, int(i)])
        p = augment_params(rng, train)
        if train and close_up > 0 and frames.source[i] != "real":
            zoom = close_up_zoom(np.random.default_rng([seed, step, j, int(i), 7]), close_up)
            if zoom is not None:
                p["zoom"] = zoom
        img, m = place(frames.images[i], size, p)
        objs = map_boxes(frames.objects[i], m, size)
        ign = map_boxes(frames.ignore[i], m, size)
        objs = objs[(objs[:, 2] - objs[:, 0] >= 2) & (objs[:, 3] - objs[:, 1] >= 2)]
        h, mk, b, w = targets(objs, ign, size, STRIDE, n_cls, bool(frames.machine_known[i]))
        imgs.append(img[:, :, ::-1].transpose(2, 0, 1))
        heats.append(h)
        masks.append(mk)
        boxes.append(b)
        wgts.append(w)
    x = torch.from_numpy(np.ascontiguousarray(np.stack(imgs))).float().div_(255.0)
    return (x, torch.from_numpy(np.stack(heats)), torch.from_numpy(np.stack(masks)),
            torch.from_numpy(np.stack(boxes)), torch.from_numpy(np.stack(wgts)))


def focal_loss(logits, heat, mask):
    pos = (heat >= 1.0).float()
    logp = F.logsigmoid(logits)
    log1mp = F.logsigmoid(-logits)
    p = logp.exp()
    lpos = -pos * (1 - p) ** 2 * logp
    lneg = -(1 - pos) * (1 - heat) ** 4 * p ** 2 * log1mp
    return ((lpos + lneg) * mask).sum() / pos.sum().clamp(min=1.0)


def decode_boxes(raw: torch.Tensor) -> torch.Tensor:
    """Log ltrb in strides -> xyxy input px, the same arithmetic as the runtime decoder."""
    n, _, h, w = raw.shape
    d = torch.exp(raw.clamp(-6.0, 6.0)) * STRIDE
    cy = (torch.arange(h, dtype=raw.dtype) + 0.5) * STRIDE
    cx = (torch.arange(w, dtype=raw.dtype) + 0.5) * STRIDE
    cy, cx = cy[:, None].expand(h, w), cx[None, :].expand(h, w)
    return torch.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], dim=1)


def giou_loss(pred, target, weight):
    m = weight > 0
    if not m.any():
        return pred.sum() * 0.0
    p = pred.permute(0, 2, 3, 1)[m]
    t = target.permute(0, 2, 3, 1)[m]
    w = weight[m]
    lt = torch.max(p[:, :2], t[:, :2])
    rb = torch.min(p[:, 2:], t[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    ap = (p[:, 2:] - p[:, :2]).clamp(min=0).prod(1)
    at = (t[:, 2:] - t[:, :2]).clamp(min=0).prod(1)
    union = ap + at - inter + 1e-6
    iou = inter / union
    elt = torch.min(p[:, :2], t[:, :2])
    erb = torch.max(p[:, 2:], t[:, 2:])
    enc = (erb - elt).clamp(min=0).prod(1) + 1e-6
    giou = iou - (enc - union) / enc
    return (w * (1 - giou)).sum() / w.sum().clamp(min=1e-6)


def train_step(model, net, opt, batch, lr: float, box_weight: float) -> tuple[float, float]:
    """One optimiser step on ``batch`` (batch_arrays' output) at learning rate ``lr``: the heatmap
    focal loss plus ``box_weight`` x GIoU, gradients clipped at 10. ``net`` is ``model`` or its DDP
    wrapper. Returns (focal, giou) as floats."""
    x, heat, mask, box, wgt = batch
    for g in opt.param_groups:
        g["lr"] = lr
    logits, raw = net(x.contiguous(memory_format=torch.channels_last))
    lc = focal_loss(logits, heat, mask)
    lb = giou_loss(decode_boxes(raw), box, wgt)
    loss = lc + box_weight * lb
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    opt.step()
    return float(lc.detach()), float(lb.detach())


def draw_batches(frames: FrameSet, recipe: Recipe, seed: int):
    """The global batch indices of every step (identical on every rank)."""
    rng = np.random.default_rng([seed, 7])
    real = np.flatnonzero(np.array([s == "real" for s in frames.source]))
    sim = np.flatnonzero(np.array([s != "real" for s in frames.source]))
    n_real = int(round(recipe.batch * recipe.real_fraction)) if len(real) and len(sim) else (
        recipe.batch if len(real) else 0)
    for _ in range(recipe.steps):
        a = rng.choice(real, n_real) if n_real else np.zeros(0, int)
        b = rng.choice(sim, recipe.batch - n_real) if recipe.batch - n_real else np.zeros(0, int)
        yield np.concatenate([a, b]).tolist()


def train(arch: Arch, frames: FrameSet, recipe: Recipe, seed: int, init: dict | None = None,
          log=print) -> tuple[Student, dict]:
    torch.manual_seed(seed)
    model = Student(arch)
    if init is not None:
        missing = set(model.load_state_dict(init, strict=False).missing_keys)
        for name, mod in model.named_modules():   # blocks the base lacks start as identities
            if isinstance(mod, DWBlock) and mod.res and any(k.startswith(name + ".") for k in missing):
                torch.nn.init.zeros_(mod.pw[1].weight)
    model = model.to(memory_format=torch.channels_last)
    net = model
    rank, world = 0, 1
    if is_distributed():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        net = torch.nn.parallel.DistributedDataParallel(model)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)

    def lr_at(step):
        if step < recipe.warmup:
            return recipe.lr * (step + 1) / recipe.warmup
        q = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
        return recipe.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * q)))

    t0 = time.perf_counter()
    hist = []
    net.train()
    for step, idx in enumerate(draw_batches(frames, recipe, seed)):
        mine = idx[rank::world]
        batch = batch_arrays(frames, mine, arch.size, arch.classes, seed, step, close_up=recipe.close_up)
        hist.append(train_step(model, net, opt, batch, lr_at(step), recipe.box_weight))
        if step % 20 == 0 or step == recipe.steps - 1:
            a = np.mean(hist[-20:], axis=0)
            log(f"    step {step:4d}/{recipe.steps}  heat {a[0]:.3f}  giou {a[1]:.3f}  "
                f"lr {lr_at(step):.2e}  {time.perf_counter() - t0:.0f}s")
    model = model.to(memory_format=torch.contiguous_format).eval()
    return model, {"steps": recipe.steps, "seconds": round(time.perf_counter() - t0, 1),
                   "final_loss": [round(float(v), 4) for v in np.mean(hist[-50:], axis=0)]}
