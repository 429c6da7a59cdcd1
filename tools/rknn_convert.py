"""Run rknn-toolkit2 on one model: FP32 ONNX -> INT8 .rknn, then the PC simulator on held-out inputs.

This script runs INSIDE the toolkit's own virtualenv (.ci/rknn-env.sh), never in the project's:
it imports nothing of sitewarden, only the toolkit and numpy. compiler/rknn.py writes a request
(JSON), runs `<venv>/bin/python tools/rknn_convert.py request.json` and reads back result.json;
the comparison with onnxruntime and the verdict happen on the project's side.

Request fields:
  model, out            FP32 ONNX in, .rknn out
  target                rknn target_platform (rk3588, rk3566, rv1106, ...)
  inputs, input_size_list   input names and fixed NCHW shapes (batch 1), optional
  mean_values, std_values   per input, in pixel units (the toolkit folds them into the model)
  dataset               dataset.txt: one calibration .npy (NCHW pixels) per line
  holdout               .npy inputs (NCHW pixels) to run through the simulator
  analysis              .npy inputs for accuracy_analysis (per-layer cosine), may be empty
  workdir               where simulator outputs and the analysis snapshot go
  quantized_algorithm   normal | mmse | kl_divergence (default normal)
Result (written to <workdir>/result.json): ok, stage (where it failed), error, toolkit_version,
sim_outputs ([[npy per output] per holdout input]), analysis_file, seconds per stage.
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path


def _run(req: dict, res: dict) -> None:
    import numpy as np

    t0 = time.time()
    from rknn.api import RKNN

    res["seconds"] = {"import": round(time.time() - t0, 3)}
    work = Path(req["workdir"])
    rknn = RKNN(verbose=False)
    try:
        try:
            res["toolkit_version"] = _toolkit_version()

            def stage(name: str, call):
                res["stage"] = name
                t = time.time()
                ret = call()
                res["seconds"][name] = round(time.time() - t, 3)
                if isinstance(ret, int) and ret != 0:
                    raise RuntimeError(f"{name} returned {ret}")
                return ret

            stage("config", lambda: rknn.config(
                mean_values=req["mean_values"], std_values=req["std_values"], target_platform=req["target"],
                quantized_algorithm=req.get("quantized_algorithm", "normal"), quantized_dtype="w8a8",
                optimization_level=3))
            # inputs + input_size_list fix symbolic dims (a 'batch' axis) that the toolkit refuses
            stage("load_onnx", lambda: rknn.load_onnx(model=req["model"], inputs=req.get("inputs"),
                                                      input_size_list=req.get("input_size_list")))
            stage("build", lambda: rknn.build(do_quantization=True, dataset=req["dataset"]))
            stage("export_rknn", lambda: rknn.export_rknn(req["out"]))
            if req.get("analysis"):
                snap = work / "analysis"
                stage("accuracy_analysis", lambda: rknn.accuracy_analysis(inputs=req["analysis"], output_dir=str(snap)))
                res["analysis_file"] = str(snap / "error_analysis.txt")
            # the simulator: init_runtime() with no target, right after build (not after load_rknn)
            stage("init_runtime", lambda: rknn.init_runtime())
            outs = []
            t = time.time()
            res["stage"] = "inference"
            for i, path in enumerate(req["holdout"]):
                x = np.load(path)
                got = rknn.inference(inputs=[x], data_format="nchw")
                if got is None:
                    raise RuntimeError(f"simulator inference returned nothing for {path}")
                files = []
                for j, y in enumerate(got):
                    f = work / f"sim-{i:03d}-{j}.npy"
                    np.save(f, np.asarray(y, dtype=np.float32))
                    files.append(str(f))
                outs.append(files)
            res["seconds"]["inference"] = round(time.time() - t, 3)
            res["sim_outputs"] = outs
            res["ok"] = True
            res.pop("stage", None)
        except Exception as e:  # the toolkit raises ValueError with its traceback text, or returns -1
            res["ok"] = False
            res["error"] = f"{type(e).__name__}: {e}"
            res["traceback"] = traceback.format_exc(limit=3)
    finally:
        rknn.release()


def _toolkit_version() -> str:
    try:
        from importlib.metadata import version

        return f"rknn-toolkit2 {version('rknn-toolkit2')}"
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "rknn-toolkit2 (unknown version)"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    req = json.loads(Path(argv[1]).read_text())
    res: dict = {"ok": False, "stage": "import"}
    try:
        _run(req, res)
    except Exception as e:  # import failures: the venv is broken
        res.update(ok=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=3))
    (Path(req["workdir"]) / "result.json").write_text(json.dumps(res, indent=1))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
