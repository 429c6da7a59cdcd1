"""The runtime as the agent's child process: start it on a slot, read its health report, stop it,
restart it when it dies outside an install (with backoff)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .state import State

STOP_TIMEOUT_S = 10.0
CRASH_LOOP = (3, 180.0)  # this many exits within this many seconds on one slot: a crash loop
STALE_S = 15.0  # a status file older than this means the runtime stopped processing frames
MAX_LOG_BYTES = 8 << 20  # run/runtime.log is cut to runtime.log.1 beyond this (bounded storage)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that is gone counts as stopped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class Supervisor:
    def __init__(self, state: State, python: str = sys.executable, plugins: tuple[str, ...] = (),
                 pythonpath: tuple[str, ...] = (), extra_args: tuple[str, ...] = (), log=print):
        self.state = state
        self.python = python
        self.plugins = tuple(plugins)
        self.pythonpath = tuple(str(Path(p).resolve()) for p in pythonpath)
        self.extra_args = tuple(extra_args)
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.slot: str | None = None
        self.started_at: float | None = None
        self.restarts = 0
        self.exit_note: str | None = None
        self._lock = threading.RLock()
        self._want: tuple[Path, Path] | None = None  # (image dir, pack dir) the watchdog keeps running
        self._watch = threading.Thread(target=self._watchdog, name="runtime-watchdog", daemon=True)
        self._closing = False
        self.crashes: list[float] = []  # exit times on the current slot (the crash-loop check)
        # called (no lock held) on a crash loop; True when it moved the runtime elsewhere (the agent
        # falls back to its other good slot), False to keep restarting here with backoff
        self.on_crash_loop = None
        self._watch.start()

    @property
    def status_file(self) -> Path:
        return self.state.run / "status.json"

    @property
    def pid_file(self) -> Path:
        return self.state.run / "runtime.pid"

    # -- start / stop --------------------------------------------------------------------------
    def command(self, image_dir: Path, pack_dir: Path) -> list[str]:
        cmd = [self.python, "-m", "runtime", "--image-dir", str(image_dir), "--state", str(self.state.data),
               "--board", self.state.board, "--status-file", str(self.status_file), "--pack-dir", str(pack_dir)]
        for k in self.state.key_paths():
            cmd += ["--key", str(k)]
        for p in self.plugins:
            cmd += ["--plugin", p]
        return cmd + list(self.extra_args)

    def start(self, slot: str, image_dir: Path, pack_dir: Path, supervise: bool = True) -> int:
        with self._lock:
            self.stop()
            self.state.run.mkdir(parents=True, exist_ok=True)
            self.state.data.mkdir(parents=True, exist_ok=True)
            self.status_file.unlink(missing_ok=True)
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
                       PYTHONPATH=os.pathsep.join([str(image_dir), *self.pythonpath]))
            log = open(self.state.run / "runtime.log", "ab")
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} start slot {slot}: {image_dir.name}\n".encode())
            log.flush()
            # cwd = the slot: `-m runtime` then runs the runtime the image carries, not the agent's
            self.proc = subprocess.Popen(self.command(image_dir, pack_dir), cwd=image_dir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            if slot != self.slot:
                self.crashes = []
            self.slot, self.started_at, self.exit_note = slot, time.time(), None
            self.pid_file.write_text(json.dumps({"pid": self.proc.pid, "state": str(self.state.root)}) + "\n")
            self._want = (image_dir, pack_dir) if supervise else None
            self.log(f"runtime started on slot {slot} ({image_dir.name}), pid {self.proc.pid}")
            return self.proc.pid

    def stop(self) -> None:
        with self._lock:
            self._want = None
            p, self.proc = self.proc, None
            if p is not None and p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    p.terminate()
                try:
                    p.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except OSError:
                        p.kill()
                    p.wait()
            self.pid_file.unlink(missing_ok=True)

    def close(self) -> None:
        self._closing = True
        self.stop()

    def kill_orphan(self) -> int | None:
        """A runtime left running by an agent that was killed: stop it (its pid file names our state folder)."""
        try:
            info = json.loads(self.pid_file.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmdline = ""
        if info.get("state") != str(self.state.root) or str(self.state.data) not in cmdline:
            self.pid_file.unlink(missing_ok=True)
            return None
        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except OSError:
                try:
                    os.kill(pid, sig)
                except OSError:
                    break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if not _alive(pid):
                break
        self.pid_file.unlink(missing_ok=True)
        return pid

    # -- health --------------------------------------------------------------------------------
    def report(self) -> dict | None:
        try:
            return json.loads(self.status_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def health(self) -> dict:
        p = self.proc
        running = p is not None and p.poll() is None
        rep = self.report() if running else None
        if rep is not None and p is not None and rep.get("pid") != p.pid:
            rep = None
        out = {"running": running, "pid": p.pid if running else None, "slot": self.slot if running else None,
               "restarts": self.restarts, "exit": self.exit_note}
        if rep:
            age = time.time() - float(rep.get("updated") or 0)
            out.update(frames=rep.get("frames", 0), models_loaded=rep.get("models_loaded", 0),
                       status_age_s=round(age, 1), tiers=rep.get("tiers", {}), pack_version=rep.get("pack_version"),
                       pack_error=rep.get("pack_error"), max_frame_gap_s=rep.get("max_frame_gap_s"))
            out["healthy"] = bool(rep.get("frames")) and bool(rep.get("models_loaded")) and age < STALE_S
        else:
            out["healthy"] = False
        return out

    def wait_healthy(self, timeout: float) -> tuple[bool, str]:
        """Until the runtime reports frames processed and models loaded; False with the reason when it
        exits first or the time runs out."""
        deadline = time.monotonic() + timeout
        p = self.proc
        if p is None:
            return False, "no runtime was started"
        while time.monotonic() < deadline:
            rc = p.poll()
            if rc is not None:
                return False, f"the runtime exited with status {rc} before reporting health: {self.log_tail()}"
            rep = self.report()
            if rep and rep.get("pid") == p.pid and rep.get("frames", 0) > 0 and rep.get("models_loaded", 0) > 0:
                return True, f"healthy: {rep['frames']} frames, {rep['models_loaded']} models loaded"
            time.sleep(0.1)
        return False, f"no health report within {timeout:.0f} s (frames processed and models loaded): {self.log_tail()}"

    def log_tail(self, lines: int = 3) -> str:
        try:
            with open(self.state.run / "runtime.log", "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 4096))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def rotate_log(self, limit: int = MAX_LOG_BYTES) -> bool:
        """Keep the runtime's log bounded: past `limit`, its tail goes to runtime.log.1 and the log is
        truncated in place (the runtime appends with O_APPEND, so it goes on writing at the new end)."""
        path = self.state.run / "runtime.log"
        try:
            size = path.stat().st_size
            if size <= limit:
                return False
            with open(path, "r+b") as f:
                f.seek(max(0, size - limit // 4))
                tail = f.read()
                f.truncate(0)
            (self.state.run / "runtime.log.1").write_bytes(tail)
            return True
        except OSError:
            return False

    # -- the watchdog --------------------------------------------------------------------------
    def _watchdog(self) -> None:
        backoff = 1.0
        ticks = 0
        while not self._closing:
            time.sleep(0.5)
            ticks += 1
            if ticks % 20 == 0:
                self.rotate_log()
            with self._lock:
                p, want = self.proc, self._want
                if want is None or p is None or p.poll() is None:
                    if p is not None and p.poll() is None and self.started_at and time.time() - self.started_at > 60:
                        backoff = 1.0
                    continue
                self.exit_note = f"exited with status {p.returncode}: {self.log_tail(1)}"
                now = time.time()
                self.crashes = [c for c in self.crashes if now - c <= CRASH_LOOP[1]] + [now]
                looping = len(self.crashes) >= CRASH_LOOP[0] and self.on_crash_loop is not None
                if not looping:
                    self.log(f"runtime on slot {self.slot} {self.exit_note}; restarting in {backoff:.0f} s")
            if looping:
                self.log(f"runtime on slot {self.slot} exited {len(self.crashes)} times in {CRASH_LOOP[1]:.0f} s: "
                         f"a crash loop ({self.exit_note})")
                if self.on_crash_loop():
                    backoff = 1.0
                    continue
            time.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            with self._lock:
                if self._want == want and not self._closing and self.proc is p:
                    self.restarts += 1
                    note = self.exit_note
                    self.start(self.slot, *want)
                    self.exit_note = note
