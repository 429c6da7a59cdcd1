"""The teacher loop: device-side hard-sample selection, sample files, the publish gate (on metrics
and on real evaluations of a deliberately degraded model), and a --smoke round end to end."""
from __future__ import annotations

import json
import time
from contextlib import nullcontext as does_not_raise
from pathlib import Path

import numpy as np
import pytest

from runtime.hardsample import HardSamplePolicy, HardSampleSelector, hard_reason
from vms.teacher import GatePolicy, false_alarm_sample, gate, read_samples, write_sample

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "detector" / "det-s256" / "model.onnx"


# ----------------------------------------------------------------------------- selection (device side)

@pytest.mark.parametrize("scores, n_tracks, want", [
    ([], None, None),                              # nothing seen, no tracker
    ([0.1, 0.15], None, None),                     # below the band: background noise
    ([0.35], None, "low_confidence"),              # in the band
    ([0.2], None, "low_confidence"),               # band is [low, high)
    ([0.5], None, None),                           # confident
    ([0.9, 0.3], None, None),                      # best is confident
    ([0.9, 0.8], 2, None),                         # detector and tracker agree
    ([0.9], 2, "disagreement"),                    # a confirmed track the detector lost
    ([0.9, 0.7, 0.6], 1, "disagreement"),          # spurious boxes vs one track
    ([0.4], 1, "disagreement"),                    # a track the detector sees only weakly
    ([0.4], 0, "low_confidence"),
])
def test_hard_reason(scores, n_tracks, want):
    assert hard_reason(np.array(scores, np.float32), n_tracks) == want


@pytest.mark.parametrize("kwargs, expect", [
    ({}, does_not_raise()),
    ({"low": 0.5, "high": 0.2}, pytest.raises(ValueError)),
    ({"high": 1.5}, pytest.raises(ValueError)),
    ({"count_gap": 0}, pytest.raises(ValueError)),
    ({"min_interval_s": -1}, pytest.raises(ValueError)),
])
def test_policy_validation(kwargs, expect):
    with expect:
        HardSamplePolicy(**kwargs)


def test_selector_rate_limits_per_camera():
    sel = HardSampleSelector(HardSamplePolicy(min_interval_s=2.0))
    assert sel.offer("a", 0.0, [0.3]) == "low_confidence"
    assert sel.offer("a", 1.0, [0.3]) is None          # too soon for camera a
    assert sel.offer("b", 1.0, [0.3]) == "low_confidence"
    assert sel.offer("a", 1.5, [0.9]) is None           # not hard (and too soon)
    assert sel.offer("a", 2.0, [0.9]) is None           # not hard: does not reset the clock
    assert sel.offer("a", 2.0, [0.25]) == "low_confidence"


# ----------------------------------------------------------------------------- sample files

def test_samples_round_trip_and_false_alarm(tmp_path):
    img = np.full((90, 160, 3), 80, np.uint8)
    write_sample(tmp_path, img, {"id": "s2", "device": "d1", "camera": "cam", "t": 2.0, "reason": "low_confidence",
                                 "boxes": [[1, 2, 30, 60, 0.3]], "source": "device", "event_id": None})
    write_sample(tmp_path, img, {"id": "s1", "device": "d1", "camera": "cam", "t": 1.0, "reason": "disagreement"})
    (tmp_path / "half.json").write_text(json.dumps({"id": "half"}))   # upload in progress: no JPEG
    ev = {"id": "e" * 32, "device": "d1", "camera": "cam", "t_event": 3.0, "details": {"box": [5, 5, 40, 70]}}
    fa = false_alarm_sample(tmp_path, ev, (tmp_path / "s1.jpg").read_bytes())
    assert fa.id == f"fa_{'e' * 32}" and fa.reason == "false_alarm" and fa.source == "false_alarm"
    assert fa.boxes == [[5.0, 5.0, 40.0, 70.0, 1.0]]
    got = read_samples(tmp_path)
    assert [s.id for s in got] == ["s1", "s2", fa.id]           # by camera, then time
    assert got[1].boxes == [[1, 2, 30, 60, 0.3]] and got[1].image().shape == (90, 160, 3)
    with pytest.raises(ValueError):
        write_sample(tmp_path, img, {"id": "x", "camera": "c", "t": 0, "reason": "because"})
    with pytest.raises(ValueError):
        write_sample(tmp_path, img, {"id": "../x", "camera": "c", "t": 0, "reason": "low_confidence"})


# ----------------------------------------------------------------------------- the gate

CUR = {"real_AP50": 0.75, "sim_person_AP50": 0.53, "sim_machine_AP50": 0.71}


@pytest.mark.parametrize("cand, publish", [
    ({"real_AP50": 0.80, "sim_person_AP50": 0.53, "sim_machine_AP50": 0.70}, True),    # better, sim within margin
    ({"real_AP50": 0.70, "sim_person_AP50": 0.60, "sim_machine_AP50": 0.80}, False),   # worse on real
    ({"real_AP50": 0.755, "sim_person_AP50": 0.53, "sim_machine_AP50": 0.71}, False),  # gain below the minimum
    ({"real_AP50": 0.90, "sim_person_AP50": 0.40, "sim_machine_AP50": 0.71}, False),   # sim collapse
    ({"real_AP50": 0.90, "sim_person_AP50": 0.53, "sim_machine_AP50": 0.60}, False),   # sim machine collapse
])
def test_gate_on_metrics(cand, publish):
    v = gate(CUR, cand, GatePolicy(min_real_gain=0.01, max_sim_drop=0.02))
    assert v.publish is publish, v.reasons
    assert v.reasons[0].startswith("real holdout AP50")


def _degraded(src: Path, dst: Path) -> Path:
    """The shipped student with noise on its heatmap and box heads (worse ranking and boxes)."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(str(src))
    rng = np.random.default_rng(0)
    for init in m.graph.initializer:
        if init.name in ("cls.weight", "box.weight"):
            a = numpy_helper.to_array(init).copy()
            a += rng.normal(0, 0.5, a.shape).astype(a.dtype)
            init.CopyFrom(numpy_helper.from_array(a, init.name))
    onnx.save(m, str(dst))
    return dst


def test_gate_refuses_a_degraded_candidate_and_accepts_a_better_one(tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        from distill.detector.data import real_holdout
        holdout = real_holdout(limit=12)
    except (FileNotFoundError, OSError) as e:   # no shared footage
        pytest.skip(str(e))
    if holdout is None or not SHIPPED.exists():
        pytest.skip("no holdout labels or no shipped detector")
    from vms.teacher import evaluate
    empty_sim = _tiny_sim()
    bad = _degraded(SHIPPED, tmp_path / "bad.onnx")
    parts = {"headline": holdout, "all": holdout}
    ev_good = evaluate(SHIPPED, 256, parts, empty_sim)
    ev_bad = evaluate(bad, 256, parts, empty_sim)
    assert ev_bad["real_AP50"] < ev_good["real_AP50"]
    assert not gate(ev_good, ev_bad).publish          # worse candidate: refused
    assert gate(ev_bad, ev_good).publish              # the better one (vs the degraded current): accepted


def _tiny_sim():
    from distill.detector.data import STORE, FrameSet
    img = np.full((1, STORE[1], STORE[0], 3), 114, np.uint8)
    img[0, 60:140, 100:130] = 30
    return FrameSet(img, [np.array([[100, 60, 130, 140, 0]], np.float32)], [np.zeros((0, 5), np.float32)],
                    np.ones(1, bool), ["day"], ["t"], ["sim"])


# ----------------------------------------------------------------------------- a smoke round

def test_smoke_round_end_to_end(tmp_path):
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from distill.detector.teacher import teacher_path
    from vms.teachercli import teacher_round
    if not teacher_path().exists():
        pytest.skip("the shared teacher is missing")
    samples, out = tmp_path / "hard_samples", tmp_path / "round"
    t0 = time.perf_counter()
    res = CliRunner().invoke(teacher_round, ["--samples", str(samples), "--out", str(out), "--smoke",
                                             "--from-footage"])
    wall = time.perf_counter() - t0
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert wall < 60, f"smoke round took {wall:.1f}s"
    report = json.loads((out / "round.json").read_text())
    assert 0 < report["samples"]["count"] <= 8
    assert all(json.loads(p.read_text())["split"] == "train" for p in samples.glob("*.json"))   # never the holdout
    assert (out / "candidate" / "detector" / "det-s256" / "model.onnx").exists()
    from compiler.modelcard import read_card
    card = read_card(out / "candidate" / "detector" / "det-s256")         # sha256 verified
    assert card.training.command.startswith("python build.py teacher-round")
    assert report["published"] == (out / "publish").exists() == report["verdict"]["publish"]


def test_published_candidate_becomes_a_signed_model_pack(tmp_path):
    """publish() + build_pack(): the candidate, swapped into the zoo, comes out as a verified pack
    with the detector tiers (what the VMS repository pushes to agents)."""
    pytest.importorskip("onnxruntime")
    from compiler.keys import new_key_pair
    from compiler.modelcard import read_card
    from runtime.modelpack import read_pack
    from vms.teacher import build_pack, publish
    if not SHIPPED.exists():
        pytest.skip("no shipped detector")
    cand = tmp_path / "candidate"
    cand.mkdir()
    for name in ("model.onnx", "card.yaml"):
        (cand / name).write_bytes((SHIPPED.parent / name).read_bytes())
    out = publish(cand, tmp_path / "publish", "det-s256")
    assert read_card(Path(out["dir"])).sha256 == out["sha256"]
    priv, pub, _ = new_key_pair(tmp_path / "keys")
    info = build_pack(Path(out["dir"]), REPO / "specs" / "demo-site.yaml", "host-cpu", "crane-cam", 3,
                      tmp_path / "p.swpack", key_path=str(priv), log=lambda m: None)
    from compiler.keys import load_public_keys
    _, pack = read_pack((tmp_path / "p.swpack").read_bytes(), load_public_keys([pub]), board="host-cpu")
    assert pack.version == 3 and "detector" in pack.models
    assert "det-s256" in [m.variant for m in pack.models["detector"]] == info["tiers"]["detector"]


# ----------------------------------------------------------------------------- teacher labels of hard samples

def test_hard_sample_labels_follow_the_distillation_rules():
    """Teacher labels per time-contiguous run: a strong hit is a person, a weak unconfirmed one is
    ignored, nothing is interpolated across a gap of seconds, and on a false-alarm sample the
    student's box over an ignored region becomes a negative."""
    from distill.detector.hard import Sample, frameset, label_camera
    img = np.full((234, 416, 3), 100, np.uint8)
    person = np.array([[100, 50, 140, 150]], np.float32)
    weak = np.array([[300, 60, 330, 140]], np.float32)
    none = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    answers = {"a": (person, np.array([0.9], np.float32)), "b": none,
               "c": (np.r_[person, weak], np.array([0.9, 0.2], np.float32)),
               "fa": (weak, np.array([0.2], np.float32))}
    samples = [Sample("a", "cam", 0.0, "low_confidence", img, np.zeros((0, 5), np.float32)),
               Sample("b", "cam", 5.0, "low_confidence", img, np.zeros((0, 5), np.float32)),
               Sample("c", "cam", 10.0, "disagreement", img, np.zeros((0, 5), np.float32)),
               Sample("fa", "cam", 20.0, "false_alarm", img, np.array([[301, 61, 331, 139, 0.4]], np.float32))]
    it = iter(samples)
    teacher = lambda _img: answers[next(it).id]   # noqa: E731 - called once per sample, in order
    lab, ign, _, stats = label_camera(samples, teacher)
    assert [len(x) for x in lab] == [1, 0, 1, 0]           # no box interpolated into "b"
    assert [len(x) for x in ign] == [0, 0, 1, 0]           # weak box ignored; the false alarm's is a negative
    assert stats["false_alarm_negatives"] == 1 and stats["segments"] == 4
    it = iter(samples)
    fs, _ = frameset(samples, teacher, log=lambda m: None)
    assert len(fs) == 4 and set(fs.source) == {"hard"} and not fs.machine_known.any()
    np.testing.assert_allclose(fs.objects[0][0, :4], person[0])   # 416x234 frames: store scale 1


def test_batch_shares_keep_the_original_real_sim_mix():
    """Hard samples take part of the real half of each batch; the control (no hard samples) gets
    the original half real, half sim."""
    pytest.importorskip("torch")
    from distill.detector.data import FrameSet
    from distill.detector.finetune import FinetuneRecipe, shares_of

    def fs(sources):
        n = len(sources)
        return FrameSet(np.zeros((n, 2, 2, 3), np.uint8), [np.zeros((0, 5))] * n, [np.zeros((0, 5))] * n,
                        np.zeros(n, bool), ["x"] * n, ["x"] * n, list(sources))
    r = FinetuneRecipe(batch=16, hard_fraction=0.25, real_fraction=0.5)
    assert shares_of(fs(["hard", "real", "sim"]), r)[1] == {"hard": 4, "real": 4, "sim": 8}
    assert shares_of(fs(["real", "sim"]), r)[1] == {"hard": 0, "real": 8, "sim": 8}
    assert shares_of(fs(["hard", "sim"]), r)[1] == {"hard": 8, "real": 0, "sim": 8}
    assert shares_of(fs(["hard", "real"]), r)[1] == {"hard": 4, "real": 12, "sim": 0}
