"""Plane geometry shared by the runtime, the compiler and the simulator.

Image pixels <-> ground metres through a 3x3 homography, point-in-polygon tests, and the
checks that decide whether a calibration can be trusted. numpy and OpenCV only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class CalibrationError(ValueError):
    """A calibration whose homography cannot be solved or is too ill-conditioned to trust."""


@dataclass(frozen=True)
class Homography:
    """A solved image->ground mapping with its quality figures.

    `matrix` maps homogeneous image pixels (u, v, 1) to ground metres (x, y, 1).
    `reprojection_px` is the RMS error, in pixels, of the ground points mapped back to the image.
    `condition` is the condition number of the matrix after normalising both point sets
    (Hartley), so it measures the geometry, not the units.
    """

    matrix: np.ndarray
    reprojection_px: float
    condition: float

    @property
    def inverse(self) -> np.ndarray:
        return np.linalg.inv(self.matrix)

    def to_ground(self, pixels: np.ndarray) -> np.ndarray:
        return apply(self.matrix, pixels)

    def to_image(self, metres: np.ndarray) -> np.ndarray:
        return apply(self.inverse, metres)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 3x3 homography; returns (N, 2) float64."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    homog = np.hstack([pts, np.ones((len(pts), 1))]) @ np.asarray(matrix, dtype=np.float64).T
    w = homog[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = homog[:, :2] / w
    return out


def _normaliser(points: np.ndarray) -> np.ndarray:
    """Hartley normalisation: centroid to origin, mean distance sqrt(2)."""
    centre = points.mean(axis=0)
    spread = np.sqrt(((points - centre) ** 2).sum(axis=1)).mean()
    if spread < 1e-12:
        raise CalibrationError("all calibration points coincide")
    s = np.sqrt(2.0) / spread
    return np.array([[s, 0, -s * centre[0]], [0, s, -s * centre[1]], [0, 0, 1.0]])


def _collinear(points: np.ndarray, tol: float = 1e-3) -> bool:
    """True when the points lie (almost) on one line, relative to their spread."""
    centred = points - points.mean(axis=0)
    sv = np.linalg.svd(centred, compute_uv=False)
    return sv[0] < 1e-12 or sv[1] / sv[0] < tol


def solve_homography(image_px, ground_m, max_condition: float = 1e7) -> Homography:
    """Direct linear transform with Hartley normalisation over >= 4 point pairs.

    Raises CalibrationError when the points are too few, collinear, or the solution is
    degenerate or ill-conditioned (so a typo in one coordinate is caught, not silently used).
    """
    src = np.asarray(image_px, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(ground_m, dtype=np.float64).reshape(-1, 2)
    if len(src) != len(dst):
        raise CalibrationError(f"{len(src)} image points but {len(dst)} ground points; give them in pairs")
    if len(src) < 4:
        raise CalibrationError(f"{len(src)} point pairs; a homography needs at least 4")
    if _collinear(src) or _collinear(dst):
        which = "image" if _collinear(src) else "ground"
        raise CalibrationError(f"the {which} points are (nearly) collinear; spread them over the ground plane")
    t_src, t_dst = _normaliser(src), _normaliser(dst)
    a = apply(t_src, src)
    b = apply(t_dst, dst)
    rows = []
    for (x, y), (u, v) in zip(a, b):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, sv, vt = np.linalg.svd(np.asarray(rows))
    h_norm = vt[-1].reshape(3, 3)
    if abs(h_norm[2, 2]) < 1e-12 and abs(np.linalg.det(h_norm)) < 1e-12:
        raise CalibrationError("the point pairs do not determine a homography")
    cond = float(np.linalg.cond(h_norm))
    if not np.isfinite(cond) or cond > max_condition:
        raise CalibrationError(
            f"the homography is ill-conditioned (condition number {cond:.3g}); check for swapped or mistyped points"
        )
    h = np.linalg.inv(t_dst) @ h_norm @ t_src
    h = h / h[2, 2] if abs(h[2, 2]) > 1e-12 else h
    back = apply(np.linalg.inv(h), dst)
    err = float(np.sqrt(((back - src) ** 2).sum(axis=1).mean()))
    # points must map in front of the camera: the homogeneous w keeps one sign over the points
    w = (np.hstack([src, np.ones((len(src), 1))]) @ h.T)[:, 2]
    if not (np.all(w > 0) or np.all(w < 0)):
        raise CalibrationError("the ground points fold over the horizon; check that image and ground points are in the same order")
    return Homography(matrix=h, reprojection_px=err, condition=cond)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised: (N, 2) points, (M, 2) polygon -> (N,) bool."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    x, y = pts[:, 0:1], pts[:, 1:2]
    x1, y1 = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    crosses = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    inside = crosses & (x < xint)
    return (inside.sum(axis=1) % 2) == 1


def _segments_intersect(p1, p2, p3, p4) -> bool:
    def orient(a, b, c):
        v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return 0 if abs(v) < 1e-12 else (1 if v > 0 else -1)

    def on_seg(a, b, c):
        return min(a[0], b[0]) - 1e-12 <= c[0] <= max(a[0], b[0]) + 1e-12 and min(a[1], b[1]) - 1e-12 <= c[1] <= max(a[1], b[1]) + 1e-12

    o1, o2, o3, o4 = orient(p1, p2, p3), orient(p1, p2, p4), orient(p3, p4, p1), orient(p3, p4, p2)
    if o1 != o2 and o3 != o4:
        return True
    return (
        (o1 == 0 and on_seg(p1, p2, p3))
        or (o2 == 0 and on_seg(p1, p2, p4))
        or (o3 == 0 and on_seg(p3, p4, p1))
        or (o4 == 0 and on_seg(p3, p4, p2))
    )


def polygon_self_intersection(polygon) -> tuple[int, int] | None:
    """Indices of the first two non-adjacent edges that cross, or None for a simple polygon."""
    poly = [tuple(map(float, p)) for p in polygon]
    n = len(poly)
    for i in range(n):
        a1, a2 = poly[i], poly[(i + 1) % n]
        for j in range(i + 1, n):
            if j == i or (j + 1) % n == i or (i + 1) % n == j:
                continue
            if _segments_intersect(a1, a2, poly[j], poly[(j + 1) % n]):
                return i, j
    return None


def polygon_area(polygon) -> float:
    p = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    return float(0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1))))
