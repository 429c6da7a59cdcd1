"""Measure the VMS's sustained event ingest: single authenticated POSTs on loopback, each durably
committed before its reply, on SQLite and on PostgreSQL.

The server is the real command (``python build.py vms``, uvicorn) in a subprocess. C clients
(threads with keep-alive connections, one device token each) POST events one at a time for a
fixed time after a warm-up; every reply is checked (201) and afterwards the stored rows are
counted (all of them, none twice). Reported: events/s, p50/p99 latency per POST.

Same-run baselines:

* ``ping``: the same server, same clients and tokens, ``POST /api/ping`` (authenticated, stores
  nothing): what HTTP + FastAPI + auth cost without storage;
* ``raw sqlite``: one thread inserting the same JSON into SQLite (WAL, synchronous=FULL), one
  commit (fsync) per event, no server: what one-fsync-per-event durability allows on this disk.
  The VMS beats it by group commit: concurrent POSTs share a commit, each still answered only
  after the commit that holds it.

Run:  python bench/vms_ingest.py [--seconds 8] [--clients 1,4,8] [--pg URL | --no-pg]
PostgreSQL: --pg, else $SITEWARDEN_TEST_PG_URL, else the local test cluster that .ci/run creates.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.events import Event  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "vms_ingest.json"
LOCAL_PG = "postgresql://sitewarden:sitewarden@127.0.0.1:5432/sitewarden_test"
ADMIN_PW = "bench-admin-password"


def make_event(dev: str, i: int) -> bytes:
    return Event.create(type="ppe_violation", site="riverside-tower", device=dev, camera="crane-north",
                        zone="crane-swing", track=i, t_start=1_790_000_000.0 + i * 0.01, severity="warning",
                        confidence=0.83, details={"missing": ["helmet"], "grace_s": 2.0}).to_json()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, token=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = f"Bearer {token}"
    c.request(method, path, body=json.dumps(body) if isinstance(body, dict) else body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, (json.loads(data) if data else None)


class VMS:
    def __init__(self, data: Path, db_url: str | None):
        self.port = free_port()
        cmd = [sys.executable, str(ROOT / "build.py"), "vms", "--data", str(data), "--port", str(self.port),
               "--admin-password", ADMIN_PW, "--poll-agents-s", "0"]
        if db_url:
            cmd += ["--db", db_url]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(self.port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the VMS did not start: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        self.admin = request(self.port, "POST", "/api/login", {"name": "admin", "password": ADMIN_PW})[1]["token"]

    def device(self, name: str) -> str:
        status, body = request(self.port, "POST", "/api/devices", {"id": name}, self.admin)
        assert status == 201, body
        return body["token"]

    def count(self) -> tuple[int, int]:
        seen, before = [], None
        while True:
            q = "/api/events?limit=500" + (f"&before={before}" if before else "")
            page = request(self.port, "GET", q, token=self.admin)[1]
            seen += [e["id"] for e in page["events"]]
            before = page["next"]
            if before is None:
                return len(seen), len(set(seen))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_clients(port: int, tokens: dict[str, str], path: str, seconds: float, warmup: float, start_index: int):
    """Each client POSTs back to back; returns (events in the timed window, latencies, sent ids per device)."""
    lat: list[list[float]] = [[] for _ in tokens]
    counts = [0] * len(tokens)
    sent = [0] * len(tokens)
    errors: list[str] = []
    t_start = time.perf_counter() + 0.2
    t_measure, t_end = t_start + warmup, t_start + warmup + seconds

    def client(k, dev, token):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        h = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        i = start_index
        while time.perf_counter() < t_start:
            time.sleep(0.001)
        while True:
            now = time.perf_counter()
            if now >= t_end:
                break
            body = make_event(dev, i) if path == "/api/events" else b""
            t0 = time.perf_counter()
            c.request("POST", path, body=body, headers=h)
            r = c.getresponse()
            r.read()
            t1 = time.perf_counter()
            if r.status not in (201, 204):
                errors.append(f"{r.status}")
                break
            i += 1
            sent[k] += 1
            if t0 >= t_measure:
                counts[k] += 1
                lat[k].append(t1 - t0)
        c.close()

    threads = [threading.Thread(target=client, args=(k, d, t)) for k, (d, t) in enumerate(tokens.items())]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} failed POSTs, first: HTTP {errors[0]}")
    flat = sorted(x for ls in lat for x in ls)
    return sum(counts), flat, sum(sent)


def pct(xs, q):
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1)))] * 1000.0 if xs else float("nan")


def raw_sqlite(n: int, folder: Path) -> float:
    db = sqlite3.connect(folder / "raw.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE e (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, body TEXT)")
    bodies = [make_event("raw", i).decode() for i in range(n)]
    t0 = time.perf_counter()
    for i, b in enumerate(bodies):
        db.execute("BEGIN")
        db.execute("INSERT INTO e(id, body) VALUES (?, ?)", (str(i), b))
        db.execute("COMMIT")
    rate = n / (time.perf_counter() - t0)
    db.close()
    return rate


def pg_schema_url(base: str) -> tuple[str, str] | None:
    try:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(base, autocommit=True, connect_timeout=3) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in base else "?"
        return f"{base}{sep}options=-csearch_path%3D{schema}", schema
    except Exception as e:
        print(f"PostgreSQL not available ({type(e).__name__}: {e}); skipping it", file=sys.stderr)
        return None


def drop_schema(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as c:
        c.execute(f'DROP SCHEMA "{schema}" CASCADE')


def bench_store(label, data: Path, db_url, clients_list, seconds, warmup) -> list[dict]:
    vms = VMS(data, db_url)
    rows = []
    try:
        n_max = max(clients_list)
        tokens = {f"dev-{k}": vms.device(f"dev-{k}") for k in range(n_max)}
        total_sent = 0
        for n in clients_list:
            mine = dict(list(tokens.items())[:n])
            ping_n, ping_lat, _ = run_clients(vms.port, mine, "/api/ping", seconds / 2, warmup / 2, 0)
            ev_n, ev_lat, sent = run_clients(vms.port, mine, "/api/events", seconds, warmup, 1_000_000 * n)
            total_sent += sent
            rows.append({"store": label, "clients": n, "events": ev_n, "events_per_s": round(ev_n / seconds, 1),
                         "p50_ms": round(pct(ev_lat, 0.5), 2), "p99_ms": round(pct(ev_lat, 0.99), 2),
                         "ping_per_s": round(ping_n / (seconds / 2), 1), "ping_p50_ms": round(pct(ping_lat, 0.5), 2),
                         "ping_p99_ms": round(pct(ping_lat, 0.99), 2)})
        stored, unique = vms.count()
        for r in rows:
            r["stored_total"], r["sent_total"], r["stored_unique"] = stored, total_sent, unique
        if stored != total_sent or unique != stored:
            raise RuntimeError(f"{label}: sent {total_sent} events, stored {stored} ({unique} unique)")
    finally:
        vms.stop()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="timed window per run")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--clients", default="1,4,8", help="concurrent clients per run, comma-separated")
    ap.add_argument("--pg", default=None, help="PostgreSQL URL (default $SITEWARDEN_TEST_PG_URL or the local cluster)")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--dir", default=None, help="where the data folders go (the disk under test)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/vms_ingest.json")
    args = ap.parse_args()
    clients = [int(x) for x in args.clients.split(",")]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="sw-vms-bench-", dir=args.dir) as tmp:
        base = Path(tmp)
        raw = raw_sqlite(500, base)
        rows += bench_store("sqlite", base / "sqlite", None, clients, args.seconds, args.warmup)
        pg_version = None
        if not args.no_pg:
            pg_base = args.pg or os.environ.get("SITEWARDEN_TEST_PG_URL") or LOCAL_PG
            got = pg_schema_url(pg_base)
            if got:
                url, schema = got
                try:
                    import psycopg

                    with psycopg.connect(pg_base) as c:
                        pg_version = c.execute("SHOW server_version").fetchone()[0]
                    rows += bench_store("postgresql", base / "pg", url, clients, args.seconds, args.warmup)
                finally:
                    drop_schema(pg_base, schema)
    load = os.getloadavg()[0]
    print(f"VMS ingest: single authenticated POSTs on loopback, each committed (SQLite WAL synchronous=FULL / "
          f"PostgreSQL synchronous_commit=on) before the reply; {args.seconds:g} s per run, {os.cpu_count()} cores, "
          f"load {load:.1f}")
    print(f"baseline: raw SQLite, one fsync'd commit per event, no server: {raw:.0f} events/s")
    head = ("store", "clients", "events/s", "p50 ms", "p99 ms", "ping/s", "ping p50", "ping p99")
    print("  ".join(f"{h:>10}" for h in head))
    for r in rows:
        vals = (r["store"], r["clients"], f"{r['events_per_s']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                f"{r['ping_per_s']:.0f}", f"{r['ping_p50_ms']:.1f}", f"{r['ping_p99_ms']:.1f}")
        print("  ".join(f"{v:>10}" for v in vals))
    if rows:
        print(f"stored = sent, each once: sqlite {rows[0]['stored_total']}"
              + (f", postgresql {rows[-1]['stored_total']}" if rows[-1]["store"] == "postgresql" else ""))
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({
            "bench": "vms_ingest",
            "what": "sustained single-POST authenticated ingest into the VMS (python build.py vms, uvicorn, one "
                    "process) on 127.0.0.1; each event committed durably before its reply (group commit); "
                    "ping = the same server's empty authenticated endpoint, same clients; raw sqlite = one "
                    "fsync'd commit per event without a server",
            "seconds_per_run": args.seconds,
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "postgresql": pg_version,
            "cpu_count": os.cpu_count(),
            "load_average_1min": round(load, 2),
            "baseline_raw_sqlite_commit_per_s": round(raw, 1),
            "rows": rows,
        }, indent=1) + "\n")
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
