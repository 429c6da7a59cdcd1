"""What every distillation task shares: reproducible torch setup, the torchrun guard, ONNX export
with its checks, and the standard model-card fields."""
from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import torch

OPSET = 17
DEFAULT_THREADS = 2


def seed_everything(seed: int, threads: int = DEFAULT_THREADS) -> None:
    """Seed python, numpy and torch; deterministic kernels; a fixed thread count (results on
    a CPU depend on the thread count through reduction order)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def is_main_process() -> bool:
    """True unless running under torchrun as a rank other than 0 (only rank 0 writes files)."""
    return not is_distributed() or torch.distributed.get_rank() == 0


def torch_version() -> str:
    return f"torch {torch.__version__.split('+')[0]}"


@contextmanager
def timed(store: dict, key: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        store[key] = round(time.perf_counter() - t0, 2)


class ExportError(RuntimeError):
    """The exported ONNX file is invalid or disagrees with the torch model."""


def export_onnx(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path,
                input_names: list[str], output_names: list[str], rtol: float = 1e-4,
                atol: float = 1e-5, check_inputs: tuple[torch.Tensor, ...] | None = None) -> Path:
    """Export to a single-file ONNX (opset 17, dynamic batch), run onnx.checker, and compare
    onnxruntime (CPUExecutionProvider) with torch on ``check_inputs`` (default: ``example``).
    Raises :class:`ExportError` when they differ beyond the tolerance."""
    import onnxruntime as ort

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    dyn = {n: {0: "batch"} for n in [*input_names, *output_names]}
    with torch.no_grad():
        torch.onnx.export(model, example, str(path), input_names=input_names, output_names=output_names,
                          opset_version=OPSET, dynamic_axes=dyn, dynamo=False)
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    # strip the producer version so the same weights give the same bytes across torch patch releases
    m.producer_version = ""
    onnx.save(m, str(path))
    inputs = check_inputs or example
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = model(*inputs)
    want = want if isinstance(want, (tuple, list)) else (want,)
    got = sess.run(None, {n: t.numpy() for n, t in zip(input_names, inputs)})
    for name, a, b in zip(output_names, got, want):
        if not np.allclose(a, b.numpy(), rtol=rtol, atol=atol):
            err = float(np.abs(a - b.numpy()).max())
            raise ExportError(f"{path}: onnxruntime output {name!r} differs from torch by {err:.3g} "
                              f"(rtol {rtol}, atol {atol})")
    return path

