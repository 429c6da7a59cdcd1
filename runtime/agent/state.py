"""The agent's state folder: provisioning, trusted and revoked keys, the A/B slots and the boot
record, written so that a power cut or a `kill -9` at any instant leaves a bootable slot.

    STATE/
      agent.json          provisioning: {"board": B}
      token               the access token (mode 600)
      keys/<key_id>.pem   trusted Ed25519 public keys
      revoked.json        {"revoked": [key_id, ...]}: never trusted again
      boot.json           the boot record, the single commit point (see below)
      slots/<s>-g<N>/     an installed image (s = a | b; N = install generation)
      packs/<s>/          model packs installed for slot s, and their `current` pointer
      spool/              uploads in progress (removed at start)
      data/               the runtime's own state (outbox, sinks), kept across slots
      run/                runtime.pid, runtime.log, status.json (the runtime's health report)

The boot record `boot.json` says which slot is active, which was active before (`previous`)
and whether the active slot is still on trial (`pending`: installed, switched to, health not yet
confirmed). Every change goes to a temp file that is fsync'd and renamed over it, and a slot's
folder is written under a temp name, fsync'd and renamed before the record names it. So:
- killed while receiving or verifying: the record never changed; the spool is removed at start;
- killed while writing the slot: the temp folder is removed at start; the record never named it;
- killed after the switch, before the health report: `pending` is still set, so the next start
  rolls back to `previous`, whose folder was never touched.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

from ..image import ImageError, key_id, load_public_key

SLOTS = ("a", "b")


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so that a reader (or a reboot) sees the old or the new bytes, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (after writing a slot, before renaming it in)."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class State:
    """Paths and small, atomically written records of one agent's state folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.keys_dir = self.root / "keys"
        self.slots_dir = self.root / "slots"
        self.packs_dir = self.root / "packs"
        self.spool = self.root / "spool"
        self.data = self.root / "data"
        self.run = self.root / "run"
        self.boot_file = self.root / "boot.json"

    # -- provisioning ----------------------------------------------------------------------------
    @property
    def provisioned(self) -> bool:
        return (self.root / "agent.json").is_file()

    def config(self) -> dict:
        try:
            return json.loads((self.root / "agent.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ImageError(f"{self.root}: not provisioned ({e}); run `python -m runtime.agent provision`") from None

    @property
    def board(self) -> str:
        return str(self.config()["board"])

    def token(self, token_file: str | Path | None = None) -> str:
        path = Path(token_file) if token_file else self.root / "token"
        token = path.read_text(encoding="utf-8").strip()
        if len(token) < 16:
            raise ValueError(f"{path}: the access token must be at least 16 characters")
        return token

    def provision(self, board: str, keys: list[bytes], token: str | None = None) -> str:
        """Set up (or re-provision) the folder; returns the token (a new random one when not given)."""
        if not keys:
            raise ValueError("provision with at least one trusted public key (--key PUB.pem)")
        token = token or secrets.token_urlsafe(24)
        if len(token) < 16:
            raise ValueError("the access token must be at least 16 characters")
        for d in (self.keys_dir, self.slots_dir, self.packs_dir, self.spool, self.data, self.run):
            d.mkdir(parents=True, exist_ok=True)
        for pem in keys:
            self.trust(pem)
        atomic_write(self.root / "token", (token + "\n").encode(), mode=0o600)
        atomic_write(self.root / "agent.json", (json.dumps({"board": board}, indent=1) + "\n").encode())
        return token

    # -- keys ------------------------------------------------------------------------------------
    def trusted(self) -> dict[str, object]:
        """key id -> Ed25519 public key, from keys/*.pem (minus any revoked)."""
        revoked = self.revoked()
        out = {}
        for p in sorted(self.keys_dir.glob("*.pem")):
            try:
                key = load_public_key(p.read_bytes())
            except (OSError, ImageError):
                continue
            kid = key_id(key)
            if kid not in revoked:
                out[kid] = key
        return out

    def key_paths(self) -> list[Path]:
        ids = set(self.trusted())
        return [p for p in sorted(self.keys_dir.glob("*.pem")) if p.stem in ids]

    def trust(self, pem: bytes) -> str:
        key = load_public_key(pem)
        kid = key_id(key)
        if kid in self.revoked():
            raise PermissionError(f"key {kid} was revoked; a revoked key is never trusted again")
        from cryptography.hazmat.primitives import serialization

        clean = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        atomic_write(self.keys_dir / f"{kid}.pem", clean)
        return kid

    def revoked(self) -> set[str]:
        try:
            return set(json.loads((self.root / "revoked.json").read_text(encoding="utf-8"))["revoked"])
        except (OSError, ValueError, KeyError, TypeError):
            return set()

    def revoke(self, kid: str) -> None:
        """Record the revocation first (durably), then remove the key file."""
        atomic_write(self.root / "revoked.json",
                     (json.dumps({"revoked": sorted(self.revoked() | {kid})}, indent=1) + "\n").encode())
        (self.keys_dir / f"{kid}.pem").unlink(missing_ok=True)
        fsync_dir(self.keys_dir)

    # -- the boot record -------------------------------------------------------------------------
    def boot(self) -> dict:
        try:
            rec = json.loads(self.boot_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            rec = {}
        rec.setdefault("active", None)
        rec.setdefault("previous", None)
        rec.setdefault("pending", False)
        rec.setdefault("generation", 0)
        rec.setdefault("slots", {})
        rec.setdefault("last_error", None)
        return rec

    def save_boot(self, rec: dict) -> None:
        atomic_write(self.boot_file, (json.dumps(rec, indent=1, sort_keys=True) + "\n").encode())

    def slot_dir(self, rec: dict, slot: str | None) -> Path | None:
        meta = rec["slots"].get(slot) if slot else None
        return self.slots_dir / meta["dir"] if meta and meta.get("dir") else None

    def clean(self, rec: dict) -> list[str]:
        """Remove what an interrupted transfer or install left behind; returns what was removed."""
        removed = []
        keep = {m.get("dir") for m in rec["slots"].values()}
        for p in list(self.spool.glob("*")) + list(self.slots_dir.glob("*")):
            if p.parent == self.slots_dir and p.name in keep:
                continue
            removed.append(str(p.relative_to(self.root)))
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        for slot_packs in self.packs_dir.glob("*"):
            for p in slot_packs.glob(".tmp-*"):
                removed.append(str(p.relative_to(self.root)))
                shutil.rmtree(p, ignore_errors=True)
        return removed
