"""Measure the INT8 convolution throughput of this machine under onnxruntime.

Gives the figure behind ``board_profiles/host-cpu.yaml`` ``cpu.int8_gops``: a
detector-like stack of 3x3 convolutions (plus a 1x1 neck), built directly with
``onnx.helper``, quantised statically to QDQ INT8 (QUInt8 activations, QInt8
per-channel weights: the same recipe the compiler ships) and timed with
onnxruntime on ``--threads`` intra-op threads.

Ops are counted the way detector FLOPs are quoted (Ultralytics, Hailo model
zoo "OPS (G)"): 2 x multiply-accumulates of every Conv. The reported figure is
``ops / median latency``.

Run:  python bench/host_cpu_gops.py --threads 2 --runs 30
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)

# (in_channels, out_channels, kernel, stride): a small detector backbone slice
LAYERS = [(3, 16, 3, 2), (16, 32, 3, 2), (32, 32, 3, 1), (32, 64, 3, 2),
          (64, 64, 3, 1), (64, 128, 3, 2), (128, 128, 3, 1), (128, 64, 1, 1)]


def build_model(size: int, seed: int = 0) -> tuple[onnx.ModelProto, float]:
    """Float ONNX model of LAYERS at size x size, and its op count (2 x MACs)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev, hw, ops = "input", size, 0.0
    for i, (cin, cout, k, s) in enumerate(LAYERS):
        w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
        b = np.zeros(cout, np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        pad = k // 2
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"],
                                      kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        hw = (hw + 2 * pad - k) // s + 1
        ops += 2.0 * hw * hw * cout * cin * k * k
        prev = f"r{i}"
    graph = helper.make_graph(
        nodes, "gops_bench",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, ops


class _Calib(CalibrationDataReader):
    def __init__(self, size: int, n: int = 8) -> None:
        rng = np.random.default_rng(1)
        self._it = iter([{"input": rng.random((1, 3, size, size), np.float32)} for _ in range(n)])

    def get_next(self):  # noqa: D401 - onnxruntime API
        return next(self._it, None)


def measure(size: int, threads: int, runs: int) -> dict:
    model, ops = build_model(size)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
        onnx.save(model, fp32)
        quantize_static(str(fp32), str(int8), _Calib(size), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(int8), opts, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(2).random((1, 3, size, size), np.float32)
        for _ in range(5):
            sess.run(None, {"input": x})
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            sess.run(None, {"input": x})
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"input_size": size, "threads": threads, "runs": runs, "gops_model": ops / 1e9,
            "median_ms": med * 1e3, "int8_gops": ops / med / 1e9}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--size", type=int, default=320)
    args = ap.parse_args(argv)
    result = measure(args.size, args.threads, args.runs)
    result.update({"onnxruntime": ort.__version__, "machine": platform.machine(),
                   "processor": platform.processor()})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
