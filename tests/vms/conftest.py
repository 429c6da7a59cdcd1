"""VMS fixtures: the store on SQLite and on PostgreSQL, the app in-process, a real uvicorn on loopback.

PostgreSQL: $SITEWARDEN_TEST_PG_URL, else the local cluster's test role (what `.ci/run` creates).
Each test gets its own schema, dropped afterwards. Without a reachable server the PostgreSQL
cases skip, but FAIL under CI=true.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the VMS needs its extra: pip install -e '.[vms]'")

from runtime.events import Event  # noqa: E402

LOCAL_PG = "postgresql://sitewarden:sitewarden@127.0.0.1:5432/sitewarden_test"
ADMIN_PW = "admin-password-1"


def ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def skip_or_fail(reason: str):
    if ci():
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    url = os.environ.get("SITEWARDEN_TEST_PG_URL") or LOCAL_PG
    try:
        import psycopg
    except ImportError:
        skip_or_fail("psycopg is not installed (pip install -e '.[dev]')")
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except Exception as e:
        skip_or_fail(f"no PostgreSQL at {url.split('@')[-1]} ({type(e).__name__}); set SITEWARDEN_TEST_PG_URL")
    return url


@pytest.fixture
def pg_url(pg_base_url):
    """A fresh schema on the test server, as a URL whose search_path points at it."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_base_url, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in pg_base_url else "?"
    yield f"{pg_base_url}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_base_url, autocommit=True) as c:
        c.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each storage test runs on both engines."""
    if request.param == "sqlite":
        return None  # the default: DATA/vms.sqlite
    return request.getfixturevalue("pg_url")


def make_settings(tmp_path: Path, db_url=None, **kw):
    from vms.store import Settings

    return Settings(data_dir=tmp_path / "vms", db_url=db_url, poll_agents_every_s=0, **kw)


class Client:
    """A TestClient logged in as admin, with helpers to make devices and users."""

    def __init__(self, tc):
        self.tc = tc
        r = tc.post("/api/login", json={"name": "admin", "password": ADMIN_PW})
        assert r.status_code == 200, r.text
        self.admin = {"Authorization": f"Bearer {r.json()['token']}"}
        tc.cookies.clear()

    def device(self, dev_id: str, **kw) -> dict:
        r = self.tc.post("/api/devices", json={"id": dev_id, **kw}, headers=self.admin)
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def user(self, name: str, role: str) -> dict:
        r = self.tc.post("/api/users", json={"name": name, "password": f"{name}-password", "role": role},
                         headers=self.admin)
        assert r.status_code == 201, r.text
        r = self.tc.post("/api/login", json={"name": name, "password": f"{name}-password"})
        self.tc.cookies.clear()
        return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture
def vms(tmp_path, db_url):
    """(Client, app) on SQLite and PostgreSQL."""
    from fastapi.testclient import TestClient

    from vms.app import create_app

    app = create_app(make_settings(tmp_path, db_url), admin_password=ADMIN_PW)
    with TestClient(app) as tc:
        yield Client(tc), app


@pytest.fixture
def vms_sqlite(tmp_path):
    from fastapi.testclient import TestClient

    from vms.app import create_app

    app = create_app(make_settings(tmp_path), admin_password=ADMIN_PW)
    with TestClient(app) as tc:
        yield Client(tc), app


class Server:
    """uvicorn serving the VMS in a thread on 127.0.0.1 (stop/start keep the data)."""

    def __init__(self, settings, port: int | None = None):
        self.settings = settings
        self.port = port or free_port()
        self._server = self._thread = self.app = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Server":
        import uvicorn

        from vms.app import create_app

        self.app = create_app(self.settings, admin_password=ADMIN_PW)
        cfg = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                             timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(cfg)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(15)
            self._server = None

    def login(self, name="admin", password=ADMIN_PW) -> dict:
        import httpx

        r = httpx.post(f"{self.url}/api/login", json={"name": name, "password": password})
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def add_device(self, dev_id: str, **kw) -> str:
        import httpx

        r = httpx.post(f"{self.url}/api/devices", json={"id": dev_id, **kw}, headers=self.login())
        assert r.status_code == 201, r.text
        return r.json()["token"]


@pytest.fixture
def server(tmp_path):
    s = Server(make_settings(tmp_path)).start()
    yield s
    s.stop()


def make_event(i: int = 0, device: str = "cam-1", camera: str = "crane-north", **kw) -> Event:
    args = dict(type="zone_intrusion", site="riverside", device=device, camera=camera, zone="crane-swing", track=i,
                t_start=1_790_000_000.0 + i, severity="critical", confidence=0.9, details={"time_in_zone_s": 1.5})
    args.update(kw)
    return Event.create(**args)


def tiny_jpeg(colour=(40, 90, 160), size=(64, 48)) -> bytes:
    import cv2
    import numpy as np

    img = np.zeros((size[1], size[0], 3), np.uint8)
    img[:] = colour
    ok, buf = cv2.imencode(".jpg", img)
    return buf.tobytes()
