"""Build model packs (`.swpack`, format in runtime/modelpack.py): the models and tiers of one
device, signed, to swap into a running image without a restart."""
from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runtime.config import ModelConfig, RuntimeConfig
from runtime.image import Manifest, VerifiedImage
from runtime.modelpack import PACK_FILE, PACK_ROLE, pack_json

from . import __version__ as builder_version
from .pack import pack_image


def make_pack(models: dict[str, tuple[ModelConfig, ...]], files: dict[str, bytes], key: Ed25519PrivateKey, *,
              site: str, device: str, board: str, compatible: tuple[str, ...], pack_version: int,
              spec_sha256: str = "", plan: dict | None = None) -> tuple[bytes, Manifest]:
    """Sign a pack of `models` (tiers per task) whose files (`models/...` -> bytes) are given."""
    used = {m.file for tiers in models.values() for m in tiers}
    missing = sorted(used - set(files))
    if missing:
        raise ValueError(f"pack: no bytes for {', '.join(missing)}")
    content = {name: files[name] for name in sorted(used)}
    content[PACK_FILE] = pack_json(models)
    return pack_image(content, key, site=site, device=device, board=board, compatible=tuple(compatible),
                      role=PACK_ROLE, image_version=pack_version, spec_sha256=spec_sha256 or "0" * 64,
                      builder_version=builder_version, plan=plan or {})


def pack_from_image(image: VerifiedImage, key: Ed25519PrivateKey, pack_version: int,
                    tasks: tuple[str, ...] | None = None, reorder: dict[str, tuple[str, ...]] | None = None) -> tuple[bytes, Manifest]:
    """The models and tiers of a verified image as a pack (optionally only `tasks`, and with tiers
    reordered: `reorder={"detector": ("det-s256", "det-m320")}` puts those variants first)."""
    config = RuntimeConfig.from_json(image.files["config.json"])
    models = {t: tiers for t, tiers in config.models.items() if tasks is None or t in tasks}
    for task, order in (reorder or {}).items():
        tiers = models[task]
        rank = {v: i for i, v in enumerate(order)}
        models[task] = tuple(sorted(tiers, key=lambda m: rank.get(m.variant, len(rank))))
    m = image.manifest
    plan = {"from_image": {"image_version": m.image_version, "spec_sha256": m.spec_sha256},
            "tiers": {t: [x.variant for x in tiers] for t, tiers in models.items()}}
    return make_pack(models, image.files, key, site=m.site, device=m.device, board=m.board, compatible=m.compatible,
                     pack_version=pack_version, spec_sha256=m.spec_sha256, plan=json.loads(json.dumps(plan)))
