"""Measure the event outbox: durable emit rate and latency, and delivery throughput.

For each sink (a JSON-lines file; an HTTP receiver on 127.0.0.1 that stores by event id):

* emit: N events through ``Emitter.emit`` with the delivery thread running (every emit is one
  SQLite commit with synchronous=FULL, i.e. an fsync, before it returns): events/s, p50/p99 latency;
* live delivery: events/s from the first emit until the sink has all N;
* backlog delivery: N events stored while the sink was stopped (an outage), then delivered:
  events/s from start to drained.

Same-run baselines on the same disk: raw SQLite inserts of the same JSON with the same pragmas
(WAL, synchronous=FULL, one commit each) without the outbox's logic, and raw append+fsync to a
file (what the file sink does per event). The ratios say what the outbox costs over the bare
minimum a durable store needs.

Run:  python bench/outbox.py --events 1000 --rounds 3 [--dir /var/lib/sitewarden]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.config import SinkConfig  # noqa: E402
from runtime.events import Event  # noqa: E402
from runtime.outbox import Emitter  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "outbox.json"


def make_event(i: int) -> Event:
    return Event.create(type="ppe_violation", site="riverside-tower", device="edge-1", camera="crane-north",
                        zone="crane-swing", track=i, t_start=1_790_000_000.0 + i * 0.1, severity="warning",
                        confidence=0.83, details={"missing": ["helmet"], "grace_s": 2.0})


class Receiver:
    """Stores events by id, like the VMS; answers 409 to a duplicate."""

    def __init__(self):
        self.ids: set[str] = set()
        self.lock = threading.Lock()
        rcv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                eid = json.loads(body)["id"]
                with rcv.lock:
                    dup = eid in rcv.ids
                    rcv.ids.add(eid)
                self.send_response(409 if dup else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/events"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def bench_sink(kind: str, cfg: SinkConfig, n: int, base: Path) -> dict:
    # live: emit with the delivery thread running
    state = Path(tempfile.mkdtemp(prefix=f"live-{kind}-", dir=base))
    lat = []
    with Emitter([cfg], state) as em:
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            em.emit(make_event(i))
            lat.append(time.perf_counter() - t)
        t_emitted = time.perf_counter()
        assert em.drain(600), f"{kind}: not drained"
        t_drained = time.perf_counter()
        m = em.metrics()
    delivered = next(iter(m["sinks"].values()))["delivered"]
    assert delivered == n, f"{kind}: delivered {delivered} of {n}"
    # backlog: stored during an outage, then delivered
    state = Path(tempfile.mkdtemp(prefix=f"backlog-{kind}-", dir=base))
    em = Emitter([cfg], state, start=False)
    for i in range(n):
        em.emit(make_event(n + i))
    t1 = time.perf_counter()
    em.start()
    assert em.drain(600)
    t_backlog = time.perf_counter() - t1
    em.close()
    return {
        "sink": kind,
        "events": n,
        "emit_per_s": round(n / (t_emitted - t0), 1),
        "emit_p50_ms": round(pct(lat, 0.50) * 1000, 3),
        "emit_p99_ms": round(pct(lat, 0.99) * 1000, 3),
        "live_delivery_per_s": round(n / (t_drained - t0), 1),
        "backlog_delivery_per_s": round(n / t_backlog, 1),
    }


def raw_sqlite(n: int, base: Path) -> float:
    """Inserts/s of the same JSON into a bare table: WAL, synchronous=FULL, one commit each."""
    path = Path(tempfile.mkdtemp(prefix="raw-", dir=base)) / "raw.sqlite"
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, body BLOB)")
    bodies = [make_event(i).to_json() for i in range(n)]
    t0 = time.perf_counter()
    for b in bodies:
        c.execute("INSERT INTO t(body) VALUES (?)", (b,))
    dt = time.perf_counter() - t0
    c.close()
    return n / dt


def raw_fsync_append(n: int, base: Path) -> float:
    path = Path(tempfile.mkdtemp(prefix="rawfile-", dir=base)) / "raw.jsonl"
    bodies = [make_event(i).to_json() + b"\n" for i in range(n)]
    with open(path, "ab") as fh:
        t0 = time.perf_counter()
        for b in bodies:
            fh.write(b)
            fh.flush()
            os.fsync(fh.fileno())
        dt = time.perf_counter() - t0
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    ap.add_argument("--dir", default=None, help="where the state folders go (the disk under test)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/outbox.json")
    args = ap.parse_args()
    n = args.events
    runs: dict[str, list[dict]] = {"file": [], "http": []}
    raw_db: list[float] = []
    raw_file: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sw-outbox-bench-", dir=args.dir) as tmp:
        base = Path(tmp)
        rcv = Receiver()
        try:
            for _ in range(args.rounds):  # baselines and sinks interleaved: a busy disk hits all alike
                raw_db.append(raw_sqlite(n, base))
                raw_file.append(raw_fsync_append(n, base))
                runs["file"].append(bench_sink("file", SinkConfig("file", {"target": "events.jsonl"}), n, base))
                runs["http"].append(bench_sink("http", SinkConfig("http", {"target": rcv.url, "timeout_s": 5.0}), n, base))
        finally:
            rcv.stop()
        fs = _fstype(base)
    db, fa = statistics.median(raw_db), statistics.median(raw_file)
    rows = []
    for kind, rs in runs.items():
        row = {"sink": kind, "events": n}
        for k in rs[0]:
            if k not in ("sink", "events"):
                row[k] = round(statistics.median(r[k] for r in rs), 3)
        row["emit_vs_raw_sqlite"] = round(row["emit_per_s"] / db, 3)
        rows.append(row)
    rows[0]["backlog_vs_raw_fsync_append"] = round(rows[0]["backlog_delivery_per_s"] / fa, 3)

    head = ("sink", "emit/s", "p50 ms", "p99 ms", "live deliv/s", "backlog deliv/s", "emit/raw sqlite")
    print(f"outbox, {n} events per run, median of {args.rounds} interleaved rounds, disk {fs}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"baseline: raw sqlite insert (WAL, synchronous=FULL, commit each) {db:.0f}/s; raw append+fsync {fa:.0f}/s")
    print("  ".join(f"{h:>15}" for h in head))
    for r in rows:
        vals = (r["sink"], f"{r['emit_per_s']:.0f}", f"{r['emit_p50_ms']:.2f}", f"{r['emit_p99_ms']:.2f}",
                f"{r['live_delivery_per_s']:.0f}", f"{r['backlog_delivery_per_s']:.0f}", f"{r['emit_vs_raw_sqlite']:.2f}")
        print("  ".join(f"{v:>15}" for v in vals))
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({
            "bench": "outbox",
            "events": n,
            "rounds": args.rounds,
            "what": "Emitter.emit (durable: fsync'd SQLite commit) with one sink; live = delivery thread running "
                    "during the emits; backlog = all N stored first (an outage), then delivered; medians of "
                    "interleaved rounds",
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "cpu_count": os.cpu_count(),
            "filesystem": fs,
            "load_average_1min": round(os.getloadavg()[0], 2),
            "baseline_raw_sqlite_insert_per_s": round(db, 1),
            "baseline_raw_fsync_append_per_s": round(fa, 1),
            "baseline_rounds": {"raw_sqlite_insert_per_s": [round(x, 1) for x in raw_db],
                                "raw_fsync_append_per_s": [round(x, 1) for x in raw_file]},
            "rows": rows,
        }, indent=1) + "\n")
        print(f"wrote {RESULTS}")
    return 0


def _fstype(path: Path) -> str:
    best, fs = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, typ = line.split()[:3]
            if str(path).startswith(mnt) and len(mnt) >= len(best):
                best, fs = mnt, typ
    except OSError:
        pass
    return fs


if __name__ == "__main__":
    sys.exit(main())
