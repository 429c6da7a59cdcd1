"""ETH/UCY windows in the student's local frame, plus neighbour context for the teacher.

Every model here sees its input through :func:`runtime.forecast.encode` and is scored through
:func:`runtime.forecast.decode`, exactly as the runtime will run it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.forecast import Frame, encode, neighbour_features, target_offsets
from sim import realdata

N_NEIGHBOURS = 6       # nearest other pedestrians (at the last observed step) given to the teacher
NEIGHBOUR_RADIUS_M = 8.0


@dataclass(frozen=True)
class Split:
    """One set of windows, ready for training or scoring."""

    name: str
    obs: np.ndarray        # (N, 8, 2) world metres
    fut: np.ndarray        # (N, 12, 2) world metres
    x: np.ndarray          # (N, 8, 2) float32 encoded input (local frame)
    y: np.ndarray          # (N, 12, 2) float32 target offsets from CV (local frame)
    nb: np.ndarray         # (N, K, 8, 3) float32 neighbours in the local frame: x, y, present (teacher)
    soc: np.ndarray        # (N, 4, 5) float32 runtime.forecast.neighbour_features (social students)
    frame: Frame
    files: tuple[str, ...]
    file_idx: np.ndarray
    ped: np.ndarray
    start_frame: np.ndarray

    def __len__(self) -> int:
        return len(self.obs)

    def subset(self, idx: np.ndarray) -> "Split":
        f = self.frame
        return Split(self.name, self.obs[idx], self.fut[idx], self.x[idx], self.y[idx], self.nb[idx], self.soc[idx],
                     Frame(f.origin[idx], f.rot[idx], f.vel[idx]), self.files, self.file_idx[idx],
                     self.ped[idx], self.start_frame[idx])


def union_rows(split: str, scenes: tuple[str, ...] = realdata.SCENES) -> realdata.TrackRows:
    """The rows of every distinct file in ``split`` over the given scenes' folders (the
    "all five scenes" training set: each file once)."""
    parts, names = [], []
    for scene in scenes:
        rows = realdata.load_split(scene, split)
        for i, name in enumerate(rows.files):
            if name in names:
                continue
            m = rows.file_idx == i
            names.append(name)
            parts.append((len(names) - 1, rows.frame[m], rows.ped[m], rows.xy[m]))
    return realdata.TrackRows(
        files=tuple(names), file_idx=np.concatenate([np.full(len(p[1]), p[0], np.int32) for p in parts]),
        frame=np.concatenate([p[1] for p in parts]), ped=np.concatenate([p[2] for p in parts]),
        xy=np.concatenate([p[3] for p in parts]))


def _neighbour_tensor(nbs: list[np.ndarray], frame: Frame, k: int = N_NEIGHBOURS) -> np.ndarray:
    out = np.zeros((len(nbs), k, realdata.OBS_LEN, 3), np.float32)
    for i, nb in enumerate(nbs):
        if not len(nb):
            continue
        loc = np.einsum("ij,ktj->kti", frame.rot[i], nb.astype(np.float64) - frame.origin[i])
        present = ~np.isnan(loc[..., 0])
        # distance at the last step each neighbour was seen
        last = np.where(present.any(1), present.shape[1] - 1 - np.argmax(present[:, ::-1], 1), 0)
        d = np.linalg.norm(loc[np.arange(len(loc)), last], axis=-1)
        d = np.where(np.isnan(d), np.inf, d)
        order = np.argsort(d, kind="stable")[:k]
        order = order[d[order] <= NEIGHBOUR_RADIUS_M]
        sel = np.nan_to_num(loc[order])
        out[i, :len(order), :, :2] = sel
        out[i, :len(order), :, 2] = present[order]
    return out


def from_rows(name: str, rows: realdata.TrackRows, neighbours: bool = True,
              limit: int | None = None) -> Split:
    """Windows of ``rows``, encoded; ``limit`` keeps an evenly spaced subset (smoke runs)."""
    w = realdata.make_windows(rows)
    idx = np.arange(len(w))
    if limit is not None and len(w) > limit:
        idx = np.linspace(0, len(w) - 1, limit).round().astype(int)
    obs, fut = w.obs[idx], w.fut[idx]
    x, frame = encode(obs)
    y = target_offsets(fut, frame)
    if neighbours:
        sub = realdata.Windows(obs, fut, w.files, w.file_idx[idx], w.ped[idx], w.start_frame[idx])
        around = realdata.window_neighbours(rows, sub)
        nb = _neighbour_tensor(around, frame)
        # the students' social input: people seen at both of the last two observed steps, exactly
        # as the runtime builds it from the tracker's current tracks
        others = [a[:, -2:][~np.isnan(a[:, -2:]).any(axis=(1, 2))] for a in around]
        soc = neighbour_features(frame, others)
    else:
        nb = np.zeros((len(obs), N_NEIGHBOURS, realdata.OBS_LEN, 3), np.float32)
        soc = neighbour_features(frame, [np.zeros((0, 2, 2))] * len(obs))
    return Split(name, obs, fut, x, y, nb, soc, frame, w.files, w.file_idx[idx], w.ped[idx], w.start_frame[idx])


def load(scene: str | None, split: str, neighbours: bool = True, limit: int | None = None) -> Split:
    """A scene's split (leave-one-out folders), or with ``scene=None`` the union over all five."""
    rows = union_rows(split) if scene is None else realdata.load_split(scene, split)
    return from_rows(f"{scene or 'all'}/{split}", rows, neighbours, limit)
