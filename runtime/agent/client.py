"""Talk to a device agent (stdlib only): flash an image, push a model pack, read the status,
rotate keys. The command line (`build.py flash`) and the VMS both use these functions.

    from runtime.agent.client import flash, status, push_pack
    reply = flash("out/demo.swimg", "http://127.0.0.1:8700", token, progress=lambda sent, total: ...)
    reply["verdict"]   # "ok" | "refused" | "rolled_back"; reply["reason"] says why

Verdict replies (including refusals, which the agent sends with a 4xx status) come back as
dicts; what is not a verdict raises `AgentError`: the agent cannot be reached, the token is
wrong (`status` 401), or the reply is not the agent's JSON.
"""
from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlsplit

__all__ = ["AgentError", "flash", "push_pack", "status", "add_key", "revoke_key", "read_token"]

CHUNK = 256 * 1024
DEFAULT_TIMEOUT = 300.0  # an install waits for the new runtime's health report (and a rollback for the old one)


class AgentError(Exception):
    """No verdict from the agent; `status` is the HTTP status when there was one (401: bad token)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def read_token(token: str | None = None, token_file: str | os.PathLike | None = None) -> str:
    """The token given, else the first line of `token_file`, else $SITEWARDEN_AGENT_TOKEN."""
    if token:
        return token.strip()
    if token_file:
        return Path(token_file).read_text(encoding="utf-8").strip()
    env = os.environ.get("SITEWARDEN_AGENT_TOKEN", "").strip()
    if env:
        return env
    raise AgentError("no agent token: pass --token, --token-file or set $SITEWARDEN_AGENT_TOKEN")


class _Upload:
    """A file-like body that reports progress as urllib reads it in chunks."""

    def __init__(self, path: Path, progress: Callable[[int, int], None] | None):
        self.f = open(path, "rb")
        self.total = path.stat().st_size
        self.sent = 0
        self.progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(CHUNK if n is None or n < 0 else min(n, CHUNK))
        self.sent += len(data)
        if self.progress is not None and data:
            self.progress(self.sent, self.total)
        return data

    def close(self) -> None:
        self.f.close()


def _context(url: str, cafile: str | None, insecure: bool) -> ssl.SSLContext | None:
    if urlsplit(url).scheme != "https":
        return None
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=cafile)


def _request(method: str, url: str, path: str, token: str, body=None, length: int | None = None,
             content_type: str = "application/octet-stream", timeout: float = DEFAULT_TIMEOUT,
             cafile: str | None = None, insecure: bool = False) -> dict:
    full = url.rstrip("/") + path
    scheme = urlsplit(full).scheme
    if scheme not in ("http", "https"):
        raise AgentError(f"{url}: expected an http:// or https:// agent URL")
    req = urllib.request.Request(full, data=body, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Accept", "application/json")
    if body is not None:
        req.add_header("Content-Type", content_type)
        req.add_header("Content-Length", str(length if length is not None else len(body)))
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=_context(full, cafile, insecure)) as r:
            raw, code = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, code = e.read(), e.code
        if code == 401:
            raise AgentError(f"{url}: the agent refused the token (401)", 401) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise AgentError(f"{url}: cannot reach the agent ({reason})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise AgentError(f"{url}: HTTP {code} without the agent's JSON: {raw[:200]!r}", code) from None
    if not isinstance(data, dict):
        raise AgentError(f"{url}: unexpected reply {data!r}", code)
    if code >= 400 and "verdict" not in data:
        raise AgentError(f"{url}: HTTP {code}: {data.get('error') or data}", code)
    data.setdefault("http_status", code)
    return data


def _upload(path: str | os.PathLike, url: str, endpoint: str, token: str, progress, timeout, cafile, insecure) -> dict:
    p = Path(path)
    if not p.is_file():
        raise AgentError(f"{p}: no such file")
    # a cheap GET first: a wrong token or an oversized file is named before any byte is sent
    limit = status(url, token, timeout=min(timeout, 10.0), cafile=cafile, insecure=insecure).get("max_upload_bytes")
    if limit is not None and p.stat().st_size > int(limit):
        raise AgentError(f"{url}: {p.name} ({p.stat().st_size} bytes) is larger than the agent accepts ({limit} bytes)", 413)
    body = _Upload(p, progress)
    try:
        return _request("PUT", url, endpoint, token, body=body, length=body.total, timeout=timeout,
                        cafile=cafile, insecure=insecure)
    finally:
        body.close()


def flash(image_path: str | os.PathLike, url: str, token: str, progress: Callable[[int, int], None] | None = None,
          timeout: float = DEFAULT_TIMEOUT, cafile: str | None = None, insecure: bool = False) -> dict:
    """Stream an image (.swimg) to the agent at `url`; it verifies, installs the inactive slot,
    switches and waits for the runtime's health. Returns the verdict dict:
    {"verdict": "ok"|"refused"|"rolled_back", "reason", "slot", "image_version", "timings": {...}}.
    `progress(sent_bytes, total_bytes)` is called as the upload goes."""
    return _upload(image_path, url, "/image", token, progress, timeout, cafile, insecure)


def push_pack(pack_path: str | os.PathLike, url: str, token: str, progress: Callable[[int, int], None] | None = None,
              timeout: float = 60.0, cafile: str | None = None, insecure: bool = False) -> dict:
    """Send a signed model pack (.swpack); the running runtime swaps it in between frames.
    Returns the verdict dict like `flash` ("ok" | "refused" | "rolled_back")."""
    return _upload(pack_path, url, "/model-pack", token, progress, timeout, cafile, insecure)


def status(url: str, token: str, timeout: float = 10.0, cafile: str | None = None, insecure: bool = False) -> dict:
    """The agent's status: board, active slot, slots a/b, runtime health, last error, keys."""
    return _request("GET", url, "/status", token, timeout=timeout, cafile=cafile, insecure=insecure)


def add_key(public_pem: bytes | str | os.PathLike, url: str, token: str, timeout: float = 10.0,
            cafile: str | None = None, insecure: bool = False) -> dict:
    """Trust another Ed25519 public key (PEM bytes, or a path to a PEM file); returns {"key_id", "trusted"}."""
    data = public_pem if isinstance(public_pem, bytes) else Path(public_pem).read_bytes()
    return _request("POST", url, "/keys", token, body=data, content_type="application/x-pem-file", timeout=timeout,
                    cafile=cafile, insecure=insecure)


def revoke_key(key_id: str, url: str, token: str, timeout: float = 10.0, cafile: str | None = None,
               insecure: bool = False) -> dict:
    """Revoke a trusted key: images and packs signed by it are refused from then on."""
    return _request("DELETE", url, f"/keys/{quote(key_id, safe='')}", token, timeout=timeout, cafile=cafile,
                    insecure=insecure)
