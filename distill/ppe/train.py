"""Augmented person crops and the training loop (BCE on known items, optional soft KD targets).

A training crop goes through the runtime's own path: jitter the box inside its context patch
(small shift and scale noise, or -- for a ``Recipe.detector_offsets`` share of the sim boxes -- an
offset drawn from those measured between detectors' and true boxes; real boxes, already a
detector's, keep the small noise; at random a cut-off bottom or side), cut it with
:func:`runtime.ppe.person_crops`, then photometric noise on the uint8 crop (light, colour balance,
blur, sensor noise, JPEG, low resolution), then :func:`runtime.ppe.preprocess`. Real crops (all
negatives) additionally get, at random, a painted hi-vis vest and/or hard hat so that the real
domain has positives too (labels follow the paint); a painted *sleeved* orange/yellow shirt
stays a vest negative, like sim's lookalike clothes.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import nn

from runtime import ppe as rt

from .data import CropSet

HIVIS_BGR = ((40, 250, 205), (20, 110, 255), (30, 235, 190), (10, 140, 250))   # lime-yellow, orange
HELMET_BGR = ((20, 215, 245), (10, 120, 245), (236, 238, 236), (40, 40, 205), (180, 90, 20))


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one run."""

    steps: int = 1500
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    real_fraction: float = 0.2     # share of real (negative) crops in a batch
    paint: float = 0.5             # chance a real crop gets painted PPE / a lookalike shirt
    kd_alpha: float = 0.0          # weight of the teacher's soft target (0: no KD)
    eval_every: int = 250
    ema: float = 0.0               # decay of an exponential moving average of the weights, scored and kept (0: off)
    detector_offsets: float = 0.0  # share of sim boxes moved by a measured detector offset (distill/ppe/box_offsets.json)


@dataclass
class Result:
    model: nn.Module
    steps: int
    seconds: float
    best_step: int
    val_score: float
    history: list = field(default_factory=list)


# ----------------------------------------------------------------------------- augmentation

def jitter_box(box: np.ndarray, rng: np.random.Generator, offsets: np.ndarray | None = None) -> np.ndarray:
    """A detector-like box around ``box``. With ``offsets`` ((K, 4) dx, dy, log w, log h as
    :mod:`distill.ppe.boxgeometry` measures them), one measured detector offset is drawn, so a
    crop cut from a true box wanders the way the runtime's detector boxes do; without, small
    Gaussian noise (for boxes that already are a detector's, like the real crops). Then, at
    random, a cut-off bottom or side."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if offsets is not None and len(offsets):
        dx, dy, lw, lh = offsets[rng.integers(len(offsets))]
    else:
        dx, dy, lw, lh = rng.normal(0, 0.05), rng.normal(0, 0.04), rng.normal(0, 0.08), rng.normal(0, 0.06)
    cx, cy = (x1 + x2) / 2 + dx * w, (y1 + y2) / 2 + dy * h
    w, h = w * np.exp(lw), h * np.exp(lh)
    b = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)
    r = rng.random()
    if r < 0.15:                      # lower body cut off (occluded, or a detector's short box)
        b[3] = b[1] + h * rng.uniform(0.55, 0.85)
    elif r < 0.22:                    # one side cut
        if rng.random() < 0.5:
            b[0] += w * rng.uniform(0.1, 0.3)
        else:
            b[2] -= w * rng.uniform(0.1, 0.3)
    return b


def _shade(region: np.ndarray, colour, rng) -> np.ndarray:
    """Colour a patch keeping its light (the texture and shading of the clothes beneath)."""
    lum = region.astype(np.float32).mean(axis=2, keepdims=True) / 255.0
    gain = np.clip(0.55 + 0.9 * lum, 0.35, 1.25) * rng.uniform(0.8, 1.1)
    return np.clip(np.asarray(colour, np.float32) * gain, 0, 255).astype(np.uint8)


def paint_ppe(patch: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paint a vest / hard hat / lookalike shirt on a real (PPE-free) person. Returns the new
    patch and its (helmet, vest) labels."""
    img = patch.copy()
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    H, W = img.shape[:2]
    label = np.zeros(2, np.float32)
    cx = (x1 + x2) / 2 + rng.normal(0, 0.04) * w
    kind = rng.random()
    if kind < 0.45:                   # vest: a torso panel with straps and reflective bands
        vw = w * rng.uniform(0.38, 0.6)
        top, bot = y1 + h * rng.uniform(0.17, 0.22), y1 + h * rng.uniform(0.42, 0.52)
        a, b = int(max(0, cx - vw / 2)), int(min(W, cx + vw / 2))
        t, u = int(max(0, top)), int(min(H, bot))
        if b - a > 2 and u - t > 2:
            img[t:u, a:b] = _shade(img[t:u, a:b], HIVIS_BGR[rng.integers(len(HIVIS_BGR))], rng)
            for fy in rng.choice([0.55, 0.8], size=rng.integers(1, 3), replace=False):
                yy = int(t + fy * (u - t))
                th = max(1, int(0.06 * (u - t)))
                img[yy:yy + th, a:b] = np.clip(img[yy:yy + th, a:b].astype(np.int16) // 2 + 110, 0, 255).astype(np.uint8)
            label[1] = 1
    elif kind < 0.6:                  # lookalike: a sleeved orange/yellow shirt (not a vest)
        sw = w * rng.uniform(0.6, 0.9)
        top, bot = y1 + h * 0.17, y1 + h * rng.uniform(0.45, 0.55)
        a, b = int(max(0, cx - sw / 2)), int(min(W, cx + sw / 2))
        t, u = int(max(0, top)), int(min(H, bot))
        if b - a > 2 and u - t > 2:
            img[t:u, a:b] = _shade(img[t:u, a:b], HIVIS_BGR[rng.integers(len(HIVIS_BGR))], rng)
    if rng.random() < 0.5:            # hard hat: a dome on the head, with a brim
        hw = w * rng.uniform(0.28, 0.42)
        top = y1 + h * rng.uniform(-0.01, 0.03)
        hh = hw * rng.uniform(0.45, 0.6)
        mask = np.zeros((H, W), np.uint8)
        centre = (int(round(cx)), int(round(top + hh)))
        cv2.ellipse(mask, centre, (max(1, int(hw / 2)), max(1, int(hh))), 0, 180, 360, 1, -1)
        cv2.line(mask, (int(cx - hw * 0.6), centre[1]), (int(cx + hw * 0.6), centre[1]), 1, max(1, int(hh * 0.18)))
        m = mask.astype(bool)
        if m.sum() >= 4:
            img[m] = _shade(img[m][:, None], HELMET_BGR[rng.integers(len(HELMET_BGR))], rng)[:, 0]
            label[0] = 1
    return img, label


def photometric(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light, white balance, saturation, blur, low resolution, sensor noise and JPEG on a crop."""
    img = crop.astype(np.float32)
    gain = rng.uniform(0.25, 0.6) if rng.random() < 0.15 else rng.uniform(0.65, 1.35)
    img = img * gain * rng.uniform(0.92, 1.08, size=3) + rng.normal(0, 8)
    if rng.random() < 0.5:            # contrast / saturation
        mean = img.mean()
        img = (img - mean) * rng.uniform(0.7, 1.2) + mean
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * rng.uniform(0.7, 1.25)
    img = np.clip(img, 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    if rng.random() < 0.3:            # a smaller, farther person
        s = rng.uniform(0.3, 0.7)
        small = cv2.resize(img, (max(4, int(w * s)), max(8, int(h * s))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.3))
    if rng.random() < 0.4:
        img = np.clip(img + rng.normal(0, rng.uniform(2, 10), img.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 85))])
        img = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def make_batch(data: CropSet, idx: np.ndarray, size, rng: np.random.Generator, recipe: Recipe,
               offsets: np.ndarray | None = None):
    """Augmented crops of ``idx``: model input, labels, the known mask and which crops were
    painted (their labels come from the paint, not from the set). A ``recipe.detector_offsets`` share
    of the sim crops (true boxes) move by measured detector ``offsets`` where given; the others, and
    real crops (already detector boxes), by small noise."""
    crops = np.empty((len(idx), size[1], size[0], 3), np.uint8)
    target = data.labels[idx].copy()
    known = data.known[idx].astype(np.float32)
    painted = np.zeros(len(idx), bool)
    is_real = data.meta["source"][idx] == "real"
    for k, i in enumerate(idx):
        patch, box = data.patches[i], data.boxes[i]
        if is_real[k] and rng.random() < recipe.paint:
            patch, target[k] = paint_ppe(patch, box, rng)
            painted[k] = True
        measured = offsets is not None and not is_real[k] and rng.random() < recipe.detector_offsets
        b = jitter_box(box, rng, offsets if measured else None)
        crops[k] = photometric(rt.person_crops(patch, b[None], size)[0], rng)
    return torch.from_numpy(rt.preprocess(crops)), torch.from_numpy(target), torch.from_numpy(known), painted


def clean_inputs(data: CropSet, size) -> np.ndarray:
    """Un-augmented model inputs (the runtime's crop of the stored box) for scoring."""
    crops = np.stack([rt.person_crops(p, b[None], size)[0] for p, b in zip(data.patches, data.boxes)]) \
        if len(data) else np.zeros((0, size[1], size[0], 3), np.uint8)
    return rt.preprocess(crops)


# ----------------------------------------------------------------------------- training

def predict(model: nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """(N, 2) probabilities through :func:`runtime.ppe.decode`."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(model(torch.from_numpy(x[i:i + batch])).numpy())
    return rt.decode(np.concatenate(out)) if out else np.zeros((0, 2), np.float32)


def masked_accuracy(prob: np.ndarray, labels: np.ndarray, known: np.ndarray) -> float:
    ok = ((prob >= 0.5) == (labels >= 0.5)) | ~known
    both = ok.all(axis=1) & known.any(axis=1)
    return float(both.sum() / max(known.any(axis=1).sum(), 1))


def train(models: dict, data: CropSet, size, recipe: Recipe, seed: int, val: tuple | None = None,
          soft: np.ndarray | None = None, log=None) -> dict:
    """Train ``models`` (name -> module) side by side on the *same* augmented batches (so a
    student with and without the teacher see identical data and augmentation is paid once).
    A name ending in ``kd`` mixes the teacher's ``soft`` targets in with ``recipe.kd_alpha``.
    AdamW + one-cycle; each keeps its weights (their moving average with ``recipe.ema``) with the
    best val both-correct accuracy."""
    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, 7])
    real = np.nonzero(data.meta["source"] == "real")[0]
    sim = np.nonzero(data.meta["source"] != "real")[0]
    state = {}
    for name, model in models.items():
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps, pct_start=0.15)
        use_kd = name.endswith("kd") and not name.endswith("nokd") and soft is not None and recipe.kd_alpha > 0
        state[name] = {"opt": opt, "sched": sched, "kd": use_kd, "best": -1.0, "state": None, "step": 0, "history": [],
                       "ema": copy.deepcopy(model).eval() if recipe.ema > 0 else None}
    offsets = None
    if recipe.detector_offsets > 0:
        from .boxgeometry import load_offsets
        offsets = load_offsets()
    bce = nn.BCEWithLogitsLoss(reduction="none")
    n_real = int(round(recipe.batch * recipe.real_fraction)) if len(real) else 0
    for step in range(1, recipe.steps + 1):
        idx = np.concatenate([rng.choice(sim, recipe.batch - n_real), rng.choice(real, n_real) if n_real else []]).astype(np.int64)
        x, y, k, painted = make_batch(data, idx, size, rng, recipe, offsets)
        for name, model in models.items():
            st = state[name]
            target = y
            if st["kd"]:
                mix = torch.from_numpy(soft[idx]) * recipe.kd_alpha + y * (1 - recipe.kd_alpha)
                target = torch.where(torch.from_numpy(painted)[:, None], y, mix)
            model.train()
            loss = (bce(model(x), target) * k).sum() / k.sum().clamp_min(1)
            st["opt"].zero_grad(set_to_none=True)
            loss.backward()
            st["opt"].step()
            st["sched"].step()
            scored = model
            if st["ema"] is not None:
                scored = st["ema"]
                with torch.no_grad():
                    for pe, p in zip(scored.parameters(), model.parameters()):
                        pe.mul_(recipe.ema).add_(p.detach(), alpha=1 - recipe.ema)
                    for be, b in zip(scored.buffers(), model.buffers()):
                        be.copy_(b)
            if val is not None and (step % recipe.eval_every == 0 or step == recipe.steps):
                vx, vy, vk = val
                acc = masked_accuracy(predict(scored, vx), vy, vk)
                st["history"].append((step, round(loss.item(), 4), round(acc, 4)))
                if log:
                    log(f"    {name:<5} step {step:>5}/{recipe.steps} loss {loss.item():.4f} val both-correct {acc:.4f}"
                        f" ({time.perf_counter() - t0:.0f} s)")
                if acc > st["best"]:
                    st["best"], st["state"], st["step"] = acc, copy.deepcopy(scored.state_dict()), step
    seconds = time.perf_counter() - t0
    out = {}
    for name, model in models.items():
        st = state[name]
        if st["state"] is not None:
            model.load_state_dict(st["state"])
        model.eval()
        out[name] = Result(model, recipe.steps, seconds, st["step"], st["best"], st["history"])
    return out
