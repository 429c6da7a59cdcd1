"""Situation flags set in the VMS reach a device: runtime.vmsflags.FlagPoller against a real VMS."""
from __future__ import annotations

import httpx

from runtime.config import SinkConfig
from runtime.vmsflags import FlagPoller, flags_for, flags_url


def test_flags_for_scopes():
    rows = [{"scope": "*", "name": "rain", "value": True}, {"scope": "*", "name": "snow", "value": True},
            {"scope": "edge-1", "name": "snow", "value": False}, {"scope": "cam-b", "name": "wind", "value": True},
            {"scope": "other", "name": "fog", "value": True}]
    assert flags_for(rows, "edge-1") == {"rain"}  # the device's own "snow: off" wins over the site's
    assert flags_for(rows, "edge-1", ["cam-a", "cam-b"]) == {"rain", "wind"}
    assert flags_for(rows, "edge-2") == {"rain", "snow"}
    assert flags_url("https://vms.local:8443/api/events") == "https://vms.local:8443/api/flags"
    assert flags_url("http://10.0.0.5/ingest") == "http://10.0.0.5/api/flags"


def test_a_device_follows_the_vms_flags(server):
    token = server.add_device("edge-1")
    admin = server.login()
    changes = []
    sink = SinkConfig(kind="http", params={"target": f"{server.url}/api/events", "token": token})
    poller = FlagPoller.from_sink(sink, device="edge-1", cameras=("crane-cam",),
                                  on_change=lambda name, on: changes.append((name, on)))
    assert poller.poll() == set() and changes == []
    httpx.put(f"{server.url}/api/flags/*/rain", json={"value": True}, headers=admin).raise_for_status()
    httpx.put(f"{server.url}/api/flags/crane-cam/wind", json={"value": True}, headers=admin).raise_for_status()
    httpx.put(f"{server.url}/api/flags/other-cam/snow", json={"value": True}, headers=admin).raise_for_status()
    assert poller.poll() == {"rain", "wind"}
    assert changes == [("rain", True), ("wind", True)]
    httpx.put(f"{server.url}/api/flags/*/rain", json={"value": False}, headers=admin).raise_for_status()
    assert poller.poll() == {"wind"} and changes[-1] == ("rain", False)
    server.stop()  # the VMS goes away: the last known flags hold
    assert poller.poll() == {"wind"} and poller.errors == 1
    server.start()



def test_the_runtime_starts_a_poller_only_for_flag_situations_and_switches_models(server):
    """runtime.app.flag_poller: a situation `when: {flag: rain}` plus an http sink -> the device's
    governor follows the VMS's flag into the rain variant; no flag situation -> no poller, no traffic."""
    import dataclasses

    from runtime.app import flag_poller
    from runtime.config import SituationConfig
    from runtime.governor import Governor
    from tests.runtime.test_governor import config

    token = server.add_device("d")
    admin = server.login()
    sink = SinkConfig(kind="http", params={"target": f"{server.url}/api/events", "token": token})

    class Device:  # what the poller touches of runtime.pipeline.Device
        def __init__(self, cfg):
            self.governor = Governor(cfg)

    plain = dataclasses.replace(config(), sinks=(sink,))
    assert flag_poller(plain, Device(plain)) is None
    rainy = dataclasses.replace(config([SituationConfig(id="rain", flag="rain")]), sinks=(sink,))
    assert flag_poller(dataclasses.replace(rainy, sinks=()), Device(rainy)) is None  # no VMS to ask
    dev = Device(rainy)
    poller = flag_poller(rainy, dev)
    try:
        poller.stop()  # drive it by hand: no timing in the test
        httpx.put(f"{server.url}/api/flags/*/rain", json={"value": True}, headers=admin).raise_for_status()
        assert poller.poll() == {"rain"} and "rain" in dev.governor.flags
        dev.governor.evaluate_situations(0.0)
        assert dev.governor.current("detector").variant == "det-320-night"
    finally:
        poller.stop()
