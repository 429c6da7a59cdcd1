"""`build.py distill <task>`: train a task's teacher and students, export ONNX, write model cards.

Every task takes the same options: ``--smoke`` (the whole path on tiny data in under a minute,
written to a temporary folder unless ``--out`` is given), ``--seed`` and ``--out`` (the zoo root,
default ``models/``). Tasks: trajectory, detector, ppe, pose, posture.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

ZOO = Path(__file__).resolve().parent.parent / "models"


def _common(f):
    f = click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Zoo root to write <task>/<variant>/ into (default models/; a temp dir with --smoke).")(f)
    f = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")(f)
    f = click.option("--smoke", is_flag=True, help="Tiny data and few steps: checks the whole path quickly.")(f)
    return f


def _out_dir(out: Path | None, smoke: bool) -> Path:
    if out is not None:
        return out
    if smoke:
        return Path(tempfile.mkdtemp(prefix="sitewarden-distill-"))
    return ZOO


@click.group()
def distill():
    """Train students from teachers; export ONNX and model cards."""


@distill.command()
@_common
@click.option("--paths", type=int, default=None,
              help="Alternative paths K of the multi-modal student (default: the chosen K, distill/trajectory/multimodal.py).")
def trajectory(smoke: bool, seed: int, out: Path | None, paths: int | None):
    """Ground-plane trajectory forecaster on real ETH/UCY tracks (8 -> 12 steps at 2.5 Hz)."""
    from .trajectory import multimodal
    from .trajectory.pipeline import run

    if paths is not None:
        multimodal.K = paths   # everything reads it at call time (the student, its card, the cache key)
    out = _out_dir(out, smoke)
    args = " ".join(["--smoke"] * smoke + [f"--seed {seed}"] + ([f"--paths {paths}"] if paths is not None else [])
                    + ([f"--out {out}"] if out != ZOO and not smoke else []))
    report = run(out, seed=seed, smoke=smoke, command=f"python build.py distill trajectory {args}".strip(),
                 log=lambda m: click.echo(m, err=False))
    avg = report["average"]
    click.echo(f"average ADE/FDE (m): CV {avg['cv']['ade']:.3f}/{avg['cv']['fde']:.3f}  "
               f"student {avg['student_kd']['ade']:.3f}/{avg['student_kd']['fde']:.3f}  -> {out}")
    sys.exit(0)


@distill.command()
@_common
@click.option("--variant", "variants", multiple=True, help="Variant(s) to build (default: all, in order).")
@click.option("--no-kd", is_flag=True, help="Train the smallest variant's no-KD baseline (report only, no card).")
def detector(smoke: bool, seed: int, out: Path | None, variants: tuple[str, ...], no_kd: bool):
    """Person + machine detector students distilled from the real SSDLite teacher (+ sim truth)."""
    from .detector.cli import run_variants

    sys.exit(run_variants(_out_dir(out, smoke), variants, seed=seed, smoke=smoke, zoo=ZOO, kd=not no_kd,
                          log=lambda m: click.echo(m)))


@distill.command()
@_common
@click.option("--variant", type=click.Choice(["all", "large", "small"]), default="all", show_default=True,
              help="Which classifier(s); 'all' trains large first, then small distilled from it.")
def ppe(smoke: bool, seed: int, out: Path | None, variant: str):
    """Per-person hard hat / hi-vis vest classifiers on sim + real person crops."""
    from .ppe.cli import main

    main(_out_dir(out, smoke), out, smoke, seed, variant)


@distill.command()
@_common
@click.option("--variant", "variants", multiple=True, type=click.Choice(["pose-t96", "pose-m96", "pose-s64"]),
              help="Variant(s) to build (default: all; the teacher pose-t96 first, students distil from it).")
@click.option("--kd-baseline/--no-kd-baseline", default=True, show_default=True,
              help="Also train pose-s64 without the teacher on the same batches, to measure KD; where that twin scores "
                   "better on the sim holdout it is shipped instead (and the card says so).")
def pose(smoke: bool, seed: int, out: Path | None, variants: tuple[str, ...], kd_baseline: bool):
    """Top-down 17-keypoint pose: a heatmap teacher and two students on sim + real person crops."""
    from .pose.cli import main

    main(_out_dir(out, smoke), out, smoke, seed, variants, kd_baseline)


@distill.command()
@_common
@click.option("--variant", "variants", multiple=True, type=click.Choice(["posture-t", "posture-s"]),
              help="Variant(s) to build (default: both; the teacher posture-t first).")
def posture(smoke: bool, seed: int, out: Path | None, variants: tuple[str, ...]):
    """Single-frame skeleton posture MLPs with bottleneck layers, on the pose student's keypoints."""
    from .posture.cli import main

    main(_out_dir(out, smoke), out, smoke, seed, variants)
