"""Board profiles: what an edge board can host and run, with the source of every number.

One YAML per board under ``board_profiles/`` (DESIGN.md, "Board profiles"). Every
number in a profile sits in a mapping that also carries a non-empty ``source``:
scalar facts are :class:`Figure` objects ``{value, unit, source, kind}``, and a
published latency row carries its own ``source``. :func:`unsourced_numbers`
enforces the rule on the raw YAML before the schema sees it, so a number can
never be added without saying where it came from.

Public API::

    load_board_profiles(directory=None) -> dict[str, BoardProfile]
    load_board_profile(path) -> BoardProfile
    get_board_profile(board_id, directory=None) -> BoardProfile
    effective_gops(profile, cores=None) -> float
    format_board_table(profiles) -> str
    unsourced_numbers(data) -> list[str]
    BoardProfileError
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "BoardProfile", "BoardProfileError", "ConvLimits", "CpuSpec", "Figure", "NpuSpec",
    "OpSupport", "PublishedLatency", "Toolchain", "DEFAULT_BOARD_DIR", "effective_gops",
    "format_board_table", "get_board_profile", "load_board_profile", "load_board_profiles",
    "unsourced_numbers",
]

DEFAULT_BOARD_DIR = Path(__file__).resolve().parent.parent / "board_profiles"
UNVERIFIED = "[unverified]"


class BoardProfileError(Exception):
    """A board profile is missing, malformed or breaks the schema; the message names file and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FigureKind = Literal["published", "derived", "measured", "assumed", "design"]


class Figure(_Model):
    """A number with its unit and the document (section/table) it comes from."""

    value: float = Field(ge=0, description="The number itself, in `unit`.")
    unit: str = Field(min_length=1, description="Unit of `value`, e.g. TOPS, MB, fraction, cores.")
    source: str = Field(description="Document + section/table (or command) the value comes from; "
                                    "'[unverified]' marks a figure not confirmed in a stored copy.")
    kind: FigureKind = Field(default="published", description=(
        "published: read from the source; derived: computed from published figures (the source says "
        "how); measured: measured on the build machine (the source gives the command); assumed: no "
        "published figure, borrowed from a named sibling board; design: a policy choice of this "
        "project (the source gives the rationale)."))

    @field_validator("value", mode="before")
    @classmethod
    def _real_number(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError("must be a number")
        if not math.isfinite(v):
            raise ValueError("must be finite")
        return v

    @field_validator("source")
    @classmethod
    def _has_source(cls, v: str) -> str:
        if not v.replace(UNVERIFIED, "").strip():
            raise ValueError("source must name a document, section or command")
        return v.strip()

    @property
    def verified(self) -> bool:
        """False when the source is marked '[unverified]'."""
        return UNVERIFIED not in self.source


class CountFigure(Figure):
    """A Figure that counts things (cores, threads): a positive integer."""

    @field_validator("value")
    @classmethod
    def _whole(cls, v: float) -> float:
        if v < 1 or not float(v).is_integer():
            raise ValueError("must be a whole number >= 1")
        return v


class CpuSpec(_Model):
    """The application CPU of the board (or of the accelerator's host)."""

    arch: Literal["aarch64", "armv7", "x86_64"] = Field(description="Instruction set the OS runs.")
    cores: CountFigure = Field(description="Number of CPU cores.")
    core_type: str = Field(min_length=1, description="Core types and clocks, e.g. '4x Cortex-A76 @ 2.4 GHz'.")
    isa_features: list[str] = Field(default_factory=list, description="ISA extensions that matter for INT8 "
                                                                      "(e.g. avx512_vnni, dotprod).")
    int8_gops: Figure | None = Field(default=None, description="Sustained INT8 conv throughput of the CPU under "
                                                               "onnxruntime, giga-ops/s (required when npu is null).")


class ConvLimits(_Model):
    """Convolution shapes the NPU accepts."""

    kernel_max: CountFigure = Field(description="Largest kernel height/width.")
    stride_max: CountFigure = Field(description="Largest stride height/width.")
    pad_max: Figure | None = Field(default=None, description="Largest padding on any side.")


class OpSupport(_Model):
    """Which ONNX operators the accelerator runs, as a deny list, an allow list, or unknown."""

    mode: Literal["denylist", "allowlist", "unknown"] = Field(description=(
        "denylist: `ops` cannot run; allowlist: only `ops` can run; unknown: no list published here."))
    ops: list[str] = Field(default_factory=list, description="ONNX operator names (e.g. NonMaxSuppression).")
    source: str = Field(min_length=1, description="Document + section the list comes from.")

    @model_validator(mode="after")
    def _ops_match_mode(self) -> "OpSupport":
        if self.mode == "unknown" and self.ops:
            raise ValueError("ops must be empty when mode is 'unknown'")
        if self.mode == "allowlist" and not self.ops:
            raise ValueError("an allowlist needs at least one op")
        return self

    def runs(self, op: str) -> bool | None:
        """True/False when the list decides, None when unknown."""
        if self.mode == "unknown":
            return None
        return (op in self.ops) if self.mode == "allowlist" else (op not in self.ops)


class NpuSpec(_Model):
    """The neural accelerator: peak INT8 rate, the share of it detectors reach, and its limits."""

    kind: Literal["npu", "gpu", "tpu"] = Field(description="Accelerator type (Jetson runs INT8 on its GPU).")
    int8_tops: Figure = Field(description="Vendor peak INT8 rate of all cores together, tera-ops/s.")
    efficiency: Figure = Field(description="Fraction of the peak a real CNN detector reaches: "
                                           "(published fps x model ops) / peak of the cores used.")
    cores: CountFigure = Field(description="Independent NPU cores (RK3588: 3).")
    data_types: list[str] = Field(min_length=1, description="Tensor data types the accelerator computes in.")
    op_support: OpSupport = Field(description="ONNX operators the accelerator can or cannot run.")
    max_tensor_rank: CountFigure | None = Field(default=None, description="Largest tensor rank with more "
                                                                          "than one dimension > 1.")
    max_input_side: Figure | None = Field(default=None, description="Largest input width/height, pixels.")
    conv: ConvLimits | None = Field(default=None, description="Convolution shape limits, where published.")
    on_chip_memory_mb: Figure | None = Field(default=None, description="On-chip parameter memory, MB.")
    notes: str = Field(default="", description="Other published limits, in words.")

    @field_validator("efficiency")
    @classmethod
    def _fraction(cls, v: Figure) -> Figure:
        if not 0 < v.value <= 1:
            raise ValueError("efficiency must be a fraction in (0, 1]")
        return v


class Toolchain(_Model):
    """How a model becomes something this board runs."""

    name: str = Field(min_length=1, description="Vendor compiler/runtime, e.g. rknn-toolkit2.")
    model_format: str = Field(min_length=1, description="File suffix it produces, e.g. .rknn, .hef.")
    input_format: str = Field(min_length=1, description="What it takes in: onnx, caffe, tflite.")
    installs_here: bool = Field(description="Whether it installs on the build machine (else the image ships "
                                            "INT8 ONNX and records `conversion_step`).")
    prefers: Literal["int8", "fp16"] = Field(description="Precision the compiler should emit for speed.")
    conversion_step: str = Field(min_length=1, description="The command/steps that produce the NPU file.")
    source: str = Field(min_length=1, description="Where the toolchain facts come from.")


class PublishedLatency(_Model):
    """A published speed of a known model on this board (inference only unless `conditions` says otherwise)."""

    model: str = Field(min_length=1, description="Model name as published, e.g. yolov8n.")
    input_size: int = Field(gt=0, description="Square input side in pixels.")
    dtype: str = Field(min_length=1, description="Precision, e.g. int8, fp16.")
    fps: float | None = Field(default=None, gt=0, description="Frames per second, when published as fps.")
    latency_ms: float | None = Field(default=None, gt=0, description="Milliseconds per frame, when published so.")
    conditions: str = Field(default="", description="Cores, clocks, host, batch: what the number assumes.")
    source: str = Field(min_length=1, description="Document + table the number comes from.")

    @model_validator(mode="after")
    def _one_speed(self) -> "PublishedLatency":
        if self.fps is None and self.latency_ms is None:
            raise ValueError("give fps or latency_ms")
        return self

    @property
    def frames_per_second(self) -> float:
        return self.fps if self.fps is not None else 1000.0 / float(self.latency_ms or 0)

    @property
    def verified(self) -> bool:
        return UNVERIFIED not in self.source


class BoardProfile(_Model):
    """One board: CPU, memory, accelerator, toolchain and published speeds, every number sourced."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Board id; equals the YAML file stem.")
    name: str = Field(min_length=1, description="Human-readable board name.")
    soc: str = Field(min_length=1, description="System-on-chip (or accelerator chip).")
    vendor: str = Field(min_length=1, description="SoC/accelerator vendor.")
    reference_board: str = Field(min_length=1, description="The concrete board/host the figures describe.")
    cpu: CpuSpec = Field(description="Application CPU (for add-in accelerators: the host's CPU).")
    ram_mb: Figure = Field(description="System RAM, MB.")
    model_memory_mb: Figure = Field(description="Share of RAM planners may give to model weights + activations, MB.")
    hosts_runtime: bool = Field(description="Whether the Python runtime (onnxruntime) can run here.")
    runtime_memory_mb: Figure | None = Field(default=None, description="RAM the Python runtime itself takes, MB "
                                                                       "(required iff hosts_runtime).")
    runtime_threads: CountFigure | None = Field(default=None, description="onnxruntime intra-op threads "
                                                                          "(required iff hosts_runtime).")
    npu: NpuSpec | None = Field(description="The accelerator; null when the CPU runs onnxruntime INT8 itself.")
    toolchain: Toolchain = Field(description="Model conversion toolchain for this board.")
    published_latencies: list[PublishedLatency] = Field(default_factory=list,
                                                        description="Published speeds of known models.")
    notes: str = Field(default="", description="Anything a planner or reader should know, in words.")

    @model_validator(mode="after")
    def _consistent(self) -> "BoardProfile":
        if self.hosts_runtime:
            if self.runtime_memory_mb is None or self.runtime_threads is None:
                raise ValueError("hosts_runtime needs runtime_memory_mb and runtime_threads")
            if self.cpu.arch not in ("aarch64", "x86_64"):
                raise ValueError("hosts_runtime needs a 64-bit CPU (aarch64 or x86_64)")
        elif self.runtime_memory_mb is not None or self.runtime_threads is not None:
            raise ValueError("runtime_memory_mb/runtime_threads only apply when hosts_runtime is true")
        if self.npu is None and self.cpu.int8_gops is None:
            raise ValueError("a board without npu needs cpu.int8_gops")
        used = self.model_memory_mb.value + (self.runtime_memory_mb.value if self.runtime_memory_mb else 0)
        if used > self.ram_mb.value:
            raise ValueError(f"model_memory_mb + runtime_memory_mb ({used:g}) exceed ram_mb ({self.ram_mb.value:g})")
        return self

    def latency(self, model: str, input_size: int | None = None,
                dtype: str | None = None) -> PublishedLatency | None:
        """First published row for `model` (verified rows first), optionally at `input_size`/`dtype`."""
        rows = [r for r in self.published_latencies
                if r.model == model and (input_size is None or r.input_size == input_size)
                and (dtype is None or r.dtype == dtype)]
        rows.sort(key=lambda r: not r.verified)
        return rows[0] if rows else None


# --------------------------------------------------------------------------- sources rule

def unsourced_numbers(data: Any, path: str = "") -> list[str]:
    """Paths of numbers (int/float, not bool) whose enclosing mapping has no non-empty `source`."""
    found: list[str] = []

    def walk(node: Any, where: str, sourced: bool) -> None:
        if isinstance(node, Mapping):
            src = node.get("source")
            has = isinstance(src, str) and bool(src.replace(UNVERIFIED, "").strip())
            for key, val in node.items():
                walk(val, f"{where}.{key}" if where else str(key), has)
        elif isinstance(node, (list, tuple)):
            for i, val in enumerate(node):
                walk(val, f"{where}[{i}]", sourced)
        elif isinstance(node, (int, float)) and not isinstance(node, bool) and not sourced:
            found.append(where or "<root>")

    walk(data, path, False)
    return found


# --------------------------------------------------------------------------- loading

class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _display(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _format_loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def load_board_profile(path: Path) -> BoardProfile:
    """Parse and validate one profile; raises BoardProfileError naming the file and field."""
    path = Path(path)
    name = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BoardProfileError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise BoardProfileError(f"{name}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise BoardProfileError(f"{name}: expected a mapping of board fields at the top level")
    missing = unsourced_numbers(data)
    if missing:
        raise BoardProfileError("\n".join(f"{name}: {p}: number without a source (every number needs a "
                                          f"non-empty `source` beside it, e.g. {{value, unit, source}})"
                                          for p in missing))
    try:
        profile = BoardProfile.model_validate(data)
    except ValidationError as exc:
        lines = [f"{name}: {_format_loc(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise BoardProfileError("\n".join(lines)) from None
    if profile.id != path.stem:
        raise BoardProfileError(f"{name}: id: {profile.id!r} must equal the file name {path.stem!r}")
    return profile


def load_board_profiles(directory: Path | None = None) -> dict[str, BoardProfile]:
    """All profiles in `directory` (default: <repo>/board_profiles), keyed by id, sorted by id."""
    directory = Path(directory) if directory is not None else DEFAULT_BOARD_DIR
    if not directory.is_dir():
        raise BoardProfileError(f"{directory}: board profile directory not found")
    paths = sorted(list(directory.glob("*.yaml")) + list(directory.glob("*.yml")))
    profiles: dict[str, BoardProfile] = {}
    errors: list[str] = []
    for path in paths:
        try:
            prof = load_board_profile(path)
        except BoardProfileError as exc:
            errors.append(str(exc))
            continue
        if prof.id in profiles:
            errors.append(f"{_display(path)}: id: {prof.id!r} is defined twice")
        profiles[prof.id] = prof
    if errors:
        raise BoardProfileError("\n".join(errors))
    return dict(sorted(profiles.items()))


def get_board_profile(board_id: str, directory: Path | None = None) -> BoardProfile:
    """The profile for `board_id`, or a BoardProfileError listing the known ids."""
    profiles = load_board_profiles(directory)
    if board_id not in profiles:
        raise BoardProfileError(f"unknown board {board_id!r}; known boards: {', '.join(profiles)}")
    return profiles[board_id]


# --------------------------------------------------------------------------- cost basics

def effective_gops(profile: BoardProfile, cores: int | None = None) -> float:
    """Realistic INT8 giga-ops/s for CNN detectors: NPU peak x efficiency (all cores, or `cores` of them);
    for a board without NPU, the measured CPU INT8 throughput."""
    if profile.npu is None:
        assert profile.cpu.int8_gops is not None  # guaranteed by BoardProfile validation
        return profile.cpu.int8_gops.value
    npu = profile.npu
    total = int(npu.cores.value)
    used = total if cores is None else cores
    if not 1 <= used <= total:
        raise ValueError(f"{profile.id}: cores must be in 1..{total}, got {used}")
    return npu.int8_tops.value * 1000.0 * npu.efficiency.value * used / total


def format_board_table(profiles: Mapping[str, BoardProfile] | Iterable[BoardProfile]) -> str:
    """Plain-text aligned table for `build.py boards`."""
    items = list(profiles.values()) if isinstance(profiles, Mapping) else list(profiles)
    head = ["id", "SoC", "CPU", "RAM MB", "model MB", "INT8 TOPS", "eff. GOPS", "runtime",
            "toolchain -> format", "yolov8n fps"]
    rows = [head]
    for p in items:
        tops = f"{p.npu.int8_tops.value:g}" if p.npu else "- (CPU)"
        eff = f"{effective_gops(p):.0f}" + ("" if p.npu is None or p.npu.efficiency.kind != "assumed" else "*")
        lat = p.latency("yolov8n", 640, "int8")
        fps = "-" if lat is None else f"{lat.frames_per_second:.1f}" + ("" if lat.verified else "?")
        rows.append([p.id, p.soc, f"{int(p.cpu.cores.value)}x {p.cpu.arch}", f"{p.ram_mb.value:.0f}",
                     f"{p.model_memory_mb.value:.0f}", tops, eff, "yes" if p.hosts_runtime else "no",
                     f"{p.toolchain.name} -> {p.toolchain.model_format}", fps])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("eff. GOPS = NPU INT8 peak x efficiency (host-cpu: measured); * = efficiency assumed "
                 "from a sibling board; ? = figure not verified. yolov8n fps: published, 640 px INT8, "
                 "inference only.")
    return "\n".join(lines)
