"""Event ingest with group commit: each event is durably committed before its reply, and the
requests that arrive while a commit is in flight share the next one.

One writer thread owns all event inserts. A request parses and checks its event (the format is
``runtime.events``; nothing is redefined here), writes the snapshot file (fsync'd), and hands the
row to the writer, then waits. The writer takes everything queued (up to ``MAX_BATCH``), inserts
each row with one multi-row ``INSERT .. ON CONFLICT (id) DO NOTHING`` in one transaction, commits (one fsync on SQLite
with synchronous=FULL; one WAL flush on PostgreSQL) and answers every waiting request: *created*
or *duplicate* with the stored row. So the same event POSTed N times, concurrently or in
sequence, is stored once and every POST gets the same row back. If a batch fails, its rows are
retried one per transaction, so one bad row cannot fail its neighbours.

The writer also runs the retention job every ``Settings.retention_every_s``.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from runtime.events import Event

from . import db
from .store import Store

log = logging.getLogger("sitewarden.vms.ingest")
MAX_BATCH = 256
LAST_SEEN_EVERY_S = 2.0


@dataclass
class Pending:
    event: Event
    body: str
    snapshot: str | None
    received: float
    future: Future


def event_out(row) -> dict:
    """An events row as the API shows it: the event JSON plus the VMS's own fields."""
    d = json.loads(row.body)
    d.update(seq=row.seq, received=row.received, acked_by=row.acked_by, acked_at=row.acked_at,
             false_alarm=bool(row.false_alarm), note=row.note,
             snapshot_url=f"/api/events/{row.id}/snapshot" if row.snapshot else None,
             clip_url=f"/api/events/{row.id}/clip" if row.clip else None)
    return d


class Ingestor:
    def __init__(self, store: Store, on_new: Callable[[list[dict]], None] | None = None):
        self.store = store
        self.on_new = on_new or (lambda rows: None)
        self.q: queue.Queue[Pending | None] = queue.Queue()
        self._insert = pg_insert if db.is_postgres(store.engine) else sqlite_insert
        self._stop = threading.Event()
        self._last_retention = 0.0
        self._seen_written: dict[str, float] = {}
        self.batches = 0
        self.committed = 0
        self._thread = threading.Thread(target=self._run, name="vms-ingest", daemon=True)
        self._thread.start()

    def submit(self, event: Event, body: str, snapshot: str | None) -> Future:
        fut: Future = Future()
        self.q.put(Pending(event, body, snapshot, time.time(), fut))
        return fut

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.q.put(None)
        self._thread.join(timeout)

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        every = self.store.settings.retention_every_s
        while True:
            try:
                first = self.q.get(timeout=min(every, 1.0))
            except queue.Empty:
                first = None
            batch = [first] if first is not None else []
            while len(batch) < MAX_BATCH:
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    batch.append(item)
            if batch:
                self._commit(batch)
            if self._stop.is_set() and self.q.empty():
                return
            if time.monotonic() - self._last_retention >= every:
                self._last_retention = time.monotonic()
                try:
                    self.store.enforce_retention()
                except Exception:
                    log.exception("retention job failed; trying again later")

    def _commit(self, batch: list[Pending]) -> None:
        try:
            results = self._write(batch)
        except Exception:
            log.exception("ingest batch of %d failed; retrying one by one", len(batch))
            results = []
            for p in batch:
                try:
                    results += self._write([p])
                except Exception as e:
                    p.future.set_exception(e)
        new = []
        for p, created, row in results:
            out = event_out(row)
            p.future.set_result((created, out))
            if created:
                new.append(out)
        self.batches += 1
        self.committed += len(batch)
        if new:
            try:
                self.on_new(new)
            except Exception:
                log.exception("live feed publish failed")

    def _write(self, batch: list[Pending]):
        """One transaction for the batch: a single multi-row INSERT .. ON CONFLICT (id) DO NOTHING
        RETURNING the new rows (the first POST of an id in the batch is the one that creates it);
        a SELECT only for ids already stored; the devices' last_seen (at most every 2 s each).
        Few statements per batch: each is a GIL release and re-acquire for the writer thread."""
        e = db.events
        first: dict[str, int] = {}
        values = []
        for k, p in enumerate(batch):
            ev = p.event
            if ev.id in first:
                continue
            first[ev.id] = k
            values.append(dict(id=ev.id, type=ev.type, severity=ev.severity, site=ev.site, device=ev.device,
                               camera=ev.camera, zone=ev.zone, t_event=ev.t_event, received=p.received, body=p.body,
                               snapshot=p.snapshot, false_alarm=False))
        now = time.monotonic()
        seen: dict[str, float] = {}
        for p in batch:  # last_seen is written at most every LAST_SEEN_EVERY_S per device
            if now - self._seen_written.get(p.event.device, -1e9) >= LAST_SEEN_EVERY_S:
                seen[p.event.device] = max(seen.get(p.event.device, 0.0), p.received)
        with self.store.engine.begin() as c:
            stmt = self._insert(e).values(values).on_conflict_do_nothing(index_elements=["id"]).returning(*e.c)
            rows = {r.id: r for r in c.execute(stmt)}
            new_ids = set(rows)
            dups = [i for i in first if i not in rows]
            if dups:
                rows.update((r.id, r) for r in c.execute(select(e).where(e.c.id.in_(dups))))
            for dev, t in seen.items():
                c.execute(update(db.devices).where(db.devices.c.id == dev).values(last_seen=t))
        for dev in seen:
            self._seen_written[dev] = now
        return [(p, p.event.id in new_ids and first[p.event.id] == k, rows[p.event.id]) for k, p in enumerate(batch)]
