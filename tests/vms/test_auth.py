"""Authentication and authorisation on every route."""
from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from vms.auth import check_password, hash_password

from .conftest import make_event

OPEN = {("POST", "/api/login"), ("GET", "/"), ("GET", "/healthz")}
# the least role each user route needs; device-only routes are "device"
NEEDS = {
    ("POST", "/api/events"): "device", ("POST", "/api/hard-samples"): "device",
    ("POST", "/api/devices/status"): "device",
    ("GET", "/api/events"): "viewer", ("GET", "/api/events/{event_id}"): "viewer",
    ("GET", "/api/events/{event_id}/snapshot"): "viewer", ("GET", "/api/events/{event_id}/clip"): "viewer",
    ("PUT", "/api/events/{event_id}/clip"): "operator",
    ("POST", "/api/events/{event_id}/ack"): "operator", ("POST", "/api/events/{event_id}/false-alarm"): "operator",
    ("GET", "/api/hard-samples"): "viewer", ("GET", "/api/flags"): "viewer",
    ("PUT", "/api/flags/{scope}/{name}"): "operator",
    ("GET", "/api/devices"): "viewer", ("POST", "/api/devices"): "admin",
    ("PATCH", "/api/devices/{device_id}"): "admin", ("POST", "/api/devices/{device_id}/token"): "admin",
    ("DELETE", "/api/devices/{device_id}/token"): "admin", ("POST", "/api/devices/{device_id}/poll"): "operator",
    ("POST", "/api/artifacts"): "admin", ("GET", "/api/artifacts"): "viewer",
    ("GET", "/api/artifacts/{artifact_id}/download"): "operator", ("POST", "/api/artifacts/{artifact_id}/push"): "admin",
    ("GET", "/api/pushes"): "viewer", ("GET", "/api/cameras"): "viewer",
    ("GET", "/api/users"): "admin", ("POST", "/api/users"): "admin", ("PATCH", "/api/users/{name}"): "admin",
    ("GET", "/api/audit"): "admin", ("POST", "/api/retention/run"): "admin",
    ("GET", "/api/stream"): "viewer",
    ("POST", "/api/ping"): "any", ("GET", "/api/me"): "any", ("POST", "/api/logout"): "any",
}


def api_routes(app):
    """Every (method, path) of the API, from the app's OpenAPI schema (routers included)."""
    out = [(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops]
    out += [(m, r.path) for r in app.routes if isinstance(r, APIRoute) for m in r.methods - {"HEAD"}]
    return sorted(set(out))


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_route_is_listed_here(vms_sqlite):
    _, app = vms_sqlite
    routes = set(api_routes(app))
    assert routes - OPEN == set(NEEDS), "a new route: add it to NEEDS with the role it requires"


def test_no_credentials_or_a_bad_token_is_401_everywhere(vms_sqlite):
    c, app = vms_sqlite
    for method, path in api_routes(app):
        if (method, path) in OPEN:
            continue
        for headers in ({}, {"Authorization": "Bearer swd_not-a-token-at-all-000000"},
                        {"Authorization": "Bearer sws_forged-session-token-00000"}, {"Authorization": "Basic YTpi"}):
            r = c.tc.request(method, concrete(path), headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)


@pytest.mark.parametrize("who", ["viewer", "operator", "device"])
def test_roles_are_enforced_everywhere(vms_sqlite, who):
    c, app = vms_sqlite
    headers = c.device("cam-1") if who == "device" else c.user(f"u-{who}", who)
    rank = {"viewer": 0, "operator": 1, "admin": 2}
    for method, path in api_routes(app):
        if (method, path) in OPEN:
            continue
        need = NEEDS[(method, path)]
        if need == "any":
            continue
        if who == "device":
            allowed = need == "device" or (method, path) in {("PUT", "/api/events/{event_id}/clip"),
                                                              ("GET", "/api/flags")}
        else:
            allowed = need != "device" and rank[who] >= rank[need]
        if allowed:
            continue
        r = c.tc.request(method, concrete(path), headers=headers)
        assert r.status_code == 403, (who, method, path, r.status_code, r.text)


def test_cookie_sessions_need_the_csrf_header_to_change_anything(vms_sqlite):
    c, _ = vms_sqlite
    dev = c.device("cam-1")
    ev = make_event(1)
    c.tc.post("/api/events", content=ev.to_json(), headers=dev)
    r = c.tc.post("/api/login", json={"name": "admin", "password": "admin-password-1"})
    assert r.status_code == 200 and "sw_session" in r.cookies
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert c.tc.get("/api/events").status_code == 200  # reading with the cookie is fine
    assert c.tc.post(f"/api/events/{ev.id}/ack", json={}).status_code == 403
    assert c.tc.post(f"/api/events/{ev.id}/ack", json={}, headers={"X-Sitewarden": "1"}).status_code == 200
    assert c.tc.post("/api/logout", headers={"X-Sitewarden": "1"}).status_code == 200
    assert c.tc.get("/api/events").status_code == 401


def test_login_failures_disabled_users_and_password_hashes(vms_sqlite):
    c, app = vms_sqlite
    assert c.tc.post("/api/login", json={"name": "admin", "password": "wrong"}).status_code == 401
    assert c.tc.post("/api/login", json={"name": "ghost", "password": "x"}).status_code == 401
    h = c.user("vera", "viewer")
    assert c.tc.get("/api/events", headers=h).status_code == 200
    assert c.tc.patch("/api/users/vera", json={"disabled": True}, headers=c.admin).status_code == 200
    assert c.tc.get("/api/events", headers=h).status_code == 401  # her sessions ended
    assert c.tc.post("/api/login", json={"name": "vera", "password": "vera-password"}).status_code == 401
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert check_password("correct horse", stored) and not check_password("correct horsE", stored)
    assert not check_password("x", "garbage")
    from sqlalchemy import select

    from vms import db

    with app.state.store.engine.connect() as conn:
        hashes = [r.token_hash for r in conn.execute(select(db.devices.c.token_hash))]
    assert all(len(x) == 64 for x in hashes)  # tokens stored as sha256 only


def test_the_first_start_prints_a_generated_admin_password(tmp_path, monkeypatch):
    from vms.app import ADMIN_ENV, bootstrap_admin
    from vms.store import Store

    from .conftest import make_settings

    monkeypatch.delenv(ADMIN_ENV, raising=False)
    store = Store(make_settings(tmp_path))
    pw = bootstrap_admin(store)
    assert pw and len(pw) >= 12
    assert bootstrap_admin(store) is None  # only once
    monkeypatch.setenv(ADMIN_ENV, "from-the-environment")
    store2 = Store(make_settings(tmp_path / "b"))
    assert bootstrap_admin(store2) is None  # chosen, so nothing to print


def test_a_missing_service_fails_under_ci_and_skips_otherwise(monkeypatch):
    from .conftest import skip_or_fail

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but no PostgreSQL"):
        skip_or_fail("no PostgreSQL here")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("no PostgreSQL here")
