"""Storage behaviour through the API, on SQLite and on PostgreSQL (the `vms` fixture runs both)."""
from __future__ import annotations

import json
import time


from .conftest import make_event, tiny_jpeg


def test_ingest_is_idempotent_and_keeps_the_snapshot(vms):
    c, app = vms
    dev = c.device("cam-1")
    jpeg = tiny_jpeg()
    ev = make_event(1, details={"missing": ["helmet"]})
    body = ev.with_snapshot(jpeg).to_json(snapshot_jpeg=jpeg)
    r1 = c.tc.post("/api/events", content=body, headers=dev)
    assert r1.status_code == 201, r1.text
    r2 = c.tc.post("/api/events", content=body, headers=dev)
    assert r2.status_code == 200 and r2.json() == r1.json()  # the same stored row
    got = c.tc.get("/api/events", headers=c.admin).json()["events"]
    assert [e["id"] for e in got] == [ev.id]
    assert "jpeg_base64" not in json.dumps(got)  # the JPEG is a file, not in the row
    snap = c.tc.get(f"/api/events/{ev.id}/snapshot", headers=c.admin)
    assert snap.status_code == 200 and snap.content == jpeg and snap.headers["content-type"] == "image/jpeg"
    assert (app.state.store.data / "snapshots" / f"{ev.id}.jpg").read_bytes() == jpeg


def test_bad_events_are_refused(vms):
    c, _ = vms
    dev = c.device("cam-1")
    assert c.tc.post("/api/events", content=b"{nope", headers=dev).status_code == 400
    d = json.loads(make_event(1).to_json())
    d["severity"] = "apocalyptic"
    assert c.tc.post("/api/events", content=json.dumps(d), headers=dev).status_code == 400
    jpeg = tiny_jpeg()
    d = json.loads(make_event(2).with_snapshot(jpeg).to_json(snapshot_jpeg=tiny_jpeg((0, 0, 0))))
    d["snapshot"]["sha256"] = "0" * 64
    assert c.tc.post("/api/events", content=json.dumps(d), headers=dev).status_code == 400
    # another device's event with this device's token
    assert c.tc.post("/api/events", content=make_event(3, device="cam-2").to_json(), headers=dev).status_code == 403
    d = json.loads(make_event(4).to_json())
    d["id"] = "../../etc/passwd"
    assert c.tc.post("/api/events", content=json.dumps(d), headers=dev).status_code == 400
    assert c.tc.get("/api/events", headers=c.admin).json()["events"] == []


def test_query_filters_and_pages(vms):
    c, _ = vms
    dev = c.device("cam-1")
    for i in range(25):
        ev = make_event(i, camera="north" if i % 2 else "south", type="ppe_violation" if i % 5 == 0 else "zone_intrusion",
                        severity="warning" if i % 3 == 0 else "critical")
        assert c.tc.post("/api/events", content=ev.to_json(), headers=dev).status_code == 201
    q = lambda **p: c.tc.get("/api/events", params=p, headers=c.admin).json()  # noqa: E731
    assert len(q(limit=100)["events"]) == 25
    assert {e["camera"] for e in q(camera="north")["events"]} == {"north"} and len(q(camera="north")["events"]) == 12
    assert len(q(type="ppe_violation")["events"]) == 5
    assert len(q(severity="warning")["events"]) == 9
    t0 = 1_790_000_000.0
    assert len(q(since=t0 + 10, until=t0 + 20)["events"]) == 10
    assert len(q(since="2026-09-21T14:13:30Z")["events"]) == 15  # ISO 8601 works as well
    assert c.tc.get("/api/events", params={"since": "yesterday"}, headers=c.admin).status_code == 400
    seen, before = [], None
    while True:
        page = q(limit=10, **({"before": before} if before else {}))
        seen += [e["id"] for e in page["events"]]
        before = page["next"]
        if before is None:
            break
    assert len(seen) == len(set(seen)) == 25
    first = seen[0]
    assert c.tc.post(f"/api/events/{first}/ack", json={"note": "seen"}, headers=c.admin).status_code == 200
    assert [e["id"] for e in q(acked="true")["events"]] == [first]
    assert len(q(acked="false")["events"]) == 24


def test_ack_and_false_alarm_write_audit_and_a_hard_sample(vms):
    c, app = vms
    dev = c.device("cam-1")
    op = c.user("olga", "operator")
    jpeg = tiny_jpeg()
    ev = make_event(1, details={"box": [10, 12, 30, 40]})
    c.tc.post("/api/events", content=ev.with_snapshot(jpeg).to_json(snapshot_jpeg=jpeg), headers=dev)
    r = c.tc.post(f"/api/events/{ev.id}/ack", json={}, headers=op)
    assert r.status_code == 200 and r.json()["acked_by"] == "olga" and r.json()["acked_at"]
    again = c.tc.post(f"/api/events/{ev.id}/ack", json={}, headers=c.admin).json()
    assert again["acked_by"] == "olga"  # acknowledging twice changes nothing
    r = c.tc.post(f"/api/events/{ev.id}/false-alarm", json={"note": "shadow"}, headers=op)
    assert r.status_code == 200 and r.json()["false_alarm"] is True
    folder = app.state.store.data / "hard_samples"
    meta = json.loads((folder / f"fa_{ev.id}.json").read_text())
    assert meta == {"id": f"fa_{ev.id}", "device": "cam-1", "camera": "crane-north", "t": ev.t_event,
                    "reason": "false_alarm", "boxes": [[10.0, 12.0, 30.0, 40.0, 1.0]],
                    "source": "false_alarm", "event_id": ev.id}
    assert (folder / f"fa_{ev.id}.jpg").read_bytes() == jpeg
    assert c.tc.get("/api/events", params={"false_alarm": "true"}, headers=c.admin).json()["events"][0]["id"] == ev.id
    actions = [(a["actor"], a["action"]) for a in c.tc.get("/api/audit", headers=c.admin).json()["audit"]]
    assert ("user:olga", "event.ack") in actions and ("user:olga", "event.false_alarm") in actions
    assert ("user:admin", "device.add") in actions and ("user:admin", "user.add") in actions
    assert c.tc.post("/api/events/nope/ack", json={}, headers=op).status_code == 404


def test_hard_sample_intake(vms):
    import base64

    c, app = vms
    dev = c.device("cam-1")
    jpeg = tiny_jpeg()
    body = {"camera": "crane-north", "t": 1_790_000_123.5, "reason": "low_confidence",
            "boxes": [[1, 2, 3, 4, 0.31]], "jpeg_base64": base64.b64encode(jpeg).decode()}
    r = c.tc.post("/api/hard-samples", json=body, headers=dev)
    assert r.status_code == 201
    sid = r.json()["id"]
    assert c.tc.post("/api/hard-samples", json=body, headers=dev).status_code == 200  # a retry: stored once
    folder = app.state.store.data / "hard_samples"
    assert (folder / f"{sid}.jpg").read_bytes() == jpeg
    meta = json.loads((folder / f"{sid}.json").read_text())
    assert meta["source"] == "device" and meta["device"] == "cam-1" and meta["boxes"] == [[1, 2, 3, 4, 0.31]]
    assert meta["reason"] == "low_confidence" and meta["event_id"] is None
    assert c.tc.post("/api/hard-samples", json=dict(body, reason="bored"), headers=dev).status_code == 400
    assert c.tc.post("/api/hard-samples", json=dict(body, boxes=[[1, 2]]), headers=dev).status_code == 400
    assert c.tc.get("/api/hard-samples", headers=c.admin).json()["total"] == 1
    from vms.teacher import read_samples  # the teacher job reads what the intake wrote

    (got,) = read_samples(folder)
    assert (got.id, got.reason, got.source, got.device, got.boxes) == (sid, "low_confidence", "device", "cam-1",
                                                                       [[1, 2, 3, 4, 0.31]])
    bad = dict(body, jpeg_base64=base64.b64encode(b"not a jpeg").decode())
    assert c.tc.post("/api/hard-samples", json=bad, headers=dev).status_code == 400
    assert c.tc.post("/api/hard-samples", json=body, headers=c.admin).status_code == 403


def test_clip_upload_fetch_and_retention(vms):
    c, app = vms
    dev = c.device("cam-1")
    other = c.device("cam-2")
    ev = make_event(1)
    c.tc.post("/api/events", content=ev.to_json(), headers=dev)
    mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 1000
    assert c.tc.put(f"/api/events/{ev.id}/clip", content=b"hello world, not a video", headers=dev).status_code == 400
    assert c.tc.put(f"/api/events/{ev.id}/clip", content=mp4, headers=other).status_code == 403
    r = c.tc.put(f"/api/events/{ev.id}/clip", content=mp4, headers=dev)
    assert r.status_code == 201 and r.json()["clip_url"] == f"/api/events/{ev.id}/clip"
    got = c.tc.get(f"/api/events/{ev.id}/clip", headers=c.admin)
    assert got.content == mp4 and got.headers["content-type"] == "video/mp4"
    part = c.tc.get(f"/api/events/{ev.id}/clip", headers={**c.admin, "Range": "bytes=4-11"})
    assert part.status_code == 206 and part.content == b"ftypisom"
    # clip retention: over the byte budget, the clip goes and the event stays
    app.state.settings.max_clip_bytes = 100
    assert app.state.store.enforce_retention() == {"events": 0, "clips": 1}
    assert c.tc.get(f"/api/events/{ev.id}/clip", headers=c.admin).status_code == 404
    assert not (app.state.store.data / "clips" / f"{ev.id}.mp4").exists()
    assert c.tc.get(f"/api/events/{ev.id}", headers=c.admin).status_code == 200


def test_event_retention_by_count_and_age(vms):
    c, app = vms
    dev = c.device("cam-1")
    jpeg = tiny_jpeg()
    now = time.time()
    ids = []
    for i in range(12):
        ev = make_event(i, t_start=now - 3600 * (12 - i))  # one an hour, oldest first
        ids.append(ev.id)
        c.tc.post("/api/events", content=ev.with_snapshot(jpeg).to_json(snapshot_jpeg=jpeg), headers=dev)
    s = app.state.settings
    s.max_events = 8
    assert app.state.store.enforce_retention()["events"] == 4
    left = [e["id"] for e in c.tc.get("/api/events", headers=c.admin).json()["events"]]
    assert sorted(left) == sorted(ids[4:])
    assert not (app.state.store.data / "snapshots" / f"{ids[0]}.jpg").exists()
    assert (app.state.store.data / "snapshots" / f"{ids[4]}.jpg").exists()
    s.max_event_age_s = 3.5 * 3600
    assert app.state.store.enforce_retention()["events"] == 5
    left = [e["id"] for e in c.tc.get("/api/events", headers=c.admin).json()["events"]]
    assert sorted(left) == sorted(ids[9:])
    assert any(a["action"] == "retention" for a in c.tc.get("/api/audit", headers=c.admin).json()["audit"])


def test_devices_status_tokens_and_flags(vms):
    c, _ = vms
    dev = c.device("cam-1")
    r = c.tc.post("/api/devices/status", json={"image_version": 7, "board": "rk3588", "health": "ok",
                                               "fps": 9.8}, headers=dev)
    assert r.status_code == 200 and r.json()["image_version"] == 7 and r.json()["online"] is True
    fleet = c.tc.get("/api/devices", headers=c.admin).json()["devices"]
    assert fleet[0]["status"]["fps"] == 9.8 and fleet[0]["health"] == "ok"
    assert "token_hash" not in fleet[0] and "agent_token" not in fleet[0]
    assert c.tc.post("/api/devices", json={"id": "cam-1"}, headers=c.admin).status_code == 409
    # a token of the site's choosing (the spec's `!secret vms_token`) works; a shared one does not
    r = c.tc.post("/api/devices", json={"id": "cam-3", "token": "riverside-crane-3-token"}, headers=c.admin)
    assert r.status_code == 201 and r.json()["token"] == "riverside-crane-3-token"
    mine = {"Authorization": "Bearer riverside-crane-3-token"}
    assert c.tc.post("/api/devices/status", json={}, headers=mine).json()["id"] == "cam-3"
    assert c.tc.post("/api/devices", json={"id": "cam-4", "token": "riverside-crane-3-token"},
                     headers=c.admin).status_code == 409
    assert c.tc.post("/api/devices", json={"id": "cam-4", "token": "short"}, headers=c.admin).status_code == 400
    new = c.tc.post("/api/devices/cam-1/token", headers=c.admin).json()["token"]
    assert c.tc.post("/api/devices/status", json={}, headers=dev).status_code == 401  # the old token is gone
    newh = {"Authorization": f"Bearer {new}"}
    assert c.tc.post("/api/devices/status", json={}, headers=newh).status_code == 200
    assert c.tc.delete("/api/devices/cam-1/token", headers=c.admin).status_code == 200
    assert c.tc.post("/api/devices/status", json={}, headers=newh).status_code == 401
    dev2 = c.device("cam-2")
    assert c.tc.put("/api/flags/*/rain", json={"value": True}, headers=c.admin).status_code == 200
    assert c.tc.put("/api/flags/cam-2/snow", json={"value": True}, headers=c.admin).status_code == 200
    flags = c.tc.get("/api/flags", params={"scope": "cam-2"}, headers=dev2).json()["flags"]
    assert {(f["scope"], f["name"], f["value"]) for f in flags} == {("*", "rain", True), ("cam-2", "snow", True)}


def test_repository_reads_zones_from_an_image(vms, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from compiler.pack import pack_image

    c, _ = vms
    cfg = {"cameras": [{"id": "crane-north", "resolution": [1280, 720], "zones": [
        {"id": "crane-swing", "kind": "danger", "polygon_px": [[100, 100], [600, 100], [600, 500], [100, 500]]}]}]}
    blob, manifest = pack_image({"config.json": json.dumps(cfg).encode(), "models/x.onnx": b"onnx"},
                                Ed25519PrivateKey.generate(), site="riverside", device="cam-1", board="rk3588",
                                compatible=("rk3588",), role="camera", image_version=3, spec_sha256="0" * 64,
                                builder_version="test", plan={})
    r = c.tc.post("/api/artifacts", params={"kind": "image", "name": "cam-1.swimg"}, content=blob, headers=c.admin)
    assert r.status_code == 201, r.text
    assert r.json()["device"] == "cam-1" and r.json()["version"] == 3
    assert c.tc.post("/api/artifacts", params={"kind": "image"}, content=blob, headers=c.admin).status_code == 200
    assert c.tc.post("/api/artifacts", params={"kind": "image"}, content=b"junk", headers=c.admin).status_code == 400
    arts = c.tc.get("/api/artifacts", headers=c.admin).json()["artifacts"]
    assert len(arts) == 1 and arts[0]["meta"]["cameras"][0]["zones"][0]["id"] == "crane-swing"
    cams = c.tc.get("/api/cameras", headers=c.admin).json()["cameras"]
    assert cams == [{"id": "crane-north", "device": "cam-1", "resolution": [1280, 720], "image_version": 3,
                     "zones": cfg["cameras"][0]["zones"]}]
    got = c.tc.get(f"/api/artifacts/{arts[0]['id']}/download", headers=c.admin)
    assert got.content == blob


def test_retention_runs_by_itself(tmp_path):
    """The ingest writer applies the limits periodically; nobody has to call it."""
    from fastapi.testclient import TestClient

    from vms.app import create_app

    from .conftest import ADMIN_PW, Client, make_settings

    app = create_app(make_settings(tmp_path, retention_every_s=0.2, max_events=3), admin_password=ADMIN_PW)
    with TestClient(app) as tc:
        c = Client(tc)
        dev = c.device("cam-1")
        for i in range(5):
            assert tc.post("/api/events", content=make_event(i).to_json(), headers=dev).status_code == 201
        deadline = time.monotonic() + 10
        while len(tc.get("/api/events", headers=c.admin).json()["events"]) > 3:
            assert time.monotonic() < deadline, "retention did not run"
            time.sleep(0.05)
        left = [e["id"] for e in tc.get("/api/events", headers=c.admin).json()["events"]]
        assert left == [make_event(i).id for i in (4, 3, 2)]
