"""The image format, shared by the builder (writes) and the device side (reads).

An image (`.swimg`) is a gzip'd tar whose entries are regular files only:

    manifest.json   canonical JSON: format, versions, board, device, every file's sha256 and size, the plan
    manifest.sig    detached Ed25519 signature over the exact bytes of manifest.json
    config.json     the runtime config
    models/...      ONNX (and NPU formats)
    runtime/...     the runtime's source
    boot/...        launcher, systemd unit, README

`read_image` refuses anything that is not exactly what the signed manifest lists: a bad
signature, a changed/missing/extra file, a link or device entry, an absolute or `..` path, a
duplicate entry, an incompatible board, or an unknown format version.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import asdict, dataclass, field
import zlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_IMAGE_BYTES = 1 << 30  # refuse archives that would unpack to more than 1 GiB
MAX_ENTRIES = 20_000


class ImageError(Exception):
    """An image that must not be installed; the message says why."""


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    site: str
    device: str
    board: str
    compatible: tuple[str, ...]
    role: str  # camera | camera-detector | edge
    image_version: int
    spec_sha256: str
    builder_version: str
    key_id: str
    files: tuple[FileEntry, ...]
    plan: dict = field(default_factory=dict)
    format: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        """Canonical bytes: sorted keys, no whitespace variance, UTF-8 (what the signature covers)."""
        data = asdict(self)
        data["compatible"] = list(self.compatible)
        data["files"] = [asdict(f) for f in sorted(self.files, key=lambda f: f.path)]
        return (json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> "Manifest":
        try:
            data = json.loads(raw.decode("utf-8"))
            if data.get("format") != FORMAT_VERSION:
                raise ImageError(f"image format {data.get('format')!r} is not supported (this runtime reads {FORMAT_VERSION})")
            files = tuple(FileEntry(str(f["path"]), str(f["sha256"]), int(f["size"])) for f in data["files"])
            return cls(
                site=str(data["site"]), device=str(data["device"]), board=str(data["board"]),
                compatible=tuple(str(b) for b in data["compatible"]), role=str(data["role"]),
                image_version=int(data["image_version"]), spec_sha256=str(data["spec_sha256"]),
                builder_version=str(data["builder_version"]), key_id=str(data["key_id"]), files=files,
                plan=dict(data.get("plan") or {}), format=int(data["format"]),
            )
        except ImageError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ImageError(f"manifest.json is malformed ({type(e).__name__}: {e})") from None


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """A PEM public key (as `build.py keys new` writes) or the raw 32 bytes."""
    try:
        key = serialization.load_pem_public_key(data) if data.lstrip().startswith(b"-----") else Ed25519PublicKey.from_public_bytes(data)
    except ValueError as e:
        raise ImageError(f"not an Ed25519 public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ImageError("the public key is not an Ed25519 key")
    return key


def check_member_name(name: str) -> None:
    """Refuse paths that could escape the install folder or mean different files on different systems."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        raise ImageError(f"entry {name!r}: absolute or malformed path")
    parts = name.split("/")
    if any(p in ("..", ".", "") for p in parts) or (len(parts[0]) == 2 and parts[0][1] == ":"):
        raise ImageError(f"entry {name!r}: path with '..', '.' or a drive letter")


@dataclass(frozen=True)
class VerifiedImage:
    manifest: Manifest
    files: dict[str, bytes]  # every file the manifest lists, verified
    raw_manifest: bytes = b""
    signature: bytes = b""

    def extract(self, dest: Path) -> None:
        """Write the verified files, the signed manifest and its signature under `dest`, so the
        runtime can check the folder again at boot (`verify_dir`)."""
        dest = Path(dest)
        for name, data in sorted(self.files.items()):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (dest / MANIFEST).write_bytes(self.raw_manifest or self.manifest.to_json())
        if self.signature:
            (dest / SIGNATURE).write_bytes(self.signature)


def _members(blob: bytes) -> dict[str, bytes]:
    try:
        raw = gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as e:
        raise ImageError(f"not an image archive (gzip: {e})") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise ImageError("archive unpacks to more than 1 GiB")
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for n, member in enumerate(tar):
                if n >= MAX_ENTRIES:
                    raise ImageError(f"more than {MAX_ENTRIES} entries")
                check_member_name(member.name)
                if not member.isreg():
                    kind = "link" if (member.issym() or member.islnk()) else "directory" if member.isdir() else "special file"
                    raise ImageError(f"entry {member.name!r} is a {kind}; images hold regular files only")
                if member.name in out:
                    raise ImageError(f"entry {member.name!r} appears twice")
                f = tar.extractfile(member)
                out[member.name] = f.read() if f else b""
    except tarfile.TarError as e:
        raise ImageError(f"not an image archive (tar: {e})") from None
    return out


def read_image(source: str | Path | bytes, trusted_keys: list[Ed25519PublicKey], board: str | None = None) -> VerifiedImage:
    """Open and verify an image; raises ImageError naming the first problem found."""
    if isinstance(source, (str, Path)):
        try:
            blob = Path(source).read_bytes()
        except OSError as e:
            raise ImageError(f"cannot read {source}: {e.strerror or e}") from None
    else:
        blob = bytes(source)
    if not trusted_keys:
        raise ImageError("no trusted public key given; an image is only installed when its signature checks")
    members = _members(blob)
    if MANIFEST not in members or SIGNATURE not in members:
        raise ImageError(f"missing {MANIFEST if MANIFEST not in members else SIGNATURE}")
    raw_manifest, signature = members.pop(MANIFEST), members.pop(SIGNATURE)
    for key in trusted_keys:
        try:
            key.verify(signature, raw_manifest)
            break
        except InvalidSignature:
            continue
    else:
        raise ImageError("the signature does not match any trusted key (tampered manifest, or signed with another key)")
    manifest = Manifest.from_json(raw_manifest)
    listed = {f.path: f for f in manifest.files}
    for name in sorted(set(members) - set(listed)):
        raise ImageError(f"entry {name!r} is not in the signed manifest")
    for name, entry in sorted(listed.items()):
        check_member_name(name)
        if name not in members:
            raise ImageError(f"{name}: listed in the manifest but missing from the archive")
        data = members[name]
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ImageError(f"{name}: contents differ from the signed manifest (sha256 mismatch)")
    if board is not None and board not in manifest.compatible:
        raise ImageError(f"image is for {', '.join(manifest.compatible)}, not for board '{board}'")
    return VerifiedImage(manifest, members, raw_manifest, signature)


def verify_dir(folder: str | Path, trusted_keys: list[Ed25519PublicKey], board: str | None = None) -> Manifest:
    """Check an extracted image folder at boot: the signature over manifest.json, then every listed
    file's size and sha256 (Python's __pycache__ folders are ignored; nothing else may be added)."""
    folder = Path(folder)
    try:
        raw, signature = (folder / MANIFEST).read_bytes(), (folder / SIGNATURE).read_bytes()
    except OSError as e:
        raise ImageError(f"{folder}: not an installed image ({e.strerror or e})") from None
    if not trusted_keys:
        raise ImageError("no trusted public key given")
    for key in trusted_keys:
        try:
            key.verify(signature, raw)
            break
        except InvalidSignature:
            continue
    else:
        raise ImageError("the signature does not match any trusted key")
    manifest = Manifest.from_json(raw)
    listed = {f.path for f in manifest.files}
    for entry in manifest.files:
        check_member_name(entry.path)
        try:
            data = (folder / entry.path).read_bytes()
        except OSError:
            raise ImageError(f"{entry.path}: missing from the installed image") from None
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ImageError(f"{entry.path}: changed since the image was signed")
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in listed and rel not in (MANIFEST, SIGNATURE) and "__pycache__" not in path.parts:
            raise ImageError(f"{rel}: not part of the signed image")
    if board is not None and board not in manifest.compatible:
        raise ImageError(f"image is for {', '.join(manifest.compatible)}, not for board '{board}'")
    return manifest
