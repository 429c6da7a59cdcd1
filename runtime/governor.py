"""The governor: which bundled variant each task runs, frame by frame.

- Load: when the measured frame time overruns the frame budget for a while, the heaviest task
  steps down a tier; when there is plenty of headroom for a while, the last task stepped down
  steps back up.
- Situations: a schedule in the site's time zone, a scene-brightness level, or a flag the VMS
  sets. While one holds, a task runs the variant it names, or a variant specialised for it
  (a card whose conditions name the situation, e.g. night), or its best tier for `prefer: accuracy`.
- Packs: a new set of models replaces the tiers between frames.
Every switch is returned as a `Switch` so the pipeline logs it and emits a model_switch event.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig, RuntimeConfig, SituationConfig
from .schedule import active

__all__ = ["Governor", "Switch"]

OVERRUN = 0.9  # frame time above 90% of the budget counts as an overrun
HEADROOM = 0.5  # below 50% counts as room to step back up
DOWN_AFTER = 5  # consecutive overrunning frames before stepping down
UP_AFTER = 50  # consecutive roomy frames before stepping up (slow up, fast down)
EMA = 0.3
WARMUP = 3  # the first frames are slow anyway (session warm-up): not evidence of overload


@dataclass(frozen=True)
class Switch:
    task: str
    old: str
    new: str
    reason: str  # "overrun 123 ms > 90 ms", "headroom", "situation night", "model pack"


class Governor:
    def __init__(self, config: RuntimeConfig, budget_ms: float | None = None):
        self.config = config
        self.tiers: dict[str, tuple[ModelConfig, ...]] = {t: tuple(m) for t, m in config.models.items()}
        fps = sum(c.fps for c in config.cameras) or 10.0
        self.budget_ms = budget_ms if budget_ms is not None else 1000.0 / fps
        self.level: dict[str, int] = {t: 0 for t in self.tiers}  # index into the load tiers
        self._general = {t: [i for i, m in enumerate(ms) if "any" in m.conditions] or [0] for t, ms in self.tiers.items()}
        self.situation: SituationConfig | None = None
        self._ema: float | None = None
        self._seen = 0
        self._over = self._room = 0
        self._stepped: list[str] = []
        self.flags: set[str] = set()

    # -- what runs ---------------------------------------------------------------------------
    def current(self, task: str) -> ModelConfig:
        tiers = self.tiers[task]
        sit = self._situation_choice(task)
        if sit is not None:
            return sit
        return tiers[self._general[task][min(self.level[task], len(self._general[task]) - 1)]]

    def _situation_choice(self, task: str) -> ModelConfig | None:
        s = self.situation
        if s is None:
            return None
        tiers = self.tiers[task]
        if task in s.variants:
            named = [m for m in tiers if m.variant == s.variants[task]]
            if named:
                return named[0]
        special = [m for m in tiers if s.id in m.conditions or (s.flag and s.flag in m.conditions)]
        if special:
            return special[0]
        if s.prefer == "accuracy":
            return tiers[self._general[task][0]]
        if s.prefer == "speed":
            return tiers[self._general[task][-1]]
        return None

    def assignment(self) -> dict[str, str]:
        return {t: self.current(t).variant for t in self.tiers}

    # -- load --------------------------------------------------------------------------------
    def observe(self, frame_ms: float, task_ms: dict[str, float] | None = None) -> list[Switch]:
        """Feed the measured time of one frame (and per task, if known)."""
        self._seen += 1
        if self._seen <= WARMUP:
            return []
        self._ema = frame_ms if self._ema is None else (1 - EMA) * self._ema + EMA * frame_ms
        before = self.assignment()
        if self._ema > OVERRUN * self.budget_ms:
            self._over, self._room = self._over + 1, 0
            if self._over >= DOWN_AFTER:
                self._over = 0
                self._step_down(task_ms or {})
        elif self._ema < HEADROOM * self.budget_ms:
            self._room, self._over = self._room + 1, 0
            if self._room >= UP_AFTER:
                self._room = 0
                self._step_up()
        else:
            self._over = self._room = 0
        reason = f"frame time {self._ema:.1f} ms vs budget {self.budget_ms:.1f} ms"
        return self._diff(before, reason)

    def _step_down(self, task_ms: dict[str, float]) -> None:
        movable = [t for t in self.tiers if self.level[t] + 1 < len(self._general[t])]
        if not movable:
            return
        task = max(movable, key=lambda t: (task_ms.get(t, 0.0), self.current(t).est_latency_ms or 0.0))
        self.level[task] += 1
        self._stepped.append(task)

    def _step_up(self) -> None:
        while self._stepped:
            task = self._stepped.pop()
            if self.level[task] > 0:
                self.level[task] -= 1
                return

    # -- situations --------------------------------------------------------------------------
    def set_flag(self, flag: str, on: bool = True) -> None:
        (self.flags.add if on else self.flags.discard)(flag)

    def evaluate_situations(self, t_epoch: float, brightness: float | None = None, camera: str | None = None) -> list[Switch]:
        before = self.assignment()
        chosen = None
        for s in self.config.situations:
            if s.cameras and camera is not None and camera not in s.cameras:
                continue
            if (s.schedule and active(s.schedule, t_epoch, self.config.timezone)) \
                    or (s.brightness_below is not None and brightness is not None and brightness < s.brightness_below) \
                    or (s.flag is not None and s.flag in self.flags):
                chosen = s
                break
        old = self.situation.id if self.situation else None
        self.situation = chosen
        new = chosen.id if chosen else None
        return self._diff(before, f"situation {new or 'ended: ' + str(old)}") if new != old else []

    # -- packs -------------------------------------------------------------------------------
    def swap_pack(self, models: dict[str, tuple[ModelConfig, ...]]) -> list[Switch]:
        """Install new tiers between frames; levels are kept where the task still has them."""
        before = self.assignment()
        for task, tiers in models.items():
            self.tiers[task] = tuple(tiers)
            self._general[task] = [i for i, m in enumerate(tiers) if "any" in m.conditions] or [0]
            self.level[task] = min(self.level.get(task, 0), len(self._general[task]) - 1)
        return self._diff(before, "model pack")

    def _diff(self, before: dict[str, str], reason: str) -> list[Switch]:
        after = self.assignment()
        return [Switch(t, before.get(t, "-"), v, reason) for t, v in after.items() if before.get(t) != v]
