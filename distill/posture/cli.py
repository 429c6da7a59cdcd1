"""`build.py distill posture`: the command's body (distill/cli.py only registers it)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .pipeline import ORDER, run


def main(out: Path, out_given: Path | None, smoke: bool, seed: int, variants: tuple[str, ...]) -> None:
    chosen = tuple(variants) or ORDER
    args = (["--smoke"] * smoke + [f"--seed {seed}"] + [f"--variant {v}" for v in variants]
            + ([f"--out {out_given}"] if out_given is not None and not smoke else []))
    reports = run(out, chosen, seed=seed, smoke=smoke, command=f"python build.py distill posture {' '.join(args)}",
                  log=lambda m: click.echo(m))
    for name, r in reports.items():
        s = r["scores"]["dropped"]
        click.echo(f"{name}: holdout accuracy {s[name]['accuracy']:.4f} (rule {s['rule']['accuracy']:.4f}) -> {out}/posture/{name}")
    sys.exit(0)
