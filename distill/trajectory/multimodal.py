"""A multi-modal student: K paths and their probabilities, for warnings from P(entry).

Not shipped (no card, no runtime decoder yet): `bench/entry_multimodal.py` measures whether warning
on the *probability* of entering a zone beats warning on one deterministic path, against constant
velocity, under issue 6's protocol. A deterministic forecaster trained for ADE predicts the mean
path; where a walker may turn away or go on, that mean lies between the two and says little about
whether he will enter. K paths with probabilities give P(enter within the horizon) directly.

The model is the social MLP student's body (own track + 4 neighbours, Gemm/Relu only) with a head of
K x 12 offsets from constant velocity plus K logits, and one more 12-step path (the deterministic
forecast); trained winner-takes-all: the distance loss of the path closest to the truth, plus
cross-entropy teaching the logits which path that was, plus the deterministic head's distance loss.
"""
from __future__ import annotations

import copy
import itertools

import numpy as np
import torch
from torch import nn

from runtime.forecast import EntryRule, decode, encode, neighbour_features
from sim import realdata

from ..common import generator
from . import entry, tune
from .data import Split
from .models import OBS_LEN, PRED_LEN, _track_features
from .train import _flip

K = 3
CE_WEIGHT = 0.5
# the rule grid of the P(entry) warning: horizon and depth margin as tune.GRID, then the threshold
# on the probability and persistence; chosen on val like every other forecaster's rule
GRID = {"horizon_s": (1.6, 2.0, 2.4, 2.8, 3.0), "margin_m": (-0.2, 0.0, 0.2, 0.4),
        "tau": (0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95), "persist_s": (0.0, 0.4, 0.8)}


class MultiModalStudent(nn.Module):
    inputs = ("x", "soc")

    def __init__(self, hidden: int = 140, k: int = K, neighbours: int = 4):
        super().__init__()
        self.k = k
        d = OBS_LEN * 2 + (OBS_LEN - 1) * 2 + neighbours * 5
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, (k + 1) * PRED_LEN * 2 + k))

    def forward(self, x: torch.Tensor, soc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, K, 12, 2) offsets from CV in the local frame, (N, K) logits, and (N, 12, 2) the
        deterministic path (its own head, trained with the distance loss like the shipped student)."""
        h = self.net(torch.cat([_track_features(x), soc.flatten(1)], 1))
        n = self.k * PRED_LEN * 2
        return (h[:, :n].view(-1, self.k, PRED_LEN, 2), h[:, n:n + self.k],
                h[:, n + self.k:].view(-1, PRED_LEN, 2))


def wta_loss(paths: torch.Tensor, logits: torch.Tensor, det: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Winner-takes-all over the K paths + cross-entropy on the winner + the deterministic head's
    distance loss."""
    d = torch.linalg.vector_norm(paths - y[:, None], dim=-1).mean(-1)   # (N, K) mean distance per path
    win = d.argmin(1)
    return (d.gather(1, win[:, None]).mean() + CE_WEIGHT * nn.functional.cross_entropy(logits, win)
            + torch.linalg.vector_norm(det - y, dim=-1).mean())


def train(tr: Split, va: Split, seed: int = 0, epochs: int = 30, lr: float = 2e-3, batch: int = 256,
          max_steps: int | None = None) -> MultiModalStudent:
    """AdamW + one-cycle, mirror augmentation as the other students; the epoch with the best val loss."""
    torch.manual_seed(seed)
    model = MultiModalStudent()
    g = generator(seed)
    x, soc, y = (torch.from_numpy(a) for a in (tr.x, tr.soc, tr.y))
    vx, vs, vy = (torch.from_numpy(a) for a in (va.x, va.soc, va.y))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    per = max(1, len(y) // batch)
    total = epochs * per if max_steps is None else min(max_steps, epochs * per)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.1)
    best, state, step = float("inf"), None, 0
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(y), generator=g)
        for b in range(per):
            if step >= total:
                break
            idx = perm[b * batch:(b + 1) * batch]
            sign = torch.where(torch.rand(len(idx), generator=g) < 0.5, -1.0, 1.0)
            yb = y[idx] * torch.stack([torch.ones_like(sign), sign], -1)[:, None, :]
            loss = wta_loss(*model(_flip("x", x[idx], sign), _flip("soc", soc[idx], sign)), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        model.eval()
        with torch.no_grad():
            val = float(wta_loss(*model(vx, vs), vy))
        if val < best:
            best, state = val, copy.deepcopy(model.state_dict())
        if step >= total:
            break
    model.load_state_dict(state)
    model.eval()
    return model


def forecast(model: MultiModalStudent, obs: np.ndarray, others: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(D, K, 12, 2) world paths and (D, K) probabilities for observed tracks ``obs`` (D, 8, 2)."""
    x, frame = encode(obs)
    soc = neighbour_features(frame, others)
    with torch.no_grad():
        paths, logits, _ = model(torch.from_numpy(x), torch.from_numpy(soc))
    p = torch.softmax(logits, -1).numpy()
    return np.stack([decode(paths[:, k].numpy(), frame) for k in range(model.k)], 1), p


def deterministic(model: MultiModalStudent, x: np.ndarray, soc: np.ndarray, frame) -> np.ndarray:
    """(D, 12, 2) world forecast of the deterministic head (for ADE/FDE)."""
    with torch.no_grad():
        _, _, det = model(torch.from_numpy(x), torch.from_numpy(soc))
    return decode(det.numpy(), frame)


def entry_probability(depths: list[tuple[np.ndarray, np.ndarray]], p: np.ndarray, horizon_s: float,
                      margin_m: float) -> np.ndarray:
    """(D, Z) P(the forecast enters the zone by ``margin_m`` within ``horizon_s``) from each path's
    :func:`entry.path_depth` and the path probabilities ``p`` (D, K)."""
    prob = 0.0
    for k, (d, t) in enumerate(depths):
        prob = prob + p[:, k:k + 1] * (entry.excess(d, t, horizon_s, 0.0) >= margin_m)
    return np.asarray(prob, np.float64)


def warn(prep: entry.Prepared, depths, p, rule: EntryRule, tau: float) -> np.ndarray:
    prob = entry_probability(depths, p, rule.horizon_s, rule.margin_m)
    return entry.persist(prep, (prob >= tau) & prep.outside, rule.persist_steps(realdata.DT_S))


def sweep(groups, depths_per_group, p_per_group, grid: dict = GRID) -> list:
    """[((rule, tau), pooled scores)] over the grid, as tune.sweep for the deterministic forecasters."""
    out = []
    for h, m in itertools.product(grid["horizon_s"], grid["margin_m"]):
        probs = [entry_probability(d, p, h, m) for d, p in zip(depths_per_group, p_per_group)]
        for tau, ps in itertools.product(grid["tau"], grid["persist_s"]):
            rule = EntryRule(h, m, 0.0, ps)
            k = rule.persist_steps(realdata.DT_S)
            parts = [entry.evaluate(g.prep, entry.persist(g.prep, (pr >= tau) & g.prep.outside, k))
                     for g, pr in zip(groups, probs)]
            out.append(((rule, tau), entry.combine(parts)))
    return out


def choose(results: list, min_lead_s: float):
    """tune.choose over :func:`sweep`'s ((rule, tau), scores) results."""
    return tune.choose(results, min_lead_s, rule_of=lambda key: key[0])
