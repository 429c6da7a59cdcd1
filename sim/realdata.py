"""Loaders for the shared, read-only real data (ETH/UCY trajectories, CCTV-style footage).

The data lives outside the repository, in ``<repo>/../shared/data`` (override the shared folder
with the environment variable ``SITEWARDEN_SHARED``); see ``../shared/data/README.md`` for
sources and licences. Nothing here writes to it.

ETH/UCY: ``ethucy/splits/<scene>/{train,val,test}/*.txt``, tab separated ``frame ped_id x y``
(metres, 2.5 Hz, frame ids step by 10). The standard protocol observes 8 steps and predicts 12;
:func:`make_windows` cuts every 20-step window of a pedestrian over consecutive frames.

Footage: ``video/*.mp4|*.gif`` read with OpenCV; :func:`footage_split` is the train/holdout split
used by distillation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

ENV_VAR = "SITEWARDEN_SHARED"
SCENES: tuple[str, ...] = ("eth", "hotel", "univ", "zara1", "zara2")
SPLITS: tuple[str, ...] = ("train", "val", "test")
FRAME_STEP = 10  # frame ids between consecutive annotations (0.4 s)
DT_S = 0.4
OBS_LEN, PRED_LEN = 8, 12
DEFAULT_GIF_FPS = 10.0  # used only if the backend gives neither frame times nor an fps


class SharedDataMissing(FileNotFoundError):
    """The shared data folder (``<shared>/data``) was not found."""


# ----------------------------------------------------------------------------- locating

def shared_root() -> Path:
    """The shared folder: ``$SITEWARDEN_SHARED`` if set, else ``<repo>/../shared``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent.parent / "shared"


def data_root() -> Path:
    """``<shared>/data``; raises :class:`SharedDataMissing` (with how to fix it) if absent."""
    root = shared_root()
    data = root / "data"
    if not data.is_dir():
        how = (f"{ENV_VAR}={os.environ[ENV_VAR]!r} is set" if os.environ.get(ENV_VAR)
               else f"{ENV_VAR} is not set, so the default <repo>/../shared was used")
        raise SharedDataMissing(
            f"shared real data not found: looked for {data} ({how}). Point {ENV_VAR} at the "
            f"shared folder that contains data/ (e.g. `export {ENV_VAR}=/path/to/shared`), "
            f"or place it beside the repository as ../shared.")
    return data


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found in the shared data at {data_root()}")
    return path


# ----------------------------------------------------------------------------- ETH/UCY rows

@dataclass(frozen=True)
class TrackRows:
    """All rows of one split as parallel arrays; ``files[file_idx[i]]`` is row i's source file."""

    files: tuple[str, ...]   # file names (e.g. "biwi_eth.txt"), sorted
    file_idx: np.ndarray     # (N,) int32
    frame: np.ndarray        # (N,) int64
    ped: np.ndarray          # (N,) int64, unique within a file only
    xy: np.ndarray           # (N, 2) float64 metres

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    def n_pedestrians(self) -> int:
        """Distinct (file, pedestrian) pairs."""
        return len(np.unique(np.c_[self.file_idx, self.ped], axis=0))


@lru_cache(maxsize=64)
def _read_track_file(path: Path) -> np.ndarray:
    """(N, 4) float64 ``frame ped x y`` of one split file (read-only, cached)."""
    values = np.array(path.read_text().split(), dtype=np.float64)
    if values.size % 4:
        raise ValueError(f"{path}: expected 4 columns per row")
    arr = values.reshape(-1, 4)
    if not (np.all(arr[:, :2] == np.round(arr[:, :2]))):
        raise ValueError(f"{path}: non-integer frame or pedestrian id")
    arr.setflags(write=False)
    return arr


def split_files(scene: str, split: str) -> list[Path]:
    """The ``*.txt`` files of ``scene``/``split``, sorted by name."""
    if scene not in SCENES or split not in SPLITS:
        raise ValueError(f"scene must be one of {SCENES} and split one of {SPLITS}")
    folder = _require(data_root() / "ethucy" / "splits" / scene / split)
    return sorted(folder.glob("*.txt"))


def load_split(scene: str, split: str) -> TrackRows:
    """Every row of a split, in file order then file row order."""
    files = split_files(scene, split)
    arrs = [_read_track_file(f) for f in files]
    cat = np.concatenate(arrs) if arrs else np.zeros((0, 4))
    return TrackRows(
        files=tuple(f.name for f in files),
        file_idx=np.repeat(np.arange(len(arrs), dtype=np.int32), [len(a) for a in arrs]),
        frame=cat[:, 0].astype(np.int64), ped=cat[:, 1].astype(np.int64),
        xy=np.ascontiguousarray(cat[:, 2:4]))


@dataclass(frozen=True)
class Trajectory:
    """One pedestrian in one file, sorted by frame."""

    file: str
    ped: int
    frames: np.ndarray  # (T,) int64
    xy: np.ndarray      # (T, 2) float64


def trajectories(rows: TrackRows) -> list[Trajectory]:
    """Rows grouped per (file, pedestrian), ordered by file then pedestrian id."""
    order = np.lexsort((rows.frame, rows.ped, rows.file_idx))
    fi, pe = rows.file_idx[order], rows.ped[order]
    cuts = np.flatnonzero((np.diff(fi) != 0) | (np.diff(pe) != 0)) + 1
    out = []
    for idx in np.split(order, cuts) if len(order) else []:
        out.append(Trajectory(rows.files[rows.file_idx[idx[0]]], int(rows.ped[idx[0]]),
                              rows.frame[idx], rows.xy[idx]))
    return out


# ----------------------------------------------------------------------------- windows

@dataclass(frozen=True)
class Windows:
    """Standard prediction windows: ``obs`` (N, obs_len, 2) then ``fut`` (N, pred_len, 2)."""

    obs: np.ndarray          # (N, 8, 2) metres
    fut: np.ndarray          # (N, 12, 2) metres
    files: tuple[str, ...]   # as in TrackRows
    file_idx: np.ndarray     # (N,) int32
    ped: np.ndarray          # (N,) int64
    start_frame: np.ndarray  # (N,) int64, frame of obs[:, 0]

    def __len__(self) -> int:
        return int(self.obs.shape[0])


def make_windows(rows: TrackRows, obs_len: int = OBS_LEN, pred_len: int = PRED_LEN,
                 frame_step: int = FRAME_STEP) -> Windows:
    """Every ``obs_len + pred_len`` window of each pedestrian whose frames step by exactly
    ``frame_step`` (no gaps), sliding by one step; ordered by file, pedestrian, start frame."""
    total = obs_len + pred_len
    seqs, fidx, peds, starts = [], [], [], []
    for tr in trajectories(rows):
        n = len(tr.frames) - total + 1
        if n <= 0:
            continue
        ok = np.diff(tr.frames) == frame_step
        run = np.convolve(ok.astype(np.int64), np.ones(total - 1, dtype=np.int64), "valid")
        s = np.flatnonzero(run == total - 1)
        if not len(s):
            continue
        seqs.append(tr.xy[s[:, None] + np.arange(total)])
        fidx.append(np.full(len(s), rows.files.index(tr.file), np.int32))
        peds.append(np.full(len(s), tr.ped, np.int64))
        starts.append(tr.frames[s])
    if seqs:
        allw = np.concatenate(seqs)
        fi, pe, st = np.concatenate(fidx), np.concatenate(peds), np.concatenate(starts)
    else:
        allw = np.zeros((0, total, 2))
        fi, pe, st = np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return Windows(allw[:, :obs_len].copy(), allw[:, obs_len:].copy(), rows.files, fi, pe, st)


def load_windows(scene: str, split: str) -> Windows:
    """:func:`make_windows` of :func:`load_split` with the standard 8 + 12 steps."""
    return make_windows(load_split(scene, split))


def window_neighbours(rows: TrackRows, windows: Windows, observed_only: bool = True,
                      frame_step: int = FRAME_STEP) -> list[np.ndarray]:
    """Other pedestrians of the same file around each window, for social models.

    Returns one float32 array per window of shape (K_i, T, 2): every other pedestrian present in
    at least one of the window's T frames (T = obs_len if ``observed_only`` else obs+pred),
    ordered by pedestrian id, NaN in the frames where that pedestrian is absent.
    """
    t_len = windows.obs.shape[1] + (0 if observed_only else windows.fut.shape[1])
    out: list[np.ndarray] = [np.zeros((0, t_len, 2), np.float32)] * len(windows)
    for f in range(len(rows.files)):
        m = rows.file_idx == f
        frames, peds, xy = rows.frame[m], rows.ped[m], rows.xy[m]
        uf, fi = np.unique(frames, return_inverse=True)
        up, pi = np.unique(peds, return_inverse=True)
        grid = np.full((len(uf), len(up), 2), np.nan, np.float32)
        grid[fi, pi] = xy
        for w in np.flatnonzero(windows.file_idx == f):
            want = windows.start_frame[w] + frame_step * np.arange(t_len)
            pos = np.searchsorted(uf, want)
            pos_ok = pos < len(uf)
            sub = np.full((t_len, len(up), 2), np.nan, np.float32)
            hit = pos_ok & (uf[np.minimum(pos, len(uf) - 1)] == want)
            sub[hit] = grid[pos[hit]]
            present = ~np.isnan(sub[..., 0]).all(axis=0)
            present[np.searchsorted(up, windows.ped[w])] = False
            out[w] = np.ascontiguousarray(sub[:, present].transpose(1, 0, 2))
    return out


def constant_velocity_ade_fde(windows: Windows) -> tuple[float, float]:
    """ADE/FDE (m) of constant velocity from the last two observed steps (a sanity baseline)."""
    vel = windows.obs[:, -1] - windows.obs[:, -2]
    steps = np.arange(1, windows.fut.shape[1] + 1)[None, :, None]
    pred = windows.obs[:, -1:, :] + vel[:, None, :] * steps
    err = np.linalg.norm(pred - windows.fut, axis=-1)
    return float(err.mean()), float(err[:, -1].mean())


# ----------------------------------------------------------------------------- homographies

# Image size (width, height) of each sequence's camera.
IMAGE_SIZE: dict[str, tuple[int, int]] = {
    "seq_eth": (640, 480), "seq_hotel": (720, 576), "zara01": (720, 576), "zara02": (720, 576),
    "zara03": (720, 576), "students03": (720, 576)}
_FILE_SEQUENCE = {"biwi_eth": "seq_eth", "biwi_hotel": "seq_hotel", "crowds_zara01": "zara01",
                  "crowds_zara02": "zara02", "crowds_zara03": "zara03",
                  "students001": "students03", "students003": "students03",
                  "uni_examples": "students03"}


def sequence_for_file(file_name: str) -> str:
    """The homography sequence of a split file, e.g. ``biwi_eth_train.txt -> seq_eth``.
    The university files (students001/003, uni_examples) share the students03 camera."""
    stem = Path(file_name).stem.removesuffix("_train").removesuffix("_val")
    try:
        return _FILE_SEQUENCE[stem]
    except KeyError:
        raise ValueError(f"no homography sequence known for {file_name!r}") from None


def load_homography(seq: str) -> np.ndarray:
    """The raw 3x3 ``H.txt`` of a sequence as stored (image -> world; see world_to_pixel)."""
    if seq not in IMAGE_SIZE:
        raise ValueError(f"sequence must be one of {sorted(IMAGE_SIZE)}")
    return np.loadtxt(_require(data_root() / "ethucy" / "homography" / seq / "H.txt"))


def world_to_pixel(seq: str, xy: np.ndarray) -> np.ndarray:
    """Project split-file world points (metres, (..., 2)) to image pixels (u, v) = (col, row),
    origin at the top-left corner of the sequence's reference frame.

    Conventions (checked by overlaying annotated positions on each ``reference.png``):

    * ``seq_eth``, ``seq_hotel``: ``inv(H) @ [x, y, 1]`` gives (row, col); we swap to (u, v).
    * UCY (``zara01-03``, ``students03``): the split files hold UCY pixel positions scaled by
      0.02104651 m/px horizontally and 0.02386598 m/px vertically, with y pointing up, which is
      exactly ``students03/H.txt`` applied to image-centred pixels (x right, y up). We invert that
      for every UCY sequence. The OpenTraj ``zara0x/H.txt`` files use OpenTraj's own world frame
      (x mirrored, ~0.026 m/px) and do *not* match the split files, so they are not used here.
    """
    pts = np.asarray(xy, dtype=np.float64)
    flat = pts.reshape(-1, 2)
    homog = np.c_[flat, np.ones(len(flat))]
    if seq in ("seq_eth", "seq_hotel"):
        p = homog @ np.linalg.inv(load_homography(seq)).T
        uv = (p[:, :2] / p[:, 2:3])[:, ::-1]
    elif seq in IMAGE_SIZE:
        w, h = IMAGE_SIZE[seq]
        p = homog @ np.linalg.inv(load_homography("students03")).T
        p = p[:, :2] / p[:, 2:3]
        uv = np.c_[p[:, 0] + w / 2, h / 2 - p[:, 1]]
    else:
        raise ValueError(f"sequence must be one of {sorted(IMAGE_SIZE)}")
    return uv.reshape(pts.shape)


# ----------------------------------------------------------------------------- footage

@dataclass(frozen=True)
class ClipInfo:
    """One clip under ``video/``, as reported by the container."""

    name: str
    path: Path
    frames: int
    width: int
    height: int
    fps: float

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps > 0 else self.frames / DEFAULT_GIF_FPS


def _clip_path(name: str) -> Path:
    return _require(data_root() / "video" / Path(name).name)


def clip_info(name: str) -> ClipInfo:
    """Frame count, size and fps of one clip (file name under ``video/``)."""
    return _probe(_clip_path(name))


@lru_cache(maxsize=32)
def _probe(path: Path) -> ClipInfo:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise OSError(f"OpenCV cannot open {path}")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n <= 0:  # no count in the container: decode to count
            n = 0
            while cap.grab():
                n += 1
        return ClipInfo(path.name, path, n, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                        int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), float(cap.get(cv2.CAP_PROP_FPS)))
    finally:
        cap.release()


def list_clips() -> list[ClipInfo]:
    """Every ``.mp4``/``.gif`` under ``video/``, sorted by name."""
    folder = _require(data_root() / "video")
    return [clip_info(p.name) for p in sorted(folder.iterdir())
            if p.suffix.lower() in (".mp4", ".gif")]


def iter_frames(name: str, start: int = 0,
                stop: int | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(index, t_seconds, BGR uint8 frame)`` for frames ``start <= index < stop``.

    ``t`` is the decoder's presentation time (``CAP_PROP_POS_MSEC``), which for GIFs follows
    the per-frame delays (e.g. 70/60 ms in the worker-zone preview). Where the backend reports
    no increasing time, ``t`` continues at the container fps, or :data:`DEFAULT_GIF_FPS`.
    """
    path = _clip_path(name)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError(f"OpenCV cannot open {path}")
    fps = cap.get(cv2.CAP_PROP_FPS)
    dt = 1.0 / (fps if fps and fps > 0 else DEFAULT_GIF_FPS)
    idx, last_t = 0, -dt
    try:
        while stop is None or idx < stop:
            if idx < start:
                ok, frame = cap.grab(), None
            else:
                ok, frame = cap.read()
            if not ok:
                break
            ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            t = ms / 1000.0 if ms >= 0 and ms / 1000.0 > last_t else last_t + dt
            last_t = t
            if frame is not None:
                yield idx, t, frame
            idx += 1
    finally:
        cap.release()


HOLDOUT_FRACTION = 0.3
# Held out whole: the worker-zone GIF, and the mp4's own preview GIF, which is a cut-out of the
# mp4 (its frames match mp4 frames ~230-268, i.e. the mp4's TRAIN part). The issue keeps it out of
# training; evaluations should still flag it as a near-duplicate of training frames.
HOLDOUT_CLIPS = frozenset({"preview_worker-zone-detection.gif", "preview_one-by-one-person-detection.gif"})
# Clips whose tail is held out. The mp4's cut is moved back from 70% (frame 975) to frame 920, the
# last empty frame before the visit that straddled 975 (a woman walks in at ~928 and stands at
# the table until ~1175): no person is seen on both sides of the cut, and at least the last 30%
# of frames (here 34%) is held out.
TAIL_HOLDOUT_START = {"one-by-one-person-detection.mp4": 920}
TAIL_HOLDOUT_CLIPS = frozenset(TAIL_HOLDOUT_START)


def holdout_start(name: str, n_frames: int | None = None) -> int | None:
    """First HOLDOUT frame index of a clip: 0 for a held-out clip, the documented cut for a
    tail-split clip (never later than the last 30% of its frames), ``None`` for a TRAIN-only clip."""
    name = Path(name).name
    if name in HOLDOUT_CLIPS:
        return 0
    if name in TAIL_HOLDOUT_START:
        n = clip_info(name).frames if n_frames is None else n_frames
        return min(TAIL_HOLDOUT_START[name], (n * 7) // 10)
    return None


def footage_split(name: str, index: int,
                  n_frames: int | None = None) -> Literal["train", "holdout"]:
    """The distillation split of frame ``index`` of clip ``name``.

    HOLDOUT: all of ``preview_worker-zone-detection.gif`` and ``preview_one-by-one-person-detection.gif``,
    and ``one-by-one-person-detection.mp4`` from frame 920 (its last 34%, cut at a scene gap); every
    other frame is TRAIN. ``n_frames`` avoids opening the clip to count frames.
    """
    first = holdout_start(name, n_frames)
    return "holdout" if first is not None and index >= first else "train"
