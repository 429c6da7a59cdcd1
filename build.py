#!/usr/bin/env python3
"""sitewarden's command line.

    python build.py validate specs/demo-site.yaml
    python build.py --board host-cpu specs/demo-site.yaml -o out/     # short for `build`

Each command lives in the module named in COMMANDS and is imported only when it runs, so
`validate` never pays for torch or OpenCV.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# name -> (module:attribute, one-line help shown by --help without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("compiler.commands:validate", "Check a site spec; print every error as file:line:col."),
    "schema": ("compiler.commands:schema", "Write the site spec's JSON Schema (for editors)."),
    "boards": ("compiler.commands:boards", "List the board profiles."),
    "docs": ("compiler.commands:docs", "Regenerate the JSON Schema, the spec reference and the README's board table."),
    "plan": ("compiler.commands:plan", "Show which model variants each device gets, and why."),
    "preview": ("compiler.commands:preview", "Draw a camera's zones and ground grid on a frame from its source."),
    "build": ("compiler.commands:build", "Compile a spec into one signed image per device on a board."),
    "keys": ("compiler.imagecli:keys", "Make the Ed25519 signing key pair."),
    "verify": ("compiler.imagecli:verify", "Check an image's signature, hashes, layout and board."),
    "inspect": ("compiler.imagecli:inspect", "Show an image's manifest and plan (unverified)."),
    "flash": ("compiler.flashcli:flash", "Send an image to device agents: verify, A/B install, health check, rollback."),
    "pack": ("compiler.flashcli:pack", "Build a device's models and tiers as a signed model pack (swapped in without restart)."),
    "run": ("compiler.runcli:run_cmd", "Verify an image, install it here and run it, printing events."),
    "demo": ("compiler.runcli:demo", "The main job: build the demo spec for host-cpu and run it on its sim scene."),
    "replay": ("compiler.replay:replay", "Build a spec for host-cpu, run it on recorded footage, report events, false alarms, latency."),
    "vms": ("vms.cli:vms", "Start the VMS: event ingest, live dashboard, fleet, repository, hard samples."),
    "sim": ("sim.cli:sim", "Render a synthetic scene with ground truth."),
    "distill": ("distill.cli:distill", "Train students from teachers; export ONNX and model cards."),
    "teacher-round": ("vms.teachercli:teacher_round",
                      "VMS teacher loop: label hard samples, fine-tune the student, gate on the real holdout."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on use, and which routes the product's documented
    short form `build.py --board B SPEC -o DIR` to `build`."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, ctx, args):
        if args and args[0] not in COMMANDS and args[0] not in ("--help", "-h", "--version"):
            args = ["build", *args]
        return super().parse_args(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sitewarden", message="sitewarden %(version)s")
def cli():
    """sitewarden: compile a construction site's safety spec into per-device images."""


if __name__ == "__main__":
    cli()
