"""Ground truth on disk: COCO JSON (person boxes + 17 keypoints, head, helmet, vest, machine),
MOTChallenge text (frame,id,x,y,w,h,conf,-1,-1,-1) and scene.json (camera, homography, zones,
events, conditions). One writer per format; pycocotools and motmetrics read the results."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runtime.geometry import apply

from .skeleton import COCO_SKELETON, KEYPOINTS
from .truth import CLASSES, FrameTruth

CATEGORY_IDS = {name: i + 1 for i, name in enumerate(CLASSES)}


def categories() -> list[dict]:
    cats = []
    for name, cid in CATEGORY_IDS.items():
        c = {"id": cid, "name": name, "supercategory": "person" if name != "machine" else "vehicle"}
        if name == "person":
            c["keypoints"] = list(KEYPOINTS)
            c["skeleton"] = COCO_SKELETON
        cats.append(c)
    return cats


def _r(v, nd=2):
    return [round(float(x), nd) for x in v]


class CocoWriter:
    def __init__(self, info: dict | None = None):
        self.images, self.annotations = [], []
        self.info = info or {}

    def add(self, index: int, t: float, truth: FrameTruth, width: int, height: int, file_name: str | None = None) -> None:
        image_id = index + 1
        self.images.append({"id": image_id, "file_name": file_name or f"frame_{index:06d}.jpg", "width": width,
                            "height": height, "frame_index": index, "t": round(t, 4), "video": "video.mp4",
                            "condition": truth.condition, "faults": list(truth.faults)})
        for k in range(len(truth)):
            x0, y0, x1, y1 = truth.boxes[k]
            base = {"image_id": image_id, "iscrowd": 0, "track_id": int(truth.track_ids[k])}
            if truth.classes[k] == "person":
                kp = truth.keypoints[k]
                vis = float(truth.visibility[k])
                self._ann(base, "person", truth.boxes[k], keypoints=_r(kp.ravel()), num_keypoints=int((kp[:, 2] > 0).sum()),
                          visibility=round(vis, 3), ignore=int(vis == 0.0),
                          attributes={"posture": truth.postures[k], "helmet": bool(truth.helmet[k]), "vest": bool(truth.vest[k]),
                                      "ground_xy": _r(truth.ground_xy[k], 3), "role": truth.roles[k],
                                      "in_zones": [z for z, m in truth.in_zones.items() if m[k]]})
                for cls, boxes in (("head", truth.head_boxes), ("helmet", truth.helmet_boxes), ("vest", truth.vest_boxes)):
                    b = boxes[k]
                    if np.isfinite(b).all() and b[2] - b[0] >= 1 and b[3] - b[1] >= 1:
                        self._ann(base, cls, b)
            else:
                self._ann(base, "machine", truth.boxes[k], attributes={"subtype": truth.subtypes[k], "ground_xy": _r(truth.ground_xy[k], 3)})

    def _ann(self, base, cls, box, **extra):
        x0, y0, x1, y1 = (float(v) for v in box)
        a = dict(base, id=len(self.annotations) + 1, category_id=CATEGORY_IDS[cls],
                 bbox=[round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)], area=round((x1 - x0) * (y1 - y0), 2))
        a.update(extra)
        self.annotations.append(a)

    def to_dict(self) -> dict:
        return {"info": self.info, "licenses": [], "images": self.images, "annotations": self.annotations, "categories": categories()}

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), separators=(",", ":")))


class MotWriter:
    """MOTChallenge 2D rows: 1-based frame numbers and 1-based pixel coordinates (the box's top-left
    pixel is (1, 1) in MOT, (0, 0) in COCO); `classes` picks which objects go in."""

    def __init__(self, classes=("person",)):
        self.rows: list[str] = []
        self.classes = set(classes)

    def add(self, index: int, truth: FrameTruth) -> None:
        for k in range(len(truth)):
            if truth.classes[k] not in self.classes:
                continue
            x0, y0, x1, y1 = truth.boxes[k]
            self.rows.append(f"{index + 1},{int(truth.track_ids[k])},{x0 + 1:.2f},{y0 + 1:.2f},{x1 - x0:.2f},{y1 - y0:.2f},1,-1,-1,-1")

    def write(self, path: Path) -> None:
        Path(path).write_text("\n".join(self.rows) + ("\n" if self.rows else ""))


def scene_json(src, events: list | None = None, seconds: float | None = None) -> dict:
    """The scene definition: camera, homography, zones (metres and pixels), structures, workers,
    machines, conditions, faults, and (when given) the events of a rendered clip."""
    cam = src.camera
    spec = src.spec
    ground = np.array([[-6.0, 10.0], [6.0, 10.0], [10.0, 35.0], [-10.0, 35.0]]) if spec.camera.position[2] >= 8 else \
        np.array([[-3.0, 8.0], [3.0, 8.0], [5.0, 20.0], [-5.0, 20.0]])
    zones = []
    for z in spec.zones:
        d = z.to_dict()
        if z.polygon is not None:
            px = apply(cam.ground_to_image, np.asarray(z.polygon, float))
            d["image_px"] = [_r(p) for p in px]
            d["normalised"] = [[round(float(p[0]) / cam.width, 4), round(float(p[1]) / cam.height, 4)] for p in px]
        zones.append(d)
    knocked = cam.moved(*spec.knock)
    return {
        "scene": spec.name, "description": spec.description, "seed": src.seed, "fps": src.fps,
        "seconds": seconds if seconds is not None else src.seconds,
        "resolution": [cam.width, cam.height],
        "camera": cam.to_dict(),
        "homography_image_to_ground": cam.homography.tolist(),
        "homography_ground_to_image": cam.ground_to_image.tolist(),
        "calibration": {"image": [_r(p) for p in apply(cam.ground_to_image, ground)], "ground": ground.tolist()},
        "zones": zones,
        "structures": [{"kind": b.spec.kind, "at": list(b.spec.at), "yaw_deg": b.spec.yaw_deg,
                        "footprint": [_r(p) for p in b.footprint]} for b in src.built],
        "machines": [{"track_id": m.track_id, "class": "machine", "subtype": m.subtype} for m in src.machines],
        "workers": [{"track_id": w.track_id, "role": w.role, **w.app.summary()} for w in src.workers],
        "condition": src.condition.to_dict(),
        "faults": [{"kind": f.kind, "start_s": f.start, "end_s": None if f.end == float("inf") else f.end} for f in spec.faults],
        "knocked_camera": {"delta_yaw_pitch_roll_deg": list(spec.knock), "homography_image_to_ground": knocked.homography.tolist()}
        if any(f.kind == "knocked" for f in spec.faults) else None,
        "events": events or [],
    }
