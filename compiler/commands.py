"""The compiler's command-line verbs (build.py registers them lazily).

Exit codes: 0 success, 2 bad input (spec, board, arguments: the message says what to fix),
1 a failure of the tool itself.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .spec import SiteSpec, load_spec

SCHEMA_ID = "https://sitewarden.dev/schema/site-spec.schema.json"
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema" / "site-spec.schema.json"


def _boards_or_exit():
    from .boards import BoardProfileError, load_board_profiles

    try:
        return load_board_profiles()
    except BoardProfileError as e:
        click.echo(str(e), err=True)
        sys.exit(2)


def _load_or_exit(spec_path: str, boards) -> SiteSpec:
    result = load_spec(spec_path, boards=boards)
    for w in result.warnings:
        click.echo(str(w), err=True)
    if not result.ok:
        for e in result.errors:
            click.echo(str(e), err=True)
        n = len(result.errors)
        click.echo(f"{spec_path}: {n} error{'s' if n != 1 else ''}", err=True)
        sys.exit(2)
    return result.spec


def summary(spec: SiteSpec, default_board: str | None = None) -> str:
    from .devices import device_roles

    zones = len(spec.zone_ids())
    lines = [
        f"site {spec.site.name} ({spec.site.timezone}): {len(spec.cameras)} camera{'s' * (len(spec.cameras) != 1)}, "
        f"{zones} zone{'s' * (zones != 1)}, {len(spec.ppe)} PPE rule{'s' * (len(spec.ppe) != 1)}, "
        f"{len(spec.actions)} posture rule{'s' * (len(spec.actions) != 1)}, {len(spec.alerts.sinks)} sink{'s' * (len(spec.alerts.sinks) != 1)}"
    ]
    for d in device_roles(spec, default_board):
        lines.append(f"  device {d.id:<16} {d.board or '(board from --board)':<18} {d.describe()}")
    return "\n".join(lines)


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="Print errors only.")
def validate(specs: tuple[str, ...], quiet: bool):
    """Check site specs; print every error as file:line:col: path: message.

    Exits 2 when any spec has an error.
    """
    boards = _boards_or_exit()
    failed = 0
    for spec_path in specs:
        result = load_spec(spec_path, boards=boards)
        for w in result.warnings:
            click.echo(str(w), err=True)
        if result.ok:
            if not quiet:
                click.echo(f"{spec_path}: ok\n{summary(result.spec)}")
        else:
            failed += 1
            for e in result.errors:
                click.echo(str(e), err=True)
            n = len(result.errors)
            click.echo(f"{spec_path}: {n} error{'s' if n != 1 else ''}", err=True)
    sys.exit(2 if failed else 0)


def json_schema() -> dict:
    body = SiteSpec.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **body}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@click.option("--markdown", is_flag=True, help="Write the Markdown spec reference instead.")
def schema(output: str | None, markdown: bool):
    """Write the site spec's JSON Schema (editors: `# yaml-language-server: $schema=...`)."""
    if markdown:
        from .spec.reference import markdown as reference

        text = reference()
    else:
        text = schema_text()
    if output is None:
        click.echo(text, nl=False)
        return
    out = Path(output)
    if out.exists() and out.read_text(encoding="utf-8") == text:
        click.echo(f"{output}: unchanged")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    click.echo(f"{output}: written")


@click.command()
def boards():
    """List the board profiles: SoC, memory, NPU and whether it hosts the runtime."""
    from .boards import format_board_table

    click.echo(format_board_table(_boards_or_exit()))


def _board_or_exit(board: str, profiles):
    from .spec.checks import did_you_mean

    if board not in profiles:
        raise click.BadParameter(f"no board '{board}'{did_you_mean(board, profiles)} (see `build.py boards`)", param_hint="--board")
    return profiles[board]


@click.command()
@click.option("--board", "board", required=True, help="Build the images of every device on this board.")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", default="out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the images (<site>-<device>-<board>.swimg).")
@click.option("--key", "key_path", default=None, type=click.Path(dir_okay=False),
              help="Ed25519 private key (default $SITEWARDEN_SIGNING_KEY, then keys/signing.key.pem).")
@click.option("--image-version", default=1, show_default=True, type=click.IntRange(min=1),
              help="Monotonic image version; devices refuse images older than the one they run.")
def build(board: str, spec_path: str, out_dir: str, key_path: str | None, image_version: int):
    """Compile SPEC into one signed image per device on BOARD.

    Also reachable as `build.py --board B SPEC -o DIR`.
    """
    from .builder import BuildError, build_images
    from .keys import KeyError_
    from .planner import PlanError

    profiles = _boards_or_exit()
    profile = _board_or_exit(board, profiles)
    result = load_spec(spec_path, boards=profiles)
    spec = _load_or_exit(spec_path, profiles)
    from .devices import device_roles, devices_on_board

    if not devices_on_board(spec, board):
        have = sorted({d.board for d in device_roles(spec, board)})
        click.echo(f"{spec_path}: no device is on board '{board}'; this spec's boards are: {', '.join(have)}", err=True)
        sys.exit(2)
    click.echo(summary(spec, board))
    try:
        built = build_images(spec, Path(spec_path), result.document.files, profile, Path(out_dir), key_path=key_path,
                             image_version=image_version, progress=lambda m: click.echo(m, err=True))
    except (BuildError, PlanError, KeyError_) as e:
        click.echo(f"{spec_path}: {e}", err=True)
        sys.exit(2)
    for b in built:
        click.echo(f"{b.path}: {'written' if b.written else 'unchanged'} (sha256 {b.sha256[:16]}...)")


@click.command()
@click.option("--board", "board", required=True, help="Plan the devices on this board.")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
def plan(board: str, spec_path: str):
    """Print the plan per device: task, variant, tiers, memory, estimated latency, headroom, why."""
    from .devices import devices_on_board
    from .modelcard import ModelCardError, zoo
    from .planner import HEADROOM, PlanError, plan_device
    from .resolve import resolve_device

    profiles = _boards_or_exit()
    profile = _board_or_exit(board, profiles)
    spec = _load_or_exit(spec_path, profiles)
    try:
        cards = zoo()
    except ModelCardError as e:
        click.echo(str(e), err=True)
        sys.exit(2)
    devices = devices_on_board(spec, board)
    if not devices:
        click.echo(f"{spec_path}: no device is on board '{board}'", err=True)
        sys.exit(2)
    failed = False
    for device in devices:
        threads = int(profile.runtime_threads.value) if profile.runtime_threads else int(profile.cpu.cores.value)
        config = resolve_device(spec, device, {}, threads)
        pinned = {t: getattr(spec.models, t).variant for t in ("detector", "ppe", "pose", "posture", "trajectory")
                  if getattr(spec.models, t) is not None and getattr(spec.models, t).variant}
        try:
            p = plan_device(config, profile, cards, prefer=spec.models.prefer, pinned=pinned)
        except PlanError as e:
            click.echo(f"device {device.id} ({board}): DOES NOT FIT: {e}", err=True)
            failed = True
            continue
        mark = "~" if p.estimated else ""
        click.echo(f"device {device.id} on {board} ({device.describe()}); {'~ = estimate from the cost model' if p.estimated else 'latencies from measured host throughput'}")
        click.echo(f"  {'task':<11}{'variant':<22}{'tiers':<36}{'memory':>10}{'latency':>11}{'calls/s':>9}  why")
        for t in p.tasks:
            click.echo(f"  {t.task:<11}{t.variant:<22}{', '.join(t.tiers[1:]) or '-':<36}{t.memory_bytes / 2**20:>8.1f}MB"
                       f"{mark + format(t.latency_ms, '.2f'):>9}ms{t.calls_per_s:>9.1f}  {t.why}")
        for unit, f in sorted(p.load.items()):
            click.echo(f"  {unit}: {mark}{f:.0%} of capacity used, headroom {mark}{1 - f:.0%} (keeps >= {HEADROOM:.0%})")
        click.echo(f"  memory: {p.memory_bytes / 2**20:.1f} MB of {p.memory_budget_bytes / 2**20:.0f} MB for models")
        for note in p.notes:
            click.echo(f"  stepped down: {note}")
    sys.exit(2 if failed else 0)


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--camera", "camera_id", required=True, help="Camera id from the spec.")
@click.option("-o", "--out", "out_path", default="preview.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--frame", "frame_path", default=None, type=click.Path(dir_okay=False, exists=True),
              help="A still from the camera, when its source cannot be reached from here.")
def preview(spec_path: str, camera_id: str, out_path: str, frame_path: str | None):
    """Draw a camera's zones and ground grid on a frame from its source; print the calibration error."""
    import cv2

    from .preview import PreviewError, draw, grab_frame
    from .resolve import resolve_camera
    from .spec.checks import did_you_mean

    spec = _load_or_exit(spec_path, _boards_or_exit())
    cams = {c.id: c for c in spec.cameras}
    if camera_id not in cams:
        raise click.BadParameter(f"no camera '{camera_id}'{did_you_mean(camera_id, cams)} (cameras: {', '.join(cams)})",
                                 param_hint="--camera")
    camera = resolve_camera(spec, cams[camera_id], detect_here=True)
    try:
        frame = grab_frame(camera, Path(spec_path).resolve().parent, frame_path)
    except PreviewError as e:
        click.echo(f"{spec_path}: {e}", err=True)
        sys.exit(2)
    image, error = draw(frame, camera, cams[camera_id])
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(out_path, image)
    click.echo(f"{out_path}: {len(camera.zones)} zone(s) drawn on {camera.resolution[0]}x{camera.resolution[1]}")
    if error is None:
        click.echo("no calibration: zones are drawn in image coordinates only")
    else:
        verdict = "good" if error < 1.0 else "check the point pairs" if error < 5 else "BAD"
        click.echo(f"calibration reprojection error: {error:.2f} px ({verdict}); grid lines every metre, bright every 5 m")


README = Path(__file__).resolve().parent.parent / "README.md"
REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "spec-reference.md"
_BOARDS_START, _BOARDS_END = "<!-- boards:start -->", "<!-- boards:end -->"


def generated_docs() -> dict[Path, str]:
    """Every generated file and its current content (the JSON Schema, the spec reference, the README's board table)."""
    from .boards import format_board_table, load_board_profiles
    from .spec.reference import markdown

    readme = README.read_text(encoding="utf-8")
    head, rest = readme.split(_BOARDS_START, 1)
    _, tail = rest.split(_BOARDS_END, 1)
    table = format_board_table(load_board_profiles())
    readme = f"{head}{_BOARDS_START}\n```text\n{table.rstrip()}\n```\n{_BOARDS_END}{tail}"
    return {SCHEMA_FILE: schema_text(), REFERENCE: markdown(), README: readme}


@click.command()
@click.option("--check", is_flag=True, help="Only report stale files; exit 1 if any.")
def docs(check: bool):
    """Regenerate the JSON Schema, docs/spec-reference.md and the README's board table."""
    stale = []
    for path, text in generated_docs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
        click.echo(f"{path.relative_to(README.parent)}: {'stale' if current != text and check else 'written' if current != text else 'unchanged'}")
    sys.exit(1 if check and stale else 0)
