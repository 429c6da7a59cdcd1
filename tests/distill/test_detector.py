"""Detector distillation: export checks, NPU operator set, pseudo-label fusion, targets, the smoke
path end to end, and the committed cards."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from compiler.modelcard import read_card, sha256_of, zoo  # noqa: E402
from distill.detector import labels as L  # noqa: E402
from distill.detector.data import targets  # noqa: E402
from distill.detector.export import export, operators  # noqa: E402
from distill.detector.model import NPU_OPS, STRIDE, Arch, Student  # noqa: E402
from distill.detector.variants import SMALLEST, VARIANTS  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = Arch(64, (8, 8, 16, 16, 16), (1, 1, 1, 2), 16)
TEACHER_MACS = 617_000_000


def trained_like(arch: Arch) -> Student:
    """A student with non-trivial BatchNorm statistics (so folding is really exercised)."""
    torch.manual_seed(0)
    m = Student(arch)
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.rand(4, 3, arch.size, arch.size))
    return m.eval()


def test_onnx_matches_torch_and_uses_npu_operators_only(tmp_path):
    m = trained_like(TINY)
    path = export(m, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    assert set(operators(path)) <= NPU_OPS, operators(path)
    assert "BatchNormalization" not in operators(path)
    from compiler.quantize import session
    x = torch.rand(1, 3, TINY.size, TINY.size)
    heat, box = session(path).run(None, {"images": x.numpy()})
    with torch.no_grad():
        th, tb = m(x)
    assert heat.shape == (1, 2, TINY.size // STRIDE, TINY.size // STRIDE)
    np.testing.assert_allclose(heat, th.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(box, tb.numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_architectures_export_to_npu_operators(tmp_path, name):
    v = VARIANTS[name]
    path = export(Student(v.arch).eval(), tmp_path / "m.onnx")
    assert set(operators(path)) <= NPU_OPS


def test_smallest_variant_has_at_most_a_fifth_of_the_teacher_macs(tmp_path):
    from compiler.onnxinfo import analyse
    path = export(Student(VARIANTS[SMALLEST].arch).eval(), tmp_path / "m.onnx")
    assert analyse(path).macs <= TEACHER_MACS / 5


def test_kd_fusion_confirms_interpolates_and_adds_blobs():
    box = np.array([10, 10, 30, 60], np.float32)
    teacher = [(box[None] + t, np.array([0.9 if t in (0, 4) else 0.05], np.float32)) for t in range(5)]
    teacher[2] = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    blobs = [np.array([[12 + t, 8, 32 + t, 62]], np.float32) for t in range(5)] + []
    blobs[3] = np.concatenate([blobs[3], [[100, 100, 120, 110]]]).astype(np.float32)   # unconfirmed blob
    lab, ign, stats = L.fuse_kd(teacher, blobs)
    assert [len(x) for x in lab] == [1, 1, 1, 1, 1]
    assert stats["teacher"] == 2 and stats["interpolated"] == 3
    np.testing.assert_allclose(lab[2][0], box + 2)
    assert len(ign[3]) == 1 and ign[3][0][0] == 100


def test_nokd_fusion_uses_long_upright_blob_tracks_only():
    person = [np.array([[10 + t, 10, 30 + t, 60]], np.float32) for t in range(6)]
    car = [np.array([[100, 100, 160, 120]], np.float32) for _ in range(6)]
    blobs = [np.concatenate([p, c]) for p, c in zip(person, car)]
    lab, ign, _ = L.fuse_nokd(blobs)
    assert all(len(x) == 1 and x[0][0] < 50 for x in lab)
    assert all(len(x) == 1 and x[0][0] == 100 for x in ign)


def test_targets_peak_box_and_ignore():
    objs = np.array([[20, 20, 44, 60, 0]], np.float32)
    ign = np.array([[0, 0, 16, 16, -1]], np.float32)
    heat, mask, box, w = targets(objs, ign, 64, STRIDE, 2, machine_known=False)
    i, j = np.unravel_index(heat[0].argmax(), heat[0].shape)
    assert heat[0, i, j] == 1.0 and (i, j) == (5, 4)
    np.testing.assert_allclose(box[:, i, j], [20, 20, 44, 60])
    assert w[i, j] > 0 and mask[0, 0, 0] == 0 and mask[1].sum() == 0   # no machine labels on real frames


def test_smoke_path_end_to_end(tmp_path, monkeypatch):
    from sim.realdata import SharedDataMissing, data_root
    try:
        data_root()
    except SharedDataMissing:
        pytest.skip("shared data not available")
    from click.testing import CliRunner

    from distill.cli import distill
    monkeypatch.setenv("SITEWARDEN_CACHE", str(tmp_path / "cache"))
    t0 = time.perf_counter()
    res = CliRunner().invoke(distill, ["detector", "--smoke", "--out", str(tmp_path / "zoo")])
    wall = time.perf_counter() - t0
    assert res.exit_code == 0, res.output + repr(res.exception)
    folder = tmp_path / "zoo" / "detector" / SMALLEST
    card = read_card(folder, verify=True)
    assert card.sha256 == sha256_of(folder / "model.onnx")
    assert card.decoder == "centernet-ltrb" and card.classes == ["person", "machine"]
    assert set(card.costs.operators) <= NPU_OPS
    assert {m.data for m in card.metrics} == {"real", "synthetic"}
    assert wall < 60, f"smoke path took {wall:.0f}s"


def test_committed_detector_cards_verify():
    cards = zoo(REPO / "models", task="detector", verify=True)
    if not cards:
        pytest.skip("no detector variants committed yet")
    for card in cards:
        assert set(card.costs.operators) <= NPU_OPS, card.variant
        assert card.metric("AP50_person", "real") is not None, card.variant
    small = [c for c in cards if c.variant == SMALLEST]
    assert small and small[0].costs.macs <= TEACHER_MACS / 5


def test_close_up_zooms_only_sim_frames_in_training():
    """Recipe.close_up (off in the committed recipes): a share of SIM training frames placed at a
    1.35-3x zoom; real frames and evaluation keep the usual placement."""
    from distill.detector.data import CLOSE_UP_ZOOM, FrameSet, close_up_zoom
    from distill.detector.train import batch_arrays

    img = np.zeros((4, 90, 160, 3), np.uint8)
    box = np.array([[70.0, 30.0, 90.0, 70.0, 0.0]], np.float32)   # one person, 40 px tall
    frames = FrameSet(img, [box] * 4, [np.zeros((0, 5), np.float32)] * 4, np.array([True, True, True, False]),
                      ["day"] * 4, ["s"] * 4, ["sim", "sim", "sim", "real"])

    rng = np.random.default_rng(0)
    zooms = [close_up_zoom(rng, 0.33) for _ in range(3000)]
    picked = [z for z in zooms if z is not None]
    assert 0.30 < len(picked) / len(zooms) < 0.36
    assert min(picked) >= CLOSE_UP_ZOOM[0] and max(picked) <= CLOSE_UP_ZOOM[1]
    # same seeds and steps: with close_up 0 the batches are exactly the recipe's usual ones; with 1
    # every sim frame changes and the real frame does not
    base = [batch_arrays(frames, [0, 3], 64, 2, 0, s)[0] for s in range(5)]
    off = [batch_arrays(frames, [0, 3], 64, 2, 0, s, close_up=0.0)[0] for s in range(5)]
    on = [batch_arrays(frames, [0, 3], 64, 2, 0, s, close_up=1.0)[0] for s in range(5)]
    ev = [batch_arrays(frames, [0, 3], 64, 2, 0, s, train=False, close_up=1.0)[0] for s in range(5)]
    ev0 = [batch_arrays(frames, [0, 3], 64, 2, 0, s, train=False)[0] for s in range(5)]
    for b, o, n, e, e0 in zip(base, off, on, ev, ev0):
        assert (b == o).all() and (e == e0).all()
        assert (n[1] == b[1]).all()            # the real frame: untouched
    assert any((n[0] != b[0]).any() for n, b in zip(on, base))   # sim frames: placed differently
