"""Plan: per device, the best variant of every task its rules need that fits the board.

Fitting means: weights (every tier, so the governor can switch without loading) + the largest
activation of each task fit the board's model memory, and the summed compute of every camera the
device serves, at its fps, stays under (1 - HEADROOM) of the board's capacity. Each task keeps
lighter tiers for the runtime governor, and condition-specialised variants for the spec's situations.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from runtime.config import RuntimeConfig

from .boards import BoardProfile
from .costmodel import Estimate, capacity_ms_per_s, estimate
from .modelcard import ModelCard

HEADROOM = 0.30  # keep 30% of compute free: frame jitter, tracking, decoding, the OS
PERSONS_PER_FRAME = 6  # planning assumption: per-person models run this many times per frame
TRAJECTORY_HZ = 2.5  # the forecaster runs per person at its own rate, not per frame

# quality metric per task (first one a card has; real data preferred) and its direction
QUALITY = {
    "detector": ("AP50",),
    "ppe": ("both_correct", "accuracy"),
    "pose": ("PCK@0.2", "OKS-AP"),
    "posture": ("accuracy",),
    "trajectory": ("ADE_m",),
}


class PlanError(Exception):
    """Nothing fits; the message says what to change."""


@dataclass(frozen=True)
class TaskPlan:
    task: str
    variant: str
    tiers: tuple[str, ...]  # best first; the chosen variant is tiers[0]
    situational: tuple[str, ...]  # condition-specialised variants kept for situations
    latency_ms: float  # per call, estimated
    calls_per_s: float
    load_ms_per_s: float
    unit: str
    memory_bytes: int
    why: str


@dataclass(frozen=True)
class DevicePlan:
    device: str
    board: str
    tasks: tuple[TaskPlan, ...]
    load: dict[str, float]  # unit -> fraction of capacity used
    memory_bytes: int
    memory_budget_bytes: int
    estimated: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "device": self.device, "board": self.board, "estimated": self.estimated,
            "memory_bytes": self.memory_bytes, "memory_budget_bytes": self.memory_budget_bytes,
            "load": {k: round(v, 4) for k, v in sorted(self.load.items())},
            "tasks": [
                {"task": t.task, "variant": t.variant, "tiers": list(t.tiers), "situational": list(t.situational),
                 "latency_ms": round(t.latency_ms, 3), "calls_per_s": round(t.calls_per_s, 3),
                 "unit": t.unit, "memory_bytes": t.memory_bytes, "why": t.why}
                for t in self.tasks
            ],
        }


# tasks whose quality is the mean of a real-data and a synthetic metric (both must be on the card):
# the detector's real holdout has people near indoor cameras, its sim holdout people far from site
# cameras; a site has both, so neither alone ranks the variants.
BLEND = {"detector": (("AP50_person", "real"), ("AP50_person_all", "synthetic"))}


def quality(card: ModelCard) -> float:
    """Higher is better; real-data metrics win over synthetic ones of the same name."""
    blend = [m for name, data in BLEND.get(card.task, ()) for m in card.metrics if m.name == name and m.data == data]
    if blend and len(blend) == len(BLEND[card.task]):
        return sum(m.value if m.higher_is_better else -m.value for m in blend) / len(blend)
    for name in QUALITY.get(card.task, ()):
        for exact in (True, False):  # "ADE_m" before "ADE_m_eth"; "AP50" also matches "AP50_person"
            for data in ("real", "synthetic"):
                for m in card.metrics:
                    if m.data == data and (m.name == name if exact else m.name.startswith(name + "_")):
                        return m.value if m.higher_is_better else -m.value
    return float("-inf")


def tasks_needed(config: RuntimeConfig) -> list[str]:
    """Which tasks the device's config needs, in pipeline order."""
    tasks = []
    if any(c.detect_here for c in config.cameras):
        tasks.append("detector")
    if config.role == "camera-detector":
        return tasks
    if config.ppe:
        tasks.append("ppe")
    if config.actions:
        tasks += ["pose", "posture"]
    if any(z.predict_horizon_s is not None for c in config.cameras for z in c.zones):
        tasks.append("trajectory")
    return tasks


def _calls_per_s(task: str, config: RuntimeConfig) -> float:
    if task == "detector":
        return sum(c.fps for c in config.cameras if c.detect_here)
    fps = sum(c.fps for c in config.cameras)
    if task == "trajectory":
        return PERSONS_PER_FRAME * TRAJECTORY_HZ * len(config.cameras)
    return fps * PERSONS_PER_FRAME


def _initial(cands: list[tuple[ModelCard, Estimate]], prefer: str) -> int:
    """Index (into cands sorted best quality first) of the starting choice for a preference."""
    if prefer == "accuracy":
        return 0
    if prefer == "speed":
        return min(range(len(cands)), key=lambda i: cands[i][1].latency_ms)
    lat = sorted(e.latency_ms for _, e in cands)
    median = lat[(len(lat) - 1) // 2]
    return next(i for i, (_, e) in enumerate(cands) if e.latency_ms <= median)


def plan_device(
    config: RuntimeConfig, board: BoardProfile, zoo: list[ModelCard], prefer: str = "balanced",
    pinned: dict[str, str] | None = None,
) -> DevicePlan:
    pinned = pinned or {}
    needed = tasks_needed(config)
    cands: dict[str, list[tuple[ModelCard, Estimate]]] = {}
    situational: dict[str, tuple[str, ...]] = {}
    for task in needed:
        cards = [c for c in zoo if c.task == task]
        general = [c for c in cards if "any" in c.conditions]
        if task in pinned:
            general = [c for c in cards if c.variant == pinned[task]]
            if not general:
                known = ", ".join(c.variant for c in cards) or "none"
                raise PlanError(f"{config.device}: no {task} variant '{pinned[task]}' in the zoo (have: {known})")
        if not general:
            raise PlanError(f"{config.device}: the zoo has no {task} model; train one with `python build.py distill {task}`")
        general.sort(key=lambda c: (-quality(c), c.costs.macs, c.variant))
        cands[task] = [(c, estimate(c, board)) for c in general]
        situational[task] = tuple(sorted(c.variant for c in cards if "any" not in c.conditions))
    choice = {t: (0 if t in pinned else _initial(cands[t], prefer)) for t in needed}
    budget = int(board.model_memory_mb.value * 1024 * 1024)

    def evaluate():
        loads: dict[str, float] = {}
        per_task = []
        memory = 0
        for t in needed:
            card, est = cands[t][choice[t]]
            tiers = [c for c, e in cands[t][choice[t]:] if e.latency_ms <= est.latency_ms]
            calls = _calls_per_s(t, config)
            load = est.latency_ms * calls
            loads[est.unit] = loads.get(est.unit, 0.0) + load
            mem = sum(estimate(c, board).weight_bytes for c in tiers) + max(estimate(c, board).activation_bytes for c in tiers)
            memory += mem
            per_task.append((t, card, est, tuple(c.variant for c in tiers), calls, load, mem))
        fractions = {u: ms / capacity_ms_per_s(board, u) for u, ms in loads.items()}
        return per_task, fractions, memory

    steps = []
    while True:
        per_task, fractions, memory = evaluate()
        over = [u for u, f in fractions.items() if f > 1 - HEADROOM]
        if not over and memory <= budget:
            break
        # step down the heaviest task on an overloaded unit (or the largest memory user) to its next lighter variant
        movable = [p for p in per_task if p[0] not in pinned and choice[p[0]] + 1 < len(cands[p[0]])]
        if over:
            movable = [p for p in movable if p[2].unit in over]
            key = lambda p: p[5]  # noqa: E731
        else:
            key = lambda p: p[6]  # noqa: E731
        if not movable:
            raise PlanError(_advice(config, board, fractions, memory, budget))
        t = max(movable, key=key)[0]
        lighter = [i for i in range(choice[t] + 1, len(cands[t])) if cands[t][i][1].latency_ms < cands[t][choice[t]][1].latency_ms
                   or cands[t][i][1].memory_bytes < cands[t][choice[t]][1].memory_bytes]
        if not lighter:
            raise PlanError(_advice(config, board, fractions, memory, budget))
        steps.append(f"{t}: {cands[t][choice[t]][0].variant} -> {cands[t][lighter[0]][0].variant}")
        choice[t] = lighter[0]

    tasks = []
    for t, card, est, tiers, calls, load, mem in per_task:
        why = "pinned by the spec" if t in pinned else (
            f"prefer {prefer}" + (" (stepped down to fit)" if any(s.startswith(f"{t}:") for s in steps) else "")
        )
        q = quality(card)
        if q != float("-inf"):
            why += f"; quality {abs(q):.3g}"
        tasks.append(TaskPlan(t, card.variant, tiers, situational[t], est.latency_ms, calls, load, est.unit, mem, why))
    return DevicePlan(config.device, board.id, tuple(tasks), fractions, memory, budget,
                      estimated=board.npu is not None, notes=tuple(steps))


def _advice(config: RuntimeConfig, board: BoardProfile, fractions: dict[str, float], memory: int, budget: int) -> str:
    fps = sum(c.fps for c in config.cameras)
    parts = [f"{config.device} on {board.id}: nothing fits even with the lightest variants"]
    for unit, f in sorted(fractions.items()):
        if f > 1 - HEADROOM:
            parts.append(f"{unit} load {f:.0%} of capacity (limit {1 - HEADROOM:.0%}) at {fps:g} fps over {len(config.cameras)} camera(s)")
    if memory > budget:
        parts.append(f"models need {memory / 2**20:.1f} MB, the board gives {budget / 2**20:.0f} MB")
    need = max(max(fractions.values(), default=0) / (1 - HEADROOM), 1e-9)
    parts.append(
        "change one of: lower fps to about " + f"{fps / need:.1f}" + " in total; drop a rule (posture or PPE rules add per-person models); "
        "move cameras to an edge device; or use a bigger board (see `build.py boards`)"
    )
    return "; ".join(parts)
