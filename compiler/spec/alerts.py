"""Alerts: how events leave the device. Each sink is a mapping keyed by its kind:

    sinks:
      - http: https://vms.local/api/events
        token: !secret vms_token                     # or per device:
        # device_tokens: {crane-cam: !secret crane_cam_token, gate-cam: !secret gate_cam_token}
      - mqtt: mqtt://broker.local:1883
        topic: site/events
      - file: events.jsonl
      - alarm: {gpio: /sys/class/gpio/gpio17/value}
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from .base import EventType, Severity, SpecModel

SINK_KINDS = ("http", "mqtt", "file", "alarm")


class _SinkBase(SpecModel):
    events: list[EventType] | None = Field(default=None, description="Only these event types (default: all).")
    min_severity: Severity = Field(default="info", description="Drop events below this severity.")


class HttpSink(_SinkBase):
    """POST each event as JSON (the VMS)."""

    http: str = Field(description="URL that receives each event as a JSON POST (the VMS's /api/events).")
    token: str | None = Field(default=None, description="Bearer token; keep it out of the spec with !secret or !env.")
    device_tokens: dict[str, str] | None = Field(
        default=None, description="Per-device bearer tokens, device id -> token (the VMS ties each token to one "
        "device, as `build.py vms --device ID=TOKEN` registers it). Each image carries only its own device's "
        "token; a device not listed uses `token`.")
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="Per-request timeout.")
    inline_snapshot: bool = Field(default=True, description="Send the event's snapshot JPEG inside the JSON "
                                  "(base64), so the VMS can show it and turn a false-alarm mark into a hard sample.")

    @field_validator("http")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"'{v}' is not an http:// or https:// URL")
        return v


class MqttSink(_SinkBase):
    """Publish each event to an MQTT broker."""

    mqtt: str = Field(description="Broker URL: mqtt://host:1883 or mqtts://host:8883.")
    topic: str = Field(default="sitewarden/events", description="Topic events are published to.")
    username: str | None = Field(default=None, description="Broker user name.")
    password: str | None = Field(default=None, description="Broker password; use !secret.")
    qos: Literal[0, 1, 2] = Field(default=1, description="MQTT quality of service (1 = at least once).")

    @field_validator("mqtt")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("mqtt://", "mqtts://")):
            raise ValueError(f"'{v}' is not an mqtt:// or mqtts:// URL")
        return v


class FileSink(_SinkBase):
    """Append each event as a JSON line."""

    file: str = Field(description="JSON-lines file on the device (relative paths are under the runtime's state folder).")


class AlarmAction(SpecModel):
    """What sounds the alarm: exactly one of command, gpio or http."""

    command: list[str] | None = Field(default=None, description="Program and arguments to run, e.g. [aplay, /opt/siren.wav].")
    gpio: str | None = Field(default=None, description="A sysfs value file driven high while the alarm sounds.")
    http: str | None = Field(default=None, description="URL called with POST (e.g. a networked strobe or relay).")

    @model_validator(mode="after")
    def _one_action(self):
        given = [k for k in ("command", "gpio", "http") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"an alarm needs exactly one of command, gpio or http (have: {', '.join(given) or 'none'})")
        if self.command is not None and not self.command:
            raise ValueError("an alarm command needs at least the program to run")
        if self.gpio is not None and not self.gpio.startswith("/"):
            raise ValueError(f"'{self.gpio}' is not an absolute sysfs path such as /sys/class/gpio/gpio17/value")
        return self


class AlarmSink(_SinkBase):
    """A local alarm on the device: fires without waiting for the network."""

    alarm: AlarmAction = Field(description="A local relay, siren or strobe that fires on the device itself.")
    hold_s: float = Field(default=5.0, ge=0, le=600, description="How long the alarm stays on per event.")
    min_severity: Severity = Field(default="critical", description="Fire only for events at or above this severity.")


def _sink_kind(value) -> str | None:
    if isinstance(value, dict):
        kinds = [k for k in SINK_KINDS if k in value]
        if len(kinds) == 1:
            return f"sink:{kinds[0]}"
    elif isinstance(value, _SinkBase):
        return f"sink:{next(k for k in SINK_KINDS if hasattr(value, k))}"
    return None


Sink = Annotated[
    Union[
        Annotated[HttpSink, Tag("sink:http")],
        Annotated[MqttSink, Tag("sink:mqtt")],
        Annotated[FileSink, Tag("sink:file")],
        Annotated[AlarmSink, Tag("sink:alarm")],
    ],
    Discriminator(
        _sink_kind,
        custom_error_type="sink_kind",
        custom_error_message="a sink is a mapping with exactly one of the keys http, mqtt, file or alarm",
    ),
]


class Clips(SpecModel):
    """Event clips (the NVR part): the device keeps the last seconds of each camera and, for every
    alert, writes a short H.264 clip from `pre_s` before to `post_s` after it; HTTP sinks upload
    it to the VMS (PUT <vms>/api/events/<id>/clip)."""

    enabled: bool = Field(default=True, description="Record clips (set false to keep the settings but record none).")
    pre_s: float = Field(default=5.0, ge=0, le=60, description="Seconds of video kept before each alert.")
    post_s: float = Field(default=5.0, ge=0, le=120, description="Seconds of video recorded after each alert.")
    max_mb: float = Field(default=256.0, gt=0, le=1_000_000,
                          description="Disk space for all clips together; the oldest (delivered first) are deleted beyond it.")
    min_severity: Severity = Field(default="warning", description="Events below this severity get no clip.")


class Alerts(SpecModel):
    """Quiet times and where events go (delivered at least once, from a durable outbox)."""

    cooldown_s: float = Field(
        default=30.0, ge=0, le=86400, description="Quiet time per rule and person after an event (de-duplication)."
    )
    min_confidence: float = Field(
        default=0.0, ge=0, le=1,
        description="Rules see a tracked person only once their smoothed detection confidence (about the last 3 "
                    "frames) reaches this; 0 (default) = every tracked person. Raise it (e.g. 0.45) where the "
                    "detector takes site objects (a hanging load, a post) for people: fewer false alarms, at the "
                    "price of seeing a faint, distant or half-hidden person later or not at all. "
                    "`build.py replay` measures both on recorded footage.")
    sinks: list[Sink] = Field(default_factory=list, description="Where events go; all of them get every event.")
    clips: Clips | None = Field(default=None, description="Short video clips of alerts, kept on the device and uploaded by HTTP sinks (default: none).")
