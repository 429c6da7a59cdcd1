"""Field verbs: `flash` (images to device agents, with progress and a verdict per device) and
`pack` (a signed model pack of one device's models and tiers)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from runtime.agent.client import AgentError, flash as flash_image, read_token

EXIT_REFUSED, EXIT_FAILED = 2, 1


def _progress_printer(label: str):
    """A one-line progress bar on stderr: `label [#####.....]  42%  3.1/7.4 MB  12.0 MB/s`."""
    t0 = time.monotonic()
    state = {"last": -1.0}
    tty = sys.stderr.isatty()

    def show(sent: int, total: int) -> None:
        frac = sent / total if total else 1.0
        now = time.monotonic()
        if sent < total and now - state["last"] < (0.1 if tty else 2.0):
            return
        state["last"] = now
        bar = "#" * int(frac * 30)
        rate = sent / max(now - t0, 1e-6) / 1e6
        end = "\n" if sent >= total or not tty else ""
        click.echo(f"\r{label} [{bar:<30}] {frac:4.0%}  {sent / 1e6:.1f}/{total / 1e6:.1f} MB  {rate:.1f} MB/s"
                   + ("  verifying and installing ..." if sent >= total else ""), err=True, nl=False)
        if end:
            click.echo("", err=True)

    return show


def _timings(t: dict) -> str:
    names = (("receive_s", "transfer"), ("verify_s", "verify"), ("install_s", "install"), ("health_s", "healthy after"))
    return ", ".join(f"{label} {t[k]:.1f} s" for k, label in names if k in t)


@click.command()
@click.argument("image", type=click.Path(dir_okay=False, exists=True))
@click.option("--device", "devices", multiple=True, required=True, metavar="URL",
              help="Device agent URL (http://host:port or https://...); repeat for several devices.")
@click.option("--token", default=None, help="Agent access token (or --token-file, or $SITEWARDEN_AGENT_TOKEN).")
@click.option("--token-file", default=None, type=click.Path(dir_okay=False, exists=True), help="File holding the token.")
@click.option("--cafile", default=None, type=click.Path(dir_okay=False, exists=True), help="CA or self-signed certificate of https agents.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds per device (transfer, install and health check).")
def flash(image: str, devices: tuple[str, ...], token: str | None, token_file: str | None, cafile: str | None, timeout: float):
    """Send IMAGE to each device's agent: it verifies it, installs the inactive slot, switches and
    waits for the runtime's health, rolling back if it fails.

    Prints a verdict per device; exits 2 when a device refused the image, 1 when one rolled back
    or could not be reached, 0 when every device runs it.
    """
    try:
        tok = read_token(token, token_file)
    except (AgentError, OSError) as e:
        raise click.UsageError(str(e)) from None
    results = {}
    for url in devices:
        try:
            reply = flash_image(image, url, tok, progress=_progress_printer(url), timeout=timeout, cafile=cafile)
        except AgentError as e:
            click.echo(f"{url}: FAILED: {e}", err=True)
            results[url] = "failed"
            continue
        verdict = reply.get("verdict", "failed")
        results[url] = verdict
        detail = _timings(reply.get("timings") or {})
        if verdict == "ok":
            click.echo(f"{url}: OK: {reply['reason']}" + (f" ({detail})" if detail else ""))
        elif verdict == "refused":
            click.echo(f"{url}: REFUSED: {reply['reason']} (the device keeps running what it ran)", err=True)
        else:
            click.echo(f"{url}: ROLLED BACK: {reply['reason']}", err=True)
    counts = {v: sum(1 for r in results.values() if r == v) for v in ("ok", "refused", "rolled_back", "failed")}
    click.echo(f"{len(devices)} device{'s' * (len(devices) != 1)}: " + ", ".join(f"{n} {v.replace('_', ' ')}" for v, n in counts.items() if n))
    if counts["refused"]:
        sys.exit(EXIT_REFUSED)
    if counts["rolled_back"] or counts["failed"]:
        sys.exit(EXIT_FAILED)


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, exists=True))
@click.option("--board", required=True, help="The device's board.")
@click.option("--device", "device_id", required=True, help="Device id from the spec.")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Write the pack here (.swpack).")
@click.option("--pack-version", default=1, show_default=True, type=click.IntRange(min=1),
              help="Monotonic pack version; devices refuse packs older than the one installed.")
@click.option("--key", "key_path", default=None, type=click.Path(dir_okay=False),
              help="Ed25519 private key (default $SITEWARDEN_SIGNING_KEY, then keys/signing.key.pem).")
def pack(spec_path: str, board: str, device_id: str, out_path: str, pack_version: int, key_path: str | None):
    """Build DEVICE's models and tiers from SPEC as a signed model pack (no runtime, no config):
    `build.py flash`'s agents swap it in with PUT /model-pack, without a restart."""
    import tempfile

    from runtime.image import ImageError, read_image

    from .commands import _board_or_exit, _boards_or_exit, _load_or_exit
    from .builder import BuildError, build_images
    from .keys import KeyError_, load_private_key
    from .modelpack import pack_from_image
    from .pack import write_if_changed
    from .planner import PlanError

    profiles = _boards_or_exit()
    profile = _board_or_exit(board, profiles)
    spec = _load_or_exit(spec_path, profiles)
    from .spec import load_spec

    files = load_spec(spec_path, boards=profiles).document.files
    try:
        key = load_private_key(key_path)
        with tempfile.TemporaryDirectory() as tmp:
            built = build_images(spec, Path(spec_path), files, profile, Path(tmp), key_path=key_path,
                                 progress=lambda m: click.echo(m, err=True))
            chosen = [b for b in built if b.device == device_id]
            if not chosen:
                raise click.BadParameter(f"no device '{device_id}' on {board} in {spec_path} "
                                         f"(devices: {', '.join(b.device for b in built)})", param_hint="--device")
            image = read_image(chosen[0].path, [key.public_key()], board=board)
    except (BuildError, PlanError, KeyError_, ImageError) as e:
        click.echo(f"{spec_path}: {e}", err=True)
        sys.exit(2)
    blob, manifest = pack_from_image(image, key, pack_version)
    written = write_if_changed(Path(out_path), blob)
    tiers = "; ".join(f"{t}: {', '.join(v)}" for t, v in manifest.plan["tiers"].items())
    click.echo(f"{out_path}: {'written' if written else 'unchanged'}: pack {pack_version} for {manifest.site}/{manifest.device} "
               f"({len(manifest.files) - 1} models; {tiers})")
