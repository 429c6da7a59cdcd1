"""Signing keys: Ed25519, PEM files. The private key never enters an image or the repository."""
from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from runtime.image import key_id, load_public_key

KEY_ENV = "SITEWARDEN_SIGNING_KEY"
DEFAULT_DIR = Path("keys")
PRIVATE_NAME, PUBLIC_NAME = "signing.key.pem", "signing.pub.pem"


class KeyError_(ValueError):
    """A key that is missing or unreadable; the message says how to make or point at one."""


def new_key_pair(folder: Path = DEFAULT_DIR, overwrite: bool = False) -> tuple[Path, Path, str]:
    folder = Path(folder)
    priv_path, pub_path = folder / PRIVATE_NAME, folder / PUBLIC_NAME
    if priv_path.exists() and not overwrite:
        raise KeyError_(f"{priv_path} already exists; keep it (devices trust its public key) or pass --force")
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(public_pem(key.public_key()))
    return priv_path, pub_path, key_id(key.public_key())


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: str | Path | None = None) -> Ed25519PrivateKey:
    """From `path`, else $SITEWARDEN_SIGNING_KEY, else keys/signing.key.pem."""
    chosen = Path(path or os.environ.get(KEY_ENV) or DEFAULT_DIR / PRIVATE_NAME)
    if not chosen.is_file():
        raise KeyError_(
            f"no signing key at {chosen}; make one with `python build.py keys new` "
            f"(or point --key / ${KEY_ENV} at yours)"
        )
    try:
        key = serialization.load_pem_private_key(chosen.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise KeyError_(f"{chosen}: not a readable PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyError_(f"{chosen}: not an Ed25519 key")
    return key


def load_public_keys(paths) -> list[Ed25519PublicKey]:
    keys = []
    for p in paths:
        try:
            keys.append(load_public_key(Path(p).read_bytes()))
        except OSError as e:
            raise KeyError_(f"cannot read public key {p}: {e.strerror or e}") from None
    return keys
