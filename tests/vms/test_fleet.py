"""Pushing images and packs through the device agent's client, polling agents, and `build.py vms`.

The agents here are stand-ins that speak the agent's HTTP API (PUT /image, PUT /model-pack,
GET /status, bearer token) on loopback; the real agent's own tests live in tests/runtime/agent."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from .conftest import free_port


class StubAgent:
    def __init__(self, token: str, verdict: str = "ok"):
        self.token, self.verdict = token, verdict
        self.received: list[tuple[str, int]] = []
        self.version = 1
        agent = self

        class H(BaseHTTPRequestHandler):
            def _reply(self, code, body):
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _authorised(self):
                if self.headers.get("Authorization") != f"Bearer {agent.token}":
                    self._reply(401, {"error": "bad token"})
                    return False
                return True

            def do_PUT(self):
                if not self._authorised():
                    return
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                agent.received.append((self.path, len(data)))
                if agent.verdict == "ok" and self.path == "/image":
                    agent.version += 1
                self._reply(200 if agent.verdict == "ok" else 409, {"verdict": agent.verdict, "reason": "stub"})

            def do_GET(self):
                if not self._authorised():
                    return
                self._reply(200, {"board": "rk3588", "active": "a", "pending": False, "last_error": None,
                                  "slots": {"a": {"image_version": agent.version, "site": "riverside", "board": "rk3588",
                                                  "sha256": "ab" * 32}, "b": None},
                                  "runtime": {"running": True, "healthy": True, "frames": 120}})

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_pushes(c, n, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pushes = c.tc.get("/api/pushes", headers=c.admin).json()["pushes"]
        if len(pushes) >= n and all(p["state"] in ("done", "failed") for p in pushes):
            return pushes
        time.sleep(0.05)
    raise AssertionError(f"pushes did not finish: {pushes}")


def test_push_an_image_and_a_pack_to_two_agents_and_poll_them(vms_sqlite):
    pytest.importorskip("runtime.agent.client")
    c, _ = vms_sqlite
    good, bad = StubAgent("tok-good"), StubAgent("tok-bad", verdict="refused")
    try:
        c.device("edge-1", agent_url=good.url, agent_token="tok-good")
        c.device("edge-2", agent_url=bad.url, agent_token="tok-bad")
        c.device("cam-9")  # no agent
        img = c.tc.post("/api/artifacts", params={"kind": "pack", "name": "det.swpack"}, content=b"pack-bytes" * 100,
                        headers=c.admin).json()
        r = c.tc.post(f"/api/artifacts/{img['id']}/push", json={"devices": ["edge-1", "edge-2"]}, headers=c.admin)
        assert r.status_code == 202
        pushes = {p["device"]: p for p in wait_pushes(c, 2)}
        assert pushes["edge-1"]["state"] == "done" and pushes["edge-2"]["state"] == "failed"
        assert json.loads(pushes["edge-2"]["message"])["verdict"] == "refused"
        assert good.received == [("/model-pack", 1000)]
        assert c.tc.post(f"/api/artifacts/{img['id']}/push", json={"devices": ["cam-9"]},
                         headers=c.admin).status_code == 400
        fleet = {d["id"]: d for d in c.tc.get("/api/devices", headers=c.admin).json()["devices"]}
        assert fleet["edge-1"]["health"] == "ok" and fleet["edge-1"]["image_version"] == 1
        assert fleet["edge-1"]["board"] == "rk3588"
        # the agent token never leaves the VMS
        assert "tok-good" not in json.dumps(fleet)
        good.stop()
        r = c.tc.post("/api/devices/edge-1/poll", headers=c.admin)
        assert r.status_code == 200 and r.json()["health"] == "unknown" and "cannot reach" in r.json()["status"]["error"]
        audit = [a["action"] for a in c.tc.get("/api/audit", headers=c.admin).json()["audit"]]
        assert audit.count("push.start") == 2 and audit.count("push.result") == 2
    finally:
        bad.stop()
        try:
            good.stop()
        except Exception:
            pass


def test_build_py_vms_starts_with_no_set_up(tmp_path, repo_root):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SITEWARDEN_VMS_ADMIN_PASSWORD"}
    proc = subprocess.Popen([sys.executable, "build.py", "vms", "--data", str(tmp_path / "d"), "--port", str(port),
                             "--poll-agents-s", "0", "--device", "crane-cam=the-sites-vms-token-1"], cwd=repo_root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert f"http://127.0.0.1:{port}/" in lines[0], lines
        assert "account 'admin', password " in lines[1], lines
        pw = lines[1].split("password ")[1].split()[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        page = httpx.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200 and "sitewarden" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        r = httpx.post(f"http://127.0.0.1:{port}/api/login", json={"name": "admin", "password": pw})
        assert r.status_code == 200
        assert (tmp_path / "d" / "vms.sqlite").exists()
        r = httpx.post(f"http://127.0.0.1:{port}/api/devices/status", json={"health": "ok"},
                       headers={"Authorization": "Bearer the-sites-vms-token-1"})
        assert r.status_code == 200 and r.json()["id"] == "crane-cam"
    finally:
        proc.terminate()
        proc.wait(15)


def test_build_py_vms_serves_https_with_a_certificate(tmp_path, repo_root):
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vms.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "build.py", "vms", "--data", str(tmp_path / "d"), "--port", str(port),
                             "--poll-agents-s", "0", "--admin-password", "a-long-password", "--cert",
                             str(tmp_path / "cert.pem"), "--keyfile", str(tmp_path / "key.pem")], cwd=repo_root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().startswith(f"sitewarden VMS on https://127.0.0.1:{port}/")
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.post(f"https://127.0.0.1:{port}/api/login", verify=str(tmp_path / "cert.pem"),
                               json={"name": "admin", "password": "a-long-password"})
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()
    finally:
        proc.terminate()
        proc.wait(15)
