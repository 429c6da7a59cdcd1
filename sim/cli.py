"""`build.py sim`: render a named scene to video + ground truth.

    python build.py sim --scene crane-swing --seconds 3 --seed 0 --out /tmp/x
    -> /tmp/x/video.mp4, annotations.json (COCO), mot.txt (MOTChallenge), scene.json
"""
from __future__ import annotations

import json
from pathlib import Path

import click


def _resolution(ctx, param, value):
    if value is None:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
        if w < 32 or h < 32 or w > 7680 or h > 4320:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT (e.g. 640x360)") from None
    return w, h


@click.command(name="sim")
@click.option("--scene", "scene_name", metavar="NAME", help="Scene to render (see --list).")
@click.option("--seconds", type=float, default=10.0, show_default=True, help="Clip length.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; the same seed renders the same clip.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output directory.")
@click.option("--resolution", callback=_resolution, metavar="WxH", help="Frame size (default: the scene's).")
@click.option("--fps", type=float, default=10.0, show_default=True)
@click.option("--condition", default=None, help="Override the scene's condition, e.g. night+rain+wind, fog, snow.")
@click.option("--frames", "save_frames", is_flag=True, help="Also write every frame as JPEG under OUT/frames/.")
@click.option("--contact-sheets", "sheets", type=click.Path(file_okay=False), default=None,
              help="Write an annotated contact sheet per named scene to this directory and exit.")
@click.option("--list", "list_scenes", is_flag=True, help="List the scenes and exit.")
def sim(scene_name, seconds, seed, out_dir, resolution, fps, condition, save_frames, sheets, list_scenes):
    """Render a synthetic construction-site scene with ground truth."""
    from .scenes import SCENES, UnknownScene, get_scene

    if list_scenes:
        for name, spec in SCENES.items():
            click.echo(f"{name:15s} {spec.condition.name:12s} {spec.description}")
        return
    if sheets:
        from .contact_sheet import write_all
        for path in write_all(Path(sheets), seed=seed):
            click.echo(f"wrote {path}")
        return
    if not scene_name:
        raise click.UsageError("give --scene NAME (or --list)")
    if not out_dir:
        raise click.UsageError("give --out DIR")
    try:
        spec = get_scene(scene_name)
    except UnknownScene as e:
        raise click.UsageError(str(e)) from None
    if seconds <= 0 or fps <= 0:
        raise click.UsageError("--seconds and --fps must be positive")
    if condition:
        from .conditions import NAMED, parse
        try:
            parse(condition)
        except KeyError as e:
            import difflib
            close = difflib.get_close_matches(str(e.args[0]), list(NAMED), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise click.UsageError(f"unknown condition {e.args[0]!r}{hint} (conditions: {', '.join(NAMED)})") from None
    written = render_clip(spec.name, Path(out_dir), seconds=seconds, seed=seed, resolution=resolution, fps=fps,
                          condition=condition, save_frames=save_frames)
    for p in written:
        click.echo(f"wrote {p}")


def render_clip(scene: str, out: Path, seconds: float, seed: int = 0, resolution=None, fps: float = 10.0,
                condition=None, save_frames: bool = False) -> list[Path]:
    import cv2

    from .export import CocoWriter, MotWriter, scene_json
    from .render import SimSource

    src = SimSource(scene, seed=seed, resolution=resolution or None, fps=fps, seconds=seconds, condition=condition)
    w, h = src.camera.width, src.camera.height
    out.mkdir(parents=True, exist_ok=True)
    video_path = out / "video.mp4"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise click.ClickException(f"cannot open a video writer for {video_path}")
    coco = CocoWriter({"description": f"sitewarden sim scene {scene}", "scene": scene, "seed": seed, "fps": fps})
    mot, mot_m = MotWriter(("person",)), MotWriter(("machine",))
    events = []
    if save_frames:
        (out / "frames").mkdir(exist_ok=True)
    try:
        for f in src:
            writer.write(f.image)
            name = f"frame_{f.index:06d}.jpg"
            if save_frames:
                cv2.imwrite(str(out / "frames" / name), f.image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            coco.add(f.index, f.t, f.truth, w, h, file_name=("frames/" + name) if save_frames else name)
            mot.add(f.index, f.truth)
            mot_m.add(f.index, f.truth)
            events.extend(f.truth.events)
    finally:
        writer.release()
    coco.write(out / "annotations.json")
    mot.write(out / "mot.txt")
    mot_m.write(out / "mot_machines.txt")
    (out / "scene.json").write_text(json.dumps(scene_json(src, events, seconds), indent=1))
    return [video_path, out / "annotations.json", out / "mot.txt", out / "scene.json"]
