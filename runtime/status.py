"""The runtime's health report for its supervisor (the device agent), and model-pack swaps.

With `--status-file PATH` the runtime rewrites PATH (atomically: temp file + rename) about once
a second from its frame loop, as JSON:

    {"pid", "started", "updated", "frames", "models_loaded", "last_frame_t", "tiers",
     "pack_version", "pack_error", "max_frame_gap_s"}

`frames` counts every processed frame since start and `models_loaded` the model sessions opened;
the agent calls a runtime healthy once both are above zero. With `--pack-dir DIR` the same tick
polls DIR's pointer file; a new model pack is verified, its sessions are opened on a side thread
while frames go on, and the tiers are swapped in between two frames (runtime/modelpack.py).
"""
from __future__ import annotations

import json
import os
import sys
import threading
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
        self._warming = None  # (name, pack, thread, errors) while a new pack's sessions open
        self._last = 0.0
        self._frame_at: float | None = None
        self._gap = 0.0
        self.write(None)

    def tick(self, device) -> None:
        """After each processed frame: count it; once a second, check for a pack and write the status."""
        self.frames += 1
        now = time.monotonic()
        if self._frame_at is not None:
            self._gap = max(self._gap, now - self._frame_at)
        self._frame_at = now
        if now - self._last < self.every_s and self.frames > 1:
            return
        self._last = now
        self.poll_pack(device)
        self.write(device)

    # -- model packs -----------------------------------------------------------------------------
    def poll_pack(self, device) -> None:
        if self.pack_dir is None:
            return
        if self._warming is not None:
            name, pack, thread, errors = self._warming
            if not thread.is_alive():
                self._warming = None
                self._swap(device, name, pack, errors)
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
        errors: list[str] = []

        def warm():  # open the new sessions beside the running ones, so the swap itself costs no frame
            for tiers in pack.models.values():
                for m in tiers:
                    try:
                        device.sessions.get(m)
                    except Exception as e:  # onnxruntime's own errors: the pack is refused, nothing swapped
                        errors.append(f"{m.task}/{m.variant}: {type(e).__name__}: {e}")

        if self.pack_name is None and self.frames <= 1:  # at start: no frames to keep going yet
            warm()
            self._swap(device, name, pack, errors)
            return
        thread = threading.Thread(target=warm, name="pack-warm", daemon=True)
        thread.start()
        self._warming = (name, pack, thread, errors)

    def _swap(self, device, name: str, pack, errors: list[str]) -> None:
        if errors:
            self.pack_error = f"pack {name} refused: " + "; ".join(errors)
            self.log(f"model pack: {self.pack_error}")
            device.sessions.drop_except({m.file for tiers in device.governor.tiers.values() for m in tiers})
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
            "max_frame_gap_s": round(self._gap, 4),  # the longest wait between two frames since the last report
        }
        self._gap = 0.0
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:  # a full disk must not stop the frame loop
            self.log(f"status file {self.path}: {e}")
