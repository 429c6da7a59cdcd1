"""Pose and posture data: sim persons with exact keypoints and postures, and real person crops.

Every person is stored as a *context patch* (its box grown on each side, clipped to the frame;
:func:`distill.ppe.data.context_patch`) plus its box and its 17 keypoints inside that patch, so
training can jitter the box the way a detector's boxes wander and still cut the crop with
:func:`runtime.pose.person_crops`, exactly as the runtime does. Rendering is cached outside git
(``$SITEWARDEN_CACHE/pose`` or ``~/.cache/sitewarden/pose``) under a key made of the recipe and
the source of ``sim/``.

Scenes: the three named scenes with people (crane-swing: far and small; ppe-mix; fall-incident:
closer) plus two re-cast ones built from them with :func:`dataclasses.replace` so that the rare
postures are common enough to learn and to score: ``fall-many`` (fall-incident's site and camera,
three workers who fall, two who work) and ``work-many`` (ppe-mix with eight workers holding
bending / crouching / arms-raised poses). Each (scene, seed) source gets one condition, cycling
through all of them (:func:`jobs_of`), at 640x360 or 960x540. TRAIN and HOLDOUT use disjoint
seeds (so different people, paths, falls and sides of falling).

Real: the TRAIN footage's persons (boxes from the shared SSDLite teacher), reused from the PPE
task's cache: unlabeled, used only through the pose teacher's confident predictions.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..cache import cached_pickle, source_digest

from ..ppe.data import context_patch

ROOT = Path(__file__).resolve().parents[2]
CACHE_VERSION = "pose-data-1"
CONDITIONS = ("day", "dusk", "night", "rain", "snow", "fog", "wind", "blur", "jpeg", "night+rain")
SCENES = ("crane-swing", "ppe-mix", "fall-incident", "fall-many", "work-many")
RESOLUTIONS = ((640, 360), (960, 540))
TRAIN_SEEDS = tuple(range(20))          # per scene; each (scene, seed) gets one condition, cycling
HOLDOUT_SEEDS = tuple(range(1000, 1010))  # per scene: every scene sees every condition once
TRAIN_FRAMES = (5, 14, 23, 32, 41, 50, 59, 68, 77, 86, 95, 104)
HOLDOUT_FRAMES = (20, 55, 90)
MIN_SIZE_TRAIN = 24           # persons whose box is smaller than this (max side, px) are not used
MIN_SIZE_EVAL = 32            # ... nor scored
POSTURES = ("standing", "walking", "bending", "crouching", "falling", "fallen", "arms_raised")


def scene_spec(name: str):
    """A named scene, or one of the re-cast ones (fall-many, work-many)."""
    from sim.scenes import get_scene
    if name == "fall-many":
        return replace(get_scene("fall-incident"), name="fall-many", roles={"fall": 3, "work": 2, "wander": 2})
    if name == "work-many":
        return replace(get_scene("ppe-mix"), name="work-many", roles={"work": 8, "wander": 4})
    return get_scene(name)


@dataclass(frozen=True)
class SimRecipe:
    seeds: tuple[int, ...]
    scenes: tuple[str, ...] = SCENES
    conditions: tuple[str, ...] = CONDITIONS
    frames: tuple[int, ...] = TRAIN_FRAMES
    min_size: int = MIN_SIZE_TRAIN

    def key(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, default=list)


@dataclass
class PersonSet:
    """N persons: context patches plus parallel arrays (coordinates inside each patch)."""

    patches: list = field(default_factory=list)                                        # uint8 BGR
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))    # box in its patch
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 17, 3), np.float32))  # x, y in patch, v
    meta: dict = field(default_factory=dict)        # posture, scene, condition, seed, frame, track, size, source

    def __len__(self) -> int:
        return len(self.patches)

    def subset(self, idx) -> "PersonSet":
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.nonzero(idx)[0]
        return PersonSet([self.patches[i] for i in idx], self.boxes[idx], self.keypoints[idx],
                         {k: v[idx] for k, v in self.meta.items()})

    @staticmethod
    def concat(parts: list["PersonSet"]) -> "PersonSet":
        parts = [p for p in parts if len(p)]
        if not parts:
            return PersonSet()
        keys = set(parts[0].meta)
        for p in parts[1:]:
            keys &= set(p.meta)
        return PersonSet([x for p in parts for x in p.patches], np.concatenate([p.boxes for p in parts]),
                         np.concatenate([p.keypoints for p in parts]),
                         {k: np.concatenate([p.meta[k] for p in parts]) for k in sorted(keys)})


# ----------------------------------------------------------------------------- cache

def cache_dir() -> Path:
    base = os.environ.get("SITEWARDEN_CACHE")
    return Path(base) / "pose" if base else Path.home() / ".cache" / "sitewarden" / "pose"


def cached(name: str, key: str, build):
    digest = hashlib.sha256(f"{CACHE_VERSION}|{key}".encode()).hexdigest()[:16]
    return cached_pickle(cache_dir() / f"{name}-{digest}.pkl", build)


# ----------------------------------------------------------------------------- sim

def _render_source(job) -> PersonSet:
    scene, condition, seed, resolution, frames, min_size = job
    from sim.render import SimSource

    src = SimSource(scene_spec(scene), seed=seed, resolution=resolution, condition=condition)
    out, rows = PersonSet(), []
    for i in frames:
        fr = src.frame(i)
        tr = fr.truth[fr.truth.is_person]
        for j in range(len(tr)):
            box = tr.boxes[j]
            size = float(max(box[2] - box[0], box[3] - box[1]))
            if size < min_size:
                continue
            patch, b = context_patch(fr.image, box)
            # context_patch may scale the patch: map the keypoints with the same box change
            s = (b[3] - b[1]) / max(box[3] - box[1], 1e-6)
            ox, oy = b[0] - box[0] * s, b[1] - box[1] * s
            kp = tr.keypoints[j].astype(np.float32).copy()
            kp[:, 0] = kp[:, 0] * s + ox
            kp[:, 1] = kp[:, 1] * s + oy
            kp[kp[:, 2] == 0, :2] = 0
            out.patches.append(patch)
            rows.append((b, kp, tr.postures[j], i, int(tr.track_ids[j]), size))
    n = len(rows)
    out.boxes = np.array([r[0] for r in rows], np.float32).reshape(n, 4)
    out.keypoints = np.array([r[1] for r in rows], np.float32).reshape(n, 17, 3)
    out.meta = {"source": np.array(["sim"] * n), "scene": np.array([scene] * n), "condition": np.array([condition] * n),
                "posture": np.array([r[2] for r in rows], dtype="<U12"), "seed": np.full(n, seed),
                "frame": np.array([r[3] for r in rows], int), "track": np.array([r[4] for r in rows], int),
                "size": np.array([r[5] for r in rows], np.float32)}
    return out


def _cached_source(job) -> PersonSet:
    return cached("src", repr(job) + "|" + source_digest(), lambda: _render_source(job))


def jobs_of(recipe: SimRecipe) -> list[tuple]:
    """(scene, condition, seed, resolution, frames, min_size) per source: the k-th seed of a scene
    takes condition k (mod the list), offset per scene, so conditions are spread evenly."""
    out = []
    for si, s in enumerate(recipe.scenes):
        for k, seed in enumerate(recipe.seeds):
            c = recipe.conditions[(k + si) % len(recipe.conditions)]
            out.append((s, c, seed, RESOLUTIONS[(k + si) % 2], recipe.frames, recipe.min_size))
    return out


def sim_set(recipe: SimRecipe, workers: int = 2, log=None) -> PersonSet:
    """Render (or load from the cache) every person of ``recipe``."""
    jobs = [job for job in jobs_of(recipe)]

    def build():
        if log:
            log(f"  rendering {len(jobs)} sim sources x {len(recipe.frames)} frames (cached afterwards)")
        if workers > 1 and len(jobs) > 1:
            with get_context("spawn").Pool(workers) as pool:
                parts = pool.map(_cached_source, jobs, chunksize=1)
        else:
            parts = [_cached_source(j) for j in jobs]
        return PersonSet.concat(parts)

    return cached("sim", recipe.key() + "|" + source_digest(), build)


# ----------------------------------------------------------------------------- real

def real_train_set(limit_per_clip: int | None = None, log=None) -> PersonSet:
    """Persons in the TRAIN footage (SSDLite teacher boxes), without keypoints (all v = 0)."""
    from ..ppe import data as ppe_data

    r = ppe_data.real_train_set(limit_per_clip, log=log)
    n = len(r)
    return PersonSet(list(r.patches), r.boxes.copy(), np.zeros((n, 17, 3), np.float32),
                     {"source": np.array(["real"] * n), "scene": r.meta["scene"], "condition": np.array(["real"] * n),
                      "posture": np.array([""] * n, dtype="<U12"), "seed": np.full(n, -1), "frame": r.meta["frame"],
                      "track": np.full(n, -1), "size": r.meta["box_h"].astype(np.float32)})
