"""The runtime's health report for its supervisor (the device agent), and model-pack swaps.

With `--status-file PATH` the runtime rewrites PATH (atomically: temp file + rename) about once
a second from its frame loop, as JSON:

    {"pid", "started", "updated", "frames", "models_loaded", "last_frame_t", "tiers",
     "pack_version", "pack_error"}

`frames` counts every processed frame since start and `models_loaded` the model sessions opened;
the agent calls a runtime healthy once both are above zero. With `--pack-dir DIR` the same tick
polls DIR's pointer file and swaps a new model pack in between frames (runtime/modelpack.py).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from .events import Event
from .image import ImageError
from .modelpack import POINTER, load_pack_dir

__all__ = ["StatusReporter"]


class StatusReporter:
    def __init__(self, path: str | Path | None, pack_dir: str | Path | None = None, trusted_keys=(),
                 board: str | None = None, every_s: float = 1.0,
                 log=lambda m: print(m, file=sys.stderr, flush=True)):
        self.path = Path(path) if path else None
        self.pack_dir = Path(pack_dir) if pack_dir else None
        self.keys = list(trusted_keys)
        self.board = board
        self.every_s = every_s
        self.log = log
        self.started = time.time()
        self.frames = 0
        self.pack_version: int | None = None
        self.pack_name: str | None = None
        self.pack_error: str | None = None
        self._pointer_sig = None
        self._last = 0.0
        self.write(None)

    def tick(self, device) -> None:
        """After each processed frame: count it; once a second, check for a pack and write the status."""
        self.frames += 1
        now = time.monotonic()
        if now - self._last < self.every_s and self.frames > 1:
            return
        self._last = now
        self.poll_pack(device)
        self.write(device)

    # -- model packs -----------------------------------------------------------------------------
    def poll_pack(self, device) -> None:
        if self.pack_dir is None:
            return
        pointer = self.pack_dir / POINTER
        try:
            st = pointer.stat()
        except OSError:
            return
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if sig == self._pointer_sig:
            return
        self._pointer_sig = sig
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except OSError:
            self._pointer_sig = None
            return
        if not name or name == self.pack_name or "/" in name or name.startswith("."):
            return
        try:
            pack = load_pack_dir(self.pack_dir / name, self.keys, self.board)
        except (ImageError, OSError) as e:
            self.pack_error = f"pack {name} refused: {e}"
            self.log(f"model pack: {self.pack_error}")
            return
        switches = device.governor.swap_pack(pack.models)
        device.sessions.drop_except({m.file for tiers in device.governor.tiers.values() for m in tiers})
        self.pack_name, self.pack_version, self.pack_error = name, pack.version, None
        self.log(f"model pack {pack.version} ({name}) swapped in: "
                 + (", ".join(f"{s.task} {s.old} -> {s.new} ({s.reason})" for s in switches) or "same variants, new weights"))
        camera = next(iter(device.cameras), "")
        for s in switches:
            device.emit(Event.create(type="model_switch", site=device.config.site, device=device.config.device,
                                     camera=camera, t_start=time.time(), severity="info",
                                     rule=f"model_switch:{s.task}",
                                     details={"task": s.task, "from": s.old, "to": s.new, "reason": s.reason,
                                              "pack_version": pack.version}), None)

    # -- the status file ------------------------------------------------------------------------
    def write(self, device) -> None:
        if self.path is None:
            return
        data = {
            "pid": os.getpid(), "started": self.started, "updated": time.time(), "frames": self.frames,
            "models_loaded": len(getattr(device.sessions, "_cache", {})) if device is not None else 0,
            "last_frame_t": time.time() if self.frames else None,
            "tiers": device.governor.assignment() if device is not None else {},
            "pack_version": self.pack_version, "pack_error": self.pack_error,
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:  # a full disk must not stop the frame loop
            self.log(f"status file {self.path}: {e}")
