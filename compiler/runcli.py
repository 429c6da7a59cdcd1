"""Host-side verbs that run images here: `run` (an image, on its own or another source) and
`demo` (the README's main job: keys if missing, build the demo for host-cpu, run it)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from .keys import DEFAULT_DIR, PUBLIC_NAME, KeyError_, load_public_keys, new_key_pair


def sim_plugin(scene: str, resolution=(640, 360), fps: float = 10.0, seed: int = 0, seconds: float | None = None):
    """The host-side `sim:` source: frames rendered by sim/, which the runtime never imports."""
    from sim.render import SimSource

    return iter(SimSource(scene, seed=seed, resolution=tuple(resolution), fps=fps, seconds=seconds))


def live_sim_plugin(scene: str, resolution=(640, 360), fps: float = 10.0):
    """`sim:` paced like a live camera (one frame per 1/fps of wall time, forever): the plug-in a device
    agent on a build host gives its runtime (`python -m runtime.agent ... --sim`)."""
    import time

    start = time.monotonic()
    for i, frame in enumerate(sim_plugin(scene, resolution, fps)):
        now = time.monotonic()
        if start + i / fps > now:
            time.sleep(start + i / fps - now)
        elif now - (start + i / fps) > 1 / fps:  # behind: a live camera does not catch up
            start = now - i / fps
        yield frame


def install(image: Path, dest: Path, keys: list[Path], board: str | None = None):
    """Verify `image` and unpack it into `dest` (replaced)."""
    from runtime.image import read_image

    verified = read_image(image, load_public_keys(keys), board=board)
    if dest.exists():
        shutil.rmtree(dest)
    verified.extract(dest)
    return verified.manifest


def run_image(image: Path, keys: list[Path], state: Path, source: str | None, annotate: str | None,
              events: str | None, seconds: float | None, seed: int = 0):
    from runtime.app import load_config, run

    image_dir = state / "image"
    manifest = install(image, image_dir, keys)
    config = load_config(image_dir, [str(k) for k in keys], manifest.board)
    cams = [c.id for c in config.cameras if c.detect_here]
    sources = {cams[0]: source} if source and cams else None
    plugins = {"sim": lambda scene, resolution=(640, 360), fps=10.0: sim_plugin(scene, resolution, fps, seed, seconds)}
    device = run(image_dir, state / "runtime", config, sources=sources, plugins=plugins, annotate=annotate,
                 events_path=events, max_seconds=seconds)
    if device.emitter is not None:
        device.emitter.drain(timeout=15)
        device.emitter.close()
    if device.clips is not None:
        device.clips.drain(timeout=15)
        device.clips.close()
    return device


def _default_keys(key_paths) -> list[Path]:
    return [Path(k) for k in key_paths] or [DEFAULT_DIR / PUBLIC_NAME]


@click.command("run")
@click.argument("image", type=click.Path(dir_okay=False, exists=True))
@click.option("--key", "key_paths", multiple=True, type=click.Path(dir_okay=False), help="Trusted public key (default keys/signing.pub.pem).")
@click.option("--source", default=None, help="Run on this source instead of the camera's own (file:PATH, rtsp://, usb:N, sim:SCENE).")
@click.option("--annotate", default=None, type=click.Path(dir_okay=False), help="Write the annotated video here (.mp4).")
@click.option("--events", "events_path", default=None, type=click.Path(dir_okay=False), help="Also append events as JSON lines here.")
@click.option("--seconds", type=float, default=None, help="Stop after this much source time (sim scenes run forever).")
@click.option("--state", default="out/state", show_default=True, type=click.Path(file_okay=False), help="Runtime state (outbox, installed image).")
@click.option("--seed", default=0, show_default=True, help="Seed of a sim: source.")
def run_cmd(image, key_paths, source, annotate, events_path, seconds, state, seed):
    """Verify IMAGE, install it under --state and run it here, printing events as they happen."""
    from runtime.image import ImageError
    from runtime.sources import SourceError

    try:
        device = run_image(Path(image), _default_keys(key_paths), Path(state), source, annotate, events_path, seconds, seed)
    except (ImageError, KeyError_, SourceError) as e:
        click.echo(f"{image}: {e}", err=True)
        sys.exit(2)
    by_type: dict[str, int] = {}
    for e in device.events:
        by_type[e.type] = by_type.get(e.type, 0) + 1
    click.echo(f"{len(device.events)} events: " + (", ".join(f"{k} {v}" for k, v in sorted(by_type.items())) or "none"))
    if annotate:
        click.echo(f"annotated video: {annotate}")


@click.command()
@click.option("--out", "out_dir", default="out", show_default=True, type=click.Path(file_okay=False))
@click.option("--seconds", type=float, default=20.0, show_default=True, help="Seconds of the synthetic scene to run.")
def demo(out_dir: str, seconds: float):
    """The main job on the embedded default: keys (if missing), build specs/demo-site.yaml for host-cpu, run it."""
    from .commands import build

    if not (DEFAULT_DIR / PUBLIC_NAME).exists():
        _, pub, kid = new_key_pair(DEFAULT_DIR)
        click.echo(f"made a signing key pair in {DEFAULT_DIR}/ (key id {kid}); keep the private key out of git", err=True)
    ctx = click.get_current_context()
    try:
        ctx.invoke(build, board="host-cpu", spec_path="specs/demo-site.yaml", out_dir=out_dir, key_path=None, image_version=1)
    except SystemExit as e:
        if e.code:
            raise
    image = Path(out_dir) / "demo-site-crane-cam-host-cpu.swimg"
    ctx.invoke(run_cmd, image=str(image), key_paths=(), source=None, annotate=str(Path(out_dir) / "demo.mp4"),
               events_path=str(Path(out_dir) / "events.jsonl"), seconds=seconds, state=str(Path(out_dir) / "state"), seed=0)
