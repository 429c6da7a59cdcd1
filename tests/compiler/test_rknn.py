"""Real Rockchip NPU files: rknn-toolkit2 (its own venv) turns FP32 ONNX into INT8 .rknn, and its
simulator must agree with onnxruntime FP32 within the gate.

Tests that need the toolkit SKIP where `.ci/rknn-env.sh` has not set it up, and FAIL under CI=true
(CI sets it up: a missing toolkit there is a broken pipeline, not a reason to pass)."""
import json
import os
import textwrap

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler import rknn
from compiler.boards import load_board_profiles
from compiler.modelcard import read_card
from compiler.rknn import (
    MIN_SIM_COSINE, RknnError, RknnUnavailable, convert, convert_cached, last_errors, mean_std,
    parse_analysis, rknn_available, rknn_for_image, to_pixels,
)

from tests.compiler.zoo_fixture import _conv_model, make_zoo

IMAGENET = dict(scale=1 / 255, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def toolkit():
    if rknn_available() is None:
        msg = f"rknn-toolkit2 venv missing at {rknn.venv_dir()}: run .ci/rknn-env.sh"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI must set it up)")
        pytest.skip(msg)
    return rknn_available()


def frames(n, seed, size=64, brightness=1.0):
    """Camera-like frames (smooth gradients, blobs, a little noise) as uint8 HWC BGR."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        yy, xx = np.mgrid[0:size, 0:size] / size
        img = np.stack([80 + 100 * yy, 90 + 60 * xx, 120 - 50 * yy * xx], -1)
        for _ in range(4):
            cx, cy, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(4, size // 3))]
            cv2.circle(img, (cx, cy), r, rng.integers(0, 256, 3).tolist(), -1)
        img = np.clip((img + rng.normal(0, 6, img.shape)) * brightness, 0, 255)
        out.append(img.astype(np.uint8))
    return out


def normalise(images, scale, mean, std):
    """What compiler.calibrate.prepare gives a model: NCHW float, (pixel*scale - mean)/std."""
    m = np.asarray(mean or [0.0], np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std or [1.0], np.float32).reshape(1, -1, 1, 1)
    return [((im[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) * scale) - m) / s for im in images]


def nonzero_model(path):
    base = _conv_model((1, 3, 64, 64), 6, 1)
    graph = helper.make_graph([*base.graph.node, helper.make_node("NonZero", ["output"], ["nz"], name="nz")], "nz",
                              list(base.graph.input), [helper.make_tensor_value_info("nz", TensorProto.INT64, None)],
                              list(base.graph.initializer))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def outlier_model(path):
    """Conv net with one huge weight: calibrated on dark frames only, bright frames overflow its ranges."""
    model = _conv_model((1, 3, 64, 64), 6, 1)
    for init in model.graph.initializer:
        if init.name == "w1":
            w = numpy_helper.to_array(init).copy()
            w[0, 0, 0, 0] = 400.0
            init.CopyFrom(numpy_helper.from_array(w, "w1"))
    onnx.save(model, str(path))


# --- no toolkit needed ------------------------------------------------------------------------

def test_card_normalisation_becomes_pixel_mean_and_std():
    mv, sv = mean_std(**IMAGENET)
    assert np.allclose(mv, [[123.675, 116.28, 103.53]]) and np.allclose(sv, [[58.395, 57.12, 57.375]])
    assert mean_std(1 / 255) == ([[0.0, 0.0, 0.0]], [[255.0, 255.0, 255.0]])
    images = frames(3, 0)
    for x, im in zip(normalise(images, **IMAGENET), images):  # exactly the pixels the board will feed
        assert np.array_equal(to_pixels(x, mv, sv)[0], im[:, :, ::-1].transpose(2, 0, 1))


ANALYSIS = """\
layer_name                              simulator_error
                                    entire              single
                                 cos      euc        cos      euc
-----------------------------------------------------------------------
[Input] input                  1.00000 | 0.00000   1.00000 | 0.00000
[exDataConvert] input_int8     1.00000 | 0.00001   1.00000 | 0.00001
[Conv] c0
[Relu] r0                      0.99993 | 0.25514   0.99993 | 0.25514
[Conv] output_int8             0.99975 | 0.06278   0.99992 | 0.03512
[exDataConvert] output         0.99975 | 0.06278   0.99994 | 0.03017
"""


def test_per_layer_analysis_is_parsed_and_fused_layers_skipped():
    rows = parse_analysis(ANALYSIS)
    assert [r.name for r in rows] == ["input", "input_int8", "r0", "output_int8", "output"]
    assert rows[-1].op == "exDataConvert" and rows[-1].cosine == 0.99975 and rows[2].single == 0.99993


def test_toolkit_errors_are_picked_out_of_its_log():
    log = ("I OpFusing 2 : 100%|####| 100/100 [00:00<00:00]\x1b[1;31mE\x1b[0m \x1b[1;31mbuild: The input 0 of "
           "NonZero('nz') need to be constant!\n                  Remove NonZero('nz') manually and try again!\x1b[0m\n"
           "\x1b[1;31mE\x1b[0m \x1b[1;31mrknn-toolkit2 version: 2.5.0\x1b[0m\n"
           "E build: Traceback (most recent call last):\n  File \"rknn/api/rknn_base.py\", line 1\n")
    assert last_errors(log).strip() == ("build: The input 0 of NonZero('nz') need to be constant! "
                                        "Remove NonZero('nz') manually and try again!")


def test_missing_toolkit_says_how_to_set_it_up(tmp_path, monkeypatch):
    monkeypatch.setenv("SITEWARDEN_RKNN_VENV", str(tmp_path / "nowhere"))
    assert rknn_available() is None
    with pytest.raises(RknnUnavailable, match=r"\.ci/rknn-env\.sh"):
        convert(tmp_path / "m.onnx", tmp_path / "m.rknn", "rk3588", [np.zeros((1, 3, 8, 8), np.float32)], [])
    zoo = make_zoo(tmp_path / "zoo")
    card = read_card(zoo / "detector" / "det-32")
    boards = load_board_profiles()
    npu = rknn_for_image(boards["rk3588"], None, card, None, tmp_path, 8, 4)
    assert npu.data is None and ".ci/rknn-env.sh" in npu.note and npu.record["file"] is None
    assert rknn_for_image(boards["host-cpu"], None, card, None, tmp_path, 8, 4) is None  # not a Rockchip board


# --- the toolkit itself -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def det(tmp_path_factory):
    """The fixture detector with a symbolic batch axis, as torch exports the zoo's models."""
    root = tmp_path_factory.mktemp("rknn")
    model = _conv_model((1, 3, 64, 64), 6, 1)
    for vi in (*model.graph.input, *model.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(model, str(root / "det.onnx"))
    return root


@pytest.fixture(scope="module")
def converted(toolkit, det):
    """Each target converted once through the cache (the tests below read the results)."""
    calls = []

    def make_samples():
        calls.append(1)
        return normalise(frames(16, 1), **IMAGENET), normalise(frames(6, 2), **IMAGENET)

    kw = dict(recipe="fixture", make_samples=make_samples, progress=lambda m: None, **IMAGENET)
    results = {t: convert_cached(det / "det.onnx", t, det / "cache", "det", **kw) for t in ("rk3588", "rv1106")}
    return results, calls, kw


@pytest.mark.parametrize("target", ["rk3588", "rv1106"])
def test_rockchip_file_matches_onnxruntime_on_the_simulator(converted, target):
    result = converted[0][target]
    data = result.path.read_bytes()
    assert data[:4] == b"RKNN" and len(data) > 8_000, len(data)
    assert result.passed and result.sim_cosine_min >= MIN_SIM_COSINE, str(result)
    assert result.analysis_cosine is not None and result.analysis_cosine >= MIN_SIM_COSINE, str(result)
    assert result.target == target and result.samples == 6 and len(result.per_output) == 1 and result.worst_layers
    assert result.toolkit == "rknn-toolkit2 2.5.0"


def test_cache_reuses_the_file_and_verdict_without_rendering_frames(converted, det):
    results, calls, kw = converted
    assert len(calls) == 2  # one conversion per target
    again = convert_cached(det / "det.onnx", "rk3588", det / "cache", "det", **kw)
    assert len(calls) == 2 and again.path == results["rk3588"].path and again == results["rk3588"]
    assert again.path.parent == det / "cache" / "rknn"
    assert not convert_cached(det / "det.onnx", "rk3588", det / "cache", "det", **kw, threshold=1.01).passed


def test_an_op_the_toolkit_refuses_gives_its_own_message(toolkit, tmp_path):
    nonzero_model(tmp_path / "nz.onnx")
    calib = normalise(frames(4, 1), scale=1 / 255, mean=[], std=[])
    with pytest.raises(RknnError, match=r"refused nz\.onnx for rk3588 at build:\n.*NonZero\('nz'\)"):
        convert(tmp_path / "nz.onnx", tmp_path / "nz.rknn", "rk3588", calib, calib)


def test_gate_refuses_a_model_the_toolkit_quantizes_badly(toolkit, tmp_path):
    outlier_model(tmp_path / "m.onnx")
    pp = dict(scale=1 / 255, mean=[], std=[])
    dark, bright = normalise(frames(8, 1, brightness=0.05), **pp), normalise(frames(4, 2), **pp)
    result = convert(tmp_path / "m.onnx", tmp_path / "m.rknn", "rk3588", dark, bright, **pp)
    assert not result.passed and result.sim_cosine_min < MIN_SIM_COSINE, str(result)
    assert "REFUSED" in str(result)


def test_rockchip_image_carries_rknn_beside_int8_onnx(toolkit, tmp_path):
    """The builder's hook: an rk3588 image has a gated .rknn per INT8 model, recorded in the plan."""
    from compiler.builder import build_images
    from compiler.keys import new_key_pair
    from compiler.spec import load_spec
    from runtime.image import load_public_key, read_image

    zoo = make_zoo(tmp_path / "zoo")
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for im in frames(20, 3, size=120):
        writer.write(cv2.resize(im, (160, 120)))
    writer.release()
    (tmp_path / "site.yaml").write_text(textwrap.dedent("""\
        site: {name: rk-site, timezone: UTC}
        defaults: {board: rk3588, fps: 5, resolution: [160, 120]}
        cameras:
          - id: yard
            source: file:clip.avi
            zones: [{id: pit, kind: danger, polygon: [[0.2, 0.2], [0.8, 0.2], [0.8, 0.9], [0.2, 0.9]]}]
        alerts: {sinks: [{file: events.jsonl}]}
        models: {prefer: accuracy, detector: {variant: det-32}}   # two detector files: det-32 + night
        """))
    priv, pub, _ = new_key_pair(tmp_path / "keys")
    spec = load_spec(tmp_path / "site.yaml")
    assert spec.ok, spec.report()
    board = load_board_profiles()["rk3588"]
    [img] = build_images(spec.spec, tmp_path / "site.yaml", spec.document.files, board, tmp_path / "out",
                         key_path=str(priv), progress=lambda m: None, zoo_dir=zoo, cache_dir=tmp_path / "cache")
    v = read_image(img.path, [load_public_key(pub.read_bytes())], board="rk3588")
    onnx_models = sorted(n for n in v.files if n.startswith("models/") and n.endswith(".onnx"))
    rknn_models = sorted(n for n in v.files if n.endswith(".rknn"))
    assert onnx_models and rknn_models == [n[:-5] + ".rknn" for n in onnx_models]
    assert all(v.files[n][:4] == b"RKNN" for n in rknn_models)
    npu = json.loads(json.dumps(v.manifest.plan))["npu_files"]
    assert {r["file"] for r in npu.values()} == set(rknn_models)
    assert all(r["passed"] and r["sim_cosine_min"] >= MIN_SIM_COSINE and r["target"] == "rk3588" for r in npu.values())
    notes = v.manifest.plan["model_notes"]
    assert any(".rknn (pass: rk3588 simulator cosine" in n for n in notes), notes
