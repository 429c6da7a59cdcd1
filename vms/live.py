"""The live feed: Server-Sent Events to every open dashboard.

`Broker.publish(kind, data)` may be called from any thread (the ingest writer, request
handlers); each subscriber has its own bounded asyncio queue on the server's event loop, and a
subscriber that falls too far behind is dropped (its browser reconnects with ``Last-Event-ID``
and the stream replays the events it missed from the database).
"""
from __future__ import annotations

import asyncio
import json
import threading

QUEUE_MAX = 1000


class Broker:
    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self._subs: set[asyncio.Queue] = set()
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(QUEUE_MAX)
        with self._lock:
            self._subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        with self._lock:
            self._subs.discard(q)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, kind: str, data: dict, seq: int | None = None) -> None:
        if self.loop is None or not self._subs:
            return
        msg = format_sse(kind, data, seq)
        try:
            self.loop.call_soon_threadsafe(self._fan_out, msg)
        except RuntimeError:  # loop closed (shutting down)
            pass

    def _fan_out(self, msg: str) -> None:
        with self._lock:
            subs = list(self._subs)
        for q in subs:
            try:
                q.put_nowait(msg)
            except asyncio.QueueFull:  # too slow: drop it; the stream ends and the browser reconnects
                q.dropped = True
                self.unsubscribe(q)


def format_sse(kind: str, data: dict, seq: int | None = None) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"
