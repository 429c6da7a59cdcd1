"""Shaded 3D boxes projected through the camera: the building block of machines and structures."""
from __future__ import annotations

import math

import cv2
import numpy as np

from .camera import Camera

SHIFT = 3
ONE = 1 << SHIFT
SUN = np.array([-0.45, -0.35, 0.82])
SUN = SUN / np.linalg.norm(SUN)
# faces as corner indices, counter-clockwise seen from outside; corners: bottom 0-3, top 4-7
FACES = ((0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7))


def box(centre_bottom, size, yaw: float = 0.0) -> np.ndarray:
    """(8, 3) corners of a box standing on `centre_bottom` (x, y, z); size (width x, length y, height z);
    yaw in radians (0 = length along +Y, positive toward +X)."""
    w, l, h = size
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array([[-w / 2, -l / 2], [w / 2, -l / 2], [w / 2, l / 2], [-w / 2, l / 2]])
    xy = np.stack([local[:, 0] * c + local[:, 1] * s, -local[:, 0] * s + local[:, 1] * c], -1) + centre_bottom[:2]
    z0 = centre_bottom[2]
    return np.vstack([np.column_stack([xy, np.full(4, z0)]), np.column_stack([xy, np.full(4, z0 + h)])])


def beam(p0, p1, width: float, height: float) -> np.ndarray:
    """(8, 3) corners of a box along the segment p0 -> p1."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    d /= max(np.linalg.norm(d), 1e-9)
    side = np.cross(d, [0.0, 0.0, 1.0])
    if np.linalg.norm(side) < 1e-6:
        side = np.array([1.0, 0.0, 0.0])
    side /= np.linalg.norm(side)
    up = np.cross(side, d)
    sw, uh = side * width / 2, up * height / 2
    base = [p0 - sw - uh, p0 + sw - uh, p1 + sw - uh, p1 - sw - uh]
    top = [p0 - sw + uh, p0 + sw + uh, p1 + sw + uh, p1 - sw + uh]
    return np.array(base + top)


def shade(colour, normal, ambient: float = 0.5) -> tuple:
    k = ambient + (1 - ambient) * max(0.0, float(normal @ SUN))
    return tuple(int(min(255, c * k * 1.08)) for c in colour)


def draw_box(img, lab, lab_id, cam: Camera, corners: np.ndarray, colour, ribs: int = 0, uv=None) -> np.ndarray:
    """Draw the faces of a box that face the camera; returns its projected corners (8, 2).

    ribs > 0 draws that many vertical corrugation lines on the side faces (containers, hoardings).
    """
    if uv is None:
        uv, z = cam.project(corners)
        if (z <= 0.05).any():
            return uv
    cpos = np.asarray(cam.position)
    ip = np.round(uv * ONE).astype(np.int32)
    for f in FACES:
        p = corners[list(f)]
        n = np.cross(p[1] - p[0], p[3] - p[0])
        nn = np.linalg.norm(n)
        if nn < 1e-12:
            continue
        n = n / nn
        if n @ (cpos - p.mean(axis=0)) <= 0:
            continue
        col = shade(colour, n)
        poly = ip[list(f)]
        cv2.fillConvexPoly(img, poly, col, cv2.LINE_8, SHIFT)
        if lab is not None:
            cv2.fillConvexPoly(lab, poly, lab_id, cv2.LINE_8, SHIFT)
        if ribs and abs(n[2]) < 0.5:
            dark = tuple(int(c * 0.72) for c in col)
            q = uv[list(f)]
            for k in range(1, ribs):
                a = q[0] + (q[1] - q[0]) * k / ribs
                b = q[3] + (q[2] - q[3]) * k / ribs
                cv2.line(img, (int(a[0] * ONE), int(a[1] * ONE)), (int(b[0] * ONE), int(b[1] * ONE)), dark, 1, cv2.LINE_8, SHIFT)
    return uv


def line3d(img, cam: Camera, p0, p1, colour, thickness: int = 1, lab=None, lab_id=0) -> np.ndarray | None:
    """A 3D segment clipped to the front of the camera; returns its two pixel ends or None."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    z0, z1 = cam.depth(p0), cam.depth(p1)
    near = 0.2
    if z0 < near and z1 < near:
        return None
    if z0 < near:
        p0 = p0 + (p1 - p0) * (near - z0) / (z1 - z0)
    elif z1 < near:
        p1 = p1 + (p0 - p1) * (near - z1) / (z0 - z1)
    uv, _ = cam.project(np.array([p0, p1]))
    uv = np.clip(uv, -1e4, 1e4)
    a = (int(uv[0, 0] * ONE), int(uv[0, 1] * ONE))
    b = (int(uv[1, 0] * ONE), int(uv[1, 1] * ONE))
    cv2.line(img, a, b, colour, thickness, cv2.LINE_8, SHIFT)
    if lab is not None:
        cv2.line(lab, a, b, lab_id, thickness, cv2.LINE_8, SHIFT)
    return uv
