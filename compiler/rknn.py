"""Rockchip NPU files: FP32 ONNX -> INT8 `.rknn` with Rockchip's own compiler, gated on its simulator.

rknn-toolkit2 pins old numpy/onnx/protobuf, so it lives in its own virtualenv (`.ci/rknn-env.sh`
creates it at `$SITEWARDEN_RKNN_VENV`, default `~/.cache/sitewarden/rknn-venv`) and runs as a
subprocess: `tools/rknn_convert.py` there, JSON in and out, `.npy` arrays in between.

What the toolkit gets: the FP32 master (it quantizes with its own quantizer: w8a8, per-channel,
`normal` min/max), the card's normalisation as `mean_values`/`std_values` in pixel units (folded
into the model, so on the board the NPU takes raw uint8 pixels in the card's colour order and NCHW
or NHWC layout), and the same site calibration frames the INT8 ONNX was calibrated on.

The gate (MIN_SIM_COSINE): the simulator's outputs on held-out frames against onnxruntime FP32 on
the same pixels, cosine per output, worst case over outputs and samples; plus the toolkit's own
`accuracy_analysis` (per-layer cosine against its float graph), whose final-output cosine must pass
too and whose worst layers are reported so a refusal says where to look.

Results are cached content-addressed (FP32 sha256, target, normalisation, calibration recipe,
converter script, toolkit set-up), like the INT8 cache: rebuilds reuse the same bytes. The toolkit's
export is not byte-reproducible across runs (about 1 kB of a 39 kB file differs between identical
conversions), so a cold rebuild on another machine gives a different .rknn; the cache keeps one
machine's rebuilds identical.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tools" / "rknn_convert.py"
ENV_SCRIPT = ".ci/rknn-env.sh"
TOOLCHAIN = "rknn-toolkit2"
STAMP = ".sitewarden-rknn"  # written by .ci/rknn-env.sh once `from rknn.api import RKNN` works
CONVERTER_VERSION = "rknn-w8a8-normal-sim-gate-1"
# Board id -> rknn target_platform. Boards whose toolchain is rknn-toolkit2 but are missing here
# fall back to their own id (the toolkit names platforms by SoC: rk3588, rk3566, rv1106, ...).
TARGETS = {"rk3588": "rk3588", "rk3566": "rk3566", "rv1106": "rv1106", "rv1126": "rv1126b"}

# Why 0.99: the .rknn replaces the INT8 ONNX on the NPU, so it must agree with FP32 at least as
# well as the ONNX gate demands (compiler.quantize.MIN_COSINE = 0.98), with a margin because the
# gate runs on the PC simulator, not on silicon. At cosine c the error is about sqrt(2(1-c)) of the
# signal: 14% at 0.99 (20% at 0.98). Well-behaved small conv nets reach 0.999+ here (the fixture
# models: 0.9997); a model below 0.99 has a badly quantized layer, which the per-layer report names.
MIN_SIM_COSINE = 0.99
TIMEOUT_S = float(os.environ.get("SITEWARDEN_RKNN_TIMEOUT_S", "1200"))


class RknnError(RuntimeError):
    """The toolkit could not convert the model; the message carries its own last error lines."""


class RknnUnavailable(RknnError):
    """The toolkit's virtualenv is missing or broken; the message says how to create it."""


def venv_dir() -> Path:
    return Path(os.environ.get("SITEWARDEN_RKNN_VENV") or Path.home() / ".cache" / "sitewarden" / "rknn-venv")


def rknn_available() -> Path | None:
    """The toolkit venv's python when `.ci/rknn-env.sh` has set it up (cheap: no import), else None."""
    venv = venv_dir()
    py = venv / "bin" / "python"
    return py if py.exists() and (venv / STAMP).exists() else None


def require_rknn() -> Path:
    py = rknn_available()
    if py is None:
        raise RknnUnavailable(f"{TOOLCHAIN} is not set up at {venv_dir()}: run `{ENV_SCRIPT}` (about 2 minutes, "
                              f"1.5 GB; set SITEWARDEN_RKNN_VENV to put it elsewhere)")
    return py


def target_for(board_id: str) -> str:
    return TARGETS.get(board_id, board_id)


@dataclass(frozen=True)
class LayerError:
    """One row of the toolkit's accuracy_analysis: cosine against its float graph."""
    op: str
    name: str
    cosine: float  # accumulated: everything up to and including this layer
    single: float  # this layer alone, fed float inputs


@dataclass(frozen=True)
class RknnResult:
    path: Path
    target: str
    passed: bool
    sim_cosine_min: float  # simulator vs onnxruntime FP32, worst over outputs and held-out samples
    per_output: tuple[float, ...]  # worst cosine per output
    threshold: float
    samples: int
    analysis_cosine: float | None  # accuracy_analysis: the final output's accumulated cosine
    worst_layers: tuple[LayerError, ...] = ()  # lowest single-layer cosines, worst first
    toolkit: str = ""
    seconds: float = 0.0

    def __str__(self) -> str:
        verdict = "pass" if self.passed else "REFUSED"
        text = (f"{verdict}: {self.target} simulator cosine {self.sim_cosine_min:.4f} vs FP32 onnxruntime "
                f"(threshold {self.threshold:g}) over {self.samples} samples")
        if self.analysis_cosine is not None:
            text += f"; per-layer analysis output {self.analysis_cosine:.4f}"
        if self.worst_layers:
            w = self.worst_layers[0]
            text += f", worst layer {w.name} ({w.op}) {w.single:.4f}"
        return text

    def to_json(self) -> str:
        d = asdict(self)
        d["path"] = str(self.path)
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path: Path | None = None) -> "RknnResult":
        d = json.loads(text)
        d["path"] = Path(path or d["path"])
        d["per_output"] = tuple(d["per_output"])
        d["worst_layers"] = tuple(LayerError(**w) for w in d["worst_layers"])
        return cls(**d)

    def regated(self, threshold: float) -> "RknnResult":
        """The same measurements judged against another threshold (cached results outlive thresholds)."""
        ok = self.sim_cosine_min >= threshold and (self.analysis_cosine is None or self.analysis_cosine >= threshold)
        return RknnResult(**{**self.__dict__, "passed": ok, "threshold": threshold})


# --- normalisation: the card's preprocessing in the toolkit's terms ---------------------------

def mean_std(scale: float, mean: Sequence[float] = (), std: Sequence[float] = (), channels: int = 3):
    """Card preprocessing x = (pixel * scale - mean) / std as rknn's x = (pixel - M) / S, per channel."""
    m = list(mean) or [0.0] * channels
    s = list(std) or [1.0] * channels
    if len(m) == 1:
        m = m * channels
    if len(s) == 1:
        s = s * channels
    return [[float(v) / scale for v in m]], [[float(v) / scale for v in s]]


def to_pixels(x: np.ndarray, mean_values, std_values) -> np.ndarray:
    """Undo the normalisation of one NCHW input: the uint8 pixels the board's NPU will be fed."""
    m = np.asarray(mean_values[0], np.float64).reshape(1, -1, 1, 1)
    s = np.asarray(std_values[0], np.float64).reshape(1, -1, 1, 1)
    return np.clip(np.rint(np.asarray(x, np.float64) * s + m), 0, 255).astype(np.uint8)


def from_pixels(p: np.ndarray, mean_values, std_values) -> np.ndarray:
    m = np.asarray(mean_values[0], np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std_values[0], np.float32).reshape(1, -1, 1, 1)
    return ((p.astype(np.float32) - m) / s).astype(np.float32)


# --- the toolkit's reports --------------------------------------------------------------------

_ROW = re.compile(r"^\[(?P<op>[^\]]+)\]\s+(?P<name>\S+)\s+(?P<cos>[-\d.naif]+)\s*\|\s*\S+\s+(?P<single>[-\d.naif]+)\s*\|")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_analysis(text: str) -> list[LayerError]:
    """Rows of accuracy_analysis' error_analysis.txt (fused layers, which have no numbers, are skipped)."""
    rows = []
    for line in text.splitlines():
        m = _ROW.match(line.strip())
        if m:
            rows.append(LayerError(m["op"], m["name"], float(m["cos"]), float(m["single"])))
    return rows


def last_errors(log: str, n: int = 6) -> str:
    """The toolkit's own error messages (`E stage: ...` and their continuation lines), else the log's
    tail: what to show when it fails. Progress bars share lines through carriage returns."""
    text = re.sub(r"(?<=\])(?=E \w+: )", "\n", _ANSI.sub("", log))  # an error right after a progress bar
    lines = [ln.rstrip() for ln in re.split(r"[\r\n]", text)]
    messages: list[list[str]] = []
    current: list[str] | None = None
    for ln in lines:
        if ln.startswith("E "):
            current = [ln[2:].strip()]
            messages.append(current)
        elif current is not None and ln[:1].isspace() and ln.strip():
            current.append(ln.strip())
        else:
            current = None
    noise = ("rknn-toolkit2 version", "Traceback", "Unkown op target", "File \"")
    seen, out = set(), []
    for m in (" ".join(parts) for parts in messages):
        body = m.split(": ", 1)[-1]  # "build: Traceback ..." -> "Traceback ..."
        if m and not m.startswith(noise) and not body.startswith(noise) and m not in seen:
            seen.add(m)
            out.append(m)
    picked = out[-n:] if out else [ln for ln in lines if ln.strip()][-n:]
    return "\n".join("    " + ln for ln in picked)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    return float(a @ b / max(na * nb, 1e-12))


def _match_layout(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    if got.shape == ref.shape:
        return got
    if got.ndim == 4 and got.transpose(0, 3, 1, 2).shape == ref.shape:  # NHWC from the simulator
        return got.transpose(0, 3, 1, 2)
    if got.size == ref.size:
        return got.reshape(ref.shape)
    raise RknnError(f"simulator output shape {got.shape} does not match onnxruntime's {ref.shape}")


# --- conversion ------------------------------------------------------------------------------

def convert(fp32_onnx: Path, out_rknn: Path, target: str, calibration: Sequence[np.ndarray],
            holdout: Sequence[np.ndarray], scale: float = 1 / 255, mean: Sequence[float] = (),
            std: Sequence[float] = (), threshold: float = MIN_SIM_COSINE, timeout_s: float = TIMEOUT_S,
            keep_dir: Path | None = None) -> RknnResult:
    """Convert `fp32_onnx` to an INT8 `.rknn` for `target` and gate it on the simulator.

    `calibration` and `holdout` are single-input NCHW float arrays prepared exactly as the card says
    (compiler.calibrate.prepare); they are turned back into the pixels the board will see. The
    .rknn is written whatever the verdict; `RknnResult.passed` says whether to ship it.
    Raises RknnUnavailable without the toolkit, RknnError when the toolkit refuses the model."""
    from .quantize import session

    py = require_rknn()
    ref = session(fp32_onnx)
    if len(ref.get_inputs()) != 1:
        raise RknnError(f"{Path(fp32_onnx).name} has {len(ref.get_inputs())} inputs; the RKNN path takes one image input")
    in_name = ref.get_inputs()[0].name
    if not calibration:
        raise RknnError("no calibration samples: the toolkit's quantizer needs frames that match the site")
    holdout = list(holdout) or list(calibration[:4])
    channels = int(np.asarray(calibration[0]).shape[1])
    mv, sv = mean_std(scale, mean, std, channels)
    fp32_onnx, out_rknn = Path(fp32_onnx).resolve(), Path(out_rknn).resolve()
    out_rknn.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="rknn-", dir=keep_dir))
    try:
        calib_files, hold_pixels = [], []
        for i, x in enumerate(calibration):
            f = tmp / f"calib-{i:03d}.npy"
            np.save(f, to_pixels(x, mv, sv))
            calib_files.append(str(f))
        (tmp / "dataset.txt").write_text("\n".join(calib_files) + "\n")
        hold_files = []
        for i, x in enumerate(holdout):
            p = to_pixels(x, mv, sv)
            hold_pixels.append(p)
            f = tmp / f"holdout-{i:03d}.npy"
            np.save(f, p)
            hold_files.append(str(f))
        request = dict(model=str(fp32_onnx), out=str(out_rknn), target=target, mean_values=mv, std_values=sv,
                       inputs=[in_name], input_size_list=[list(np.asarray(calibration[0]).shape)],
                       dataset=str(tmp / "dataset.txt"), holdout=hold_files, analysis=hold_files[:1], workdir=str(tmp))
        (tmp / "request.json").write_text(json.dumps(request, indent=1))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["PYTHONNOUSERSITE"] = "1"
        log_path = tmp / "toolkit.log"
        with open(log_path, "wb") as log:
            try:
                proc = subprocess.run([str(py), str(SCRIPT), str(tmp / "request.json")], cwd=tmp, env=env,
                                      stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise RknnError(f"{TOOLCHAIN} did not finish converting {fp32_onnx.name} for {target} in "
                                f"{timeout_s:g} s (SITEWARDEN_RKNN_TIMEOUT_S raises the limit); last lines:\n"
                                + last_errors(log_path.read_text(errors="replace"))) from None
        log_text = log_path.read_text(errors="replace")
        result_file = tmp / "result.json"
        res = json.loads(result_file.read_text()) if result_file.exists() else {}
        if not res.get("ok"):
            if res.get("stage") == "import":
                raise RknnUnavailable(f"{TOOLCHAIN} at {venv_dir()} does not import ({res.get('error', 'no result')}); "
                                      f"re-run `{ENV_SCRIPT} --force`")
            stage = res.get("stage", f"the subprocess (exit {proc.returncode})")
            raise RknnError(f"{TOOLCHAIN} refused {fp32_onnx.name} for {target} at {stage}:\n" + last_errors(log_text))

        # the gate: simulator vs onnxruntime FP32 on the very same pixels
        n_out = len(ref.get_outputs())
        per_output = [1.0] * n_out
        for pixels, files in zip(hold_pixels, res["sim_outputs"]):
            want = ref.run(None, {in_name: from_pixels(pixels, mv, sv)})
            if len(files) != n_out:
                raise RknnError(f"the simulator gave {len(files)} outputs, onnxruntime {n_out}")
            for j, (w, f) in enumerate(zip(want, files)):
                per_output[j] = min(per_output[j], cosine(w, _match_layout(np.asarray(w), np.load(f))))
        layers = parse_analysis(Path(res["analysis_file"]).read_text()) if res.get("analysis_file") and \
            Path(res["analysis_file"]).exists() else []
        out_names = {o.name for o in ref.get_outputs()}
        finals = [r.cosine for r in layers if r.name in out_names] or [r.cosine for r in layers[-1:]]
        analysis_cos = min(finals) if finals else None
        worst = tuple(sorted(layers, key=lambda r: r.single)[:3])
        result = RknnResult(
            path=out_rknn, target=target, passed=False, sim_cosine_min=min(per_output), per_output=tuple(per_output),
            threshold=threshold, samples=len(hold_pixels), analysis_cosine=analysis_cos, worst_layers=worst,
            toolkit=res.get("toolkit_version", TOOLCHAIN), seconds=round(time.time() - started, 2),
        ).regated(threshold)
        return result
    finally:
        if keep_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


def toolkit_digest() -> str:
    """What identifies the installed toolkit set (the env script's stamp: versions of everything)."""
    venv = venv_dir()
    stamp = venv / STAMP
    return hashlib.sha256(stamp.read_bytes() if stamp.exists() else b"").hexdigest()


def cache_key(fp32_sha256: str, target: str, scale: float, mean: Sequence[float], std: Sequence[float],
              recipe: str) -> str:
    parts = [CONVERTER_VERSION, fp32_sha256, target, repr((float(scale), list(mean), list(std))), recipe,
             hashlib.sha256(SCRIPT.read_bytes()).hexdigest(), toolkit_digest()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def convert_cached(fp32_onnx: Path, target: str, cache_dir: Path, stem: str, recipe: str,
                   make_samples: Callable[[], tuple[list[np.ndarray], list[np.ndarray]]],
                   scale: float = 1 / 255, mean: Sequence[float] = (), std: Sequence[float] = (),
                   threshold: float = MIN_SIM_COSINE, progress: Callable[[str], None] = print) -> RknnResult:
    """`convert` behind a content-addressed cache: `<cache_dir>/rknn/<stem>-<target>-<key>.rknn` and its
    verdict. `recipe` identifies the calibration frames (so a hit needs no frames rendered);
    `make_samples()` returns (calibration, holdout) input arrays on a miss."""
    from .modelcard import sha256_of

    key = cache_key(sha256_of(fp32_onnx), target, scale, mean, std, recipe)
    folder = Path(cache_dir) / "rknn"
    out = folder / f"{stem}-{target}-{key[:24]}.rknn"
    verdict = out.with_suffix(".gate.json")
    if out.exists() and verdict.exists():
        result = RknnResult.from_json(verdict.read_text(), out).regated(threshold)
        progress(f"  {stem}: .rknn for {target} from cache ({result})")
        return result
    calibration, holdout = make_samples()
    progress(f"  {stem}: {TOOLCHAIN} -> .rknn for {target} on {len(calibration)} site samples ...")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.rknn")
    result = convert(fp32_onnx, tmp, target, calibration, holdout, scale, mean, std, threshold)
    tmp.replace(out)
    result = RknnResult(**{**result.__dict__, "path": out})
    verdict.write_text(result.to_json())
    progress(f"  {stem}: rknn gate {result} ({result.seconds:.1f} s)")
    return result


# --- the builder's hook ----------------------------------------------------------------------

@dataclass
class NpuFile:
    """What the builder packs and records for one model: the .rknn bytes (None when refused)."""
    name: str
    data: bytes | None
    note: str
    record: dict = field(default_factory=dict)


def rknn_for_image(board, preparer, card, camera, spec_dir: Path, calibration_frames: int,
                   gate_frames: int) -> NpuFile | None:
    """The builder's hook: for a board whose toolchain is rknn-toolkit2, the card's `.rknn`, converted
    from its FP32 master on the same site frames the INT8 ONNX was calibrated on. None where the
    toolchain is another or the model has no single image input; a note without data where the
    toolkit is missing (the conversion step stays recorded) or refuses the model."""
    from runtime.config import CameraConfig

    from .calibrate import samples

    if board.toolchain.name != TOOLCHAIN:
        return None
    shape = card.inputs[0].shape
    if len(card.inputs) != 1 or len(shape) != 4 or card.preprocess.color == "none":
        return None
    name = f"models/{card.task}-{card.variant}{board.toolchain.model_format}"
    target = target_for(board.id)
    missing = {"file": None, "target": target, "toolchain": TOOLCHAIN}
    if rknn_available() is None:
        return NpuFile(name, None, f"no {name}: {TOOLCHAIN} is not set up on this build machine ({ENV_SCRIPT}); "
                                   "conversion step recorded", {**missing, "reason": "toolkit not set up"})
    fp32 = preparer.zoo_dir / card.task / card.variant / card.file

    def make_samples():
        arrays = lambda pairs: [d[card.inputs[0].name] for d in samples(card, pairs)]  # noqa: E731
        calib = arrays(preparer.pairs(camera, spec_dir, calibration_frames, 0))
        hold = arrays(preparer.pairs(camera, spec_dir, gate_frames, 1000))
        if not calib:  # crop models on a source without person boxes: people from sim scenes (as for INT8)
            sim_camera = CameraConfig(id="calibration", source="rtsp://none", resolution=(640, 360), fps=10.0)
            calib = arrays(preparer.pairs(sim_camera, spec_dir, calibration_frames, 0))
            hold = arrays(preparer.pairs(sim_camera, spec_dir, gate_frames, 1000))
        return calib, hold

    pp = card.preprocess
    try:
        result = convert_cached(fp32, target, preparer.cache.parent, f"{card.task}-{card.variant}",
                                preparer.recipe(camera, spec_dir), make_samples, pp.scale, pp.mean, pp.std,
                                progress=preparer.progress)
    except RknnError as e:  # RknnUnavailable included: a broken venv
        lines = str(e).splitlines()
        reason = " ".join([lines[0], *(ln.strip() for ln in lines[1:2])])
        return NpuFile(name, None, f"no {name}: {reason}", {**missing, "reason": reason})
    record = {"file": name if result.passed else None, "target": target, "toolchain": result.toolkit,
              "passed": result.passed, "sim_cosine_min": round(result.sim_cosine_min, 5),
              "analysis_cosine": result.analysis_cosine, "threshold": result.threshold,
              "input": f"uint8 pixels, {pp.color or 'as prepared'}, NCHW; mean/std folded into the model"}
    if not result.passed:
        return NpuFile(name, None, f"no {name}: refused by the RKNN gate: {result}", record)
    return NpuFile(name, result.path.read_bytes(), f"{name} ({result})", record)


if __name__ == "__main__":  # pragma: no cover - a quick look: python -m compiler.rknn
    print(rknn_available() or f"{TOOLCHAIN} not set up; run {ENV_SCRIPT}", file=sys.stderr)
