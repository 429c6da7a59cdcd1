"""Event clips: ring buffer, clip windows, sharing, the space bound, the OpenCV fallback and the
HTTP upload (a real server on loopback)."""
import http.server
import json
import threading

import cv2
import numpy as np
import pytest

from runtime.clips import ClipRecorder, write_clip
from runtime.config import ClipConfig, SinkConfig
from runtime.events import Event
from runtime.sinks import clip_url

av = pytest.importorskip("av")

FPS = 10.0
T0 = 1_700_000_000.0


def frame(i: int) -> np.ndarray:
    """A frame whose mean grey level encodes its index (survives JPEG + H.264)."""
    img = np.full((72, 128, 3), (i * 7) % 250, np.uint8)
    cv2.putText(img, str(i), (10, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
    return img


def event(t: float, severity="critical", camera="cam", track=1) -> Event:
    return Event.create(type="zone_intrusion", site="s", device="d", camera=camera, t_start=t, t_event=t,
                        severity=severity, zone="z", track=track)


def feed(rec, frames: range, requests: dict[int, Event]) -> dict[int, str]:
    names = {}
    for i in frames:
        rec.push("cam", T0 + i / FPS, frame(i))
        if i in requests:
            names[i] = rec.request(requests[i])
    return names


def decode(path):
    with av.open(str(path)) as c:
        meta = json.loads(c.metadata["comment"])
        frames = [(f.time, f.to_ndarray(format="bgr24")) for f in c.decode(video=0)]
    return meta, frames


def test_clip_covers_pre_and_post_seconds(tmp_path):
    cfg = ClipConfig(enabled=True, pre_s=2.0, post_s=1.5, max_mb=10)
    rec = ClipRecorder(cfg, tmp_path, {"cam": FPS}, block=True)
    e = event(T0 + 4.0)
    names = feed(rec, range(80), {40: e})
    rec.close()
    assert names[40] == f"{e.id}.mp4"
    (info,) = rec.clips()
    assert info.codec == "h264" and info.events == (e.id,)
    meta, frames = decode(tmp_path / "clips" / names[40])
    want = (cfg.pre_s + cfg.post_s) * FPS
    assert abs(len(frames) - want) <= 2, len(frames)
    assert meta["t0"] < e.t_event and abs(meta["t0"] - (e.t_event - cfg.pre_s)) <= 1.5 / FPS
    assert frames[-1][0] == pytest.approx(info.t1 - info.t0, abs=0.002)
    # the frame at the event: its time in the clip is pre_s, and it is the event's frame
    k = int(round(cfg.pre_s * FPS))
    assert frames[k][0] == pytest.approx(cfg.pre_s, abs=0.002)
    assert abs(float(frames[k][1][:, 64:].mean()) - float(frame(40)[:, 64:].mean())) < 6
    # OpenCV plays it too
    cap = cv2.VideoCapture(str(tmp_path / "clips" / names[40]))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == len(frames)


def test_events_in_an_open_clip_share_and_extend_it(tmp_path):
    cfg = ClipConfig(enabled=True, pre_s=1.0, post_s=1.0, max_mb=10, max_clip_s=4.0)
    rec = ClipRecorder(cfg, tmp_path, {"cam": FPS}, block=True)
    a, b, c, d = event(T0 + 2.0, track=1), event(T0 + 2.5, track=2), event(T0 + 3.4, track=3), event(T0 + 4.3, track=4)
    info_only = event(T0 + 2.2, severity="info", track=5)
    names = feed(rec, range(100), {20: a, 22: info_only, 25: b, 34: c, 43: d})
    rec.close()
    assert names[22] is None
    assert names[20] == names[25] == names[34] == f"{a.id}.mp4"  # c ends at 4.4: the clip spans 1.0-4.4 s <= 4 s
    assert names[43] == f"{d.id}.mp4"  # sharing would stretch the clip to 4.3 s > max_clip_s
    clips = {i.name: i for i in rec.clips()}
    first = clips[names[20]]
    assert first.events == (a.id, b.id, c.id)
    assert first.t0 <= a.t_event - 1.0 + 1e-6 and first.t1 >= c.t_event + 1.0 - 0.11
    assert abs(first.frames - (c.t_event + 1.0 - (a.t_event - 1.0)) * FPS) <= 2
    assert clips[names[43]].t0 <= d.t_event - 1.0 + 1e-6


def test_space_bound_deletes_oldest_first(tmp_path):
    cfg = ClipConfig(enabled=True, pre_s=0.5, post_s=0.5, max_mb=0.02)  # ~20 kB: room for a few small clips
    rec = ClipRecorder(cfg, tmp_path, {"cam": FPS}, block=True)
    reqs = {i: event(T0 + i / FPS, track=i) for i in range(5, 200, 15)}
    names = feed(rec, range(210), reqs)
    rec.close()
    kept = rec.clips()
    on_disk = sorted(p.name for p in (tmp_path / "clips").glob("*.mp4"))
    assert sorted(i.name for i in kept) == on_disk
    assert sum(p.stat().st_size for p in (tmp_path / "clips").glob("*.mp4")) <= cfg.max_mb * (1 << 20)
    assert 0 < len(kept) < len(reqs)
    order = [names[i] for i in sorted(names)]
    assert [i.name for i in kept] == order[-len(kept):], "the newest clips survive"
    assert rec.metrics()["counters"][""]["deleted"] == len(reqs) - len(kept)


def test_without_pyav_clips_fall_back_to_opencv(tmp_path):
    frames = []
    for i in range(12):
        ok, buf = cv2.imencode(".jpg", frame(i))
        frames.append((T0 + i / FPS, buf.tobytes()))
    assert write_clip(tmp_path / "c.mp4", frames, FPS, use_av=False) == "mp4v"
    cap = cv2.VideoCapture(str(tmp_path / "c.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12


def test_ring_memory_is_bounded_by_pre_seconds(tmp_path):
    cfg = ClipConfig(enabled=True, pre_s=1.0, post_s=1.0, max_mb=10)
    rec = ClipRecorder(cfg, tmp_path, {"cam": FPS}, block=True)
    feed(rec, range(60), {})
    rec.flush()
    ring = rec._rings["cam"]
    assert len(ring) <= cfg.pre_s * FPS + 2
    assert rec.metrics()["ring_bytes"]["cam"] == sum(len(j) for _, j in ring)
    rec.close()


def test_clip_url():
    assert clip_url("https://vms.local/api/events", "abc") == "https://vms.local/api/events/abc/clip"
    assert clip_url("http://127.0.0.1:8080/api/events/", "abc") == "http://127.0.0.1:8080/api/events/abc/clip"
    assert clip_url("http://127.0.0.1:8080/ingest", "abc") == "http://127.0.0.1:8080/api/events/abc/clip"


def test_http_sink_uploads_each_events_clip(tmp_path):
    got, statuses = [], [404]  # first answer: the VMS does not have the event yet

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = statuses.pop(0) if statuses else 201
            if status == 201:
                got.append((self.path, self.headers["Authorization"], self.headers["Content-Type"], body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/api/events"
        sinks = [SinkConfig(kind="http", params={"target": url, "token": "tok"}),
                 SinkConfig(kind="http", params={"target": url + "-off", "clips": False})]
        cfg = ClipConfig(enabled=True, pre_s=0.5, post_s=0.5, max_mb=10)
        rec = ClipRecorder(cfg, tmp_path, {"cam": FPS}, sinks, backoff=(0.05, 0.2), block=True)
        assert len(rec.uploaders) == 1
        a, b = event(T0 + 1.0, track=1), event(T0 + 1.2, track=2)
        names = feed(rec, range(30), {10: a, 12: b})
        rec.flush()
        assert rec.drain(10)
        rec.close()
    finally:
        server.shutdown()
    data = (tmp_path / "clips" / names[10]).read_bytes()
    assert sorted(p for p, *_ in got) == sorted([f"/api/events/{a.id}/clip", f"/api/events/{b.id}/clip"])
    assert all(auth == "Bearer tok" and ctype == "video/mp4" and body == data for _, auth, ctype, body in got)
    m = rec.metrics()["counters"]
    assert m[f"http:{url}"] == {"delivered": 2, "retries": 1}


def test_cameras_keep_their_own_rings_and_clips(tmp_path):
    cfg = ClipConfig(enabled=True, pre_s=1.0, post_s=1.0, max_mb=10)
    rec = ClipRecorder(cfg, tmp_path, {"a": FPS, "b": FPS}, block=True)
    ea, eb = event(T0 + 2.0, camera="a"), event(T0 + 2.2, camera="b")
    names = {}
    for i in range(40):
        rec.push("a", T0 + i / FPS, frame(i))
        rec.push("b", T0 + i / FPS, frame(200 - i))
        if i == 20:
            names["a"] = rec.request(ea)
        if i == 22:
            names["b"] = rec.request(eb)
    assert rec.request(event(T0, camera="elsewhere")) is None  # not a camera of this device
    rec.close()
    assert names == {"a": f"{ea.id}.mp4", "b": f"{eb.id}.mp4"}
    clips = {c.name: c for c in rec.clips()}
    assert clips[names["a"]].camera == "a" and clips[names["b"]].camera == "b"
    _, fa = decode(tmp_path / "clips" / names["a"])
    _, fb = decode(tmp_path / "clips" / names["b"])
    k = int(cfg.pre_s * FPS)  # the event's own frame, from each camera's own ring
    assert abs(float(fa[k][1][:, 64:].mean()) - float(frame(20)[:, 64:].mean())) < 6
    assert abs(float(fb[k][1][:, 64:].mean()) - float(frame(200 - 22)[:, 64:].mean())) < 6


def test_pending_uploads_survive_a_restart(tmp_path):
    got = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):
            got.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_port
    server.server_close()  # the VMS is down while the clip is recorded
    sink = SinkConfig(kind="http", params={"target": f"http://127.0.0.1:{port}/api/events", "timeout_s": 1})
    cfg = ClipConfig(enabled=True, pre_s=0.5, post_s=0.5, max_mb=10)
    rec = ClipRecorder(cfg, tmp_path, {"cam": FPS}, [sink], backoff=(0.05, 0.1), block=True)
    e = event(T0 + 1.0)
    names = feed(rec, range(30), {10: e})
    rec.flush()
    assert not rec.drain(0.5)
    rec.close()  # the device restarts
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rec2 = ClipRecorder(cfg, tmp_path, {"cam": FPS}, [sink], backoff=(0.05, 0.1), block=True)
        assert rec2.drain(10)
        rec2.close()
    finally:
        server.shutdown()
        server.server_close()
    assert got == [(f"/api/events/{e.id}/clip", (tmp_path / "clips" / names[10]).read_bytes())]
