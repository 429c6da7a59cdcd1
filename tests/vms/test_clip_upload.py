"""Event clips end to end on loopback: a device's ClipRecorder records an alert's clip and its HTTP
sink PUTs it to a real VMS (uvicorn), which then serves the same bytes for the event."""
from __future__ import annotations

import time
from dataclasses import replace

import httpx
import numpy as np
import pytest

from runtime.clips import ClipRecorder
from runtime.config import ClipConfig, SinkConfig
from runtime.outbox import Emitter

from .conftest import make_event

pytest.importorskip("av")


def test_an_alerts_clip_reaches_the_vms(server, tmp_path):
    token = server.add_device("cam-1")
    sink = SinkConfig(kind="http", params={"target": f"{server.url}/api/events", "token": token, "timeout_s": 5})
    emitter = Emitter([sink], tmp_path / "device", backoff=(0.05, 0.3))
    rec = ClipRecorder(ClipConfig(enabled=True, pre_s=1.0, post_s=1.0, max_mb=16), tmp_path / "device",
                       {"crane-north": 10.0}, [sink], backoff=(0.05, 0.3), block=True)
    try:
        t0 = 1_790_000_000.0
        event = make_event(0, t_start=t0 + 2.0)
        for i in range(40):
            img = np.full((90, 160, 3), (i * 6) % 250, np.uint8)
            rec.push("crane-north", t0 + i / 10.0, img)
            if i == 20:  # the frame that raised it: clip name first, then the durable emit
                event = emitter.emit(replace(event, clip=rec.request(event)))
        rec.flush()
        assert emitter.drain(timeout=30)
        assert rec.drain(timeout=30), rec.metrics()
        data = (tmp_path / "device" / "clips" / event.clip).read_bytes()
        r = httpx.get(f"{server.url}/api/events/{event.id}/clip", headers=server.login())
        assert r.status_code == 200 and r.content == data
        ev = httpx.get(f"{server.url}/api/events/{event.id}", headers=server.login()).json()
        assert ev["clip"] or ev.get("clip_url")
        m = rec.metrics()["counters"][f"http:{server.url}/api/events"]
        assert m["delivered"] == 1
    finally:
        rec.close()
        emitter.close()
        time.sleep(0.05)
