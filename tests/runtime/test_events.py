"""The event format: stable ids, JSON round trip, validation, snapshots and the privacy blur."""
import base64
import hashlib
import json

import numpy as np
import pytest

from runtime.events import (EVENT_TYPES, Event, EventError, blur_heads, encode_jpeg, event_id, iso_utc,
                            snapshot_from_json, snapshot_jpeg)

BASE = dict(type="zone_intrusion", site="riverside", device="edge-1", camera="crane-north", zone="crane-swing",
            track=17, t_start=1_795_000_000.123, severity="critical", confidence=0.87)

# The id scheme is a wire format: receivers de-duplicate on it across device restarts and upgrades.
# If this value changes, bump ID_SCHEME and FORMAT_VERSION on purpose.
PINNED_ID = "1c6e1a84d45183420db95995239a7787"


def test_id_is_derived_from_site_device_camera_rule_track_and_start():
    e = Event.create(**BASE)
    parts = ("sitewarden-event-v1", "riverside", "edge-1", "crane-north", "zone_intrusion:crane-swing", "17",
             "1795000000123")
    assert e.id == hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    assert e.id == PINNED_ID
    assert e.rule == "zone_intrusion:crane-swing"


def test_the_same_episode_after_a_restart_gets_the_same_id():
    a = Event.create(**BASE, t_event=1_795_000_001.0, details={"dwell_s": 1})
    b = Event.create(**{**BASE, "t_start": BASE["t_start"] + 1e-7, "confidence": 0.5}, t_event=1_795_000_009.0)
    assert a.id == b.id  # later raise, different confidence, float noise in t_start: same event


@pytest.mark.parametrize("change", [
    {"site": "other"}, {"device": "edge-2"}, {"camera": "cam-2"}, {"track": 18}, {"track": None},
    {"t_start": BASE["t_start"] + 0.001}, {"zone": "pit"}, {"type": "zone_dwell"},
])
def test_any_identifying_field_changes_the_id(change):
    assert Event.create(**{**BASE, **change}).id != Event.create(**BASE).id


def test_explicit_rule_is_part_of_the_id():
    assert Event.create(**BASE, rule="ppe:0").id == event_id("riverside", "edge-1", "crane-north", "ppe:0", 17,
                                                              BASE["t_start"])


def test_json_round_trip_and_wire_fields():
    e = Event.create(**BASE, t_event=1_795_000_002.5, details={"time_to_entry_s": 1.5, "missing": ["helmet"]},
                     clip="clips/abc.mp4").with_snapshot(b"\xff\xd8jpeg")
    raw = e.to_json()
    assert b"\n" not in raw
    d = json.loads(raw)
    assert d["t_start"] == "2026-11-18T11:06:40.123Z" and d["t_start_epoch"] == e.t_start
    assert d["t_event"] == iso_utc(e.t_event) and d["severity"] == "critical" and d["format"] == 1
    assert d["snapshot"] == {"name": f"{e.id}.jpg", "sha256": hashlib.sha256(b"\xff\xd8jpeg").hexdigest(), "size": 6}
    assert Event.from_json(raw) == e
    assert Event.from_json(raw.decode()) == e
    assert snapshot_from_json(raw) is None


def test_snapshot_rides_inline_only_when_asked_and_is_checked():
    jpeg = b"\xff\xd8" + bytes(range(200))
    e = Event.create(**BASE).with_snapshot(jpeg)
    raw = e.to_json(snapshot_jpeg=jpeg)
    assert snapshot_from_json(raw) == jpeg and Event.from_json(raw) == e
    d = json.loads(raw)
    d["snapshot"]["jpeg_base64"] = base64.b64encode(b"tampered").decode()
    with pytest.raises(EventError, match="sha256"):
        snapshot_from_json(json.dumps(d))


def test_every_event_type_round_trips():
    for t in EVENT_TYPES:
        e = Event.create(**{**BASE, "type": t, "zone": None, "track": None}, details={"check": "dark"})
        assert Event.from_json(e.to_json()) == e


@pytest.mark.parametrize("change, message", [
    ({"type": "zone_party"}, "type"),
    ({"severity": "urgent"}, "severity"),
    ({"confidence": 1.5}, "confidence"),
    ({"confidence": float("nan")}, "confidence"),
    ({"track": "17"}, "track"),
    ({"site": ""}, "site"),
])
def test_invalid_events_are_refused(change, message):
    with pytest.raises(EventError, match=message):
        Event.create(**{**BASE, **change})


@pytest.mark.parametrize("raw, message", [
    (b"not json", "not JSON"),
    (b"[]", "expected an object"),
    (b'{"format": 2}', "format"),
    (b'{"format": 1, "id": "x"}', "missing"),
])
def test_bad_json_is_refused(raw, message):
    with pytest.raises(EventError, match=message):
        Event.from_json(raw)


def test_unknown_fields_from_newer_senders_are_ignored():
    d = json.loads(Event.create(**BASE).to_json())
    d["future_field"] = 1
    assert Event.from_json(json.dumps(d)) == Event.create(**BASE)


def _textured(h=120, w=160):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_blur_heads_blurs_inside_the_boxes_only():
    img = _textured()
    out = blur_heads(img, [(40, 20, 80, 60)], pad=0.0)
    assert out is not img and np.array_equal(img, _textured())  # the input is untouched
    inside, orig = out[20:60, 40:80].astype(float), img[20:60, 40:80].astype(float)
    assert inside.std() < 0.35 * orig.std()  # detail is gone
    mask = np.ones(img.shape[:2], bool)
    mask[20:60, 40:80] = False
    assert np.array_equal(out[mask], img[mask])


def test_blur_heads_clips_boxes_and_skips_empty_ones():
    img = _textured()
    out = blur_heads(img, [(-30, -30, 10, 10), (50, 50, 50, 80), (150, 100, 400, 400)])
    assert out.shape == img.shape and not np.array_equal(out[0:5, 0:5], img[0:5, 0:5])
    assert np.array_equal(out[60:90, 40:60], img[60:90, 40:60])  # the zero-width box did nothing


def test_snapshot_jpeg_is_a_jpeg_of_the_blurred_frame():
    import cv2

    img = _textured()
    jpeg = snapshot_jpeg(img, [(40, 20, 80, 60)])
    assert jpeg[:2] == b"\xff\xd8"
    back = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert back.shape == img.shape
    assert back[25:55, 45:75].astype(float).std() < 0.5 * img[25:55, 45:75].astype(float).std()
    assert encode_jpeg(img)[:2] == b"\xff\xd8"


def test_numpy_numbers_from_the_runtime_serialise_as_plain_json():
    e = Event.create(**{**BASE, "track": np.int64(17), "confidence": np.float32(0.5)},
                     details={"time_to_entry_s": np.float32(1.5), "box": np.array([1, 2, 3, 4])})
    assert e.id == Event.create(**BASE).id and type(e.track) is int
    back = Event.from_json(e.to_json())
    assert back.details == {"time_to_entry_s": 1.5, "box": [1, 2, 3, 4]} and back.confidence == 0.5


@pytest.mark.parametrize("details", [{"x": object()}, {"x": float("inf")}])
def test_details_that_are_not_json_are_refused_at_serialisation(details):
    with pytest.raises(EventError, match="details"):
        Event.create(**BASE, details=details).to_json()
