"""Static structures that occlude: shipping containers, a site office, material stacks, rebar,
jersey barriers, hoarding, a tower-crane mast (lattice) and a concrete frame under construction."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .shapes import beam, box

CONTAINER_COLOURS = [(40, 60, 150), (120, 80, 30), (50, 100, 60), (30, 90, 170), (110, 110, 112)]
CRANE_YELLOW = (10, 185, 235)


@dataclass(frozen=True)
class StructureSpec:
    kind: str                    # container | office | stack | rebar | barrier | hoarding | mast | building
    at: tuple                    # ground (x, y) of the centre, metres
    yaw_deg: float = 0.0
    size: tuple | None = None    # kind-specific size override (w, l, h) or (length,) for rows
    colour: tuple | None = None
    params: dict = field(default_factory=dict)


@dataclass
class Built:
    spec: StructureSpec
    boxes: list                  # (corners (8,3), colour, ribs)
    lines: list                  # (p0, p1, colour, thickness)
    footprint: np.ndarray        # ground polygon (metres) walkers keep out of
    centre: np.ndarray           # 3D point used for depth order


def _footprint(boxes, pad=0.4):
    pts = np.vstack([b[0][:4, :2] for b in boxes])
    lo, hi = pts.min(axis=0) - pad, pts.max(axis=0) + pad
    return np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])


def build(spec: StructureSpec, index: int = 0) -> Built:
    x, y = spec.at
    yaw = math.radians(spec.yaw_deg)
    c, s = math.cos(yaw), math.sin(yaw)
    along = np.array([s, c])
    boxes, lines = [], []
    k = spec.kind
    if k == "container":
        size = spec.size or (2.44, 6.06, 2.59)
        col = spec.colour or CONTAINER_COLOURS[index % len(CONTAINER_COLOURS)]
        boxes.append((box((x, y, 0), size, yaw), col, 14))
        if spec.params.get("stacked"):
            boxes.append((box((x, y, size[2]), size, yaw), CONTAINER_COLOURS[(index + 2) % 5], 14))
    elif k == "office":
        size = spec.size or (3.0, 6.0, 2.7)
        boxes.append((box((x, y, 0), size, yaw), spec.colour or (215, 215, 210), 0))
        side = np.array([c, -s])
        for off in (-1.6, 1.2):
            p = np.array([x, y]) + along * off + side * (size[0] / 2 + 0.02)
            boxes.append((box((p[0], p[1], 1.1), (0.04, 1.2, 0.9), yaw), (90, 75, 60), 0))
            p = np.array([x, y]) + along * off - side * (size[0] / 2 + 0.02)
            boxes.append((box((p[0], p[1], 1.1), (0.04, 1.2, 0.9), yaw), (90, 75, 60), 0))
    elif k == "stack":
        n = spec.params.get("n", 3)
        col = spec.colour or (60, 80, 150)
        for i in range(n):
            p = np.array([x, y]) + along * (i - (n - 1) / 2) * 1.25
            h = 0.9 if i % 2 == 0 else 1.3
            boxes.append((box((p[0], p[1], 0.0), (1.1, 1.1, 0.15), yaw), (80, 120, 150), 0))
            boxes.append((box((p[0], p[1], 0.15), (1.05, 1.05, h), yaw), col, 5))
    elif k == "rebar":
        size = spec.size or (1.4, 6.0, 0.45)
        boxes.append((box((x, y, 0.0), (size[0], size[1] - 0.4, 0.12), yaw), (70, 90, 110), 0))
        boxes.append((box((x, y, 0.12), size, yaw), spec.colour or (40, 65, 115), 10))
    elif k == "barrier":
        length = (spec.size or (8.0,))[0]
        n = max(1, int(round(length / 2.0)))
        for i in range(n):
            p = np.array([x, y]) + along * (i - (n - 1) / 2) * 2.05
            col = (40, 40, 200) if i % 2 == 0 else (225, 225, 225)
            boxes.append((box((p[0], p[1], 0.0), (0.6, 2.0, 0.8), yaw), col, 0))
    elif k == "hoarding":
        length = (spec.size or (20.0,))[0]
        n = max(1, int(round(length / 2.5)))
        col = spec.colour or (60, 90, 40)
        for i in range(n):
            p = np.array([x, y]) + along * (i - (n - 1) / 2) * 2.5
            boxes.append((box((p[0], p[1], 0.0), (0.08, 2.45, 2.4), yaw), col, 3))
    elif k == "mast":
        half = 0.85
        height = spec.params.get("height", 46.0)
        corners = [np.array([x - half, y - half]), np.array([x + half, y - half]),
                   np.array([x + half, y + half]), np.array([x - half, y + half])]
        for q in corners:
            boxes.append((beam((q[0], q[1], 0.0), (q[0], q[1], height), 0.16, 0.16), CRANE_YELLOW, 0))
        boxes.append((box((x, y, -0.0), (3.0, 3.0, 0.6), 0.0), (150, 150, 148), 0))
        step = 1.7
        zs = np.arange(0.6, height, step)
        for i in range(4):
            a, b = corners[i], corners[(i + 1) % 4]
            for z in zs:
                lines.append(((a[0], a[1], z), (b[0], b[1], z), CRANE_YELLOW, 1))
                lines.append(((a[0], a[1], z), (b[0], b[1], z + step), CRANE_YELLOW, 1))
    elif k == "building":
        bays = spec.params.get("bays", (4, 2))
        floors = spec.params.get("floors", 3)
        bay = 6.0
        grey = spec.colour or (150, 152, 150)
        side = np.array([c, -s])
        for f in range(floors + 1):
            z = f * 3.6
            slab_c = np.array([x, y])
            if f > 0:
                boxes.append((box((slab_c[0], slab_c[1], z - 0.3), (bays[0] * bay + 0.6, bays[1] * bay + 0.6, 0.3), yaw), grey, 0))
            if f == floors:
                break
            for i in range(bays[0] + 1):
                for j in range(bays[1] + 1):
                    p = slab_c + side * (i - bays[0] / 2) * bay + along * (j - bays[1] / 2) * bay
                    boxes.append((box((p[0], p[1], z), (0.5, 0.5, 3.3), yaw), (130, 132, 130), 0))
    else:
        raise ValueError(f"unknown structure kind {k!r}")
    corners = np.vstack([b[0] for b in boxes])
    centre = corners.mean(axis=0)
    return Built(spec, boxes, lines, _footprint(boxes), centre)
