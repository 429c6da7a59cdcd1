"""`python build.py vms`: start the VMS (uvicorn) with no other set-up.

The first start creates the database and the ``admin`` account; its password comes from
``--admin-password``, else $SITEWARDEN_VMS_ADMIN_PASSWORD, else it is generated and printed once.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("vms")
@click.option("--data", "data_dir", default="vms-data", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the SQLite database, snapshots, clips, hard samples and the repository.")
@click.option("--db", "db_url", default=None, envvar="SITEWARDEN_VMS_DB",
              help="Database URL (postgresql://user:pass@host/db); default: an SQLite file in --data.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--admin-password", default=None, help="Password of the first admin account (first start only).")
@click.option("--key", "keys", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Trusted image signing public key (PEM); uploaded images are checked against these.")
@click.option("--max-event-age-days", default=90.0, show_default=True, type=float)
@click.option("--max-events", default=1_000_000, show_default=True, type=int)
@click.option("--max-clip-age-days", default=30.0, show_default=True, type=float)
@click.option("--max-clip-gb", default=20.0, show_default=True, type=float)
@click.option("--poll-agents-s", default=30.0, show_default=True, type=float,
              help="Poll device agents for status this often (0: never).")
@click.option("--device", "devices", multiple=True, metavar="ID=TOKEN[@AGENT_URL[#AGENT_TOKEN]]",
              help="Register a device with this token (or give it this token), e.g. the spec's vms_token; "
                   "with its agent's URL and token for pushes and polling. Repeatable.")
@click.option("--cert", default=None, type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM): serve HTTPS.")
@click.option("--keyfile", default=None, type=click.Path(exists=True, dir_okay=False), help="The certificate's private key (PEM).")
@click.option("--log-level", default="warning", show_default=True)
def vms(data_dir, db_url, host, port, admin_password, keys, max_event_age_days, max_events, max_clip_age_days,
        max_clip_gb, poll_agents_s, devices, cert, keyfile, log_level):
    """Start the VMS: event ingest, dashboard, fleet, repository, hard samples."""
    try:
        import uvicorn

        from .app import create_app
        from .store import Settings
    except ImportError as e:
        click.echo(f"the VMS needs its extra: pip install -e '.[vms]' ({e})", err=True)
        sys.exit(2)
    if bool(cert) != bool(keyfile):
        click.echo("vms: --cert and --keyfile go together", err=True)
        sys.exit(2)
    if not keys and Path("keys/signing.pub.pem").exists():
        keys = ("keys/signing.pub.pem",)
    settings = Settings(data_dir=Path(data_dir), db_url=db_url, max_event_age_s=max_event_age_days * 86400,
                        max_events=max_events, max_clip_age_s=max_clip_age_days * 86400,
                        max_clip_bytes=int(max_clip_gb * (1 << 30)), trusted_keys=[Path(k) for k in keys],
                        poll_agents_every_s=poll_agents_s)
    parsed = []
    for spec in devices:
        dev, sep, rest = spec.partition("=")
        token, _, agent = rest.partition("@")
        agent_url, _, agent_token = agent.partition("#")
        if not sep or not dev or len(token) < 16:
            click.echo(f"--device {spec!r}: expected ID=TOKEN (a token of at least 16 characters)", err=True)
            sys.exit(2)
        parsed.append((dev, token, agent_url or None, agent_token or None))
    try:
        app = create_app(settings, admin_password=admin_password, devices=parsed)
    except Exception as e:  # a bad URL, an unreachable database, an unwritable folder
        click.echo(f"vms: cannot start: {type(e).__name__}: {e}", err=True)
        sys.exit(2)
    where = db_url.split("@")[-1] if db_url else str(Path(data_dir).resolve() / "vms.sqlite")
    click.echo(f"sitewarden VMS on {'https' if cert else 'http'}://{host}:{port}/  (database {where}, data {Path(data_dir).resolve()})")
    if app.state.generated_admin_password:
        click.echo(f"first start: account 'admin', password {app.state.generated_admin_password} (shown once; "
                   f"set ${'SITEWARDEN_VMS_ADMIN_PASSWORD'} to choose it)")
    sys.stdout.flush()
    # the ingest writer thread hands each commit back to the event loop: with the default 5 ms GIL
    # switch interval, a busy loop thread delays every hand-over by up to 5 ms (a convoy)
    sys.setswitchinterval(0.001)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=3,
                ssl_certfile=cert, ssl_keyfile=keyfile)
