"""Where events go: the file, HTTP, MQTT and local alarm sinks, built from a :class:`SinkConfig`.

A sink has one verb, ``send(event, payload)``: it returns when the receiver has the event and
raises :class:`DeliveryError` when it does not (``permanent=True``: retrying cannot help, e.g. an
HTTP 400; otherwise the outbox retries with backoff). The outbox (``runtime/outbox.py``) calls
``send`` from one delivery thread per sink, in order, at least once per event.

The alarm sink is different: ``fire(event)`` returns at once (a process started, a GPIO line set,
a request begun) and is called by the emitter at emit time, never queued behind the network.
An alarm that fails is logged and counted, not retried: a siren minutes late is no siren.

Params per kind (as ``compiler/resolve.py`` writes them):

* ``file``: target (relative paths are under the runtime's state folder).
* ``http``: target (URL), token, timeout_s; clips (bool, default true): upload event clips
  (``runtime/clips.py``) with PUT to :func:`clip_url`.
* ``mqtt``: target (mqtt://host:port or mqtts://...), topic, username, password, qos.
* ``alarm``: one of command (argv list) | gpio (sysfs value path) | http (URL); hold_s.
* any but alarm: ``inline_snapshot`` (bool, default false): put the JPEG in the JSON as base64.
"""
from __future__ import annotations

import http.client
import logging
import os
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

from .config import SinkConfig
from .events import SEVERITY_RANK, Event, EventError

log = logging.getLogger("sitewarden.sinks")


class DeliveryError(Exception):
    """A send that did not reach the receiver. `permanent`: do not retry; `retry_after`: seconds."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None,
                 status: int | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status  # the HTTP status, where there was one


def sink_name(config: SinkConfig) -> str:
    """A stable name for a sink (its kind and where it points; never a secret). The outbox keys
    deliveries by it, so it must survive restarts and must not change when unrelated sinks do."""
    p = config.params
    if config.kind == "alarm":
        what = ("command:" + " ".join(map(str, p["command"]))) if p.get("command") else \
            ("gpio:" + str(p["gpio"])) if p.get("gpio") else ("http:" + str(p.get("http")))
        return f"alarm:{what}"
    return f"{config.kind}:{p.get('target')}"


class Sink:
    kind = "?"

    def __init__(self, config: SinkConfig, name: str | None = None):
        self.config = config
        self.name = name or sink_name(config)
        self.types = frozenset(config.events)
        self.min_rank = SEVERITY_RANK[config.min_severity]
        self.inline_snapshot = bool(config.params.get("inline_snapshot", False))

    def wants(self, event: Event) -> bool:
        return (not self.types or event.type in self.types) and SEVERITY_RANK[event.severity] >= self.min_rank

    def send(self, event: Event, payload: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class FileSink(Sink):
    """One JSON line per event, fsync'd before `send` returns. A line cut short by a crash is
    fenced off with a newline on the next open; :func:`read_jsonl` skips it."""

    kind = "file"

    def __init__(self, config: SinkConfig, state_dir: str | os.PathLike, name: str | None = None):
        super().__init__(config, name)
        target = Path(str(config.params["target"]))
        self.path = target if target.is_absolute() else Path(state_dir) / target
        self._fh = None

    def _open(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "ab")
        if fh.tell() > 0:
            with open(self.path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    fh.write(b"\n")
        return fh

    def send(self, event: Event, payload: bytes) -> None:
        try:
            if self._fh is None:
                self._fh = self._open()
            self._fh.write(payload + b"\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as e:  # disk full, removed card: retry later on a fresh handle
            self.close()
            raise DeliveryError(f"{self.path}: {e}") from None

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None


def read_jsonl(path: str | os.PathLike) -> Iterator[Event]:
    """The events in a file sink's output, skipping lines a crash cut short."""
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                try:
                    yield Event.from_json(line)
                except EventError:
                    continue


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a POST is never silently turned into a GET
        return None


class HttpSink(Sink):
    """POST the event JSON with ``Authorization: Bearer TOKEN``. 2xx and 409 (the receiver has it
    already) are delivered; 408, 429, 5xx and connection errors are retried; any other status
    (4xx, an unexpected redirect) is a permanent failure, logged and counted."""

    kind = "http"

    def __init__(self, config: SinkConfig, name: str | None = None):
        super().__init__(config, name)
        self.url = str(config.params["target"])
        self.timeout_s = float(config.params.get("timeout_s") or 5.0)
        self.headers = {"Content-Type": "application/json", "User-Agent": "sitewarden-runtime"}
        if config.params.get("token"):
            self.headers["Authorization"] = f"Bearer {config.params['token']}"
        self._opener = urllib.request.build_opener(_NoRedirect)

    def send(self, event: Event, payload: bytes) -> None:
        req = urllib.request.Request(self.url, data=payload, method="POST",
                                     headers={**self.headers, "Idempotency-Key": event.id})
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                resp.read()
            return
        except urllib.error.HTTPError as e:
            status, retry_after = e.code, _retry_after(e.headers.get("Retry-After") if e.headers else None)
            e.close()
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:  # refused, reset, timeout
            raise DeliveryError(f"POST {self.url}: {getattr(e, 'reason', e)}") from None
        if status == 409:
            return
        if status in (408, 429) or status >= 500:
            raise DeliveryError(f"POST {self.url}: HTTP {status}", retry_after=retry_after)
        raise DeliveryError(f"POST {self.url}: HTTP {status} (not retried)", permanent=True)

    def put_clip(self, event_id: str, mp4: bytes) -> None:
        """PUT an event's clip to :func:`clip_url`. 2xx and 409 are done; 404 (the receiver has not
        got the event yet), 408, 429 and 5xx are retryable; other statuses are permanent."""
        url = clip_url(self.url, event_id)
        headers = {**self.headers, "Content-Type": "video/mp4", "Idempotency-Key": f"{event_id}/clip"}
        req = urllib.request.Request(url, data=mp4, method="PUT", headers=headers)
        try:
            with self._opener.open(req, timeout=max(self.timeout_s, 30.0)) as resp:
                resp.read()
            return
        except urllib.error.HTTPError as e:
            status, retry_after = e.code, _retry_after(e.headers.get("Retry-After") if e.headers else None)
            e.close()
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            raise DeliveryError(f"PUT {url}: {getattr(e, 'reason', e)}") from None
        if status == 409:
            return
        if status in (404, 408, 429) or status >= 500:
            raise DeliveryError(f"PUT {url}: HTTP {status}", retry_after=retry_after, status=status)
        raise DeliveryError(f"PUT {url}: HTTP {status} (not retried)", permanent=True, status=status)


def clip_url(events_url: str, event_id: str) -> str:
    """Where an event's clip goes: ``<events url>/<id>/clip`` when the sink's URL ends in ``/events``
    (the VMS's ``/api/events``), else ``/api/events/<id>/clip`` on the same host."""
    parts = urllib.parse.urlsplit(events_url)
    path = parts.path.rstrip("/")
    path = f"{path}/{event_id}/clip" if path.endswith("/events") else f"/api/events/{event_id}/clip"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class MqttSink(Sink):
    """Publish the event JSON to a broker (paho-mqtt, imported when the first MQTT sink is built)
    and wait for the broker's acknowledgement (QoS 1 PUBACK, QoS 2 PUBCOMP) before returning."""

    kind = "mqtt"

    def __init__(self, config: SinkConfig, name: str | None = None):
        super().__init__(config, name)
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise RuntimeError("an mqtt sink needs paho-mqtt: pip install 'sitewarden[mqtt]' (or paho-mqtt>=2)") from None
        self._mqtt = mqtt
        p = config.params
        url = urllib.parse.urlsplit(str(p["target"]))
        self.tls = url.scheme == "mqtts"
        self.host, self.port = url.hostname or "localhost", url.port or (8883 if self.tls else 1883)
        self.topic = str(p.get("topic") or "sitewarden/events")
        self.qos = int(p.get("qos", 1))
        self.timeout_s = float(p.get("timeout_s") or 10.0)
        self._connected = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sitewarden-{os.getpid()}-{id(self):x}")
        if p.get("username"):
            self._client.username_pw_set(str(p["username"]), p.get("password"))
        if self.tls:
            self._client.tls_set()
        self._client.on_connect = lambda c, u, flags, rc, props=None: (self._connected.set() if not rc.is_failure else None)
        self._client.on_disconnect = lambda c, u, flags, rc, props=None: self._connected.clear()
        self._client.reconnect_delay_set(1, 30)
        self._started = False

    def send(self, event: Event, payload: bytes) -> None:
        if not self._started:
            self._client.connect_async(self.host, self.port, keepalive=30)
            self._client.loop_start()
            self._started = True
        if not self._connected.wait(self.timeout_s):
            raise DeliveryError(f"mqtt {self.host}:{self.port}: not connected")
        info = self._client.publish(self.topic, payload, qos=self.qos)
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            raise DeliveryError(f"mqtt {self.host}:{self.port}: publish failed ({self._mqtt.error_string(info.rc)})")
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as e:
            raise DeliveryError(f"mqtt {self.host}:{self.port}: {e}") from None
        if not info.is_published():
            raise DeliveryError(f"mqtt {self.host}:{self.port}: no acknowledgement in {self.timeout_s:g} s")

    def close(self) -> None:
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False


class AlarmSink(Sink):
    """A local relay, siren or strobe. `fire` never blocks on the alarm itself:

    * command: started with the event in ``SITEWARDEN_EVENT_TYPE``, ``_ZONE``, ``_CAMERA``,
      ``_SEVERITY``, ``_EVENT_ID``, ``_HOLD_S`` and ``SITEWARDEN_EVENT_JSON``; reaped in the background.
    * gpio: "1" written to the sysfs value file now, "0" after hold_s (a new event extends the hold).
    * http: the event JSON POSTed to the URL from a short-lived thread (timeout 2 s).
    """

    kind = "alarm"

    def __init__(self, config: SinkConfig, name: str | None = None, state_dir: str | os.PathLike | None = None):
        super().__init__(config, name)
        p = config.params
        self.command = [str(a) for a in p["command"]] if p.get("command") else None
        self.cwd = str(state_dir) if state_dir is not None else None  # commands run in the runtime's state folder
        self.gpio = str(p["gpio"]) if p.get("gpio") else None
        self.url = str(p["http"]) if p.get("http") else None
        if sum(x is not None for x in (self.command, self.gpio, self.url)) != 1:
            raise ValueError(f"{self.name}: an alarm needs exactly one of command, gpio or http")
        self.hold_s = float(p.get("hold_s", 5.0))
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._procs: list[subprocess.Popen] = []
        self.fired = 0
        self.errors = 0

    def send(self, event: Event, payload: bytes) -> None:
        self.fire(event, payload)

    def fire(self, event: Event, payload: bytes | None = None) -> None:
        payload = event.to_json() if payload is None else payload
        with self._lock:
            try:
                if self.command:
                    self._run(event, payload)
                elif self.gpio:
                    self._gpio_on()
                else:
                    threading.Thread(target=self._post, args=(payload,), name="alarm-http", daemon=True).start()
                self.fired += 1
            except OSError as e:
                self.errors += 1
                log.error("alarm %s failed for event %s: %s", self.name, event.id, e)

    def _run(self, event: Event, payload: bytes) -> None:
        env = dict(os.environ, SITEWARDEN_EVENT_TYPE=event.type, SITEWARDEN_ZONE=event.zone or "",
                   SITEWARDEN_CAMERA=event.camera, SITEWARDEN_SEVERITY=event.severity,
                   SITEWARDEN_EVENT_ID=event.id, SITEWARDEN_HOLD_S=f"{self.hold_s:g}",
                   SITEWARDEN_EVENT_JSON=payload.decode("utf-8"))
        self._procs = [p for p in self._procs if p.poll() is None]  # reap the finished ones
        self._procs.append(subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL, close_fds=True,
                                            cwd=self.cwd))

    def _write_gpio(self, value: str) -> None:
        with open(self.gpio, "w") as fh:
            fh.write(value)

    def _gpio_on(self) -> None:
        self._write_gpio("1")
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(self.hold_s, self._gpio_off)
        self._timer.daemon = True
        self._timer.start()

    def _gpio_off(self) -> None:
        with self._lock:
            try:
                self._write_gpio("0")
            except OSError as e:
                self.errors += 1
                log.error("alarm %s: could not release %s: %s", self.name, self.gpio, e)
            self._timer = None

    def _post(self, payload: bytes) -> None:
        req = urllib.request.Request(self.url, data=payload, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=2.0) as resp:
                resp.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            with self._lock:
                self.errors += 1
            log.error("alarm %s: %s", self.name, getattr(e, "reason", e))

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:  # shutting down: do not leave the line high
                self._timer.cancel()
                self._timer = None
                try:
                    self._write_gpio("0")
                except OSError:
                    pass
            deadline = time.monotonic() + 1.0
            for p in self._procs:
                try:
                    p.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass  # left running: a siren sample may outlive us


def build_sink(config: SinkConfig, state_dir: str | os.PathLike, name: str | None = None) -> Sink:
    """The sink a config describes."""
    if config.kind == "file":
        return FileSink(config, state_dir, name)
    if config.kind == "http":
        return HttpSink(config, name)
    if config.kind == "mqtt":
        return MqttSink(config, name)
    if config.kind == "alarm":
        return AlarmSink(config, name, state_dir)
    raise ValueError(f"unknown sink kind '{config.kind}' (http, mqtt, file, alarm)")

