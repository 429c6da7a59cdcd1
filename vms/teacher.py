"""The VMS teacher loop: hard samples -> teacher labels -> fine-tuned student -> gate -> publish.

    python build.py teacher-round --samples DATA/hard_samples [--out DIR] [--smoke]

Hard samples are files, one pair per sample, as the VMS intake stores them::

    <data_dir>/hard_samples/<id>.jpg    the frame (JPEG)
    <data_dir>/hard_samples/<id>.json   {id, device, camera, t, reason, boxes, source, event_id}

``reason`` is ``low_confidence`` or ``disagreement`` (chosen on the device by
``runtime.hardsample``) or ``false_alarm`` (an operator's mark, :func:`false_alarm_sample`);
``boxes`` are the student's ``[x1, y1, x2, y2, score]`` in image pixels.

A round (:func:`run_round`): label the samples with the real teacher as the detector
distillation does (``distill.detector.hard``), fine-tune the CURRENT shipped student from its
weights on the original training mix + the hard samples (``distill.detector.finetune``), export
ONNX + card, evaluate current and candidate on the hand-checked real holdout
(``data/labels/real_holdout.json``: never teacher labels) and on the sim holdout, and
:func:`gate`: the candidate is published only if it is better on the real holdout by at least
``min_real_gain`` and loses no more than ``max_sim_drop`` AP50 on the sim holdout (person and
machine). Otherwise the current student stays, and the report says why.

This module imports neither fastapi nor torch at import time; the job imports ``distill`` (torch)
inside :func:`run_round` only.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "models"
SAMPLE_KEYS = ("id", "device", "camera", "t", "reason", "boxes", "source", "event_id")
REASONS = ("low_confidence", "disagreement", "false_alarm")
THREADS = 1


# ============================================================================ hard samples on disk

@dataclass(frozen=True)
class HardSample:
    id: str
    device: str
    camera: str
    t: float
    reason: str
    boxes: list                    # [[x1, y1, x2, y2, score], ...] image px (the student's)
    source: str                    # "device" | "false_alarm"
    event_id: str | None
    image_path: Path
    extra: dict = field(default_factory=dict)   # anything else in the JSON (e.g. clip, frame_index)

    def image(self) -> np.ndarray:
        import cv2
        img = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{self.image_path}: not a readable image")
        return img


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_sample(folder: Path, image, meta: dict) -> HardSample:
    """Store one hard sample as ``<id>.jpg`` + ``<id>.json`` (image: JPEG bytes or a BGR array)."""
    missing = [k for k in ("id", "camera", "t", "reason") if k not in meta]
    if missing:
        raise ValueError(f"hard sample metadata lacks {missing}")
    if meta["reason"] not in REASONS:
        raise ValueError(f"reason {meta['reason']!r} is not one of {REASONS}")
    sid = str(meta["id"])
    if not sid or "/" in sid or sid.startswith("."):
        raise ValueError(f"bad sample id {sid!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not isinstance(image, (bytes, bytearray)):
        import cv2
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise ValueError("could not encode the frame as JPEG")
        image = buf.tobytes()
    full = {"device": "", "boxes": [], "source": "device", "event_id": None, **meta}
    _atomic_write(folder / f"{sid}.jpg", bytes(image))
    _atomic_write(folder / f"{sid}.json", (json.dumps(full, sort_keys=True) + "\n").encode())
    return _from_meta(full, folder / f"{sid}.jpg")


def _from_meta(meta: dict, image_path: Path) -> HardSample:
    return HardSample(id=str(meta["id"]), device=str(meta.get("device", "")), camera=str(meta["camera"]),
                      t=float(meta["t"]), reason=str(meta["reason"]), boxes=list(meta.get("boxes") or []),
                      source=str(meta.get("source", "device")), event_id=meta.get("event_id"),
                      image_path=image_path, extra={k: v for k, v in meta.items() if k not in SAMPLE_KEYS})


def read_samples(folder: Path) -> list[HardSample]:
    """Every complete sample in ``folder`` (a JSON with its JPEG beside it), by (camera, t, id).
    A JSON without its image, or one that does not parse, is skipped (an upload in progress)."""
    out = []
    for meta_path in sorted(Path(folder).glob("*.json")):
        img = meta_path.with_suffix(".jpg")
        if not img.exists():
            continue
        try:
            meta = json.loads(meta_path.read_text())
            out.append(_from_meta(meta, img))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda s: (s.camera, s.t, s.id))


def false_alarm_sample(folder: Path, event: dict, snapshot_jpeg: bytes, boxes: list | None = None) -> HardSample:
    """An operator's false-alarm mark on ``event`` (the event's JSON dict) as a hard sample: its
    snapshot, and the student boxes that raised it (``boxes``, or the event's ``details.boxes`` /
    ``details.box`` when the device put them there). The id is ``fa_<event id>`` (as the VMS's
    false-alarm route names it), so marking the same event twice stores it once."""
    detail = event.get("details") or event.get("detail") or {}
    if boxes is None:
        boxes = detail.get("boxes") or ([detail["box"]] if detail.get("box") else [])
    boxes = [list(map(float, b))[:4] + [float(b[4]) if len(b) > 4 else 1.0] for b in boxes]
    meta = {"id": f"fa_{event['id']}", "device": event.get("device", ""), "camera": event.get("camera", ""),
            "t": float(event.get("t_event", event.get("t", time.time()))), "reason": "false_alarm",
            "boxes": boxes, "source": "false_alarm", "event_id": event["id"]}
    return write_sample(folder, snapshot_jpeg, meta)


# ============================================================================ the gate

@dataclass(frozen=True)
class GatePolicy:
    min_real_gain: float = 0.01   # candidate real-holdout AP50 must exceed the current by this much
    max_sim_drop: float = 0.02    # and lose at most this much sim-holdout AP50 (person, machine)


@dataclass(frozen=True)
class Verdict:
    publish: bool
    reasons: list


def gate(current: dict, candidate: dict, policy: GatePolicy = GatePolicy()) -> Verdict:
    """Publish or keep. ``current`` / ``candidate``: {"real_AP50", "sim_person_AP50",
    "sim_machine_AP50"} (the sim keys optional: a missing one is not checked)."""
    reasons, ok = [], True
    gain = candidate["real_AP50"] - current["real_AP50"]
    if gain >= policy.min_real_gain:
        reasons.append(f"real holdout AP50 {current['real_AP50']:.4f} -> {candidate['real_AP50']:.4f} "
                       f"({gain:+.4f} >= +{policy.min_real_gain})")
    else:
        ok = False
        reasons.append(f"real holdout AP50 {current['real_AP50']:.4f} -> {candidate['real_AP50']:.4f} "
                       f"({gain:+.4f}, needs >= +{policy.min_real_gain})")
    for key in ("sim_person_AP50", "sim_machine_AP50"):
        if key not in current or key not in candidate:
            continue
        drop = current[key] - candidate[key]
        if drop > policy.max_sim_drop:
            ok = False
            reasons.append(f"{key} {current[key]:.4f} -> {candidate[key]:.4f} drops {drop:.4f} "
                           f"> {policy.max_sim_drop}")
        else:
            reasons.append(f"{key} {current[key]:.4f} -> {candidate[key]:.4f} (drop {max(drop, 0):.4f} "
                           f"<= {policy.max_sim_drop})")
    return Verdict(ok, reasons)


# ============================================================================ the round

def holdout_parts(holdout) -> dict:
    """The real holdout as evaluated: ``all`` (the 53 frames the model cards quote) and
    ``headline`` without the frames flagged ``near_duplicate_of_train`` in the labels file (the
    labels README asks for that in any headline number; the gate uses it)."""
    from distill.detector.data import HOLDOUT_LABELS, RealHoldout
    coco = json.loads(Path(HOLDOUT_LABELS).read_text())
    dup = {im["file_name"] for im in coco["images"] if im.get("near_duplicate_of_train")}
    keep = [i for i, k in enumerate(holdout.keys) if k not in dup]
    sub = RealHoldout([holdout.keys[i] for i in keep], [holdout.images[i] for i in keep],
                      [holdout.boxes[i] for i in keep], [holdout.difficult[i] for i in keep])
    return {"headline": sub, "all": holdout}


def evaluate(onnx_path: Path, size: int, holdouts: dict, sim) -> dict:
    """Real AP50 (headline and all frames, with P/R at the deployment threshold) and sim AP50."""
    from distill.detector.evaluate import DEPLOY_CONF, OnnxStudent, eval_real, eval_sim, student_predict
    model = OnnxStudent(onnx_path, size, threads=THREADS)
    real = {k: eval_real(student_predict(model), h, conf=DEPLOY_CONF) for k, h in holdouts.items()}
    s = eval_sim(model, sim)
    return {"real_AP50": real["headline"]["AP50"], "real_AP50_all_frames": real["all"]["AP50"],
            "sim_person_AP50": s["person"]["all"], "sim_machine_AP50": s["machine"]["all"],
            "real": real, "sim": s}


def _candidate_card(current, onnx_path: Path, ev: dict, info: dict, command: str, seed: int, n_samples: int,
                    verdict: Verdict | None, smoke: bool):
    from compiler.modelcard import Metric, costs_of, sha256_of
    from distill.common import torch_version
    from distill.detector.pipeline import metrics_of
    metrics = metrics_of({"real": ev["real"]["all"], "sim": ev["sim"]}, command)
    h = ev["real"]["headline"]
    metrics.insert(1, Metric(name="AP50_person_headline", value=h["AP50"], data="real", command=command,
                             split=f"hand-checked real holdout without the frames flagged near_duplicate_of_train "
                                   f"({h['frames']} frames)"))
    training = current.training.model_copy(update={
        "command": command, "seed": seed, "steps": info["steps"], "seconds": info["seconds"],
        "framework": torch_version(),
        "data": [*current.training.data, f"fine-tuned from {current.variant} (sha256 {current.sha256[:12]}...) "
                 f"on that mix + {n_samples} teacher-labelled hard samples (VMS teacher loop)"]})
    notes = (f"Teacher-loop candidate of {current.variant}: {current.notes} "
             f"Fine-tuned by vms/teacher.py ({info['steps']} steps, batch shares {info['batch_shares']}). "
             + (f"Gate: {'publish' if verdict.publish else 'keep current'}: {'; '.join(verdict.reasons)}."
                if verdict else "") + (" SMOKE RUN: the numbers mean nothing." if smoke else ""))
    return current.model_copy(update={"sha256": sha256_of(onnx_path), "bytes": onnx_path.stat().st_size,
                                      "costs": costs_of(onnx_path), "metrics": metrics, "training": training,
                                      "notes": notes})


def run_round(samples_dir: Path, out_dir: Path, *, variant: str = "det-s256", zoo: Path = ZOO,
              smoke: bool = False, seed: int = 0, recipe=None, policy: GatePolicy = GatePolicy(),
              publish_zoo: bool = False, control: bool = False, command: str = "", log=print) -> dict:
    """One teacher-loop round (see the module docstring). Writes ``out_dir/round.json``, the
    evaluated candidate under ``out_dir/candidate/``, and, only when the gate passes, the published
    model under ``out_dir/publish/`` (and into ``zoo`` with ``publish_zoo``). ``control`` also
    trains the same schedule without the hard samples, to show what they add."""
    t0 = time.perf_counter()
    from compiler.modelcard import read_card, write_card
    from distill.common import seed_everything
    from distill.detector import data as D
    from distill.detector import finetune as F
    from distill.detector import hard as H
    from distill.detector.export import export
    from distill.detector.pipeline import SMOKE_CLIPS, load_data
    from distill.detector.variants import VARIANTS

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    v = VARIANTS[variant]
    shipped_dir = Path(zoo) / "detector" / variant
    current_card = read_card(shipped_dir)
    shipped = shipped_dir / current_card.file
    recipe = recipe or (F.SMOKE_RECIPE if smoke else F.FinetuneRecipe())
    seed_everything(seed, threads=THREADS)
    timings: dict = {}

    samples = read_samples(samples_dir)
    if smoke:
        samples = samples[:8]
    log(f"teacher round: {len(samples)} hard samples from {samples_dir}, current {variant} "
        f"(sha256 {current_card.sha256[:12]})")
    report = {"round": "teacher-loop", "variant": variant, "seed": seed, "smoke": smoke, "command": command,
              "samples": {"dir": str(samples_dir), "count": len(samples),
                          "by_reason": {r: sum(s.reason == r for s in samples) for r in REASONS},
                          "by_camera": {c: sum(s.camera == c for s in samples) for c in sorted({s.camera for s in samples})}},
              "gate_policy": asdict(policy), "recipe": asdict(recipe)}
    if not samples:
        report.update(published=False, verdict={"publish": False, "reasons": ["no hard samples: nothing to learn"]})
        (out_dir / "round.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
        return report

    try:
        ck_seed = current_card.training.seed          # the shipped model's own training seed
        current = F.load_current(variant, shipped, ck_seed, scratch=out_dir)
        start = f"checkpoint {F.checkpoint_path(variant, ck_seed)} (export checked against {shipped})"
    except F.CheckpointMismatch as e:
        if not smoke:
            raise
        from distill.detector.model import Student
        current = Student(v.arch).eval()
        start = f"SMOKE: fresh weights ({e})"
    log(f"  start: {start}")
    report["start"] = start

    ts = time.perf_counter()
    hs = [H.Sample(s.id, s.camera, s.t, s.reason, s.image(), np.asarray(s.boxes, np.float32).reshape(-1, 5))
          for s in samples]
    hard, label_stats = H.frameset(hs, log=log)
    timings["label_s"] = round(time.perf_counter() - ts, 1)
    report["labels"] = label_stats

    ts = time.perf_counter()
    data = load_data(v, smoke, log)
    real, _ = D.real_frames("kd", smoke, SMOKE_CLIPS if smoke else D.REAL_TRAIN_CLIPS, log)
    base = D.FrameSet.concat([real, data["sim_train"]])
    sim_hold = data["sim_holdout"]() if callable(data["sim_holdout"]) else data["sim_holdout"]
    holdouts = holdout_parts(data["real_holdout"])
    timings["data_s"] = round(time.perf_counter() - ts, 1)

    ts = time.perf_counter()
    model, info = F.finetune(current, D.FrameSet.concat([hard, base]), recipe, seed, log=log)
    cand_dir = out_dir / "candidate" / "detector" / variant
    cand_onnx = export(model, cand_dir / "model.onnx", seed)
    timings["train_s"] = round(time.perf_counter() - ts, 1)

    ts = time.perf_counter()
    size = v.arch.size
    ev_cur = evaluate(shipped, size, holdouts, sim_hold)
    ev_cand = evaluate(cand_onnx, size, holdouts, sim_hold)
    timings["eval_s"] = round(time.perf_counter() - ts, 1)
    keys = ("real_AP50", "real_AP50_all_frames", "sim_person_AP50", "sim_machine_AP50")
    report["current"] = {k: ev_cur[k] for k in keys} | {"real": ev_cur["real"]}
    report["candidate"] = {k: ev_cand[k] for k in keys} | {"real": ev_cand["real"], "train": info}

    if control:
        ts = time.perf_counter()
        cmodel, cinfo = F.finetune(current, base, recipe, seed, log=lambda m: None)
        ctrl = export(cmodel, out_dir / "control" / "model.onnx", seed)
        ev_ctrl = evaluate(ctrl, size, holdouts, sim_hold)
        report["control_no_hard_samples"] = {k: ev_ctrl[k] for k in keys} | {"train": cinfo}
        timings["control_s"] = round(time.perf_counter() - ts, 1)

    verdict = gate(ev_cur, ev_cand, policy)
    report["verdict"] = asdict(verdict)
    card = _candidate_card(current_card, cand_onnx, ev_cand, info, command, seed, len(samples), verdict, smoke)
    write_card(card, cand_dir)
    report["published"] = False
    if verdict.publish:
        report["publish"] = publish(cand_dir, out_dir / "publish", variant, zoo=zoo if publish_zoo else None)
        report["published"] = True
    log(f"  gate: {'PUBLISH' if verdict.publish else 'KEEP CURRENT'}: " + "; ".join(verdict.reasons))
    timings["wall_s"] = round(time.perf_counter() - t0, 1)
    report["timings"] = timings
    (out_dir / "round.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    return report


def publish(candidate_dir: Path, publish_dir: Path, variant: str, zoo: Path | None = None) -> dict:
    """Publish a gated candidate: copy model + card to ``publish_dir/detector/<variant>/`` (what a
    model pack is built from and what the VMS pushes to devices), and into ``zoo`` when given (the
    card's training command then reproduces it). Returns where it went."""
    from compiler.modelcard import read_card
    card = read_card(candidate_dir)          # verifies the sha256 against the file
    dest = Path(publish_dir) / "detector" / variant
    dest.mkdir(parents=True, exist_ok=True)
    for name in (card.file, "card.yaml"):
        shutil.copy2(Path(candidate_dir) / name, dest / name)
    out = {"dir": str(dest), "sha256": card.sha256}
    if zoo is not None:
        z = Path(zoo) / "detector" / variant
        for name in (card.file, "card.yaml"):
            shutil.copy2(Path(candidate_dir) / name, z / name)
        out["zoo"] = str(z)
    return out


def build_pack(candidate_dir: Path, spec_path: Path, board: str, device: str, pack_version: int, out_path: Path,
               variant: str = "det-s256", zoo: Path = ZOO, key_path: str | None = None, log=print) -> dict:
    """A signed model pack (``.swpack``, ``runtime/modelpack.py``) of ``device``'s detector tiers,
    built by the image builder from the zoo with the published candidate in place of ``variant``
    (quantized and gated like any zoo model). The VMS repository pushes it to devices through their
    agents (``runtime.agent.client.push_pack``). Returns where it went and its tiers."""
    import tempfile

    from compiler.boards import load_board_profiles
    from compiler.builder import build_images
    from compiler.keys import load_private_key
    from compiler.modelpack import pack_from_image
    from compiler.pack import write_if_changed
    from compiler.spec import load_spec
    from runtime.image import read_image

    profiles = load_board_profiles()
    result = load_spec(str(spec_path), boards=profiles)
    if not result.ok:
        raise ValueError(f"{spec_path}: " + "; ".join(str(e) for e in result.errors))
    key = load_private_key(key_path)
    with tempfile.TemporaryDirectory(prefix="sitewarden-pack-") as tmp:
        tz = Path(tmp) / "zoo"
        for task_dir in Path(zoo).iterdir():           # the zoo, linked, with the candidate swapped in
            if task_dir.is_dir():
                for vdir in task_dir.iterdir():
                    if vdir.is_dir():
                        (tz / task_dir.name).mkdir(parents=True, exist_ok=True)
                        (tz / task_dir.name / vdir.name).symlink_to(vdir.resolve(), target_is_directory=True)
        dest = tz / "detector" / variant
        if dest.is_symlink():
            dest.unlink()
        shutil.copytree(candidate_dir, dest)
        built = build_images(result.spec, Path(spec_path), result.document.files, profiles[board], Path(tmp) / "img",
                             key_path=key_path, progress=log, zoo_dir=tz)
        chosen = [b for b in built if b.device == device]
        if not chosen:
            raise ValueError(f"no device {device!r} on {board} in {spec_path}")
        image = read_image(chosen[0].path, [key.public_key()], board=board)
        blob, manifest = pack_from_image(image, key, pack_version, tasks=("detector",))
    write_if_changed(Path(out_path), blob)
    return {"pack": str(out_path), "version": pack_version, "tiers": manifest.plan["tiers"]}
