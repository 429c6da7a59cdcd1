"""The demo runtime reporting to the VMS for real: the demo spec with an HTTP sink to a VMS on
loopback, built, verified and run (`build.py run`); every event the device raised arrives in the
VMS once, with its snapshot, and clips follow."""
from __future__ import annotations

import json
import time

import httpx
from click.testing import CliRunner

import build
from compiler.keys import new_key_pair


def test_the_demo_runtimes_events_arrive_in_the_vms(server, tmp_path, repo_root):
    token = "demo-site-crane-cam-vms-token"
    server.add_device("crane-cam", token=token)
    spec = (repo_root / "specs" / "demo-site.yaml").read_text()
    assert "  sinks:\n    - file: events.jsonl\n" in spec
    spec = spec.replace("  sinks:\n    - file: events.jsonl\n",
                        f"  sinks:\n    - http: {server.url}/api/events\n      token: {token}\n"
                        f"    - file: events.jsonl\n")
    (tmp_path / "spec").mkdir()
    path = tmp_path / "spec" / "demo-site.yaml"
    path.write_text(spec)
    priv, pub, _ = new_key_pair(tmp_path / "keys")
    runner = CliRunner()
    r = runner.invoke(build.cli, ["--board", "host-cpu", str(path), "-o", str(tmp_path / "out"), "--key", str(priv)])
    assert r.exit_code == 0, r.output
    image = tmp_path / "out" / "demo-site-crane-cam-host-cpu.swimg"
    admin = server.login()
    up = httpx.post(f"{server.url}/api/artifacts", params={"kind": "image", "name": image.name},
                    content=image.read_bytes(), headers=admin, timeout=60)
    assert up.status_code == 201, up.text
    state = tmp_path / "state"
    r = runner.invoke(build.cli, ["run", str(image), "--key", str(pub), "--seconds", "10", "--state", str(state)])
    assert r.exit_code == 0, r.output
    raised = [json.loads(x) for x in (state / "runtime" / "events.jsonl").read_text().splitlines() if x.strip()]
    assert raised, "the demo raised no events"
    got, before = [], None
    while True:
        page = httpx.get(f"{server.url}/api/events", params={"limit": 500, **({"before": before} if before else {})},
                         headers=admin).json()
        got += page["events"]
        before = page["next"]
        if before is None:
            break
    assert len(got) == len({e["id"] for e in got}), "an event was stored twice"
    assert {e["id"] for e in got} == {e["id"] for e in raised}, "events lost on the way"
    with_snap = [e for e in raised if e.get("snapshot")]
    assert with_snap, "the demo's events carry snapshots"
    stored = {e["id"]: e for e in got}
    for e in with_snap:
        assert stored[e["id"]]["snapshot_url"], e["id"]
    snap = httpx.get(f"{server.url}{stored[with_snap[0]['id']]['snapshot_url']}", headers=admin)
    assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"
    cams = httpx.get(f"{server.url}/api/cameras", headers=admin).json()["cameras"]
    assert [(c["id"], c["device"]) for c in cams] == [("crane-cam", "crane-cam")]
    assert {z["id"] for z in cams[0]["zones"]} == {"crane-swing", "excavator-radius"}
    fleet = httpx.get(f"{server.url}/api/devices", headers=admin).json()["devices"]
    assert fleet[0]["id"] == "crane-cam" and fleet[0]["online"]
    deadline = time.monotonic() + 20  # clips are uploaded by the runtime once recorded
    while time.monotonic() < deadline:
        ev = httpx.get(f"{server.url}/api/events", params={"limit": 500}, headers=admin).json()["events"]
        if any(e["clip_url"] for e in ev):
            break
        time.sleep(0.2)
    clip_refs = [e for e in raised if e.get("clip")]
    if clip_refs:  # the runtime records clips when the av extra is there
        assert any(e["clip_url"] for e in ev)
