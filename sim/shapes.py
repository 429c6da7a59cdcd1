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


_FACE_IDX = np.array(FACES)


def ambient_k(normals: np.ndarray, ambient: float = 0.5) -> np.ndarray:
    return (ambient + (1 - ambient) * np.maximum(0.0, normals @ SUN)) * 1.08


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
    fc = corners[_FACE_IDX]                                   # (6, 4, 3)
    a, b = fc[:, 1] - fc[:, 0], fc[:, 3] - fc[:, 0]
    n = np.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                  a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], -1)
    nn = np.sqrt((n * n).sum(-1))
    n = n / np.maximum(nn, 1e-12)[:, None]
    facing = ((cpos - fc.mean(axis=1)) * n).sum(-1)
    lit = ambient_k(n)
    for fi in np.nonzero((facing > 0) & (nn > 1e-12))[0]:
        f = FACES[fi]
        col = tuple(int(min(255, c * lit[fi])) for c in colour)
        poly = ip[_FACE_IDX[fi]]
        cv2.fillConvexPoly(img, poly, col, cv2.LINE_8, SHIFT)
        if lab is not None:
            cv2.fillConvexPoly(lab, poly, lab_id, cv2.LINE_8, SHIFT)
        n_f = n[fi]
        if ribs and abs(n_f[2]) < 0.5:
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


def draw_boxes(img, lab, lab_id, cam: Camera, boxes: list) -> np.ndarray | None:
    """Draw several boxes [(corners (8,3), colour, ribs)] far to near with one projection for all;
    returns the pixel bounds (x0, y0, x1, y1) of what was drawn, or None."""
    corners = np.stack([b[0] for b in boxes])                      # (n, 8, 3)
    uv, z = cam.project(corners)
    ok = (z > 0.05).all(axis=1)
    if not ok.any():
        return None
    fc = corners[:, _FACE_IDX]                                      # (n, 6, 4, 3)
    a, b = fc[:, :, 1] - fc[:, :, 0], fc[:, :, 3] - fc[:, :, 0]
    n = np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1], a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                  a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], -1)
    nn = np.sqrt((n * n).sum(-1))
    n = n / np.maximum(nn, 1e-12)[..., None]
    centre = fc.sum(axis=2) * 0.25
    facing = ((np.asarray(cam.position) - centre) * n).sum(-1)
    visible = (facing > 0) & (nn > 1e-12)
    lit = ambient_k(n)
    depth = z.mean(axis=1)
    ip = np.round(uv * ONE).astype(np.int32)
    for i in np.argsort(-depth, kind="stable"):
        if not ok[i]:
            continue
        colour, ribs = boxes[i][1], boxes[i][2]
        for fi in np.nonzero(visible[i])[0]:
            k = lit[i, fi]
            col = (min(255, int(colour[0] * k)), min(255, int(colour[1] * k)), min(255, int(colour[2] * k)))
            poly = ip[i, _FACE_IDX[fi]]
            cv2.fillConvexPoly(img, poly, col, cv2.LINE_8, SHIFT)
            if lab is not None:
                cv2.fillConvexPoly(lab, poly, lab_id, cv2.LINE_8, SHIFT)
            if ribs and abs(n[i, fi, 2]) < 0.5:
                dark = tuple(int(c * 0.72) for c in col)
                q = uv[i, _FACE_IDX[fi]]
                for r in range(1, ribs):
                    p0 = q[0] + (q[1] - q[0]) * r / ribs
                    p1 = q[3] + (q[2] - q[3]) * r / ribs
                    cv2.line(img, (int(p0[0] * ONE), int(p0[1] * ONE)), (int(p1[0] * ONE), int(p1[1] * ONE)), dark, 1, cv2.LINE_8, SHIFT)
    u = uv[ok].reshape(-1, 2)
    return np.array([u[:, 0].min(), u[:, 1].min(), u[:, 0].max(), u[:, 1].max()])
