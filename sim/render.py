"""The renderer and in-process frame source.

    src = SimSource("crane-swing", seed=0, resolution=(640, 360), fps=10, seconds=3)
    for frame in src:          # SimFrame(index, t, image BGR uint8, truth FrameTruth)
        ...
    src.camera, src.homography, src.zones, src.scene_dict()

Frames are rendered by random access (`src.frame(i)`): motion is a function of time and the seed,
so any frame is the same whether or not the frames before it were rendered. Entities are drawn far
to near on a copy of the precomputed background; structures nearer than a worker are re-pasted
over it through their masks. A label image records which entity owns each pixel, from which
keypoint visibility is read.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from runtime.geometry import apply, points_in_polygon

from . import appearance as appearance_mod
from .background import Background, render_background
from .body import draw_person
from .camera import Camera
from .conditions import Condition, Effects, parse
from .machines import Machine
from .scenes import SceneSpec, get_scene
from .shapes import draw_boxes, line3d
from .site import Site, circle
from .skeleton import PELVIS, pose, place
from .structures import build
from .truth import FrameTruth
from .workers import Worker

MACHINE_ID0 = 1000
FACE = (0, 1, 2, 3, 4)


@dataclass
class SimFrame:
    index: int
    t: float
    image: np.ndarray
    truth: FrameTruth


class SimSource:
    def __init__(self, scene: str | SceneSpec, seed: int = 0, resolution: tuple | None = (640, 360), fps: float = 10.0,
                 seconds: float | None = None, condition: str | Condition | None = None, n_workers: int | None = None):
        self.spec = get_scene(scene) if isinstance(scene, str) else scene
        self.seed, self.fps, self.seconds = int(seed), float(fps), seconds
        w, h = resolution or self.spec.resolution
        self.nominal = self.spec.camera
        self.camera = self.spec.camera.with_resolution(w, h)
        if condition is None:
            self.condition = self.spec.condition
        else:
            self.condition = parse(condition) if isinstance(condition, str) else condition
        self.built = [build(s, i) for i, s in enumerate(self.spec.structures)]
        self.static_zones = {z.id: np.asarray(z.polygon, float) for z in self.spec.zones if z.polygon is not None}
        danger = [p for z in self.spec.zones if z.polygon is not None and z.kind == "danger" for p in [np.asarray(z.polygon, float)]]
        self.machines = [Machine(m, MACHINE_ID0 + i, self.seed) for i, m in enumerate(self.spec.machines)]
        obstacles = [b.footprint for b in self.built if b.spec.kind not in ("hoarding", "building")]
        for m in self.machines:
            if m.subtype == "excavator":
                path = m.path
                lo, hi = path.min(axis=0) - 3.2, path.max(axis=0) + 3.2
                obstacles.append(np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]]))
        self.site = Site(self.nominal, obstacles, danger, max_range=self.spec.max_range_m)
        self.workers = self._make_workers(danger, n_workers)
        self._bg: dict = {}
        self._fx: Effects | None = None
        self._member_cache: dict = {}
        self._parts_cache: dict = {}

    # -- setup ------------------------------------------------------------------------------
    def _make_workers(self, danger, n_workers):
        rng = np.random.default_rng([self.seed, 1])
        roles = []
        for role, n in self.spec.roles.items():
            if role == "group":
                roles += [("group", k) for k in n]
            else:
                roles += [(role, 1)] * n
        if n_workers is not None:  # scale the population, keeping the role mix
            base = roles or [("wander", 1)]
            roles = [base[i % len(base)] for i in range(n_workers)]
        cold = self.condition.weather in ("rain", "snow") or self.condition.light == "night"
        workers, tid = [], 1
        for role, k in roles:
            zone = danger[int(rng.integers(len(danger)))] if danger else None
            start = None
            for _ in range(50):
                start = self.site.sample(rng, avoid_zones=2.0 if role in ("enter", "near_miss") else 1.5)
                if start is None or zone is None or role not in ("enter", "near_miss"):
                    break
                d = np.hypot(*(start - zone.mean(axis=0)))
                if 7.0 < d < 14.0:
                    break
            if start is None:
                start = self.site.region.mean(axis=0)
            speed = float(rng.uniform(0.9, 1.7))
            app = appearance_mod.sample(rng, cold=cold, **self.spec.ppe)
            if role == "group":
                leader = Worker(tid, "wander", app, self.site, self.seed, start, speed)
                workers.append(leader)
                tid += 1
                for j in range(1, k):
                    a2 = appearance_mod.sample(rng, cold=cold, **self.spec.ppe)
                    workers.append(Worker(tid, "group", a2, self.site, self.seed, start, speed, leader=leader,
                                          offset=0.75 * j * (1 if j % 2 else -1)))
                    tid += 1
                continue
            fall_at = self.spec.fall_at_s if role == "fall" else None
            workers.append(Worker(tid, role, app, self.site, self.seed, start, speed, fall_at=fall_at, zone=zone))
            tid += 1
        return workers

    def background(self, cam: Camera) -> Background:
        key = (cam.yaw_deg, cam.pitch_deg, cam.roll_deg)
        if key not in self._bg:
            self._bg[key] = render_background(cam, self.spec, self.built, self.condition.surface, self.seed)
        return self._bg[key]

    @property
    def effects(self) -> Effects:
        if self._fx is None:
            cam = self.camera
            lights = []
            for x, y, reach, k in self.spec.lights:
                uv, z = cam.project(np.array([[x, y, 0.0]]))
                if z[0] > 0:
                    lights.append((float(uv[0, 0]), float(uv[0, 1]), reach * cam.focal_px / z[0], k))
            self._fx = Effects(self.condition, cam.width, cam.height, self.seed, self.background(cam).ground_depth, lights)
        return self._fx

    # -- public geometry --------------------------------------------------------------------
    @property
    def homography(self) -> np.ndarray:
        return self.camera.homography

    @property
    def zones(self) -> list[dict]:
        return [z.to_dict() for z in self.spec.zones]

    def n_frames(self) -> int | None:
        return None if self.seconds is None else int(round(self.seconds * self.fps))

    def __iter__(self):
        i = 0
        n = self.n_frames()
        while n is None or i < n:
            yield self.frame(i)
            i += 1

    def __len__(self) -> int:
        n = self.n_frames()
        if n is None:
            raise TypeError("an endless SimSource (seconds=None) has no length")
        return n

    # -- per frame --------------------------------------------------------------------------
    def faults_at(self, t: float) -> list[str]:
        return [f.kind for f in self.spec.faults if f.start <= t < f.end]

    def camera_at(self, t: float) -> Camera:
        if "knocked" in self.faults_at(t):
            return self.camera.moved(*self.spec.knock)
        return self.camera

    def _machine_parts(self, m: Machine, t: float):
        key = (m.track_id, t)
        if key not in self._parts_cache:
            if len(self._parts_cache) > 16:
                self._parts_cache.pop(next(iter(self._parts_cache)))
            self._parts_cache[key] = m.parts(t, self.condition.wind)
        return self._parts_cache[key]

    def _zone_polys(self, t: float) -> dict:
        polys = dict(self.static_zones)
        for z in self.spec.zones:
            if z.follow:
                for m in self.machines:
                    if m.subtype == z.follow:
                        xy, _, _ = self._machine_parts(m, t)
                        polys[z.id] = circle(xy, z.radius_m)
                        break
        return polys

    def _membership(self, i: int, feet: np.ndarray | None = None):
        """Zone membership of every worker at frame i (cached: events compare frame i with i-1)."""
        if i in self._member_cache:
            return self._member_cache[i]
        t = i / self.fps
        if feet is None:
            feet = np.array([_feet(w, t) for w in self.workers]).reshape(-1, 2)
        polys = self._zone_polys(t)
        out = ({zid: points_in_polygon(feet, p) for zid, p in polys.items()}, feet, polys)
        if len(self._member_cache) > 8:
            self._member_cache.pop(next(iter(self._member_cache)))
        self._member_cache[i] = out
        return out

    def frame(self, i: int) -> SimFrame:
        t = i / self.fps
        rng = np.random.default_rng([self.seed, 5, i])
        faults = self.faults_at(t)
        cam = self.camera_at(t)
        bg = self.background(cam)
        img = bg.image.copy()
        lab = np.zeros((cam.height, cam.width), np.uint16)
        dark = self.condition.light != "day" or "lights_out" in faults
        glow = np.zeros((cam.height, cam.width), np.uint8) if dark else None
        wind = self.condition.wind
        shadow = self.condition.light == "day" and self.condition.weather == "clear"

        # entities with a depth key
        ents = []
        feet = np.zeros((len(self.workers), 2))
        for k, w in enumerate(self.workers):
            st = w.state(t)
            local = pose(st["posture"], w.app.height_m, st["phase"], st["speed"], st["progress"], w.fall_side)
            pts = place(local, st["xy"], st["heading"])
            feet[k] = pts[[15, 16], :2].mean(axis=0)
            uv, z = cam.project(pts)
            if (z < 0.5).any():
                continue
            ents.append((float(z[PELVIS]), "w", k, (pts, uv, z, st)))
        for k, m in enumerate(self.machines):
            xy, boxes, lines = self._machine_parts(m, t)
            centre = np.concatenate([b[0] for b in boxes]).mean(axis=0)
            ents.append((float(cam.depth(centre)), "m", k, (xy, boxes, lines)))
        items = ents + [(o.depth, "o", j, o) for j, o in enumerate(bg.occluders)]
        items.sort(key=lambda e: -e[0])

        drawn: list = []  # pixel boxes of what has been drawn so far
        results = {}
        for depth, kind, k, payload in items:
            if kind == "o":
                o = payload
                if any(b[0] < o.x1 and b[2] > o.x0 and b[1] < o.y1 and b[3] > o.y0 for b in drawn):
                    np.copyto(img[o.y0:o.y1, o.x0:o.x1], bg.image[o.y0:o.y1, o.x0:o.x1], where=o.mask[..., None])
                    lab[o.y0:o.y1, o.x0:o.x1][o.mask] = 0
                    if glow is not None:
                        glow[o.y0:o.y1, o.x0:o.x1][o.mask] = 0
                continue
            if kind == "w":
                pts, uv, z, st = payload
                w = self.workers[k]
                to_cam = np.asarray(cam.position) - pts[17]
                facing = float((pts[0] - pts[17]) @ to_cam / (np.linalg.norm(pts[0] - pts[17]) * np.linalg.norm(to_cam) + 1e-9))
                boxes = draw_person(img, lab, k + 1, uv, z, cam.focal_px, w.app, facing, shadow, glow)
                results[("w", k)] = (boxes, uv, facing, st, pts)
                drawn.append(boxes["box"])
            else:
                xy, mboxes, lines = payload
                lid = MACHINE_ID0 + k
                mbox = draw_boxes(img, lab, lid, cam, mboxes)
                for p0, p1, colour, th in lines:
                    line3d(img, cam, p0, p1, colour, th)
                if mbox is None:
                    continue
                results[("m", k)] = (xy, mbox)
                drawn.append(mbox)

        # optics: light and weather, wind shake, sensor
        fx = self.effects
        img = fx.scene_light(img, t, rng, faults, glow)
        shake = fx.shake(t, self.seed)
        if shake is not None:
            img = cv2.warpAffine(img, shake, (cam.width, cam.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        img = fx.sensor(img, rng, faults)
        self._frame_feet = feet
        truth = self._truth(i, t, cam, lab, results, shake, faults)
        return SimFrame(i, t, img, truth)

    # -- ground truth -----------------------------------------------------------------------
    def _truth(self, i, t, cam, lab, results, shake, faults) -> FrameTruth:
        W, H = cam.width, cam.height
        A = None
        if shake is not None:
            A = np.eye(3)
            A[:2] = shake
        member, feet, polys = self._membership(i, self._frame_feet)
        prev = self._membership(i - 1)[0] if i > 0 else None
        rows = []
        for (kind, k), res in sorted(results.items(), key=lambda r: (r[0][0] == "m", r[0][1])):
            if kind == "w":
                boxes, uv, facing, st, pts = res
                w = self.workers[k]
                kp = np.zeros((17, 3))
                kp[:, :2] = uv[:17]
                vis = np.full(17, 2.0)
                ij = np.round(uv[:17] - 0.5).astype(int)
                inside = (ij[:, 0] >= 0) & (ij[:, 0] < W) & (ij[:, 1] >= 0) & (ij[:, 1] < H)
                owner = np.zeros(17, int)
                owner[inside] = lab[ij[inside, 1], ij[inside, 0]]
                vis[owner != k + 1] = 1.0
                if facing < -0.15:
                    vis[[0, 1, 2]] = 1.0
                rows.append(dict(tid=w.track_id, cls="person", sub="worker", box=boxes["box"], kp=kp, vis=vis,
                                 posture=st["posture"], xy=feet[k], helmet=w.app.helmet, vest=w.app.vest,
                                 head=boxes["head"], helm=boxes["helmet"], vbox=boxes["vest"], role=w.role, k=k))
            else:
                xy, box = res
                m = self.machines[k]
                rows.append(dict(tid=m.track_id, cls="machine", sub=m.subtype, box=box, kp=np.zeros((17, 3)),
                                 vis=np.zeros(17), posture="", xy=np.asarray(xy, float), helmet=False, vest=False,
                                 head=None, helm=None, vbox=None, role="", k=None))
        out = []
        for r in rows:
            box = _affine_box(A, r["box"])
            clipped = np.array([max(box[0], 0), max(box[1], 0), min(box[2], W), min(box[3], H)])
            if clipped[2] - clipped[0] < 2 or clipped[3] - clipped[1] < 2:
                continue
            kp = r["kp"]
            if r["cls"] == "person":
                if A is not None:
                    kp[:, :2] = apply(A, kp[:, :2])
                inside = (kp[:, 0] >= 0) & (kp[:, 0] < W) & (kp[:, 1] >= 0) & (kp[:, 1] < H)
                kp[:, 2] = np.where(inside, r["vis"], 0)
                kp[~inside, :2] = 0
                # the box holds every drawn part, so it holds every labelled keypoint
                if (kp[:, 2] > 0).sum() == 0:
                    continue
            r["box"] = clipped
            for key in ("head", "helm", "vbox"):
                if r[key] is not None:
                    b = _affine_box(A, r[key])
                    r[key] = np.array([max(b[0], 0), max(b[1], 0), min(b[2], W), min(b[3], H)])
            out.append(r)
        nan4 = np.full(4, np.nan)
        n = len(out)
        in_zones = {z: np.array([bool(member[z][r["k"]]) if r["k"] is not None else False for r in out], bool) for z in member}
        events = []
        for z in member:
            for k, w in enumerate(self.workers):
                now = bool(member[z][k])
                before = bool(prev[z][k]) if prev is not None else now
                if now != before:
                    events.append({"type": "zone_entry" if now else "zone_exit", "zone": z, "track_id": w.track_id,
                                   "frame": i, "t": round(t, 4), "ground_xy": [round(float(v), 3) for v in feet[k]]})
        for r in out:
            if r["posture"] == "falling" and i > 0:
                w = self.workers[r["k"]]
                if w.state((i - 1) / self.fps)["posture"] != "falling":
                    events.append({"type": "fall", "track_id": r["tid"], "frame": i, "t": round(t, 4)})
        zones_px = {z: apply(cam.ground_to_image, p) for z, p in polys.items()}
        if A is not None:
            zones_px = {z: apply(A, p) for z, p in zones_px.items()}
        return FrameTruth(
            track_ids=np.array([r["tid"] for r in out], int), classes=[r["cls"] for r in out], subtypes=[r["sub"] for r in out],
            boxes=np.array([r["box"] for r in out]).reshape(n, 4), keypoints=np.array([r["kp"] for r in out]).reshape(n, 17, 3),
            postures=[r["posture"] for r in out], ground_xy=np.array([r["xy"] for r in out]).reshape(n, 2),
            helmet=np.array([r["helmet"] for r in out], bool), vest=np.array([r["vest"] for r in out], bool),
            head_boxes=np.array([r["head"] if r["head"] is not None else nan4 for r in out]).reshape(n, 4),
            helmet_boxes=np.array([r["helm"] if r["helm"] is not None else nan4 for r in out]).reshape(n, 4),
            vest_boxes=np.array([r["vbox"] if r["vbox"] is not None else nan4 for r in out]).reshape(n, 4),
            in_zones=in_zones, roles=[r["role"] for r in out],
            visibility=np.array([_visibility(r) for r in out], float), zones_ground=polys, zones_px=zones_px, events=events,
            condition=self.condition.name, faults=faults, homography=cam.homography if A is None else cam.homography @ np.linalg.inv(A),
        )

    def scene_dict(self) -> dict:
        from .export import scene_json
        return scene_json(self)


def _feet(w: Worker, t: float) -> np.ndarray:
    """Ground position of a worker: the midpoint of the ankles (where a box's bottom centre lands)."""
    st = w.state(t)
    local = pose(st["posture"], w.app.height_m, st["phase"], st["speed"], st["progress"], w.fall_side)
    pts = place(local[[15, 16]], st["xy"], st["heading"])
    return pts[:, :2].mean(axis=0)


def _visibility(r: dict) -> float:
    if r["cls"] != "person":
        return 1.0
    v = r["kp"][:, 2]
    return float((v == 2).sum() / max((v > 0).sum(), 1))


def _affine_box(A: np.ndarray, box: np.ndarray) -> np.ndarray:
    if A is None:
        return np.asarray(box, float)
    c = np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]])
    p = apply(A, c)
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()])
