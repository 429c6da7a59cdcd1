"""Export of a trained student to the zoo's single-file ONNX (opset 17), with its checks:
BatchNorm folded, Constant/Identity nodes turned into initializers so the graph holds only
NPU-friendly operators, onnx.checker, and onnxruntime against torch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ..common import ExportError, export_onnx
from .model import NPU_OPS, Student, fold_bn

INPUT, OUTPUTS = "images", ["heatmap", "box"]


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constants become initializers and Identity nodes are bypassed (a new model)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    outputs = {o.name for o in g.output}
    for n in [n for n in g.node if n.op_type == "Constant"]:
        arr = numpy_helper.to_array(n.attribute[0].t)
        g.initializer.append(numpy_helper.from_array(arr, n.output[0]))
        g.node.remove(n)
    for n in [n for n in g.node if n.op_type == "Identity"]:
        src, dst = n.input[0], n.output[0]
        g.node.remove(n)
        if dst in outputs:
            for p in g.node:
                for k, o in enumerate(p.output):
                    if o == src:
                        p.output[k] = dst
            for p in g.node:
                for k, i in enumerate(p.input):
                    if i == src:
                        p.input[k] = dst
        else:
            for p in g.node:
                for k, i in enumerate(p.input):
                    if i == dst:
                        p.input[k] = src
    used = {i for n in g.node for i in n.input}
    for init in [t for t in g.initializer if t.name not in used]:
        g.initializer.remove(init)
    return m


def operators(path: Path) -> dict[str, int]:
    ops: dict[str, int] = {}
    for n in onnx.load(str(path)).graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return ops


def export(model: Student, path: Path, seed: int = 0) -> Path:
    size = model.arch.size
    fused = fold_bn(model.eval())
    g = torch.Generator().manual_seed(seed)
    example = torch.rand(1, 3, size, size, generator=g)
    check = torch.rand(2, 3, size, size, generator=g)
    with torch.no_grad():   # the folded graph must equal the trained one
        a, b = model(check), fused(check)
    for x, y in zip(a, b):
        if not torch.allclose(x, y, rtol=1e-3, atol=1e-4):
            raise ExportError(f"BatchNorm folding changed the outputs by {float((x - y).abs().max()):.3g}")
    export_onnx(fused, (example,), path, [INPUT], OUTPUTS, rtol=1e-3, atol=1e-4, check_inputs=(check,))
    m = simplify(onnx.load(str(path)))
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))
    bad = sorted(set(operators(path)) - NPU_OPS)
    if bad:
        raise ExportError(f"{path}: operators outside the NPU-friendly set: {bad}")
    from compiler.quantize import session
    got = session(path).run(None, {INPUT: check.numpy()})
    with torch.no_grad():
        want = fused(check)
    for name, x, y in zip(OUTPUTS, got, want):
        if not np.allclose(x, y.numpy(), rtol=1e-3, atol=1e-4):
            raise ExportError(f"{path}: {name} differs from torch by {float(np.abs(x - y.numpy()).max()):.3g}")
    return path
