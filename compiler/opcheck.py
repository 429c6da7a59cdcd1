"""Check a model against a board's accelerator: operators, tensor ranks, input sizes, conv shapes.

Every problem names the node (or tensor) and the limit it breaks, so the fix is obvious.
"""
from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import shape_inference

from .boards import BoardProfile


@dataclass(frozen=True)
class OpProblem:
    node: str  # node name (or tensor name for rank/input problems)
    op: str
    message: str

    def __str__(self) -> str:
        return f"node '{self.node}' ({self.op}): {self.message}"


# Quantization adds these around every tensor; they are how INT8 is expressed, not operators the NPU runs.
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return list(a.ints) if a.ints else (a.i if a.type == onnx.AttributeProto.INT else default)
    return default


def check_model(model: onnx.ModelProto, board: BoardProfile) -> list[OpProblem]:
    """Problems that stop `model` from running on `board`'s accelerator (empty when it fits or has none)."""
    npu = board.npu
    if npu is None:
        return []
    problems: list[OpProblem] = []
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:
        inferred = model
    g = inferred.graph
    inits = {t.name: t for t in g.initializer}
    for i, node in enumerate(g.node):
        name = node.name or f"#{i}"
        if node.op_type not in QDQ_OPS and npu.op_support.runs(node.op_type) is False:
            listing = "is on its list of unsupported operators" if npu.op_support.mode == "denylist" else "is not on its list of supported operators"
            problems.append(OpProblem(name, node.op_type, f"{board.id}'s accelerator cannot run {node.op_type}: it {listing} ({npu.op_support.source})"))
        if node.op_type == "Conv" and npu.conv is not None:
            w = inits.get(node.input[1]) if len(node.input) > 1 else None
            kernel = _attr(node, "kernel_shape") or (list(w.dims[2:]) if w is not None else [])
            stride = _attr(node, "strides") or []
            kmax, smax = int(npu.conv.kernel_max.value), int(npu.conv.stride_max.value)
            if any(k > kmax for k in kernel):
                problems.append(OpProblem(name, "Conv", f"kernel {kernel} exceeds {board.id}'s limit of {kmax}"))
            if any(s > smax for s in stride):
                problems.append(OpProblem(name, "Conv", f"stride {stride} exceeds {board.id}'s limit of {smax}"))
    if npu.max_tensor_rank is not None:
        limit = int(npu.max_tensor_rank.value)
        for vi in [*g.input, *g.value_info, *g.output]:
            dims = vi.type.tensor_type.shape.dim
            significant = [d for d in dims if not (d.HasField("dim_value") and d.dim_value == 1)]
            if len(significant) > limit:
                problems.append(OpProblem(vi.name, "tensor", f"rank {len(significant)} (dims > 1) exceeds {board.id}'s limit of {limit}"))
    if npu.max_input_side is not None:
        limit = int(npu.max_input_side.value)
        for vi in g.input:
            if vi.name in inits:
                continue
            dims = [d.dim_value for d in vi.type.tensor_type.shape.dim if d.HasField("dim_value")]
            if len(dims) == 4 and max(dims[2:]) > limit:
                problems.append(OpProblem(vi.name, "input", f"input {dims[2]}x{dims[3]} exceeds {board.id}'s largest input side {limit}"))
    return problems
