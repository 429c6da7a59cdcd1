"""On-disk caches of rendered training data, shared by the distillation tasks (no torch here, so
data workers stay light)."""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parent.parent


def source_digest(folder: str = "sim") -> str:
    """A short hash of a package's source files: caches of rendered data key on it, so a change in
    the renderer re-renders."""
    h = hashlib.sha256()
    for p in sorted((REPO_ROOT / folder).glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def cached_pickle(path: Path, build):
    """`build()`'s value, pickled at `path` the first time (written atomically) and read back after."""
    if path.is_file():
        with open(path, "rb") as f:
            return pickle.load(f)
    value = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return value
