"""Frame sources: files (AVI we write, a GIF from ../shared), corrupt files, the sim: plug-in, and a
real RTSP stream on 127.0.0.1 that dies mid-stream and comes back.

The RTSP server is this file run as a script (``python test_sources.py rtsp-server PORT RTP_PORT
DIR``): Debian's ffmpeg encodes a test pattern to RTP on a loopback UDP port and a small RTSP
server relays it to clients over TCP (interleaved). ffmpeg cannot serve RTSP itself (its
``-rtsp_flags listen`` is for receiving), and this keeps the test's only system package ffmpeg.
Nothing here connects to any address but 127.0.0.1.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SHARED_VIDEO = Path(__file__).resolve().parents[3] / "shared" / "data" / "video"
LOOPBACK = "127.0.0.1"


def skip_or_fail(reason: str) -> None:
    """Skip locally with the reason; fail under CI, where everything must be there."""
    if CI:
        pytest.fail(f"{reason} (CI=true: required)")
    pytest.skip(reason)


def write_avi(path: Path, n: int = 20, size=(64, 48), fps: float = 10.0) -> list[int]:
    """An MJPG AVI whose frame i is a flat grey of level 10 * i (readable back within JPEG error)."""
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert w.isOpened()
    levels = []
    for i in range(n):
        level = 10 + (10 * i) % 230
        img = np.full((size[1], size[0], 3), level, np.uint8)
        img[:4, :4] = 255 - level  # a corner mark so the frame is not perfectly flat
        w.write(img)
        levels.append(level)
    w.release()
    return levels


# --- files -------------------------------------------------------------------------------------


def test_file_avi_frames_times_and_resize(tmp_path):
    from runtime.sources import Frame, open_source

    levels = write_avi(tmp_path / "clip.avi")
    src = open_source("file:clip.avi", tmp_path, resolution=(32, 24), fps=10)
    frames = list(src)
    assert len(frames) == len(levels)
    assert all(isinstance(f, Frame) for f in frames)
    assert [f.index for f in frames] == list(range(len(levels)))
    assert np.allclose([f.t for f in frames], np.arange(len(levels)) / 10.0, atol=1e-6)
    assert all(f.image.shape == (24, 32, 3) and f.image.dtype == np.uint8 for f in frames)
    got = [float(np.median(f.image)) for f in frames]
    assert np.allclose(got, levels, atol=4), got
    s = src.stats
    assert (s.frames_read, s.frames_skipped, s.state) == (len(levels), 0, "ended")
    assert src.read() is None and src.finished and src.healthy


def test_file_sampled_at_configured_fps_and_loops(tmp_path):
    from runtime.sources import open_source

    write_avi(tmp_path / "clip.avi", n=20, fps=10)
    half = list(open_source("file:clip.avi", tmp_path, (64, 48), fps=5))
    assert [round(f.t, 3) for f in half] == [round(0.2 * i, 3) for i in range(10)]
    src = open_source(f"file:{tmp_path / 'clip.avi'}", None, (64, 48), fps=10, loop=True)  # absolute path
    ts = [src.read().t for _ in range(45)]
    assert np.all(np.diff(ts) > 0), "time keeps increasing across loops"
    assert ts[-1] == pytest.approx(4.4, abs=1e-6)
    assert src.state == "streaming"
    src.close()
    assert src.state == "closed" and src.read() is None


def test_file_realtime_paces_to_timestamps(tmp_path):
    from runtime.sources import open_source

    write_avi(tmp_path / "clip.avi", n=6, fps=10)
    t0 = time.monotonic()
    assert len(list(open_source("file:clip.avi", tmp_path, (64, 48), fps=10, realtime=True))) == 6
    assert time.monotonic() - t0 >= 0.45  # 6 frames at 10 fps span 0.5 s
    t0 = time.monotonic()
    list(open_source("file:clip.avi", tmp_path, (64, 48), fps=10))
    assert time.monotonic() - t0 < 0.45  # default: as fast as the caller pulls


def test_gif_from_shared_data():
    from runtime.sources import open_source

    gifs = sorted(SHARED_VIDEO.glob("*.gif")) if SHARED_VIDEO.is_dir() else []
    if not gifs:
        skip_or_fail(f"no GIFs under {SHARED_VIDEO} (../shared is missing)")
    src = open_source(f"file:{gifs[0].name}", SHARED_VIDEO, resolution=(320, 180), fps=10)
    frames = [f for _, f in zip(range(15), src)]
    src.close()
    assert len(frames) == 15
    assert all(f.image.shape == (180, 320, 3) for f in frames)
    assert np.all(np.diff([f.t for f in frames]) > 0)
    assert np.mean([f.image.std() for f in frames]) > 5  # real pictures, not blank frames


def test_missing_and_garbage_files_are_clear_errors(tmp_path):
    from runtime.sources import SourceError, open_source

    with pytest.raises(SourceError, match="no such file"):
        open_source("file:nope.mp4", tmp_path, (64, 48), 10)
    (tmp_path / "junk.mp4").write_bytes(os.urandom(5000))
    with pytest.raises(SourceError, match="not a video OpenCV can decode"):
        open_source("file:junk.mp4", tmp_path, (64, 48), 10)


def test_truncated_and_damaged_files_do_not_crash(tmp_path):
    from runtime.sources import open_source

    write_avi(tmp_path / "clip.avi", n=30)
    raw = (tmp_path / "clip.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(raw[: len(raw) // 2])
    src = open_source("file:cut.avi", tmp_path, (64, 48), fps=10)
    frames = list(src)
    assert 0 < len(frames) < 30 and src.state == "ended"
    # garbage over the middle of the file: whatever decodes is handed out, the rest skipped, no raise
    damaged = bytearray(raw)
    mid = len(raw) // 2
    damaged[mid: mid + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    (tmp_path / "damaged.avi").write_bytes(bytes(damaged))
    src = open_source("file:damaged.avi", tmp_path, (64, 48), fps=10)
    frames = list(src)
    s = src.stats
    assert s.state == "ended" and 0 < len(frames) < 30
    assert s.frames_skipped > 0 and len(frames) + s.frames_skipped <= 30, s  # undecodable ones counted
    assert s.last_error and "undecodable" in s.last_error
    assert all(f.image.shape == (48, 64, 3) for f in frames)


# --- plug-ins (sim:) and bad frames ------------------------------------------------------------


def test_sim_without_plugin_is_refused_clearly():
    from runtime.sources import SIM_REFUSED, SourceError, open_source

    with pytest.raises(SourceError) as e:
        open_source("sim:crane-swing", None, (64, 48), 10)
    assert str(e.value) == SIM_REFUSED
    assert "build.py run" in str(e.value) and "rtsp://, file: or usb:" in str(e.value)


def test_sim_with_a_plugin_and_bad_frames_are_skipped():
    from runtime.sources import open_source

    class Item:
        def __init__(self, image, t):
            self.image, self.t = image, t

    def frames(scene, resolution, fps):
        assert (scene, resolution, fps) == ("crane-swing", (40, 30), 5.0)
        good = np.zeros((60, 80, 3), np.uint8)
        yield Item(good, 0.0)
        yield None  # nothing
        yield np.zeros((0, 0, 3), np.uint8)  # empty
        yield np.zeros((30, 40, 3), np.float32)  # wrong dtype
        yield np.zeros((30, 40, 2), np.uint8)  # wrong channels
        yield "not an image"
        yield np.full((30, 40), 7, np.uint8)  # grey: converted, kept
        yield Item(np.zeros((30, 40, 4), np.uint8), 0.6)  # BGRA: converted, kept
        raise RuntimeError("renderer died")

    src = open_source("sim:crane-swing", None, (40, 30), 5, plugins={"sim": frames})
    got = list(src)
    assert [f.image.shape for f in got] == [(30, 40, 3)] * 3
    assert got[1].image[0, 0].tolist() == [7, 7, 7]
    assert [f.index for f in got] == [0, 1, 2] and got[2].t == 0.6
    s = src.stats
    assert (s.frames_read, s.frames_skipped) == (3, 6)
    assert "renderer died" in s.last_error and s.state == "ended"


def test_sim_plugin_with_the_real_renderer():
    from runtime.sources import open_source
    from sim.render import SimSource

    def sim(scene, resolution, fps):
        return SimSource(scene, resolution=resolution, fps=fps, seconds=0.4)

    frames = list(open_source("sim:crane-swing", None, (160, 90), 10, plugins={"sim": sim}))
    assert len(frames) == 4 and frames[0].image.shape == (90, 160, 3)
    assert [round(f.t, 2) for f in frames] == [0.0, 0.1, 0.2, 0.3]


@pytest.mark.parametrize("text, message", [
    ("", "expected 'rtsp://"),
    ("ftp://x/y", "unknown source kind 'ftp'"),
    ("usb:cam", "usb:N"),
    ("rtsp:", "rtsp://host"),
    ("file:", "file:PATH"),
])
def test_bad_source_text(text, message):
    from runtime.sources import SourceError, open_source

    with pytest.raises(SourceError, match=message):
        open_source(text, None, (64, 48), 10)


def test_unknown_option_is_named(tmp_path):
    from runtime.sources import SourceError, open_source

    write_avi(tmp_path / "clip.avi", n=2)
    with pytest.raises(SourceError, match="loops"):
        open_source("file:clip.avi", tmp_path, (64, 48), 10, loops=True)


def test_missing_usb_camera_reconnects_without_raising():
    from runtime.sources import open_source

    src = open_source("usb:63", None, (64, 48), 10, backoff_s=0.05, backoff_max_s=0.1)
    try:
        assert src.read(timeout=0.5) is None
        deadline = time.monotonic() + 5
        while src.stats.reconnect_attempts < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        s = src.stats
        assert s.state == "reconnecting" and s.reconnect_attempts >= 2 and s.frames_read == 0
        assert not src.healthy
    finally:
        src.close()
    assert src.state == "closed"


def test_live_reader_skips_bad_frames_and_survives_errors():
    """The reader thread over a scripted capture: garbage frames, a cv2 error, a lost stream."""
    import cv2

    from runtime.sources import LiveSource

    good = np.full((48, 64, 3), 100, np.uint8)
    script = [(True, good), (True, None), (True, np.zeros((0, 0, 3), np.uint8)), "cv2-error",
              (True, np.zeros((48, 64), np.uint16)), (True, good), "lost"]
    opened = []

    class FakeCapture:
        def __init__(self):
            self.items = list(script) if not opened else [(True, good)] * 1000
            opened.append(self)

        def isOpened(self):
            return len(opened) != 2  # the first re-open fails: one backoff, then it comes back

        def grab(self):
            time.sleep(0.01)
            return bool(self.items) and self.items[0] != "lost"

        def retrieve(self):
            item = self.items.pop(0)
            if item == "cv2-error":
                raise cv2.error("corrupt frame")
            return item

        def release(self):
            pass

    src = LiveSource("rtsp://127.0.0.1:1/fake", "unused", (32, 24), None, backoff_s=0.05, backoff_max_s=0.1,
                     opener=FakeCapture)
    try:
        first = src.read(timeout=2)
        assert first is not None and first.image.shape == (24, 32, 3)
        # back to streaming on the re-opened capture (the old one's last good frame may be read
        # while the reader is still reconnecting: wait for the state, not just the counter)
        assert wait_until(lambda: src.stats.reconnects >= 1 and src.stats.state == "streaming", 5), src.stats
        later = src.read(timeout=2)
        assert later is not None and later.index > first.index
        s = src.stats
        assert s.frames_skipped == 4 and s.reconnect_attempts >= 1 and s.state == "streaming", s
    finally:
        src.close()


def test_backoff_grows_and_is_capped():
    from runtime.sources import LiveSource

    src = LiveSource.__new__(LiveSource)
    src.backoff_s, src.backoff_max_s = 0.5, 8.0
    waits = [[src._backoff(a) for _ in range(200)] for a in range(8)]
    assert 0.25 <= min(waits[0]) and max(waits[0]) <= 0.5
    assert 2.0 <= min(waits[3]) and max(waits[3]) <= 4.0
    assert 4.0 <= min(waits[7]) and max(waits[7]) <= 8.0  # capped
    assert len({round(w, 6) for w in waits[7]}) > 100  # jitter: clients do not reconnect in lock-step


def test_password_is_redacted():
    from runtime.sources import _redact

    assert _redact("rtsp://admin:s3cret@10.0.0.5:554/s1") == "rtsp://admin:***@10.0.0.5:554/s1"
    assert _redact("rtsp://10.0.0.5/s1") == "rtsp://10.0.0.5/s1"


@pytest.mark.parametrize("module", ["sources.py", "health.py"])
def test_runtime_modules_import_nothing_of_the_project(module):
    """The arrows: runtime/ needs only the stdlib, numpy, opencv, onnxruntime, cryptography (and itself)."""
    import ast

    tree = ast.parse((Path(__file__).resolve().parents[2] / "runtime" / module).read_text())
    allowed = set(sys.stdlib_module_names) | {"numpy", "cv2", "onnxruntime", "cryptography"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: runtime's own modules
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in allowed, f"runtime/{module} imports {name}"


# --- RTSP on loopback --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class RTSPServer:
    """This file as a subprocess serving rtsp://127.0.0.1:PORT/live; `kill()` takes it down hard."""

    def __init__(self, port: int, rtp_port: int, workdir: Path):
        self.port, self.rtp_port, self.workdir = port, rtp_port, workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "rtsp-server", str(self.port), str(self.rtp_port), str(self.workdir)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        line = self.proc.stdout.readline()  # "ready" once the SDP is known and the port listens
        assert line.strip() == b"ready", line

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the server and its ffmpeg (its own session)
            self.proc.wait(5)


@pytest.fixture
def rtsp_server(tmp_path):
    if shutil.which("ffmpeg") is None:
        skip_or_fail("ffmpeg is not installed (apt-get install ffmpeg)")
    server = RTSPServer(free_port(), free_port(), tmp_path)
    server.start()
    yield server
    server.kill()


def wait_until(pred, timeout: float, src=None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        if src is not None:
            src.read(timeout=0.1)  # the pipeline keeps pulling; it must never see an exception
        else:
            time.sleep(0.05)
    return pred()


def test_rtsp_stream_drops_and_reconnects(rtsp_server):
    from runtime.sources import open_source

    url = f"rtsp://{LOOPBACK}:{rtsp_server.port}/live"
    src = open_source(url, None, resolution=(160, 120), fps=5, open_timeout_s=3, read_timeout_s=2,
                      backoff_s=0.2, backoff_max_s=1.0)
    try:
        frames = [f for f in (src.read(timeout=5) for _ in range(6)) if f is not None]
        assert len(frames) >= 5, src.stats
        assert all(f.image.shape == (120, 160, 3) for f in frames)
        assert src.state == "streaming" and src.healthy
        ts = np.array([f.t for f in frames[-4:]])
        assert np.all(np.diff(ts) >= 0.15), f"sampled at ~5 fps from a 10 fps stream: {np.diff(ts)}"
        assert src.stats.frames_dropped > 0

        rtsp_server.kill()  # mid-stream
        assert wait_until(lambda: src.state == "reconnecting", 6, src), src.stats
        assert not src.healthy and src.read(timeout=0.3) is None
        assert src.stats.last_error
        time.sleep(0.5)  # down for a while: a few failed attempts with backoff

        rtsp_server.start()
        assert wait_until(lambda: src.state == "streaming", 12, src), src.stats
        again = [f for f in (src.read(timeout=3) for _ in range(3)) if f is not None]
        assert len(again) >= 2 and again[0].index > frames[-1].index and again[0].t > frames[-1].t
        s = src.stats
        assert s.reconnects >= 1 and s.reconnect_attempts >= 1, s
    finally:
        src.close()
    assert src.state == "closed"


def test_slow_reader_gets_the_newest_frame(rtsp_server):
    from runtime.sources import open_source

    src = open_source(f"rtsp://{LOOPBACK}:{rtsp_server.port}/live", None, (160, 120), fps=10,
                      open_timeout_s=3, read_timeout_s=2)
    try:
        assert src.read(timeout=5) is not None
        time.sleep(1.0)  # a pipeline stuck for a second
        f = src.read(timeout=2)
        assert f is not None and time.monotonic() - f.t < 0.35, "the frame is fresh, not a queued old one"
        assert src.stats.frames_dropped >= 3
    finally:
        src.close()


# --- the loopback RTSP server (run as a script) ------------------------------------------------


def serve_rtsp(port: int, rtp_port: int, workdir: str) -> None:  # pragma: no cover - a subprocess
    import re
    import threading

    sdp_path = os.path.join(workdir, f"stream-{port}.sdp")
    if os.path.exists(sdp_path):
        os.remove(sdp_path)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((LOOPBACK, rtp_port))
    subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi",
                      "-i", "testsrc=size=320x240:rate=10", "-c:v", "mpeg4", "-g", "5", "-q:v", "4",
                      "-f", "rtp", "-sdp_file", sdp_path, f"rtp://{LOOPBACK}:{rtp_port}"],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not (os.path.exists(sdp_path) and "m=video" in open(sdp_path).read()):
        if time.monotonic() > deadline:
            raise SystemExit("ffmpeg wrote no SDP")
        time.sleep(0.05)
    lines, pt = [], 96
    for line in open(sdp_path).read().strip().splitlines():
        if line.startswith("m=video"):
            pt = int(line.split()[3])
            lines += [re.sub(r"^m=video \d+", "m=video 0", line), "a=control:trackID=0"]
        else:
            lines.append(line)
    sdp = "\r\n".join(lines) + "\r\n"
    clients: set = set()
    lock = threading.Lock()

    def relay() -> None:
        while True:
            pkt = udp.recv(65536)
            if len(pkt) < 12 or pkt[1] & 0x7F != pt:
                continue
            data = b"$\x00" + len(pkt).to_bytes(2, "big") + pkt
            with lock:
                for c in list(clients):
                    try:
                        c.sendall(data)
                    except OSError:
                        clients.discard(c)

    def handle(conn: socket.socket) -> None:
        buf = b""
        while True:
            while True:
                if buf[:1] == b"$":  # interleaved RTCP from the client: skip it
                    if len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[2:4], "big"):
                        break
                    buf = buf[4 + int.from_bytes(buf[2:4], "big"):]
                    continue
                if b"\r\n\r\n" not in buf:
                    break
                head, _, buf = buf.partition(b"\r\n\r\n")
                req = head.decode("latin-1").split("\r\n")
                method, url = req[0].split(" ")[:2]
                h = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in req[1:])}
                buf = buf[int(h.get("content-length", 0)):]
                code, extra, body = "200 OK", "", ""
                if method == "OPTIONS":
                    extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n"
                elif method == "DESCRIBE":
                    body = sdp
                    extra = f"Content-Base: {url.rstrip('/')}/\r\nContent-Type: application/sdp\r\n"
                elif method == "SETUP":
                    if "TCP" not in h.get("transport", ""):
                        code = "461 Unsupported Transport"  # the client then retries over TCP
                    else:
                        extra = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 1\r\n"
                elif method in ("PLAY", "GET_PARAMETER", "TEARDOWN"):
                    extra = "Session: 1\r\n"
                conn.sendall(f"RTSP/1.0 {code}\r\nCSeq: {h.get('cseq', '0')}\r\n{extra}"
                             f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
                with lock:
                    (clients.add if method == "PLAY" else clients.discard if method == "TEARDOWN" else id)(conn)
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if not data:
                with lock:
                    clients.discard(conn)
                conn.close()
                return
            buf += data

    threading.Thread(target=relay, daemon=True).start()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((LOOPBACK, port))
    srv.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "rtsp-server":
    serve_rtsp(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
