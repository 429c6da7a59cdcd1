"""Workers: a role (enter, near_miss, wander, work, fall, group), a script of walk/hold legs made
from it, and a motion timeline sampled at 50 Hz that the renderer reads at any time.

Walking is goal-directed along straight legs at 0.8-1.8 m/s with the displayed heading turning at a
bounded rate; `enter` walks into a danger zone and works there; `near_miss` walks to 0.4-1.2 m
outside a zone's edge, pauses or not, and turns away (the hard negatives for predicted entry).
Scripts are generated in episodes from per-worker RNG streams, so a timeline extends on demand and
the same seed always gives the same motion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from runtime.geometry import points_in_polygon

from .appearance import Appearance
from .site import Site, segment_distance

DT = 0.02
POSTURE_CODES = ("standing", "walking", "bending", "crouching", "falling", "fallen", "arms_raised")
FALL_S = 0.9
ROLES = ("enter", "near_miss", "wander", "work", "fall", "group")


@dataclass
class Leg:
    kind: str                   # walk | hold
    target: np.ndarray | None = None
    posture: str = "standing"
    duration: float = 0.0
    speed: float = 1.2


class Worker:
    def __init__(self, track_id: int, role: str, appearance: Appearance, site: Site, seed: int,
                 start: np.ndarray, speed: float, fall_at: float | None = None, zone: np.ndarray | None = None,
                 leader: "Worker | None" = None, offset: float = 0.0):
        self.track_id, self.role, self.app, self.site = track_id, role, appearance, site
        self.seed, self.speed, self.fall_at, self.zone = seed, speed, fall_at, zone
        self.leader, self.offset = leader, offset
        self.fall_side = float(np.random.default_rng([seed, track_id, 999]).uniform(-0.7, 0.7))
        self._episode = 0
        self._legs: list[Leg] = []
        self._pos = [np.asarray(start, float)]
        self._heading = [float(np.random.default_rng([seed, track_id]).uniform(-math.pi, math.pi))]
        self._speed = [0.0]
        self._posture = [0]
        self._posture_t = [0.0]
        self._dist = [0.0]
        self._cur_posture_since = 0.0

    # -- scripting --------------------------------------------------------------------------
    def _episode_legs(self) -> list[Leg]:
        rng = np.random.default_rng([self.seed, self.track_id, self._episode])
        self._episode += 1
        pos = self._pos[-1]
        v = float(np.clip(self.speed + rng.normal(0, 0.08), 0.8, 1.8))
        site = self.site
        legs: list[Leg] = []
        role = self.role
        if role == "enter" and self.zone is not None and self._episode % 2 == 0:
            role = "wander"
        if role == "near_miss" and self._episode % 2 == 0:
            role = "wander"
        if role == "enter" and self.zone is not None:
            inside = _inside_point(rng, self.zone, site, pos)
            if inside is not None:
                legs.append(Leg("walk", inside, speed=v))
                legs.append(Leg("hold", posture=str(rng.choice(["standing", "bending", "crouching", "arms_raised"])),
                                duration=float(rng.uniform(1.5, 4.0))))
                radial = inside - self.zone.mean(axis=0)
                radial /= max(float(np.hypot(*radial)), 1e-6)
                out = site.path_to(rng, inside, avoid_zones=1.0, near=inside + radial * 6.0, radius=3.0, cross_zones=True)
                if out is None:
                    out = site.path_to(rng, inside, avoid_zones=1.0, near=inside, radius=10.0, cross_zones=True)
                if out is not None:
                    legs.append(Leg("walk", out, speed=v))
                return legs
        if role == "near_miss" and self.zone is not None:
            p, away = _near_miss_point(rng, self.zone, site, pos)
            if p is not None:
                legs.append(Leg("walk", p, speed=v))
                if rng.random() < 0.6:
                    legs.append(Leg("hold", duration=float(rng.uniform(0.4, 1.8))))
                out = site.path_to(rng, p, avoid_zones=0.3, near=p + away * 6, radius=3.0)
                if out is not None:
                    legs.append(Leg("walk", out, speed=v))
                return legs
        if role == "work":
            for _ in range(3):
                legs.append(Leg("hold", posture=str(rng.choice(["bending", "crouching", "standing", "arms_raised", "bending"])),
                                duration=float(rng.uniform(2.0, 5.0))))
            q = site.path_to(rng, pos, avoid_zones=None, near=pos, radius=2.5)
            if q is not None:
                legs.append(Leg("walk", q, speed=min(v, 1.0)))
            return legs
        if role == "fall" and self.fall_at is not None:
            if self._episode > 1:
                return [Leg("hold", posture="fallen", duration=600.0)]
            t = 0.0
            p = pos
            while t < self.fall_at:
                q = site.path_to(rng, p, avoid_zones=1.0, near=p, radius=7.0)
                if q is None:
                    legs.append(Leg("hold", duration=self.fall_at - t))
                    break
                d = float(np.hypot(*(q - p)))
                if t + d / v > self.fall_at:
                    q = p + (q - p) * ((self.fall_at - t) * v / d)
                    d = (self.fall_at - t) * v
                legs.append(Leg("walk", q, speed=v))
                t += d / v
                p = q
            legs.append(Leg("hold", posture="falling", duration=FALL_S))
            legs.append(Leg("hold", posture="fallen", duration=600.0))
            return legs
        # wander
        for _ in range(int(rng.integers(1, 4))):
            q = site.path_to(rng, pos, avoid_zones=1.5, near=pos, radius=10.0)
            if q is None:
                legs.append(Leg("hold", duration=2.0))
                break
            legs.append(Leg("walk", q, speed=v))
            if rng.random() < 0.35:
                legs.append(Leg("hold", duration=float(rng.uniform(0.8, 3.0))))
            pos = q
        return legs

    # -- simulation -------------------------------------------------------------------------
    def _extend(self, n: int) -> None:
        if self.leader is not None:
            self._follow(n)
            return
        while len(self._pos) < n:
            if not self._legs:
                self._legs = self._episode_legs() or [Leg("hold", duration=1.0)]
            leg = self._legs.pop(0)
            if leg.kind == "walk":
                self._walk(leg.target, leg.speed)
            else:
                self._hold(leg.posture, leg.duration)

    def _push(self, pos, speed, posture, heading_target):
        h = self._heading[-1]
        if heading_target is not None:
            d = (heading_target - h + math.pi) % (2 * math.pi) - math.pi
            h += max(-5.0 * DT, min(5.0 * DT, d))
        code = POSTURE_CODES.index(posture)
        t = len(self._pos) * DT
        if code != self._posture[-1]:
            self._cur_posture_since = t
        self._pos.append(np.asarray(pos, float))
        self._heading.append(h)
        self._speed.append(speed)
        self._posture.append(code)
        self._posture_t.append(t - self._cur_posture_since)
        self._dist.append(self._dist[-1] + speed * DT)

    def _walk(self, target, v):
        p0 = self._pos[-1]
        d = float(np.hypot(*(target - p0)))
        if d < 1e-3:
            return
        heading = math.atan2(target[0] - p0[0], target[1] - p0[1])
        n = max(1, int(round(d / (v * DT))))
        for i in range(1, n + 1):
            self._push(p0 + (target - p0) * (i / n), d / (n * DT), "walking", heading)

    def _hold(self, posture, duration):
        for _ in range(max(1, int(round(duration / DT)))):
            self._push(self._pos[-1], 0.0, posture, None)

    def _follow(self, n):
        L = self.leader
        L._extend(n)
        while len(self._pos) < n:
            i = len(self._pos)
            h = L._heading[i]
            side = np.array([math.cos(h), -math.sin(h)])
            self._pos.append(L._pos[i] + side * self.offset)
            self._heading.append(h)
            self._speed.append(L._speed[i])
            self._posture.append(L._posture[i])
            self._posture_t.append(L._posture_t[i])
            self._dist.append(L._dist[i] + 0.4 * abs(self.offset))

    # -- queries ----------------------------------------------------------------------------
    def state(self, t: float) -> dict:
        i = int(round(t / DT))
        self._extend(i + 2)
        posture = POSTURE_CODES[self._posture[i]]
        stride = 0.8 * self.app.height_m * (0.55 + 0.35 * max(self._speed[i], 0.8))
        return {
            "xy": self._pos[i], "heading": self._heading[i], "speed": self._speed[i], "posture": posture,
            "phase": 2 * math.pi * self._dist[i] / stride, "progress": min(1.0, self._posture_t[i] / FALL_S),
        }


def _inside_point(rng, zone, site: Site, pos, margin: float = 0.8):
    lo, hi = zone.min(axis=0), zone.max(axis=0)
    for _ in range(100):
        p = rng.uniform(lo, hi)
        if points_in_polygon(p[None], zone)[0] and segment_distance(p[None], zone)[0] > margin and site.ok(p)[0] \
                and site.segment_ok(pos, p, None):
            return p
    return None


def _near_miss_point(rng, zone, site: Site, pos):
    """A point 0.4-1.2 m outside a zone edge, and the outward direction there."""
    n = len(zone)
    for _ in range(100):
        i = int(rng.integers(n))
        a, b = zone[i], zone[(i + 1) % n]
        e = b - a
        p_edge = a + e * rng.uniform(0.15, 0.85)
        normal = np.array([e[1], -e[0]]) / max(np.hypot(*e), 1e-9)
        if points_in_polygon((p_edge + normal * 0.05)[None], zone)[0]:
            normal = -normal
        if normal @ (pos - p_edge) <= 0:  # approach an edge that faces the worker
            continue
        p = p_edge + normal * rng.uniform(0.4, 1.2)
        if site.ok(p)[0] and not points_in_polygon(p[None], zone)[0] and site.segment_ok(pos, p, avoid_zones=0.3):
            return p, normal
    return None, None
