"""Build: spec + board + zoo -> one signed image per device on the board.

Stages (each small, each named in progress output): resolve -> plan -> quantize (cached) ->
gate -> check against the board -> render boot files -> pack + sign -> write if changed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from runtime.config import CameraConfig, ModelConfig, RuntimeConfig

from . import __version__ as builder_version
from .boards import BoardProfile
from .calibrate import frames_for, samples
from .costmodel import estimate
from .devices import DeviceRole, devices_on_board
from .keys import load_private_key
from .modelcard import ZOO_DIR, ModelCard, sha256_of, zoo
from .opcheck import check_model
from .pack import pack_image, write_if_changed
from .planner import DevicePlan, plan_device
from .gates import MAX_DISAGREEMENT, task_gate
from .quantize import MAX_TASK_DROP, accuracy_gate, quantize_int8
from .resolve import resolve_device
from .rknn import rknn_for_image
from .spec.root import SiteSpec

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"
SIM_DIR = Path(__file__).resolve().parent.parent / "sim"
TEMPLATES = Path(__file__).resolve().parent / "templates"
CACHE_DIR = Path(os.environ.get("SITEWARDEN_CACHE") or Path.home() / ".cache" / "sitewarden")
CALIBRATION_FRAMES = 48
GATE_FRAMES = 12
INSTALL_DIR = "/opt/sitewarden"
STATE_DIR = "/var/lib/sitewarden"
QUANTIZER_VERSION = "qdq-u8s8-perchannel-minmax-3"  # 2: FP32 stem on CPU boards; 3: task gates, crop calibration mix


class BuildError(Exception):
    """The build cannot go on; the message says what to change."""


@dataclass(frozen=True)
class BuiltImage:
    path: Path
    device: str
    written: bool  # False when the file already held exactly these bytes
    sha256: str
    plan: DevicePlan


def spec_digest(files: list[Path], root: Path) -> str:
    """sha256 over every file the spec read (spec, includes, secrets), names relative to the spec."""
    h = hashlib.sha256()
    for f in files:
        try:
            name = str(Path(f).resolve().relative_to(root.resolve()))
        except ValueError:
            name = Path(f).name
        h.update(name.encode() + b"\0" + Path(f).read_bytes() + b"\0")
    return h.hexdigest()


def runtime_files() -> dict[str, bytes]:
    """The runtime's source, as it ships in every image."""
    return {
        f"runtime/{p.relative_to(RUNTIME_DIR).as_posix()}": p.read_bytes()
        for p in sorted(RUNTIME_DIR.rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def _render(name: str, **context) -> bytes:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    return env.get_template(name).render(**context).encode()


class ModelPreparer:
    """Turns a zoo card into the bytes an image carries for a board: INT8 (cached, gated) or FP32."""

    def __init__(self, board: BoardProfile, zoo_dir: Path = ZOO_DIR, cache_dir: Path = CACHE_DIR,
                 progress: Callable[[str], None] = print):
        self.board = board
        self.zoo_dir = Path(zoo_dir)
        self._frames: dict = {}
        self.cache = Path(cache_dir) / "quantized"
        self.progress = progress

    def pairs(self, camera: CameraConfig, spec_dir: Path, count: int, seed: int, condition: str | None = None):
        """(frame, person boxes) pairs from the camera's source, rendered or read once per build."""
        key = (camera.source, camera.resolution, camera.fps, count, seed, condition)
        if key not in self._frames:
            self._frames[key] = frames_for(camera, spec_dir, count, seed, condition)
        return self._frames[key]

    def recipe(self, camera: CameraConfig, spec_dir: Path, condition: str | None = None) -> str:
        """What the calibration frames depend on, hashed without rendering or reading them."""
        h = hashlib.sha256(f"{camera.source}|{camera.resolution}|{camera.fps}|{CALIBRATION_FRAMES}|{GATE_FRAMES}|{condition}".encode())
        if camera.source.startswith("file:"):
            h.update(sha256_of(spec_dir / camera.source[5:]).encode())
        for f in sorted(SIM_DIR.glob("*.py")):  # sim scenes: a change in the renderer changes the frames
            h.update(f.name.encode() + f.read_bytes())
        return h.hexdigest()

    def prepare(self, card: ModelCard, camera: CameraConfig, spec_dir: Path) -> tuple[bytes, str, str]:
        """(file bytes, precision, note)."""
        fp32 = self.zoo_dir / card.task / card.variant / card.file
        if not card.quantize or self.board.toolchain.prefers != "int8":
            return fp32.read_bytes(), "fp32", "kept FP32" + (" (tiny model)" if not card.quantize else f" ({self.board.id} prefers fp16)")
        keep_fp32 = "stem" if self.board.npu is None else "none"  # CPU boards: see compiler/quantize.py
        # a condition-specialised variant (night...) is calibrated and gated on its condition
        condition = next((c for c in card.conditions if c != "any"), None)
        key = hashlib.sha256(f"{QUANTIZER_VERSION}|{keep_fp32}|{card.sha256}|{self.recipe(camera, spec_dir, condition)}".encode()).hexdigest()
        out = self.cache / f"{card.task}-{card.variant}-{key[:24]}.onnx"
        verdict = self.cache / f"{out.stem}.gate.txt"
        if out.exists() and verdict.exists():
            text = verdict.read_text()
            self.progress(f"  {card.task}/{card.variant}: INT8 from cache ({text.splitlines()[0]})")
        else:
            calib = list(samples(card, self.pairs(camera, spec_dir, CALIBRATION_FRAMES, 0, condition)))
            holdout = list(samples(card, self.pairs(camera, spec_dir, GATE_FRAMES, 1000, condition)))
            if card.preprocess.crop == "person" or card.preprocess.resize == "crop":
                # crop models also see people from the fallback sim scenes (a file source has no person
                # boxes; a site scene may show only compliant workers, and a PPE classifier calibrated
                # without a bare head clips "no helmet" away): site crops first, then the mix
                sim_camera = CameraConfig(id="calibration", source="rtsp://none", resolution=(640, 360), fps=10.0)
                calib += list(samples(card, self.pairs(sim_camera, spec_dir, CALIBRATION_FRAMES, 0, condition)))
                holdout += list(samples(card, self.pairs(sim_camera, spec_dir, GATE_FRAMES, 1000, condition)))
            self.progress(f"  {card.task}/{card.variant}: quantizing to INT8 on {len(calib)} site samples ...")
            self.cache.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp.onnx")
            quantize_int8(fp32, tmp, calib, keep_fp32=keep_fp32)
            judge = task_gate(card)
            gate = accuracy_gate(fp32, tmp, holdout or calib[:GATE_FRAMES], task_gate=judge,
                                 max_drop=MAX_DISAGREEMENT if judge else MAX_TASK_DROP)
            tmp.replace(out)
            text = f"{'pass' if gate.passed else 'refused'}\n{gate}\n"
            verdict.write_text(text)
            self.progress(f"  {card.task}/{card.variant}: gate {gate}")
        if text.startswith("refused"):
            return fp32.read_bytes(), "fp32", f"INT8 refused by the accuracy gate, kept FP32: {text.splitlines()[1]}"
        note = "static INT8 (QDQ), gate passed" + (", stem kept FP32" if keep_fp32 == "stem" else "")
        return out.read_bytes(), "int8", note


def build_device(spec: SiteSpec, spec_dir: Path, spec_sha: str, device: DeviceRole, board: BoardProfile,
                 cards: list[ModelCard], key, out_dir: Path, image_version: int,
                 progress: Callable[[str], None] = print, zoo_dir: Path = ZOO_DIR,
                 cache_dir: Path = CACHE_DIR) -> BuiltImage:
    threads = int(board.runtime_threads.value) if board.runtime_threads else int(board.cpu.cores.value)
    base = resolve_device(spec, device, {}, threads, spec_dir=spec_dir)
    pinned = {t: getattr(spec.models, t).variant for t in ("detector", "ppe", "pose", "posture", "trajectory")
              if getattr(spec.models, t) is not None and getattr(spec.models, t).variant}
    plan = plan_device(base, board, cards, prefer=spec.models.prefer, pinned=pinned)
    by_id = {(c.task, c.variant): c for c in cards}
    preparer = ModelPreparer(board, zoo_dir=zoo_dir, cache_dir=cache_dir, progress=progress)
    files: dict[str, bytes] = {}
    models: dict[str, tuple[ModelConfig, ...]] = {}
    notes = []
    npu_files: dict[str, dict] = {}  # rknn hook: NPU files beside the INT8 ONNX
    for tp in plan.tasks:
        tiers = []
        for variant in (*tp.tiers, *tp.situational):
            card = by_id[(tp.task, variant)]
            data, precision, note = preparer.prepare(card, base.cameras[0], spec_dir)
            if board.npu is not None and precision == "int8":
                import onnx

                problems = check_model(onnx.load_from_string(data), board)
                if problems:
                    raise BuildError(f"{device.id}: {tp.task}/{variant} cannot run on {board.id}: " + "; ".join(map(str, problems[:5])))
            name = f"models/{tp.task}-{variant}.onnx"
            files[name] = data
            notes.append(f"{tp.task}/{variant}: {note}")
            # --- rknn hook (compiler/rknn.py): Rockchip boards also carry the NPU's own .rknn ---
            npu = rknn_for_image(board, preparer, card, base.cameras[0], spec_dir, CALIBRATION_FRAMES,
                                 GATE_FRAMES) if precision == "int8" else None
            if npu is not None:
                if npu.data is not None:
                    files[npu.name] = npu.data
                notes.append(f"{tp.task}/{variant}: {npu.note}")
                npu_files[f"{tp.task}/{variant}"] = npu.record
            # --- end rknn hook ---
            tiers.append(ModelConfig(
                task=tp.task, variant=variant, file=name, sha256=hashlib.sha256(data).hexdigest(), decoder=card.decoder,
                inputs=tuple(i.model_dump() for i in card.inputs), outputs=tuple(o.model_dump() for o in card.outputs),
                preprocess=card.preprocess.model_dump(), classes=tuple(card.classes), conditions=tuple(card.conditions),
                precision=precision, est_latency_ms=round(estimate(card, board).latency_ms, 3),
            ))
        models[tp.task] = tuple(tiers)
    config: RuntimeConfig = dataclasses.replace(base, models=models)
    context = dict(site=spec.site.name, device=device.id, board=board.id, builder_version=builder_version,
                   install_dir=INSTALL_DIR, state_dir=STATE_DIR)
    files["config.json"] = config.to_json()
    files.update(runtime_files())
    files["boot/start.sh"] = _render("launcher.sh.j2", **context)
    files["boot/sitewarden.service"] = _render("sitewarden.service.j2", **context)
    plan_dict = {**plan.to_dict(), "model_notes": notes, **({"npu_files": npu_files} if npu_files else {})}
    files["boot/README.md"] = _render(
        "README.md.j2", **context, compatible=[board.id], role=device.role, image_version=image_version,
        spec_sha256=spec_sha, cameras=[dataclasses.asdict(c) for c in config.cameras],
        tasks=[dataclasses.asdict(t) for t in plan.tasks], estimated=plan.estimated,
        conversion_step=board.toolchain.conversion_step if board.toolchain.name != "onnxruntime" else "",
    )
    blob, manifest = pack_image(
        files, key, site=spec.site.name, device=device.id, board=board.id, compatible=(board.id,), role=device.role,
        image_version=image_version, spec_sha256=spec_sha, builder_version=builder_version, plan=plan_dict,
    )
    path = Path(out_dir) / f"{spec.site.name}-{device.id}-{board.id}.swimg"
    written = write_if_changed(path, blob)
    return BuiltImage(path, device.id, written, hashlib.sha256(blob).hexdigest(), plan)


def build_images(spec: SiteSpec, spec_path: Path, spec_files: list[Path], board: BoardProfile, out_dir: Path,
                 key_path: str | None = None, image_version: int = 1,
                 progress: Callable[[str], None] = print, zoo_dir: Path = ZOO_DIR,
                 cache_dir: Path = CACHE_DIR) -> list[BuiltImage]:
    devices = devices_on_board(spec, board.id)
    if not devices:
        raise BuildError(f"no device of {spec_path} is on board '{board.id}'")
    key = load_private_key(key_path)
    cards = zoo(zoo_dir)
    digest = spec_digest(spec_files, Path(spec_path).parent)
    return [build_device(spec, Path(spec_path).resolve().parent, digest, d, board, cards, key, out_dir, image_version,
                         progress, zoo_dir, cache_dir)
            for d in devices]
