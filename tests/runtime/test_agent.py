"""The device agent end to end on loopback: real agent processes, the real demo image, the real
runtime on the live sim scene. Every fault leaves a slot that runs (zero bricked devices)."""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compiler.keys import public_pem
from compiler.modelpack import pack_from_image
from runtime.agent.client import AgentError, add_key, flash, push_pack, revoke_key, status
from runtime.image import key_id, read_image

from .agent_fixture import TOKEN, AgentProcess, demo_build, request, retar, wait_for


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return demo_build(str(tmp_path_factory.getbasetemp() / "agent-demo-build"))


def write(tmp_path, name, blob):
    p = tmp_path / name
    p.write_bytes(blob)
    return p


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def running(url):
    s = status(url, TOKEN)
    return s if s["runtime"]["healthy"] else None


DEVICE_HEALTH_S = 12  # the module's agent gives a new runtime this long to report health


@pytest.fixture(scope="module")
def device(built, tmp_path_factory):
    """An agent running version 2 of the demo image; tests leave it running version 2 on a good slot."""
    folder = tmp_path_factory.mktemp("device")
    agent = AgentProcess(folder / "state", [built.key], extra=["--health-timeout", str(DEVICE_HEALTH_S)]).start()
    reply = flash(write(folder, "v2.swimg", built.image(image_version=2)), agent.url, TOKEN)
    assert reply["verdict"] == "ok", (reply, agent.runtime_log()[-2000:])
    yield agent
    agent.stop()


def assert_still_running(agent, slot, pid, version=2):
    s = status(agent.url, TOKEN)
    assert s["active"] == slot and not s["pending"]
    assert s["slots"][slot]["image_version"] == version and s["slots"][slot]["state"] == "good"
    assert s["runtime"]["running"] and s["runtime"]["pid"] == pid, s["runtime"]
    wait_for(lambda: running(agent.url))


def test_a_good_image_runs_and_reports_health(device):
    s = wait_for(lambda: running(device.url))
    assert s["board"] == "host-cpu" and s["active"] in ("a", "b")
    slot = s["slots"][s["active"]]
    assert slot["image_version"] == 2 and slot["device"] == "crane-cam" and slot["site"] == "demo-site"
    assert len(slot["sha256"]) == 64 and slot["installed"].endswith("Z")
    assert s["runtime"]["frames"] > 0 and s["runtime"]["models_loaded"] > 0
    assert s["trusted_keys"] and s["revoked_keys"] == []


def test_every_endpoint_requires_the_token(device):
    calls = [("GET", "/status", None), ("PUT", "/image", b"x" * 100), ("PUT", "/model-pack", b"x" * 100),
             ("POST", "/keys", b"-----BEGIN PUBLIC KEY-----"), ("DELETE", "/keys/0123456789abcdef", None),
             ("GET", "/nothing", None)]
    for method, path, body in calls:
        for token in (None, "wrong-token-0123456789", TOKEN + "x", ""):
            code, reply = request(device.url, method, path, token=token, body=body)
            assert code == 401, (method, path, token, code, reply)
    assert request(device.url)[0] == 200
    with pytest.raises(AgentError) as e:
        status(device.url, "wrong-token-0123456789")
    assert e.value.status == 401


def _tampered(built):
    def flip(entries):
        data = bytearray(entries["models/detector-det-m320.onnx"])
        data[len(data) // 2] ^= 1
        entries["models/detector-det-m320.onnx"] = bytes(data)
    return retar(built.image(image_version=3), flip)


def _escaping(built):
    return retar(built.image(image_version=3), lambda e: e.__setitem__("../evil.py", b"print('x')\n"))


# name, image bytes, a phrase the refusal names
REFUSALS = [
    ("tampered model", _tampered, "sha256 mismatch"),
    ("path escaping the slot", _escaping, "'..'"),
    ("older version (anti-rollback)", lambda b: b.image(image_version=1), "anti-rollback"),
    ("wrong board", lambda b: b.image(image_version=3, board="rk3588", compatible=("rk3588",)), "not for board 'host-cpu'"),
    ("signed by an unknown key", lambda b: b.image(key=Ed25519PrivateKey.generate(), image_version=3), "trusted key"),
    ("not an archive", lambda b: b"not a gzip at all" * 100, "not an image archive"),
]


@pytest.mark.parametrize("name, make, phrase", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_bad_images_are_refused_and_the_old_slot_keeps_running(device, built, tmp_path, name, make, phrase):
    before = status(device.url, TOKEN)
    reply = flash(write(tmp_path, "bad.swimg", make(built)), device.url, TOKEN)
    assert reply["verdict"] == "refused" and reply["http_status"] == 422, reply
    assert phrase in reply["reason"], reply["reason"]
    assert_still_running(device, before["active"], before["runtime"]["pid"])
    assert not list((device.state / "spool").iterdir())


def test_a_runtime_that_crashes_on_boot_rolls_back(device, built, tmp_path):
    before = wait_for(lambda: running(device.url))
    broken = built.image(image_version=3, files={"config.json": b'{"version": 99}\n'})
    reply = flash(write(tmp_path, "v3-broken.swimg", broken), device.url, TOKEN)
    assert reply["verdict"] == "rolled_back", reply
    assert "exited with status" in reply["reason"] and reply["previous_healthy"] is True
    s = status(device.url, TOKEN)
    assert s["active"] == before["active"] and s["slots"][s["active"]]["image_version"] == 2
    assert s["slots"][reply["slot"]]["state"] == "failed" and "rolled back" in s["last_error"]["message"]
    assert s["runtime"]["healthy"] and s["runtime"]["pid"] != before["runtime"]["pid"]


def test_a_model_pack_swaps_in_without_a_restart(device, built, tmp_path):
    before = wait_for(lambda: running(device.url))
    image = read_image(built.path, [built.key.public_key()])
    blob, _ = pack_from_image(image, built.key, 5, tasks=("detector",), reorder={"detector": ("det-s256", "det-m320")})
    reply = push_pack(write(tmp_path, "p5.swpack", blob), device.url, TOKEN)
    assert reply["verdict"] == "ok" and not reply["restarted"], reply
    assert reply["pid"] == before["runtime"]["pid"]
    s = status(device.url, TOKEN)
    assert s["runtime"]["pid"] == before["runtime"]["pid"] and s["runtime"]["pack_version"] == 5
    # the swap, logged once by the runtime: by day the reordered tiers switch the detector; at night
    # (the demo's 19:00-06:00 situation prefers accuracy and holds its own choice) the same variants
    # get the pack's weights
    swap = [line for line in device.runtime_log().splitlines() if line.startswith("model pack 5 ")]
    assert len(swap) == 1 and (("detector det-" in swap[0] and "(model pack)" in swap[0])
                               or "same variants, new weights" in swap[0]), swap
    # an older pack is refused, and an image is not a pack
    old, _ = pack_from_image(image, built.key, 4, tasks=("detector",))
    reply = push_pack(write(tmp_path, "p4.swpack", old), device.url, TOKEN)
    assert reply["verdict"] == "refused" and "anti-rollback" in reply["reason"]
    reply = push_pack(built.path, device.url, TOKEN)
    assert reply["verdict"] == "refused" and "not a model pack" in reply["reason"]
    assert status(device.url, TOKEN)["runtime"]["pid"] == before["runtime"]["pid"]


def test_keys_rotate_and_a_revoked_key_is_refused(device, built, tmp_path):
    before = wait_for(lambda: running(device.url))
    second = Ed25519PrivateKey.generate()
    kid = key_id(second.public_key())
    assert add_key(public_pem(second.public_key()), device.url, TOKEN)["key_id"] == kid
    assert kid in status(device.url, TOKEN)["trusted_keys"]
    # the running image's key cannot be revoked (the device must stay bootable)
    code, reply = request(device.url, "DELETE", f"/keys/{key_id(built.key.public_key())}")
    assert code == 409 and "running image" in reply["error"]
    assert revoke_key(kid, device.url, TOKEN)["revoked"] == kid
    s = status(device.url, TOKEN)
    assert kid not in s["trusted_keys"] and kid in s["revoked_keys"]
    reply = flash(write(tmp_path, "v3-revoked.swimg", built.image(key=second, image_version=3)), device.url, TOKEN)
    assert reply["verdict"] == "refused" and f"revoked key {kid}" in reply["reason"]
    code, reply = request(device.url, "POST", "/keys", body=public_pem(second.public_key()))
    assert code == 409 and "revoked" in reply["error"]
    assert_still_running(device, before["active"], before["runtime"]["pid"])


@pytest.mark.parametrize("length, code", [(None, 411), ("abc", 411), (str(1 << 40), 413)])
def test_upload_needs_a_bounded_content_length(device, length, code):
    s = socket.create_connection(("127.0.0.1", int(device.url.rsplit(":", 1)[1])))
    header = f"Content-Length: {length}\r\n" if length is not None else ""
    s.sendall(f"PUT /image HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n{header}\r\n".encode())
    assert f" {code} ".encode() in s.recv(4096).split(b"\r\n")[0]
    s.close()


def _partial_upload(url: str, blob: bytes, fraction: float) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    s.sendall(f"PUT /image HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {len(blob)}\r\n\r\n".encode())
    s.sendall(blob[: int(len(blob) * fraction)])
    return s


def test_kill_9_mid_transfer_and_mid_install_keep_a_good_slot(built, tmp_path):
    agent = AgentProcess(tmp_path / "state", [built.key]).start()
    try:
        assert flash(write(tmp_path, "v1.swimg", built.image(image_version=1)), agent.url, TOKEN)["verdict"] == "ok"
        good = status(agent.url, TOKEN)
        slot = good["active"]
        # 1. killed while receiving v2: nothing changed but a spool file
        conn = _partial_upload(agent.url, built.image(image_version=2), 0.5)
        wait_for(lambda: list((agent.state / "spool").iterdir()))
        agent.kill9()
        conn.close()
        assert json.loads((agent.state / "boot.json").read_text())["active"] == slot
        agent.start()
        s = wait_for(lambda: running(agent.url))
        assert s["active"] == slot and s["slots"][slot]["image_version"] == 1
        assert not list((agent.state / "spool").iterdir())
        # 2. killed after switching to v2, before its health report: the next start rolls back
        v2 = write(tmp_path, "v2.swimg", built.image(image_version=2))
        threading.Thread(target=lambda: _ignore(flash, v2, agent.url, TOKEN), daemon=True).start()
        wait_for(lambda: json.loads((agent.state / "boot.json").read_text()).get("pending"), step=0.02)
        agent.kill9()
        agent.start()
        s = wait_for(lambda: running(agent.url))
        assert s["active"] == slot and s["slots"][slot]["image_version"] == 1 and not s["pending"]
        assert "rolled back" in s["last_error"]["message"]
        assert [p.name for p in (agent.state / "slots").iterdir() if p.name.startswith(".tmp")] == []
        # and the device still takes the update afterwards
        assert flash(v2, agent.url, TOKEN)["verdict"] == "ok"
        # 3. at the next start the active slot no longer verifies (storage fault) and a transfer left
        #    litter: the agent cleans up and boots the other good slot
        s = status(agent.url, TOKEN)
        new_slot, new_dir = s["active"], s["slots"][s["active"]]["dir"]
        orphan = agent.runtime_pid()
        agent.kill9()
        model = next((agent.state / "slots" / new_dir / "models").iterdir())
        model.write_bytes(model.read_bytes()[:-1] + b"\0")
        (agent.state / "slots" / ".tmp-a-g99").mkdir()
        (agent.state / "slots" / "a-g98").mkdir()
        (agent.state / "spool" / "upload-x.part").write_bytes(b"half")
        agent.start()
        s = wait_for(lambda: running(agent.url))
        assert s["active"] == slot != new_slot and s["slots"][slot]["image_version"] == 1
        assert s["slots"][new_slot]["state"] == "failed" and "does not verify" in s["last_error"]["message"]
        assert sorted(p.name for p in (agent.state / "slots").iterdir()) == sorted([new_dir, s["slots"][slot]["dir"]])
        assert not list((agent.state / "spool").iterdir())
        # the orphan was stopped (a zombie waiting for a PID 1 that does not reap counts as stopped)
        assert orphan == s["runtime"]["pid"] or wait_for(lambda: not alive(orphan), timeout=10)
        # it runs version 1 again, but version 2 ran here: anti-rollback keeps the floor
        assert s["min_image_version"] == 2
        reply = flash(tmp_path / "v1.swimg", agent.url, TOKEN)
        assert reply["verdict"] == "refused" and "version 2, which this device has run" in reply["reason"]
    finally:
        agent.stop()


def test_a_runtime_that_never_reports_health_rolls_back_and_a_dead_runtime_restarts(device, built, tmp_path):
    before = wait_for(lambda: running(device.url))
    config = json.loads(built.files["config.json"])
    config["cameras"][0]["source"] = "rtsp://127.0.0.1:9/nothing-here"  # opens, never delivers a frame
    silent = built.image(image_version=3, files={"config.json": json.dumps(config).encode()})
    reply = flash(write(tmp_path, "v3-silent.swimg", silent), device.url, TOKEN)
    assert reply["verdict"] == "rolled_back" and f"no health report within {DEVICE_HEALTH_S} s" in reply["reason"], reply
    s = wait_for(lambda: running(device.url))
    assert s["active"] == before["active"] and s["slots"][s["active"]]["image_version"] == 2
    # the runtime dies while in service: the watchdog starts it again on the same slot
    pid = s["runtime"]["pid"]
    os.kill(pid, signal.SIGKILL)
    s = wait_for(lambda: (lambda x: x if x["runtime"]["pid"] not in (None, pid) else None)(
        running(device.url) or {"runtime": {"pid": None}}))
    assert s["runtime"]["restarts"] == before["runtime"]["restarts"] + 1 and "status -9" in s["runtime"]["exit"]
    assert s["active"] == before["active"] and s["slots"][s["active"]]["image_version"] == 2


def test_a_pack_that_breaks_the_runtime_is_rolled_back(device, built, tmp_path):
    import dataclasses
    import hashlib

    from compiler.modelpack import make_pack
    from runtime.config import RuntimeConfig

    before = wait_for(lambda: running(device.url))
    config = RuntimeConfig.from_json(built.files["config.json"])
    wrong = built.files[config.models["posture"][0].file]  # a posture MLP where the detector should be
    bad = dataclasses.replace(config.models["detector"][0], variant="det-broken", file="models/broken.onnx",
                              sha256=hashlib.sha256(wrong).hexdigest())
    blob, _ = make_pack({"detector": (bad,)}, {"models/broken.onnx": wrong}, built.key, site="demo-site",
                        device="crane-cam", board="host-cpu", compatible=("host-cpu",), pack_version=9)
    reply = push_pack(write(tmp_path, "p9.swpack", blob), device.url, TOKEN)
    assert reply["verdict"] == "rolled_back", reply
    assert reply["restarted_healthy"] is True
    s = wait_for(lambda: running(device.url))
    assert s["runtime"]["pack_version"] == before["runtime"]["pack_version"]
    assert s["runtime"]["tiers"]["detector"] != "det-broken"


def _ignore(fn, *args):
    try:
        fn(*args)
    except AgentError:
        pass


def test_tls_when_given_a_certificate(built, tmp_path):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    agent = AgentProcess(tmp_path / "state", [built.key],
                         extra=["--cert", str(tmp_path / "cert.pem"), "--keyfile", str(tmp_path / "key.pem"),
                                "--max-upload", "100000"]).start()
    try:
        assert agent.url.startswith("https://")
        s = status(agent.url, TOKEN, cafile=str(tmp_path / "cert.pem"))
        assert s["board"] == "host-cpu" and s["active"] is None
        with pytest.raises(AgentError):
            status(agent.url, TOKEN)  # not trusted without the certificate
        with pytest.raises(AgentError) as e:
            status(agent.url, "wrong-token-0123456789", cafile=str(tmp_path / "cert.pem"))
        assert e.value.status == 401
        with pytest.raises(AgentError) as e:  # the client asks first: nothing is sent past the agent's limit
            flash(built.path, agent.url, TOKEN, cafile=str(tmp_path / "cert.pem"))
        assert e.value.status == 413 and "larger than the agent accepts" in str(e.value)
    finally:
        agent.stop()


@pytest.mark.parametrize("module", ["agent/__main__.py", "agent/server.py", "agent/state.py", "agent/supervisor.py",
                                    "agent/client.py", "status.py", "launch.py", "modelpack.py"])
def test_agent_modules_need_only_the_stdlib_and_cryptography(module):
    import ast
    import sys
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[2] / "runtime" / module).read_text())
    allowed = set(sys.stdlib_module_names) | {"cryptography"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in allowed, f"runtime/{module} imports {name}"


def test_the_runtime_log_stays_bounded(tmp_path):
    from runtime.agent.state import State
    from runtime.agent.supervisor import Supervisor

    state = State(tmp_path)
    state.run.mkdir(parents=True)
    sup = Supervisor(state, log=lambda m: None)
    try:
        with open(state.run / "runtime.log", "ab") as child:  # how the runtime writes it (O_APPEND)
            child.write(b"x" * 1000 + b"END\n")
            child.flush()
            assert sup.rotate_log(limit=400) and not sup.rotate_log(limit=400)
            child.write(b"after\n")
        assert (state.run / "runtime.log").read_bytes() == b"after\n"
        assert (state.run / "runtime.log.1").read_bytes().endswith(b"END\n")
    finally:
        sup.close()


CRASH_LATER = b"""import os
import sys
import threading

threading.Timer(6.0, lambda: os._exit(3)).start()  # healthy first, then dies: a fault the install cannot see

from .app import main

sys.exit(main())
"""


def test_a_runtime_that_keeps_crashing_after_its_health_check_falls_back(built, tmp_path):
    """Version 2 passes the install's health check, then its runtime dies every few seconds: after
    a crash loop the agent marks it failed and boots the other good slot (version 1)."""
    agent = AgentProcess(tmp_path / "state", [built.key]).start()
    try:
        assert flash(write(tmp_path, "v1.swimg", built.image(image_version=1)), agent.url, TOKEN)["verdict"] == "ok"
        first = status(agent.url, TOKEN)["active"]
        flaky = built.image(image_version=2, files={"runtime/__main__.py": CRASH_LATER})
        reply = flash(write(tmp_path, "v2.swimg", flaky), agent.url, TOKEN)
        assert reply["verdict"] == "ok", reply
        second = status(agent.url, TOKEN)["active"]
        assert second != first
        s = wait_for(lambda: (lambda s: s if s["active"] == first and s["runtime"]["healthy"] else None)(
            status(agent.url, TOKEN)), timeout=120, step=0.5)
        assert s["slots"][first]["image_version"] == 1 and s["slots"][second]["state"] == "failed"
        assert "kept crashing" in s["last_error"]["message"], s["last_error"]
    finally:
        agent.stop()


def test_a_stalled_upload_is_dropped_and_frees_the_agent(built, tmp_path):
    """A client that sends half an image and goes silent: after --idle-timeout the agent drops it,
    removes the partial spool file, keeps running what it ran and takes the next flash."""
    agent = AgentProcess(tmp_path / "state", [built.key], extra=["--idle-timeout", "2"]).start()
    try:
        assert flash(write(tmp_path, "v1.swimg", built.image(image_version=1)), agent.url, TOKEN)["verdict"] == "ok"
        before = status(agent.url, TOKEN)
        conn = _partial_upload(agent.url, built.image(image_version=2), 0.5)
        wait_for(lambda: list((agent.state / "spool").iterdir()))
        assert status(agent.url, TOKEN)["busy"]  # the stalled upload holds the install
        wait_for(lambda: not status(agent.url, TOKEN)["busy"], timeout=15)
        assert not list((agent.state / "spool").iterdir())
        conn.close()
        s = status(agent.url, TOKEN)
        assert s["active"] == before["active"] and s["runtime"]["pid"] == before["runtime"]["pid"]
        assert flash(write(tmp_path, "v2.swimg", built.image(image_version=2)), agent.url, TOKEN)["verdict"] == "ok"
    finally:
        agent.stop()
