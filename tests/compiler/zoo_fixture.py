"""A tiny model zoo built in tmp_path: real ONNX files with real cards, so builder tests do not
depend on what distill/ has trained."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compiler.modelcard import (
    Metric, ModelCard, Preprocess, TensorSpec, Training, costs_of, sha256_of, write_card,
)


def _conv_model(in_shape, out_channels, seed, pool=False):
    rng = np.random.default_rng(seed)
    c = in_shape[1]
    nodes, inits = [], []
    name = "input"
    for i, width in enumerate((8, 16)):
        w = rng.normal(0, np.sqrt(2 / (9 * c)), (width, c, 3, 3)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [name, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1], strides=[2, 2]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        c, name = width, f"r{i}"
    if pool:
        nodes.append(helper.make_node("GlobalAveragePool", [name], ["gap"], name="gap"))
        name = "gap"
    inits.append(numpy_helper.from_array(rng.normal(0, 0.1, (out_channels, c, 1, 1)).astype(np.float32), "wh"))
    nodes.append(helper.make_node("Conv", [name, "wh"], ["output"], name="head"))
    oh = 1 if pool else in_shape[2] // 4
    ow = 1 if pool else in_shape[3] // 4
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(in_shape))],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, out_channels, oh, ow])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _mlp_model(n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.normal(0, 0.1, (n_in, 32)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.1, (32, n_out)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["input", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("MatMul", ["hr", "w2"], ["output"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, n_in])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, n_out])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _write(root: Path, task, variant, model, quality, metric, preprocess, quantize=True, conditions=("any",)):
    folder = root / task / variant
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    inp = model.graph.input[0]
    out = model.graph.output[0]
    dims = lambda vi: [d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    card = ModelCard(
        task=task, variant=variant, description=f"fixture {task}", sha256=sha256_of(folder / "model.onnx"),
        bytes=(folder / "model.onnx").stat().st_size, inputs=[TensorSpec(name=inp.name, shape=dims(inp), layout="NCHW" if len(dims(inp)) == 4 else "NC")],
        outputs=[TensorSpec(name=out.name, shape=dims(out))], preprocess=preprocess, decoder=f"fixture-{task}",
        classes=["person", "machine"] if task == "detector" else [], quantize=quantize, conditions=list(conditions),
        costs=costs_of(folder / "model.onnx"),
        metrics=[Metric(name=metric, value=quality, data="synthetic", split="fixture", higher_is_better=metric != "ADE_m")],
        training=Training(command="tests/compiler/zoo_fixture.py", seed=0, data=["random weights"]),
    )
    write_card(card, folder)


def make_zoo(root: Path) -> Path:
    frame = Preprocess(color="rgb", resize="letterbox", scale=1 / 255)
    crop = Preprocess(color="rgb", resize="crop", scale=1 / 255)
    _write(root, "detector", "det-64", _conv_model((1, 3, 64, 64), 6, 1), 0.8, "AP50", frame)
    _write(root, "detector", "det-32", _conv_model((1, 3, 32, 32), 6, 2), 0.7, "AP50", frame)
    _write(root, "detector", "det-32-night", _conv_model((1, 3, 32, 32), 6, 3), 0.75, "AP50", frame, conditions=("night",))
    _write(root, "ppe", "ppe-32", _conv_model((1, 3, 32, 16), 2, 4, pool=True), 0.9, "accuracy", crop)
    _write(root, "pose", "pose-32", _conv_model((1, 3, 32, 16), 17, 5), 0.7, "PCK@0.2", crop)
    _write(root, "posture", "posture-mlp", _mlp_model(51, 6, 6), 0.9, "accuracy", Preprocess(), quantize=False)
    _write(root, "trajectory", "traj-mlp", _mlp_model(16, 24, 7), 0.45, "ADE_m", Preprocess(rate_hz=2.5), quantize=False)
    return root
