"""Who is asking: operator accounts (viewer < operator < admin), sessions, per-device tokens.

* Passwords: ``hashlib.scrypt`` (n=2**14, r=8, p=1, 16-byte salt), stored as
  ``scrypt$n$r$p$salt$hash`` (base64); compared in constant time.
* Tokens (sessions ``sws_...`` and devices ``swd_...``): 256 random bits; only their sha256 is
  stored, so a copy of the database lets nobody in. A device may also be registered with a token
  of the site's choosing (e.g. the spec's ``!secret vms_token``), at least 16 characters.
* A request authenticates with ``Authorization: Bearer TOKEN`` or, for the dashboard, the
  ``sw_session`` cookie (HttpOnly, SameSite=Strict). A cookie-authenticated request that changes
  state must also carry ``X-Sitewarden: 1`` (a cross-site form cannot set it): CSRF protection.
* Resolved tokens are cached for a few seconds (the ingest hot path); revoking a token or
  disabling a user clears the cache at once.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from . import db

ROLES = ("viewer", "operator", "admin")
ROLE_RANK = {r: i for i, r in enumerate(ROLES)}
COOKIE = "sw_session"
CSRF_HEADER = "x-sitewarden"
CACHE_S = 5.0
_SCRYPT = (2 ** 14, 8, 1)


@dataclass(frozen=True)
class Principal:
    kind: str  # user | device
    name: str
    role: str  # viewer | operator | admin for users; "device" for devices
    via_cookie: bool = False

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"


def hash_password(password: str) -> str:
    n, r, p = _SCRYPT
    salt = secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(h).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, h = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(h))


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Authenticator:
    """Resolves bearer tokens and session cookies to a :class:`Principal` (cached briefly)."""

    def __init__(self, engine):
        self.engine = engine
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def lookup(self, token: str) -> Principal | None:
        """The principal of `token`, or None (blocking: touches the database on a cache miss)."""
        h = token_hash(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(h)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        found = None
        with self.engine.connect() as c:
            if not token.startswith("sws_"):  # device tokens: generated ones start swd_, given ones may not
                row = c.execute(select(db.devices.c.id).where(db.devices.c.token_hash == h)).first()
                if row is not None:
                    found = Principal("device", row.id, "device")
            else:
                row = c.execute(select(db.users.c.name, db.users.c.role, db.users.c.disabled, db.sessions.c.expires)
                                .join(db.users, db.users.c.name == db.sessions.c.user)
                                .where(db.sessions.c.token_hash == h)).first()
                if row is not None and not row.disabled and row.expires > time.time():
                    found = Principal("user", row.name, row.role)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[h] = (now, found)
        return found

    async def __call__(self, request: Request) -> Principal:
        """The FastAPI dependency: 401 without valid credentials."""
        token, via_cookie = None, False
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            token = header[7:].strip()
        elif COOKIE in request.cookies:
            token, via_cookie = request.cookies[COOKIE], True
        if not token:
            raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
        h = token_hash(token)
        with self._lock:
            hit = self._cache.get(h)
        if hit is not None and time.monotonic() - hit[0] < CACHE_S:
            who = hit[1]
        else:
            who = await run_in_threadpool(self.lookup, token)
        if who is None:
            raise HTTPException(401, "invalid or expired credentials", headers={"WWW-Authenticate": "Bearer"})
        if via_cookie:
            if request.method not in ("GET", "HEAD") and request.headers.get(CSRF_HEADER) != "1":
                raise HTTPException(403, f"a cookie-authenticated change needs the {CSRF_HEADER} header")
            who = Principal(who.kind, who.name, who.role, via_cookie=True)
        return who


def require_role(who: Principal, minimum: str) -> None:
    """403 unless `who` is an operator account of at least `minimum`."""
    if who.kind != "user" or ROLE_RANK[who.role] < ROLE_RANK[minimum]:
        raise HTTPException(403, f"needs the {minimum} role")


def require_device(who: Principal) -> None:
    if who.kind != "device":
        raise HTTPException(403, "needs a device token")
