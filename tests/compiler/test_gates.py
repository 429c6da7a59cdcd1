"""Mixed precision (the FP32 stem) and the task gates that judge INT8 by the runtime's decisions."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compiler.gates import MAX_DISAGREEMENT, detection_gate, pose_gate, ppe_gate
from compiler.quantize import accuracy_gate, classifier_heads, quantize_int8, session, stem_nodes


def stem_net(path, *, heads=(("y", 4),), side=32, seed=0, depthwise=True, scale=1.0):
    """Conv(3->16, s2)-Relu [-> depthwise 3x3 -Relu] -> Conv 1x1 (16->16)-Relu -> one 1x1 head per output."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def conv(name, x, w, group=1, stride=1, pad=1, relu=True):
        inits.extend([numpy_helper.from_array(w.astype(np.float32), f"{name}_w"),
                      numpy_helper.from_array(np.zeros(w.shape[0], np.float32), f"{name}_b")])
        nodes.append(helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_o"], name=name, group=group,
                                      strides=[stride, stride], pads=[pad] * 4))
        if not relu:
            return f"{name}_o"
        nodes.append(helper.make_node("Relu", [f"{name}_o"], [f"{name}_r"], name=f"{name}_relu"))
        return f"{name}_r"

    x = conv("stem", "x", rng.normal(0, 0.5, (16, 3, 3, 3)), stride=2)
    if depthwise:
        x = conv("dw", x, rng.normal(0, 0.5, (16, 1, 3, 3)), group=16)
    x = conv("pw", x, rng.normal(0, 0.3, (16, 16, 1, 1)), pad=0)
    outs = []
    for name, c in heads:
        conv(name, x, scale * rng.normal(0, 0.3, (c, 16, 1, 1)), pad=0, relu=False)
        nodes[-1].output[0] = name
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, side, side])],
                              outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return model


def feeds(n, seed=1, side=32):
    rng = np.random.default_rng(seed)
    return [{"x": rng.random((1, 3, side, side), dtype=np.float32)} for _ in range(n)]


def test_stem_nodes_are_the_image_conv_and_the_depthwise_after_it(tmp_path):
    assert stem_nodes(stem_net(tmp_path / "a.onnx")) == ["stem", "stem_relu", "dw", "dw_relu"]
    assert stem_nodes(stem_net(tmp_path / "b.onnx", depthwise=False)) == ["stem", "stem_relu"]


def test_keep_fp32_stem_leaves_only_the_stem_in_float(tmp_path):
    stem_net(tmp_path / "fp32.onnx")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", feeds(8), keep_fp32="stem")
    model = onnx.load(str(tmp_path / "int8.onnx"))
    init = {t.name for t in model.graph.initializer}
    quantized_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv" and n.input[1] not in init}
    float_weight_convs = {n.name for n in model.graph.node if n.op_type == "Conv" and n.input[1] in init}
    assert float_weight_convs == {"stem", "dw"}, float_weight_convs
    assert len(quantized_weights) == 2  # pw and the head read DequantizeLinear'd INT8 weights
    a, b = session(tmp_path / "fp32.onnx"), session(tmp_path / "int8.onnx")
    x = feeds(1, seed=7)[0]
    np.testing.assert_allclose(b.run(None, x)[0], a.run(None, x)[0], atol=0.1 * np.abs(a.run(None, x)[0]).max())


def test_ppe_gate_accepts_int8_and_refuses_a_model_that_decides_otherwise(tmp_path):
    stem_net(tmp_path / "fp32.onnx", heads=(("logits", 2),), side=16)
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", feeds(16, side=16))
    ok = accuracy_gate(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", feeds(16, 2, 16), task_gate=ppe_gate,
                       max_drop=MAX_DISAGREEMENT)
    assert ok.passed and "decisions" in ok.metric, str(ok)
    stem_net(tmp_path / "flipped.onnx", heads=(("logits", 2),), side=16, scale=-1.0)  # the opposite decisions
    bad = accuracy_gate(tmp_path / "fp32.onnx", tmp_path / "flipped.onnx", feeds(16, 2, 16), task_gate=ppe_gate,
                        max_drop=MAX_DISAGREEMENT)
    assert not bad.passed and bad.value > 0.5, str(bad)


def test_detection_gate_matches_decoded_boxes(tmp_path):
    heads = (("heatmap", 2), ("box", 4))
    stem_net(tmp_path / "fp32.onnx", heads=heads, side=64)
    a = session(tmp_path / "fp32.onnx")
    name, ref, same = detection_gate(stride=2)(a, a, feeds(4, side=64))
    assert same == ref == 1.0 and "agreeing" in name
    stem_net(tmp_path / "other.onnx", heads=heads, side=64, seed=5)  # another network: other boxes
    _, _, other = detection_gate(stride=2)(a, session(tmp_path / "other.onnx"), feeds(4, side=64))
    assert other < 1 - MAX_DISAGREEMENT


def test_pose_gate_scores_keypoint_agreement(tmp_path):
    stem_net(tmp_path / "fp32.onnx", heads=(("heatmaps", 17),), side=32)
    stem_net(tmp_path / "other.onnx", heads=(("heatmaps", 17),), side=32, seed=3)
    a, b = session(tmp_path / "fp32.onnx"), session(tmp_path / "other.onnx")
    assert pose_gate(a, a, feeds(4))[2] == 1.0
    assert pose_gate(a, b, feeds(4))[2] < 0.5


def test_a_classifier_head_stays_float_and_keeps_logits_calibration_never_saw(tmp_path):
    """Calibrated only on inputs with high logits (every worker wears a helmet), the FP32 classifier
    head still gives the low logits of other inputs (a bare head) as FP32 does."""
    model = stem_net(tmp_path / "fp32.onnx", heads=(("head", 1),), side=16)
    model.graph.node.append(helper.make_node("Flatten", ["head"], ["logits"], name="flatten"))
    model.graph.output[0].name = "logits"
    onnx.save(model, str(tmp_path / "cls.onnx"))
    assert classifier_heads(model) == ["head"] and classifier_heads(stem_net(tmp_path / "map.onnx")) == []
    a = session(tmp_path / "cls.onnx")
    pool = feeds(64, seed=3, side=16)
    logit = np.array([float(a.run(None, f)[0].ravel()[0]) for f in pool])
    order = np.argsort(logit)
    high, low = [pool[i] for i in order[32:]], [pool[i] for i in order[:8]]
    quantize_int8(tmp_path / "cls.onnx", tmp_path / "stem.onnx", high, keep_fp32="stem")
    int8 = session(tmp_path / "stem.onnx")
    got = [float(int8.run(None, f)[0].ravel()[0]) for f in low]
    np.testing.assert_allclose(got, logit[order[:8]], atol=0.1 * np.ptp(logit))
