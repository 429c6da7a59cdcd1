"""Ground truth for replays and end-to-end tests: load it (a `build.py sim` export, a MOTChallenge
file, or the simulator's frames in-process) and score the events a run raised against it.

    truth = Truth.from_export("out/sim-crane")            # annotations.json + scene.json
    report = score(observed, truth, config)               # per type: true / false, false per camera-hour

An event is matched to a ground-truth person by its track's box in the frame that raised it
(IoU >= MATCH_IOU with the person's box in the nearest truth frame), then judged by its type:

=================  ===============================================================================
zone_intrusion,    the person is inside the zone (truth's zone membership) at some frame within
zone_dwell         `tol_s` of the event; for a machine-radius zone (which follows *every* machine),
                   within ``radius_m + tol_m`` of any machine's ground position
ppe_violation      every item the event says is missing is really absent on that person
posture            the person is ``falling`` or ``fallen`` within `tol_s` before/after the event
predicted_entry    the person is inside the zone within ``horizon_s + tol_s`` after the warning
camera_health      a matching camera fault (blocked, defocus, knocked -> moved, lights_out ->
                   too_dark) is active within ``after_s + tol_s`` before the event
=================  ===============================================================================

Anything else (no person matched, wrong zone) is a false alarm. Recall is scored the other way round:
each truth zone entry, fall and camera fault, and each person seen without the PPE a rule requires,
is *caught* when a true event of the right kind points at it. ``model_switch`` events are not alarms.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.config import RuntimeConfig
from runtime.events import Event

MATCH_IOU = 0.3
FAULT_CHECK = {"blocked": "blocked", "defocus": "defocused", "knocked": "moved", "lights_out": "too_dark"}
ALARM_TYPES = ("zone_intrusion", "zone_dwell", "predicted_entry", "ppe_violation", "posture", "camera_health")


@dataclass
class TruthFrame:
    t: float
    track_ids: np.ndarray  # (N,) persons only
    boxes: np.ndarray  # (N, 4) xyxy px
    helmet: np.ndarray
    vest: np.ndarray
    postures: list[str]
    in_zones: list[frozenset]
    faults: tuple[str, ...] = ()
    ground: np.ndarray | None = None  # (N, 2) metres: the persons' feet
    machines: np.ndarray | None = None  # (M, 2) metres: the machines' ground positions


@dataclass
class Truth:
    frames: list[TruthFrame]
    events: list[dict] = field(default_factory=list)  # zone_entry / zone_exit / fall with t (s)
    faults: list[dict] = field(default_factory=list)  # kind, start_s, end_s (None: for good)
    fps: float = 10.0

    @property
    def duration_s(self) -> float:
        return (self.frames[-1].t - self.frames[0].t + 1.0 / self.fps) if self.frames else 0.0

    def at(self, t: float) -> TruthFrame | None:
        if not self.frames:
            return None
        ts = self._ts()
        i = int(np.clip(np.searchsorted(ts, t), 1, len(ts) - 1)) if len(ts) > 1 else 0
        if len(ts) > 1 and abs(ts[i - 1] - t) <= abs(ts[i] - t):
            i -= 1
        return self.frames[i] if abs(ts[i] - t) <= 1.0 / self.fps else None

    def between(self, t0: float, t1: float) -> list[TruthFrame]:
        ts = self._ts()
        return self.frames[int(np.searchsorted(ts, t0 - 1e-6)):int(np.searchsorted(ts, t1 + 1e-6))]

    def _ts(self) -> np.ndarray:
        if getattr(self, "_t_cache", None) is None or len(self._t_cache) != len(self.frames):
            self._t_cache = np.array([f.t for f in self.frames])
        return self._t_cache

    # --- loaders -------------------------------------------------------------------------------

    @classmethod
    def from_export(cls, path: str | Path) -> "Truth":
        """A `build.py sim` folder (or its annotations.json): per-frame persons with PPE, posture and
        zones; events, faults and fps from scene.json beside it."""
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        coco = json.loads((folder / "annotations.json").read_text())
        scene = json.loads((folder / "scene.json").read_text()) if (folder / "scene.json").exists() else {}
        by_image: dict[int, list[dict]] = {}
        machines: dict[int, list[dict]] = {}
        machine_cat = next((c["id"] for c in coco["categories"] if c["name"] == "machine"), -1)
        for a in coco["annotations"]:
            if a["category_id"] == 1 and not a.get("ignore"):
                by_image.setdefault(a["image_id"], []).append(a)
            elif a["category_id"] == machine_cat:
                machines.setdefault(a["image_id"], []).append(a)
        frames = []
        for im in sorted(coco["images"], key=lambda im: im["frame_index"]):
            anns = by_image.get(im["id"], [])
            boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], float).reshape(-1, 4)
            at = [a["attributes"] for a in anns]
            frames.append(TruthFrame(float(im["t"]), np.array([a["track_id"] for a in anns], int), boxes,
                                     np.array([x["helmet"] for x in at], bool), np.array([x["vest"] for x in at], bool),
                                     [x["posture"] for x in at], [frozenset(x["in_zones"]) for x in at],
                                     tuple(im.get("faults") or ()),
                                     np.array([x["ground_xy"] for x in at], float).reshape(-1, 2),
                                     np.array([a["attributes"]["ground_xy"] for a in machines.get(im["id"], [])],
                                              float).reshape(-1, 2)))
        fps = float(scene.get("fps") or coco.get("info", {}).get("fps") or 10.0)
        return cls(frames, list(scene.get("events") or []), list(scene.get("faults") or []), fps)

    @classmethod
    def from_mot(cls, path: str | Path, fps: float) -> "Truth":
        """Boxes and ids only (MOTChallenge rows, 1-based frames and pixels): enough for tracking
        and to tell alarms about nobody from alarms about a person; nothing about zones or PPE."""
        rows = np.loadtxt(path, delimiter=",", ndmin=2)
        frames = []
        for f in np.unique(rows[:, 0]).astype(int):
            r = rows[rows[:, 0] == f]
            boxes = np.stack([r[:, 2] - 1, r[:, 3] - 1, r[:, 2] - 1 + r[:, 4], r[:, 3] - 1 + r[:, 5]], 1)
            n = len(r)
            frames.append(TruthFrame((f - 1) / fps, r[:, 1].astype(int), boxes, np.ones(n, bool), np.ones(n, bool),
                                     [""] * n, [frozenset()] * n))
        return cls(frames, fps=fps)

    @classmethod
    def from_sim(cls, frames, spec=None, fps: float = 10.0) -> "Truth":
        """From the simulator in-process: `frames` are (t, FrameTruth) pairs; `spec` (a SceneSpec)
        gives the faults."""
        out, events = [], []
        for t, tr in frames:
            p = tr[tr.is_person]
            m = tr[~tr.is_person]
            out.append(TruthFrame(float(t), np.asarray(p.track_ids, int), np.asarray(p.boxes, float).reshape(-1, 4),
                                  np.asarray(p.helmet, bool), np.asarray(p.vest, bool), list(p.postures),
                                  [frozenset(z for z, m in p.in_zones.items() if m[k]) for k in range(len(p))],
                                  tuple(tr.faults), np.asarray(p.ground_xy, float).reshape(-1, 2),
                                  np.asarray(m.ground_xy, float).reshape(-1, 2)))
            events.extend(tr.events)
        faults = [{"kind": f.kind, "start_s": f.start, "end_s": None if f.end == float("inf") else f.end}
                  for f in (spec.faults if spec is not None else ())]
        return cls(out, events, faults, fps)


@dataclass
class Observed:
    """An event as a run saw it: source time (s from the first frame) and its track's box."""

    event: Event
    t: float
    box: np.ndarray | None = None


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box `a` against boxes `b` (N, 4)."""
    b = np.asarray(b, float).reshape(-1, 4)
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def match_person(truth: Truth, t: float, box) -> tuple[int | None, TruthFrame | None, int]:
    """The truth person under `box` at time t: (track id, frame, index) or (None, frame, -1)."""
    fr = truth.at(t)
    if fr is None or box is None or not len(fr.boxes):
        return None, fr, -1
    ious = iou(np.asarray(box, float), fr.boxes)
    k = int(np.argmax(ious))
    return (int(fr.track_ids[k]), fr, k) if ious[k] >= MATCH_IOU else (None, fr, -1)


def _in_zone(truth: Truth, gid: int, zone: str, t0: float, t1: float) -> bool:
    for fr in truth.between(t0, t1):
        for k, tid in enumerate(fr.track_ids):
            if tid == gid and zone in fr.in_zones[k]:
                return True
    return False


def _near_machine(truth: Truth, gid: int, radius_m: float, t0: float, t1: float) -> bool:
    """Within `radius_m` of any machine (a spec's `around: {class: machine}` follows every machine)."""
    for fr in truth.between(t0, t1):
        if fr.ground is None or fr.machines is None or not len(fr.machines):
            continue
        for k, tid in enumerate(fr.track_ids):
            if tid == gid and np.min(np.hypot(*(fr.machines - fr.ground[k]).T)) <= radius_m:
                return True
    return False


def _fault_active(truth: Truth, check: str, t0: float, t1: float) -> bool:
    for f in truth.faults:
        if FAULT_CHECK.get(f["kind"]) == check:
            end = float("inf") if f["end_s"] is None else f["end_s"]
            if f["start_s"] <= t1 and end >= t0:
                return True
    return False


def judge(o: Observed, truth: Truth, config: RuntimeConfig, tol_s: float = 1.0,
          tol_m: float = 1.5) -> tuple[bool, int | None]:
    """(true alarm?, the truth person it points at)."""
    e, t = o.event, o.t
    if e.type == "camera_health":
        check = str(e.details.get("check", ""))
        after = max((r.after_s for r in config.health), default=10.0)
        return _fault_active(truth, check, t - after - tol_s, t + tol_s), None
    gid, fr, k = match_person(truth, t, o.box)
    if gid is None:
        return False, None
    if e.type in ("zone_intrusion", "zone_dwell"):
        zone = next((z for c in config.cameras for z in c.zones if z.id == e.zone and c.id == e.camera), None)
        if zone is not None and zone.shape == "around" and zone.radius_m:
            return _near_machine(truth, gid, zone.radius_m + tol_m, t - tol_s, t + tol_s), gid
        return _in_zone(truth, gid, e.zone, t - tol_s, t + tol_s), gid
    if e.type == "predicted_entry":
        horizon = float(e.details.get("horizon_s") or 3.0)
        return _in_zone(truth, gid, e.zone, t, t + horizon + tol_s), gid
    if e.type == "ppe_violation":
        have = {"helmet": bool(fr.helmet[k]), "vest": bool(fr.vest[k])}
        return all(not have.get(m, False) for m in e.details.get("missing", [])), gid
    if e.type == "posture":
        for f in truth.between(t - tol_s - 2.0, t + tol_s):
            for j, tid in enumerate(f.track_ids):
                if tid == gid and f.postures[j] in ("falling", "fallen"):
                    return True, gid
        return False, gid
    return False, gid


def score(observed: list[Observed], truth: Truth, config: RuntimeConfig, camera_hours: float | None = None,
          tol_s: float = 1.0) -> dict:
    """Per alarm type: events, true, false, false per camera-hour; recall of truth episodes."""
    hours = camera_hours if camera_hours is not None else truth.duration_s / 3600.0
    per: dict[str, dict] = {}
    verdicts = []
    for o in observed:
        if o.event.type not in ALARM_TYPES or o.event.severity == "info":
            continue
        ok, gid = judge(o, truth, config, tol_s)
        verdicts.append((o, ok, gid))
        d = per.setdefault(o.event.type, {"events": 0, "true": 0, "false": 0})
        d["events"] += 1
        d["true" if ok else "false"] += 1
    for d in per.values():
        d["false_per_camera_hour"] = round(d["false"] / hours, 1) if hours > 0 else None
        d["precision"] = round(d["true"] / d["events"], 3) if d["events"] else None
    return {"camera_hours": hours, "per_type": per, "recall": _recall(verdicts, truth, config, tol_s),
            "false_alarms": sum(d["false"] for d in per.values()),
            "false_per_camera_hour": round(sum(d["false"] for d in per.values()) / hours, 1) if hours > 0 else None}


def _recall(verdicts, truth: Truth, config: RuntimeConfig, tol_s: float) -> dict:
    t_end = truth.frames[-1].t if truth.frames else 0.0
    true = [(o, gid) for o, ok, gid in verdicts if ok]
    out = {}
    alarming = {z.id for c in config.cameras for z in c.zones if z.kind in ("danger", "restricted")}
    entries = [e for e in truth.events if e["type"] == "zone_entry" and e["zone"] in alarming and e["t"] <= t_end - tol_s]
    # caught: a true intrusion for that person and zone soon after the entry, or one within the
    # cooldown before it (a re-entry inside the cooldown is rightly not raised again)
    caught = sum(any(o.event.type in ("zone_intrusion", "zone_dwell") and o.event.zone == e["zone"] and gid == e["track_id"]
                     and e["t"] - config.cooldown_s <= o.t <= e["t"] + 3.0 for o, gid in true) for e in entries)
    out["zone_entries"] = {"truth": len(entries), "caught": caught}
    horizons = {z.id: z.predict_horizon_s for c in config.cameras for z in c.zones if z.predict_horizon_s}
    predictable = [e for e in entries if e["zone"] in horizons]
    if predictable:  # warned ahead: a true predicted_entry for that person and zone before the entry
        leads = []
        for e in predictable:
            ts = [o.t for o, gid in true if o.event.type == "predicted_entry" and o.event.zone == e["zone"]
                  and gid == e["track_id"] and e["t"] - horizons[e["zone"]] - tol_s <= o.t <= e["t"]]
            if ts:
                leads.append(e["t"] - min(ts))
        out["entries_warned"] = {"truth": len(predictable), "caught": len(leads),
                                 "mean_lead_s": round(float(np.mean(leads)), 2) if leads else None}
    falls = [e for e in truth.events if e["type"] == "fall" and e["t"] <= t_end - 3.0]
    caught = sum(any(o.event.type == "posture" and gid == e["track_id"] and o.t >= e["t"] - tol_s for o, gid in true)
                 for e in falls)
    out["falls"] = {"truth": len(falls), "caught": caught}
    after = max((r.after_s for r in config.health), default=None)
    if after is not None:
        faults = [f for f in truth.faults if f["kind"] in FAULT_CHECK and f["start_s"] + after + tol_s <= t_end]
        caught = sum(any(o.event.type == "camera_health" and o.event.details.get("check") == FAULT_CHECK[f["kind"]]
                         and o.t >= f["start_s"] for o, _ in true) for f in faults)
        out["camera_faults"] = {"truth": len(faults), "caught": caught}
    if config.ppe:
        need = _ppe_expected(truth, config)
        flagged = {gid for o, gid in true if o.event.type == "ppe_violation"}
        out["ppe_people"] = {"truth": len(need), "caught": len(need & flagged)}
    return out


def _ppe_expected(truth: Truth, config: RuntimeConfig, min_height_px: float = 30.0) -> set[int]:
    """Truth people who lack PPE some rule requires, seen (box at least `min_height_px` tall, where
    the rule applies) for longer than its grace plus 2 s."""
    seen: dict[tuple[int, int], float] = {}
    dt = 1.0 / truth.fps
    for fr in truth.frames:
        for k, tid in enumerate(fr.track_ids):
            if fr.boxes[k, 3] - fr.boxes[k, 1] < min_height_px:
                continue
            have = {"helmet": bool(fr.helmet[k]), "vest": bool(fr.vest[k])}
            for i, r in enumerate(config.ppe):
                if any(not have.get(x, True) for x in r.require) and (not r.zones or fr.in_zones[k] & set(r.zones)):
                    seen[(int(tid), i)] = seen.get((int(tid), i), 0.0) + dt
    return {tid for (tid, i), s in seen.items() if s > config.ppe[i].grace_s + 2.0}


def iou_distance(a: np.ndarray, b: np.ndarray, max_d: float = 0.5) -> np.ndarray:
    """1 - IoU between boxes a (N, 4) and b (M, 4), NaN beyond `max_d` (motmetrics' convention;
    its own iou_matrix breaks on numpy 2)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    d = 1.0 - inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
    return np.where(d > max_d, np.nan, d)


def tracking_metrics(tracks, truth: Truth, min_height_px: float = 20.0) -> dict | None:
    """MOTA, IDF1, id switches of a run's person tracks [(t, ids, boxes, ...)] against the truth's
    boxes (people shorter than `min_height_px` are not scored); None without motmetrics."""
    try:
        import motmetrics as mm
    except ImportError:
        return None
    acc = mm.MOTAccumulator(auto_id=True)
    for t, ids, boxes, *_ in tracks:
        fr = truth.at(t)
        gt_ids, gt = (fr.track_ids, fr.boxes) if fr is not None else (np.zeros(0, int), np.zeros((0, 4)))
        tall = (gt[:, 3] - gt[:, 1]) >= min_height_px
        acc.update(list(gt_ids[tall]), list(ids), iou_distance(gt[tall], boxes))
    m = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches", "num_objects"], name="run")
    return {"mota": round(float(m["mota"].iloc[0]), 3), "idf1": round(float(m["idf1"].iloc[0]), 3),
            "id_switches": int(m["num_switches"].iloc[0]), "truth_boxes": int(m["num_objects"].iloc[0])}
