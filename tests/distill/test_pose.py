"""distill.pose: the smoke path end to end, ONNX vs torch, NPU-friendly operators, training crops =
the runtime's crops, the committed cards."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from compiler.modelcard import read_card, sha256_of  # noqa: E402
from runtime import pose as rt  # noqa: E402
from tests.sim.test_realdata import require_shared_data  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ZOO = REPO / "models" / "pose"
NPU_OPS = {"Conv", "Relu", "MaxPool", "Resize", "Concat", "Add", "Constant"}
VARIANTS = ("pose-t96", "pose-m96", "pose-s64")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    require_shared_data()
    from distill.pose.pipeline import run

    out = tmp_path_factory.mktemp("zoo")
    t0 = time.perf_counter()
    reports = run(out, seed=0, smoke=True, log=lambda m: None)
    return out, reports, time.perf_counter() - t0


def test_smoke_writes_onnx_cards_and_reports(smoke_run):
    out, reports, seconds = smoke_run
    assert seconds < 120, f"the smoke path took {seconds:.0f} s"   # well under a minute on an idle 2-core machine
    assert set(reports) == set(VARIANTS)
    for name in VARIANTS:
        folder = out / "pose" / name
        card = read_card(folder)                       # verifies the sha256 too
        assert card.sha256 == sha256_of(folder / "model.onnx")
        assert card.task == "pose" and card.classes == list(rt.KEYPOINTS) and card.decoder == rt.DECODER
        assert card.inputs[0].name == rt.INPUT_NAME and card.outputs[0].name == rt.OUTPUT_NAME
        assert card.preprocess.color == "rgb" and card.preprocess.resize == "letterbox"
        assert card.costs.opset == 17 and set(card.costs.operators) <= NPU_OPS
        assert "--smoke" in card.training.command and "SMOKE" in card.notes
        assert card.metric("PCK@0.2", "synthetic") is not None
        rep = json.loads((folder / "report.json").read_text())
        assert "all" in rep["sim_holdout"]["pck"]
    assert "pose/pose-t96" in read_card(out / "pose" / "pose-m96").training.teacher
    assert {"kd", "nokd"} <= set(reports["pose-s64"]["training"])
    s64 = read_card(out / "pose" / "pose-s64")          # the twin without the teacher ships where it is better
    assert (s64.training.teacher is not None) == (reports["pose-s64"]["shipped"] == "kd")


@pytest.mark.parametrize("name", VARIANTS)
def test_onnx_matches_torch_and_ops_are_npu_friendly(tmp_path, name):
    from compiler.onnxinfo import analyse
    from distill.common import export_onnx
    from distill.pose.model import VARIANTS as V, build

    torch.manual_seed(0)
    m = build(name)
    with torch.no_grad():                              # non-trivial BatchNorm statistics to fold
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    m.eval()
    W, H = V[name].size
    x = torch.rand(3, 3, H, W)
    path = export_onnx(m, (x[:2],), tmp_path / f"{name}.onnx", [rt.INPUT_NAME], [rt.OUTPUT_NAME], check_inputs=(x,),
                       rtol=1e-3, atol=1e-4)
    info = analyse(path)
    assert set(info.operators) <= NPU_OPS, info.operators
    assert "BatchNormalization" not in info.operators and info.opset == 17 and info.max_rank <= 4
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {rt.INPUT_NAME: x.numpy()})[0]
    with torch.no_grad():
        want = m(x).numpy()
    assert got.shape == (3, 17, H // rt.STRIDE, W // rt.STRIDE)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_training_crops_are_the_runtime_crops():
    """A person stored as a context patch gives the runtime's crop of the whole frame, and its
    keypoints land where the runtime's transform puts them."""
    from distill.pose.data import PersonSet
    from distill.pose.train import cut
    from distill.ppe.data import context_patch

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    boxes = np.array([[300.3, 100.2, 330.8, 170.1], [0.0, 200.0, 25.0, 260.0]], np.float32)
    kp = np.zeros((2, 17, 3), np.float32)
    kp[..., 0] = rng.uniform(boxes[:, :1], boxes[:, 2:3], (2, 17))
    kp[..., 1] = rng.uniform(boxes[:, 1:2], boxes[:, 3:4], (2, 17))
    kp[..., 2] = 2
    patches, pboxes, pk = [], [], []
    for b, k in zip(boxes, kp):
        p, pb = context_patch(frame, b)
        patches.append(p)
        pboxes.append(pb)
        k2 = k.copy()
        k2[:, :2] += pb[:2] - b[:2]
        pk.append(k2)
    ps = PersonSet(patches, np.stack(pboxes), np.stack(pk), {"source": np.array(["sim"] * 2)})
    c = cut(ps, (64, 128))
    want, tf = rt.person_crops(frame, boxes, (64, 128))
    np.testing.assert_array_equal(c.images, want)
    np.testing.assert_allclose(c.keypoints[..., :2], rt.to_crop(kp, tf)[..., :2], atol=1e-3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_committed_cards_verify(variant):
    folder = ZOO / variant
    if not (folder / "card.yaml").exists():
        pytest.skip(f"models/pose/{variant} not trained yet")
    card = read_card(folder)                           # sha256 of model.onnx matches
    assert card.task == "pose" and card.variant == variant and card.bytes <= 3_000_000
    assert "--smoke" not in card.training.command and "SMOKE" not in card.notes
    assert set(card.costs.operators) <= NPU_OPS
    assert card.metric("PCK@0.2", "synthetic").value > 0.4
