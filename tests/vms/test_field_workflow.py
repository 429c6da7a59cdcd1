"""The README's field workflow end to end on loopback: a VMS with two registered devices, two device
agents (provisioned with the site's public key, running the live sim scene), specs/field-demo.yaml
built for host-cpu (each image with its own VMS token), both flashed with `build.py flash`, the
events of both devices arriving in the VMS while the agents report healthy runtimes, and their
hard samples arriving for the teacher."""
from __future__ import annotations

import time

import httpx
from click.testing import CliRunner

import build
from runtime.agent.client import status
from tests.runtime.agent_fixture import TOKEN, AgentProcess

TOKENS = {"crane-cam": "example-crane-cam-token", "yard-cam": "example-yard-cam-token"}  # specs/secrets.example.yaml


def test_two_agents_flashed_report_live_to_the_vms(server, tmp_path, monkeypatch, repo_root):
    from compiler.keys import load_private_key, new_key_pair

    for dev, token in TOKENS.items():
        server.add_device(dev, token=token)
    monkeypatch.setenv("SITEWARDEN_VMS_EVENTS", f"{server.url}/api/events")
    priv, pub, _ = new_key_pair(tmp_path / "keys")
    runner = CliRunner()
    r = runner.invoke(build.cli, ["--board", "host-cpu", str(repo_root / "specs" / "field-demo.yaml"),
                                  "-o", str(tmp_path / "out"), "--key", str(priv)])
    assert r.exit_code == 0, r.output
    images = {dev: tmp_path / "out" / f"field-demo-{dev}-host-cpu.swimg" for dev in TOKENS}
    agents = {dev: AgentProcess(tmp_path / dev, [load_private_key(priv)]).start() for dev in TOKENS}
    try:
        for dev, agent in agents.items():
            r = runner.invoke(build.cli, ["flash", str(images[dev]), "--device", agent.url, "--token", TOKEN])
            assert r.exit_code == 0, r.output + agent.agent_log() + agent.runtime_log()
            assert f"{agent.url}: OK" in r.output
        admin = server.login()
        deadline, seen = time.monotonic() + 90, {}
        while time.monotonic() < deadline and set(seen) != set(TOKENS):
            rows = httpx.get(f"{server.url}/api/events", params={"limit": 500}, headers=admin).json()["events"]
            seen = {}
            for e in rows:
                seen.setdefault(e["device"], []).append(e)
            time.sleep(1.0)
        assert set(seen) == set(TOKENS), {d: a.runtime_log()[-2000:] for d, a in agents.items()}
        assert all(e["type"] == "ppe_violation" or e["type"].startswith(("zone", "predicted")) for es in seen.values()
                   for e in es)
        for dev, agent in agents.items():
            s = status(agent.url, TOKEN)
            assert s["runtime"]["healthy"] and s["runtime"]["frames"] > 0, s["runtime"]
            assert s["slots"][s["active"]]["device"] == dev
        ids = [e["id"] for es in seen.values() for e in es]
        assert len(ids) == len(set(ids))  # stored once each
        # frames the students were unsure of reach the teacher's intake (runtime/hardupload.py)
        deadline, samples = time.monotonic() + 60, []
        while time.monotonic() < deadline and not samples:
            samples = httpx.get(f"{server.url}/api/hard-samples", headers=admin).json()["samples"]
            time.sleep(1.0)
        assert samples and {s["device"] for s in samples} <= set(TOKENS)
        assert (server.settings.data_dir / "hard_samples" / f"{samples[0]['id']}.jpg").is_file()
    finally:
        for agent in agents.values():
            agent.stop()
