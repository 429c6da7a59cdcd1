"""The README's main job end to end: build the demo spec for host-cpu, run it on its sim scene,
get events (stored, alarmed) and an annotated video."""
import json

import cv2
from click.testing import CliRunner

import build
from compiler.keys import new_key_pair


def test_demo_builds_runs_and_raises_events(tmp_path):
    priv, pub, _ = new_key_pair(tmp_path / "keys")
    out = tmp_path / "out"
    runner = CliRunner()
    r = runner.invoke(build.cli, ["--board", "host-cpu", "specs/demo-site.yaml", "-o", str(out), "--key", str(priv)])
    assert r.exit_code == 0, r.output
    image = out / "demo-site-crane-cam-host-cpu.swimg"
    assert runner.invoke(build.cli, ["verify", str(image), "--key", str(pub)]).exit_code == 0
    state, video, events = tmp_path / "state", tmp_path / "demo.mp4", tmp_path / "events.jsonl"
    r = runner.invoke(build.cli, ["run", str(image), "--key", str(pub), "--seconds", "12", "--state", str(state),
                                  "--annotate", str(video), "--events", str(events)])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    kinds = {e["type"] for e in lines}
    assert {"zone_intrusion", "predicted_entry"} <= kinds, kinds
    assert len({e["id"] for e in lines}) == len(lines), "event ids are unique"
    # the file sink and the local alarm write in the runtime's state folder
    stored = (state / "runtime" / "events.jsonl").read_text().splitlines()
    assert len(stored) == len(lines)
    assert "ALARM" in (state / "runtime" / "alarm.log").read_text()
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    assert ok and frame.shape[:2] == (360, 640)
