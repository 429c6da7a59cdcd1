"""A pinhole camera over the ground plane.

World frame: X to the right, Y forward (away from the camera), Z up, metres. The camera looks
along its yaw (0 = +Y, positive turns toward +X), pitched down by `pitch_deg`, rolled by
`roll_deg`. Square pixels, principal point at the image centre, no distortion. OpenCV camera
axes: x right, y down, z forward.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Camera:
    position: tuple[float, float, float] = (0.0, 0.0, 10.0)
    yaw_deg: float = 0.0
    pitch_deg: float = 30.0
    roll_deg: float = 0.0
    hfov_deg: float = 70.0
    width: int = 640
    height: int = 360

    # -- intrinsics -------------------------------------------------------------------------
    @property
    def focal_px(self) -> float:
        """Focal length in pixels; it scales with the width, so the horizontal FOV is fixed."""
        return (self.width / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)

    @cached_property
    def K(self) -> np.ndarray:
        f = self.focal_px
        return np.array([[f, 0.0, self.width / 2.0], [0.0, f, self.height / 2.0], [0.0, 0.0, 1.0]])

    # -- extrinsics -------------------------------------------------------------------------
    @cached_property
    def R(self) -> np.ndarray:
        """World -> camera rotation (rows: camera x/right, y/down, z/forward in world axes)."""
        yaw, pitch, roll = (math.radians(a) for a in (self.yaw_deg, self.pitch_deg, self.roll_deg))
        fwd = np.array([math.sin(yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch), -math.sin(pitch)])
        right = np.array([math.cos(yaw), -math.sin(yaw), 0.0])
        down = np.cross(fwd, right)
        r2 = math.cos(roll) * right + math.sin(roll) * down
        d2 = -math.sin(roll) * right + math.cos(roll) * down
        return np.stack([r2, d2, fwd])

    @cached_property
    def t(self) -> np.ndarray:
        return -self.R @ np.asarray(self.position, dtype=np.float64)

    @cached_property
    def _P(self) -> np.ndarray:
        return self.K @ np.hstack([self.R, self.t[:, None]])

    # -- projections ------------------------------------------------------------------------
    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., 3) world points -> ((..., 2) pixels, (...) depth along the optical axis)."""
        p = np.asarray(points, dtype=np.float64)
        h = p @ self._P[:, :3].T + self._P[:, 3]
        z = h[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = h[..., :2] / z[..., None]
        return uv, z

    def depth(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        return p @ self.R[2] + self.t[2]

    @cached_property
    def ground_to_image(self) -> np.ndarray:
        """3x3 homography: ground metres (x, y, 1) -> image pixels."""
        h = self.K @ np.column_stack([self.R[:, 0], self.R[:, 1], self.t])
        return h / h[2, 2]

    @cached_property
    def homography(self) -> np.ndarray:
        """3x3 homography: image pixels (u, v, 1) -> ground metres (x, y, 1)."""
        h = np.linalg.inv(self.ground_to_image)
        return h / h[2, 2]

    def pixel_rays_ground(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pixel centre: ground X, Y (metres) and a validity mask (the ray hits the ground
        in front of the camera, closer than 400 m)."""
        u, v = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        hm = self.homography
        w = hm[2, 0] * u + hm[2, 1] * v + hm[2, 2]
        gx = (hm[0, 0] * u + hm[0, 1] * v + hm[0, 2]) / w
        gy = (hm[1, 0] * u + hm[1, 1] * v + hm[1, 2]) / w
        # the ray direction's z must point down for a hit in front of the camera
        rays = np.stack([(u - self.width / 2) / self.focal_px, (v - self.height / 2) / self.focal_px, np.ones_like(u)], -1)
        dz = rays @ self.R[:, 2]  # world z of each ray direction
        cx, cy, _ = self.position
        valid = (dz < -1e-6) & ((gx - cx) ** 2 + (gy - cy) ** 2 < 400.0**2)
        return gx, gy, valid

    # -- variants ---------------------------------------------------------------------------
    def with_resolution(self, width: int, height: int) -> "Camera":
        return replace(self, width=int(width), height=int(height))

    def moved(self, d_yaw: float = 0.0, d_pitch: float = 0.0, d_roll: float = 0.0) -> "Camera":
        return replace(self, yaw_deg=self.yaw_deg + d_yaw, pitch_deg=self.pitch_deg + d_pitch, roll_deg=self.roll_deg + d_roll)

    def to_dict(self) -> dict:
        return {
            "model": "pinhole",
            "position_m": list(self.position),
            "yaw_deg": self.yaw_deg,
            "pitch_deg": self.pitch_deg,
            "roll_deg": self.roll_deg,
            "hfov_deg": self.hfov_deg,
            "resolution": [self.width, self.height],
            "K": self.K.tolist(),
            "R_world_to_camera": self.R.tolist(),
            "t_world_to_camera": self.t.tolist(),
            "distortion": [0.0, 0.0, 0.0, 0.0, 0.0],
            "axes": "world X right, Y forward, Z up (metres); camera x right, y down, z forward",
        }
