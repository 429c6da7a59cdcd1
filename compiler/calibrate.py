"""Calibration and gate inputs that match the site: frames from the camera's own source (a file
or a sim scene) or, for live sources, sim scenes of the site's conditions; prepared exactly as the
model card's preprocessing says."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from runtime.config import CameraConfig

from .modelcard import ModelCard

FALLBACK_SCENES = ("crane-swing", "night-rain", "ppe-mix")


def frames_for(camera: CameraConfig, spec_dir: Path, count: int, seed: int = 0,
               condition: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` (frame BGR, person boxes xyxy) pairs spread over the camera's source.
    Person boxes come from the sim's ground truth; file frames have none (image models only need frames).
    `condition` (night, night-rain...) renders sim scenes in it: a condition-specialised variant is
    calibrated and gated on the conditions it will run in (a file source is what it is)."""
    kind = camera.source.split(":", 1)[0]
    if kind == "file":
        return [(f, np.zeros((0, 4), np.float32)) for f in _file_frames(spec_dir / camera.source[5:], count)]
    scenes = [camera.source[4:]] if kind == "sim" else list(FALLBACK_SCENES)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    per_scene = -(-count // len(scenes))
    for i, scene in enumerate(scenes):
        out += _sim_frames(scene, per_scene, seed + i, camera.resolution, camera.fps, condition)
    return out[:count]


def _file_frames(path: Path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or count
    wanted = set(np.linspace(0, max(total - 1, 0), count).astype(int).tolist())
    frames, i = [], 0
    while len(frames) < len(wanted):
        ok, frame = cap.read()
        if not ok:
            break
        if i in wanted:
            frames.append(frame)
        i += 1
    cap.release()
    if not frames:
        raise FileNotFoundError(f"no frames could be read from {path}")
    return frames


def _sim_frames(scene: str, count: int, seed: int, resolution, fps: float,
                condition: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    from sim.render import SimSource  # host-side only: the compiler may import sim (DESIGN.md)

    seconds = max(count / fps * 3, 2.0)
    src = SimSource(scene, seed=seed, resolution=tuple(resolution), fps=fps, seconds=seconds, condition=condition)
    frames = list(src)
    picks = np.linspace(0, len(frames) - 1, count).astype(int)
    out = []
    for i in picks:
        f = frames[i]
        boxes = person_boxes(f.truth)
        out.append((f.image, boxes))
    return out


def person_boxes(truth) -> np.ndarray:
    """Person boxes (xyxy) from a sim FrameTruth, whatever its exact container shape."""
    for attr in ("person_boxes", "boxes"):
        v = getattr(truth, attr, None)
        if v is None:
            continue
        if isinstance(v, dict):
            v = v.get("person")
        if v is not None:
            return np.asarray(v, dtype=np.float32).reshape(-1, 4)
    return np.zeros((0, 4), np.float32)


def prepare(image: np.ndarray, card: ModelCard) -> np.ndarray:
    """One NCHW float32 input from a BGR image, per the card's preprocessing."""
    shape = card.inputs[0].shape
    h, w = int(shape[2]), int(shape[3])
    pp = card.preprocess
    img = image[:, :, ::-1] if pp.color == "rgb" else image
    if pp.resize == "letterbox":
        s = min(w / img.shape[1], h / img.shape[0])
        nw, nh = max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))
        canvas = np.full((h, w, 3), 114, np.uint8)
        top, left = (h - nh) // 2, (w - nw) // 2
        canvas[top:top + nh, left:left + nw] = cv2.resize(np.ascontiguousarray(img), (nw, nh), interpolation=cv2.INTER_LINEAR)
        img = canvas
    else:
        img = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_LINEAR)
    x = img.astype(np.float32) * pp.scale
    if pp.mean:
        x = x - np.asarray(pp.mean, np.float32)
    if pp.std:
        x = x / np.asarray(pp.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def samples(card: ModelCard, pairs: list[tuple[np.ndarray, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    """Input dicts for `card`: whole frames for frame models, person crops for crop models."""
    name = card.inputs[0].name
    for image, boxes in pairs:
        if card.preprocess.crop == "person" or card.preprocess.resize == "crop":
            for x1, y1, x2, y2 in boxes[:4]:
                x1, y1 = max(int(x1), 0), max(int(y1), 0)
                x2, y2 = min(int(x2), image.shape[1]), min(int(y2), image.shape[0])
                if x2 - x1 >= 4 and y2 - y1 >= 8:
                    yield {name: prepare(image[y1:y2, x1:x2], card)}
        else:
            yield {name: prepare(image, card)}
