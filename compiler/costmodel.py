"""Estimated latency and memory of a model on a board.

latency = 2 * MACs / throughput + call overhead, where throughput is the board's realistic INT8
rate on one accelerator core (`effective_gops`: peak x an efficiency derived from a published
fps, see the board profile's sources) or, on host-cpu, the measured INT8 rate of its CPU.
Every figure except host-cpu's is an estimate and is labelled so; `bench/costmodel.py` checks the
predictions against published and measured latencies.
"""
from __future__ import annotations

from dataclasses import dataclass

from .boards import BoardProfile, effective_gops
from .modelcard import ModelCard

# Fixed cost per inference call (dispatch, input copy, output fetch). Measured on host-cpu with
# onnxruntime for a 1-node model (bench/costmodel.py prints the current figure); used for every board.
CALL_OVERHEAD_MS = 0.05
# FP32 models on a CPU run about 1.5-2.7x slower than static INT8 (REFERENCES.md, "onnxruntime INT8
# on CPUs", measured on this kind of machine); 2.0 sits in that range.
FP32_SLOWDOWN = 2.0


@dataclass(frozen=True)
class Estimate:
    latency_ms: float
    weight_bytes: int
    activation_bytes: int
    unit: str  # "npu" or "cpu": where the model runs
    measured_board: bool  # True only on host-cpu, where the throughput figure is a measurement

    @property
    def memory_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes


def runs_on(card: ModelCard, board: BoardProfile) -> str:
    """Convolutional models that the builder quantizes go to the accelerator; tiny FP32 models stay on the CPU."""
    return "npu" if (board.npu is not None and card.quantize) else "cpu"


def latency_ms(macs: float, board: BoardProfile, unit: str = "npu", int8: bool = True) -> float:
    """Estimated milliseconds per inference of a model with `macs` multiply-accumulates."""
    if unit == "npu" and board.npu is not None:
        gops = effective_gops(board, cores=1)
    else:
        gops = board.cpu.int8_gops.value if board.cpu.int8_gops is not None else effective_gops(board, cores=1)
        if not int8:
            gops /= FP32_SLOWDOWN
    return 2.0 * macs / (gops * 1e9) * 1e3 + CALL_OVERHEAD_MS


def estimate(card: ModelCard, board: BoardProfile) -> Estimate:
    unit = runs_on(card, board)
    latency = latency_ms(card.costs.macs, board, unit, int8=card.quantize)
    int8 = card.quantize
    weights = card.costs.params if int8 else card.costs.weight_bytes
    acts = card.costs.peak_activation_bytes // 4 if int8 else card.costs.peak_activation_bytes
    return Estimate(latency, int(weights), int(acts), unit, measured_board=board.npu is None)


def capacity_ms_per_s(board: BoardProfile, unit: str) -> float:
    """Milliseconds of compute per second of wall time: one second per accelerator core, or per runtime thread."""
    if unit == "npu" and board.npu is not None:
        return 1000.0 * board.npu.cores.value
    threads = board.runtime_threads.value if board.runtime_threads is not None else board.cpu.cores.value
    return 1000.0 * threads
