"""distill.posture: the smoke path end to end (on the committed pose student), ONNX vs torch,
joint dropping, the committed cards and the issue's Must."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from compiler.modelcard import read_card, sha256_of  # noqa: E402
from runtime import posture as rp  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ZOO = REPO / "models" / "posture"
MLP_OPS = {"Gemm", "MatMul", "Relu", "Add"}
VARIANTS = ("posture-t", "posture-s")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    if not (REPO / "models" / "pose" / "pose-s64" / "model.onnx").exists():
        pytest.skip("the posture smoke path needs the committed pose student models/pose/pose-s64")
    from distill.posture.pipeline import run

    out = tmp_path_factory.mktemp("zoo")
    t0 = time.perf_counter()
    reports = run(out, seed=0, smoke=True, log=lambda m: None)
    return out, reports, time.perf_counter() - t0


def test_smoke_writes_onnx_cards_and_reports(smoke_run):
    out, reports, seconds = smoke_run
    assert seconds < 60, f"the smoke path took {seconds:.0f} s"
    assert set(reports) == set(VARIANTS)
    for name in VARIANTS:
        folder = out / "posture" / name
        card = read_card(folder)
        assert card.sha256 == sha256_of(folder / "model.onnx")
        assert card.task == "posture" and card.classes == list(rp.CLASSES) and card.decoder == rp.DECODER
        assert card.inputs[0].shape == ["batch", rp.N_FEATURES] and not card.quantize
        assert set(card.costs.operators) <= MLP_OPS and card.costs.opset == 17
        assert "--smoke" in card.training.command and "SMOKE" in card.notes
        assert card.metric("accuracy", "synthetic") is not None
        rep = json.loads((folder / "report.json").read_text())
        assert "rule" in rep["scores"]["dropped"] and name in rep["scores"]["dropped"]
    assert "posture/posture-t" in read_card(out / "posture" / "posture-s").training.teacher
    assert {"kd", "nokd"} <= set(reports["posture-s"]["training"])


@pytest.mark.parametrize("name", VARIANTS)
def test_onnx_matches_torch(tmp_path, name):
    from compiler.onnxinfo import analyse
    from distill.common import export_onnx
    from distill.posture.model import build

    torch.manual_seed(0)
    m = build(name).eval()
    x = torch.from_numpy(rp.features(np.random.default_rng(0).uniform(0, 100, (16, 17, 3)).astype(np.float32)))
    path = export_onnx(m, (x[:2],), tmp_path / f"{name}.onnx", [rp.INPUT_NAME], [rp.OUTPUT_NAME], check_inputs=(x,))
    info = analyse(path)
    assert set(info.operators) <= MLP_OPS, info.operators
    ort = pytest.importorskip("onnxruntime")
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {rp.INPUT_NAME: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(rp.decode(got), rp.decode(m(x).numpy()), atol=1e-5)


def test_drop_modes_remove_the_right_joints():
    from distill.posture.data import drop

    kp = np.ones((5, 17, 3), np.float32)
    modes = np.array(["none", "face", "left", "right", "legs"])
    out = drop(kp, modes, np.random.default_rng(0))
    assert (out[0, :, 2] == 1).all()
    assert (out[1, list(rp.FACE), 2] == 0).all() and (out[1, 5:, 2] == 1).all()
    assert (out[2, list(rp.LEFT), 2] == 0).all() and (out[2, list(rp.RIGHT), 2] == 1).all()
    assert (out[3, list(rp.RIGHT), 2] == 0).all() and (out[3, 0, 2] == 1)
    assert (out[4, 13:, 2] == 0).all() and (out[4, :13, 2] == 1).all()
    assert (kp == 1).all()                              # the input is not changed
    r = drop(np.ones((200, 17, 3), np.float32), np.array(["random"] * 200), np.random.default_rng(1))
    assert 0.05 < (r[..., 2] == 0).mean() < 0.5


@pytest.mark.parametrize("variant", VARIANTS)
def test_committed_cards_verify(variant):
    folder = ZOO / variant
    if not (folder / "card.yaml").exists():
        pytest.skip(f"models/posture/{variant} not trained yet")
    card = read_card(folder)
    assert card.task == "posture" and card.variant == variant and card.bytes <= 500_000
    assert "--smoke" not in card.training.command and "SMOKE" not in card.notes
    assert card.metric("accuracy", "synthetic").value > card.metric("accuracy_rule_baseline", "synthetic").value


def _dropped_scores() -> dict:
    folder = ZOO / "posture-s"
    if not (folder / "report.json").exists():
        pytest.skip("models/posture/posture-s not trained yet")
    return json.loads((folder / "report.json").read_text())["scores"]["dropped"]


def test_committed_student_beats_the_rule_and_stays_near_its_teacher():
    s = _dropped_scores()
    assert s["posture-s"]["accuracy"] > s["rule"]["accuracy"]
    assert s["posture-t"]["accuracy"] - s["posture-s"]["accuracy"] <= 0.03


def test_committed_student_fallen_recall_and_precision():
    s = _dropped_scores()
    assert s["posture-s"]["fallen_recall"] >= 0.9 and s["posture-s"]["fallen_precision"] >= 0.9
