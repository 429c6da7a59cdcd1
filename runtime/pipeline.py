"""Per camera: source frame -> detector -> tracker -> PPE, pose -> posture, ground position ->
forecast -> rules -> events. One `Device` runs every camera of an image in one process, sharing
model sessions; the governor picks each task's tier frame by frame.
"""
from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import stages
from .config import CameraConfig, RuntimeConfig
from .detections import Detections
from .events import Event, snapshot_jpeg
from .forecast import OnnxForecaster, constant_velocity, entry_rules_from_notes, min_obs_from_notes, resample
from .geometry import apply
from .governor import Governor, Switch
from .health import HealthMonitor
from .ppe import head_boxes
from .rules import CameraRules, Machine, Person
from .tracker import ByteTrack

# Tracker score thresholds (high, low, new track) per detector decoder: our CenterNet-style students
# peak lower than YOLO/SSD scores (their best-F1 threshold on the real holdout is ~0.3).
TRACK_THRESHOLDS = {"centernet-ltrb": (0.3, 0.12, 0.35)}
DEFAULT_TRACK_THRESHOLDS = (0.5, 0.1, 0.6)
# a detection lying >= this share (of the smaller box) on a person already tracked this frame starts
# no track: near the camera the students put a second box on a worker's upper body, and a second id
# on the same worker splits his history (ByteTrack.spawn_overlap; sim tracking unchanged, see README)
SPAWN_OVERLAP = 0.8
HISTORY_S = 6.0  # ground positions kept per track for forecasting (and how long a lost track's are kept)
# a new track that starts where a lost one ended, soon after, takes over its ground history for
# forecasting (ids stay as the tracker gave them): detector tracks break and restart, and a restarted
# track would otherwise have too little history for the forecaster
HANDOVER_S = 1.0
HANDOVER_M = 1.0  # plus the distance the lost track would have walked at 2 m/s in the gap
FORECAST_EVERY_S = 0.4  # one forecast per track per model step (2.5 Hz)


@dataclass
class FrameResult:
    """What one frame produced, for annotation and reports."""

    camera: str
    t: float
    people: list[Person]
    machines: list[Machine]
    keypoints: dict[int, np.ndarray]
    events: list[Event]
    switches: list[Switch]
    stage_ms: dict[str, float]
    tiers: dict[str, str]


@dataclass
class _Track:
    history: deque = field(default_factory=lambda: deque(maxlen=120))
    forecast: np.ndarray | None = None
    forecast_t: float = -1e9
    kind: str = "none"
    modes: np.ndarray | None = None  # a multi-modal forecaster's alternative paths and their probabilities
    probs: np.ndarray | None = None
    last_t: float = -1e9  # when this track was last seen


class CameraPipeline:
    def __init__(self, config: RuntimeConfig, camera: CameraConfig, device: "Device"):
        self.config, self.camera, self.device = config, camera, device
        decoder = config.models["detector"][0].decoder if config.models.get("detector") else ""
        high, low, new = TRACK_THRESHOLDS.get(decoder, DEFAULT_TRACK_THRESHOLDS)
        self.detect_conf = low
        self.tracker = ByteTrack(fps=camera.fps, high=high, low=low, new_track=new, spawn_overlap=SPAWN_OVERLAP)
        self.rules = CameraRules(config, camera, episode_start=device.episode_start, entry_rules=device.entry_rules)
        health_rules = [r for r in config.health if not r.cameras or camera.id in r.cameras]
        self.health = HealthMonitor(camera.id, health_rules, camera.fps) if health_rules else None
        self.H = np.asarray(camera.homography) if camera.homography is not None else None
        self.tracks: dict[int, _Track] = defaultdict(_Track)
        self.needs = {
            "ppe": bool(config.ppe) and "ppe" in config.models,
            "pose": bool(config.actions) and "pose" in config.models and "posture" in config.models,
            "trajectory": any(z.predict_horizon_s is not None for z in camera.zones) and self.H is not None,
        }

    def _ground(self, pts: np.ndarray) -> np.ndarray | None:
        return apply(self.H, pts) if self.H is not None and len(pts) else None

    def process(self, image: np.ndarray, t: float, t_epoch: float, dets: Detections | None = None,
                detect_ms: float = 0.0) -> FrameResult:
        """One frame; `dets` (with its share of the detector's time) when the device detected for
        several cameras in one call."""
        dev, timing = self.device, {}
        t0 = time.perf_counter()
        det_model = dev.governor.current("detector")
        if dets is None:
            dets = stages.detect(dev.sessions.get(det_model), det_model, image, conf=self.detect_conf)
            timing["detector"] = (time.perf_counter() - t0) * 1e3
        else:
            timing["detector"] = detect_ms
        t1 = time.perf_counter()
        tracked = self.tracker.update(dets)
        classes = det_model.classes
        person_id = classes.index("person") if "person" in classes else 0
        machine_id = classes.index("machine") if "machine" in classes else -1
        people_d: Detections = tracked[tracked.class_id == person_id]
        machines_d: Detections = tracked[tracked.class_id == machine_id]
        timing["tracker"] = (time.perf_counter() - t1) * 1e3
        if dev.hard is not None:  # a frame the student was unsure of goes to the VMS teacher (runtime/hardupload.py)
            mine = dets.class_id == person_id
            dev.hard.offer(self.camera.id, t, t_epoch, image, dets.confidence[mine], len(people_d), dets.xyxy[mine])

        feet = people_d.bottom_centre if len(people_d) else np.zeros((0, 2))
        ground = self._ground(feet)
        m_ground = self._ground(machines_d.bottom_centre) if len(machines_d) else None
        ppe = np.zeros((len(people_d), 0))
        if self.needs["ppe"] and len(people_d):
            t2 = time.perf_counter()
            m = dev.governor.current("ppe")
            ppe = stages.ppe_probs(dev.sessions.get(m), m, image, people_d.xyxy)
            timing["ppe"] = (time.perf_counter() - t2) * 1e3
        kps, labels, confs = {}, [None] * len(people_d), np.zeros(len(people_d))
        if self.needs["pose"] and len(people_d):
            t3 = time.perf_counter()
            pm, qm = dev.governor.current("pose"), dev.governor.current("posture")
            k = stages.keypoints(dev.sessions.get(pm), pm, image, people_d.xyxy)
            labels, confs = stages.postures(dev.sessions.get(qm), qm, k, people_d.xyxy)
            kps = {int(tid): k[i] for i, tid in enumerate(people_d.tracker_id)}
            timing["pose+posture"] = (time.perf_counter() - t3) * 1e3

        t4 = time.perf_counter()
        people = []
        if ground is not None:
            self._handover(people_d.tracker_id, ground, t)
        for i, tid in enumerate(people_d.tracker_id):
            tid = int(tid)
            p = Person(track=tid, box=people_d.xyxy[i], confidence=float(people_d.confidence[i]),
                       ground=None if ground is None else ground[i],
                       ppe={name: float(ppe[i, j]) for j, name in enumerate(("helmet", "vest")) if j < ppe.shape[1]},
                       posture=labels[i], posture_confidence=float(confs[i]) if len(confs) else 0.0)
            if ground is not None:
                self._forecast(p, t)
            people.append(p)
        machines = [Machine(track=int(tid), box=machines_d.xyxy[i], ground=None if m_ground is None else m_ground[i])
                    for i, tid in enumerate(machines_d.tracker_id)]
        timing["forecast"] = (time.perf_counter() - t4) * 1e3

        t5 = time.perf_counter()
        alerts = self.rules.update(t, people, machines)
        events = [self._event(a, t, t_epoch) for a in alerts]
        if self.health is not None:
            events += [c.to_event(self.config.site, self.config.device, t_epoch - t) for c in self.health.update(image, t)]
        if events:
            snap = snapshot_jpeg(image, head_boxes(people_d.xyxy, image.shape) if len(people_d) else ())
            events = [dev.emit(e, snap) for e in events]
        timing["rules+events"] = (time.perf_counter() - t5) * 1e3
        return FrameResult(self.camera.id, t, people, machines, kps, events, [], timing, dev.governor.assignment())

    def _handover(self, ids: np.ndarray, ground: np.ndarray, t: float) -> None:
        """Forget tracks unseen for HISTORY_S; give each new track the history of a lost one that
        ended within HANDOVER_S and HANDOVER_M (+ 2 m/s x the gap) of where it starts, nearest first."""
        for tid in [k for k, tr in self.tracks.items() if t - tr.last_t > HISTORY_S]:
            del self.tracks[tid]
        new = [(int(tid), g) for tid, g in zip(ids, ground) if int(tid) not in self.tracks]
        if not new:
            return
        active = {int(x) for x in ids}
        lost = {k: tr for k, tr in self.tracks.items() if k not in active and tr.history and t - tr.last_t <= HANDOVER_S}
        for tid, g in new:
            if not lost:
                break
            best, dist = None, np.inf
            for k, tr in lost.items():
                d = float(np.hypot(g[0] - tr.history[-1][1], g[1] - tr.history[-1][2]))
                if d <= HANDOVER_M + 2.0 * (t - tr.last_t) and d < dist:
                    best, dist = k, d
            if best is not None:
                old = self.tracks.pop(best)
                del lost[best]
                self.tracks[tid] = _Track(history=old.history, last_t=old.last_t)

    def _forecast(self, p: Person, t: float) -> None:
        tr = self.tracks[p.track]
        tr.last_t = t
        tr.history.append((t, float(p.ground[0]), float(p.ground[1])))
        while tr.history and t - tr.history[0][0] > HISTORY_S:
            tr.history.popleft()
        h = np.asarray(tr.history)
        if len(h) >= 2:
            dt = h[-1, 0] - h[max(0, len(h) - 11), 0]
            p.speed_mps = float(np.hypot(*(h[-1, 1:] - h[max(0, len(h) - 11), 1:])) / dt) if dt > 0 else 0.0
        if t - tr.forecast_t >= FORECAST_EVERY_S and len(h) >= 2:
            tr.forecast_t = t
            fc = self.device.forecaster
            tr.modes = tr.probs = None
            if fc is not None:
                f = fc.track(h[:, 0], h[:, 1:])
                tr.forecast, tr.kind, tr.modes, tr.probs = f.path, f.kind, f.modes, f.probs
            else:
                obs = resample(h[:, 0], h[:, 1:], 2.5, 2)
                tr.forecast, tr.kind = (constant_velocity(obs[None])[0], "cv") if obs is not None else (None, "none")
        p.forecast = tr.forecast
        p.forecast_modes, p.forecast_probs = tr.modes, tr.probs
        p.forecast_kind = "model" if tr.kind == "model" else "cv"
        p.forecast_dt = self.device.forecaster.dt if self.device.forecaster is not None else 0.4

    def _event(self, a, t: float, t_epoch: float) -> Event:
        return Event.create(type=a.type, site=self.config.site, device=self.config.device, camera=self.camera.id,
                            t_start=t_epoch - (t - a.t_start), t_event=t_epoch, severity=a.severity,
                            confidence=a.confidence, rule=a.rule, zone=a.zone, track=a.track, details=a.details)


class Device:
    """Every camera of one image, in one process, sharing sessions, governor and outbox."""

    def __init__(self, config: RuntimeConfig, image_dir: Path, emitter=None, clips=None):
        self.config = config
        self.clips = clips  # a runtime.clips.ClipRecorder, or None: alerts get no clip
        self.hard = None  # a runtime.hardupload.HardSampleUploader (runtime.app sets it when a VMS sink exists)
        self.sessions = stages.Sessions(Path(image_dir), config.threads)
        self.governor = Governor(config)
        self.emitter = emitter
        self.forecaster = None
        self.entry_rules = {}
        if "trajectory" in config.models:
            m = config.models["trajectory"][0]
            self.entry_rules = entry_rules_from_notes(m.preprocess.get("notes", ""))
            rate = float(m.preprocess.get("rate_hz") or 2.5)
            obs_len = int(m.inputs[0]["shape"][1])
            pred_len = int(m.outputs[0]["shape"][1])
            self.forecaster = OnnxForecaster(Path(image_dir) / m.file, rate, obs_len, pred_len, threads=1,
                                             min_obs=min_obs_from_notes(m.preprocess.get("notes", "")))
        self.cameras = {c.id: CameraPipeline(config, c, self) for c in config.cameras if c.detect_here}
        self.events: list[Event] = []

    def episode_start(self, key: str, t: float, gap: float) -> float:
        if self.emitter is not None and hasattr(self.emitter, "episode_start"):
            return self.emitter.episode_start(key, t, gap)
        return t

    def emit(self, event: Event, snapshot: bytes | None) -> Event:
        """Store and deliver `event` (with its clip's name when it gets one); the event as emitted."""
        if self.clips is not None:
            name = self.clips.request(event)
            if name is not None:
                event = replace(event, clip=name)
        self.events.append(event)
        if self.emitter is not None:
            self.emitter.emit(event, snapshot)
        return event

    def process(self, camera_id: str, image: np.ndarray, t: float, t_epoch: float) -> FrameResult:
        if self.clips is not None:
            self.clips.push(camera_id, t_epoch, image)
        t0 = time.perf_counter()
        result = self.cameras[camera_id].process(image, t, t_epoch)
        return self._finish(camera_id, image, t_epoch, result, (time.perf_counter() - t0) * 1e3)

    def process_batch(self, frames: list[tuple[str, np.ndarray, float, float]]) -> list[FrameResult]:
        """One frame from each of several cameras, `(camera, image, t, t_epoch)`: the detector runs
        once on all of them where its model has a free batch axis (`stages.batchable`), then each
        camera goes on alone. Each result's detector time is its share of the batched call."""
        if len(frames) <= 1:
            return [self.process(*f) for f in frames]
        if self.clips is not None:
            for cid, image, _, t_epoch in frames:
                self.clips.push(cid, t_epoch, image)
        det_model = self.governor.current("detector")
        t0 = time.perf_counter()
        dets = stages.detect_batch(self.sessions.get(det_model), det_model, [f[1] for f in frames],
                                   [self.cameras[f[0]].detect_conf for f in frames])
        share = (time.perf_counter() - t0) * 1e3 / len(frames)
        out = []
        for (cid, image, t, t_epoch), d in zip(frames, dets):
            t1 = time.perf_counter()
            result = self.cameras[cid].process(image, t, t_epoch, dets=d, detect_ms=share)
            out.append(self._finish(cid, image, t_epoch, result, share + (time.perf_counter() - t1) * 1e3))
        return out

    def _finish(self, camera_id: str, image: np.ndarray, t_epoch: float, result: FrameResult, total: float) -> FrameResult:
        switches = self.governor.observe(total, {k: v for k, v in result.stage_ms.items()})
        mean_luma = float(image[::8, ::8].mean())
        switches += self.governor.evaluate_situations(t_epoch, brightness=mean_luma, camera=camera_id)
        for s in switches:  # emitted like every other event, so --events and the log see it too
            result.events.append(self.emit(Event.create(
                type="model_switch", site=self.config.site, device=self.config.device, camera=camera_id,
                t_start=t_epoch, severity="info", rule=f"model_switch:{s.task}",
                details={"task": s.task, "from": s.old, "to": s.new, "reason": s.reason}), None))
        result.switches = switches
        result.stage_ms["total"] = total
        return result
