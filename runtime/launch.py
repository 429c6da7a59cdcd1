"""What a supervisor (the device agent, or a host) adds to `python -m runtime`:

    --status-file PATH          write the health report (runtime/status.py)
    --pack-dir DIR              swap in model packs the agent installs there (runtime/modelpack.py)
    --plugin NAME=MODULE:ATTR   a host-side source plug-in, imported by name at start, e.g.
                                `--plugin sim=compiler.runcli:live_sim_plugin` on a build host; the
                                runtime itself never imports the simulator
"""
from __future__ import annotations

import importlib
from pathlib import Path

from .image import load_public_key
from .status import StatusReporter


def add_arguments(ap) -> None:
    ap.add_argument("--status-file", type=Path, default=None, help="write the health report here (JSON, every ~1 s)")
    ap.add_argument("--pack-dir", type=Path, default=None, help="folder where the agent installs model packs")
    ap.add_argument("--plugin", action="append", default=[], metavar="NAME=MODULE:ATTR",
                    help="host-side source plug-in (e.g. sim=compiler.runcli:live_sim_plugin)")


def plugins(specs) -> dict:
    out = {}
    for spec in specs:
        name, _, target = spec.partition("=")
        module, _, attr = target.partition(":")
        if not name or not module or not attr:
            raise ValueError(f"--plugin {spec!r}: expected NAME=MODULE:ATTR")
        try:
            out[name] = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"--plugin {spec!r}: {e}") from None
    return out


def reporter(args) -> StatusReporter | None:
    if args.status_file is None and args.pack_dir is None:
        return None
    keys = [load_public_key(Path(k).read_bytes()) for k in args.key]
    return StatusReporter(args.status_file, args.pack_dir, keys, args.board)
