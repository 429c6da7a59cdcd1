"""Model packs (`.swpack`): new models and tiers for a running image, swapped in without a restart.

A pack is an archive in the image format (runtime/image.py: a gzip'd tar with a canonical,
Ed25519-signed `manifest.json` and its `manifest.sig`). Its manifest says `role: "model-pack"`,
names the site, device and compatible boards like an image's, and carries the pack's version in
`image_version` (packs have their own anti-rollback sequence). Its files are exactly:

    pack.json    {"format": 1, "models": {task: [ModelConfig, ...]}}   tiers best first; every
                 `file` is a path inside the pack and its `sha256` must match the signed manifest
    models/...   the ONNX (or NPU) files that pack.json names

A pack replaces the tiers of the tasks it names (`Governor.swap_pack`); tasks it does not name
keep the image's. The trajectory forecaster is built once at start, so a new trajectory model
takes effect at the next runtime start.

On a device the agent verifies the archive (`read_pack`: the image checks plus the rules above),
writes it as a folder `STATE/packs/<slot>/<name>/` (the files, manifest.json, manifest.sig) and
then replaces the one-line pointer file `STATE/packs/<slot>/current` with `<name>` (atomically).
The runtime, started with `--pack-dir STATE/packs/<slot>`, polls the pointer about once a second
between frames; when it changes it verifies the folder again (`load_pack_dir`), swaps the tiers
in and reports the pack's version (or the reason it refused it) in its status file.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, ModelConfig, _build
from .image import ImageError, Manifest, VerifiedImage, read_image, verify_dir

__all__ = ["PACK_ROLE", "PACK_FILE", "POINTER", "ModelPack", "pack_json", "check_pack", "read_pack", "load_pack_dir"]

PACK_ROLE = "model-pack"
PACK_FILE = "pack.json"
PACK_FORMAT = 1
POINTER = "current"


@dataclass(frozen=True)
class ModelPack:
    manifest: Manifest
    models: dict[str, tuple[ModelConfig, ...]]

    @property
    def version(self) -> int:
        return self.manifest.image_version


def pack_json(models: dict[str, tuple[ModelConfig, ...]]) -> bytes:
    """The canonical pack.json for these tiers."""
    data = {"format": PACK_FORMAT, "models": {t: [dataclasses.asdict(m) for m in tiers] for t, tiers in sorted(models.items())}}
    return (json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def _parse(manifest: Manifest, raw: bytes) -> dict[str, tuple[ModelConfig, ...]]:
    if manifest.role != PACK_ROLE:
        raise ImageError(f"not a model pack (role {manifest.role!r}); images go to PUT /image")
    listed = {f.path: f for f in manifest.files}
    for name in listed:
        if name != PACK_FILE and not name.startswith("models/"):
            raise ImageError(f"{name}: a model pack holds only {PACK_FILE} and models/")
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or data.get("format") != PACK_FORMAT:
            raise ConfigError(f"format {data.get('format') if isinstance(data, dict) else None!r} is not {PACK_FORMAT}")
        if not isinstance(data.get("models"), dict) or not data["models"]:
            raise ConfigError("models: expected a non-empty object of task -> tiers")
        models = {str(t): _build(tuple[ModelConfig, ...], tiers, f"models.{t}") for t, tiers in data["models"].items()}
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"{PACK_FILE}: {e}") from None
    for task, tiers in models.items():
        if not tiers:
            raise ImageError(f"{PACK_FILE}: task {task!r} has no tiers")
        for m in tiers:
            if m.task != task:
                raise ImageError(f"{PACK_FILE}: {m.variant} is a {m.task} model listed under {task}")
            entry = listed.get(m.file)
            if entry is None or not m.file.startswith("models/"):
                raise ImageError(f"{PACK_FILE}: {task}/{m.variant}: {m.file} is not a signed file of the pack")
            if entry.sha256 != m.sha256:
                raise ImageError(f"{PACK_FILE}: {task}/{m.variant}: sha256 differs from the signed manifest")
    return models


def check_pack(verified: VerifiedImage) -> ModelPack:
    """The pack rules on an archive that `read_image` has verified."""
    if PACK_FILE not in verified.files:
        raise ImageError(f"not a model pack: no {PACK_FILE}")
    return ModelPack(verified.manifest, _parse(verified.manifest, verified.files[PACK_FILE]))


def read_pack(source, trusted_keys, board: str | None = None) -> tuple[VerifiedImage, ModelPack]:
    """Open and verify a pack archive (path or bytes); raises ImageError naming the first problem."""
    verified = read_image(source, trusted_keys, board=board)
    return verified, check_pack(verified)


def load_pack_dir(folder: str | Path, trusted_keys, board: str | None = None) -> ModelPack:
    """Verify an installed pack folder and return its tiers with `file` pointing into the folder
    (absolute paths, so the runtime's sessions load them from there)."""
    folder = Path(folder).resolve()
    manifest = verify_dir(folder, trusted_keys, board)
    models = _parse(manifest, (folder / PACK_FILE).read_bytes())
    return ModelPack(manifest, {t: tuple(dataclasses.replace(m, file=str(folder / m.file)) for m in tiers)
                                for t, tiers in models.items()})
