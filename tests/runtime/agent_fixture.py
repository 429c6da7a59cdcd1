"""Device agents on loopback for the flash tests: one demo image built per test session (warm
builds take about a second with the quantization cache), variants of it re-signed in memory, and
agent processes started with the live sim plug-in and stopped (with their runtimes) afterwards."""
from __future__ import annotations

import functools
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compiler.keys import public_pem
from compiler.pack import pack_image
from runtime.image import read_image

REPO = Path(__file__).resolve().parents[2]
TOKEN = "flash-test-token-0123456789"
HEALTH_TIMEOUT_S = 45


@dataclass
class Built:
    key: Ed25519PrivateKey
    files: dict[str, bytes]  # the image's files, manifest and signature excluded
    fields: dict  # the manifest's fields, key id and files excluded
    path: Path

    def image(self, key: Ed25519PrivateKey | None = None, files: dict | None = None, **changes) -> bytes:
        """The demo image re-signed with these manifest fields / files changed."""
        return pack_image({**self.files, **(files or {})}, key or self.key, **{**self.fields, **changes})[0]


@functools.lru_cache(maxsize=1)
def demo_build(folder: str) -> Built:
    """Build specs/demo-site.yaml for host-cpu once per session with a fresh key."""
    from compiler.boards import load_board_profiles
    from compiler.builder import build_images
    from compiler.keys import new_key_pair
    from compiler.spec import load_spec

    root = Path(folder)
    priv, _, _ = new_key_pair(root / "keys")
    result = load_spec(REPO / "specs" / "demo-site.yaml", boards=load_board_profiles())
    assert result.ok, result.errors
    built = build_images(result.spec, REPO / "specs" / "demo-site.yaml", result.document.files,
                         load_board_profiles()["host-cpu"], root / "out", key_path=str(priv), progress=lambda m: None)
    from compiler.keys import load_private_key

    key = load_private_key(priv)
    v = read_image(built[0].path, [key.public_key()])
    m = v.manifest
    fields = dict(site=m.site, device=m.device, board=m.board, compatible=m.compatible, role=m.role,
                  image_version=m.image_version, spec_sha256=m.spec_sha256, builder_version=m.builder_version, plan=m.plan)
    return Built(key, dict(v.files), fields, built[0].path)


def retar(blob: bytes, change) -> bytes:
    """Rewrite an archive's entries (dict name -> bytes) with `change(entries)`, keeping the rest."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        entries = {m.name: tar.extractfile(m).read() for m in tar}
    change(entries)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


class AgentProcess:
    """`python -m runtime.agent` on 127.0.0.1 with a free port, provisioned in `state`."""

    def __init__(self, state: Path, keys: list[Ed25519PrivateKey], board: str = "host-cpu", extra=()):
        self.state = Path(state)
        self.extra = list(extra)
        if not (self.state / "agent.json").exists():
            self.state.mkdir(parents=True, exist_ok=True)
            pems = []
            for i, k in enumerate(keys):
                p = self.state.parent / f"{self.state.name}-trusted{i}.pub.pem"
                p.write_bytes(public_pem(k.public_key()))
                pems += ["--key", str(p)]
            subprocess.run([sys.executable, "-m", "runtime.agent", "provision", "--state", str(self.state), "--board", board,
                            *pems, "--token", TOKEN], cwd=REPO, check=True, capture_output=True)
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> "AgentProcess":
        ready = self.state.parent / f"{self.state.name}.ready"
        ready.unlink(missing_ok=True)
        self.log = open(self.state.parent / f"{self.state.name}.agent.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "runtime.agent", "--state", str(self.state), "--port", "0", "--sim",
                                      "--health-timeout", str(HEALTH_TIMEOUT_S), "--ready-file", str(ready), *self.extra],
                                     cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not ready.exists() or not ready.read_text().endswith("\n"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent did not start: {self.agent_log()}")
            time.sleep(0.05)
        host, port = ready.read_text().split()
        scheme = "https" if "--cert" in self.extra else "http"
        self.url = f"{scheme}://{host}:{port}"
        return self

    def agent_log(self) -> str:
        p = self.state.parent / f"{self.state.name}.agent.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def runtime_log(self) -> str:
        p = self.state / "run" / "runtime.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def runtime_pid(self) -> int | None:
        try:
            return int(json.loads((self.state / "run" / "runtime.pid").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        pid = self.runtime_pid()  # a runtime orphaned by a kill -9 of its agent
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        self.log.close()


def request(url: str, method: str = "GET", path: str = "/status", token: str | None = TOKEN, body: bytes | None = None):
    """(HTTP status, JSON) of a raw request, for the auth and protocol checks."""
    req = urllib.request.Request(url + path, data=body, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_for(predicate, timeout: float = 30.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s")

