"""How far the cost model is from reality: its predictions against published latencies on every
board that has them, and against latencies measured here on host-cpu, in one run.

    python bench/costmodel.py            # prints the table, writes bench/results/costmodel.json

Reference model sizes (multiply-accumulates at the published input size):
  yolov8n 8.7 GFLOPs, yolov8s 28.6 GFLOPs at 640 (Ultralytics YOLOv8 docs, Performance Metrics
  table; FLOPs = 2 x MACs as Ultralytics counts them); yolov5n 4.5, yolov5s 16.5 GFLOPs at 640
  (ultralytics/yolov5 README, Pretrained Checkpoints table; yolov5s_relu has the same convolutions);
  yolov8n-pose 9.2 GFLOPs at 640 (Ultralytics pose docs table); MobileNetV2 1.0 at 224:
  300 M MACs (Sandler et al., MobileNetV2, CVPR 2018, Table 4).
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.boards import load_board_profiles  # noqa: E402
from compiler.costmodel import latency_ms  # noqa: E402
from compiler.onnxinfo import analyse  # noqa: E402
from compiler.quantize import quantize_int8, session  # noqa: E402

REFERENCE_MACS = {  # model -> (MACs at its reference side, reference side)
    "yolov8n": (8.7e9 / 2, 640),
    "yolov8s": (28.6e9 / 2, 640),
    "yolov5n": (4.5e9 / 2, 640),
    "yolov5s": (16.5e9 / 2, 640),
    "yolov5s_relu": (16.5e9 / 2, 640),
    "yolov8n-pose": (9.2e9 / 2, 640),
    "mobilenetv2": (0.3e9, 224),
}


def published_rows(boards):
    rows = []
    for board in boards.values():
        for r in board.published_latencies:
            if r.model not in REFERENCE_MACS or r.dtype != "int8":
                continue
            macs, side = REFERENCE_MACS[r.model]
            macs *= (r.input_size / side) ** 2
            actual = 1000.0 / r.frames_per_second
            pred = latency_ms(macs, board, "npu" if board.npu is not None else "cpu")
            rows.append({
                "board": board.id, "model": r.model, "input": r.input_size, "published_ms": round(actual, 3),
                "predicted_ms": round(pred, 3), "error": round((pred - actual) / actual, 4), "verified": r.verified,
                "calibration_row": r.model == "yolov8n" and r.input_size == 640 and r.verified,
            })
    return rows


def _conv_stack(path: Path, side: int, width: int, depth: int, seed: int = 0):
    """A detector-like conv stack (stride-2 stem, 3x3 convs, 1x1 head) to time on this CPU."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, c, name = [], [], 3, "x"
    for i in range(depth):
        stride = 2 if i < 3 else 1
        w = rng.normal(0, np.sqrt(2 / (9 * c)), (width, c, 3, 3)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [name, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1], strides=[stride, stride]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        c, name = width, f"r{i}"
    inits.append(numpy_helper.from_array(rng.normal(0, 0.1, (6, c, 1, 1)).astype(np.float32), "wh"))
    nodes.append(helper.make_node("Conv", [name, "wh"], ["y"]))
    graph = helper.make_graph(nodes, "stack", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, side, side])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _time(sess, feed, runs=30):
    sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measured_rows(board, zoo_paths):
    rows = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        models = [(p.parent.parent.name + "/" + p.parent.name, p) for p in zoo_paths]
        for side, width, depth in ((256, 32, 6), (320, 48, 7), (416, 64, 8)):
            p = Path(tmp) / f"stack{side}.onnx"
            _conv_stack(p, side, width, depth)
            models.append((f"conv-stack-{side}", p))
        for name, fp32 in models:
            info = analyse(fp32)
            feed_name, shape = next(iter(info.inputs.items()))
            if len(shape) != 4 or any(isinstance(d, str) for d in shape[1:]):
                continue
            shape = [1 if isinstance(d, str) else d for d in shape]
            calib = [{feed_name: rng.random(shape, dtype=np.float32)} for _ in range(8)]
            int8 = Path(tmp) / f"{name.replace('/', '_')}.int8.onnx"
            quantize_int8(fp32, int8, calib, keep_fp32="stem" if board.npu is None else "none")  # as the builder does
            threads = int(board.runtime_threads.value)
            ms8 = _time(session(int8, threads), calib[0])
            ms32 = _time(session(fp32, threads), calib[0])
            pred = latency_ms(info.macs, board, "cpu", int8=True)
            rows.append({"model": name, "macs": info.macs, "measured_int8_ms": round(ms8, 3), "measured_fp32_ms": round(ms32, 3),
                         "predicted_ms": round(pred, 3), "error": round((pred - ms8) / ms8, 4),
                         "int8_speedup": round(ms32 / ms8, 3)})
    return rows


def main():
    boards = load_board_profiles()
    pub = published_rows(boards)
    zoo = sorted((ROOT / "models").glob("*/*/model.onnx"))
    meas = measured_rows(boards["host-cpu"], zoo)
    print(f"{'board':<17}{'model':<14}{'in':>5}{'published':>11}{'predicted':>11}{'error':>8}")
    for r in pub:
        flag = " (calibration row)" if r["calibration_row"] else ("" if r["verified"] else " [unverified]")
        print(f"{r['board']:<17}{r['model']:<14}{r['input']:>5}{r['published_ms']:>9.2f}ms{r['predicted_ms']:>9.2f}ms{r['error']:>+8.0%}{flag}")
    print(f"\n{'host-cpu model':<34}{'MMACs':>8}{'INT8':>9}{'FP32':>9}{'predicted':>11}{'error':>8}{'INT8 x':>8}")
    for r in meas:
        print(f"{r['model']:<34}{r['macs'] / 1e6:>8.1f}{r['measured_int8_ms']:>7.2f}ms{r['measured_fp32_ms']:>7.2f}ms"
              f"{r['predicted_ms']:>9.2f}ms{r['error']:>+8.0%}{r['int8_speedup']:>8.2f}")
    independent = [abs(r["error"]) for r in pub if r["verified"] and not r["calibration_row"]]
    summary = {
        "published_mean_abs_error": round(statistics.mean(independent), 4) if independent else None,
        "published_rows_compared": len(independent),
        "measured_mean_abs_error": round(statistics.mean(abs(r["error"]) for r in meas), 4) if meas else None,
        "note": "published errors exclude each board's own calibration row (yolov8n 640, which sets its efficiency) "
                "and unverified rows; measured = INT8 onnxruntime on this CPU with the board's runtime threads",
    }
    print(f"\nmean |error| vs published (independent, verified rows): {summary['published_mean_abs_error']}, "
          f"vs measured on host-cpu: {summary['measured_mean_abs_error']}")
    out = ROOT / "bench" / "results" / "costmodel.json"
    out.write_text(json.dumps({"summary": summary, "published": pub, "measured_host_cpu": meas}, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
