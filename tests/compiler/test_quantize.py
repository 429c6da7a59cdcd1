"""INT8 quantization: the format we ship, and a gate that refuses a model quantization breaks."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.boards import load_board_profiles
from compiler.onnxinfo import analyse
from compiler.opcheck import check_model
from compiler.quantize import accuracy_gate, quantize_int8, session


def conv_net(path, channels=16, seed=0, outlier=False):
    """A small conv net (Conv-Relu x3 + 1x1 head) saved to `path`."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    c_in, name = 3, "x"
    for i in range(3):
        w = rng.normal(0, np.sqrt(2 / (9 * c_in)), (channels, c_in, 3, 3)).astype(np.float32)
        if outlier and i == 1:
            w[0, 0, 0, 0] = 400.0  # one huge weight: per-tensor ranges are fine, activations explode in range
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(channels, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [name, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        c_in, name = channels, f"r{i}"
    wh = rng.normal(0, 0.1, (4, channels, 1, 1)).astype(np.float32)
    inits.append(numpy_helper.from_array(wh, "wh"))
    nodes.append(helper.make_node("Conv", [name, "wh"], ["y"], name="head"))
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return model


def samples(n, seed):
    rng = np.random.default_rng(seed)
    return [{"x": rng.random((1, 3, 32, 32), dtype=np.float32)} for _ in range(n)]


def test_int8_is_qdq_per_channel_with_uint8_activations(tmp_path):
    conv_net(tmp_path / "fp32.onnx")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", samples(16, 1))
    model = onnx.load(str(tmp_path / "int8.onnx"))
    ops = analyse(model).operators
    assert ops.get("QuantizeLinear") and ops.get("DequantizeLinear") and ops["Conv"] == 4
    weights = {t.name: t for t in model.graph.initializer}
    zero_points = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == TensorProto.UINT8]
    assert zero_points, "activations should be QUInt8"
    scales = [numpy_helper.to_array(weights[n.input[1]]) for n in model.graph.node
              if n.op_type == "DequantizeLinear" and n.input[0] in weights and n.input[1] in weights
              and numpy_helper.to_array(weights[n.input[0]]).dtype == np.int8]
    assert any(s.ndim == 1 and s.size > 1 for s in scales), "weights should be per-channel"


def test_gate_passes_a_well_behaved_model(tmp_path):
    conv_net(tmp_path / "fp32.onnx")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", samples(16, 1))
    result = accuracy_gate(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", samples(8, 2))
    assert result.passed, str(result)


def test_gate_refuses_a_model_quantization_breaks(tmp_path):
    """Calibrated on dark frames only, then shown bright ones: activations clip and the gate must refuse."""
    conv_net(tmp_path / "fp32.onnx", outlier=True)
    dark = [{"x": s["x"] * 0.02} for s in samples(16, 1)]
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", dark)
    result = accuracy_gate(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", samples(8, 2))
    assert not result.passed, str(result)


def test_quantize_without_calibration_is_refused(tmp_path):
    conv_net(tmp_path / "fp32.onnx")
    with pytest.raises(Exception, match="calibration"):
        quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", [])


def test_opcheck_names_the_node_and_the_limit(tmp_path):
    boards = load_board_profiles()
    model = conv_net(tmp_path / "fp32.onnx")
    assert check_model(model, boards["rk3588"]) == []
    bad = onnx.helper.make_model(onnx.helper.make_graph(
        [*model.graph.node, helper.make_node("TopK", ["y", "k"], ["v", "i"], name="my_topk", axis=1)],
        "bad", list(model.graph.input), [helper.make_tensor_value_info("v", TensorProto.FLOAT, None)],
        [*model.graph.initializer, numpy_helper.from_array(np.array([2], np.int64), "k")]),
        opset_imports=[helper.make_opsetid("", 17)])
    problems = check_model(bad, boards["rk3588"])
    assert any(p.node == "my_topk" and "TopK" in p.message for p in problems), problems
    assert "node 'my_topk' (TopK)" in str(problems[0])
