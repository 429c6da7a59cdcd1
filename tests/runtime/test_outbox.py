"""The outbox: nothing lost across kill -9 and sink outages, at least once and in order, bounded."""
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_receiver import Receiver, free_port  # noqa: E402

from runtime.config import SinkConfig  # noqa: E402
from runtime.events import Event  # noqa: E402
from runtime.outbox import ROW_OVERHEAD, Emitter, Outbox, backoff_delay  # noqa: E402

CHILD = Path(__file__).resolve().parent / "helpers_emitter_child.py"
FAST = (0.05, 0.4)  # backoff base/cap for tests


def ev(i: int, severity: str = "warning", type: str = "zone_intrusion", **kw) -> Event:
    return Event.create(type=type, site="s", device="d", camera="c", zone="z", track=i, t_start=1_790_000_000.0 + i,
                        severity=severity, **kw)


def http(url: str, **kw) -> SinkConfig:
    return SinkConfig("http", {"target": url, "token": "secret-token", "timeout_s": 2.0}, **kw)


# --- kill -9 -----------------------------------------------------------------------------------


class Child:
    def __init__(self, state: Path, url: str, n: int, mode: str, pace_s: float = 0.0):
        self.proc = subprocess.Popen([sys.executable, str(CHILD), str(state), url, str(n), mode, str(pace_s)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")),
                                        daemon=True)
        self._reader.start()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(5)

    def finish(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def emitted(self) -> list[int]:
        return [int(s.split()[1]) for s in self.lines if s.startswith("emitted ")]


def test_kill_9_mid_send_then_restart_delivers_every_event_once_in_order(tmp_path):
    from helpers_emitter_child import event

    n, kills = 120, 2
    rcv = Receiver(delay_s=0.02).start()  # stores, then takes 20 ms to answer: kills land mid-send
    try:
        # 1. emitting and sending; killed once the receiver has 25 events
        c = Child(tmp_path, rcv.url, n, "emit", pace_s=0.01)
        assert rcv.wait_for(lambda r: len(r.events) >= 25, 30), "the child never delivered"
        c.kill()
        emitted = c.emitted()
        # every emit() that returned is on disk, exactly once
        box = Outbox(tmp_path)
        stored = box.ids()
        box.close()
        assert len(stored) == len(set(stored))
        assert {event(i).id for i in emitted} <= set(stored), "an event emit() acknowledged was lost"
        # 2. restarted: drains; killed again mid-send
        got = len(rcv.events)
        c = Child(tmp_path, rcv.url, n, "drain")
        assert rcv.wait_for(lambda r: len(r.events) >= min(got + 25, len(stored)), 30)
        c.kill()
        # 3. restarted: the runtime re-raises every event (same ids), then drains to the end
        c = Child(tmp_path, rcv.url, n, "emit")
        assert c.finish(60) == 0 and c.lines[-1].strip() == "drained"
    finally:
        rcv.stop()
    want = [event(i).id for i in range(n)]
    assert rcv.order == want, "events were lost or arrived out of order"
    print(f"\nkill -9 x{kills}: {n} events, {rcv.requests} POSTs, {rcv.duplicates} duplicate deliveries "
          f"({len(emitted)} emitted before the first kill)")
    assert rcv.duplicates <= kills, "more re-sends than sends interrupted by kill -9"
    assert rcv.auth == {"Bearer t0k"}


# --- sinks that are down -----------------------------------------------------------------------


def test_a_sink_down_then_503_then_up_gets_everything_later_in_order(tmp_path):
    port = free_port()
    unavailable = [3]  # once listening, the first three requests get 503 (and are not stored)

    def status(e):
        with rcv.lock:
            if unavailable[0] > 0:
                unavailable[0] -= 1
                return 503
        return None

    rcv = Receiver(port=port, status=status)
    em = Emitter([http(rcv.url)], tmp_path, backoff=FAST)
    name = f"http:{rcv.url}"
    try:
        for i in range(10):  # nobody listening
            em.emit(ev(i))
        deadline = time.monotonic() + 10
        while em.metrics()["sinks"][name]["retries"] < 3:
            assert time.monotonic() < deadline, "the worker does not retry"
            time.sleep(0.02)
        m = em.metrics()["sinks"][name]
        assert m["depth"] == 10 and m["delivered"] == 0
        rcv.start()  # listening, but 503 at first
        for i in range(10, 20):
            em.emit(ev(i))
        assert em.drain(15)
        m = em.metrics()["sinks"][name]
    finally:
        em.close()
        rcv.stop()
    assert rcv.refused == 3
    assert rcv.order == [ev(i).id for i in range(20)]
    assert rcv.duplicates == 0 and m["delivered"] == 20 and m["depth"] == 0 and m["failed"] == 0
    assert m["retries"] >= 6
    assert rcv.auth == {"Bearer secret-token"}


def test_permanent_refusals_are_counted_and_skipped_409_counts_as_delivered(tmp_path):
    codes = {ev(2).id: 400, ev(3).id: 409, ev(4).id: 429}
    sent: dict[str, int] = {}

    def status(e):
        sent[e["id"]] = sent.get(e["id"], 0) + 1
        code = codes.get(e["id"])
        if code == 429 and sent[e["id"]] > 2:
            return None  # rate limit lifts
        return code

    rcv = Receiver(status=status).start()
    with Emitter([http(rcv.url)], tmp_path, backoff=FAST) as em:
        for i in range(6):
            em.emit(ev(i))
        assert em.drain(10)
        m = em.metrics()["sinks"][f"http:{rcv.url}"]
    rcv.stop()
    assert sent[ev(2).id] == 1, "a 400 was retried"
    assert sent[ev(4).id] == 3 and m["retries"] == 2
    assert m["failed"] == 1 and m["delivered"] == 5
    assert rcv.order == [ev(i).id for i in (0, 1, 4, 5)]


def test_each_sink_gets_only_what_it_asked_for(tmp_path):
    rcv = Receiver().start()
    sinks = [http(rcv.url, events=("ppe_violation", "posture"), min_severity="warning"),
             SinkConfig("file", {"target": "all.jsonl"})]
    with Emitter(sinks, tmp_path, backoff=FAST) as em:
        em.emit(ev(0, "critical", "ppe_violation"))
        em.emit(ev(1, "info", "ppe_violation"))
        em.emit(ev(2, "critical", "zone_intrusion"))
        em.emit(ev(3, "warning", "posture"))
        assert em.drain(10)
    rcv.stop()
    assert rcv.order == [ev(0, "critical", "ppe_violation").id, ev(3, "warning", "posture").id]
    assert len((tmp_path / "all.jsonl").read_text().splitlines()) == 4


def test_a_duplicate_emit_is_stored_and_delivered_once(tmp_path):
    rcv = Receiver().start()
    with Emitter([http(rcv.url)], tmp_path, backoff=FAST) as em:
        for _ in range(3):
            em.emit(ev(0))
        assert em.drain(10)
        assert em.outbox.ids() == [ev(0).id]
    rcv.stop()
    assert rcv.requests == 1


def test_a_removed_sink_does_not_pin_its_events_forever(tmp_path):
    gone = http(f"http://127.0.0.1:{free_port()}/x")
    em = Emitter([gone], tmp_path, backoff=(5, 5))
    em.emit(ev(0))
    em.close()
    with Emitter([SinkConfig("file", {"target": "e.jsonl"})], tmp_path) as em:
        st = em.outbox.stats()
        assert em.outbox.depth() == 0 and st["rows"] == 1
        assert st["counters"][f"http:{gone.params['target']}"]["dropped"] == 1
        em.emit(ev(1, "info"))  # the settled event is now the first to go when space runs out
        assert em.drain(5)


def test_close_stops_a_worker_that_is_backing_off(tmp_path):
    em = Emitter([http(f"http://127.0.0.1:{free_port()}/x")], tmp_path, backoff=(60, 300))
    em.emit(ev(0))
    time.sleep(0.2)
    t = time.monotonic()
    em.close()
    assert time.monotonic() - t < 2 and not any(w.is_alive() for w in em.workers)


# --- bounds ------------------------------------------------------------------------------------


def test_bounds_drop_delivered_then_info_then_warning_and_critical_only_past_the_hard_cap(tmp_path):
    box = Outbox(tmp_path, max_rows=10, hard_max_rows=14, max_bytes=1 << 30)
    sinks = ["http:vms"]
    for i in range(3):
        box.put(ev(i, "info"), [])  # no sink wants them: settled at once
    for i in range(3, 7):
        box.put(ev(i, "info"), sinks)
    for i in range(7, 10):
        box.put(ev(i, "warning"), sinks)
    for i in range(10, 13):
        box.put(ev(i, "critical"), sinks)
    ids = {ev(i, s).id: i for i in range(40) for s in ("info", "warning", "critical")}
    left = lambda: [ids[x] for x in box.ids()]  # noqa: E731
    assert left() == list(range(3, 13)), "the settled events go first"
    for i in range(13, 15):
        box.put(ev(i, "critical"), sinks)
    assert left() == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14], "then the oldest undelivered info"
    for i in range(15, 20):
        box.put(ev(i, "critical"), sinks)
    assert left() == list(range(10, 20)), "then warnings; only critical events are left"
    for i in range(20, 24):
        box.put(ev(i, "critical"), sinks)
    assert left() == list(range(10, 24)), "critical events are kept up to the hard cap"
    box.put(ev(24, "critical"), sinks)
    assert left() == list(range(11, 25)), "past the hard cap the oldest critical goes"
    st = box.stats()
    box.close()
    assert st["counters"][""] == {"pruned": 3, "dropped_info": 4, "dropped_warning": 3, "dropped_critical": 1}
    assert st["counters"]["http:vms"] == {"dropped": 8}
    assert st["depth"] == {"http:vms": 14} and st["rows"] == 14
    # the counts survive a restart and reach the metrics
    with Emitter([SinkConfig("http", {"target": "vms"})], tmp_path, start=False,
                 max_rows=10) as em:
        assert em.metrics()["store"]["dropped"] == {"info": 4, "warning": 3, "critical": 1}


def test_byte_bounds_count_snapshots_and_delete_their_files(tmp_path):
    jpeg = b"\xff\xd8" + os.urandom(10_000)
    body = len(ev(0, "info").with_snapshot(jpeg).to_json())
    per_event = body + len(jpeg) + ROW_OVERHEAD
    with Emitter([SinkConfig("http", {"target": f"http://127.0.0.1:{free_port()}/"})], tmp_path, start=False,
                 max_bytes=5 * per_event + 100) as em:
        for i in range(8):
            em.emit(ev(i, "info"), snapshot_jpeg=jpeg)
        em.emit(ev(8, "critical"), snapshot_jpeg=jpeg)
        m = em.metrics()["store"]
        kept = em.outbox.ids()
    assert m["dropped"] == {"info": 4, "warning": 0, "critical": 0}
    assert m["bytes"] <= 5 * per_event + 100 and len(kept) == 5 and ev(8, "critical").id in kept
    files = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert files == sorted(f"{i}.jpg" for i in kept), "a dropped event's snapshot stayed on disk"


def test_stray_snapshot_files_are_swept_on_open(tmp_path):
    Outbox(tmp_path).close()
    (tmp_path / "snapshots" / "orphan.jpg").write_bytes(b"x")
    Outbox(tmp_path).close()
    assert list((tmp_path / "snapshots").iterdir()) == []


# --- episodes, backoff -------------------------------------------------------------------------


def test_an_episode_survives_a_restart_so_the_id_does_too(tmp_path):
    box = Outbox(tmp_path)
    t0 = box.episode_start("cam|zone:pit|7", 1000.0, gap_s=5)
    assert box.episode_start("cam|zone:pit|7", 1003.0, gap_s=5) == t0
    box.close()
    box = Outbox(tmp_path)  # restart
    assert box.episode_start("cam|zone:pit|7", 1007.0, gap_s=5) == t0 == 1000.0
    assert box.episode_start("cam|zone:pit|7", 1020.0, gap_s=5) == 1020.0  # a new episode
    box.close()


def test_backoff_is_exponential_jittered_and_capped():
    rng = random.Random(1)
    for attempt, lo, hi in ((1, 0.5, 1.0), (2, 1.0, 2.0), (5, 8.0, 16.0), (9, 128.0, 256.0), (10, 150.0, 300.0),
                            (100, 150.0, 300.0)):
        ds = [backoff_delay(attempt, 1.0, 300.0, rng=rng) for _ in range(200)]
        assert lo <= min(ds) and max(ds) <= hi and max(ds) - min(ds) > (hi - lo) / 4
    assert backoff_delay(1, 1.0, 300.0, retry_after=30.0) == 30.0
    assert backoff_delay(1, 1.0, 300.0, retry_after=3600.0) == 300.0
