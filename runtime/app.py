"""Run an installed image: open each camera's source, process frames, emit events, print a
metrics line per interval, optionally write the annotated video."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from . import launch
from .config import RuntimeConfig
from .image import ImageError, load_public_key, verify_dir
from .pipeline import Device
from .sources import SourceError, open_source

METRICS_EVERY_S = 5.0


def load_config(image_dir: Path, trusted_keys=(), board: str | None = None) -> RuntimeConfig:
    if trusted_keys:
        verify_dir(image_dir, [load_public_key(Path(k).read_bytes()) for k in trusted_keys], board)
    return RuntimeConfig.from_json((Path(image_dir) / "config.json").read_bytes())


def run(image_dir: Path, state_dir: Path, config: RuntimeConfig | None = None, sources: dict[str, str] | None = None,
        plugins=None, annotate: str | None = None, events_path: str | None = None, max_seconds: float | None = None,
        log=lambda m: print(m, file=sys.stderr, flush=True), emitter=None, status=None) -> Device:
    """Process every camera's source until it ends (files) or `max_seconds` of source time pass."""
    config = config or load_config(image_dir)
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    if emitter is None:
        from .outbox import Emitter

        emitter = Emitter.from_config(config, state_dir)
    from .clips import ClipRecorder

    device = Device(config, image_dir, emitter, clips=ClipRecorder.from_config(config, state_dir))
    cams = [c for c in config.cameras if c.id in device.cameras]
    if not cams:
        log(f"{config.device}: no camera to process here (role {config.role})")
        return device
    flags = flag_poller(config, device)
    from .hardupload import HardSampleUploader

    device.hard = HardSampleUploader.from_config(config)
    cam = cams[0] if len(cams) == 1 else None
    opened = {}
    for c in cams:
        src = (sources or {}).get(c.id, c.source)
        opened[c.id] = open_source(src, base_dir=image_dir, resolution=c.resolution, fps=c.fps, plugins=plugins)
    writer = None
    recent: list[tuple[float, str, str]] = []
    out_events = open(events_path, "a", encoding="utf-8") if events_path else None
    start_wall = time.time()
    t_first: dict[str, float] = {}
    last_metrics, frames, stage_sum = time.monotonic(), 0, {}
    progress = Progress({c.id: bounded_frames(opened[c.id], c.fps, max_seconds) for c in cams}, log)
    try:
        active = dict(opened)
        while active:
            batch = []  # one frame per camera that has one; the detector runs on them together
            for cid, src in list(active.items()):
                frame = src.read(timeout=1.0)
                if frame is None:
                    if src.finished:
                        del active[cid]
                    continue
                t_first.setdefault(cid, frame.t)
                t = frame.t - t_first[cid]
                if max_seconds is not None and t > max_seconds:
                    del active[cid]
                    continue
                batch.append((cid, frame.image, t, start_wall + t))
            for (cid, image, t, _), result in zip(batch, device.process_batch(batch)):
                frames += 1
                progress.step(cid)
                if status is not None:  # health report + model-pack swaps (runtime/status.py)
                    status.tick(device)
                for k, v in result.stage_ms.items():
                    stage_sum[k] = stage_sum.get(k, 0.0) + v
                for e in result.events:
                    line = f"{e.t_event_iso} {e.severity:<8} {e.type:<16} camera={e.camera} zone={e.zone or '-'} track={e.track} {json.dumps(e.details)}"
                    log(line)
                    recent.append((t, e.severity, f"{e.type} #{e.track} {e.zone or ''}"))
                    if out_events:
                        out_events.write(e.to_json().decode() + "\n")
                        out_events.flush()
                if annotate and cam is not None:
                    from .annotate import VideoOut, draw

                    if writer is None:
                        writer = VideoOut(annotate, cam.fps, tuple(cam.resolution))
                    writer.write(draw(image, cam, result, recent))
            now = time.monotonic()
            if now - last_metrics >= METRICS_EVERY_S and frames:
                per = " ".join(f"{k}={v / frames:.1f}ms" for k, v in stage_sum.items())
                m = emitter.metrics() if hasattr(emitter, "metrics") else {}
                depth = sum(s.get("depth", 0) for s in m.get("sinks", {}).values())
                clips = f" clips={device.clips.metrics()['clips']}" if device.clips is not None else ""
                log(f"metrics: {frames / (now - last_metrics):.1f} fps {per} tiers={device.governor.assignment()} outbox={depth}{clips}")
                last_metrics, frames, stage_sum = now, 0, {}
    except SourceError as e:
        log(f"source error: {e}")
        raise
    finally:
        for s in opened.values():
            s.close()
        if writer is not None:
            writer.close()
        if device.clips is not None:
            device.clips.flush()
        if flags is not None:
            flags.stop()
        if device.hard is not None:
            device.hard.close()
        if out_events:
            out_events.close()
    return device


def bounded_frames(source, fps: float, max_seconds: float | None) -> int | None:
    """How many frames a run of `source` will see: a file's frame count, or --seconds at its fps
    (the smaller of the two); None for a live source without --seconds."""
    counts = [n for n in (getattr(source, "frame_count", None),
                          int(max_seconds * fps) if max_seconds is not None else None) if n]
    return min(counts) if counts else None


class Progress:
    """A progress line per camera at every tenth of a bounded run (file sources, --seconds)."""

    def __init__(self, totals: dict[str, int | None], log):
        self.totals = {cid: n for cid, n in totals.items() if n}
        self.done = dict.fromkeys(self.totals, 0)
        self.shown = dict.fromkeys(self.totals, 0)
        self.log = log

    def step(self, camera: str) -> None:
        if camera not in self.totals:
            return
        self.done[camera] += 1
        n, total = self.done[camera], self.totals[camera]
        tenth = min(10, n * 10 // total)
        if tenth > self.shown[camera]:
            self.shown[camera] = tenth
            bar = "#" * tenth + "." * (10 - tenth)
            self.log(f"progress {camera}: [{bar}] {min(100, n * 100 // total)}% ({n}/{total} frames)")


def flag_poller(config: RuntimeConfig, device: Device):
    """Situation flags from the VMS (runtime/vmsflags.py), started when a situation waits for a flag
    and an http sink names the VMS; None otherwise."""
    from .vmsflags import FlagPoller, vms_sink

    http = vms_sink(config)
    if http is None or not any(s.flag for s in config.situations):
        return None

    return FlagPoller.from_sink(http, device=config.device, cameras=[c.id for c in config.cameras],
                                on_change=device.governor.set_flag).start()


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m runtime", description="sitewarden runtime: run an installed image")
    ap.add_argument("--image-dir", required=True, type=Path)
    ap.add_argument("--state", type=Path, default=Path("/var/lib/sitewarden"))
    ap.add_argument("--key", action="append", default=[], help="trusted public key (PEM); verify the image at boot")
    ap.add_argument("--board", default=None)
    ap.add_argument("--annotate", default=None)
    ap.add_argument("--events", default=None)
    ap.add_argument("--max-seconds", type=float, default=None)
    launch.add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        config = load_config(args.image_dir, args.key, args.board)
        plugins, status = launch.plugins(args.plugin), launch.reporter(args)
    except (ImageError, OSError, ValueError) as e:
        print(f"refusing to start: {e}", file=sys.stderr)
        return 2
    emitter = None
    device = run(args.image_dir, args.state, config, annotate=args.annotate, events_path=args.events,
                 max_seconds=args.max_seconds, emitter=emitter, plugins=plugins, status=status)
    if device.emitter is not None and hasattr(device.emitter, "drain"):
        device.emitter.drain(timeout=10)
        device.emitter.close()
    if device.clips is not None:
        device.clips.drain(timeout=10)
        device.clips.close()
    return 0
