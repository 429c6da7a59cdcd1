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
