"""Machinery: an excavator that drives and slews, a dump truck on a haul road, a crane hook with a
swinging load. Each machine gives its parts as boxes at time t, a ground position (for zones that
follow it) and a subtype; the renderer draws them and boxes them as class `machine`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .shapes import beam, box

CAT_YELLOW = (20, 175, 235)
DARK = (45, 45, 48)
STEEL = (120, 122, 125)


@dataclass
class MachineSpec:
    subtype: str                       # excavator | truck | crane_load
    path: list                         # ground waypoints (metres); excavator/truck drive between them
    speed: float = 0.5
    pause_s: float = 6.0
    params: dict = field(default_factory=dict)


def _pingpong(path: np.ndarray, speed: float, pause: float, t: float, phase: float = 0.0):
    """Position and heading along a polyline driven forth and back, pausing at each end."""
    seg = np.diff(path, axis=0)
    lens = np.hypot(seg[:, 0], seg[:, 1])
    total = float(lens.sum())
    drive = total / max(speed, 1e-6)
    cycle = 2 * (drive + pause)
    u = (t + phase) % cycle
    if u < pause:
        s, fwd = 0.0, True
    elif u < pause + drive:
        s, fwd = (u - pause) * speed, True
    elif u < 2 * pause + drive:
        s, fwd = total, False
    else:
        s, fwd = total - (u - 2 * pause - drive) * speed, False
    i = int(np.searchsorted(np.cumsum(lens), s, side="left"))
    i = min(i, len(lens) - 1)
    s0 = float(np.cumsum(lens)[i] - lens[i])
    p = path[i] + seg[i] * ((s - s0) / max(lens[i], 1e-9))
    heading = math.atan2(seg[i, 0], seg[i, 1])
    moving = pause < u < pause + drive or u > 2 * pause + drive
    return p, heading, moving, fwd


class Machine:
    def __init__(self, spec: MachineSpec, track_id: int, seed: int):
        self.spec, self.track_id = spec, track_id
        self.subtype = spec.subtype
        rng = np.random.default_rng([seed, track_id])
        self.phase = float(rng.uniform(0, 30))
        self.path = np.asarray(spec.path, float)
        self.colour = tuple(spec.params.get("colour", CAT_YELLOW))

    def parts(self, t: float, wind: float = 0.0) -> tuple[np.ndarray, list, list]:
        """(ground xy, [(corners (8,3), colour, ribs)], [(p0, p1, colour, thickness)] lines)."""
        return getattr(self, "_" + self.subtype)(t, wind)

    # -- excavator --------------------------------------------------------------------------
    def _excavator(self, t, wind):
        p, heading, moving, _ = _pingpong(self.path, self.spec.speed, self.spec.pause_s, t, self.phase)
        slew = heading + 1.4 * math.sin(2 * math.pi * (t + self.phase) / 16.0) * (0.3 if moving else 1.0)
        x, y = p
        boxes = []
        c, s = math.cos(heading), math.sin(heading)
        side = np.array([c, -s])
        for k in (-1, 1):
            q = p + side * 1.2 * k
            boxes.append((box((q[0], q[1], 0.0), (0.65, 4.2, 0.85), heading), DARK, 6))
        hc, hs = math.cos(slew), math.sin(slew)
        fwd = np.array([hs, hc])
        hside = np.array([hc, -hs])
        centre = p - fwd * 0.3
        boxes.append((box((x, y, 0.85), (2.2, 2.2, 0.25), slew), DARK, 0))
        boxes.append((box((centre[0], centre[1], 1.0), (2.7, 3.0, 1.05), slew), self.colour, 0))
        cw = p - fwd * 1.8
        boxes.append((box((cw[0], cw[1], 1.0), (2.7, 0.7, 1.0), slew), (40, 40, 42), 0))
        cab = p + fwd * 0.55 - hside * 0.75
        boxes.append((box((cab[0], cab[1], 2.05), (0.95, 1.6, 1.45), slew), (70, 72, 62), 0))
        boxes.append((box((cab[0], cab[1], 3.5), (1.0, 1.65, 0.08), slew), self.colour, 0))
        # boom, stick and bucket on a dig cycle
        dig = 2 * math.pi * (t + self.phase) / 7.0
        pivot = np.array([*(p + fwd * 1.2 + hside * 0.35), 1.9])
        boom_a = 0.5 + 0.22 * math.sin(dig)
        tip = pivot + 5.2 * np.array([*(fwd * math.cos(boom_a)), math.sin(boom_a)])
        stick_a = -1.05 + 0.45 * math.sin(dig + 1.2)
        end = tip + 2.9 * np.array([*(fwd * math.cos(stick_a)), math.sin(stick_a)])
        end[2] = max(end[2], 0.5)
        boxes.append((beam(pivot, tip, 0.55, 0.7), self.colour, 0))
        boxes.append((beam(tip, end, 0.4, 0.5), self.colour, 0))
        bucket_end = end + np.array([*(fwd * 0.6), -0.7])
        bucket_end[2] = max(bucket_end[2], 0.1)
        boxes.append((beam(end, bucket_end, 1.0, 0.8), (50, 55, 60), 0))
        return p, boxes, []

    # -- truck ------------------------------------------------------------------------------
    def _truck(self, t, wind):
        p, heading, moving, fwd_dir = _pingpong(self.path, self.spec.speed, self.spec.pause_s, t, self.phase)
        if not fwd_dir:
            heading += math.pi
        c, s = math.cos(heading), math.sin(heading)
        fwd = np.array([s, c])
        side = np.array([c, -s])
        boxes = []
        for off in (2.6, -1.2, -2.6):
            for k in (-1, 1):
                q = p + fwd * off + side * 1.05 * k
                boxes.append((box((q[0], q[1], 0.0), (0.45, 1.05, 1.05), heading), (30, 30, 32), 0))
        boxes.append((box((p[0], p[1], 0.55), (2.3, 7.6, 0.5), heading), DARK, 0))
        cab = p + fwd * 2.8
        boxes.append((box((cab[0], cab[1], 1.05), (2.45, 1.9, 1.9), heading), self.colour, 0))
        bed = p - fwd * 1.0
        boxes.append((box((bed[0], bed[1], 1.15), (2.45, 5.2, 1.35), heading), tuple(self.spec.params.get("bed", (40, 90, 170))), 5))
        return p, boxes, []

    # -- crane hook and load ----------------------------------------------------------------
    def _crane_load(self, t, wind):
        mast = np.asarray(self.spec.params["mast"], float)
        radius = self.spec.params.get("radius", 11.0) + 1.5 * math.sin(2 * math.pi * (t + self.phase) / 23.0)
        a0 = self.spec.params.get("angle", 0.0)
        ang = a0 + self.spec.params.get("swing", 0.55) * math.sin(2 * math.pi * (t + self.phase) / 20.0)
        hook = mast + radius * np.array([math.cos(ang), math.sin(ang)])
        sway = (0.25 + 1.2 * wind) * np.array([math.sin(1.3 * t + self.phase), math.cos(0.9 * t + 2 * self.phase)])
        hook = hook + sway
        z_hook = self.spec.params.get("height", 6.5) + 0.8 * math.sin(2 * math.pi * (t + self.phase) / 13.0)
        top = np.array([hook[0] - sway[0], hook[1] - sway[1], 45.0])
        hk = np.array([hook[0], hook[1], z_hook])
        yaw = 0.4 * t + self.phase
        load_z = z_hook - 2.0
        boxes = [(box((hook[0], hook[1], z_hook - 0.45), (0.35, 0.35, 0.5), 0.0), CAT_YELLOW, 0)]
        kind = self.spec.params.get("load", "rebar")
        if kind == "rebar":
            size, col = (0.7, 5.0, 0.45), (45, 70, 120)
        else:
            size, col = (1.4, 1.4, 1.2), (140, 140, 138)
        lb = box((hook[0], hook[1], load_z), size, yaw)
        boxes.append((lb, col, 8 if kind == "rebar" else 0))
        lines = [(top, hk + [0, 0, 0.05], (40, 40, 40), 1)]
        for ci in (4, 5, 6, 7):
            lines.append((hk - [0, 0, 0.45], lb[ci], (60, 60, 60), 1))
        return hook, boxes, lines
