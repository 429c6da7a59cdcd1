"""Pack and sign images deterministically: same inputs, same bytes.

Entries are sorted, every header field that varies between machines (mtime, owner, group,
permissions beyond exec) is fixed, and gzip's own timestamp and file name are zeroed.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runtime.image import MANIFEST, SIGNATURE, FileEntry, Manifest, check_member_name, key_id

EXECUTABLE_SUFFIXES = (".sh",)


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if name.endswith(EXECUTABLE_SUFFIXES) else 0o644
    info.type = tarfile.REGTYPE
    return info


def archive_bytes(files: dict[str, bytes]) -> bytes:
    """A deterministic tar.gz of `files` (name -> bytes), in sorted order."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            check_member_name(name)
            tar.addfile(_tarinfo(name, len(files[name])), io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def build_manifest(files: dict[str, bytes], key: Ed25519PrivateKey, **fields) -> Manifest:
    entries = tuple(FileEntry(name, hashlib.sha256(data).hexdigest(), len(data)) for name, data in sorted(files.items()))
    return Manifest(files=entries, key_id=key_id(key.public_key()), **fields)


def pack_image(files: dict[str, bytes], key: Ed25519PrivateKey, **manifest_fields) -> tuple[bytes, Manifest]:
    """Sign a manifest of `files` and return the archive's bytes and the manifest."""
    for reserved in (MANIFEST, SIGNATURE):
        if reserved in files:
            raise ValueError(f"{reserved} is written by the packer")
    manifest = build_manifest(files, key, **manifest_fields)
    raw = manifest.to_json()
    return archive_bytes({**files, MANIFEST: raw, SIGNATURE: key.sign(raw)}), manifest


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically write `data` unless the file already holds exactly it; True when written."""
    path = Path(path)
    if path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True
