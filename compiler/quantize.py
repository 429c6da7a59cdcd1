"""Static INT8 quantization (QDQ, per-channel) and the accuracy gate that guards it.

Format chosen for this project (fast on onnxruntime's CPU provider and accepted by NPU
toolchains that take QDQ ONNX): QUInt8 activations, QInt8 per-channel weights, MinMax calibration
on frames that match the site. The gate compares FP32 and INT8 on held-out inputs of the same
kind and refuses (or keeps a higher-precision tier) past a threshold.

Mixed precision on CPU boards (``keep_fp32="stem"``): onnxruntime's INT8 convolutions work on
NHWC uint8 vectors along the channel axis, so a convolution that reads the 3-channel image (the
*stem*) or the 16-channel, half-resolution map right after it runs 2-3x *slower* in INT8 than
in FP32, and the NCHW->NHWC transpose plus quantization of the full-resolution input cost as much
again; measured on the zoo's detectors this made whole-model INT8 slower than FP32 (0.85-1.0x,
``bench/results/int8.json``). Keeping the stem convolution, and a depthwise convolution that
directly follows it, in FP32 moves the INT8 boundary to a small tensor: detectors 1.3-1.4x faster
than FP32, pose and PPE faster still. A classifier's last layer stays FP32 too (its logits' range
would otherwise be only what calibration saw: :func:`classifier_heads`). The rule is structural
(the same inputs give the same bytes), not timed at build time. NPU boards get the whole model in
INT8 (their toolchains want it).
"""
from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


class QuantizeError(RuntimeError):
    """Quantization failed or the result did not pass the accuracy gate."""


def session(path: str | Path | bytes, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(path if isinstance(path, bytes) else str(path), opts, providers=["CPUExecutionProvider"])


class _Reader:
    """onnxruntime CalibrationDataReader over a list of input dicts."""

    def __init__(self, samples: Sequence[dict[str, np.ndarray]]):
        self._it = iter(samples)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - not used by MinMax
        pass


def stem_nodes(model: onnx.ModelProto) -> list[str]:
    """The convolution that reads a graph input, its activation, and a depthwise convolution fed by it
    (with its activation): the nodes ``keep_fp32="stem"`` leaves in FP32 (see the module docstring)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name: t for t in model.graph.initializer}
    inputs = {i.name for i in model.graph.input if i.name not in inits}

    def only(name: str, op_types: tuple[str, ...]) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type in op_types else None

    def with_activation(node: onnx.NodeProto) -> tuple[list[str], str]:
        act = only(node.output[0], ("Relu", "Clip", "LeakyRelu", "HardSwish", "Sigmoid"))
        return ([node.name, act.name], act.output[0]) if act is not None else ([node.name], node.output[0])

    stems = [n for n in model.graph.node if n.op_type == "Conv" and n.input and n.input[0] in inputs]
    if len(stems) != 1:
        return []
    names, out = with_activation(stems[0])
    nxt = only(out, ("Conv",))
    if nxt is not None and len(nxt.input) > 1 and nxt.input[1] in inits:
        group = next((a.i for a in nxt.attribute if a.name == "group"), 1)
        w_in = inits[nxt.input[1]].dims[1] if len(inits[nxt.input[1]].dims) > 1 else 0
        if group > 1 and w_in == 1:  # depthwise: one input channel per group
            names += with_activation(nxt)[0]
    return names


def classifier_heads(model: onnx.ModelProto) -> list[str]:
    """The layers that write a *classifier's* logits: a Gemm/MatMul writing a graph output, or a
    Conv whose output reaches one only through Flatten/Reshape-like ops (a per-crop vector, not a
    map). Their INT8 output range is only what calibration saw, so a class the calibration frames
    never showed (no helmet, on a site where every calibration worker wears one) would clip to 0."""
    producer = {o: n for n in model.graph.node for o in n.output}
    heads = []
    for out in model.graph.output:
        node, reshaped = producer.get(out.name), False
        while node is not None and node.op_type in ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity"):
            node, reshaped = producer.get(node.input[0]), True
        if node is not None and node.name not in heads and (
                node.op_type in ("Gemm", "MatMul") or (node.op_type == "Conv" and reshaped)):
            heads.append(node.name)
    return heads


def quantize_int8(fp32: str | Path, out: str | Path, calibration: Sequence[dict[str, np.ndarray]],
                  exclude_ops: Iterable[str] = (), keep_fp32: str = "none") -> Path:
    """Write a static QDQ INT8 copy of `fp32` to `out`, calibrated on `calibration` (input dicts).
    ``keep_fp32="stem"`` leaves the stem convolution(s) and a classifier's logits layer in FP32
    (CPU boards; module docstring)."""
    if keep_fp32 not in ("none", "stem"):
        raise ValueError(f"keep_fp32 must be 'none' or 'stem', not {keep_fp32!r}")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise QuantizeError("no calibration samples: quantization needs frames that match the site")
    out, fp32 = Path(out).resolve(), Path(fp32).resolve()
    # onnxruntime's pre-processing leaves scratch *.data files in the working directory: work in a temp one
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
        except Exception:  # symbolic shape inference fails on some graphs; the plain optimiser still helps
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        nodes_excluded = [n.name for n in model.graph.node if n.op_type in set(exclude_ops)]
        if keep_fp32 == "stem":
            nodes_excluded += [n for n in (*stem_nodes(model), *classifier_heads(model)) if n not in nodes_excluded]
        try:
            quantize_static(
                str(pre), str(out), _Reader(list(calibration)),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=nodes_excluded or None,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        except Exception as e:
            raise QuantizeError(f"quantizing {fp32} failed: {type(e).__name__}: {e}") from None
    return out


@dataclass(frozen=True)
class GateResult:
    passed: bool
    metric: str
    value: float
    threshold: float
    detail: str

    def __str__(self) -> str:
        verdict = "pass" if self.passed else "REFUSED"
        return f"{verdict}: {self.metric} {self.value:.4f} (threshold {self.threshold:g}); {self.detail}"


def output_agreement(fp32: ort.InferenceSession, int8: ort.InferenceSession,
                     samples: Sequence[dict[str, np.ndarray]]) -> tuple[float, float]:
    """(worst cosine similarity, worst relative L2 error) over every output and sample."""
    worst_cos, worst_rel = 1.0, 0.0
    for feed in samples:
        for a, b in zip(fp32.run(None, feed), int8.run(None, feed)):
            a = np.asarray(a, dtype=np.float64).ravel()
            b = np.asarray(b, dtype=np.float64).ravel()
            na, nb = np.linalg.norm(a), np.linalg.norm(b)
            cos = 1.0 if na == nb == 0 else float(a @ b / max(na * nb, 1e-12))
            rel = float(np.linalg.norm(a - b) / max(na, 1e-12))
            worst_cos, worst_rel = min(worst_cos, cos), max(worst_rel, rel)
    return worst_cos, worst_rel


# A task gate scores an FP32 and an INT8 session on held-out samples: returns (metric name, fp32 score, int8 score).
TaskGate = Callable[[ort.InferenceSession, ort.InferenceSession, Sequence[dict[str, np.ndarray]]], tuple[str, float, float]]

MIN_COSINE = 0.98
MAX_TASK_DROP = 0.01  # at most one point of the task's own metric


def accuracy_gate(fp32_path: str | Path, int8_path: str | Path, holdout: Sequence[dict[str, np.ndarray]],
                  task_gate: TaskGate | None = None, min_cosine: float = MIN_COSINE,
                  max_drop: float = MAX_TASK_DROP) -> GateResult:
    """Compare FP32 and INT8 on held-out inputs. With a task gate (detections matched by IoU,
    keypoint error...), the task metric decides; otherwise raw-output cosine similarity."""
    a, b = session(fp32_path), session(int8_path)
    cos, rel = output_agreement(a, b, holdout)
    if task_gate is None:
        return GateResult(cos >= min_cosine, "output cosine", cos, min_cosine, f"worst relative L2 error {rel:.3f} over {len(holdout)} samples")
    name, s32, s8 = task_gate(a, b, holdout)
    drop = s32 - s8
    return GateResult(drop <= max_drop, f"{name} drop", drop, max_drop,
                      f"FP32 {s32:.4f}, INT8 {s8:.4f}; output cosine {cos:.4f} over {len(holdout)} samples")
