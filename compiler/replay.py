"""`build.py replay SPEC --source FILE`: build the spec for host-cpu (the builder's cache makes a
rebuild take about a second), run the image on recorded footage and print a report: events per
type, false alarms per camera-hour where ground truth exists, latency per stage and fps.

    python build.py replay specs/worker-zone-footage.yaml --source ../shared/data/video/preview_worker-zone-detection.gif
    python build.py sim --scene crane-swing --seconds 20 --out out/sim-crane
    python build.py replay specs/demo-site.yaml --source out/sim-crane     # video.mp4 + its ground truth

Events go to no sink (a replay never calls the spec's VMS or sounds its alarm); `--events` writes
them as JSON lines. Ground truth: a `build.py sim` folder (or its annotations.json), given as
`--truth` or found beside the video; a MOTChallenge file scores boxes only.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np


@dataclass
class ReplayRun:
    camera: str
    frames: int = 0
    source_s: float = 0.0
    wall_s: float = 0.0
    read_ms: list[float] = field(default_factory=list)
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    observed: list = field(default_factory=list)  # groundtruth.Observed
    tracks: list = field(default_factory=list)  # (t, track ids, boxes, PPE dicts) per frame
    device: object = None


def replay_image(image_dir: Path, config, source: str, camera_id: str, *, seconds: float | None = None,
                 plugins=None, annotate: str | None = None, clips_dir: Path | None = None,
                 progress=None) -> ReplayRun:
    """Run one camera of an installed image on `source` as fast as it goes; every result kept."""
    from runtime.pipeline import Device
    from runtime.sources import open_source

    from .groundtruth import Observed

    cam = next(c for c in config.cameras if c.id == camera_id)
    clips = None
    if clips_dir is not None and config.clips.enabled:
        from runtime.clips import ClipRecorder

        clips = ClipRecorder(config.clips, clips_dir, {cam.id: cam.fps}, (), block=True)
    device = Device(config, image_dir, None, clips=clips)
    src = open_source(source, base_dir=image_dir, resolution=cam.resolution, fps=cam.fps, plugins=plugins)
    run = ReplayRun(camera_id, device=device)
    writer, recent = None, []
    start_wall, t_first = time.time(), None
    wall0 = time.perf_counter()
    try:
        while True:
            r0 = time.perf_counter()
            frame = src.read(timeout=5.0)
            read_ms = (time.perf_counter() - r0) * 1e3
            if frame is None:
                if src.finished:
                    break
                continue
            t_first = frame.t if t_first is None else t_first
            t = frame.t - t_first
            if seconds is not None and t > seconds:
                break
            result = device.process(camera_id, frame.image, t, start_wall + t)
            run.frames += 1
            run.source_s = t
            run.read_ms.append(read_ms)
            for k, v in result.stage_ms.items():
                run.stage_ms.setdefault(k, []).append(v)
            boxes = {p.track: p.box for p in result.people}
            run.tracks.append((t, np.array(list(boxes), int), np.array(list(boxes.values()), float).reshape(-1, 4),
                               [p.ppe for p in result.people]))
            for e in result.events:
                run.observed.append(Observed(e, t, boxes.get(e.track)))
                recent.append((t, e.severity, f"{e.type} #{e.track} {e.zone or ''}"))
            if annotate:
                from runtime.annotate import VideoOut, draw

                if writer is None:
                    writer = VideoOut(annotate, cam.fps, tuple(cam.resolution))
                writer.write(draw(frame.image, cam, result, recent))
            if progress is not None and run.frames % 50 == 0:
                progress(run.frames, t)
    finally:
        src.close()
        if writer is not None:
            writer.close()
        if clips is not None:
            clips.close()
    run.wall_s = time.perf_counter() - wall0
    if run.frames:
        run.source_s += 1.0 / cam.fps
    return run


def report(run: ReplayRun, truth=None, config=None) -> dict:
    """The replay's numbers as a dict (what `--json` writes and the table shows)."""
    by_type: dict[str, int] = {}
    for o in run.observed:
        by_type[o.event.type] = by_type.get(o.event.type, 0) + 1
    total = np.array(run.stage_ms.get("total", [0.0]))
    stages = {k: {"mean_ms": round(float(np.mean(v)), 2), "p50_ms": round(float(np.percentile(v, 50)), 2),
                  "p95_ms": round(float(np.percentile(v, 95)), 2)} for k, v in run.stage_ms.items()}
    out = {
        "camera": run.camera, "frames": run.frames, "footage_s": round(run.source_s, 2), "wall_s": round(run.wall_s, 2),
        "fps": round(run.frames / run.wall_s, 1) if run.wall_s > 0 else None,
        "pipeline_fps": round(1000.0 / float(total.mean()), 1) if total.mean() > 0 else None,
        "read_ms_mean": round(float(np.mean(run.read_ms)), 2) if run.read_ms else None,
        "events": dict(sorted(by_type.items())), "stages": stages,
    }
    if truth is not None and config is not None:
        from .groundtruth import score

        from .groundtruth import tracking_metrics

        out["truth"] = score(run.observed, truth, config, camera_hours=run.source_s / 3600.0)
        out["truth"]["tracking"] = tracking_metrics(run.tracks, truth)
    return out


def format_report(rep: dict) -> str:
    lines = [f"{rep['camera']}: {rep['frames']} frames ({rep['footage_s']:.1f} s of footage) in {rep['wall_s']:.1f} s: "
             f"{rep['fps']} fps with decoding, {rep['pipeline_fps']} fps pipeline alone "
             f"(decode {rep['read_ms_mean']} ms/frame)"]
    truth = rep.get("truth")
    per = truth["per_type"] if truth else {}
    lines.append("")
    lines.append(f"{'event type':<18}{'events':>7}" + (f"{'true':>7}{'false':>7}{'false/cam-h':>13}" if truth else ""))
    for k, n in rep["events"].items():
        row = f"{k:<18}{n:>7}"
        if truth and k in per:
            d = per[k]
            row += f"{d['true']:>7}{d['false']:>7}{d['false_per_camera_hour']:>13}"
        lines.append(row)
    if not rep["events"]:
        lines.append("(no events)")
    if truth:
        lines.append(f"false alarms: {truth['false_alarms']} in {truth['camera_hours'] * 3600:.1f} s = "
                     f"{truth['false_per_camera_hour']} per camera-hour")
        lines.append("caught: " + ", ".join(f"{k} {v['caught']}/{v['truth']}" for k, v in truth["recall"].items()))
        tr = truth.get("tracking")
        if tr:
            lines.append(f"tracking (people >= 20 px): MOTA {tr['mota']}, IDF1 {tr['idf1']}, {tr['id_switches']} id switches")
    lines.append("")
    lines.append(f"{'stage':<14}{'mean ms':>9}{'p50':>8}{'p95':>8}")
    for k, s in rep["stages"].items():
        lines.append(f"{k:<14}{s['mean_ms']:>9.2f}{s['p50_ms']:>8.2f}{s['p95_ms']:>8.2f}")
    return "\n".join(lines)


class ReplayError(Exception):
    """A spec that cannot be replayed (invalid, no such camera, nothing to build); the message says why."""


def prepare(spec_path: str | Path, out: Path, camera_id: str | None = None):
    """Build SPEC for host-cpu under `out/images` (the builder's cache makes it quick) and install the
    image that analyses `camera_id` (default: the first camera) under `out/installed`:
    (image dir, RuntimeConfig, image path)."""
    from runtime.app import load_config

    from .boards import load_board_profiles
    from .builder import BuildError, build_images
    from .keys import DEFAULT_DIR, PRIVATE_NAME, PUBLIC_NAME, new_key_pair
    from .planner import PlanError
    from .runcli import install
    from .spec import load_spec

    profiles = load_board_profiles()
    result = load_spec(spec_path, boards=profiles)
    if not result.ok:
        raise ReplayError("invalid spec:\n" + "\n".join(str(e) for e in result.errors))
    spec = result.spec
    cams = [c.id for c in spec.cameras]
    camera_id = camera_id or cams[0]
    if camera_id not in cams:
        raise ReplayError(f"no camera '{camera_id}' (cameras: {', '.join(cams)})")
    keys = DEFAULT_DIR
    if not (keys / PRIVATE_NAME).exists():  # a replay is host-only: a throw-away key will do
        keys = Path(tempfile.mkdtemp(prefix="sitewarden-replay-keys-"))
        new_key_pair(keys)
    try:
        built = build_images(spec, Path(spec_path), result.document.files, profiles["host-cpu"], out / "images",
                             key_path=str(keys / PRIVATE_NAME), progress=lambda m: None)
    except (BuildError, PlanError) as e:
        raise ReplayError(str(e)) from None
    for b in built:
        image_dir = out / "installed" / b.device
        install(b.path, image_dir, [keys / PUBLIC_NAME])
        config = load_config(image_dir)
        if any(c.id == camera_id and c.detect_here for c in config.cameras):
            return image_dir, config, b.path
    raise ReplayError(f"camera '{camera_id}' is not analysed by any host-cpu device")


def _source_and_truth(source: str, truth: str | None) -> tuple[str, Path | None]:
    p = Path(source)
    if p.is_dir():  # a `build.py sim` folder
        return f"file:{(p / 'video.mp4').resolve()}", Path(truth) if truth else p
    if p.exists():
        found = p.parent / "annotations.json" if (p.parent / "annotations.json").exists() else None
        return f"file:{p.resolve()}", Path(truth) if truth else found
    return source, Path(truth) if truth else None


def load_truth(path: Path, fps: float):
    from .groundtruth import Truth

    if path.is_dir() or path.name == "annotations.json" or path.name == "scene.json":
        return Truth.from_export(path)
    return Truth.from_mot(path, fps)


@click.command("replay")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, exists=True))
@click.option("--source", required=True, help="Recorded footage: a video/GIF file, a `build.py sim` folder, or sim:SCENE.")
@click.option("--camera", "camera_id", default=None, help="Camera of the spec to run it as (default: the first).")
@click.option("--truth", default=None, type=click.Path(exists=True),
              help="Ground truth: a `build.py sim` folder or annotations.json (default: beside the video), or a MOT file.")
@click.option("--seconds", type=float, default=None, help="Stop after this much footage.")
@click.option("--annotate", default=None, type=click.Path(dir_okay=False), help="Write the annotated video here.")
@click.option("--events", "events_path", default=None, type=click.Path(dir_okay=False), help="Write the events as JSON lines.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Write the report as JSON.")
@click.option("--out", "out_dir", default="out/replay", show_default=True, type=click.Path(file_okay=False),
              help="Where the host-cpu image, its installed copy and clips go.")
@click.option("--seed", default=0, show_default=True, help="Seed of a sim: source.")
def replay(spec_path, source, camera_id, truth, seconds, annotate, events_path, json_path, out_dir, seed):
    """Build SPEC for host-cpu, run it on recorded footage and report events, false alarms and latency."""
    from runtime.sources import SourceError

    from .runcli import sim_plugin

    out = Path(out_dir)
    try:
        image_dir, config, image = prepare(spec_path, out, camera_id)
    except ReplayError as e:
        click.echo(f"{spec_path}: {e}", err=True)
        sys.exit(2)
    camera_id = camera_id or next(c.id for c in config.cameras if c.detect_here)
    src, truth_path = _source_and_truth(source, truth)
    cam = next(c for c in config.cameras if c.id == camera_id)
    plugins = {"sim": lambda scene, resolution=(640, 360), fps=10.0: sim_plugin(scene, resolution, fps, seed, seconds)}
    click.echo(f"replay: {spec_path} camera {camera_id} on {src} ({image.name})", err=True)
    try:
        run = replay_image(image_dir, config, src, camera_id, seconds=seconds, plugins=plugins, annotate=annotate,
                           clips_dir=out / "state",
                           progress=lambda n, t: click.echo(f"  {n} frames, {t:.1f} s", err=True))
    except SourceError as e:
        click.echo(f"{source}: {e}", err=True)
        sys.exit(2)
    truth_obj = load_truth(truth_path, cam.fps) if truth_path is not None else None
    rep = report(run, truth_obj, config)
    click.echo(format_report(rep))
    if events_path:
        Path(events_path).parent.mkdir(parents=True, exist_ok=True)
        Path(events_path).write_text("".join(o.event.to_json().decode() + "\n" for o in run.observed))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(rep, indent=1) + "\n")
    if annotate:
        click.echo(f"annotated video: {annotate}")
