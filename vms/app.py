"""The VMS application: `create_app(settings)` wires the store, authentication, the ingest
writer, the live feed and the routes; accounts, sessions, audit and the SSE stream live here.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import delete, insert, select, update
from starlette.concurrency import run_in_threadpool

from . import db
from .auth import COOKIE, ROLES, Authenticator, check_password, hash_password, new_token, require_role, token_hash
from .ingest import Ingestor, event_out
from .live import Broker, format_sse
from .routes_events import Who, _body, _state
from .routes_events import router as events_router
from .routes_fleet import poll_agent
from .routes_fleet import router as fleet_router
from .store import Settings, Store

log = logging.getLogger("sitewarden.vms")
STATIC = Path(__file__).resolve().parent / "static"
ADMIN_ENV = "SITEWARDEN_VMS_ADMIN_PASSWORD"
KEEPALIVE_S = 15.0


def bootstrap_admin(store: Store, password: str | None = None) -> str | None:
    """Create the ``admin`` account when there is no account at all. Its password is `password`,
    else $SITEWARDEN_VMS_ADMIN_PASSWORD, else a random one, which is returned (to print once)."""
    with store.engine.begin() as c:
        if c.execute(select(db.users.c.name).limit(1)).first() is not None:
            return None
        chosen = password or os.environ.get(ADMIN_ENV)
        generated = chosen is None
        pw = chosen or secrets.token_urlsafe(12)
        c.execute(insert(db.users).values(name="admin", pw_hash=hash_password(pw), role="admin", disabled=False,
                                          created=time.time()))
        store.audit(c, "system", "user.add", "admin", role="admin", generated=generated)
    return pw if generated else None


def ensure_device(store: Store, device_id: str, token: str, agent_url: str | None = None,
                  agent_token: str | None = None) -> bool:
    """Register `device_id` with `token` (or give it that token); True when it was new. For
    `build.py vms --device ID=TOKEN`: the field set-up without a round trip through the API."""
    with store.engine.begin() as c:
        h = token_hash(token)
        other = c.execute(select(db.devices.c.id).where(db.devices.c.token_hash == h)).first()
        if other is not None and other.id != device_id:
            raise ValueError(f"device {other.id} already has this token; each device needs its own")
        values = {"token_hash": h, **({"agent_url": agent_url} if agent_url else {}),
                  **({"agent_token": agent_token} if agent_token else {})}
        if c.execute(select(db.devices.c.id).where(db.devices.c.id == device_id)).first() is None:
            c.execute(insert(db.devices).values(id=device_id, health="unknown", created=time.time(), **values))
            store.audit(c, "system", "device.add", device_id, via="command line")
            return True
        c.execute(update(db.devices).where(db.devices.c.id == device_id).values(**values))
        store.audit(c, "system", "device.update", device_id, via="command line")
        return False


def create_app(settings: Settings, admin_password: str | None = None,
               devices: list[tuple[str, str, str | None, str | None]] = ()) -> FastAPI:
    store = Store(settings)
    broker = Broker()
    generated = bootstrap_admin(store, admin_password)
    for dev_id, token, agent_url, agent_token in devices:
        ensure_device(store, dev_id, token, agent_url, agent_token)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        broker.bind(asyncio.get_running_loop())
        app.state.ingestor = Ingestor(store, on_new=lambda rows: [broker.publish("event", r, r["seq"]) for r in rows])
        stop = threading.Event()
        poller = threading.Thread(target=_poll_loop, args=(app.state, stop), name="vms-poll", daemon=True)
        poller.start()
        try:
            yield
        finally:
            stop.set()
            app.state.ingestor.close()
            store.engine.dispose()

    # the schema is served (/api/openapi.json); the Swagger page is not, as it loads its scripts from a CDN
    app = FastAPI(title="sitewarden VMS", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.settings = settings
    app.state.store = store
    app.state.broker = broker
    app.state.auth = Authenticator(store.engine)
    app.state.generated_admin_password = generated
    app.include_router(events_router)
    app.include_router(fleet_router)
    _account_routes(app)
    _stream_route(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        return {"ok": True}

    app.add_middleware(SecurityHeaders)

    return app


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                                 b"style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"),
]


class SecurityHeaders:
    """Plain ASGI middleware (no per-request task, unlike @app.middleware): adds the headers above."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _poll_loop(state, stop: threading.Event) -> None:
    """Poll the agents of devices that have an agent_url (every Settings.poll_agents_every_s)."""
    every = getattr(state.settings, "poll_agents_every_s", 0) or 0
    if every <= 0:
        return
    while not stop.wait(every):
        try:
            with state.store.engine.connect() as c:
                ids = [r.id for r in c.execute(select(db.devices.c.id).where(db.devices.c.agent_url.is_not(None)))]
            for dev in ids:
                try:
                    poll_agent(state, dev)
                except Exception as e:
                    log.warning("polling %s: %s", dev, e)
        except Exception:
            log.exception("agent polling failed")


# --- accounts, sessions, audit ---------------------------------------------------------------------


def _account_routes(app: FastAPI) -> None:
    @app.post("/api/login", summary="Log in: sets the session cookie and returns a bearer token")
    async def login(request: Request):
        d = await _body(request)
        name, pw = str(d.get("name") or ""), str(d.get("password") or "")
        st = _state(request)

        def check():
            with st.store.engine.begin() as c:
                row = c.execute(select(db.users).where(db.users.c.name == name)).first()
                ok = row is not None and not row.disabled and check_password(pw, row.pw_hash)
                st.store.audit(c, f"user:{name}", "login" if ok else "login.failed", name)
                if not ok:
                    return None
                token = new_token("sws")
                now = time.time()
                c.execute(delete(db.sessions).where(db.sessions.c.expires < now))
                c.execute(insert(db.sessions).values(token_hash=token_hash(token), user=name, created=now,
                                                     expires=now + st.settings.session_ttl_s))
                return token, row.role

        got = await run_in_threadpool(check)
        if got is None:
            await asyncio.sleep(0.5)  # slows password guessing
            raise HTTPException(401, "wrong name or password")
        token, role = got
        resp = JSONResponse({"name": name, "role": role, "token": token})
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=int(st.settings.session_ttl_s),
                        secure=request.url.scheme == "https")
        return resp

    @app.post("/api/logout", summary="End this session")
    def logout(request: Request, who: Who):
        token = request.cookies.get(COOKIE) or request.headers.get("authorization", "")[7:].strip()
        st = _state(request)
        with st.store.engine.begin() as c:
            c.execute(delete(db.sessions).where(db.sessions.c.token_hash == token_hash(token)))
            st.store.audit(c, who.actor, "logout", who.name)
        st.auth.clear()
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(COOKIE)
        return resp

    @app.get("/api/me", summary="Who this token or cookie is")
    def me(who: Who):
        return {"kind": who.kind, "name": who.name, "role": who.role}

    @app.get("/api/users", summary="Operator accounts (admin)")
    def list_users(request: Request, who: Who):
        require_role(who, "admin")
        with _state(request).store.engine.connect() as c:
            rows = c.execute(select(db.users).order_by(db.users.c.name)).all()
        return {"users": [{"name": r.name, "role": r.role, "disabled": r.disabled, "created": r.created} for r in rows]}

    @app.post("/api/users", status_code=201, summary="Add an account (admin): {name, password, role}")
    async def add_user(request: Request, who: Who):
        require_role(who, "admin")
        d = await _body(request)
        name, pw, role = str(d.get("name") or ""), str(d.get("password") or ""), d.get("role")
        if not name or len(name) > 64 or role not in ROLES or len(pw) < 8:
            raise HTTPException(400, f"need name (1-64), password (>= 8 characters) and role ({', '.join(ROLES)})")
        st = _state(request)

        def commit():
            with st.store.engine.begin() as c:
                if c.execute(select(db.users.c.name).where(db.users.c.name == name)).first():
                    raise HTTPException(409, f"user {name} exists")
                c.execute(insert(db.users).values(name=name, pw_hash=hash_password(pw), role=role, disabled=False,
                                                  created=time.time()))
                st.store.audit(c, who.actor, "user.add", name, role=role)

        await run_in_threadpool(commit)
        return JSONResponse({"name": name, "role": role}, status_code=201)

    @app.patch("/api/users/{name}", summary="Change an account's role, password or disabled flag (admin)")
    async def patch_user(request: Request, name: str, who: Who):
        require_role(who, "admin")
        d = await _body(request)
        values = {}
        if "role" in d:
            if d["role"] not in ROLES:
                raise HTTPException(400, f"role: one of {', '.join(ROLES)}")
            values["role"] = d["role"]
        if "disabled" in d:
            values["disabled"] = bool(d["disabled"])
        if "password" in d:
            if len(str(d["password"])) < 8:
                raise HTTPException(400, "password: at least 8 characters")
            values["pw_hash"] = hash_password(str(d["password"]))
        st = _state(request)

        def commit():
            with st.store.engine.begin() as c:
                if c.execute(update(db.users).where(db.users.c.name == name).values(**values)).rowcount == 0:
                    raise HTTPException(404, f"no user {name}")
                if "pw_hash" in values or values.get("disabled"):
                    c.execute(delete(db.sessions).where(db.sessions.c.user == name))
                st.store.audit(c, who.actor, "user.update", name, fields=sorted(values))

        await run_in_threadpool(commit)
        st.auth.clear()
        return {"name": name, **{k: v for k, v in values.items() if k != "pw_hash"}}

    @app.get("/api/audit", summary="The audit log, newest first (admin)")
    def get_audit(request: Request, who: Who, before: int | None = None, limit: int = Query(100, ge=1, le=1000)):
        require_role(who, "admin")
        a = db.audit
        q = select(a)
        if before is not None:
            q = q.where(a.c.seq < before)
        with _state(request).store.engine.connect() as c:
            rows = c.execute(q.order_by(a.c.seq.desc()).limit(limit)).all()
        return {"audit": [{**dict(r._mapping), "detail": json.loads(r.detail) if r.detail else None} for r in rows]}

    @app.post("/api/retention/run", summary="Apply the retention limits now (admin)")
    def run_retention(request: Request, who: Who):
        require_role(who, "admin")
        st = _state(request)
        out = st.store.enforce_retention()
        with st.store.engine.begin() as c:
            st.store.audit(c, who.actor, "retention.run", None, **out)
        return out


# --- the live stream -------------------------------------------------------------------------------


def _stream_route(app: FastAPI) -> None:
    @app.get("/api/stream", summary="Server-Sent Events: event, update, device, flag, push")
    async def stream(request: Request, who: Who, after: int | None = None):
        """New events arrive as ``event`` (with ``id: <seq>``); acknowledgements, false alarms and
        clips as ``update``; fleet changes as ``device``. A reconnecting browser sends
        ``Last-Event-ID`` and gets the events it missed first."""
        require_role(who, "viewer")
        st = _state(request)
        last = request.headers.get("last-event-id") or after
        try:
            last = int(last) if last is not None else None
        except ValueError:
            last = None
        q = st.broker.subscribe()

        def missed():
            e = db.events
            with st.store.engine.connect() as c:
                return [event_out(r) for r in c.execute(select(e).where(e.c.seq > last).order_by(e.c.seq).limit(1000))]

        backlog = await run_in_threadpool(missed) if last is not None else []

        async def gen():
            try:
                yield "retry: 2000\n\n"
                for row in backlog:
                    yield format_sse("event", row, row["seq"])
                while not getattr(q, "dropped", False):
                    try:
                        msg = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        if await request.is_disconnected():
                            break
                        yield ": keepalive\n\n"
                        continue
                    yield msg
            finally:
                st.broker.unsubscribe(q)

        return StreamingResponse(gen(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
