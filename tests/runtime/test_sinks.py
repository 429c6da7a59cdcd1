"""The sinks against real receivers on loopback: a JSON-lines file, an MQTT broker, local alarms."""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_receiver import Receiver, free_port  # noqa: E402

from runtime.config import SinkConfig  # noqa: E402
from runtime.events import Event, snapshot_from_json  # noqa: E402
from runtime.outbox import Emitter  # noqa: E402
from runtime.sinks import AlarmSink, DeliveryError, FileSink, HttpSink, build_sink, read_jsonl, sink_name  # noqa: E402


def ev(i: int, severity: str = "critical", type: str = "zone_intrusion", **kw) -> Event:
    return Event.create(type=type, site="s", device="d", camera="crane-north", zone="crane-swing", track=i,
                        t_start=1_790_000_000.0 + i, severity=severity, **kw)


# --- file ----------------------------------------------------------------------------------------


def test_file_sink_lines_parse_back_to_the_events(tmp_path):
    jpeg = b"\xff\xd8" + bytes(100)
    events = [ev(0, details={"missing": ["helmet"]}), ev(1, "info", "camera_health", details={"check": "dark"}),
              ev(2, "warning", "predicted_entry", details={"time_to_entry_s": 1.2})]
    with Emitter([SinkConfig("file", {"target": "out/events.jsonl"})], tmp_path) as em:
        stored = [em.emit(events[0], snapshot_jpeg=jpeg)] + [em.emit(e) for e in events[1:]]
        assert em.drain(5)
    path = tmp_path / "out" / "events.jsonl"  # relative targets live under the state folder
    assert list(read_jsonl(path)) == stored
    assert stored[0].snapshot.size == len(jpeg) and (tmp_path / "snapshots" / stored[0].snapshot.name).read_bytes() == jpeg
    assert all(json.loads(line)["id"] == e.id for line, e in zip(path.read_text().splitlines(), events))


def test_file_sink_fences_off_a_line_cut_short_by_a_crash(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(ev(0).to_json() + b"\n" + ev(1).to_json()[:40])  # killed mid-write
    sink = FileSink(SinkConfig("file", {"target": str(path)}), tmp_path / "elsewhere")
    sink.send(ev(2), ev(2).to_json())
    sink.close()
    assert [e.id for e in read_jsonl(path)] == [ev(0).id, ev(2).id]


def test_file_sink_asks_for_a_retry_when_it_cannot_write(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a folder")
    sink = FileSink(SinkConfig("file", {"target": "blocker/e.jsonl"}), tmp_path)
    with pytest.raises(DeliveryError) as err:
        sink.send(ev(0), ev(0).to_json())
    assert not err.value.permanent


# --- http details ------------------------------------------------------------------------------


def test_http_sink_inlines_the_snapshot_only_when_asked(tmp_path):
    rcv = Receiver().start()
    jpeg = b"\xff\xd8" + os.urandom(500)
    sinks = [SinkConfig("http", {"target": rcv.url, "inline_snapshot": True}),
             SinkConfig("file", {"target": "plain.jsonl"})]
    with Emitter(sinks, tmp_path) as em:
        em.emit(ev(0), snapshot_jpeg=jpeg)
        assert em.drain(5)
    rcv.stop()
    assert snapshot_from_json(json.dumps(rcv.events[ev(0).id])) == jpeg
    assert b"jpeg_base64" not in (tmp_path / "plain.jsonl").read_bytes()


@pytest.mark.parametrize("status, delivered, permanent", [
    (200, True, None), (204, True, None), (409, True, None), (400, False, True), (401, False, True),
    (404, False, True), (408, False, False), (429, False, False), (500, False, False), (503, False, False),
    (302, False, True),
])
def test_http_status_classes(status, delivered, permanent):
    rcv = Receiver(status=lambda e: status).start()
    sink = HttpSink(SinkConfig("http", {"target": rcv.url, "timeout_s": 2}))
    try:
        if delivered:
            sink.send(ev(0), ev(0).to_json())
        else:
            with pytest.raises(DeliveryError) as err:
                sink.send(ev(0), ev(0).to_json())
            assert err.value.permanent is permanent
    finally:
        rcv.stop()


def test_http_connection_refused_and_timeout_are_retried():
    sink = HttpSink(SinkConfig("http", {"target": f"http://127.0.0.1:{free_port()}/", "timeout_s": 0.5}))
    with pytest.raises(DeliveryError) as err:
        sink.send(ev(0), ev(0).to_json())
    assert not err.value.permanent
    slow = Receiver(delay_s=1.5).start()
    try:
        sink = HttpSink(SinkConfig("http", {"target": slow.url, "timeout_s": 0.2}))
        with pytest.raises(DeliveryError) as err:
            sink.send(ev(0), ev(0).to_json())
        assert not err.value.permanent
    finally:
        slow.stop()


# --- mqtt ----------------------------------------------------------------------------------------


def _mosquitto() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)


@pytest.fixture
def broker(tmp_path):
    exe = _mosquitto()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs the mosquitto broker (apt-get install mosquitto) for the MQTT sink test")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs paho-mqtt (the dev extra) for the MQTT sink test")
        pytest.skip("paho-mqtt is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("mosquitto did not start")
            time.sleep(0.02)
    yield port
    proc.terminate()
    proc.wait(5)


def test_mqtt_sink_publishes_to_a_real_broker_at_qos1(tmp_path, broker):
    import paho.mqtt.client as mqtt

    got: list[bytes] = []
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub")
    sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe("site/events", qos=1)
    sub.on_subscribe = lambda c, u, mid, rcs, p=None: subscribed.set()
    sub.on_message = lambda c, u, msg: got.append(msg.payload)
    sub.connect("127.0.0.1", broker)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        cfg = SinkConfig("mqtt", {"target": f"mqtt://127.0.0.1:{broker}", "topic": "site/events", "qos": 1})
        with Emitter([cfg], tmp_path) as em:
            for i in range(5):
                em.emit(ev(i))
            assert em.drain(10)
            assert em.metrics()["sinks"][sink_name(cfg)]["delivered"] == 5
        deadline = time.monotonic() + 5
        while len(got) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert [Event.from_json(p) for p in got] == [ev(i) for i in range(5)]


def test_mqtt_sink_without_a_broker_asks_for_a_retry():
    pytest.importorskip("paho.mqtt.client")
    sink = build_sink(SinkConfig("mqtt", {"target": f"mqtt://127.0.0.1:{free_port()}", "timeout_s": 0.3}), ".")
    try:
        with pytest.raises(DeliveryError) as err:
            sink.send(ev(0), ev(0).to_json())
        assert not err.value.permanent
    finally:
        sink.close()


# --- local alarms ------------------------------------------------------------------------------


def test_alarm_command_fires_at_emit_time_without_waiting_for_the_network(tmp_path, capsys):
    """Frame-to-alarm latency: from emit() to the file the alarm command writes."""
    out = tmp_path / "alarm.txt"
    script = f'printf "%s|%s|%s|%s" "$SITEWARDEN_EVENT_TYPE" "$SITEWARDEN_ZONE" "$SITEWARDEN_CAMERA" ' \
             f'"$SITEWARDEN_SEVERITY" > {out}.tmp; printf "%s" "$SITEWARDEN_EVENT_JSON" > {out}.json; mv {out}.tmp {out}'
    hung = Receiver(delay_s=1.0).start()  # the VMS hangs: the alarm must not care
    sinks = [SinkConfig("http", {"target": hung.url, "timeout_s": 5}),
             SinkConfig("alarm", {"command": ["sh", "-c", script], "hold_s": 1}, min_severity="critical")]
    latencies = []
    try:
        with Emitter(sinks, tmp_path) as em:
            for i in range(8):
                out.unlink(missing_ok=True)
                t0 = time.perf_counter()
                em.emit(ev(i))
                while not out.exists():
                    assert time.perf_counter() - t0 < 5, "the alarm never fired"
                    time.sleep(0.0002)
                latencies.append(time.perf_counter() - t0)
            em.emit(ev(99, "warning"))  # below the alarm's min_severity
            time.sleep(0.1)
            m = em.metrics()
            assert m["sinks"][f"http:{hung.url}"]["delivered"] <= 1  # the network is still stuck
    finally:
        hung.stop()
    assert out.read_text() == "zone_intrusion|crane-swing|crane-north|critical"
    assert Event.from_json((tmp_path / "alarm.txt.json").read_bytes()) == ev(7)
    assert m["alarms"][sink_name(sinks[1])] == {"fired": 8, "errors": 0}
    ms = sorted(x * 1000 for x in latencies)
    with capsys.disabled():
        print(f"\nframe-to-alarm latency (emit() -> alarm command's file), 8 events: "
              f"median {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms")
    assert statistics.median(ms) < 500


def test_gpio_alarm_goes_high_then_low_after_hold_and_a_new_event_extends_it(tmp_path):
    value = tmp_path / "value"  # stands in for /sys/class/gpio/gpio17/value
    value.write_text("0")
    with Emitter([SinkConfig("alarm", {"gpio": str(value), "hold_s": 0.3})], tmp_path) as em:
        t0 = time.perf_counter()
        em.emit(ev(0))
        assert value.read_text() == "1"
        time.sleep(0.2)
        em.emit(ev(1))  # extends the hold
        time.sleep(0.2)
        assert value.read_text() == "1"
        while value.read_text() != "0":
            assert time.perf_counter() - t0 < 3
            time.sleep(0.01)
        assert time.perf_counter() - t0 >= 0.5
        assert next(iter(em.metrics()["alarms"].values())) == {"fired": 2, "errors": 0}


def test_gpio_alarm_is_released_on_close(tmp_path):
    value = tmp_path / "value"
    with Emitter([SinkConfig("alarm", {"gpio": str(value), "hold_s": 60})], tmp_path) as em:
        em.emit(ev(0))
        assert value.read_text() == "1"
    assert value.read_text() == "0"


def test_http_alarm_posts_the_event(tmp_path):
    relay = Receiver().start()
    try:
        with Emitter([SinkConfig("alarm", {"http": relay.url})], tmp_path) as em:
            em.emit(ev(0))
            assert relay.wait_for(lambda r: len(r.events) == 1, 5)
    finally:
        relay.stop()
    assert Event.from_dict(relay.events[ev(0).id]) == ev(0)


def test_a_broken_alarm_is_counted_and_does_not_stop_the_event(tmp_path):
    sinks = [SinkConfig("alarm", {"command": [str(tmp_path / "no-such-siren")]}),
             SinkConfig("file", {"target": "e.jsonl"})]
    with Emitter(sinks, tmp_path) as em:
        em.emit(ev(0))
        assert em.drain(5)
        assert next(iter(em.metrics()["alarms"].values())) == {"fired": 1, "errors": 1}
    assert [e.id for e in read_jsonl(tmp_path / "e.jsonl")] == [ev(0).id]


def test_alarm_needs_exactly_one_action():
    with pytest.raises(ValueError, match="exactly one"):
        AlarmSink(SinkConfig("alarm", {"gpio": "/x", "http": "http://y"}))
