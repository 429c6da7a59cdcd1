"""Situation flags from the VMS (rain, snow, wind ...): a device asks the VMS which flags hold for
it and hands changes to the governor (``Governor.set_flag``), so a situation with ``when: {flag:
rain}`` switches models when an operator ticks "rain" in the dashboard. Stdlib only.

    poller = FlagPoller.from_sink(http_sink_config, device="crane-cam", cameras=("crane-cam",),
                                  on_change=governor.set_flag)
    poller.start()            # a daemon thread: GET <vms>/api/flags every interval_s
    poller.stop()

A flag holds for this device when it is set site-wide (scope ``*``), for the device, or for one of
its cameras; a more specific scope wins over ``*``. When the VMS cannot be reached the last known
flags stay as they are (a network outage does not end the rain).
"""
from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, Iterable

log = logging.getLogger("sitewarden.vmsflags")


def vms_sink(config):
    """The config's first http sink with a target: the VMS the device reports to (or None)."""
    return next((s for s in config.sinks if s.kind == "http" and s.params.get("target")), None)


def beside_events(events_url: str, leaf: str) -> str:
    """``<scheme>://<host>/api/<leaf>`` beside the VMS's ``/api/events``."""
    parts = urllib.parse.urlsplit(events_url)
    path = parts.path.rstrip("/")
    path = path[: -len("/events")] + f"/{leaf}" if path.endswith("/events") else f"/api/{leaf}"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def flags_url(events_url: str) -> str:
    """``<scheme>://<host>/api/flags`` beside the VMS's ``/api/events``."""
    return beside_events(events_url, "flags")


def flags_for(rows: Iterable[dict], device: str, cameras: Iterable[str] = ()) -> set[str]:
    """The flag names that hold for `device` (and its cameras) given the VMS's flag rows."""
    specific: dict[str, bool] = {}
    site: dict[str, bool] = {}
    mine = {device, *cameras}
    for r in rows:
        scope, name, value = r.get("scope"), r.get("name"), bool(r.get("value"))
        if scope == "*":
            site[name] = value
        elif scope in mine:
            specific[name] = specific.get(name, False) or value
    merged = {**site, **specific}
    return {name for name, on in merged.items() if on}


class FlagPoller:
    def __init__(self, url: str, token: str | None, device: str, cameras: Iterable[str] = (),
                 on_change: Callable[[str, bool], None] | None = None, interval_s: float = 15.0,
                 timeout_s: float = 5.0):
        self.url, self.token, self.device = url, token, device
        self.cameras = tuple(cameras)
        self.on_change = on_change or (lambda name, on: None)
        self.interval_s, self.timeout_s = float(interval_s), float(timeout_s)
        self.flags: set[str] = set()
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_sink(cls, sink, device: str, cameras: Iterable[str] = (), **kw) -> "FlagPoller":
        """From an http :class:`~runtime.config.SinkConfig` (its target URL and token)."""
        return cls(flags_url(str(sink.params["target"])), sink.params.get("token"), device, cameras, **kw)

    def poll(self) -> set[str]:
        """Ask once; apply and return the flags now holding (unchanged when the VMS is unreachable)."""
        req = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                rows = json.loads(r.read()).get("flags", [])
        except (urllib.error.URLError, OSError, ValueError, AttributeError) as e:
            self.errors += 1
            log.warning("flags from %s: %s (keeping %s)", self.url, getattr(e, "reason", e), sorted(self.flags))
            return set(self.flags)
        now = flags_for(rows, self.device, self.cameras)
        for name in sorted(now - self.flags):
            self.on_change(name, True)
        for name in sorted(self.flags - now):
            self.on_change(name, False)
        self.flags = now
        return set(now)

    def start(self) -> "FlagPoller":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vms-flags", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # never let the poller take the runtime down
                log.exception("flag poll failed")
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1)
            self._thread = None
