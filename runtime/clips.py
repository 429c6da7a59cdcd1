"""Event clips, the NVR part: a ring of the last seconds of every camera and, for each alert, a short
H.264 clip from ``pre_s`` before to ``post_s`` after it, written off the frame loop, kept within a
bounded space and uploaded to the VMS by the HTTP sinks.

    rec = ClipRecorder.from_config(config, state_dir)     # None when clips are off
    rec.push(camera, t_epoch, image)                     # every frame: O(1), never blocks
    event = replace(event, clip=rec.request(event))      # at emit time: the clip file's name
    rec.flush(); rec.drain(); rec.close()

Threads and order
-----------------
The frame loop only puts ``(camera, t, image)`` on a bounded queue (``QUEUE_FRAMES`` per camera;
a full queue drops the frame and counts it, so the loop never waits). One *ring* thread takes
them in order, JPEG-encodes each (``jpeg_quality``) into the camera's ring and appends it to the
camera's open clips; the requests travel on the same queue, after the frame that raised them,
so a clip always starts from the ring as it was at the event. A clip is finished by the first
frame past its end (or by :meth:`ClipRecorder.flush` when the source ends) and handed to one
*encoder* thread, which writes ``STATE/clips/<name>.mp4`` (a temporary name, then a rename).

Sharing: an event raised while an earlier clip of the same camera is still open (its end not
yet reached) shares that clip and extends its end to ``t_event + post_s``, up to ``max_clip_s``;
its ``clip`` field names the shared file. So a burst of alerts costs one clip, and every event's
clip still covers ``[t_event - pre_s, t_event + post_s]`` (the file is named after the first event).

Memory bound (per camera)
-------------------------
ring: the frames of the last ``pre_s`` seconds, at most ``RING_MAX_MB`` (older frames leave
first); open clips: at most ``max_clip_s * fps`` JPEG frames; queue: ``QUEUE_FRAMES`` raw frames.
At 640x360 and q80 (about 25-40 kB a frame), 5 s at 10 fps is about 2 MB of ring.

Space bound (all clips)
-----------------------
After each clip is written, while the clips folder holds more than ``max_mb``, clips are deleted
oldest first: those every HTTP sink has uploaded (or that no sink wants) first, then undelivered
ones (their pending uploads are counted as ``dropped``). A clip alone over the bound is deleted too.

Encoding
--------
H.264 (libx264, CRF 28, veryfast, one thread, yuv420p, each frame at its own time in ms) through
PyAV when it is installed (``pip install 'sitewarden[clips]'``); without it, MPEG-4 Part 2 through
OpenCV (``mp4v``, constant fps), with one warning; if OpenCV cannot write either, clips are skipped
with one warning. The mp4's ``comment`` tag holds ``{"t0": first frame epoch s, "events": [...]}``.

Delivery
--------
The device pushes: an HTTP sink (unless its params say ``clips: false``) PUTs each clip to
``<vms>/api/events/<event id>/clip`` (``Content-Type: video/mp4``, the sink's bearer token), once
per event that refers to it, from one thread per sink, at least once, in order, with the outbox's
backoff. 2xx and 409 are done; 404 (the VMS does not have the event yet), 408, 429, 5xx and network
errors are retried (404 at most ``MAX_404`` times); other statuses fail for good. Pending uploads
live in ``STATE/clips/clips.sqlite`` and survive restarts; a clip still being recorded when the
process dies is lost (its event keeps the name, and the VMS never gets the file).
"""
from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .config import ClipConfig, RuntimeConfig
from .events import SEVERITY_RANK, Event

log = logging.getLogger("sitewarden.clips")

CLIPS = "clips"
DB_NAME = "clips.sqlite"
RING_MAX_MB = 32.0
QUEUE_FRAMES = 8
MAX_404 = 20
NO_CLIP_TYPES = frozenset({"model_switch"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clips (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, camera TEXT NOT NULL,
    t0 REAL NOT NULL, t1 REAL NOT NULL, frames INTEGER NOT NULL, size INTEGER NOT NULL,
    codec TEXT NOT NULL, events TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, event_id TEXT NOT NULL, name TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, UNIQUE (sink, event_id));
CREATE TABLE IF NOT EXISTS counters (scope TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (scope, name)) WITHOUT ROWID;
"""


@dataclass
class _Clip:
    name: str
    camera: str
    t_from: float
    t_to: float
    fps: float
    events: list[str]
    uploads: list[tuple[str, str]]  # (sink, event id)
    frames: list[tuple[float, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class ClipInfo:
    """A written clip, as :meth:`ClipStore.clips` reports it."""

    name: str
    camera: str
    t0: float  # epoch s of its first frame
    t1: float  # and of its last
    frames: int
    size: int
    codec: str
    events: tuple[str, ...]


class ClipStore:
    """The clips folder and its SQLite index: clips, pending uploads per sink, counters."""

    def __init__(self, state_dir: str | os.PathLike, max_bytes: int):
        self.dir = Path(state_dir) / CLIPS
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._db.executescript(_SCHEMA)
        for p in self.dir.glob("*.tmp.mp4"):  # a crash mid-write
            p.unlink(missing_ok=True)

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection (re-opened after :meth:`close`, so a closed store can still be read)."""
        if self._conn is None:
            self._conn = sqlite3.connect(self.dir / DB_NAME, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
        return self._conn

    def add(self, clip: _Clip, size: int, codec: str, t0: float, t1: float, frames: int) -> list[str]:
        """Record a written clip and its uploads, then apply the space bound; the names deleted."""
        with self._lock:
            c = self._db
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute("INSERT OR REPLACE INTO clips(name, camera, t0, t1, frames, size, codec, events, created) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (clip.name, clip.camera, t0, t1, frames, size, codec, json.dumps(clip.events), time.time()))
                c.executemany("INSERT OR IGNORE INTO uploads(sink, event_id, name) VALUES (?, ?, ?)",
                              [(s, e, clip.name) for s, e in clip.uploads])
                doomed = self._enforce(c)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        for name in doomed:
            (self.dir / name).unlink(missing_ok=True)
        return doomed

    def _enforce(self, c: sqlite3.Connection) -> list[str]:
        total = c.execute("SELECT COALESCE(SUM(size), 0) FROM clips").fetchone()[0]
        doomed = []
        if total <= self.max_bytes:
            return doomed
        rows = c.execute("SELECT c.seq, c.name, c.size, (SELECT COUNT(*) FROM uploads u WHERE u.name = c.name) "
                         "FROM clips c ORDER BY (SELECT COUNT(*) > 0 FROM uploads u WHERE u.name = c.name), c.seq").fetchall()
        for seq, name, size, pending in rows:
            if total <= self.max_bytes:
                break
            if pending:
                for (sink,) in c.execute("SELECT sink FROM uploads WHERE name = ?", (name,)).fetchall():
                    _count(c, sink, "dropped")
                c.execute("DELETE FROM uploads WHERE name = ?", (name,))
                log.warning("clips over %d MB: deleted undelivered clip %s", self.max_bytes >> 20, name)
            _count(c, "", "deleted")
            c.execute("DELETE FROM clips WHERE seq = ?", (seq,))
            total -= size
            doomed.append(name)
        return doomed

    def pending(self, sink: str, limit: int = 16) -> list[tuple[int, str, str, int]]:
        with self._lock:
            return self._db.execute("SELECT seq, event_id, name, attempts FROM uploads WHERE sink = ? ORDER BY seq LIMIT ?",
                                    (sink, limit)).fetchall()

    def settle(self, sink: str, seq: int, outcome: str) -> None:
        with self._lock:
            c = self._db
            c.execute("BEGIN IMMEDIATE")
            if c.execute("DELETE FROM uploads WHERE seq = ?", (seq,)).rowcount:
                _count(c, sink, outcome)
            c.execute("COMMIT")

    def attempt(self, seq: int) -> None:
        with self._lock:
            self._db.execute("UPDATE uploads SET attempts = attempts + 1 WHERE seq = ?", (seq,))

    def count(self, scope: str, name: str, n: int = 1) -> None:
        with self._lock:
            _count(self._db, scope, name, n)

    def clips(self) -> list[ClipInfo]:
        with self._lock:
            rows = self._db.execute("SELECT name, camera, t0, t1, frames, size, codec, events FROM clips ORDER BY seq").fetchall()
        return [ClipInfo(n, cam, t0, t1, f, s, codec, tuple(json.loads(ev))) for n, cam, t0, t1, f, s, codec, ev in rows]

    def stats(self) -> dict:
        with self._lock:
            c = self._db
            n, total = c.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM clips").fetchone()
            depth = dict(c.execute("SELECT sink, COUNT(*) FROM uploads GROUP BY sink").fetchall())
            counters: dict[str, dict[str, int]] = {}
            for scope, name, value in c.execute("SELECT scope, name, value FROM counters"):
                counters.setdefault(scope, {})[name] = value
        return {"clips": n, "bytes": total, "max_bytes": self.max_bytes, "depth": depth, "counters": counters}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _count(c: sqlite3.Connection, scope: str, name: str, n: int = 1) -> None:
    c.execute("INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT(scope, name) DO UPDATE SET value = value + excluded.value",
              (scope, name, n))


# --- encoding ---------------------------------------------------------------------------------------


def have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def write_clip(path: Path, frames: list[tuple[float, bytes]], fps: float, meta: dict | None = None,
               use_av: bool | None = None) -> str:
    """Write JPEG `frames` [(epoch s, jpeg)] as an mp4 at `path`; the codec used ("h264" | "mp4v")."""
    import cv2

    use_av = have_pyav() if use_av is None else use_av
    first = cv2.imdecode(np.frombuffer(frames[0][1], np.uint8), cv2.IMREAD_COLOR)
    h, w = first.shape[:2]
    if use_av:
        import av

        with av.open(str(path), "w", format="mp4") as out:
            if meta:
                out.metadata["comment"] = json.dumps(meta, separators=(",", ":"))
            stream = out.add_stream("libx264", rate=max(1, round(fps)))
            stream.width, stream.height = w - w % 2, h - h % 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "28", "preset": "veryfast"}
            stream.codec_context.thread_count = 1
            tb = Fraction(1, 1000)
            stream.codec_context.time_base = tb
            t0, last = frames[0][0], -1
            for t, jpeg in frames:
                img = first if last < 0 else cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[: stream.height, : stream.width]), format="bgr24")
                pts = max(last + 1, int(round((t - t0) * 1000)))
                frame.pts, frame.time_base, last = pts, tb, pts
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        return "h264"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path}")
    try:
        for i, (_, jpeg) in enumerate(frames):
            writer.write(first if i == 0 else cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    finally:
        writer.release()
    return "mp4v"


# --- the recorder -------------------------------------------------------------------------------------


class ClipRecorder:
    """Per-camera rings, clip requests, the encoder and the uploaders (see the module docstring)."""

    def __init__(self, config: ClipConfig, state_dir: str | os.PathLike, cameras: dict[str, float],
                 sinks=(), *, use_av: bool | None = None, backoff: tuple[float, float] = (1.0, 300.0),
                 block: bool = False):
        self.config = config
        self.block = block  # push waits for the ring thread instead of dropping (tests, offline replays)
        self.fps = dict(cameras)
        self.store = ClipStore(state_dir, int(config.max_mb * (1 << 20)))
        self.use_av = have_pyav() if use_av is None else use_av
        if not self.use_av:
            log.warning("clips: PyAV is not installed (pip install 'sitewarden[clips]'); writing MPEG-4 (mp4v) "
                        "through OpenCV instead of H.264")
        self.min_rank = SEVERITY_RANK[config.min_severity]
        self._q: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES * max(1, len(cameras)))
        self._encode_q: queue.Queue = queue.Queue()
        self._rings: dict[str, deque] = {c: deque() for c in cameras}
        self._ring_bytes: dict[str, int] = {c: 0 for c in cameras}
        self._jobs: dict[str, list[_Clip]] = {c: [] for c in cameras}
        self._open: dict[str, tuple[str, float, float]] = {}  # camera -> (name, t_from, t_to), caller side
        self._lock = threading.Lock()
        self._warned = False
        self.frames_dropped = 0
        self.ring_evicted = 0
        self.skipped = 0
        self.uploaders = [_Uploader(self.store, s, backoff) for s in _clip_sinks(sinks)]
        self._ring = threading.Thread(target=self._ring_loop, name="clips-ring", daemon=True)
        self._encoder = threading.Thread(target=self._encode_loop, name="clips-encode", daemon=True)
        self._ring.start()
        self._encoder.start()
        for u in self.uploaders:
            u.start()

    @classmethod
    def from_config(cls, config: RuntimeConfig, state_dir: str | os.PathLike, **kwargs) -> "ClipRecorder | None":
        if not config.clips.enabled:
            return None
        cams = {c.id: float(c.fps) for c in config.cameras if c.detect_here}
        return cls(config.clips, state_dir, cams, config.sinks, **kwargs) if cams else None

    @property
    def dir(self) -> Path:
        return self.store.dir

    # --- frame loop side ------------------------------------------------------------------------

    def wants(self, event: Event) -> bool:
        return (event.type not in NO_CLIP_TYPES and event.camera in self._rings
                and SEVERITY_RANK[event.severity] >= self.min_rank)

    def push(self, camera: str, t: float, image: np.ndarray) -> None:
        """Offer a frame (epoch seconds); dropped and counted when the ring thread is behind."""
        if camera not in self._rings:
            return
        try:
            self._q.put(("frame", camera, t, image), block=self.block)
        except queue.Full:
            self.frames_dropped += 1

    def request(self, event: Event) -> str | None:
        """A clip for `event` (call after pushing the frame that raised it); the clip's file name, or
        None when this event gets none."""
        if not self.wants(event):
            return None
        cfg, cam, t = self.config, event.camera, event.t_event
        uploads = [(u.sink.name, event.id) for u in self.uploaders if u.sink.wants(event)]
        with self._lock:
            cur = self._open.get(cam)
            if cur is not None and t <= cur[2] and t + cfg.post_s - cur[1] <= cfg.max_clip_s:
                name, t_from = cur[0], cur[1]
                t_to = max(cur[2], t + cfg.post_s)
                self._open[cam] = (name, t_from, t_to)
                msg = ("extend", cam, name, t_to, event.id, uploads)
            else:
                name, t_from, t_to = f"{event.id}.mp4", t - cfg.pre_s, t + cfg.post_s
                self._open[cam] = (name, t_from, t_to)
                msg = ("open", cam, name, t_from, t_to, event.id, uploads)
        self._q.put(msg)  # blocks only while the ring thread is busy; requests are never dropped
        return name

    # --- ring thread ------------------------------------------------------------------------------

    def _ring_loop(self) -> None:
        import cv2

        while True:
            msg = self._q.get()
            kind = msg[0]
            try:
                if kind == "stop":
                    return
                if kind == "frame":
                    _, cam, t, image = msg
                    ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(self.config.jpeg_quality)])
                    if ok:
                        self._add_frame(cam, t, buf.tobytes())
                elif kind == "open":
                    _, cam, name, t_from, t_to, eid, uploads = msg
                    job = _Clip(name, cam, t_from, t_to, self.fps[cam], [eid], list(uploads))
                    job.frames = [f for f in self._rings[cam] if f[0] >= t_from]
                    self._jobs[cam].append(job)
                elif kind == "extend":
                    _, cam, name, t_to, eid, uploads = msg
                    for job in self._jobs[cam]:
                        if job.name == name:
                            job.t_to = max(job.t_to, t_to)
                            job.events.append(eid)
                            job.uploads.extend(uploads)
                elif kind == "flush":
                    for cam, jobs in self._jobs.items():
                        for job in jobs:
                            self._finish(job)
                        jobs.clear()
                    with self._lock:
                        self._open.clear()
                    self._encode_q.put(("flush", msg[1]))
            except Exception:
                log.exception("clips: ring thread error (frame skipped)")

    def _add_frame(self, cam: str, t: float, jpeg: bytes) -> None:
        ring = self._rings[cam]
        ring.append((t, jpeg))
        self._ring_bytes[cam] += len(jpeg)
        keep_from = t - self.config.pre_s - 1.0 / max(self.fps[cam], 1e-3)
        limit = RING_MAX_MB * (1 << 20)
        while ring and (ring[0][0] < keep_from or self._ring_bytes[cam] > limit):
            if ring[0][0] >= keep_from:
                self.ring_evicted += 1
            self._ring_bytes[cam] -= len(ring.popleft()[1])
        jobs = self._jobs[cam]
        for job in list(jobs):
            if t <= job.t_to:
                if len(job.frames) < self.config.max_clip_s * job.fps + 2:
                    job.frames.append((t, jpeg))
            else:
                jobs.remove(job)
                self._finish(job)

    def _finish(self, job: _Clip) -> None:
        if job.frames:
            self._encode_q.put(("clip", job))
        else:
            self.skipped += 1

    # --- encoder thread ---------------------------------------------------------------------------

    def _encode_loop(self) -> None:
        while True:
            kind, item = self._encode_q.get()
            if kind == "stop":
                return
            if kind == "flush":
                item.set()
                continue
            try:
                self._write(item)
            except Exception as e:
                self.skipped += 1
                if not self._warned:
                    log.warning("clips: cannot write clips (%s); skipping them", e)
                    self._warned = True

    def _write(self, job: _Clip) -> None:
        final = self.dir / job.name
        tmp = final.with_name(final.name[:-4] + ".tmp.mp4")
        t0, t1 = job.frames[0][0], job.frames[-1][0]
        codec = write_clip(tmp, job.frames, job.fps, {"t0": t0, "camera": job.camera, "events": job.events},
                           use_av=self.use_av)
        os.replace(tmp, final)
        self.store.add(job, final.stat().st_size, codec, t0, t1, len(job.frames))
        for u in self.uploaders:
            u.wake.set()

    # --- lifecycle --------------------------------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> bool:
        """Finish every open clip with the frames it has and wait until all are written."""
        done = threading.Event()
        self._q.put(("flush", done))
        return done.wait(timeout)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every HTTP sink has every clip; False on timeout."""
        deadline = time.monotonic() + timeout
        while any(self.store.stats()["depth"].values()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def metrics(self) -> dict:
        st = self.store.stats()
        return {**st, "frames_dropped": self.frames_dropped, "ring_evicted": self.ring_evicted, "skipped": self.skipped,
                "ring_bytes": dict(self._ring_bytes), "codec": "h264" if self.use_av else "mp4v"}

    def clips(self) -> list[ClipInfo]:
        return self.store.clips()

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        self._q.put(("stop",))
        self._encode_q.put(("stop", None))
        for u in self.uploaders:
            u.stopping.set()
            u.wake.set()
        for t in (self._ring, self._encoder, *self.uploaders):
            t.join(timeout)
        self.store.close()


def _clip_sinks(sinks) -> list:
    from .sinks import HttpSink, Sink

    out = []
    for s in sinks:
        if isinstance(s, Sink):
            if isinstance(s, HttpSink) and s.config.params.get("clips", True):
                out.append(s)
        elif s.kind == "http" and s.params.get("clips", True):
            out.append(HttpSink(s))
    return out


class _Uploader(threading.Thread):
    """PUTs one sink's pending clips, in order, with backoff."""

    def __init__(self, store: ClipStore, sink, backoff: tuple[float, float]):
        super().__init__(name=f"clips-{sink.name}", daemon=True)
        self.store, self.sink, self.backoff = store, sink, backoff
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.attempt = 0

    def run(self) -> None:
        from .outbox import backoff_delay
        from .sinks import DeliveryError

        while not self.stopping.is_set():
            try:
                self.wake.clear()
                rows = self.store.pending(self.sink.name)
                if not rows:
                    self.wake.wait(5.0)
                    continue
                for seq, event_id, name, attempts in rows:
                    if self.stopping.is_set():
                        break
                    path = self.store.dir / name
                    if not path.exists():
                        self.store.settle(self.sink.name, seq, "dropped")
                        continue
                    try:
                        self.sink.put_clip(event_id, path.read_bytes())
                    except DeliveryError as e:
                        if e.permanent or (e.status == 404 and attempts + 1 >= MAX_404):
                            log.error("%s refused the clip of event %s: %s", self.sink.name, event_id, e)
                            self.store.settle(self.sink.name, seq, "failed")
                            continue
                        self.store.attempt(seq)
                        self.attempt += 1
                        self.store.count(self.sink.name, "retries")
                        delay = backoff_delay(self.attempt, *self.backoff, retry_after=e.retry_after)
                        log.warning("%s: clip of %s: %s; retry in %.1f s", self.sink.name, event_id, e, delay)
                        self.stopping.wait(delay)
                        break
                    self.attempt = 0
                    self.store.settle(self.sink.name, seq, "delivered")
            except Exception:
                log.exception("clip upload to %s failed; trying again in 1 s", self.sink.name)
                self.stopping.wait(1.0)
