"""distill.trajectory: the smoke path end to end, ONNX vs torch, the card, the shipped files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from compiler.modelcard import ModelCardError, read_card, sha256_of  # noqa: E402
from runtime.forecast import OnnxForecaster, decode, encode  # noqa: E402
from tests.sim.test_realdata import require_shared_data  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "trajectory" / "traj-social-mlp"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    require_shared_data()
    from distill.trajectory.pipeline import run

    out = tmp_path_factory.mktemp("zoo")
    report = run(out, seed=0, smoke=True, scenes=("hotel", "zara1"), log=lambda m: None)
    return out, report


def test_smoke_writes_onnx_card_and_report(smoke_run):
    out, report = smoke_run
    folder = out / "trajectory" / "traj-social-mlp"
    card = read_card(folder)                       # verifies the sha256 too
    assert card.task == "trajectory" and card.precision == "fp32" and card.quantize is False
    assert card.preprocess.rate_hz == pytest.approx(2.5)
    assert "rotated" in card.preprocess.notes
    assert card.costs.params == report["params"]["student"] <= 50_000
    assert card.costs.opset == 17
    assert [i.name for i in card.inputs] == ["obs_local", "neighbours"]
    assert not {"LSTM", "GRU", "RNN", "Loop", "Scan"} & set(card.costs.operators)
    assert all(m.data == "real" for m in card.metrics)
    assert card.metric("ADE_m").value == pytest.approx(report["average"]["student_kd"]["ade"])
    assert "--smoke" in card.training.command and card.training.teacher
    assert set(report["scenes"]) == {"hotel", "zara1"}
    for row in report["scenes"].values():
        assert {"cv", "teacher", "student_kd", "student_nokd", "entry"} <= set(row)
        assert row["entry"]["student"]["entries"] + row["entry"]["student"]["near_misses"] > 0
    json.loads((folder / "report.json").read_text())


def test_onnx_matches_torch(smoke_run, tmp_path):
    from distill.common import ExportError, export_onnx
    from distill.trajectory.models import MLPStudent

    torch.manual_seed(0)
    m = MLPStudent().eval()
    x = torch.randn(16, 8, 2)
    path = export_onnx(m, (x[:2],), tmp_path / "s.onnx", ["obs_local"], ["offsets"], check_inputs=(x,))
    fc = OnnxForecaster(path)
    obs = np.cumsum(np.random.default_rng(1).normal(0, 0.4, (16, 8, 2)), axis=1)
    enc, frame = encode(obs)
    with torch.no_grad():
        want = decode(m(torch.from_numpy(enc)).numpy(), frame)
    np.testing.assert_allclose(fc.predict(obs), want, atol=1e-4)
    # the social student: two inputs, neighbours built by the runtime from the other tracks
    from distill.trajectory.models import SocialMLPStudent
    from runtime.forecast import neighbour_features, scene_others

    torch.manual_seed(0)
    sm = SocialMLPStudent().eval()
    soc = neighbour_features(frame, scene_others(obs))
    assert (soc[:, :, 4] == 1).all()          # 15 others each, all within 8 m: the 4 nearest kept
    spath = export_onnx(sm, (torch.from_numpy(enc[:2]), torch.from_numpy(soc[:2])), tmp_path / "soc.onnx",
                        ["obs_local", "neighbours"], ["offsets"],
                        check_inputs=(torch.from_numpy(enc), torch.from_numpy(soc)))
    with torch.no_grad():
        want = decode(sm(torch.from_numpy(enc), torch.from_numpy(soc)).numpy(), frame)
    np.testing.assert_allclose(OnnxForecaster(spath).predict(obs), want, atol=1e-4)
    # a model whose export disagrees must be refused
    class Bad(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 12, 2) + float(torch.rand(()).item())
    with pytest.raises(ExportError):
        export_onnx(Bad(), (x[:2],), tmp_path / "b.onnx", ["obs_local"], ["offsets"], check_inputs=(x,))


def test_training_is_reproducible():
    require_shared_data()
    from distill.common import seed_everything
    from distill.trajectory import data
    from distill.trajectory.models import MLPStudent
    from distill.trajectory.train import Recipe, train

    tr = data.load("zara1", "train", neighbours=False, limit=600)
    va = data.load("zara1", "val", neighbours=False, limit=200)
    outs = []
    for _ in range(2):
        seed_everything(3)
        res = train(MLPStudent(), tr, va, Recipe(epochs=1, max_steps=3), seed=3)
        outs.append([p.detach().clone() for p in res.model.parameters()])
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_zones_file_is_current():
    require_shared_data()
    import yaml

    from distill.trajectory import entry

    doc = yaml.safe_load(entry.ZONES_FILE.read_text())
    for scene in ("hotel", "zara2"):
        assert doc["scenes"][scene] == entry.choose_zones(scene), "run python -m distill.trajectory.entry"


@pytest.mark.skipif(not (SHIPPED / "card.yaml").exists(), reason="no shipped trajectory model yet")
def test_shipped_card_matches_its_file():
    card = read_card(SHIPPED)
    assert card.sha256 == sha256_of(SHIPPED / card.file)
    assert card.costs.params <= 50_000
    cv = card.metric("ADE_m_cv_baseline").value
    assert card.metric("ADE_m").value < cv
    assert card.metric("FDE_m").value < card.metric("FDE_m_cv_baseline").value


def test_read_card_refuses_a_changed_file(tmp_path, smoke_run):
    import shutil

    out, _ = smoke_run
    folder = tmp_path / "copy"
    shutil.copytree(out / "trajectory" / "traj-social-mlp", folder)
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelCardError):
        read_card(folder)
