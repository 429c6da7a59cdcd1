"""distill.ppe: the smoke path end to end, ONNX vs torch, NPU-friendly operators, training's
preprocessing = the runtime's, the committed cards."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from compiler.modelcard import read_card, sha256_of  # noqa: E402
from runtime import ppe as rt  # noqa: E402
from tests.sim.test_realdata import require_shared_data  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ZOO = REPO / "models" / "ppe"
NPU_OPS = {"Conv", "Relu", "Flatten", "MaxPool", "AveragePool", "GlobalAveragePool", "Concat", "Add", "Reshape"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    require_shared_data()
    from distill.ppe.pipeline import run

    out = tmp_path_factory.mktemp("zoo")
    t0 = time.perf_counter()
    reports = run(out, seed=0, smoke=True, log=lambda m: None)
    return out, reports, time.perf_counter() - t0


def test_smoke_writes_onnx_cards_and_reports(smoke_run):
    out, reports, seconds = smoke_run
    assert seconds < 120, f"the smoke path took {seconds:.0f} s"   # ~30 s on an idle 2-core machine
    assert set(reports) == {"large", "small"}
    for name in ("large", "small"):
        folder = out / "ppe" / name
        card = read_card(folder)                       # verifies the sha256 too
        assert card.sha256 == sha256_of(folder / "model.onnx")
        assert card.task == "ppe" and card.classes == ["helmet", "vest"] and card.decoder == rt.DECODER
        assert card.inputs[0].name == rt.INPUT_NAME and card.inputs[0].layout == "NCHW"
        assert card.preprocess.color == "rgb" and card.preprocess.resize == "letterbox"
        assert card.preprocess.scale == pytest.approx(1 / 255)
        assert card.costs.opset == 17 and set(card.costs.operators) <= NPU_OPS
        assert card.costs.macs > 0 and card.costs.params > 0 and card.costs.peak_activation_bytes > 0
        assert "--smoke" in card.training.command and "SMOKE" in card.notes
        assert card.metric("both_correct", "synthetic") is not None
        rep = json.loads((folder / "report.json").read_text())
        assert {"model", "baseline"} <= set(rep["sim_holdout"]["conditions"]["all"])
        assert rep["real"]["clips"]
    small = read_card(out / "ppe" / "small")
    assert small.training.teacher and "ppe/large" in small.training.teacher
    assert "kd" in reports["small"]["training"] and "nokd" in reports["small"]["training"]


def test_onnx_matches_torch_and_ops(tmp_path):
    from distill.common import export_onnx
    from distill.ppe.models import VARIANTS, build
    from compiler.onnxinfo import analyse

    for name, v in VARIANTS.items():
        torch.manual_seed(0)
        m = build(name)
        with torch.no_grad():                      # non-trivial BatchNorm statistics to fold
            for mod in m.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.running_mean.uniform_(-0.5, 0.5)
                    mod.running_var.uniform_(0.5, 2.0)
        m.eval()
        W, H = v.size
        x = torch.rand(8, 3, H, W)
        path = export_onnx(m, (x[:2],), tmp_path / f"{name}.onnx", [rt.INPUT_NAME], [rt.OUTPUT_NAME], check_inputs=(x,))
        info = analyse(path)
        assert set(info.operators) <= NPU_OPS, info.operators
        assert info.opset == 17 and info.max_rank <= 4
        assert info.weight_bytes < 1_000_000           # a few hundred KB each
        ort = pytest.importorskip("onnxruntime")
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = rt.decode(sess.run(None, {rt.INPUT_NAME: x.numpy()})[0])
        with torch.no_grad():
            want = torch.sigmoid(m(x)).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_training_crops_are_the_runtime_crops():
    """A person stored as a context patch gives the same model input as the runtime cutting it
    from the whole frame (clean path), and the augmented path keeps the runtime's layout."""
    from distill.ppe.data import CropSet, context_patch
    from distill.ppe.train import Recipe, clean_inputs, make_batch

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    boxes = np.array([[300.3, 100.2, 330.8, 170.1], [0.0, 200.0, 25.0, 260.0], [600.5, 0.0, 640.0, 90.0]], np.float32)
    patches, pboxes = zip(*(context_patch(frame, b) for b in boxes))
    data = CropSet(list(patches), np.stack(pboxes), np.zeros((3, 2), np.float32), np.ones((3, 2), bool),
                   {"source": np.array(["sim"] * 3)})
    want = rt.preprocess(rt.person_crops(frame, boxes, (64, 128)))
    np.testing.assert_array_equal(clean_inputs(data, (64, 128)), want)
    x, y, k, painted = make_batch(data, np.arange(3), (64, 128), np.random.default_rng(1), Recipe())
    assert x.shape == (3, 3, 128, 64) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1


def test_jitter_box_applies_a_measured_detector_offset():
    """With measured offsets, a box moves by exactly one of them (bar the random truncations);
    the committed offsets come from sim TRAIN seeds only and describe the students' boxes."""
    from distill.ppe.boxgeometry import OUT, SEEDS, load_offsets
    from distill.ppe.data import HOLDOUT_SEEDS
    from distill.ppe.train import jitter_box

    box = np.array([100.0, 50.0, 140.0, 150.0], np.float32)
    off = np.array([[0.1, -0.05, np.log(1.5), np.log(0.8)]], np.float32)
    rng = np.random.default_rng(0)
    want = np.array([124.0 - 30, 95 - 40, 124 + 30, 95 + 40], np.float32)   # centre (120, 100) + (4, -5), 60 x 80
    hits = sum(np.allclose(jitter_box(box, rng, off), want, atol=1e-3) for _ in range(200))
    assert hits > 140                                   # ~22% of draws cut a side or the bottom
    meta = json.loads(OUT.read_text())
    assert not set(meta["frames"]["seeds"]) & set(HOLDOUT_SEEDS) and list(SEEDS) == meta["frames"]["seeds"]
    a = load_offsets()
    assert a.shape[1] == 4 and len(a) == sum(v["matched"] for v in meta["detectors"].values()) > 1000


def test_train_keeps_the_best_moving_average():
    """With ``Recipe.ema`` the scored and kept weights are the moving average, not the live ones."""
    from distill.ppe.data import CropSet, context_patch
    from distill.ppe.models import build
    from distill.ppe.train import Recipe, clean_inputs, train

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    boxes = np.array([[300, 100, 330, 170], [100, 200, 125, 260], [500, 10, 540, 90]], np.float32)
    patches, pboxes = zip(*(context_patch(frame, b) for b in boxes))
    data = CropSet(list(patches), np.stack(pboxes), np.array([[1, 0], [0, 1], [1, 1]], np.float32), np.ones((3, 2), bool),
                   {"source": np.array(["sim", "sim", "real"])})
    val = (clean_inputs(data, (64, 128)), data.labels, data.known)
    moved = {}
    for ema in (0.0, 0.9):
        torch.manual_seed(0)
        model = build("small")
        start = model.state_dict()["head.4.weight"].clone()
        res = train({"nokd": model}, data, (64, 128), Recipe(steps=4, batch=4, eval_every=4, ema=ema), 0, val)
        assert res["nokd"].best_step == 4
        moved[ema] = float((res["nokd"].model.state_dict()["head.4.weight"] - start).abs().sum())
    assert 0 < moved[0.9] < 0.5 * moved[0.0]            # the same steps, averaged with the start (0.9^4 of it)


def test_paint_labels_follow_the_paint():
    from distill.ppe.train import paint_ppe

    patch = np.full((160, 80, 3), 90, np.uint8)
    box = np.array([15, 20, 65, 140], np.float32)
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(40):
        img, lab = paint_ppe(patch, box, rng)
        flags = rt.colour_scores(img, box[None])[0]
        if lab[1]:
            assert flags[1] > 0.2                       # a painted vest is hi-vis on the torso
        seen.add(tuple(lab))
    assert {(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)} <= seen


@pytest.mark.parametrize("variant", ["large", "small"])
def test_committed_cards_verify(variant):
    folder = ZOO / variant
    if not (folder / "card.yaml").exists():
        pytest.skip(f"models/ppe/{variant} not trained yet")
    card = read_card(folder)                           # sha256 of model.onnx matches
    assert card.task == "ppe" and card.variant == variant and card.bytes <= 1_000_000
    assert "--smoke" not in card.training.command and "SMOKE" not in card.notes
    assert set(card.costs.operators) <= NPU_OPS
    rep = json.loads((folder / "report.json").read_text())
    for cond, row in rep["sim_holdout"]["conditions"].items():
        assert row["model"]["both"] > row["baseline"]["both"], cond   # beats the colour baseline everywhere
