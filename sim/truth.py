"""Per-frame ground truth: parallel arrays over the objects in view (workers and machines), in
the style of a detections dataclass: index it with a boolean mask to get a new one."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

CLASSES = ("person", "head", "helmet", "vest", "machine")


@dataclass
class FrameTruth:
    track_ids: np.ndarray                 # (N,) int
    classes: list                         # "person" | "machine"
    subtypes: list                        # "worker" | "excavator" | "truck" | "crane_load"
    boxes: np.ndarray                     # (N, 4) xyxy px, clipped to the frame; the whole body (amodal)
    keypoints: np.ndarray                 # (N, 17, 3) x, y, v (COCO: 0 unlabelled, 1 occluded, 2 visible)
    postures: list                        # standing|walking|bending|crouching|falling|fallen|arms_raised ("" machines)
    ground_xy: np.ndarray                 # (N, 2) metres
    helmet: np.ndarray                    # (N,) bool
    vest: np.ndarray                      # (N,) bool
    head_boxes: np.ndarray                # (N, 4) xyxy, NaN where absent
    helmet_boxes: np.ndarray
    vest_boxes: np.ndarray
    in_zones: dict                        # zone id -> (N,) bool
    roles: list                           # enter | near_miss | wander | work | fall | group ("" machines)
    visibility: np.ndarray                # (N,) share of a person's labelled keypoints that are seen (machines 1)
    zones_ground: dict = field(default_factory=dict)   # zone id -> (M, 2) metres this frame
    zones_px: dict = field(default_factory=dict)       # zone id -> (M, 2) px this frame
    events: list = field(default_factory=list)         # dicts: zone_entry / zone_exit / fall
    condition: str = "day"
    faults: list = field(default_factory=list)
    homography: np.ndarray | None = None               # 3x3 image px -> ground m, this frame's camera

    _PER_OBJECT = ("track_ids", "classes", "subtypes", "boxes", "keypoints", "postures", "ground_xy", "helmet",
                   "vest", "head_boxes", "helmet_boxes", "vest_boxes", "roles", "visibility")

    def __len__(self) -> int:
        return len(self.track_ids)

    @property
    def is_person(self) -> np.ndarray:
        return np.array([c == "person" for c in self.classes], bool)

    def __getitem__(self, mask) -> "FrameTruth":
        mask = np.asarray(mask)
        idx = np.nonzero(mask)[0] if mask.dtype == bool else mask
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in self._PER_OBJECT:
                kw[f.name] = v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]
            elif f.name == "in_zones":
                kw[f.name] = {k: a[idx] for k, a in v.items()}
            else:
                kw[f.name] = v
        return FrameTruth(**kw)

    @classmethod
    def empty(cls) -> "FrameTruth":
        z4 = np.zeros((0, 4))
        return cls(np.zeros(0, int), [], [], z4, np.zeros((0, 17, 3)), [], np.zeros((0, 2)), np.zeros(0, bool),
                   np.zeros(0, bool), z4, z4, z4, {}, [], np.zeros(0))
