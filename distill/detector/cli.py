"""The `distill detector` command body (registered in distill/cli.py)."""
from __future__ import annotations

from pathlib import Path

from .variants import SMALLEST, VARIANTS


def run_variants(out: Path, variants: tuple[str, ...], seed: int, smoke: bool, zoo: Path, kd: bool = True,
                 log=print) -> int:
    from .pipeline import run

    names = list(variants) or ([SMALLEST] if smoke or not kd else list(VARIANTS))
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        log(f"unknown detector variant(s) {unknown}; known: {', '.join(VARIANTS)}")
        return 2
    for name in names:
        args = (["--smoke"] if smoke else []) + [f"--variant {name}"] + ([] if kd else ["--no-kd"]) + [f"--seed {seed}"]
        if out != zoo and not smoke:
            args.append(f"--out {out}")
        report = run(out, name, seed=seed, smoke=smoke, kd=kd, log=log,
                     command="python build.py distill detector " + " ".join(args))
        if report:
            info = report["kd"] if kd else report["nokd"]
            ev = info["eval"]
            log(f"{report['variant']}: real AP50 {ev.get('real', {}).get('AP50')}  sim person AP50 "
                f"{ev['sim']['person']['all']}  {report['costs']['macs'] / 1e6:.1f} MMACs  train {info['seconds']}s  "
                f"total {report['wall_s']}s")
    return 0
