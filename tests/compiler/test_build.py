"""Build end to end on a fixture zoo: identical bytes on rebuild, verified images, boot files."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from compiler.boards import load_board_profiles
from compiler.builder import build_images
from compiler.keys import new_key_pair
from compiler.spec import load_spec
from runtime.config import RuntimeConfig
from runtime.image import read_image, load_public_key

from tests.compiler.zoo_fixture import make_zoo

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    zoo = make_zoo(root / "zoo")
    writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    rng = np.random.default_rng(0)
    for i in range(30):
        frame = np.full((120, 160, 3), 90, np.uint8)
        cv2.rectangle(frame, (10 + 3 * i, 30), (30 + 3 * i, 90), (40, 120, 200), -1)
        writer.write((frame + rng.integers(0, 20, frame.shape)).astype(np.uint8))
    writer.release()
    (root / "site.yaml").write_text(textwrap.dedent("""\
        site: {name: fixture-site, timezone: UTC}
        defaults: {board: host-cpu, fps: 5, resolution: [160, 120]}
        cameras:
          - id: yard
            source: file:clip.avi
            calibration:
              image: [[20, 110], [140, 110], [120, 40], [40, 40]]
              ground: [[-3, 2], [3, 2], [3, 12], [-3, 12]]
            zones:
              - {id: pit, kind: danger, ground: [[-1, 4], [1, 4], [1, 8], [-1, 8]], predict_entry: {horizon_s: 2}}
        ppe: [{require: [helmet, vest]}]
        actions: [{detect: [fallen]}]
        alerts: {sinks: [{file: events.jsonl}]}
        models: {prefer: accuracy}
        """))
    priv, pub, _ = new_key_pair(root / "keys")
    return dict(root=root, zoo=zoo, spec=root / "site.yaml", priv=priv, pub=pub, cache=root / "cache")


def _build(site, out, **kw):
    result = load_spec(site["spec"])
    assert result.ok, result.report()
    board = load_board_profiles()["host-cpu"]
    return build_images(result.spec, site["spec"], result.document.files, board, out, key_path=str(site["priv"]),
                        progress=lambda m: None, zoo_dir=site["zoo"], cache_dir=site["cache"], **kw)


def test_build_writes_a_verified_image_with_everything_the_runtime_needs(site, tmp_path):
    [img] = _build(site, tmp_path / "out")
    assert img.path.name == "fixture-site-yard-host-cpu.swimg"
    v = read_image(img.path, [load_public_key(site["pub"].read_bytes())], board="host-cpu")
    names = set(v.files)
    assert {"config.json", "boot/start.sh", "boot/sitewarden.service", "boot/README.md", "runtime/config.py"} <= names
    config = RuntimeConfig.from_json(v.files["config.json"])
    assert set(config.models) == {"detector", "ppe", "pose", "posture", "trajectory"}
    det = config.models["detector"]
    assert [m.variant for m in det] == ["det-64", "det-32", "det-32-night"] and det[0].precision == "int8"
    assert config.models["posture"][0].precision == "fp32"  # tiny models stay FP32
    for tiers in config.models.values():
        for m in tiers:
            assert m.file in v.files
    assert "QuantizeLinear" in v.files["models/detector-det-64.onnx"].decode("latin-1")
    assert not any("signing.key" in n or n.endswith(".pem") for n in names), "private keys never enter an image"


def test_rebuild_gives_identical_bytes_and_rewrites_nothing(site, tmp_path):
    [a] = _build(site, tmp_path / "one")
    [b] = _build(site, tmp_path / "two")
    assert a.path.read_bytes() == b.path.read_bytes()
    [c] = _build(site, tmp_path / "one")
    assert not c.written


def test_image_version_is_signed_into_the_manifest(site, tmp_path):
    [img] = _build(site, tmp_path / "out", image_version=7)
    m = read_image(img.path, [load_public_key(site["pub"].read_bytes())]).manifest
    assert m.image_version == 7 and m.role == "camera" and m.plan["tasks"][0]["task"] == "detector"


def test_boot_files_are_rendered_strictly(site, tmp_path):
    [img] = _build(site, tmp_path / "out")
    v = read_image(img.path, [load_public_key(site["pub"].read_bytes())])
    start = v.files["boot/start.sh"].decode()
    assert "python3}\" -m runtime --image-dir" in start and "fixture-site/yard" in start
    assert "{{" not in v.files["boot/README.md"].decode()


def test_cli_verify_accepts_fresh_and_refuses_tampered(site, tmp_path):
    [img] = _build(site, tmp_path / "out")
    ok = subprocess.run([sys.executable, "build.py", "verify", str(img.path), "--key", str(site["pub"])],
                        cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    data = bytearray(img.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.swimg"
    bad.write_bytes(bytes(data))
    refused = subprocess.run([sys.executable, "build.py", "verify", str(bad), "--key", str(site["pub"])],
                             cwd=REPO, capture_output=True, text=True)
    assert refused.returncode == 2 and "REFUSED" in refused.stderr


def test_cold_rebuild_with_an_empty_cache_gives_identical_bytes(site, tmp_path):
    """Quantization itself is deterministic: a fresh cache reproduces the image byte for byte."""
    [a] = _build(site, tmp_path / "one")
    [b] = _build(dict(site, cache=tmp_path / "fresh-cache"), tmp_path / "two")
    assert a.path.read_bytes() == b.path.read_bytes()
