"""The device agent: authenticated HTTP(S) endpoints over the state folder and the supervised
runtime. Every request needs `Authorization: Bearer <token>` (compared in constant time).

    GET    /status          board, active slot, slots a/b, runtime health, last error, keys
    PUT    /image           a .swimg archive (Content-Length required, bounded): verify, install the
                            inactive slot, switch, wait for the runtime's health, roll back on failure
    PUT    /model-pack      a .swpack (runtime/modelpack.py): verify, install, the runtime swaps it in
    POST   /keys            a PEM public key to trust
    DELETE /keys/<key_id>   revoke a key: what it signed is refused from then on

Replies are JSON. Installs answer {"verdict": "ok" | "refused" | "rolled_back", "reason", ...} with
HTTP 200, 422 and 500 respectively; 409 while another install runs; 401 without the token.
"""
from __future__ import annotations

import hmac
import json
import secrets
import shutil
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from ..image import MANIFEST, ImageError, Manifest, _members, read_image, verify_dir
from ..modelpack import PACK_ROLE, POINTER, read_pack
from .state import SLOTS, State, atomic_write, fsync_dir, fsync_tree, now_iso
from .supervisor import Supervisor

AGENT_VERSION = "1"
MAX_UPLOAD = 512 << 20
MAX_KEY_BYTES = 16 << 10
CHUNK = 256 << 10
PACK_FRAMES = 5  # frames a runtime must process with a new pack before it counts as taken
HTTP_FOR = {"ok": 200, "refused": 422, "rolled_back": 500}


def _unverified_key_id(path: Path) -> str | None:
    """The key id an archive claims (to name a revoked key in a refusal); never trusted otherwise."""
    try:
        return Manifest.from_json(_members(path.read_bytes())[MANIFEST]).key_id
    except (ImageError, OSError, KeyError):
        return None


class Agent:
    def __init__(self, state: State, supervisor: Supervisor, health_timeout: float = 90.0,
                 max_upload: int = MAX_UPLOAD, log=print):
        self.state = state
        self.board = state.board
        self.sup = supervisor
        self.health_timeout = health_timeout
        self.max_upload = max_upload
        self.log = log
        self.install_lock = threading.Lock()  # one install (image or pack) at a time
        self.rec_lock = threading.RLock()  # the boot record
        supervisor.on_crash_loop = self._crash_loop

    def _crash_loop(self) -> bool:
        """The running slot crashes over and over although it was once healthy (a fault that shows
        after the install's health check): mark it failed and boot the other good slot, as at boot
        when a slot no longer verifies. With no other good slot, False: keep restarting it."""
        if not self.install_lock.acquire(timeout=1.0):
            return False  # an install is deciding what runs
        try:
            with self.rec_lock:
                rec = self.state.boot()
                bad = rec["active"]
                others = [s for s in SLOTS if s != bad and (rec["slots"].get(s) or {}).get("state") == "good"]
                if not bad or not others:
                    return False
                rec["slots"][bad]["state"] = "failed"
                self.state.save_boot(rec)
                slot = self._bootable(rec)
                if slot is None or slot == bad:
                    return False
                self._error(rec, f"slot {bad}: the runtime kept crashing ({self.sup.exit_note}); "
                                 f"rolled back to slot {slot} (version {rec['slots'][slot]['image_version']})")
                self.state.save_boot(rec)
            self.log(f"crash loop on slot {bad}: booting slot {slot}")
            self._start(slot)
            return True
        finally:
            self.install_lock.release()

    # -- start ---------------------------------------------------------------------------------
    def boot(self, wait: bool = False) -> None:
        """Recover from whatever the last run left, then start the active slot's runtime."""
        with self.rec_lock:
            rec = self.state.boot()
            orphan = self.sup.kill_orphan()
            if orphan:
                self.log(f"stopped runtime pid {orphan} left by the previous agent")
            if rec["pending"]:
                bad = rec["active"]
                rec["slots"].get(bad, {})["state"] = "failed"
                rec["active"], rec["previous"], rec["pending"] = rec["previous"], None, False
                self._error(rec, f"slot {bad}: the agent stopped before its runtime reported health; "
                                 f"rolled back to slot {rec['active']}")
                self.state.save_boot(rec)
            removed = self.state.clean(rec)
            self._sync_pack(rec)
            if removed:
                self.log(f"removed leftovers of an interrupted transfer: {', '.join(removed)}")
            slot = self._bootable(rec)
        if slot is not None:
            self._start(slot)
            if wait:
                self.sup.wait_healthy(self.health_timeout)

    def _sync_pack(self, rec: dict) -> None:
        """The pack pointer is what the runtime loads: make the record say the same (an agent killed
        between writing the pointer and the record), and drop pack folders nothing points at."""
        for slot, meta in rec["slots"].items():
            folder = self.state.packs_dir / slot
            if not meta or not folder.is_dir():
                continue
            try:
                name = (folder / POINTER).read_text().strip()
            except OSError:
                name = None
            if name and name != meta.get("pack"):
                try:
                    meta["pack_version"] = Manifest.from_json((folder / name / MANIFEST).read_bytes()).image_version
                    meta["pack"] = name
                except (OSError, ImageError):
                    (folder / POINTER).unlink(missing_ok=True)
                    meta["pack"] = meta["pack_version"] = None
                self.state.save_boot(rec)
            for d in folder.iterdir():
                if d.is_dir() and d.name != name:
                    shutil.rmtree(d, ignore_errors=True)

    def _bootable(self, rec: dict) -> str | None:
        """The active slot if its folder verifies, else the other good one (recorded), else None."""
        order = [rec["active"]] + [s for s in SLOTS if s != rec["active"]]
        problems = []
        for slot in order:
            meta = rec["slots"].get(slot)
            if not slot or not meta or meta.get("state") not in ("good", "trial"):
                continue
            try:
                verify_dir(self.state.slot_dir(rec, slot), list(self.state.trusted().values()), self.board)
            except ImageError as e:
                meta["state"] = "failed"
                problems.append(f"slot {slot} does not verify at boot: {e}")
                continue
            if problems:
                self._error(rec, "; ".join(problems) + f"; booting slot {slot} (version {meta['image_version']})")
            rec["active"] = slot
            if slot != order[0]:
                rec["previous"] = None
            self.state.save_boot(rec)
            return slot
        if problems:
            self._error(rec, "; ".join(problems) + "; no slot to boot")
            rec["active"] = None
            self.state.save_boot(rec)
        return None

    def _start(self, slot: str) -> int:
        rec = self.state.boot()
        return self.sup.start(slot, self.state.slot_dir(rec, slot), self.state.packs_dir / slot)

    def _error(self, rec: dict, message: str) -> None:
        rec["last_error"] = {"t": now_iso(), "message": message}
        self.log(message)

    # -- status --------------------------------------------------------------------------------
    def status(self) -> dict:
        with self.rec_lock:
            rec = self.state.boot()
        return {
            "agent_version": AGENT_VERSION, "board": self.board, "active": rec["active"], "pending": rec["pending"],
            "min_image_version": rec.get("floor") or 0,
            "slots": {s: rec["slots"].get(s) for s in SLOTS}, "runtime": self.sup.health(),
            "last_error": rec["last_error"], "trusted_keys": sorted(self.state.trusted()),
            "revoked_keys": sorted(self.state.revoked()), "max_upload_bytes": self.max_upload,
            "busy": self.install_lock.locked(),
        }

    # -- images --------------------------------------------------------------------------------
    def install_image(self, upload: Path, received_s: float = 0.0) -> dict:
        t0 = time.monotonic()
        timings = {"receive_s": round(received_s, 3)}
        keys = list(self.state.trusted().values())
        try:
            verified = read_image(upload, keys, board=self.board)
        except ImageError as e:
            return self._refuse_signed(upload, f"{e}")
        m = verified.manifest
        if m.role == PACK_ROLE:
            return _verdict("refused", "this is a model pack; send it to PUT /model-pack")
        rec = self.state.boot()
        running = rec["slots"].get(rec["active"]) if rec["active"] else None
        if running and m.image_version < int(running["image_version"]):
            return _verdict("refused", f"anti-rollback: image version {m.image_version} is older than the running "
                                       f"version {running['image_version']} (slot {rec['active']})")
        if m.image_version < int(rec.get("floor") or 0):  # the newest version that ever ran here
            return _verdict("refused", f"anti-rollback: image version {m.image_version} is older than version "
                                       f"{rec['floor']}, which this device has run")
        sha = _sha256(upload)
        timings["verify_s"] = round(time.monotonic() - t0, 3)
        # write the inactive slot under a temp name, fsync, rename; the boot record does not name it yet
        t1 = time.monotonic()
        target = next(s for s in SLOTS if s != rec["active"])
        gen = int(rec["generation"]) + 1
        name = f"{target}-g{gen}"
        tmp = self.state.slots_dir / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            verified.extract(tmp)
            fsync_tree(tmp)
            tmp.rename(self.state.slots_dir / name)
            fsync_dir(self.state.slots_dir)
        except OSError as e:  # e.g. a full disk: nothing was switched
            shutil.rmtree(tmp, ignore_errors=True)
            return _verdict("refused", f"cannot write slot {target}: {e}")
        try:
            verify_dir(self.state.slots_dir / name, keys, self.board)  # what is on disk, read back
        except ImageError as e:
            shutil.rmtree(self.state.slots_dir / name, ignore_errors=True)
            return _verdict("refused", f"the written slot does not verify (storage fault?): {e}")
        timings["install_s"] = round(time.monotonic() - t1, 3)
        t2 = time.monotonic()
        old_dir = self.state.slot_dir(rec, target)
        with self.rec_lock:  # commit 1: switch, on trial
            rec["generation"] = gen
            rec["slots"][target] = {
                "dir": name, "image_version": m.image_version, "site": m.site, "device": m.device, "board": m.board,
                "role": m.role, "key_id": m.key_id, "sha256": sha, "installed": now_iso(), "state": "trial",
                "pack_version": None,
            }
            previous = rec["active"]
            rec["active"], rec["previous"], rec["pending"] = target, previous, True
            self.state.save_boot(rec)
        if old_dir is not None:
            shutil.rmtree(old_dir, ignore_errors=True)
        shutil.rmtree(self.state.packs_dir / target, ignore_errors=True)  # packs were for the old image
        self.log(f"slot {target}: {m.site}/{m.device} version {m.image_version} installed; switching")
        timings["switch_s"] = round(time.monotonic() - t2, 3)
        t2 = time.monotonic()
        try:
            pid = self._start(target)
            ok, why = self.sup.wait_healthy(self.health_timeout)
        except Exception as e:  # cannot even start it: the same rollback as a crash
            pid, ok, why = None, False, f"the runtime could not be started: {type(e).__name__}: {e}"
        timings["health_s"] = round(time.monotonic() - t2, 3)
        info = {"slot": target, "image_version": m.image_version, "device": m.device, "site": m.site, "sha256": sha}
        if ok:
            t3 = time.monotonic()
            with self.rec_lock:  # commit 2: confirmed
                rec = self.state.boot()
                rec["slots"][target]["state"] = "good"
                rec["pending"] = False
                rec["floor"] = max(int(rec.get("floor") or 0), m.image_version)
                self.state.save_boot(rec)
            timings["confirm_s"] = round(time.monotonic() - t3, 3)
            timings["total_s"] = round(time.monotonic() - t0 + received_s, 3)
            self.log(f"slot {target}: {why}")
            return _verdict("ok", f"slot {target} runs version {m.image_version}: {why}", pid=pid, timings=timings, **info)
        # roll back to the slot that ran before
        self.sup.stop()
        with self.rec_lock:
            rec = self.state.boot()
            rec["slots"][target]["state"] = "failed"
            rec["slots"][target]["error"] = why
            rec["active"], rec["previous"], rec["pending"] = previous, None, False
            self._error(rec, f"slot {target} (version {m.image_version}) failed, rolled back to slot {previous}: {why}")
            self.state.save_boot(rec)
        back = None
        if previous is not None:
            try:
                self._start(previous)
                back, _ = self.sup.wait_healthy(self.health_timeout)
            except Exception as e:  # the watchdog keeps trying; the boot record already names `previous`
                self.log(f"slot {previous}: could not restart the runtime: {type(e).__name__}: {e}")
        timings["total_s"] = round(time.monotonic() - t0 + received_s, 3)
        return _verdict("rolled_back", f"version {m.image_version} failed on slot {target} ({why}); "
                        + (f"slot {previous} runs again" if previous else "no previous slot to run"),
                        active=previous, previous_healthy=back, timings=timings, **info)

    def _refuse_signed(self, upload: Path, reason: str) -> dict:
        kid = _unverified_key_id(upload)
        if kid and kid in self.state.revoked():
            reason = f"signed by revoked key {kid}"
        return _verdict("refused", reason)

    # -- model packs ---------------------------------------------------------------------------
    def install_pack(self, upload: Path, received_s: float = 0.0) -> dict:
        t0 = time.monotonic()
        try:
            verified, pack = read_pack(upload, list(self.state.trusted().values()), board=self.board)
        except ImageError as e:
            return self._refuse_signed(upload, str(e))
        m = pack.manifest
        rec = self.state.boot()
        slot = rec["active"]
        running = rec["slots"].get(slot) if slot else None
        if running is None:
            return _verdict("refused", "no image is installed; flash an image first")
        if (m.site, m.device) != (running["site"], running["device"]):
            return _verdict("refused", f"pack is for {m.site}/{m.device}, this device runs {running['site']}/{running['device']}")
        have = running.get("pack_version")
        if have is not None and m.image_version < int(have):
            return _verdict("refused", f"anti-rollback: pack version {m.image_version} is older than the installed {have}")
        folder = self.state.packs_dir / slot
        folder.mkdir(parents=True, exist_ok=True)
        gen = int(rec["generation"]) + 1
        name = f"p{m.image_version}-g{gen}"
        tmp = folder / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        verified.extract(tmp)
        fsync_tree(tmp)
        tmp.rename(folder / name)
        fsync_dir(folder)
        old = (folder / POINTER).read_text().strip() if (folder / POINTER).exists() else None
        atomic_write(folder / POINTER, (name + "\n").encode())
        with self.rec_lock:
            rec = self.state.boot()
            rec["generation"] = gen
            rec["slots"][slot].update(pack_version=m.image_version, pack=name, pack_installed=now_iso())
            self.state.save_boot(rec)
        pid_before = self.sup.proc.pid if self.sup.proc is not None and self.sup.proc.poll() is None else None
        swapped, why = self._wait_pack(m.image_version, pid_before)
        if not swapped:
            with self.rec_lock:  # put the previous pack back, and the runtime on it if the new one killed it
                if old:
                    atomic_write(folder / POINTER, (old + "\n").encode())
                else:
                    (folder / POINTER).unlink(missing_ok=True)
                rec = self.state.boot()
                rec["slots"][slot].update(pack_version=have, pack=old)
                self._error(rec, f"pack {m.image_version} rolled back: {why}")
                self.state.save_boot(rec)
            shutil.rmtree(folder / name, ignore_errors=True)
            back = None
            if self.sup.proc is None or self.sup.proc.poll() is not None or self.sup.proc.pid != pid_before:
                self._start(slot)
                back, _ = self.sup.wait_healthy(self.health_timeout)
            return _verdict("rolled_back", why, pack_version=have, restarted_healthy=back)
        if old and old != name:
            shutil.rmtree(folder / old, ignore_errors=True)
        pid_after = self.sup.proc.pid if self.sup.proc is not None and self.sup.proc.poll() is None else None
        return _verdict("ok", why, slot=slot, pack_version=m.image_version, pid=pid_after,
                        restarted=pid_before is not None and pid_after != pid_before,
                        timings={"receive_s": round(received_s, 3), "total_s": round(time.monotonic() - t0 + received_s, 3)})

    def _wait_pack(self, version: int, pid: int | None, timeout: float = 30.0) -> tuple[bool, str]:
        """Until the running runtime reports the pack swapped in and PACK_FRAMES more frames processed
        with it; False with the reason when it refuses the pack or dies."""
        if pid is None:
            return True, f"pack {version} installed; the runtime is not running and loads it when it starts"
        deadline = time.monotonic() + timeout
        swapped_at = None
        while time.monotonic() < deadline:
            p = self.sup.proc
            if p is None or p.pid != pid or p.poll() is not None:
                return False, f"the runtime stopped after the pack was installed: {self.sup.log_tail()}"
            rep = self.sup.report()
            if rep and rep.get("pid") == pid:
                if rep.get("pack_version") == version:
                    swapped_at = rep["frames"] if swapped_at is None else swapped_at
                    if rep["frames"] >= swapped_at + PACK_FRAMES:
                        return True, (f"pack {version} swapped in by the running runtime (pid {pid}, no restart); "
                                      f"{rep['frames'] - swapped_at} frames since")
                elif rep.get("pack_error") and f"p{version}-" in rep["pack_error"]:
                    return False, f"the runtime refused the pack: {rep['pack_error']}"
            time.sleep(0.1)
        if swapped_at is None:
            return False, f"the runtime did not take the pack within {timeout:.0f} s"
        return False, f"the runtime stopped processing frames after the pack swap (within {timeout:.0f} s)"

    # -- keys ----------------------------------------------------------------------------------
    def add_key(self, pem: bytes) -> tuple[int, dict]:
        try:
            kid = self.state.trust(pem)
        except ImageError as e:
            return 400, {"error": str(e)}
        except PermissionError as e:
            return 409, {"error": str(e)}
        self.log(f"trusting key {kid}")
        return 200, {"key_id": kid, "trusted": sorted(self.state.trusted())}

    def revoke_key(self, kid: str) -> tuple[int, dict]:
        with self.install_lock:
            trusted = self.state.trusted()
            if kid not in trusted:
                return 404, {"error": f"key {kid} is not trusted here", "trusted": sorted(trusted)}
            rec = self.state.boot()
            running = rec["slots"].get(rec["active"]) if rec["active"] else None
            if running and running.get("key_id") == kid:
                return 409, {"error": f"the running image (slot {rec['active']}) is signed by key {kid}; flash an "
                                      "image signed by another key first, then revoke it"}
            if len(trusted) == 1:
                return 409, {"error": "this is the last trusted key; trust its successor first"}
            self.state.revoke(kid)
            with self.rec_lock:
                rec = self.state.boot()
                for s, meta in rec["slots"].items():
                    if meta and meta.get("key_id") == kid and s != rec["active"]:
                        meta["state"] = "revoked"
                self.state.save_boot(rec)
        self.log(f"revoked key {kid}")
        return 200, {"revoked": kid, "trusted": sorted(self.state.trusted()), "revoked_keys": sorted(self.state.revoked())}


def _verdict(verdict: str, reason: str, **extra) -> dict:
    return {"verdict": verdict, "reason": reason, **extra}


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Handler(BaseHTTPRequestHandler):
    server_version = "sitewarden-agent/" + AGENT_VERSION
    timeout = 60  # seconds of silence before a connection is dropped (a stalled upload frees the install lock)
    agent: Agent
    token: bytes

    def log_message(self, fmt, *args):  # the agent logs what matters itself
        pass

    def _reply(self, code: int, data: dict) -> None:
        body = (json.dumps(data, sort_keys=True) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if code == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="sitewarden-agent"')
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        ok = hmac.compare_digest(value.strip().encode(), self.token) and scheme.lower() == "bearer"
        if not ok:
            self._discard(1 << 20)
            self._reply(401, {"error": "missing or wrong token (Authorization: Bearer <token>)"})
        return ok

    def _discard(self, limit: int) -> None:
        try:
            n = min(int(self.headers.get("Content-Length") or 0), limit)
            while n > 0:
                got = self.rfile.read(min(n, CHUNK))
                if not got:
                    break
                n -= len(got)
        except (ValueError, OSError):
            pass
        self.close_connection = True

    def _length(self, limit: int) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None or not raw.strip().isdigit():
            self._discard(0)
            self._reply(411, {"error": "Content-Length is required"})
            return None
        n = int(raw)
        if n > limit:
            self._discard(0)
            self._reply(413, {"error": f"{n} bytes is more than the limit of {limit}"})
            return None
        return n

    def do_GET(self):
        if not self._authorised():
            return
        if self.path.rstrip("/") == "/status":
            self._reply(200, self.agent.status())
        else:
            self._reply(404, {"error": f"no endpoint GET {self.path}"})

    def do_PUT(self):
        if not self._authorised():
            return
        route = self.path.rstrip("/")
        if route not in ("/image", "/model-pack"):
            self._discard(1 << 20)
            return self._reply(404, {"error": f"no endpoint PUT {self.path}"})
        n = self._length(self.agent.max_upload)
        if n is None:
            return
        if not self.agent.install_lock.acquire(blocking=False):
            self._discard(0)
            return self._reply(409, {"error": "another install is running; try again when it ends"})
        try:
            self.agent.state.spool.mkdir(parents=True, exist_ok=True)
            spool = self.agent.state.spool / f"upload-{secrets.token_hex(8)}.part"
            t0 = time.monotonic()
            try:
                with open(spool, "wb") as f:
                    left = n
                    while left > 0:
                        try:
                            got = self.rfile.read(min(left, CHUNK))
                        except OSError:  # a stalled (timeout) or reset client
                            got = b""
                        if not got:
                            break
                        f.write(got)
                        left -= len(got)
                if left:
                    self.agent.log(f"upload ended after {n - left} of {n} bytes; nothing changed")
                    self.close_connection = True
                    return
                received = time.monotonic() - t0
                install = self.agent.install_image if route == "/image" else self.agent.install_pack
                try:
                    result = install(spool, received)
                except Exception as e:  # the agent keeps serving; the boot record is still consistent
                    self.agent.log(f"install failed: {type(e).__name__}: {e}")
                    result = _verdict("refused", f"the agent failed: {type(e).__name__}: {e}")
            finally:
                spool.unlink(missing_ok=True)
        finally:
            self.agent.install_lock.release()
        if result["verdict"] != "ok":
            self.agent.log(f"{route}: {result['verdict']}: {result['reason']}")
        self._reply(HTTP_FOR[result["verdict"]], result)

    def do_POST(self):
        if not self._authorised():
            return
        if self.path.rstrip("/") != "/keys":
            self._discard(1 << 20)
            return self._reply(404, {"error": f"no endpoint POST {self.path}"})
        n = self._length(MAX_KEY_BYTES)
        if n is None:
            return
        code, data = self.agent.add_key(self.rfile.read(n))
        self._reply(code, data)

    def do_DELETE(self):
        if not self._authorised():
            return
        if not self.path.startswith("/keys/"):
            return self._reply(404, {"error": f"no endpoint DELETE {self.path}"})
        code, data = self.agent.revoke_key(unquote(self.path[len("/keys/"):]).strip("/"))
        self._reply(code, data)


def serve(agent: Agent, token: str, host: str = "127.0.0.1", port: int = 0, cert: str | None = None,
          keyfile: str | None = None, idle_timeout: float = Handler.timeout) -> ThreadingHTTPServer:
    """A server bound and ready (call `serve_forever`); `server.server_address` has the real port.
    `idle_timeout`: seconds of silence before a connection (a stalled upload) is dropped."""
    handler = type("AgentHandler", (Handler,), {"agent": agent, "token": token.encode(), "timeout": idle_timeout})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, keyfile)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    return server
