"""PPE training and evaluation data: person crops from sim scenes and from real footage.

Every person is stored as a *context* patch (its box grown by CONTEXT on each side, clipped to
the frame) plus its box inside that patch, so training can jitter the box the way a detector's
boxes wander and still cut the crop with :func:`runtime.ppe.person_crops`, exactly as the runtime
does. Rendering is the slow part, so sets are cached outside git (``$SITEWARDEN_CACHE`` or
``~/.cache/sitewarden/ppe``) under a key made of the set's recipe and the source of ``sim/``: a
change to the renderer re-renders, nothing else does.

Sim: scenes x conditions x seeds; TRAIN and HOLDOUT use disjoint seeds. Labels come from the
scene's ground truth; an item is *unknown* (masked out of loss and scores) where its body part
is outside the frame. Real: TRAIN footage only (``sim.realdata.footage_split``), person boxes from
the shared SSDLite teacher at a high threshold; nobody in that footage wears PPE, so every crop
is a negative for both items.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from ..cache import cached_pickle, source_digest

ROOT = Path(__file__).resolve().parents[2]
CACHE_VERSION = "ppe-data-1"
CONTEXT = (0.35, 0.18)        # context patch: box grown by this fraction of w / h per side
MAX_BOX_H = 256               # context patches are scaled down so that the box is at most this tall
MIN_BOX_H_TRAIN = 24          # sim persons shorter than this (px) are not used
MIN_BOX_H_EVAL = 32           # ... nor scored (a detector's useful range at 640x360)
CONDITIONS = ("day", "dusk", "night", "rain", "snow", "fog", "night-rain", "blur", "jpeg")
SCENES = ("ppe-mix", "crane-swing", "fall-incident")
TRAIN_SCENES = ("ppe-mix", "crane-swing")     # fall-incident's camera is held out entirely
RESOLUTIONS = ((640, 360), (960, 540))
TEACHER_THRESHOLD = 0.5
TRAIN_CLIPS = ("preview_people-detection.gif", "preview_store-aisle-detection.gif",
               "preview_person-bicycle-car-detection.gif", "one-by-one-person-detection.mp4",
               "preview_one-by-one-person-detection.gif")
REAL_STEP = {"one-by-one-person-detection.mp4": 2}  # every n-th TRAIN frame (default 1)
TRAIN_SEEDS = tuple(range(6))
HOLDOUT_SEEDS = (1000, 1001)
HOLDOUT_FRAMES = (5, 15, 25, 35)
HOLDOUT_CLIPS = ("preview_worker-zone-detection.gif", "one-by-one-person-detection.mp4",
                 "preview_one-by-one-person-detection.gif")


@dataclass(frozen=True)
class SimRecipe:
    """Which sim frames make a set."""

    seeds: tuple[int, ...]
    scenes: tuple[str, ...] = SCENES
    conditions: tuple[str, ...] = CONDITIONS
    frames: tuple[int, ...] = (3, 10, 17, 24, 31, 38)
    min_box_h: int = MIN_BOX_H_TRAIN

    def key(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, default=list)


@dataclass
class CropSet:
    """N persons: context patches plus parallel arrays."""

    patches: list = field(default_factory=list)           # uint8 BGR (h, w, 3)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # box in its patch
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # helmet, vest (0/1)
    known: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), bool))        # label is meaningful
    meta: dict = field(default_factory=dict)               # name -> (N,) array (condition, scene, ...)

    def __len__(self) -> int:
        return len(self.patches)

    def subset(self, idx) -> "CropSet":
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.nonzero(idx)[0]
        return CropSet([self.patches[i] for i in idx], self.boxes[idx], self.labels[idx], self.known[idx],
                       {k: v[idx] for k, v in self.meta.items()})

    @staticmethod
    def concat(parts: list["CropSet"]) -> "CropSet":
        parts = [p for p in parts if len(p)]
        if not parts:
            return CropSet()
        keys = set(parts[0].meta)
        for p in parts[1:]:
            keys &= set(p.meta)
        return CropSet([x for p in parts for x in p.patches], np.concatenate([p.boxes for p in parts]),
                       np.concatenate([p.labels for p in parts]), np.concatenate([p.known for p in parts]),
                       {k: np.concatenate([p.meta[k] for p in parts]) for k in sorted(keys)})


# ----------------------------------------------------------------------------- cache

def cache_dir() -> Path:
    base = os.environ.get("SITEWARDEN_CACHE")
    return Path(base) / "ppe" if base else Path.home() / ".cache" / "sitewarden" / "ppe"


def _cached(name: str, key: str, build):
    digest = hashlib.sha256(f"{CACHE_VERSION}|{key}".encode()).hexdigest()[:16]
    return cached_pickle(cache_dir() / f"{name}-{digest}.pkl", build)


# ----------------------------------------------------------------------------- patches

def context_patch(frame: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """The person's context patch and its box inside it (scaled so the box is <= MAX_BOX_H)."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    cx1, cy1 = int(max(0, np.floor(x1 - CONTEXT[0] * bw))), int(max(0, np.floor(y1 - CONTEXT[1] * bh)))
    cx2, cy2 = int(min(w, np.ceil(x2 + CONTEXT[0] * bw))), int(min(h, np.ceil(y2 + CONTEXT[1] * bh)))
    patch = frame[cy1:cy2, cx1:cx2]
    b = np.array([x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1], np.float32)
    if bh > MAX_BOX_H:
        s = MAX_BOX_H / bh
        patch = cv2.resize(patch, (max(1, round(patch.shape[1] * s)), max(1, round(patch.shape[0] * s))),
                           interpolation=cv2.INTER_AREA)
        b = b * s
    return np.ascontiguousarray(patch), b


def _render_source(args) -> CropSet:
    """Persons of one (scene, condition, seed) source, over the recipe's frames."""
    scene, condition, seed, resolution, frames, min_h = args
    from sim.render import SimSource

    src = SimSource(scene, seed=seed, resolution=resolution, condition=condition)
    apps = {w.track_id: w.app for w in src.workers}
    out = CropSet()
    rows = []
    for i in frames:
        fr = src.frame(i)
        tr = fr.truth[fr.truth.is_person]
        for j in range(len(tr)):
            box = tr.boxes[j]
            if box[3] - box[1] < min_h:
                continue
            kp = tr.keypoints[j]
            # visible (2) head keypoints (ears stay visible from behind) / shoulders or hips
            head_known = bool((kp[0:5, 2] == 2).any()) and not np.isnan(tr.head_boxes[j]).any()
            torso_known = bool((kp[[5, 6, 11, 12], 2] == 2).any())
            patch, b = context_patch(fr.image, box)
            app = apps.get(int(tr.track_ids[j]))
            out.patches.append(patch)
            rows.append((b, [float(tr.helmet[j]), float(tr.vest[j])], [head_known, torso_known],
                         app.headwear if app else "", app.shirt_name if app else "", i, int(tr.track_ids[j]),
                         float(box[3] - box[1])))
    n = len(rows)
    out.boxes = np.array([r[0] for r in rows], np.float32).reshape(n, 4)
    out.labels = np.array([r[1] for r in rows], np.float32).reshape(n, 2)
    out.known = np.array([r[2] for r in rows], bool).reshape(n, 2)
    cond_name = src.condition.name
    out.meta = {
        "source": np.array(["sim"] * n), "scene": np.array([scene] * n), "condition": np.array([condition] * n),
        "condition_full": np.array([cond_name] * n), "seed": np.full(n, seed), "frame": np.array([r[5] for r in rows]),
        "track": np.array([r[6] for r in rows]), "headwear": np.array([r[3] for r in rows]),
        "shirt": np.array([r[4] for r in rows]), "box_h": np.array([r[7] for r in rows], np.float32),
    }
    return out


def _cached_source(job) -> CropSet:
    """One source, cached on its own (an interrupted render keeps what it finished)."""
    return _cached("src", repr(job) + "|" + source_digest("sim"), lambda: _render_source(job))


def sim_set(recipe: SimRecipe, workers: int = 2, log=None) -> CropSet:
    """Render (or load from the cache) the persons of every source of ``recipe``."""
    jobs = [(s, c, seed, RESOLUTIONS[seed % len(RESOLUTIONS)], recipe.frames, recipe.min_box_h)
            for s in recipe.scenes for c in recipe.conditions for seed in recipe.seeds]

    def build():
        if log:
            log(f"  rendering {len(jobs)} sim sources x {len(recipe.frames)} frames (cached afterwards)")
        if workers > 1 and len(jobs) > 1:
            with get_context("spawn").Pool(workers) as pool:
                parts = pool.map(_cached_source, jobs, chunksize=1)
        else:
            parts = [_cached_source(j) for j in jobs]
        return CropSet.concat(parts)

    return _cached("sim", recipe.key() + "|" + source_digest("sim"), build)


# ----------------------------------------------------------------------------- real footage

def teacher_path() -> Path:
    from sim.realdata import shared_root
    return shared_root() / "models" / "ssdlite-voc-person" / "teacher.onnx"


class Teacher:
    """The shared SSDLite person detector: BGR frame -> (N, 4) xyxy boxes and scores."""

    def __init__(self, path: Path | None = None):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path or teacher_path()), opts, providers=["CPUExecutionProvider"])

    def __call__(self, bgr: np.ndarray, threshold: float = TEACHER_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
        h, w = bgr.shape[:2]
        side = max(h, w)
        sq = np.full((side, side, 3), 114, np.uint8)  # letterboxed (bottom/right) square, as the README advises
        sq[:h, :w] = bgr[:, :, ::-1]
        _, boxes, scores, _ = self.session.run(None, {"image_tensor:0": sq[None]})
        keep = scores[0] >= threshold
        b, s = boxes[0][keep] * side, scores[0][keep]
        xyxy = np.c_[b[:, 1], b[:, 0], b[:, 3], b[:, 2]].astype(np.float32)
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        ok = (xyxy[:, 2] - xyxy[:, 0] >= 8) & (xyxy[:, 3] - xyxy[:, 1] >= 16)
        return xyxy[ok], s[ok].astype(np.float32)


def _real_frames(clip: str, split: str, step: int, limit: int | None):
    from sim.realdata import clip_info, footage_split, iter_frames
    n = clip_info(clip).frames
    taken = 0
    for idx, _, frame in iter_frames(clip):
        if footage_split(clip, idx, n) != split or idx % step:
            continue
        yield idx, frame
        taken += 1
        if limit is not None and taken >= limit:
            return


def real_train_set(limit_per_clip: int | None = None, log=None) -> CropSet:
    """Teacher-boxed persons in the TRAIN footage: negatives for helmet and vest."""
    from sim.realdata import shared_root

    def build():
        teacher = Teacher()
        out, rows = CropSet(), []
        for clip in TRAIN_CLIPS:
            n0 = len(rows)
            for idx, frame in _real_frames(clip, "train", REAL_STEP.get(clip, 1), limit_per_clip):
                boxes, scores = teacher(frame)
                for b, s in zip(boxes, scores):
                    patch, pb = context_patch(frame, b)
                    out.patches.append(patch)
                    rows.append((pb, clip, idx, float(s), float(b[3] - b[1])))
            if log:
                log(f"  real TRAIN {clip}: {len(rows) - n0} teacher persons")
        n = len(rows)
        out.boxes = np.array([r[0] for r in rows], np.float32).reshape(n, 4)
        out.labels = np.zeros((n, 2), np.float32)
        out.known = np.ones((n, 2), bool)
        out.meta = {"source": np.array(["real"] * n), "scene": np.array([r[1] for r in rows]),
                    "condition": np.array(["real"] * n), "frame": np.array([r[2] for r in rows]),
                    "score": np.array([r[3] for r in rows], np.float32), "box_h": np.array([r[4] for r in rows], np.float32)}
        return out

    key = f"real|{limit_per_clip}|{TEACHER_THRESHOLD}|{REAL_STEP}|{TRAIN_CLIPS}|{shared_root()}"
    return _cached("real", key, build)


def holdout_labels() -> dict | None:
    """The hand-checked real holdout labels (COCO), or None while they are not written."""
    path = ROOT / "data" / "labels" / "real_holdout.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())
