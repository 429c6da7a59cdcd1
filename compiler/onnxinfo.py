"""What an ONNX model costs: parameters, MACs, operators and peak activation memory.

One module for the whole project: distillation writes these figures into model cards, the
planner reads them, the op checks walk the same operator list.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

_DTYPE_BYTES = {
    onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.DOUBLE: 8,
    onnx.TensorProto.INT8: 1, onnx.TensorProto.UINT8: 1, onnx.TensorProto.INT16: 2,
    onnx.TensorProto.INT32: 4, onnx.TensorProto.INT64: 8, onnx.TensorProto.BOOL: 1,
}


class OnnxInfoError(ValueError):
    """The file is not an ONNX model we can analyse (named with the reason)."""


@dataclass(frozen=True)
class OnnxInfo:
    params: int
    macs: int  # multiply-accumulates per inference at the model's static input shape
    operators: dict[str, int]  # op type -> count
    peak_activation_bytes: int  # largest sum of live intermediate tensors (weights excluded)
    weight_bytes: int
    inputs: dict[str, list[int | str]]
    outputs: dict[str, list[int | str]]
    opset: int
    max_rank: int  # highest tensor rank anywhere in the graph


def _shape(value_info) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def _numel(shape: list[int | str], batch: int = 1) -> int | None:
    n = 1
    for i, d in enumerate(shape):
        if isinstance(d, str):
            if i == 0:
                d = batch
            else:
                return None
        n *= int(d)
    return n


def load_model(path: str | Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError, OSError, ...: all mean "not a model"
        raise OnnxInfoError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None


def analyse(model: onnx.ModelProto | str | Path) -> OnnxInfo:
    if not isinstance(model, onnx.ModelProto):
        model = load_model(model)
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as e:
        raise OnnxInfoError(f"shape inference failed: {e}") from None
    g = inferred.graph
    inits = {t.name: t for t in g.initializer}
    params = sum(int(np.prod(t.dims)) if len(t.dims) else 1 for t in g.initializer)
    weight_bytes = sum((int(np.prod(t.dims)) if len(t.dims) else 1) * _DTYPE_BYTES.get(t.data_type, 4) for t in g.initializer)
    infos = {vi.name: vi for vi in [*g.value_info, *g.input, *g.output]}
    shapes = {name: _shape(vi) for name, vi in infos.items()}
    elem = {name: _DTYPE_BYTES.get(vi.type.tensor_type.elem_type, 4) for name, vi in infos.items()}
    for name, t in inits.items():
        shapes[name] = list(t.dims)

    macs = 0
    for node in g.node:
        macs += _node_macs(node, shapes, inits)

    # liveness scan in graph (topological) order: a tensor lives from its producer to its last consumer
    last_use: dict[str, int] = {}
    for i, node in enumerate(g.node):
        for name in node.input:
            last_use[name] = i
    for o in g.output:
        last_use[o.name] = len(g.node)

    def nbytes(name: str) -> int:
        n = _numel(shapes.get(name, []), 1) if name in shapes else None
        return (n or 0) * elem.get(name, 4)

    live: dict[str, int] = {i.name: nbytes(i.name) for i in g.input if i.name not in inits}
    peak = sum(live.values())
    for i, node in enumerate(g.node):
        for name in node.output:
            if name:
                live[name] = nbytes(name)
        peak = max(peak, sum(live.values()))
        for name in list(live):
            if last_use.get(name, -1) <= i and name not in {o.name for o in g.output}:
                del live[name]
    max_rank = max((len(s) for s in shapes.values()), default=0)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return OnnxInfo(
        params=params,
        macs=int(macs),
        operators=dict(sorted(Counter(n.op_type for n in g.node).items())),
        peak_activation_bytes=int(peak),
        weight_bytes=int(weight_bytes),
        inputs={i.name: _shape(i) for i in g.input if i.name not in inits},
        outputs={o.name: _shape(o) for o in g.output},
        opset=opset,
        max_rank=max_rank,
    )


def _node_macs(node, shapes, inits) -> int:
    op = node.op_type
    out = shapes.get(node.output[0]) if node.output else None
    if op in ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose"):
        w_name = node.input[3] if op == "QLinearConv" else node.input[1]
        w = shapes.get(w_name)
        if not w or out is None:
            return 0
        n_out = _numel(out)
        if n_out is None:
            return 0
        if op == "ConvTranspose":
            n_in = _numel(shapes.get(node.input[0], []))
            return int((n_in or 0) * int(np.prod(w[1:])))
        # each output element: (C_in / groups) * kH * kW MACs = prod(w[1:])
        return int(n_out * int(np.prod(w[1:])))
    if op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
        a = shapes.get(node.input[0])
        if not a or out is None:
            return 0
        n_out = _numel(out)
        k = a[-1] if not (op == "Gemm" and any(at.name == "transA" and at.i for at in node.attribute)) else a[-2]
        if n_out is None or isinstance(k, str):
            return 0
        return int(n_out * int(k))
    return 0
