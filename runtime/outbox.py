"""The durable on-device outbox and the emitter the runtime calls.

    emitter = Emitter.from_config(config, state_dir)      # starts one delivery thread per sink
    emitter.emit(event, snapshot_jpeg=jpeg)                # alarms fire, then stored durably, then delivered
    emitter.metrics(); emitter.close()

Storage (``STATE/outbox.sqlite`` + ``STATE/snapshots/<event id>.jpg``)
---------------------------------------------------------------------
* ``events``: each event once. The event id is the unique key and a second ``emit`` of the same
  id is ignored (insert-or-ignore: nothing is written, no delivery is queued), so a restart that
  re-raises an event stores and delivers it once. ``seq``
  (insertion order) is the delivery order.
* ``deliveries``: one row per (sink, event) still to deliver; deleted when the sink has it (or
  refused it for good). Each sink walks its rows in ``seq`` order: at least once, in order.
* ``counters``: delivered / retries / failed / dropped, persisted so they survive restarts.
* ``episodes``: open episodes per rule key, so a restart finds the same ``t_start`` (hence id).

SQLite runs in WAL mode. The connection that stores events uses ``synchronous=FULL``: in WAL mode
that fsyncs the log at every commit, so ``emit`` returning means the event survives a kill -9
*and* a power cut (events are rare, a few per second at most; one fsync each is affordable).
The delivery threads' connections use ``synchronous=NORMAL``: their commits (marking deliveries
done) reach the OS at once, so they survive a kill -9, but a power cut may lose the last few;
the effect is only a re-delivery, which receivers de-duplicate by event id. A snapshot file is
written, fsync'd and renamed into place before its event's row commits.

Bounds (``max_bytes``/``max_rows``, soft; ``hard_max_bytes``/``hard_max_rows``)
-----------------------------------------------------------------------------
An event's size is its JSON + its snapshot + ``ROW_OVERHEAD``. After each insert, while the
outbox is over a soft limit it removes, oldest first within each class:

1. events every sink already has (kept until then only to de-duplicate re-emits); not a loss;
2. undelivered ``info`` events, then 3. undelivered ``warning`` events;
4. undelivered ``critical`` events only while over a *hard* limit (default 1.5x the soft one).

Removed undelivered events are counted per severity (``dropped``) and per sink
(``dropped_deliveries``), logged, and reported by :meth:`Emitter.metrics`. The database file
keeps its high-water size (freed pages are reused), which the limits cap.

Delivery
--------
One thread per network/file sink pulls its pending rows in order and calls ``sink.send``. On a
retryable failure it waits ``min(cap, base * 2**(n-1))`` with equal jitter (half fixed, half
random; default base 1 s, cap 5 min, or the receiver's Retry-After if longer) and retries the
*same* event, so order holds. A permanent failure (e.g. HTTP 400) is logged, counted as
``failed`` and skipped. Deliveries are marked one at a time, so a kill -9 re-sends at most the
one event per sink that was in flight. Backoff state is in memory: a restart retries at once.
Local alarms are not queued: :meth:`Emitter.emit` fires them first, before the fsync, and counts them.
"""
from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

from .config import RuntimeConfig, SinkConfig
from .events import SEVERITY_RANK, Event, EventError
from .sinks import AlarmSink, DeliveryError, Sink, build_sink, sink_name

log = logging.getLogger("sitewarden.outbox")

DB_NAME = "outbox.sqlite"
SNAPSHOTS = "snapshots"
ROW_OVERHEAD = 256  # bytes charged per event for its row, indexes and delivery rows
DEFAULT_MAX_BYTES = 128 << 20
DEFAULT_MAX_ROWS = 100_000
HARD_FACTOR = 1.5
SETTLED = 0  # `rank` of an event no sink still waits for; pending events have 1 + severity rank

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    severity TEXT NOT NULL,
    rank INTEGER NOT NULL,
    pending INTEGER NOT NULL,
    size INTEGER NOT NULL,
    snapshot TEXT,
    created REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_evict ON events(rank, seq);
CREATE TABLE IF NOT EXISTS deliveries (
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (sink, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (scope, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals (one INTEGER PRIMARY KEY CHECK (one = 1), rows INTEGER NOT NULL, bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES (1, 0, 0);
CREATE TRIGGER IF NOT EXISTS events_ins AFTER INSERT ON events
    BEGIN UPDATE totals SET rows = rows + 1, bytes = bytes + NEW.size; END;
CREATE TRIGGER IF NOT EXISTS events_del AFTER DELETE ON events
    BEGIN UPDATE totals SET rows = rows - 1, bytes = bytes - OLD.size; END;
CREATE TABLE IF NOT EXISTS episodes (key TEXT PRIMARY KEY, t_start REAL NOT NULL, last_seen REAL NOT NULL) WITHOUT ROWID;
"""


class Outbox:
    """The SQLite store. Thread-safe: `put` uses one fsync'ing connection under a lock; every other
    call uses its own thread's connection."""

    def __init__(self, state_dir: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_rows: int = DEFAULT_MAX_ROWS, hard_max_bytes: int | None = None, hard_max_rows: int | None = None):
        self.dir = Path(state_dir)
        self.snapshots = self.dir / SNAPSHOTS
        self.snapshots.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / DB_NAME
        self.max_bytes, self.max_rows = int(max_bytes), int(max_rows)
        self.hard_max_bytes = int(hard_max_bytes if hard_max_bytes is not None else max_bytes * HARD_FACTOR)
        self.hard_max_rows = int(hard_max_rows if hard_max_rows is not None else max_rows * HARD_FACTOR)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._writer = self._connect("FULL")
        self._writer.executescript(_SCHEMA)
        self._sweep_snapshots()

    # --- connections ---------------------------------------------------------------------------

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect("NORMAL")
        return conn

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()

    # --- storing -------------------------------------------------------------------------------

    def put(self, event: Event, sinks: Sequence[str], snapshot_jpeg: bytes | None = None,
            alarms: Iterable[str] = ()) -> bool:
        """Store `event` (and its snapshot) with a delivery row for each of `sinks`; durable on
        return. False when an event with this id is already stored (nothing changes then).
        `alarms` are the alarm sinks that fired for it (counted in the same transaction)."""
        body = event.to_json()
        snap_name = None
        if snapshot_jpeg is not None:
            if event.snapshot is None:
                event = event.with_snapshot(snapshot_jpeg)
                body = event.to_json()
            snap_name = event.snapshot.name
        size = len(body) + (len(snapshot_jpeg) if snapshot_jpeg is not None else 0) + ROW_OVERHEAD
        rank = 1 + SEVERITY_RANK[event.severity] if sinks else SETTLED
        with self._lock:
            c = self._writer
            c.execute("BEGIN IMMEDIATE")
            try:
                for a in alarms:
                    _count(c, a, "fired")
                if c.execute("SELECT 1 FROM events WHERE id = ?", (event.id,)).fetchone():
                    c.execute("COMMIT")
                    return False
                if snap_name is not None:
                    self._write_snapshot(snap_name, snapshot_jpeg)
                seq = c.execute(
                    "INSERT INTO events(id, type, severity, rank, pending, size, snapshot, created, body) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (event.id, event.type, event.severity, rank, len(sinks), size, snap_name, time.time(), body),
                ).lastrowid
                c.executemany("INSERT INTO deliveries(sink, seq) VALUES (?, ?)", [(s, seq) for s in sinks])
                doomed = self._enforce_bounds(c)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        for name in doomed:
            self._unlink(name)
        return True

    def _write_snapshot(self, name: str, jpeg: bytes) -> None:
        final = self.snapshots / name
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(jpeg)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fd = os.open(self.snapshots, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _unlink(self, name: str) -> None:
        try:
            (self.snapshots / name).unlink()
        except FileNotFoundError:
            pass

    def _sweep_snapshots(self) -> None:
        """Remove snapshot files no event refers to (a crash between the file and the commit)."""
        known = {r[0] for r in self._writer.execute("SELECT snapshot FROM events WHERE snapshot IS NOT NULL")}
        for p in self.snapshots.iterdir():
            if p.name not in known:
                p.unlink(missing_ok=True)

    def _enforce_bounds(self, c: sqlite3.Connection) -> list[str]:
        """Apply the storage policy inside the caller's transaction; the snapshot files to delete."""
        doomed: list[str] = []
        critical = 1 + SEVERITY_RANK["critical"]
        for max_rank, limit_rows, limit_bytes in ((critical, self.max_rows, self.max_bytes),  # all but critical
                                                  (critical + 1, self.hard_max_rows, self.hard_max_bytes)):
            while True:
                rows, nbytes = c.execute("SELECT rows, bytes FROM totals").fetchone()
                if rows <= limit_rows and nbytes <= limit_bytes:
                    break
                victims = c.execute("SELECT seq, severity, rank, snapshot, size FROM events WHERE rank < ? "
                                    "ORDER BY rank, seq LIMIT 64", (max_rank,)).fetchall()
                if not victims:
                    break
                for seq, severity, rank, snap, size in victims:
                    if rows <= limit_rows and nbytes <= limit_bytes:
                        break
                    if rank != SETTLED:
                        _count(c, "", f"dropped_{severity}")
                        for (sink,) in c.execute("SELECT sink FROM deliveries WHERE seq = ?", (seq,)).fetchall():
                            _count(c, sink, "dropped")
                        c.execute("DELETE FROM deliveries WHERE seq = ?", (seq,))
                        log.warning("outbox full: dropped an undelivered %s event (seq %d)", severity, seq)
                    else:
                        _count(c, "", "pruned")
                    c.execute("DELETE FROM events WHERE seq = ?", (seq,))
                    rows, nbytes = rows - 1, nbytes - size
                    if snap:
                        doomed.append(snap)
        return doomed

    # --- delivering ----------------------------------------------------------------------------

    def pending(self, sink: str, limit: int = 64) -> list[tuple[int, bytes, str | None]]:
        """The next (seq, event JSON, snapshot file name) rows `sink` still has to deliver, in order."""
        return self._db().execute(
            "SELECT d.seq, e.body, e.snapshot FROM deliveries d JOIN events e ON e.seq = d.seq "
            "WHERE d.sink = ? ORDER BY d.seq LIMIT ?", (sink, limit)).fetchall()

    def snapshot_bytes(self, name: str) -> bytes | None:
        try:
            return (self.snapshots / name).read_bytes()
        except FileNotFoundError:
            return None

    def settle(self, sink: str, seq: int, outcome: str = "delivered") -> None:
        """`sink` is done with event `seq`: "delivered" or "failed" (refused for good)."""
        c = self._db()
        c.execute("BEGIN IMMEDIATE")
        try:
            if c.execute("DELETE FROM deliveries WHERE sink = ? AND seq = ?", (sink, seq)).rowcount:
                c.execute("UPDATE events SET pending = pending - 1, rank = CASE WHEN pending <= 1 THEN 0 ELSE rank END "
                          "WHERE seq = ?", (seq,))
                _count(c, sink, outcome)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def count(self, scope: str, name: str, n: int = 1) -> None:
        c = self._db()
        c.execute("BEGIN IMMEDIATE")
        _count(c, scope, name, n)
        c.execute("COMMIT")

    def retire_sinks(self, active: Iterable[str]) -> int:
        """Drop the pending deliveries of sinks no longer configured (counted as their `dropped`),
        so their events can settle. The number of deliveries dropped."""
        active = set(active)
        c = self._db()
        c.execute("BEGIN IMMEDIATE")
        try:
            gone = [(s, n) for s, n in c.execute("SELECT sink, COUNT(*) FROM deliveries GROUP BY sink") if s not in active]
            for sink, n in gone:
                c.execute("UPDATE events SET pending = pending - 1, rank = CASE WHEN pending <= 1 THEN 0 ELSE rank END "
                          "WHERE seq IN (SELECT seq FROM deliveries WHERE sink = ?)", (sink,))
                c.execute("DELETE FROM deliveries WHERE sink = ?", (sink,))
                _count(c, sink, "dropped", n)
                log.warning("outbox: sink %s is no longer configured; dropped its %d pending deliveries", sink, n)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return sum(n for _, n in gone)

    # --- episodes and metrics ------------------------------------------------------------------

    def episode_start(self, key: str, t: float, gap_s: float) -> float:
        """The start of the episode `key` (e.g. "camera|rule|track") is in at time `t`: the stored
        start if it was last seen within `gap_s`, else `t` (a new episode). Persisted, so a restart
        inside an episode derives the same event id."""
        c = self._db()
        c.execute("BEGIN IMMEDIATE")
        try:
            row = c.execute("SELECT t_start, last_seen FROM episodes WHERE key = ?", (key,)).fetchone()
            start = row[0] if row is not None and 0 <= t - row[1] <= gap_s else t
            c.execute("INSERT OR REPLACE INTO episodes VALUES (?, ?, ?)", (key, start, t))
            c.execute("DELETE FROM episodes WHERE last_seen < ?", (t - 86400.0,))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return start

    def depth(self, sink: str | None = None) -> int:
        if sink is None:
            return self._db().execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
        return self._db().execute("SELECT COUNT(*) FROM deliveries WHERE sink = ?", (sink,)).fetchone()[0]

    def stats(self) -> dict:
        c = self._db()
        rows, nbytes = c.execute("SELECT rows, bytes FROM totals").fetchone()
        counters: dict[str, dict[str, int]] = {}
        for scope, name, value in c.execute("SELECT scope, name, value FROM counters"):
            counters.setdefault(scope, {})[name] = value
        depths = dict(c.execute("SELECT sink, COUNT(*) FROM deliveries GROUP BY sink").fetchall())
        return {"rows": rows, "bytes": nbytes, "max_rows": self.max_rows, "max_bytes": self.max_bytes,
                "counters": counters, "depth": depths}

    def ids(self) -> list[str]:
        """Stored event ids in order (tests, tools)."""
        return [r[0] for r in self._db().execute("SELECT id FROM events ORDER BY seq")]


def _count(c: sqlite3.Connection, scope: str, name: str, n: int = 1) -> None:
    c.execute("INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT(scope, name) DO UPDATE SET value = value + excluded.value",
              (scope, name, n))


def backoff_delay(attempt: int, base_s: float, cap_s: float, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait before retry `attempt` (1, 2, ...): exponential, capped, equal jitter."""
    d = min(cap_s, base_s * 2.0 ** min(attempt - 1, 62))
    d = d / 2 + (rng or random).uniform(0, d / 2)
    return min(cap_s, max(d, retry_after or 0.0))


class _Worker(threading.Thread):
    """Delivers one sink's pending events, in order, until stopped."""

    def __init__(self, outbox: Outbox, sink: Sink, backoff: tuple[float, float], batch: int):
        super().__init__(name=f"deliver-{sink.name}", daemon=True)
        self.outbox, self.sink, self.backoff, self.batch = outbox, sink, backoff, batch
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.attempt = 0

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    self.wake.clear()
                    rows = self.outbox.pending(self.sink.name, self.batch)
                    if not rows:
                        self.wake.wait(5.0)
                        continue
                    for seq, body, snap in rows:
                        if self.stopping.is_set() or not self._deliver(seq, body, snap):
                            break
                except Exception:  # e.g. the disk went read-only: keep trying, loudly
                    log.exception("delivery to %s failed; trying again in 1 s", self.sink.name)
                    self.stopping.wait(1.0)
        finally:
            self.sink.close()

    def _deliver(self, seq: int, body: bytes, snap: str | None) -> bool:
        try:
            event = Event.from_json(body)
        except EventError as e:
            log.error("%s: stored event seq %d does not parse (%s); skipped", self.sink.name, seq, e)
            self.outbox.settle(self.sink.name, seq, "failed")
            return True
        payload = body
        if snap and self.sink.inline_snapshot:
            jpeg = self.outbox.snapshot_bytes(snap)
            payload = event.to_json(snapshot_jpeg=jpeg) if jpeg is not None else body
        try:
            self.sink.send(event, payload)
        except Exception as e:
            err = e if isinstance(e, DeliveryError) else DeliveryError(f"{type(e).__name__}: {e}")
            if err.permanent:
                log.error("%s refused event %s for good: %s", self.sink.name, event.id, err)
                self.outbox.settle(self.sink.name, seq, "failed")
                return True
            self.attempt += 1
            delay = backoff_delay(self.attempt, *self.backoff, retry_after=err.retry_after)
            log.warning("%s: %s; retry %d in %.1f s", self.sink.name, err, self.attempt, delay)
            self.outbox.count(self.sink.name, "retries")
            self.stopping.wait(delay)
            return False
        self.attempt = 0
        self.outbox.settle(self.sink.name, seq, "delivered")
        return True


class Emitter:
    """What the runtime calls: `emit` stores an event durably, fires local alarms and wakes the
    delivery threads. Each sink sees only the events its `events` types and `min_severity` let in."""

    def __init__(self, sinks: Sequence[SinkConfig | Sink], state_dir: str | os.PathLike, *,
                 backoff: tuple[float, float] = (1.0, 300.0), batch: int = 64, start: bool = True, **bounds):
        self.outbox = Outbox(state_dir, **bounds)
        built, seen = [], set()
        for cfg in sinks:
            name = cfg.name if isinstance(cfg, Sink) else sink_name(cfg)
            base, i = name, 2
            while name in seen:  # two sinks pointing at the same place stay apart
                name, i = f"{base}#{i}", i + 1
            seen.add(name)
            built.append(cfg if isinstance(cfg, Sink) else build_sink(cfg, state_dir, name))
        self.alarms = [s for s in built if isinstance(s, AlarmSink)]
        self.workers = [_Worker(self.outbox, s, backoff, batch) for s in built if not isinstance(s, AlarmSink)]
        self.outbox.retire_sinks(w.sink.name for w in self.workers)
        self._started = False
        if start:
            self.start()

    @classmethod
    def from_config(cls, config: RuntimeConfig, state_dir: str | os.PathLike, **kwargs) -> "Emitter":
        return cls(config.sinks, state_dir, **kwargs)

    def start(self) -> None:
        if not self._started:
            for w in self.workers:
                w.start()
            self._started = True

    def emit(self, event: Event, snapshot_jpeg: bytes | None = None) -> Event:
        """Fire matching local alarms, then store the event (durable when this returns) and wake
        the sinks that want it. Returns the event as stored (with its snapshot reference)."""
        if snapshot_jpeg is not None:
            event = event.with_snapshot(snapshot_jpeg)
        fired = []
        for a in self.alarms:
            if a.wants(event):
                a.fire(event)
                fired.append(a.name)
        targets = [w for w in self.workers if w.sink.wants(event)]
        self.outbox.put(event, [w.sink.name for w in targets], snapshot_jpeg, alarms=fired)
        for w in targets:
            w.wake.set()
        return event

    def episode_start(self, key: str, t: float, gap_s: float) -> float:
        return self.outbox.episode_start(key, t, gap_s)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every sink has every event; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.outbox.depth() > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def metrics(self) -> dict:
        """depth / delivered / retries / failed / dropped per sink, fired / errors per alarm,
        rows / bytes / dropped (per severity) / pruned for the store. Counts are persisted and
        cumulative across restarts, except alarm errors (since this start)."""
        st = self.outbox.stats()
        cnt = st["counters"]
        sinks = {w.sink.name: {"depth": st["depth"].get(w.sink.name, 0),
                               **{k: cnt.get(w.sink.name, {}).get(k, 0) for k in ("delivered", "retries", "failed", "dropped")}}
                 for w in self.workers}
        alarms = {a.name: {"fired": cnt.get(a.name, {}).get("fired", 0), "errors": a.errors} for a in self.alarms}
        g = cnt.get("", {})
        return {"sinks": sinks, "alarms": alarms,
                "store": {"rows": st["rows"], "bytes": st["bytes"], "max_rows": st["max_rows"], "max_bytes": st["max_bytes"],
                          "dropped": {s: g.get(f"dropped_{s}", 0) for s in SEVERITY_RANK}, "pruned": g.get("pruned", 0)}}

    def close(self, timeout: float = 5.0) -> None:
        """Stop the delivery threads (an in-flight send finishes or times out), then the store."""
        for w in self.workers:
            w.stopping.set()
            w.wake.set()
        for w in self.workers:
            if w.is_alive():
                w.join(timeout)
        for a in self.alarms:
            a.close()
        if not any(w.is_alive() for w in self.workers):
            self.outbox.close()

    def __enter__(self) -> "Emitter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
