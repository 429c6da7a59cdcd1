"""Where workers may walk: the visible ground, minus structures, optionally minus danger zones."""
from __future__ import annotations

import numpy as np

from runtime.geometry import apply, points_in_polygon

from .camera import Camera


def segment_distance(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Distance (metres) from (N, 2) points to the edges of a closed polygon."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 1, 2)
    a = np.asarray(polygon, dtype=np.float64)
    b = np.roll(a, -1, axis=0)
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    closest = a + t[..., None] * ab
    return np.sqrt(((p - closest) ** 2).sum(-1)).min(axis=1)


def circle(centre, radius: float, n: int = 32) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)], -1)


class Site:
    """Walkable ground for one scene: visible region, obstacles (inflated footprints), danger zones."""

    def __init__(self, camera: Camera, obstacles: list[np.ndarray], zones: list[np.ndarray],
                 max_range: float = 45.0, margin_px: tuple = (0.05, 0.16, 0.05, 0.02)):
        w, h = camera.width, camera.height
        l, t, r, b = margin_px
        corners = np.array([[l * w, t * h], [(1 - r) * w, t * h], [(1 - r) * w, (1 - b) * h], [l * w, (1 - b) * h]])
        self.region = apply(camera.homography, corners)
        self._h = camera.homography
        self._px_box = (corners[0], corners[2])
        self.camera_xy = np.asarray(camera.position[:2])
        self.max_range = max_range
        self.obstacles = obstacles
        self.zones = zones

    def ok(self, pts: np.ndarray, avoid_zones: float | None = None) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        good = points_in_polygon(pts, self.region)
        good &= np.hypot(*(pts - self.camera_xy).T) < self.max_range
        for ob in self.obstacles:
            good &= ~points_in_polygon(pts, ob)
        if avoid_zones is not None:
            for z in self.zones:
                good &= ~points_in_polygon(pts, z)
                good &= segment_distance(pts, z) > avoid_zones
        return good

    def segment_ok(self, a, b, avoid_zones: float | None = None) -> bool:
        a, b = np.asarray(a, float), np.asarray(b, float)
        n = max(2, int(np.hypot(*(b - a)) / 0.25) + 1)
        pts = a + (b - a) * np.linspace(0, 1, n)[:, None]
        return bool(self.ok(pts, avoid_zones).all())

    def sample(self, rng, avoid_zones: float | None = 1.5, near=None, radius: float = 8.0, tries: int = 200):
        """A free ground point: near `near` (uniform in metres) or anywhere in view (uniform in the
        image, so people spread over the picture rather than crowding the far, wide ground)."""
        lo, hi = self._px_box
        for _ in range(tries):
            if near is not None:
                p = np.asarray(near, float) + rng.uniform(-radius, radius, 2)
            else:
                p = apply(self._h, rng.uniform(lo, hi)[None])[0]
            if self.ok(p, avoid_zones)[0]:
                return p
        return None

    def path_to(self, rng, a, avoid_zones: float | None = 1.5, near=None, radius: float = 8.0, tries: int = 60,
                cross_zones: bool = False):
        """A reachable point from `a` along a free straight segment (which may cross zones when
        `cross_zones`: the way out of a zone)."""
        for _ in range(tries):
            p = self.sample(rng, avoid_zones, near=near, radius=radius, tries=20)
            if p is not None and np.hypot(*(p - a)) > 1.5 and self.segment_ok(a, p, None if cross_zones else avoid_zones):
                return p
        return None
