"""`build.py distill pose`: the command's body (distill/cli.py only registers it)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .pipeline import ORDER, run


def main(out: Path, out_given: Path | None, smoke: bool, seed: int, variants: tuple[str, ...],
         kd_baseline: bool = True) -> None:
    chosen = tuple(variants) or ORDER
    args = (["--smoke"] * smoke + [f"--seed {seed}"] + [f"--variant {v}" for v in variants]
            + ["--no-kd-baseline"] * (not kd_baseline)
            + ([f"--out {out_given}"] if out_given is not None and not smoke else []))
    reports = run(out, chosen, seed=seed, smoke=smoke, kd_baseline=kd_baseline,
                  command=f"python build.py distill pose {' '.join(args)}",
                  log=lambda m: click.echo(m))
    for name, r in reports.items():
        click.echo(f"{name}: sim holdout PCK@0.2 {r['sim_holdout']['pck']['all']:.4f} -> {out}/pose/{name}")
    sys.exit(0)
