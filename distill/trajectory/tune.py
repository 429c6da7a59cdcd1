"""Tuning the predicted-entry warning rule on validation footage only.

A forecaster (the student, or constant velocity) warns through :class:`runtime.forecast.EntryRule`:
an effective forecast horizon, a depth margin that may grow with time-to-point, and temporal
persistence (:func:`runtime.forecast.warn_entry`, :class:`runtime.forecast.EntryWarner`). Each
forecaster gets its own rule, chosen by the same procedure on the same val footage: the grid point
with the best val F1 among those whose val mean lead time is at least ``MIN_LEAD_S`` (ties: higher
accuracy, then longer lead, then the simpler rule). Leave-one-scene-out folds tune on their own val
files, which never include the held-out scene's sequence, so test numbers stay untouched by tuning.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from runtime.forecast import EntryRule, constant_velocity, decode, encode, neighbour_features
from sim import realdata

from . import entry
from .models import deterministic

MIN_LEAD_S = 1.5  # issue 6's Aim: mean lead time >= 1.5 s
GRID = {
    "horizon_s": (1.6, 2.0, 2.4, 2.8, 3.0),
    "margin_m": (-0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8),
    "margin_per_s": (0.0, 0.05, 0.1, 0.2, 0.3),
    "persist_s": (0.0, 0.4, 0.8),
}
SMOKE_GRID = {"horizon_s": (2.0, 3.0), "margin_m": (0.0, 0.2), "margin_per_s": (0.0,), "persist_s": (0.0, 0.4)}
DEFAULT_RULE = EntryRule(horizon_s=entry.HORIZON_S)
OBJECTIVE = (f"per forecaster, on val footage only: the grid rule with the best F1 among those with mean lead "
             f">= the floor ({MIN_LEAD_S:g} s unless stated); ties: accuracy, lead, simpler rule")


@dataclass
class Decisions:
    """Every decision step of one footage group, ready to forecast and score."""

    name: str
    prep: entry.Prepared
    obs: np.ndarray                 # (D, 8, 2) world
    others: list[np.ndarray]        # per decision: (K, 2, 2) other people (student input)

    def forecast(self, model=None) -> np.ndarray:
        """(D, 12, 2) world forecasts: the social student ``model`` (torch; a multi-modal one's
        deterministic path), or CV when None."""
        if model is None or not len(self.obs):
            return constant_velocity(self.obs)
        x, frame = encode(self.obs)
        soc = neighbour_features(frame, self.others)
        with torch.no_grad():
            off = deterministic(model(torch.from_numpy(x), torch.from_numpy(soc))).numpy()
        return decode(off, frame)


def decisions(name: str, runs: entry.Runs, zones: list[np.ndarray]) -> Decisions:
    obs, where = entry.decision_obs(runs)
    return Decisions(name, entry.prepare(runs, where, zones), obs, entry.decision_others(runs, where))


def val_decisions(rows: realdata.TrackRows, zones: dict) -> list[Decisions]:
    return [decisions(n, r, z) for n, r, z in entry.val_groups(rows, zones)]


def depths(groups: list[Decisions], forecasts: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [entry.path_depth(g.prep, f) for g, f in zip(groups, forecasts)]


def scores(groups: list[Decisions], dep: list, rule: EntryRule) -> entry.EntryScores:
    """Pooled scores of ``rule`` over the groups."""
    return entry.combine([entry.evaluate(g.prep, entry.fires(g.prep, d, t, rule)) for g, (d, t) in zip(groups, dep)])


def sweep(groups: list[Decisions], dep: list, grid: dict = GRID) -> list[tuple[EntryRule, entry.EntryScores]]:
    """Scores of every rule of the grid (excess computed once per horizon and margin growth)."""
    out = []
    for h, g in itertools.product(grid["horizon_s"], grid["margin_per_s"]):
        ex = [entry.excess(d, t, h, g) for d, t in dep]
        for m in grid["margin_m"]:
            base = [(e >= m) & grp.prep.outside for e, grp in zip(ex, groups)]
            for p in grid["persist_s"]:
                rule = EntryRule(h, m, g, p)
                k = rule.persist_steps(realdata.DT_S)
                parts = [entry.evaluate(grp.prep, entry.persist(grp.prep, b, k)) for grp, b in zip(groups, base)]
                out.append((rule, entry.combine(parts)))
    return out


def _simplicity(rule: EntryRule) -> tuple:
    return (rule.persist_s, rule.margin_per_s, abs(rule.margin_m), -rule.horizon_s)


def choose(results: list[tuple[EntryRule, entry.EntryScores]], min_lead_s: float = MIN_LEAD_S,
           rule_of=lambda r: r) -> tuple[EntryRule, entry.EntryScores]:
    """Best val F1 with mean lead >= ``min_lead_s`` (ties: accuracy, lead, simpler rule).
    ``rule_of`` finds the EntryRule in a result's key (multimodal's keys are (rule, tau))."""
    ok = [(r, s) for r, s in results if s.mean_lead_s >= min_lead_s]
    if not ok:   # nothing reaches the lead time: the longest lead
        return max(results, key=lambda rs: (round(rs[1].mean_lead_s, 6), round(rs[1].f1, 6)))
    return max(ok, key=lambda rs: (round(rs[1].f1, 6), round(rs[1].accuracy, 6), round(rs[1].mean_lead_s, 6),
                                   tuple(-x for x in _simplicity(rule_of(rs[0])))))


def tune(groups: list[Decisions], forecasts: list[np.ndarray], min_lead_s: float = MIN_LEAD_S,
         grid: dict = GRID) -> dict:
    """The chosen rule and its val scores (plus the default rule's val scores for reference)."""
    dep = depths(groups, forecasts)
    results = sweep(groups, dep, grid)
    rule, best = choose(results, min_lead_s)
    return {"rule": rule, "val": best, "val_default": scores(groups, dep, DEFAULT_RULE), "sweep": results,
            "groups": [g.name for g in groups]}
