"""The static background of a scene for one camera: textured ground (dirt, concrete slabs, a haul
road with ruts), painted zone borders and walkway lines, sky where the camera sees it, and the
static structures drawn far to near. Built once per (scene, camera, surface); every frame copies
it. Each structure keeps a mask so it can be re-pasted over workers who walk behind it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from runtime.geometry import points_in_polygon

from .camera import Camera
from .shapes import draw_box, line3d
from .site import segment_distance
from .structures import Built

DIRT = np.array([88, 104, 120], np.float32)
CONCRETE = np.array([158, 160, 158], np.float32)
ROAD = np.array([112, 118, 122], np.float32)
HAZARD_YELLOW = np.array([20, 205, 240], np.float32)
HAZARD_BLACK = np.array([35, 35, 35], np.float32)
PAINT = {"white": (225, 228, 228), "yellow": (25, 200, 235), "green": (60, 160, 60)}


@dataclass
class Occluder:
    depth: float
    y0: int
    y1: int
    x0: int
    x1: int
    mask: np.ndarray             # bool (y1-y0, x1-x0)


@dataclass
class Background:
    image: np.ndarray            # HxWx3 uint8
    occluders: list              # Occluder, far to near
    ground_depth: np.ndarray     # HxW float32, distance (m) from the camera to the ground seen there (inf: sky)


def _noise_grid(seed: int, size: int = 256) -> np.ndarray:
    g = np.random.default_rng(seed).random((size, size)).astype(np.float32)
    # blur a tiled copy so the grid stays seamless under BORDER_WRAP sampling
    big = cv2.GaussianBlur(np.tile(g, (3, 3)), (0, 0), 0.8)
    return np.ascontiguousarray(big[size:2 * size, size:2 * size])


def _sample(grid, gx, gy, cell):
    n = grid.shape[0]
    mx = np.mod(gx / cell, n).astype(np.float32)
    my = np.mod(gy / cell, n).astype(np.float32)
    return cv2.remap(grid, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def render_background(cam: Camera, scene, built: list[Built], surface: str = "dry", seed: int = 0) -> Background:
    gx, gy, valid = cam.pixel_rays_ground()
    gx = np.where(valid, gx, 0.0)
    gy = np.where(valid, gy, 0.0)
    cx, cy, cz = cam.position
    dist = np.sqrt((gx - cx) ** 2 + (gy - cy) ** 2 + cz**2)
    fp = (dist / cam.focal_px).astype(np.float32)  # metres per pixel on the ground
    grid = _noise_grid(seed + 17)
    grid2 = _noise_grid(seed + 29)

    def octave(g, cell, amp):
        w = np.clip((cell / np.maximum(fp, 1e-4) - 1.0) / 3.0, 0, 1)
        return (_sample(g, gx, gy, cell) - 0.5) * amp * w

    n = octave(grid, 7.0, 0.30) + octave(grid2, 1.8, 0.20) + octave(grid, 0.45, 0.16) + octave(grid2, 0.11, 0.24)
    tint = _sample(grid2, gx + 100, gy, 9.0)
    col = DIRT[None, None, :] * (1 + n[..., None])
    col = col * (0.9 + 0.2 * tint[..., None]) + np.array([0, 4, 10], np.float32) * (tint[..., None] - 0.5)
    pts = np.stack([gx.ravel(), gy.ravel()], -1)
    # concrete slabs with expansion joints every 4 m
    for slab in scene.slabs:
        inside = points_in_polygon(pts, np.asarray(slab)).reshape(gx.shape) & valid
        joint = (np.minimum(np.mod(gx, 4.0), 4.0 - np.mod(gx, 4.0)) < np.maximum(0.015, fp * 0.5)) | (
            np.minimum(np.mod(gy, 4.0), 4.0 - np.mod(gy, 4.0)) < np.maximum(0.015, fp * 0.5))
        c2 = CONCRETE[None, None, :] * (1 + 0.5 * n[..., None]) * np.where(joint, 0.72, 1.0)[..., None]
        col = np.where(inside[..., None], c2, col)
    # haul roads with tyre ruts
    for road in scene.roads:
        line = np.asarray(road["centre"], float)
        d = segment_distance(pts, np.vstack([line, line[::-1]])).reshape(gx.shape)
        w = road.get("width", 7.0) / 2
        on = (d < w) & valid
        ruts = np.abs(np.abs(d - 0.0) - 1.0) < 0.3
        c2 = ROAD[None, None, :] * (1 + 0.8 * n[..., None]) * np.where(ruts, 0.8, 1.0)[..., None]
        col = np.where(on[..., None], c2, col)
    # painted danger-zone borders: hazard stripes 0.3 m wide inside the edge
    for zone in scene.zones:
        if zone.polygon is None or not zone.painted:
            continue
        poly = np.asarray(zone.polygon, float)
        inside = points_in_polygon(pts, poly).reshape(gx.shape)
        d = segment_distance(pts, poly).reshape(gx.shape)
        cover = np.clip((0.3 - d) / np.maximum(fp, 1e-3) + 0.5, 0, 1) * inside * valid
        stripe = (np.floor((gx + gy) / 0.45) % 2 == 0)[..., None]
        paint = np.where(stripe, HAZARD_YELLOW, HAZARD_BLACK) * (1 + 0.3 * n[..., None])
        col = col * (1 - cover[..., None]) + paint * cover[..., None]
    for mark in scene.paint:
        line = np.asarray(mark["polyline"], float)
        d = np.full(gx.shape, np.inf)
        for a, b in zip(line[:-1], line[1:]):
            d = np.minimum(d, segment_distance(pts, np.array([a, b, a])).reshape(gx.shape))
        half = mark.get("width", 0.12) / 2
        cover = np.clip((half - d) / np.maximum(fp, 1e-3) + 0.5, 0, 1) * valid
        if mark.get("dash"):
            s = np.mod(gx + gy, 2 * mark["dash"]) < mark["dash"]
            cover = cover * s
        paint = np.array(PAINT[mark.get("colour", "white")], np.float32) * (1 + 0.3 * n[..., None])
        col = col * (1 - cover[..., None]) + paint * cover[..., None]
    if surface == "wet":
        sheen = _sample(grid, gx, gy, 2.5)[..., None]
        col = col * 0.62 + np.where(sheen > 0.62, 40.0, 0.0) * (sheen - 0.62) * 4
    elif surface == "snow":
        cov = np.clip((_sample(grid2, gx, gy, 1.3) - 0.05) * 2.5, 0, 1)[..., None] * 0.92
        col = col * (1 - cov) + np.array([214, 212, 208], np.float32) * (1 + 0.12 * n[..., None]) * cov
    # distance haze, then sky where there is no ground
    haze = (1 - np.exp(-dist / 220.0))[..., None]
    col = col * (1 - haze) + np.array([190, 185, 178], np.float32) * haze
    v = np.linspace(0, 1, cam.height, dtype=np.float32)[:, None, None]
    sky = np.array([215, 190, 160], np.float32) * (1 - v * 0.3) + np.array([40, 40, 40], np.float32) * v
    col = np.where(valid[..., None], col, np.broadcast_to(sky, col.shape))
    img = np.clip(col, 0, 255).astype(np.uint8)

    # structures, far to near
    order = sorted(built, key=lambda b: -float(cam.depth(b.centre)))
    occluders = []
    snow = surface == "snow"
    for b in order:
        mask = np.zeros((cam.height, cam.width), np.uint8)
        parts = sorted(b.boxes, key=lambda p: -float(cam.depth(p[0].mean(axis=0))))
        for corners, colour, ribs in parts:
            draw_box(img, mask, 1, cam, corners, colour, ribs)
            if snow:
                _snow_top(img, cam, corners)
        for p0, p1, colour, th in b.lines:
            line3d(img, cam, p0, p1, colour, th, lab=mask, lab_id=1)
        ys, xs = np.nonzero(mask)
        if len(ys):
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            occluders.append(Occluder(float(cam.depth(b.centre)), y0, y1, x0, x1, mask[y0:y1, x0:x1].astype(bool)))
    ground_depth = np.where(valid, dist, np.inf).astype(np.float32)
    return Background(img, occluders, ground_depth)


def _snow_top(img, cam, corners):
    uv, z = cam.project(corners[4:])
    if (z > 0.1).all():
        cv2.fillConvexPoly(img, np.round(uv * 8).astype(np.int32), (236, 236, 238), cv2.LINE_8, 3)
