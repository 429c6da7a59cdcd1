"""Frame sources: where a camera's pictures come from. The pipeline pulls frames from one of these.

    src = open_source("rtsp://cam-21.local/stream1", base_dir, resolution=(1280, 720), fps=10)
    frame = src.read(timeout=1.0)     # Frame(index, t, image) or None (nothing new in time)
    src.stats, src.healthy, src.state
    src.close()

Kinds (the text of ``CameraConfig.source``):

``file:PATH``
    A video file (mp4, avi, mkv, GIF: whatever OpenCV's FFMPEG backend reads), relative to
    `base_dir`. Timestamps come from the container (``CAP_PROP_POS_MSEC``), falling back to
    index / container fps where it has none. Replays run as fast as the pipeline pulls
    (``realtime=False``); ``realtime=True`` paces them to their timestamps. ``loop=True`` starts
    over at the end with time still increasing. Frames are sampled at the configured fps by
    their timestamps (a 30 fps file at fps=10 gives every third frame), so a replay presents the
    pipeline with the same rate a live camera would; ``fps=None`` or 0 keeps every frame.
``rtsp://...`` (and ``rtsps://``)
    OpenCV's FFMPEG backend with open and read timeouts passed at open time. A reader thread
    decodes the stream and keeps only the newest frame, so a slow pipeline never lags behind live
    video (the frames it never saw are counted as ``dropped``). A dropped stream is re-opened with
    exponential backoff and jitter (capped); nothing is raised to the caller: `read` returns None
    while the stream is down and ``state`` says ``"reconnecting"``.
``usb:N``
    A local camera by device index, with the same reader thread and reconnection.
``sim:SCENE``
    Synthetic scenes. The runtime never imports the simulator: the build host plugs it in with
    ``plugins={"sim": factory}``; without the plug-in a ``sim:`` source is refused.

Live sources are sampled at the configured fps (frames arriving faster are decoded and dropped).
Every frame is checked before it is handed on: empty, wrongly shaped or typed frames and frames
OpenCV cannot decode are skipped and counted, never raised; a bad frame never stops the runtime.
Frames are BGR uint8 at the configured resolution (resized when the camera sends another).
"""
from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

SIM_REFUSED = ("sim: sources run only on the build host (`build.py run`); "
               "on a device use rtsp://, file: or usb:")


class SourceError(RuntimeError):
    """A source that cannot be opened at all (bad text, missing or undecodable file, sim: on a device)."""


@dataclass(frozen=True)
class Frame:
    index: int  # 0, 1, 2 ... in the order this source handed frames out
    t: float  # seconds, monotonic source time (container time for files, time.monotonic() for live)
    image: np.ndarray  # H x W x 3 BGR uint8 at the configured resolution


@dataclass(frozen=True)
class SourceStats:
    frames_read: int = 0  # frames handed to the caller
    frames_skipped: int = 0  # undecodable or malformed frames thrown away
    frames_dropped: int = 0  # good frames not handed on: sampled away to the fps or overtaken by newer ones
    reconnects: int = 0  # successful re-opens after the stream was lost
    reconnect_attempts: int = 0  # failed open attempts (each followed by a backoff)
    last_error: str | None = None
    state: str = "opening"  # opening | streaming | reconnecting | ended | closed


class _Counters:
    """Mutable counters behind a lock; `snapshot()` gives the frozen view the caller sees."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.s = SourceStats()

    def add(self, **kw: int) -> None:
        with self.lock:
            self.s = replace(self.s, **{k: getattr(self.s, k) + v for k, v in kw.items()})

    def set(self, **kw: Any) -> None:
        with self.lock:
            self.s = replace(self.s, **kw)

    def snapshot(self) -> SourceStats:
        with self.lock:
            return self.s


def conform(image: Any, resolution: tuple[int, int] | None) -> np.ndarray | None:
    """`image` as H x W x 3 BGR uint8 at `resolution` (w, h), or None when it is not a usable frame.

    Accepts grey (H x W or H x W x 1) and BGRA images; anything else (None, empty, other dtypes,
    odd channel counts, non-finite sizes) is refused with None, so callers count it as skipped.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.size == 0:
        return None
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    try:
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.ndim == 3 and image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        elif not (image.ndim == 3 and image.shape[2] == 3):
            return None
        if image.shape[0] < 2 or image.shape[1] < 2:
            return None
        if resolution is not None:
            w, h = int(resolution[0]), int(resolution[1])
            if (image.shape[1], image.shape[0]) != (w, h):
                shrink = image.shape[1] * image.shape[0] > w * h
                image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    except cv2.error:
        return None
    return np.ascontiguousarray(image)


class FrameSource:
    """The interface the pipeline pulls from. Iterate it, or call `read` (None: nothing new in time)."""

    uri: str = ""
    live: bool = False

    def __init__(self, uri: str, resolution: tuple[int, int] | None, fps: float | None) -> None:
        self.uri = uri
        self.resolution = None if resolution is None else (int(resolution[0]), int(resolution[1]))
        self.fps = float(fps) if fps else None
        self._c = _Counters()
        self._index = 0

    # -- the interface --------------------------------------------------------------------------
    def read(self, timeout: float | None = None) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        self._c.set(state="closed")

    @property
    def stats(self) -> SourceStats:
        return self._c.snapshot()

    @property
    def state(self) -> str:
        return self._c.snapshot().state

    @property
    def healthy(self) -> bool:
        """Frames are flowing (or a finite replay ended cleanly)."""
        return self.state == "streaming"

    @property
    def finished(self) -> bool:
        """No frame will ever come again (the replay ended, or the source is closed)."""
        return self.state in ("ended", "closed")

    def __iter__(self) -> Iterator[Frame]:
        """Frames until the source is finished; a live source waits through outages (use `read` to
        see silence as None)."""
        while not self.finished:
            frame = self.read()
            if frame is not None:
                yield frame

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri} {self.state}>"

    # -- helpers --------------------------------------------------------------------------------
    def _emit(self, image: Any, t: float) -> Frame | None:
        img = conform(image, self.resolution)
        if img is None:
            self._c.add(frames_skipped=1)
            self._c.set(last_error=f"malformed frame ({_describe(image)})")
            return None
        frame = Frame(self._index, float(t), img)
        self._index += 1
        self._c.add(frames_read=1)
        return frame


def _describe(image: Any) -> str:
    if isinstance(image, np.ndarray):
        return f"array {image.shape} {image.dtype}"
    return type(image).__name__


class _Sampler:
    """Keeps frames at most `fps` apart in source time; a late frame resets the grid (no bursts)."""

    def __init__(self, fps: float | None) -> None:
        self.period = 1.0 / fps if fps else 0.0
        self.due: float | None = None

    def keep(self, t: float) -> bool:
        if not self.period:
            return True
        slack = 0.25 * self.period  # timestamps jitter; do not drop a frame that is barely early
        if self.due is not None and t < self.due - slack:
            return False
        self.due = t + self.period if self.due is None or t > self.due + self.period else self.due + self.period
        return True


# --- files -------------------------------------------------------------------------------------


class FileSource(FrameSource):
    MAX_BAD_RUN = 25  # consecutive undecodable frames after which a file is given up as ended

    def __init__(self, path: Path, uri: str, resolution, fps, *, realtime: bool = False, loop: bool = False) -> None:
        super().__init__(uri, resolution, fps)
        self.path, self.realtime, self.loop = path, realtime, loop
        if not path.is_file():
            raise SourceError(f"{uri}: no such file {path}")
        self._cap = self._open()
        n = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(n) if n and n > 0 else None
        cfps = self._cap.get(cv2.CAP_PROP_FPS)
        self.container_fps = float(cfps) if cfps and 0 < cfps < 1000 else (self.fps or 10.0)
        self._sampler = _Sampler(self.fps)
        self._pos = 0  # frame position in the file
        self._offset = 0.0  # time added by earlier loops
        self._last_t = -1.0
        self._t0_wall: float | None = None
        self._c.set(state="streaming")

    def _open(self) -> cv2.VideoCapture:
        try:
            cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
            if not cap.isOpened():
                cap = cv2.VideoCapture(str(self.path))  # e.g. GIFs on builds that decode them natively
        except cv2.error as e:
            raise SourceError(f"{self.uri}: OpenCV cannot open {self.path}: {e}") from None
        if not cap.isOpened():
            raise SourceError(f"{self.uri}: {self.path} is not a video OpenCV can decode "
                              f"(corrupt, truncated or an unsupported format)")
        return cap

    def _grab(self) -> tuple[np.ndarray | None, float] | None:
        """The next decodable frame and its container time; None at the end."""
        bad = 0
        while True:
            try:
                ok, img = self._cap.read()
            except cv2.error as e:
                ok, img = False, None
                self._c.set(last_error=f"decode error at frame {self._pos}: {e}")
            if ok and img is not None:
                try:
                    ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
                except cv2.error:
                    ms = float("nan")
                t = ms / 1000.0 if np.isfinite(ms) and ms >= 0 and (ms > 0 or self._pos == 0) else self._pos / self.container_fps
                self._pos += 1
                return img, t
            if self.frame_count is None or self._pos >= self.frame_count - 1 or bad >= self.MAX_BAD_RUN:
                if bad >= self.MAX_BAD_RUN:
                    self._c.set(last_error=f"{bad} undecodable frames in a row at frame {self._pos}; giving up")
                return None
            # a frame in the middle that would not decode: count it and step over it
            bad += 1
            self._pos += 1
            self._c.add(frames_skipped=1)
            self._c.set(last_error=self._c.snapshot().last_error or f"undecodable frame {self._pos - 1}")
            try:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, self._pos)
            except cv2.error:
                return None

    def read(self, timeout: float | None = None) -> Frame | None:
        while self.state == "streaming":
            got = self._grab()
            if got is None:
                if self.loop and self._index > 0:
                    self._offset = self._last_t + 1.0 / self.container_fps
                    self._cap.release()
                    self._cap = self._open()
                    self._pos = 0
                    continue
                self._cap.release()
                self._c.set(state="ended")
                return None
            img, t = got
            t += self._offset
            if t <= self._last_t:  # containers with broken timestamps: keep time moving forward
                t = self._last_t + 1.0 / self.container_fps
            self._last_t = t
            if not self._sampler.keep(t):
                self._c.add(frames_dropped=1)
                continue
            frame = self._emit(img, t)
            if frame is None:
                continue
            if self.realtime:
                now = time.monotonic()
                if self._t0_wall is None:
                    self._t0_wall = now - t
                wait = self._t0_wall + t - now
                if wait > 0:
                    time.sleep(wait)
            return frame
        return None

    @property
    def healthy(self) -> bool:
        s = self.stats
        return s.state == "streaming" or (s.state == "ended" and s.frames_read > 0)

    def close(self) -> None:
        self._cap.release()
        super().close()


# --- live: rtsp and usb ------------------------------------------------------------------------


class LiveSource(FrameSource):
    """A reader thread over cv2.VideoCapture that keeps only the newest frame and reconnects."""

    live = True

    def __init__(self, uri: str, target: str | int, resolution, fps, *, open_timeout_s: float = 5.0,
                 read_timeout_s: float = 5.0, backoff_s: float = 0.5, backoff_max_s: float = 30.0,
                 opener: Callable[[], cv2.VideoCapture] | None = None) -> None:
        super().__init__(uri, resolution, fps)
        self.target = target
        self.open_timeout_s, self.read_timeout_s = float(open_timeout_s), float(read_timeout_s)
        self.backoff_s, self.backoff_max_s = float(backoff_s), float(backoff_max_s)
        self._opener = opener or self._open
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._taken = -1  # index of the last frame handed out
        self._last_frame_wall: float | None = None
        self._stop = threading.Event()
        self._got_frame = False
        self._thread = threading.Thread(target=self._run, name=f"source:{uri}", daemon=True)
        self._thread.start()

    def _open(self) -> cv2.VideoCapture:
        ms_open, ms_read = int(self.open_timeout_s * 1000), int(self.read_timeout_s * 1000)
        if isinstance(self.target, int):
            cap = cv2.VideoCapture(self.target)
            if cap.isOpened() and self.resolution is not None:  # ask for the configured mode; we resize anyway
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.resolution[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.resolution[1])
                if self.fps:
                    cap.set(cv2.CAP_PROP_FPS, self.fps)
            return cap
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms_open, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms_read]
        return cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter in its upper half: 0.5-1 x min(cap, base x 2^attempt)."""
        ceiling = min(self.backoff_max_s, self.backoff_s * (2 ** min(attempt, 20)))
        return ceiling * (0.5 + 0.5 * random.random())

    def _run(self) -> None:
        attempt, ever_streamed = 0, False
        while not self._stop.is_set():
            try:
                cap = self._opener()
                opened = cap.isOpened()
            except (cv2.error, OSError, ValueError) as e:
                cap, opened = None, False
                self._c.set(last_error=f"open failed: {e}")
            if not opened:
                if cap is not None:
                    cap.release()
                    self._c.set(last_error=f"cannot open {_redact(self.uri)}")
                self._c.add(reconnect_attempts=1)
                self._c.set(state="reconnecting")
                self._stop.wait(self._backoff(attempt))
                attempt += 1
                continue
            if ever_streamed:
                self._c.add(reconnects=1)
            try:
                self._pump(cap)
            except Exception as e:  # noqa: BLE001 - whatever breaks, the reader reconnects; never dies
                self._c.set(last_error=f"reader error: {type(e).__name__}: {e}")
            ever_streamed = ever_streamed or self._got_frame
            try:
                cap.release()
            except cv2.error:
                pass
            if self._got_frame:
                attempt = 0  # it streamed: the next outage starts its backoff afresh
            if not self._stop.is_set():
                self._c.set(state="reconnecting")
                self._stop.wait(self._backoff(attempt))
                attempt += 1
        self._c.set(state="closed")

    def _pump(self, cap: cv2.VideoCapture) -> None:
        """Read from an open capture until it fails or the source is closed."""
        self._got_frame = False
        sampler = _Sampler(self.fps)
        bad = 0
        while not self._stop.is_set():
            try:
                ok = cap.grab()
            except cv2.error as e:
                ok = False
                self._c.set(last_error=f"read failed: {e}")
            now = time.monotonic()
            if not ok:
                if not self._c.snapshot().last_error or self._got_frame:
                    self._c.set(last_error="stream lost (read failed or timed out)")
                return
            if not sampler.keep(now):
                self._c.add(frames_dropped=1)
                continue
            try:
                ok, img = cap.retrieve()
            except cv2.error as e:
                ok, img = False, None
                self._c.set(last_error=f"decode failed: {e}")
            img = conform(img, self.resolution) if ok else None
            if img is None:
                self._c.add(frames_skipped=1)
                bad += 1
                if bad > 50:  # a stream of nothing but garbage: reconnect
                    self._c.set(last_error="50 undecodable frames in a row")
                    return
                continue
            bad = 0
            if not self._got_frame:
                self._got_frame = True
                self._c.set(state="streaming")
            with self._cond:
                if self._latest is not None and self._latest.index > self._taken:
                    self._c.add(frames_dropped=1)  # the pipeline never took the previous one
                self._latest = Frame(self._index, now, img)
                self._index += 1
                self._last_frame_wall = now
                self._cond.notify_all()

    def read(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet handed out, waiting up to `timeout` s (default: the read timeout)."""
        timeout = self.read_timeout_s if timeout is None else float(timeout)
        with self._cond:
            ok = self._cond.wait_for(lambda: (self._latest is not None and self._latest.index > self._taken)
                                     or self._stop.is_set(), timeout)
            if not ok or self._stop.is_set() or self._latest is None:
                return None
            frame = self._latest
            self._taken = frame.index
        self._c.add(frames_read=1)
        return frame

    @property
    def healthy(self) -> bool:
        last = self._last_frame_wall
        return (self.state == "streaming" and last is not None
                and time.monotonic() - last < max(self.read_timeout_s, 3.0 / (self.fps or 10.0)))

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=self.open_timeout_s + self.read_timeout_s + 1.0)
        self._c.set(state="closed")


def _redact(uri: str) -> str:
    """rtsp://user:pass@host/... without the password (it must never reach a log or an event)."""
    if "://" in uri and "@" in uri.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = uri.split("://", 1)
        cred, host = rest.split("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"
    return uri


# --- plug-ins (sim:) ---------------------------------------------------------------------------


class PluginSource(FrameSource):
    """Frames from a host-side factory: ``factory(arg, resolution=, fps=)`` -> iterable of frames
    (ndarrays, or objects with ``.image`` and optionally ``.t``)."""

    def __init__(self, uri: str, factory: Callable[..., Any], arg: str, resolution, fps) -> None:
        super().__init__(uri, resolution, fps)
        try:
            self._it = iter(factory(arg, resolution=self.resolution, fps=self.fps))
        except Exception as e:  # a plug-in's own error, named, not a traceback from inside it
            raise SourceError(f"{uri}: the plug-in could not start: {type(e).__name__}: {e}") from None
        self._n = 0
        self._c.set(state="streaming")

    def read(self, timeout: float | None = None) -> Frame | None:
        while self.state == "streaming":
            try:
                item = next(self._it)
            except StopIteration:
                self._c.set(state="ended")
                return None
            except Exception as e:  # a plug-in failing on one frame: count it, go on
                self._c.add(frames_skipped=1)
                self._c.set(last_error=f"plug-in error: {type(e).__name__}: {e}")
                self._n += 1
                continue
            image = getattr(item, "image", item)
            t = getattr(item, "t", None)
            t = float(t) if isinstance(t, int | float) else self._n / (self.fps or 10.0)
            self._n += 1
            frame = self._emit(image, t)
            if frame is not None:
                return frame
        return None


# --- the factory -------------------------------------------------------------------------------


def open_source(source: str, base_dir: str | os.PathLike | None = None, resolution: tuple[int, int] | None = None,
                fps: float | None = None, plugins: dict[str, Callable[..., Any]] | None = None,
                **options: Any) -> FrameSource:
    """Open a camera source from its config text. Options: ``realtime``, ``loop`` (files);
    ``open_timeout_s``, ``read_timeout_s``, ``backoff_s``, ``backoff_max_s`` (rtsp, usb).

    Raises SourceError only for what can never work (bad text, a missing or undecodable file,
    ``sim:`` without its plug-in); a live camera that is down is opened anyway and reconnects.
    """
    if not isinstance(source, str) or not source.strip():
        raise SourceError(f"source: expected 'rtsp://...', 'file:PATH', 'usb:N' or 'sim:SCENE', got {source!r}")
    source = source.strip()
    kind, _, rest = source.partition(":")
    kind = kind.lower()

    def only(*names: str) -> dict[str, Any]:
        unknown = set(options) - set(names)
        if unknown:
            raise SourceError(f"{kind}: sources take no option(s) {', '.join(sorted(unknown))}")
        return options

    if kind in ("rtsp", "rtsps"):
        if not rest.startswith("//") or len(rest) <= 2:
            raise SourceError(f"{source}: expected rtsp://host[:port]/path")
        return LiveSource(source, source, resolution, fps, **only("open_timeout_s", "read_timeout_s", "backoff_s",
                                                                   "backoff_max_s"))
    if kind == "usb":
        if not rest.isdigit():
            raise SourceError(f"{source}: expected usb:N with N the device index (usb:0 is /dev/video0)")
        return LiveSource(source, int(rest), resolution, fps, **only("open_timeout_s", "read_timeout_s",
                                                                      "backoff_s", "backoff_max_s"))
    if kind == "file":
        if not rest:
            raise SourceError(f"{source}: expected file:PATH")
        path = Path(rest)
        if not path.is_absolute():
            path = Path(base_dir or ".") / path
        return FileSource(path, source, resolution, fps, **only("realtime", "loop"))
    if kind == "sim":
        factory = (plugins or {}).get("sim")
        if factory is None:
            raise SourceError(SIM_REFUSED)
        if not rest:
            raise SourceError(f"{source}: expected sim:SCENE")
        return PluginSource(source, factory, rest, resolution, fps)
    plug = (plugins or {}).get(kind)
    if plug is not None:
        return PluginSource(source, plug, rest, resolution, fps)
    raise SourceError(f"{_redact(source)}: unknown source kind {kind!r}; expected rtsp://, file:, usb: or sim:")
