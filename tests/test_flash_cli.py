"""`build.py flash` against a small fleet of loopback agents, and `build.py pack`."""
from __future__ import annotations

from click.testing import CliRunner

import build
from runtime.agent.client import status
from runtime.image import read_image
from runtime.modelpack import read_pack

from tests.runtime.agent_fixture import TOKEN, AgentProcess, demo_build, retar


def test_flash_a_fleet_with_a_verdict_per_device(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    built = demo_build(str(tmp_path_factory.getbasetemp() / "agent-demo-build"))
    agents = [AgentProcess(root / f"device{i}", [built.key]).start() for i in range(2)]
    try:
        image = root / "v1.swimg"
        image.write_bytes(built.image(image_version=1))
        urls = [a.url for a in agents]
        token_file = root / "token"
        token_file.write_text(TOKEN + "\n")
        runner = CliRunner()
        args = ["flash", str(image), "--token-file", str(token_file)]
        for u in urls:
            args += ["--device", u]
        r = runner.invoke(build.cli, args)
        assert r.exit_code == 0, r.output
        for u in urls:
            assert f"{u}: OK: slot a runs version 1" in r.output
        assert "2 devices: 2 ok" in r.output and "100%" in r.output
        pids = {u: status(u, TOKEN)["runtime"]["pid"] for u in urls}
        # a tampered image: every device refuses it (exit 2) and keeps running what it ran
        bad = root / "bad.swimg"
        bad.write_bytes(retar(built.image(image_version=2), lambda e: e.__setitem__("config.json", e["config.json"] + b" ")))
        r = runner.invoke(build.cli, ["flash", str(bad), "--token", TOKEN, *sum((["--device", u] for u in urls), [])])
        assert r.exit_code == 2, r.output
        assert r.output.count("REFUSED") == 2 and "2 devices: 2 refused" in r.output
        for u in urls:
            s = status(u, TOKEN)
            assert s["runtime"]["pid"] == pids[u] and s["slots"]["a"]["image_version"] == 1
        # a wrong token and an unreachable device: named, exit 1
        agents[1].stop()
        r = runner.invoke(build.cli, ["flash", str(image), "--token", "wrong-token-0123456789", "--device", urls[0],
                                      "--device", urls[1]])
        assert r.exit_code == 1, r.output
        assert f"{urls[0]}: FAILED" in r.output and "refused the token (401)" in r.output
        assert f"{urls[1]}: FAILED" in r.output and "cannot reach" in r.output
        r = runner.invoke(build.cli, ["flash", str(image), "--device", urls[0]], env={"SITEWARDEN_AGENT_TOKEN": ""})
        assert r.exit_code == 2 and "no agent token" in r.output
    finally:
        for a in agents:
            a.stop()


def test_pack_command_builds_a_signed_pack_of_a_device(tmp_path, tmp_path_factory):
    built = demo_build(str(tmp_path_factory.getbasetemp() / "agent-demo-build"))
    key = tmp_path_factory.getbasetemp() / "agent-demo-build" / "keys" / "signing.key.pem"
    out = tmp_path / "crane-cam.swpack"
    r = CliRunner().invoke(build.cli, ["pack", "specs/demo-site.yaml", "--board", "host-cpu", "--device", "crane-cam",
                                       "-o", str(out), "--pack-version", "7", "--key", str(key)])
    assert r.exit_code == 0, r.output
    assert "pack 7 for demo-site/crane-cam" in r.output
    verified, pack = read_pack(out, [built.key.public_key()], board="host-cpu")
    image = read_image(built.path, [built.key.public_key()])
    assert pack.version == 7 and set(pack.models) == {"detector", "ppe", "pose", "posture", "trajectory"}
    assert all(verified.files[m.file] == image.files[m.file] for tiers in pack.models.values() for m in tiers)
    assert not any(name.startswith(("runtime/", "boot/")) or name == "config.json" for name in verified.files)
    r = CliRunner().invoke(build.cli, ["pack", "specs/demo-site.yaml", "--board", "host-cpu", "--device", "nope",
                                       "-o", str(out), "--key", str(key)])
    assert r.exit_code == 2 and "no device 'nope'" in r.output
