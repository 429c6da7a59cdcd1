"""Flash time for the demo image to a loopback device agent, and injected faults.

Per round (interleaved, so load drifts hit all of them alike):
* flash: `runtime.agent.client.flash` of the demo image (a new version each round) to an agent on
  127.0.0.1: wall time from the first byte to the verdict, split by the agent into receive,
  verify (signature, hashes, board, anti-rollback), install (write the inactive slot, fsync,
  rename, read back) and health (switch, start the runtime, first health report);
* baselines in the same run: a raw loopback upload of the same bytes to a bare HTTP server that
  spools them to disk; an in-process `read_image` + extract + fsync of the same image (what any
  installer must do); a bare `python -m runtime` start of the same image to its first health
  report (what any supervisor waits for). Their sum is the floor; flash / floor is the agent's cost;
* pack: `push_pack` of the image's detector tiers as a model pack, swapped in without a restart,
  and the longest wait between two frames the runtime reports during it vs an equal quiet window.

Then `--faults N` injected faults (kill -9 of the agent at a random point of a transfer or an
install, tampered, older and crashing images, a pack that breaks the runtime); after each the agent
is restarted if it was killed, and the device counts as bricked unless a runtime reports health on
a slot that verifies.

Run:  python bench/flash.py --rounds 3 --faults 12      (prints a table, writes bench/results/flash.json)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler.keys import public_pem  # noqa: E402
from compiler.modelpack import pack_from_image  # noqa: E402
from compiler.pack import pack_image  # noqa: E402
from runtime.agent.client import AgentError, flash, push_pack, status  # noqa: E402
from runtime.agent.state import fsync_tree  # noqa: E402
from runtime.image import read_image, verify_dir  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "flash.json"
TOKEN = "bench-token-" + secrets.token_hex(8)


def build_demo(folder: Path):
    from compiler.boards import load_board_profiles
    from compiler.builder import build_images
    from compiler.keys import load_private_key, new_key_pair
    from compiler.spec import load_spec

    priv, _, _ = new_key_pair(folder / "keys")
    spec = ROOT / "specs" / "demo-site.yaml"
    boards = load_board_profiles()
    result = load_spec(spec, boards=boards)
    built = build_images(result.spec, spec, result.document.files, boards["host-cpu"], folder / "out",
                         key_path=str(priv), progress=lambda m: None)
    key = load_private_key(priv)
    v = read_image(built[0].path, [key.public_key()])
    m = v.manifest
    fields = dict(site=m.site, device=m.device, board=m.board, compatible=m.compatible, role=m.role,
                  spec_sha256=m.spec_sha256, builder_version=m.builder_version, plan=m.plan)
    return key, v, fields


class Agent:
    def __init__(self, state: Path, pub: Path, health_timeout: float = 30):
        self.state = state
        subprocess.run([sys.executable, "-m", "runtime.agent", "provision", "--state", str(state), "--board", "host-cpu",
                        "--key", str(pub), "--token", TOKEN], cwd=ROOT, check=True, capture_output=True)
        self.health_timeout = health_timeout
        self.proc = None

    def start(self):
        ready = self.state.parent / "ready"
        ready.unlink(missing_ok=True)
        log = open(self.state.parent / "agent.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "runtime.agent", "--state", str(self.state), "--port", "0", "--sim",
                                      "--health-timeout", str(self.health_timeout), "--ready-file", str(ready)],
                                     cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        while not ready.exists() or not ready.read_text().endswith("\n"):
            if self.proc.poll() is not None:
                raise SystemExit("agent did not start; see " + str(self.state.parent / "agent.log"))
            time.sleep(0.05)
        host, port = ready.read_text().split()
        self.url, self.port = f"http://{host}:{port}", int(port)
        return self

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        try:
            pid = json.loads((self.state / "run" / "runtime.pid").read_text())["pid"]
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass


# -- baselines -------------------------------------------------------------------------------------
class _Spool(BaseHTTPRequestHandler):
    folder: Path

    def log_message(self, *a):
        pass

    def do_PUT(self):
        n = int(self.headers["Content-Length"])
        with open(self.folder / "upload.part", "wb") as f:
            while n > 0:
                got = self.rfile.read(min(n, 256 << 10))
                if not got:
                    break
                f.write(got)
                n -= len(got)
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def raw_upload(path: Path, folder: Path) -> float:
    import urllib.request

    handler = type("H", (_Spool,), {"folder": folder})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            req = urllib.request.Request(f"http://127.0.0.1:{server.server_address[1]}/x", data=f, method="PUT")
            req.add_header("Content-Length", str(path.stat().st_size))
            urllib.request.urlopen(req, timeout=60).read()
        return time.perf_counter() - t0
    finally:
        server.shutdown()
        server.server_close()


def verify_extract(path: Path, key, folder: Path) -> float:
    import shutil

    dest = folder / "extract"
    shutil.rmtree(dest, ignore_errors=True)
    t0 = time.perf_counter()
    v = read_image(path, [key.public_key()], board="host-cpu")
    v.extract(dest)
    fsync_tree(dest)
    verify_dir(dest, [key.public_key()], "host-cpu")
    return time.perf_counter() - t0


def bare_runtime(folder: Path, pub: Path) -> float:
    """`python -m runtime` on the extracted image (cwd = the image) until its first health report."""
    image = folder / "extract"
    status_file = folder / "bare-status.json"
    status_file.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(image), str(ROOT)]), PYTHONDONTWRITEBYTECODE="1")
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "runtime", "--image-dir", str(image), "--state", str(folder / "bare-state"),
                          "--key", str(pub), "--board", "host-cpu", "--status-file", str(status_file),
                          "--plugin", "sim=compiler.runcli:live_sim_plugin"], cwd=image, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            try:
                rep = json.loads(status_file.read_text())
                if rep["frames"] > 0 and rep["models_loaded"] > 0:
                    return time.perf_counter() - t0
            except (OSError, ValueError, KeyError):
                pass
            if p.poll() is not None:
                raise SystemExit("the bare runtime exited")
            time.sleep(0.05)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


# -- faults ----------------------------------------------------------------------------------------
def partial_upload(port: int, blob: bytes, fraction: float) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"PUT /image HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {len(blob)}\r\n\r\n".encode())
    s.sendall(blob[: int(len(blob) * fraction)])
    return s


def healthy_on_good_slot(agent: Agent, key, timeout: float = 60) -> tuple[bool, dict]:
    deadline = time.monotonic() + timeout
    s = {}
    while time.monotonic() < deadline:
        try:
            s = status(agent.url, TOKEN)
        except AgentError:
            time.sleep(0.2)
            continue
        if s["runtime"]["healthy"] and s["active"]:
            slot_dir = agent.state / "slots" / s["slots"][s["active"]]["dir"]
            try:
                verify_dir(slot_dir, [key.public_key()], "host-cpu")
                return True, s
            except Exception:
                return False, s
        time.sleep(0.2)
    return False, s


def run_faults(n: int, agent: Agent, key, image, fields, folder: Path, version: list[int], rng: random.Random) -> list[dict]:
    from runtime.config import RuntimeConfig

    kinds = ["kill9-transfer", "kill9-install", "tampered", "older", "crash-on-boot", "broken-pack"]
    rows = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        version[0] += 1
        v = version[0]
        blob = pack_image(image.files, key, image_version=v, **fields)[0]
        t0 = time.perf_counter()
        note = ""
        if kind == "kill9-transfer":
            frac = rng.uniform(0.05, 0.95)
            conn = partial_upload(agent.port, blob, frac)
            time.sleep(0.2)
            agent.kill9()
            conn.close()
            agent.start()
            note = f"killed at {frac:.0%} of the upload"
        elif kind == "kill9-install":
            delay = rng.uniform(0.0, 0.25) if (i // len(kinds)) % 2 else rng.uniform(0.25, 3.5)  # before / after the switch
            path = folder / f"fault-{i}.swimg"
            path.write_bytes(blob)
            th = threading.Thread(target=lambda: _quiet(flash, path, agent.url, TOKEN), daemon=True)
            th.start()
            time.sleep(delay)
            agent.kill9()
            try:
                switched = json.loads((agent.state / "boot.json").read_text())["pending"]
            except (OSError, ValueError, KeyError):
                switched = False
            agent.start()
            note = f"killed {delay:.2f} s in, {'switched (on trial)' if switched else 'before the switch'}"
        elif kind in ("tampered", "older", "crash-on-boot"):
            if kind == "tampered":
                b = bytearray(blob)
                b[len(b) // 2] ^= 0x40
                blob = bytes(b)
            elif kind == "older":
                blob = pack_image(image.files, key, image_version=0, **fields)[0]
            else:
                blob = pack_image({**image.files, "config.json": b'{"version": 99}'}, key, image_version=v, **fields)[0]
            path = folder / f"fault-{i}.swimg"
            path.write_bytes(blob)
            note = flash(path, agent.url, TOKEN)["verdict"]
        else:
            import dataclasses
            import hashlib

            from compiler.modelpack import make_pack

            config = RuntimeConfig.from_json(image.files["config.json"])
            wrong = image.files[config.models["posture"][0].file]
            bad = dataclasses.replace(config.models["detector"][0], variant="det-broken", file="models/broken.onnx",
                                      sha256=hashlib.sha256(wrong).hexdigest())
            pblob, _ = make_pack({"detector": (bad,)}, {"models/broken.onnx": wrong}, key, site=fields["site"],
                                 device=fields["device"], board="host-cpu", compatible=("host-cpu",), pack_version=1000 + i)
            path = folder / f"fault-{i}.swpack"
            path.write_bytes(pblob)
            note = push_pack(path, agent.url, TOKEN)["verdict"]
        ok, s = healthy_on_good_slot(agent, key)
        rows.append({"fault": kind, "note": note, "bricked": not ok, "recovered_s": round(time.perf_counter() - t0, 2),
                     "active": s.get("active"), "version": (s.get("slots") or {}).get(s.get("active") or "", {}).get("image_version")})
        print(f"  fault {i + 1:>2}/{n} {kind:<15} {note:<34} -> {'BRICKED' if not ok else 'runs'} "
              f"slot {rows[-1]['active']} v{rows[-1]['version']} ({rows[-1]['recovered_s']:.1f} s)", flush=True)
    return rows


def watch_gaps(status_file: Path, fn, tail_s: float = 1.5):
    """Run fn() while reading the runtime's status file; (fn's result, its seconds, the longest
    wait between two frames the runtime reported over that time plus `tail_s`)."""
    gaps, stop = [], threading.Event()

    def poll():
        seen = None
        while not stop.is_set():
            try:
                rep = json.loads(status_file.read_text())
                if rep.get("updated") != seen:
                    seen = rep.get("updated")
                    gaps.append(float(rep.get("max_frame_gap_s") or 0.0))
            except (OSError, ValueError):
                pass
            time.sleep(0.05)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    t0 = time.perf_counter()
    result = fn()
    took = time.perf_counter() - t0
    time.sleep(tail_s)
    stop.set()
    th.join()
    return result, took, max(gaps[1:] or [0.0])  # the first report may predate the window


def _quiet(fn, *args):
    try:
        fn(*args)
    except AgentError:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--faults", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        key, image, fields = build_demo(folder)
        pub = folder / "keys" / "signing.pub.pem"
        pub.write_bytes(public_pem(key.public_key()))
        agent = Agent(folder / "state", pub).start()
        rounds, version = [], [0]
        try:
            for r in range(args.rounds):
                version[0] += 1
                path = folder / f"v{version[0]}.swimg"
                path.write_bytes(pack_image(image.files, key, image_version=version[0], **fields)[0])
                t0 = time.perf_counter()
                reply = flash(path, agent.url, TOKEN)
                wall = time.perf_counter() - t0
                if reply["verdict"] != "ok":
                    raise SystemExit(f"flash failed: {reply}")
                up = raw_upload(path, folder)
                ve = verify_extract(path, key, folder)
                rt = bare_runtime(folder, pub)
                pblob, _ = pack_from_image(image, key, 100 + r, tasks=("detector",))
                ppath = folder / f"p{r}.swpack"
                ppath.write_bytes(pblob)
                status_file = agent.state / "run" / "status.json"
                preply, pack_s, swap_gap = watch_gaps(status_file, lambda: push_pack(ppath, agent.url, TOKEN))
                _, _, quiet_gap = watch_gaps(status_file, lambda: time.sleep(pack_s))
                t = reply["timings"]
                steps = ("receive_s", "verify_s", "install_s", "switch_s", "health_s", "confirm_s")
                request_s = wall - sum(t[k] for k in steps[1:])  # connect, headers, body, reply
                rounds.append({"flash_wall_s": wall, "transfer_s": request_s, **{k: t[k] for k in steps},
                               "raw_upload_s": up, "verify_extract_s": ve, "bare_runtime_health_s": rt,
                               "pack_swap_s": pack_s, "pack_restarted": preply.get("restarted"), "pack_verdict": preply["verdict"],
                               "max_frame_gap_swap_s": swap_gap, "max_frame_gap_quiet_s": quiet_gap})
                print(f"round {r + 1}: flash {wall:.2f} s (receive {t['receive_s']:.3f}, verify {t['verify_s']:.3f}, "
                      f"install {t['install_s']:.3f}, switch {t['switch_s']:.3f}, health {t['health_s']:.2f}); raw upload {up:.3f} s, verify+extract "
                      f"{ve:.3f} s, bare runtime {rt:.2f} s; pack {pack_s:.2f} s ({preply['verdict']}, longest frame gap "
                      f"{swap_gap * 1e3:.0f} ms vs {quiet_gap * 1e3:.0f} ms without a swap)", flush=True)
            faults = run_faults(args.faults, agent, key, image, fields, folder, version, rng) if args.faults else []
        finally:
            agent.stop()
    med = {k: round(statistics.median(r[k] for r in rounds), 3) for k in rounds[0] if k.endswith("_s")}
    floor = med["raw_upload_s"] + med["verify_extract_s"] + med["bare_runtime_health_s"]
    size = image_size = len(pack_image(image.files, key, image_version=1, **fields)[0])
    print(f"\ndemo image {image_size / 1e6:.2f} MB, {len(image.files)} files; medians of {len(rounds)} rounds")
    print(f"{'step':<44}{'agent':>10}{'baseline':>10}")
    print(f"{'transfer, whole request (vs raw upload)':<44}{med['transfer_s']:>9.3f}s{med['raw_upload_s']:>9.3f}s")
    print(f"{'verify + install (vs read_image+extract+fsync)':<44}{med['verify_s'] + med['install_s']:>9.3f}s{med['verify_extract_s']:>9.3f}s")
    print(f"{'switch + confirm (boot record commits)':<44}{med['switch_s'] + med['confirm_s']:>9.3f}s{'-':>10}")
    print(f"{'stop old, start new, to healthy (vs bare start)':<44}{med['health_s']:>9.3f}s{med['bare_runtime_health_s']:>9.3f}s")
    print(f"{'flash, wall (vs sum of baselines)':<44}{med['flash_wall_s']:>9.3f}s{floor:>9.3f}s")
    print(f"{'model pack swap, no restart (verdict)':<44}{med['pack_swap_s']:>9.3f}s{'-':>10}")
    print(f"{'longest frame gap: during swap (vs quiet)':<44}{med['max_frame_gap_swap_s']:>9.3f}s{med['max_frame_gap_quiet_s']:>9.3f}s")
    bricked = sum(f["bricked"] for f in faults)
    print(f"\ninjected faults: {len(faults)}, bricked devices: {bricked}")
    RESULTS.write_text(json.dumps({
        "bench": "flash", "image_bytes": size, "image_files": len(image.files), "rounds": len(rounds),
        "what": "flash = client.flash of the demo image to a loopback agent until its verdict (transfer, verify, "
                "install the inactive slot with fsync, switch, runtime start to first health report; transfer_s = "
                "flash wall minus the agent's verify (incl. sha256), install, switch, health and confirm times, receive_s = the body alone as the "
                "agent timed it); "
                "baselines in "
                "the same run: raw loopback upload of the same bytes, in-process read_image+extract+fsync+verify_dir, "
                "bare `python -m runtime` start to first health report; pack = push_pack swapped in without restart, "
                "until the agent's verdict (5 frames processed with the new pack); max_frame_gap = the longest wait "
                "between two frames the runtime reported during the pack push (+1.5 s) vs an equally long quiet window",
        "python": platform.python_version(), "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
        "medians": med, "baseline_sum_s": round(floor, 3), "flash_over_baselines": round(med["flash_wall_s"] / floor, 3),
        "round_values": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rounds],
        "faults": {"injected": len(faults), "bricked": bricked, "seed": args.seed, "rows": faults},
    }, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
