"""`build.py distill ppe`: the command's body (distill/cli.py only registers it)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .pipeline import ORDER, run


def main(out: Path, out_given: Path | None, smoke: bool, seed: int, variant: str) -> None:
    variants = ORDER if variant == "all" else (variant,)
    args = (["--smoke"] * smoke + [f"--seed {seed}"] + ([f"--variant {variant}"] if variant != "all" else [])
            + ([f"--out {out_given}"] if out_given is not None and not smoke else []))
    reports = run(out, variants, seed=seed, smoke=smoke, command=f"python build.py distill ppe {' '.join(args)}",
                  log=lambda m: click.echo(m))
    for name, r in reports.items():
        a = r["sim_holdout"]["conditions"]["all"]
        click.echo(f"{name}: sim holdout both-correct {a['model']['both']} vs colour {a['baseline']['both']} -> {out}/ppe/{name}")
    sys.exit(0)
