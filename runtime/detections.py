"""The one detections type every runtime stage passes along.

`Detections` holds N detections as parallel numpy arrays (supervision's shape): corner boxes
`xyxy` in frame pixels, `confidence`, `class_id`, `tracker_id` (-1 while untracked) and `data`,
a dict of extra per-detection arrays whose first axis is N (keypoints `(N, 17, 3)`, PPE
probabilities, ...). Class *names* are not stored per detection: the decoder or model that
produced the ids keeps them as a tuple.

It is immutable: the arrays are read-only views, and every operation (`dets[mask]`, `with_`,
`merge`) returns a new object, so a tool can never change what another tool was given.

    dets = Detections.from_arrays(xyxy, confidence, class_id)
    people = dets[dets.class_id == PERSON]
    feet = people.bottom_centre            # (N, 2): the point tested against zones
    overlap = iou(people, machines)        # (N, M)
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

UNTRACKED = -1


def _frozen(a: Any, dtype: Any, shape_tail: tuple[int, ...] | None, name: str) -> np.ndarray:
    """`a` as a read-only array of `dtype` (never locking the caller's own array)."""
    arr = np.asarray(a, dtype=dtype)
    if shape_tail is not None:
        if arr.size == 0 and arr.ndim <= 1:
            arr = arr.reshape((0, *shape_tail))
        if arr.shape[1:] != shape_tail:
            raise ValueError(f"Detections.{name} must have shape (N, {', '.join(map(str, shape_tail))}); got {arr.shape}")
    elif arr.ndim != 1:
        raise ValueError(f"Detections.{name} must be 1-D (N,); got shape {arr.shape}")
    view = arr.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class Detections:
    """N detections as parallel arrays; see the module docstring.

    xyxy: (N, 4) float32, x1 y1 x2 y2 in frame pixels.
    confidence: (N,) float32.
    class_id: (N,) int64, the model's (or its class map's) ids.
    tracker_id: (N,) int64, -1 where no tracker has given an id.
    data: extra per-detection arrays, each with first axis N.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    tracker_id: np.ndarray
    data: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = _frozen(self.xyxy, np.float32, (4,), "xyxy")
        n = len(xyxy)
        cols = {
            "confidence": _frozen(self.confidence, np.float32, None, "confidence"),
            "class_id": _frozen(self.class_id, np.int64, None, "class_id"),
            "tracker_id": _frozen(self.tracker_id, np.int64, None, "tracker_id"),
        }
        for name, arr in cols.items():
            if len(arr) != n:
                raise ValueError(f"Detections.{name} has {len(arr)} entries for {n} boxes")
        data = {}
        for key, value in dict(self.data).items():
            arr = np.asarray(value)
            if arr.ndim == 0 or len(arr) != n:
                raise ValueError(f"Detections.data[{key!r}] must have first axis {n}; got shape {arr.shape}")
            view = arr.view()
            view.flags.writeable = False
            data[key] = view
        object.__setattr__(self, "xyxy", xyxy)
        for name, arr in cols.items():
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "data", MappingProxyType(data))

    # ------------------------------------------------------------------ factories

    @classmethod
    def empty(cls, data_keys: Mapping[str, tuple[tuple[int, ...], Any]] | None = None) -> Detections:
        """No detections. `data_keys` ({name: (per-detection shape, dtype)}) gives empty data arrays
        of the right shape, so the result merges with non-empty detections that carry them."""
        data = {k: np.zeros((0, *shape), dtype) for k, (shape, dtype) in (data_keys or {}).items()}
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                   np.zeros(0, np.int64), data)

    @classmethod
    def from_arrays(cls, xyxy: Any, confidence: Any = None, class_id: Any = None,
                    tracker_id: Any = None, data: Mapping[str, Any] | None = None) -> Detections:
        """Build from arrays; missing columns default to confidence 1, class 0, untracked."""
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        n = len(xyxy)
        return cls(
            xyxy,
            np.ones(n, np.float32) if confidence is None else confidence,
            np.zeros(n, np.int64) if class_id is None else class_id,
            np.full(n, UNTRACKED, np.int64) if tracker_id is None else tracker_id,
            dict(data or {}),
        )

    @classmethod
    def from_cxcywh(cls, cxcywh: Any, confidence: Any = None, class_id: Any = None,
                    data: Mapping[str, Any] | None = None) -> Detections:
        """Build from centre/size boxes (the layout most detector heads emit)."""
        return cls.from_arrays(cxcywh_to_xyxy(cxcywh), confidence, class_id, None, data)

    @classmethod
    def merge(cls, parts: Iterable[Detections]) -> Detections:
        """Concatenate detections. Empty parts are skipped; the others must carry the same data keys."""
        given = list(parts)
        parts = [p for p in given if len(p)]
        if not parts:
            return given[0] if given else cls.empty()
        keys = set(parts[0].data)
        for p in parts[1:]:
            if set(p.data) != keys:
                raise ValueError(f"cannot merge Detections with data keys {sorted(keys)} and {sorted(p.data)}")
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.confidence for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            np.concatenate([p.tracker_id for p in parts]),
            {k: np.concatenate([p.data[k] for p in parts]) for k in keys},
        )

    def with_(self, **changes: Any) -> Detections:
        """A copy with some fields replaced (validated like a new object)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        """Select by boolean mask (length N), index array/list, slice or a single int.

        Always returns Detections (an int gives one detection), never a bare row."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        elif not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == bool:
                if index.shape != (len(self),):
                    raise IndexError(f"boolean mask of shape {index.shape} for {len(self)} detections")
            elif index.size == 0:
                index = index.astype(np.intp)
            elif not np.issubdtype(index.dtype, np.integer):
                raise IndexError(f"cannot index Detections with an array of {index.dtype}")
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index],
                          self.tracker_id[index], {k: v[index] for k, v in self.data.items()})

    def __repr__(self) -> str:
        extra = f", data={sorted(self.data)}" if self.data else ""
        return f"Detections(n={len(self)}, classes={np.unique(self.class_id).tolist()}{extra})"

    # ------------------------------------------------------------------ geometry

    @property
    def areas(self) -> np.ndarray:
        """(N,) box areas in square pixels (0 for degenerate boxes)."""
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    @property
    def centres(self) -> np.ndarray:
        """(N, 2) box centres."""
        return (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2

    @property
    def bottom_centre(self) -> np.ndarray:
        """(N, 2) middle of the bottom edge: where a person stands, the point used for zone presence."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, self.xyxy[:, 3]], axis=1)

    def clip(self, width: float, height: float) -> Detections:
        """Boxes clipped to a width x height frame."""
        lim = np.array([width, height, width, height], np.float32)
        return self.with_(xyxy=np.clip(self.xyxy, 0, lim))


def cxcywh_to_xyxy(boxes: Any) -> np.ndarray:
    """(N, 4) centre x, centre y, width, height -> (N, 4) x1 y1 x2 y2, float32."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    half = b[:, 2:] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def _xyxy(boxes: Detections | np.ndarray) -> np.ndarray:
    return np.asarray(boxes.xyxy if isinstance(boxes, Detections) else boxes, np.float32).reshape(-1, 4)


def box_area(boxes: Detections | np.ndarray) -> np.ndarray:
    """(N,) area of every box (0 for an empty or inverted one)."""
    b = _xyxy(boxes)
    return np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)


def intersection(a: Detections | np.ndarray, b: Detections | np.ndarray) -> np.ndarray:
    """(N, M) area shared by every box of `a` with every box of `b` (float32)."""
    a, b = _xyxy(a), _xyxy(b)
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
    return wh[..., 0] * wh[..., 1]


def iou(a: Detections | np.ndarray, b: Detections | np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of every box of `a` with every box of `b` (float32, 0 where
    both boxes are empty)."""
    inter = intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out
