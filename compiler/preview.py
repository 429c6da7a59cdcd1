"""Preview: draw a camera's zones and its calibration's ground grid on a frame from its source,
so an engineer can check a spec against what the camera sees before going to site."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from runtime.config import CameraConfig
from runtime.geometry import apply, solve_homography

from .spec.cameras import Camera

ZONE_COLOURS = {"danger": (40, 40, 230), "restricted": (0, 140, 255), "walkway": (200, 160, 40), "work": (60, 180, 60)}


class PreviewError(Exception):
    """No frame could be had; the message says how to give one."""


def grab_frame(camera: CameraConfig, spec_dir: Path, frame_path: str | None = None) -> np.ndarray:
    if frame_path:
        img = cv2.imread(frame_path)
        if img is None:
            raise PreviewError(f"cannot read image {frame_path}")
        return img
    kind = camera.source.split(":", 1)[0]
    if kind == "sim":
        from sim.render import SimSource

        src = SimSource(camera.source[4:], seed=0, resolution=tuple(camera.resolution), fps=camera.fps, seconds=1.0)
        return next(iter(src)).image
    target = str(spec_dir / camera.source[5:]) if kind == "file" else (int(camera.source[4:]) if kind == "usb" else camera.source)
    timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
    cap = cv2.VideoCapture(target, cv2.CAP_ANY, timeouts)
    ok, img = cap.read() if cap.isOpened() else (False, None)
    cap.release()
    if not ok or img is None:
        raise PreviewError(f"no frame from {camera.source}; on a desk without the camera, pass a still from it with --frame IMAGE")
    return img


def _poly(img, pts, colour, thickness=2):
    pts = np.asarray(pts, dtype=np.float64)
    if len(pts) and np.all(np.isfinite(pts)):
        cv2.polylines(img, [np.round(pts).astype(np.int32)], True, colour, thickness, cv2.LINE_AA)


def draw(img: np.ndarray, camera: CameraConfig, spec_camera: Camera) -> tuple[np.ndarray, float | None]:
    """Annotated copy of `img` (scaled to the camera's resolution) and the calibration's reprojection error."""
    w, h = camera.resolution
    out = cv2.resize(img, (w, h)) if img.shape[1::-1] != (w, h) else img.copy()
    error = None
    if spec_camera.calibration is not None:
        hom = solve_homography(spec_camera.calibration.image, spec_camera.calibration.ground)
        error = hom.reprojection_px
        ground = np.asarray(spec_camera.calibration.ground, dtype=float)
        lo, hi = ground.min(axis=0) - 5, ground.max(axis=0) + 5
        inv = hom.inverse
        for x in np.arange(np.floor(lo[0]), np.ceil(hi[0]) + 1):
            seg = apply(inv, np.stack([np.full(50, x), np.linspace(lo[1], hi[1], 50)], axis=1))
            _poly_open(out, seg, (200, 200, 200) if x % 5 else (255, 255, 255))
        for y in np.arange(np.floor(lo[1]), np.ceil(hi[1]) + 1):
            seg = apply(inv, np.stack([np.linspace(lo[0], hi[0], 50), np.full(50, y)], axis=1))
            _poly_open(out, seg, (200, 200, 200) if y % 5 else (255, 255, 255))
        back = apply(inv, ground)
        for (u, v), (bu, bv), (gx, gy) in zip(spec_camera.calibration.image, back, ground):
            cv2.circle(out, (round(u), round(v)), 6, (0, 255, 255), 2, cv2.LINE_AA)
            cv2.drawMarker(out, (round(bu), round(bv)), (255, 0, 255), cv2.MARKER_CROSS, 10, 2)
            cv2.putText(out, f"({gx:g},{gy:g})m", (round(u) + 8, round(v) - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1, cv2.LINE_AA)
    for zone in camera.zones:
        colour = ZONE_COLOURS.get(zone.kind, (255, 255, 255))
        if zone.polygon_px is not None:
            overlay = out.copy()
            cv2.fillPoly(overlay, [np.round(np.asarray(zone.polygon_px)).astype(np.int32)], colour)
            out = cv2.addWeighted(overlay, 0.25, out, 0.75, 0)
            _poly(out, zone.polygon_px, colour)
            cx, cy = np.asarray(zone.polygon_px).mean(axis=0)
            label = f"{zone.id} ({zone.kind})"
        else:
            cx, cy = 10, h - 10 - 16 * camera.zones.index(zone)
            label = f"{zone.id} ({zone.kind}): {zone.radius_m:g} m around each tracked {zone.around_class}"
        cv2.putText(out, label, (int(cx), int(cy)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, (int(cx), int(cy)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out, error


def _poly_open(img, pts, colour):
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) > 1:
        cv2.polylines(img, [np.round(pts).astype(np.int32)], False, colour, 1, cv2.LINE_AA)
