"""`build.py teacher-round`: one VMS teacher-loop round over a folder of hard samples."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click


@click.command("teacher-round")
@click.option("--samples", "samples", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder of hard samples (<id>.jpg + <id>.json), e.g. the VMS's DATA/hard_samples.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the round writes round.json, candidate/ and (if the gate passes) publish/ "
                   "(default: out/teacher/<variant>-seed<seed>; a temp dir with --smoke).")
@click.option("--variant", default="det-s256", show_default=True, help="The shipped detector variant to improve.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--smoke", is_flag=True, help="At most 8 samples, 3 steps, tiny holdouts: checks the path in < 60 s.")
@click.option("--from-footage", is_flag=True,
              help="First fill --samples the way devices would: the current student + runtime.hardsample "
                   "over the TRAINING part of the real footage (never the holdout).")
@click.option("--control", is_flag=True, help="Also fine-tune without the hard samples (what they add).")
@click.option("--min-real-gain", type=float, default=0.01, show_default=True,
              help="Gate: real-holdout AP50 gain the candidate needs.")
@click.option("--max-sim-drop", type=float, default=0.02, show_default=True,
              help="Gate: most sim-holdout AP50 (person, machine) the candidate may lose.")
@click.option("--publish-zoo", is_flag=True, help="When the gate passes, also write the candidate into models/.")
@click.option("--pack-spec", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="When the gate passes, also build a signed model pack for --pack-device of this spec.")
@click.option("--pack-board", default="host-cpu", show_default=True, help="Board of the pack's device.")
@click.option("--pack-device", default=None, help="Device id in --pack-spec (default: its first device on the board).")
@click.option("--pack-version", type=click.IntRange(min=1), default=None,
              help="The pack's version (monotonic per device; default: seconds since the epoch).")
@click.option("--key", "key_path", default=None, type=click.Path(dir_okay=False),
              help="Ed25519 signing key (default $SITEWARDEN_SIGNING_KEY, then keys/signing.key.pem).")
def teacher_round(samples: Path, out: Path | None, variant: str, seed: int, smoke: bool, from_footage: bool,
                  control: bool, min_real_gain: float, max_sim_drop: float, publish_zoo: bool,
                  pack_spec: Path | None, pack_board: str, pack_device: str | None, pack_version: int | None,
                  key_path: str | None):
    """Label hard samples with the teacher, fine-tune the shipped student, gate on the real holdout."""
    from .teacher import ZOO, GatePolicy, REPO, run_round

    if out is None:
        out = Path(tempfile.mkdtemp(prefix="sitewarden-teacher-")) if smoke else \
            REPO / "out" / "teacher" / f"{variant}-seed{seed}"
    if from_footage:
        n = harvest_footage(samples, variant, limit=8 if smoke else None)
        click.echo(f"harvested {n} hard samples from the training footage into {samples}")
    args = [f"--samples {samples}"] + (["--from-footage"] if from_footage else []) + [f"--variant {variant}",
                                                                                         f"--seed {seed}"]
    if smoke:
        args.append("--smoke")
    if (min_real_gain, max_sim_drop) != (0.01, 0.02):
        args += [f"--min-real-gain {min_real_gain}", f"--max-sim-drop {max_sim_drop}"]
    from distill.detector.finetune import CheckpointMismatch
    try:
        report = run_round(samples, out, variant=variant, smoke=smoke, seed=seed, control=control,
                           policy=GatePolicy(min_real_gain, max_sim_drop), publish_zoo=publish_zoo,
                           command="python build.py teacher-round " + " ".join(args), log=click.echo)
    except CheckpointMismatch as e:
        click.echo(f"teacher-round: {e}", err=True)
        sys.exit(2)
    if "candidate" in report:
        c, n = report["current"], report["candidate"]
        click.echo(f"real AP50 {c['real_AP50']:.4f} -> {n['real_AP50']:.4f}; sim person {c['sim_person_AP50']:.4f} -> "
                   f"{n['sim_person_AP50']:.4f}; sim machine {c['sim_machine_AP50']:.4f} -> {n['sim_machine_AP50']:.4f}")
    if report["published"] and pack_spec is not None:
        import time as _time

        from .teacher import build_pack
        device = pack_device or _first_device(pack_spec, pack_board)
        info = build_pack(out / "publish" / "detector" / variant, pack_spec, pack_board, device,
                          pack_version or int(_time.time()), out / "publish" / f"{device}-{variant}.swpack",
                          variant=variant, key_path=key_path, log=lambda m: None)
        click.echo(f"model pack {info['pack']} (version {info['version']}, tiers {info['tiers']}): push it to "
                   f"devices from the VMS repository or with runtime.agent.client.push_pack")
    click.echo(f"{'PUBLISHED' if report['published'] else 'kept the current model'}: "
               + "; ".join(report["verdict"]["reasons"]) + f"  -> {out}")
    sys.exit(0)


def harvest_footage(samples: Path, variant: str = "det-s256", limit: int | None = None,
                    zoo: Path | None = None, log=click.echo) -> int:
    """Fill ``samples`` with what devices would upload from the training footage (see
    ``distill.detector.harvest``); returns the number written."""
    from compiler.modelcard import read_card
    from distill.detector.harvest import harvest

    from .teacher import ZOO, write_sample
    folder = Path(zoo or ZOO) / "detector" / variant
    card = read_card(folder)
    picked = harvest(folder / card.file, int(card.inputs[0].shape[-1]), limit=limit, log=log)
    for image, meta in picked:
        write_sample(samples, image, meta)
    return len(picked)


def _first_device(spec: Path, board: str) -> str:
    from compiler.boards import load_board_profiles
    from compiler.devices import devices_on_board
    from compiler.spec import load_spec
    result = load_spec(str(spec), boards=load_board_profiles())
    devices = devices_on_board(result.spec, board) if result.ok else []
    if not devices:
        raise click.BadParameter(f"no device on {board} in {spec}", param_hint="--pack-spec")
    return devices[0].id
