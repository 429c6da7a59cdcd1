"""The command line: `build.py validate | schema | boards | build`, and the short form
`build.py --board B SPEC -o DIR` that routes to `build`. Exit codes: 0 ok, 2 bad input, 1 tool failure."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import build
from compiler.commands import schema_text

BOARDS = ("rk3588", "rk3566", "rv1126", "rv1106", "hi3516dv300", "jetson-orin-nano", "hailo8", "coral-edgetpu", "host-cpu")
BAD_SPEC = "tests/spec/cases/headline__invalid.yaml"


@pytest.fixture
def run(repo_root, monkeypatch):
    """Invoke build.cli from the repo root; returns click's Result (stdout and stderr apart)."""
    monkeypatch.chdir(repo_root)

    def invoke(*args: str):
        return CliRunner().invoke(build.cli, list(args), catch_exceptions=False)

    return invoke


def test_validate_ok(run):
    result = run("validate", "specs/demo-site.yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("specs/demo-site.yaml: ok\n")
    assert "device crane-cam" in result.stdout


def test_validate_several_specs_with_warnings(run):
    result = run("validate", "specs/demo-site.yaml", "specs/tower-crane-site.yaml", "specs/small-site-rv1106.yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout.count(": ok\n") == 3
    if not (build.ROOT / "specs" / "secrets.yaml").exists():
        assert "warning: secret 'vms_token' comes from secrets.example.yaml" in result.stderr


def test_validate_bad_spec_exits_2_with_every_error(run):
    result = run("validate", BAD_SPEC)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{BAD_SPEC}:9:18: cameras[0].zones[0].polygon: a polygon needs at least 3 vertices, got 2; "
        "list the corners as [[x, y], ...]",
        f"{BAD_SPEC}:10:9: cameras[0].zones[0].inertia_frmes: unknown key 'inertia_frmes'; did you mean 'inertia_frames'?",
        f"{BAD_SPEC}: 2 errors",
    ]
    assert result.stdout == ""


def test_validate_quiet_and_mixed(run):
    result = run("validate", "-q", "specs/demo-site.yaml", BAD_SPEC)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{BAD_SPEC}: 2 errors" in result.stderr


def test_validate_missing_file_is_an_error_not_a_crash(run):
    result = run("validate", "specs/no-such-site.yaml")
    assert result.exit_code == 2
    assert "no such file: specs/no-such-site.yaml" in result.stderr


def test_boards_lists_the_nine_boards(run):
    result = run("boards")
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    missing = [b for b in BOARDS if b not in listed]
    assert not missing, f"boards missing from `build.py boards`: {missing}\n{result.stdout}"


def test_schema_to_a_file(run, tmp_path):
    out = tmp_path / "nested" / "site-spec.schema.json"
    result = run("schema", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{out}: written"
    schema = json.loads(out.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"site", "cameras"} <= set(schema["required"])
    again = run("schema", "-o", str(out))
    assert again.stdout.strip() == f"{out}: unchanged"


def test_schema_to_stdout(run):
    result = run("schema")
    assert result.exit_code == 0
    assert result.stdout == schema_text()


def test_short_form_routes_to_build(run, tmp_path):
    from compiler.keys import new_key_pair

    priv, _, _ = new_key_pair(tmp_path / "keys")
    out = tmp_path / "images"
    result = run("--board", "host-cpu", "specs/worker-zone-footage.yaml", "-o", str(out), "--key", str(priv))
    assert result.exit_code == 0, result.output
    assert "site worker-zone (UTC)" in result.stdout and "device hall-cam" in result.stdout
    assert (out / "worker-zone-hall-cam-host-cpu.swimg").is_file()


def test_build_without_a_key_says_how_to_make_one(run, tmp_path, monkeypatch):
    monkeypatch.setenv("SITEWARDEN_SIGNING_KEY", str(tmp_path / "none.pem"))
    result = run("--board", "host-cpu", "specs/worker-zone-footage.yaml", "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "python build.py keys new" in result.stderr


def test_build_with_a_board_no_device_uses(run, tmp_path):
    result = run("build", "--board", "rv1106", "specs/demo-site.yaml", "-o", str(tmp_path))
    assert result.exit_code == 2
    assert "no device is on board 'rv1106'; this spec's boards are: host-cpu" in result.stderr


def test_build_of_a_bad_spec_exits_2(run, tmp_path):
    result = run("--board", "host-cpu", BAD_SPEC, "-o", str(tmp_path))
    assert result.exit_code == 2
    assert f"{BAD_SPEC}:9:18: cameras[0].zones[0].polygon" in result.stderr


def test_unknown_board_exits_2_with_did_you_mean(run, tmp_path):
    result = run("--board", "rk3858", "specs/demo-site.yaml", "-o", str(tmp_path))
    assert result.exit_code == 2
    assert "no board 'rk3858'; did you mean 'rk3588'?" in result.stderr


def test_help_lists_commands_without_importing_them(run):
    result = run("--help")
    assert result.exit_code == 0
    for name in ("build", "boards", "schema", "validate"):
        assert name in result.stdout


def test_validate_in_a_real_process(repo_root):
    proc = subprocess.run(
        [sys.executable, "build.py", "validate", "specs/demo-site.yaml"],
        cwd=repo_root, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("specs/demo-site.yaml: ok")
