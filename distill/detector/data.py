"""Detector data: the protocol (what trains, what is held out), the caches, and the targets.

Protocol (decided before training; see the model cards and README):

* Real footage (``../shared/data/video``). HOLDOUT, never trained on: all of
  ``preview_worker-zone-detection.gif``, the last 30 % of ``one-by-one-person-detection.mp4``
  (``sim.realdata.footage_split``) and the mp4's own preview GIF *entirely* (the same footage).
  TRAIN: the first 70 % of the mp4 (every 2nd frame) and the other three preview GIFs, labelled
  by the teacher fused with temporal evidence (``labels.py``); real frames carry *person* only,
  so the machine channel has no loss on them. Evaluation: the hand-checked COCO labels
  ``data/labels/real_holdout.json`` (person; ``difficult`` boxes are neither hits nor misses).
* Synthetic (``sim``): every scene x every named condition, exact ground truth for person and
  machine. TRAIN seeds ``SIM_TRAIN_SEEDS``, HOLDOUT seed ``SIM_HOLDOUT_SEEDS`` (disjoint).
  Frames with the lens blocked or the lights out are left out (no visible truth). People
  shorter than ``MIN_PERSON_PX`` (store pixels) are ignored (neither positive nor negative).

Every frame is stored once at ``STORE`` (416x234, all sources are 16:9) as uint8 BGR in a cache
outside git (``$SITEWARDEN_CACHE`` or ``~/.cache/sitewarden``), keyed by the protocol's settings.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..cache import cached_pickle

from runtime.decoders import Letterbox

from . import labels as labels_mod
from . import teacher as teacher_mod

CLASSES = ("person", "machine")
STORE = (416, 234)
MIN_PERSON_PX = 10.0
SIM_SCENES = ("crane-swing", "night-rain", "fall-incident", "ppe-mix", "camera-faults")
SIM_CONDITIONS = ("day", "dusk", "night", "rain", "snow", "fog", "wind", "blur", "jpeg", "night-rain")
SIM_TRAIN_SEEDS = (0, 1)          # one per (scene, condition), alternating
SIM_HOLDOUT_SEEDS = (1000,)
SIM_HOLDOUT_SCENES = SIM_SCENES
SIM_TRAIN_FRAMES, SIM_HOLDOUT_FRAMES = 12, 6
NIGHT_CONDITIONS = ("night", "night-rain")
NIGHT_EXTRA_SEEDS = (2, 3)         # every seed for every (scene, night condition)
NIGHT_EXTRA_FRAMES = 12
REAL_TRAIN_CLIPS = ("one-by-one-person-detection.mp4", "preview_people-detection.gif",
                    "preview_person-bicycle-car-detection.gif", "preview_store-aisle-detection.gif")
EXCLUDED_CLIPS = ("preview_one-by-one-person-detection.gif",)   # same footage as the mp4
MP4_STEP = 2
HOLDOUT_LABELS = Path(__file__).resolve().parents[2] / "data" / "labels" / "real_holdout.json"
DARK_FAULTS = ("blocked", "lights_out")


def cache_root() -> Path:
    root = os.environ.get("SITEWARDEN_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "sitewarden") / "detector"


@dataclass
class FrameSet:
    """Frames at STORE size with boxes in store pixels.

    objects[i]: (K, 5) x1 y1 x2 y2 class; ignore[i]: (M, 5) x1 y1 x2 y2 class (-1: every class);
    machine_known[i]: False for real frames (no machine labels: no machine loss)."""

    images: np.ndarray
    objects: list = field(default_factory=list)
    ignore: list = field(default_factory=list)
    machine_known: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    condition: list = field(default_factory=list)
    scene: list = field(default_factory=list)
    source: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def concat(cls, parts: list["FrameSet"]) -> "FrameSet":
        parts = [p for p in parts if len(p)]
        return cls(np.concatenate([p.images for p in parts]), sum((p.objects for p in parts), []),
                   sum((p.ignore for p in parts), []), np.concatenate([p.machine_known for p in parts]),
                   sum((p.condition for p in parts), []), sum((p.scene for p in parts), []),
                   sum((p.source for p in parts), []))

    def subset(self, idx) -> "FrameSet":
        idx = list(idx)
        return FrameSet(self.images[idx], [self.objects[i] for i in idx], [self.ignore[i] for i in idx],
                        self.machine_known[idx], [self.condition[i] for i in idx],
                        [self.scene[i] for i in idx], [self.source[i] for i in idx])


def _cached(name: str, key: dict, build):
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return cached_pickle(cache_root() / f"{name}-{digest}.pkl", build)


def to_store(img: np.ndarray) -> tuple[np.ndarray, float]:
    h, w = img.shape[:2]
    s = STORE[0] / w
    if abs(h * s - STORE[1]) > 1.5:
        raise ValueError(f"frame {w}x{h} is not 16:9")
    return cv2.resize(img, STORE, interpolation=cv2.INTER_AREA), s


# ----------------------------------------------------------------------------- sim

def sim_sources(scenes, conditions, seeds, every_seed: bool) -> list[tuple[str, str, int]]:
    """(scene, condition, seed) to render: every seed for each pair, or one seed per pair in turn."""
    out = []
    for si, scene in enumerate(scenes):
        for ci, c in enumerate(conditions):
            for seed in (seeds if every_seed else [seeds[(si + ci) % len(seeds)]]):
                out.append((scene, c, int(seed)))
    return out


def sim_frames(scenes=SIM_SCENES, conditions=SIM_CONDITIONS, seeds=SIM_TRAIN_SEEDS,
               per_source: int = SIM_TRAIN_FRAMES, every_seed: bool = False, log=print) -> FrameSet:
    """Rendered sim frames with exact truth (cached). Rendering a source costs ~7 s (its
    background) before its first frame, so each (scene, condition) gets one seed by default."""
    plan = sim_sources(scenes, conditions, seeds, every_seed)
    key = {"v": 3, "plan": plan, "per_source": per_source, "store": STORE, "min_person": MIN_PERSON_PX}

    def build():
        from sim.render import SimSource
        imgs, objs, ign, cond, scn = [], [], [], [], []
        for k, (scene, c, seed) in enumerate(plan):
            src = SimSource(scene, seed=seed, resolution=(640, 360), fps=10.0, condition=c)
            n = int(src.spec.duration_s * src.fps)
            for i in np.linspace(5, n - 1, per_source).round().astype(int):   # increasing: cheap steps
                tr = (fr := src.frame(int(i))).truth
                if any(f in DARK_FAULTS for f in tr.faults):
                    continue
                img, s = to_store(fr.image)
                o, g = [], []
                for box, cl in zip(np.asarray(tr.boxes, np.float32).reshape(-1, 4), tr.classes):
                    if cl not in CLASSES:
                        continue
                    b = box * s
                    if b[2] - b[0] < 2 or b[3] - b[1] < 2:
                        continue
                    small = cl == "person" and b[3] - b[1] < MIN_PERSON_PX
                    (g if small else o).append([*b, CLASSES.index(cl)])
                imgs.append(img)
                objs.append(np.asarray(o, np.float32).reshape(-1, 5))
                ign.append(np.asarray(g, np.float32).reshape(-1, 5))
                cond.append(c)
                scn.append(scene)
            if k % 10 == 9:
                log(f"  sim: {k + 1}/{len(plan)} sources, {len(imgs)} frames")
        return FrameSet(np.stack(imgs), objs, ign, np.ones(len(imgs), bool), cond, scn, ["sim"] * len(imgs))

    return _cached("sim", key, build)


# ----------------------------------------------------------------------------- real

def real_train_indices(clip: str, smoke: bool = False) -> list[int]:
    """Frame indices of ``clip`` that may be trained on (every frame; the mp4's train part)."""
    from sim.realdata import clip_info, footage_split
    if clip in EXCLUDED_CLIPS:
        return []
    n = clip_info(clip).frames
    idx = [i for i in range(n) if footage_split(clip, i, n) == "train"]
    return idx[:40] if smoke else idx


def real_evidence(clips=REAL_TRAIN_CLIPS, smoke: bool = False, log=print) -> dict:
    """Per clip: train frame indices, store images, teacher views (frame px) and blobs."""
    key = {"v": 1, "clips": list(clips), "smoke": smoke, "bg": teacher_mod.BACKGROUND_FRAMES,
           "thr": teacher_mod.BG_DIFF_THRESHOLD}

    def build():
        from sim.realdata import iter_frames
        out = {}
        for clip in clips:
            idx = real_train_indices(clip, smoke)
            if not idx:
                continue
            keep = set(idx)
            frames = {i: f for i, _, f in iter_frames(clip, 0, max(idx) + 1) if i in keep}
            lo, hi = teacher_mod.BACKGROUND_FRAMES.get(clip, (idx[0], idx[-1] + 1))
            bg_src = [frames[i] for i in idx if lo <= i < hi][:: max(1, len(idx) // 150)]
            bg = teacher_mod.median_background(bg_src)
            teach, blobs, store = [], [], []
            for i in idx:
                teach.append(teacher_mod.teacher_views(frames[i]))
                blobs.append(teacher_mod.foreground_blobs(frames[i], bg))
                store.append(to_store(frames[i]))
            out[clip] = {"index": idx, "teacher": teach, "blobs": blobs,
                         "images": np.stack([s[0] for s in store]), "scale": store[0][1]}
            log(f"  real {clip}: {len(idx)} frames, teacher hits >=0.5: "
                f"{sum(int((t[1] >= 0.5).sum()) for t in teach)}")
        return out

    return _cached("real-evidence", key, build)


def real_frames(mode: str, smoke: bool = False, clips=REAL_TRAIN_CLIPS, log=print) -> tuple[FrameSet, dict]:
    """Real TRAIN frames with ``mode`` labels: 'kd' (teacher + evidence) or 'nokd' (evidence only)."""
    if mode not in ("kd", "nokd"):
        raise ValueError(mode)
    ev = real_evidence(clips=clips, smoke=smoke, log=log)
    parts, stats = [], {}
    for clip, e in ev.items():
        if mode == "kd":
            lab, ign, st = labels_mod.fuse_kd(e["teacher"], e["blobs"])
        else:
            lab, ign, st = labels_mod.fuse_nokd(e["blobs"])
        stats[clip] = st
        step = MP4_STEP if clip.endswith(".mp4") else 1
        sel = list(range(0, len(e["index"]), step))
        s = e["scale"]
        objs = [np.c_[lab[k] * s, np.zeros(len(lab[k]))].astype(np.float32) for k in sel]
        igns = [np.c_[ign[k] * s, np.zeros(len(ign[k]))].astype(np.float32) for k in sel]
        parts.append(FrameSet(e["images"][sel], objs, igns, np.zeros(len(sel), bool), ["real"] * len(sel),
                              [clip] * len(sel), ["real"] * len(sel)))
    return FrameSet.concat(parts), stats


# ----------------------------------------------------------------------------- holdout

@dataclass
class RealHoldout:
    keys: list            # "<clip>#<frame>"
    images: list          # original BGR frames
    boxes: list           # (K, 4) xyxy frame px
    difficult: list       # (K,) bool


def real_holdout(limit: int | None = None, path: Path = HOLDOUT_LABELS) -> RealHoldout | None:
    """The hand-checked holdout (None if the labels file does not exist yet)."""
    from sim.realdata import footage_split, iter_frames
    if not Path(path).exists():
        return None
    coco = json.loads(Path(path).read_text())
    cats = {c["id"]: c["name"] for c in coco.get("categories", [])}
    anns: dict[int, list] = {}
    for a in coco["annotations"]:
        if cats.get(a["category_id"], "person") == "person":
            anns.setdefault(a["image_id"], []).append(a)
    imgs = sorted(coco["images"], key=lambda im: (im["file_name"].split("#")[0], int(im["file_name"].split("#")[1])))
    if limit:
        imgs = imgs[:: max(1, len(imgs) // limit)][:limit]
    by_clip: dict[str, list] = {}
    for im in imgs:
        clip, idx = im["file_name"].split("#")
        if footage_split(clip, int(idx)) != "holdout":
            raise ValueError(f"{im['file_name']} is not a holdout frame")
        by_clip.setdefault(clip, []).append((int(idx), im))
    out = RealHoldout([], [], [], [])
    for clip, items in by_clip.items():
        want = {i: im for i, im in items}
        for i, _, f in iter_frames(clip, min(want), max(want) + 1):
            if i not in want:
                continue
            im = want[i]
            a = anns.get(im["id"], [])
            b = np.array([[x, y, x + w, y + h] for x, y, w, h in (q["bbox"] for q in a)], np.float32).reshape(-1, 4)
            d = np.array([bool(q.get("difficult", False) or q.get("ignore", 0) or q.get("iscrowd", 0))
                          for q in a], bool)
            out.keys.append(im["file_name"])
            out.images.append(f)
            out.boxes.append(b)
            out.difficult.append(d)
    return out


# ----------------------------------------------------------------------------- targets

def augment_params(rng: np.random.Generator, train: bool) -> dict:
    if not train:
        return {"zoom": 1.0, "fx": 0.5, "fy": 0.5, "flip": False, "gain": 1.0, "bias": 0.0}
    return {"zoom": float(rng.uniform(0.75, 1.35)), "fx": float(rng.uniform()), "fy": float(rng.uniform()),
            "flip": bool(rng.uniform() < 0.5), "gain": float(rng.uniform(0.6, 1.4)),
            "bias": float(rng.uniform(-25, 25))}


CLOSE_UP_ZOOM = (1.35, 3.0)


def close_up_zoom(rng: np.random.Generator, share: float) -> float | None:
    """With probability ``share``, a zoom in CLOSE_UP_ZOOM for a sim frame, else None.

    Sim people stand 10-60 px tall in 640x360 frames (about 1/6 of the frame height at most) and
    the usual zoom (0.75-1.35) keeps them there; a camera close to the work (the worker-zone
    footage, a camera on a wall above a door) sees people up to the whole frame height. Zoomed-in
    sim frames (a random window of the frame, up to 3x) put people at up to half the input height."""
    if rng.random() >= share:
        return None
    return float(rng.uniform(*CLOSE_UP_ZOOM))


def place(img: np.ndarray, size: int, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """Letterbox a store image into a size x size input with zoom/offset/flip; returns the image
    and the 2x3 affine (store px -> input px)."""
    h, w = img.shape[:2]
    s = size / max(w, h) * p["zoom"]
    nw, nh = w * s, h * s
    ox = (size - nw) * p["fx"] if nw <= size else -(nw - size) * p["fx"]
    oy = (size - nh) * p["fy"] if nh <= size else -(nh - size) * p["fy"]
    if p["zoom"] == 1.0 and p["fx"] == 0.5 and p["fy"] == 0.5:   # eval: the runtime's letterbox exactly
        lb = Letterbox.fit((w, h), size)
        s, (ox, oy) = lb.scale, lb.pad
    m = np.array([[s, 0, ox], [0, s, oy]], np.float32)
    if p["flip"]:
        m = np.array([[-s, 0, size - ox], [0, s, oy]], np.float32)
    out = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(114, 114, 114))
    if p["gain"] != 1.0 or p["bias"]:
        out = cv2.convertScaleAbs(out, alpha=p["gain"], beta=p["bias"])
    return out, m


def map_boxes(b: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    if not len(b):
        return b.reshape(-1, b.shape[1] if b.ndim == 2 else 5)
    xs = b[:, [0, 2]] * m[0, 0] + m[0, 2]
    ys = b[:, [1, 3]] * m[1, 1] + m[1, 2]
    out = b.copy()
    out[:, 0], out[:, 2] = xs.min(1), xs.max(1)
    out[:, 1], out[:, 3] = ys.min(1), ys.max(1)
    out[:, :4] = np.clip(out[:, :4], 0, size)
    return out


def targets(objs: np.ndarray, ign: np.ndarray, size: int, stride: int, n_cls: int, machine_known: bool
            ) -> tuple[np.ndarray, ...]:
    """CenterNet/TTFNet targets on the stride grid: heat (C,h,w), heat mask (C,h,w), box (4,h,w)
    xyxy input px, box weight (h,w)."""
    g = size // stride
    heat = np.zeros((n_cls, g, g), np.float32)
    mask = np.ones((n_cls, g, g), np.float32)
    box = np.zeros((4, g, g), np.float32)
    wgt = np.zeros((g, g), np.float32)
    area = np.full((g, g), np.inf, np.float32)
    cs = (np.arange(g, dtype=np.float32) + 0.5) * stride
    for x1, y1, x2, y2, c in ign:
        cls = range(n_cls) if c < 0 else [int(c)]
        i0, i1 = int(np.floor(y1 / stride)), int(np.ceil(y2 / stride))
        j0, j1 = int(np.floor(x1 / stride)), int(np.ceil(x2 / stride))
        for k in cls:
            mask[k, max(i0, 0):i1, max(j0, 0):j1] = 0
    if not machine_known:
        mask[1:] = 0
    for x1, y1, x2, y2, c in objs[np.argsort(-(objs[:, 2] - objs[:, 0]) * (objs[:, 3] - objs[:, 1]))]:
        bw, bh = x2 - x1, y2 - y1
        if bw < 2 or bh < 2:
            continue
        k = int(c)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        sx, sy = max(0.54 * bw / 6, 2.0), max(0.54 * bh / 6, 2.0)
        gx = np.exp(-((cs - cx) ** 2) / (2 * sx * sx))
        gy = np.exp(-((cs - cy) ** 2) / (2 * sy * sy))
        gm = gy[:, None] * gx[None, :]
        ci, cj = min(int(cy // stride), g - 1), min(int(cx // stride), g - 1)
        gm[ci, cj] = 1.0
        heat[k] = np.maximum(heat[k], gm)
        mask[k][gm > 0.05] = 1.0
        reg = (gm > 0.3) & (bw * bh <= area)
        reg[ci, cj] = True
        box[:, reg] = np.array([x1, y1, x2, y2], np.float32)[:, None]
        wgt[reg] = gm[reg] * np.log(max(bw * bh, 4.0)) / max(gm[reg].sum(), 1e-6)
        area[reg] = bw * bh
    for k in range(n_cls):   # exact peaks only where a box centre is
        h = heat[k]
        h[(h > 0.999) & (h < 1.0)] = 0.999
    return heat, mask, box, wgt
