"""Command-line verbs for keys and images: `keys new`, `verify`, `inspect`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from runtime.image import ImageError, Manifest, read_image

from .keys import DEFAULT_DIR, KeyError_, load_public_keys, new_key_pair


@click.group()
def keys():
    """Manage the Ed25519 signing key (kept out of images and out of git)."""


@keys.command("new")
@click.option("--out", "folder", default=str(DEFAULT_DIR), show_default=True, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing key (devices will refuse images signed with the new one until re-provisioned).")
def keys_new(folder: str, force: bool):
    """Make a signing key pair: PRIVATE stays here, the .pub.pem goes to devices."""
    try:
        priv, pub, kid = new_key_pair(Path(folder), overwrite=force)
    except KeyError_ as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"private key: {priv} (mode 600; never commit or copy it into an image)")
    click.echo(f"public key:  {pub} (provision devices with it)\nkey id:      {kid}")


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--key", "key_paths", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Trusted public key (PEM); repeat for several.")
@click.option("--board", default=None, help="Also require the image to be compatible with this board.")
def verify(image: str, key_paths: tuple[str, ...], board: str | None):
    """Check an image's signature, every file's sha256, its layout and (optionally) its board. Exit 2 when refused."""
    try:
        verified = read_image(image, load_public_keys(key_paths), board=board)
    except (ImageError, KeyError_) as e:
        click.echo(f"{image}: REFUSED: {e}", err=True)
        sys.exit(2)
    m = verified.manifest
    click.echo(f"{image}: OK: {m.site}/{m.device} for {', '.join(m.compatible)}, version {m.image_version}, "
               f"{len(m.files)} files signed by key {m.key_id}")


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def inspect(image: str, as_json: bool):
    """Show an image's manifest and plan WITHOUT trusting it (use `verify` for that)."""
    from runtime.image import MANIFEST, _members

    try:
        members = _members(Path(image).read_bytes())
        manifest = Manifest.from_json(members[MANIFEST])
    except (ImageError, OSError, KeyError) as e:
        click.echo(f"{image}: cannot inspect: {e}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(manifest.to_json().decode())
        return
    click.echo(f"image {image} (unverified)\n  site {manifest.site}, device {manifest.device} ({manifest.role}), "
               f"board {manifest.board}, compatible {', '.join(manifest.compatible)}\n  version {manifest.image_version}, "
               f"builder {manifest.builder_version}, spec sha256 {manifest.spec_sha256[:16]}..., key {manifest.key_id}")
    for f in manifest.files:
        click.echo(f"  {f.size:>10}  {f.sha256[:12]}  {f.path}")
    if manifest.plan:
        click.echo("  plan: " + json.dumps(manifest.plan, sort_keys=True)[:2000])
