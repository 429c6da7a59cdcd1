"""`build.py replay`: build for host-cpu, run on a recorded sim export, report against its truth."""
import json

from click.testing import CliRunner

import build


def test_replay_on_a_sim_export_reports_events_false_alarms_and_latency(tmp_path, monkeypatch):
    runner = CliRunner()
    sim = tmp_path / "sim"
    r = runner.invoke(build.cli, ["sim", "--scene", "crane-swing", "--seconds", "5", "--out", str(sim)])
    assert r.exit_code == 0, r.output
    monkeypatch.chdir(tmp_path)  # no keys/ here: replay makes a throw-away key
    spec = build.ROOT / "specs" / "demo-site.yaml"
    rep_path, events = tmp_path / "rep.json", tmp_path / "ev.jsonl"
    r = runner.invoke(build.cli, ["replay", str(spec), "--source", str(sim), "--out", str(tmp_path / "out"),
                                  "--json", str(rep_path), "--events", str(events)])
    assert r.exit_code == 0, r.output
    assert "false alarms:" in r.output and "per camera-hour" in r.output and "detector" in r.output
    rep = json.loads(rep_path.read_text())
    assert rep["frames"] == 50 and rep["footage_s"] == 5.0
    assert rep["events"] and sum(rep["events"].values()) == len(events.read_text().splitlines())
    truth = rep["truth"]
    assert set(truth["per_type"]) <= set(rep["events"])
    assert all(d["true"] + d["false"] == d["events"] for d in truth["per_type"].values())
    assert 0 < truth["tracking"]["idf1"] <= 1 and "IDF1" in r.output
    assert {"detector", "tracker", "total"} <= set(rep["stages"])
    assert rep["pipeline_fps"] > 0


def test_replay_refuses_an_unknown_camera(tmp_path):
    spec = build.ROOT / "specs" / "demo-site.yaml"
    r = CliRunner().invoke(build.cli, ["replay", str(spec), "--source", "sim:crane-swing", "--camera", "nope",
                                       "--out", str(tmp_path)])
    assert r.exit_code == 2 and "no camera 'nope'" in r.output
