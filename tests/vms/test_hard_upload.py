"""Devices upload hard samples: runtime.hardupload against a real VMS on loopback."""
from __future__ import annotations

import time

import httpx
import numpy as np

from runtime.config import SinkConfig
from runtime.hardsample import HardSamplePolicy
from runtime.hardupload import HardSampleUploader, samples_url


def frame(seed=0):
    return np.random.default_rng(seed).integers(0, 255, (360, 640, 3), dtype=np.uint8)


def wait(pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_samples_url():
    assert samples_url("https://vms.local:8443/api/events") == "https://vms.local:8443/api/hard-samples"


def test_unsure_frames_reach_the_teacher_folder_rate_limited_and_once(server):
    token = server.add_device("cam-1")
    up = HardSampleUploader(samples_url(f"{server.url}/api/events"), token, "cam-1",
                            policy=HardSamplePolicy(min_interval_s=2.0), backoff_s=0.05)
    try:
        boxes = np.array([[10, 20, 60, 140]])
        # an uncertain box and no confirmed track: unsure, not a disagreement
        assert up.offer("gate", 0.0, 1_790_000_000.0, frame(), [0.35], 0, boxes) == "low_confidence"
        assert up.offer("gate", 1.0, 1_790_000_001.0, frame(1), [0.3], 0, boxes) is None  # rate limit
        assert up.offer("gate", 1.5, 1_790_000_001.5, frame(2), [0.9], 1, boxes) is None  # sure: not hard
        assert up.offer("gate", 3.0, 1_790_000_003.0, frame(3), [0.9, 0.8], 1, np.array([[0, 0, 9, 9], [20, 20, 40, 40]])) \
            == "disagreement"  # two confident boxes, one track
        assert wait(lambda: up.sent == 2), (up.sent, up.failed)
        admin = server.login()
        rows = httpx.get(f"{server.url}/api/hard-samples", headers=admin).json()["samples"]
        assert sorted(r["reason"] for r in rows) == ["disagreement", "low_confidence"]
        assert {r["device"] for r in rows} == {"cam-1"} and {r["camera"] for r in rows} == {"gate"}
        files = sorted((server.settings.data_dir / "hard_samples").glob("*.jpg"))
        assert len(files) == 2 and files[0].read_bytes()[:2] == b"\xff\xd8"
        # the same sample again (a retry after a lost reply) is stored once
        up.selector._last.clear()
        up.offer("gate", 0.0, 1_790_000_000.0, frame(), [0.35], 0, boxes)
        assert wait(lambda: up.sent == 3)
        assert httpx.get(f"{server.url}/api/hard-samples", headers=admin).json()["total"] == 2
    finally:
        up.close()


def test_a_vms_that_is_down_costs_retries_then_drops_never_blocks(server):
    token = server.add_device("cam-1")
    server.stop()
    up = HardSampleUploader(samples_url(f"{server.url}/api/events"), token, "cam-1",
                            policy=HardSamplePolicy(min_interval_s=0.0), backoff_s=0.01, timeout_s=0.5)
    try:
        t0 = time.perf_counter()
        for i in range(40):
            up.offer("gate", float(i), 1_790_000_000.0 + i, frame(i), [0.3], 1, np.array([[0, 0, 9, 9]]))
        assert time.perf_counter() - t0 < 5.0  # offering never waits for the network
        assert wait(lambda: up.failed + up.dropped + up.sent == 40, 60), (up.sent, up.failed, up.dropped)
        assert up.sent == 0 and up.dropped > 0  # the bounded queue dropped the oldest
    finally:
        up.close()
        server.start()


def test_the_runtime_uploads_only_with_a_vms_sink():
    import dataclasses

    from tests.runtime.test_governor import config

    assert HardSampleUploader.from_config(config()) is None
    sink = SinkConfig(kind="http", params={"target": "http://127.0.0.1:9/api/events", "token": "t" * 20})
    up = HardSampleUploader.from_config(dataclasses.replace(config(), sinks=(sink,)))
    try:
        assert up is not None and up.url == "http://127.0.0.1:9/api/hard-samples" and up.device == "d"
    finally:
        up.close()
