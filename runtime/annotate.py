"""Pictures for people: zones, tracked boxes with ids and PPE state, skeletons, forecast paths
and alerts drawn on the frame; written as H.264 MP4 through PyAV when it is installed (browsers
play it), else as an OpenCV MJPG/mp4v file."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .config import CameraConfig
from .geometry import apply
from .pose import SKELETON

ZONE = {"danger": (40, 40, 230), "restricted": (0, 140, 255), "walkway": (200, 160, 40), "work": (60, 180, 60)}
ALERT_COLOUR = {"critical": (0, 0, 255), "warning": (0, 200, 255), "info": (200, 200, 200)}
MODE_MIN_PROB = 0.2  # alternative forecast paths drawn from this probability up


def _text(img, text, org, colour=(255, 255, 255), scale=0.45):
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def draw(image: np.ndarray, camera: CameraConfig, result, recent_alerts: list[tuple[float, str, str]]) -> np.ndarray:
    out = image.copy()
    H_inv = np.linalg.inv(np.asarray(camera.homography)) if camera.homography is not None else None
    for z in camera.zones:
        colour = ZONE.get(z.kind, (255, 255, 255))
        if z.polygon_px is not None:
            pts = np.round(np.asarray(z.polygon_px)).astype(np.int32)
            overlay = out.copy()
            cv2.fillPoly(overlay, [pts], colour)
            out = cv2.addWeighted(overlay, 0.18, out, 0.82, 0)
            cv2.polylines(out, [pts], True, colour, 2, cv2.LINE_AA)
        elif z.shape == "around" and H_inv is not None:
            for m in result.machines:
                if m.ground is None:
                    continue
                a = np.linspace(0, 2 * np.pi, 48)
                ring = np.stack([m.ground[0] + z.radius_m * np.cos(a), m.ground[1] + z.radius_m * np.sin(a)], 1)
                cv2.polylines(out, [np.round(apply(H_inv, ring)).astype(np.int32)], True, colour, 2, cv2.LINE_AA)
    for m in result.machines:
        x1, y1, x2, y2 = np.round(m.box).astype(int)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 200, 255), 2)
        _text(out, f"machine {m.track}", (x1, max(12, y1 - 4)), (0, 200, 255))
    for p in result.people:
        x1, y1, x2, y2 = np.round(p.box).astype(int)
        missing = [k for k, v in p.ppe.items() if v < 0.5]
        colour = (0, 0, 255) if missing else (80, 220, 80)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        ppe = " ".join(f"{'no ' if v < 0.5 else ''}{k}" for k, v in p.ppe.items())
        label = f"#{p.track} {ppe}" + (f" {p.posture}" if p.posture else "")
        _text(out, label, (x1, max(12, y1 - 4)), colour, 0.4)
        kp = result.keypoints.get(p.track)
        if kp is not None:
            for a, b in SKELETON:
                if kp[a, 2] > 0.3 and kp[b, 2] > 0.3:
                    cv2.line(out, tuple(np.round(kp[a, :2]).astype(int)), tuple(np.round(kp[b, :2]).astype(int)),
                             (255, 255, 0), 1, cv2.LINE_AA)
        if p.forecast is not None and H_inv is not None and p.ground is not None:
            path = apply(H_inv, np.vstack([p.ground[None], p.forecast]))
            if np.all(np.isfinite(path)):
                cv2.polylines(out, [np.round(path).astype(np.int32)], False, (255, 0, 255), 1, cv2.LINE_AA)
            if p.forecast_modes is not None and p.forecast_probs is not None:
                # a multi-modal forecast's likely alternatives, fainter the less probable
                for mode, prob in zip(p.forecast_modes, p.forecast_probs):
                    alt = apply(H_inv, np.vstack([p.ground[None], mode]))
                    if prob >= MODE_MIN_PROB and np.all(np.isfinite(alt)):
                        shade = tuple(int(c * (0.35 + 0.65 * prob)) for c in (255, 120, 255))
                        cv2.polylines(out, [np.round(alt).astype(np.int32)], False, shade, 1, cv2.LINE_AA)
    for i, (_, severity, text) in enumerate(recent_alerts[-4:]):
        _text(out, text, (8, 18 + 16 * i), ALERT_COLOUR.get(severity, (255, 255, 255)))
    tiers = " ".join(f"{k}:{v}" for k, v in sorted(result.tiers.items()))
    _text(out, f"t={result.t:6.1f}s {tiers}", (8, out.shape[0] - 8), (220, 220, 220), 0.35)
    return out


class VideoOut:
    """H.264 through PyAV when available (browsers play it), else OpenCV's mp4v/MJPG."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]):
        self.path, self.fps, self.size = Path(path), fps, size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._av = self._cv = None
        try:
            import av  # optional extra

            self._av = av.open(str(self.path), "w")
            stream = self._av.add_stream("libx264", rate=max(1, round(fps)))
            stream.width, stream.height = size[0] - size[0] % 2, size[1] - size[1] % 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "28", "preset": "veryfast"}
            self._stream = stream
        except Exception:
            self._av = None
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix == ".avi" else "mp4v"))
            self._cv = cv2.VideoWriter(str(self.path), fourcc, fps, size)
        self.codec = "h264" if self._av is not None else "mp4v"

    def write(self, image: np.ndarray) -> None:
        if self._av is not None:
            import av

            img = image[: self._stream.height, : self._stream.width]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            for packet in self._stream.encode(frame):
                self._av.mux(packet)
        else:
            self._cv.write(image)

    def close(self) -> None:
        if self._av is not None:
            for packet in self._stream.encode():
                self._av.mux(packet)
            self._av.close()
        elif self._cv is not None:
            self._cv.release()
