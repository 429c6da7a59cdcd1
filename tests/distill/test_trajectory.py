"""distill.trajectory: the smoke path end to end, ONNX vs torch, the card, the shipped files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from compiler.modelcard import ModelCardError, read_card, sha256_of  # noqa: E402
from runtime.forecast import OnnxForecaster, decode, encode  # noqa: E402
from tests.sim.test_realdata import require_shared_data  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "trajectory" / "traj-social-mm"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    require_shared_data()
    from distill.trajectory.pipeline import run

    out = tmp_path_factory.mktemp("zoo")
    report = run(out, seed=0, smoke=True, scenes=("hotel", "zara1"), log=lambda m: None)
    return out, report


def test_smoke_writes_onnx_card_and_report(smoke_run):
    out, report = smoke_run
    folder = out / "trajectory" / "traj-social-mm"
    card = read_card(folder)                       # verifies the sha256 too
    assert card.task == "trajectory" and card.precision == "fp32" and card.quantize is False
    assert card.preprocess.rate_hz == pytest.approx(2.5)
    assert "rotated" in card.preprocess.notes
    assert card.costs.params == report["params"]["student"] <= 50_000
    assert card.costs.opset == 17
    assert [i.name for i in card.inputs] == ["obs_local", "neighbours"]
    assert [o.name for o in card.outputs] == ["offsets", "path_offsets", "path_logits"]
    assert not {"LSTM", "GRU", "RNN", "Loop", "Scan"} & set(card.costs.operators)
    assert all(m.data == "real" for m in card.metrics)
    assert card.metric("ADE_m").value == pytest.approx(report["average"]["student_kd"]["ade"])
    assert "--smoke" in card.training.command and card.training.teacher
    assert set(report["scenes"]) == {"hotel", "zara1"}
    from distill.trajectory.entry import scene_of_file
    for scene, row in report["scenes"].items():
        assert {"cv", "teacher", "student_kd", "student_nokd", "entry", "entry_rules"} <= set(row)
        e = row["entry"]["min_lead_1.5"]["student"]
        assert e["entries"] + e["near_misses"] > 0
        # each fold tunes its warning rule on val files of the other sequences only
        assert row["entry_val_files"] and all(scene_of_file(f) != scene for f in row["entry_val_files"])
    assert set(report["entry"]) == {"student", "cv"} and set(report["entry_default"]) == {"student", "cv"}
    assert card.metric("entry_f1").value == pytest.approx(report["entry"]["student"]["f1"])
    assert card.metric("entry_f1_cv_baseline").value == pytest.approx(report["entry"]["cv"]["f1"])
    from runtime.forecast import EntryRule, entry_rules_from_notes
    rules = entry_rules_from_notes(card.preprocess.notes)
    assert set(rules) == {"model", "cv"}
    assert rules["model"] == EntryRule.from_dict(report["ship"]["entry_rules"]["model"])
    assert rules["model"].tau is not None and rules["cv"].tau is None   # the student warns on P(entry)
    # the runtime reads the shipped file as a multi-modal forecaster
    fc = OnnxForecaster(folder / card.file)
    assert fc.multimodal
    obs = np.cumsum(np.full((3, 8, 2), 0.4), axis=1)
    det, modes, probs = fc.predict_modes(obs)
    from distill.trajectory.multimodal import K
    assert det.shape == (3, 12, 2) and modes.shape == (3, K, 12, 2) and np.allclose(probs.sum(1), 1)
    assert report["paths_k"] == K and card.outputs[1].shape[1] == K
    from distill.trajectory.multimodal import MIN_OBS
    from runtime.forecast import min_obs_from_notes
    assert min_obs_from_notes(card.preprocess.notes) == MIN_OBS     # trained on padded short tracks: the runtime pads
    np.testing.assert_allclose(fc.predict(obs), det)
    json.loads((folder / "report.json").read_text())


def test_onnx_matches_torch(smoke_run, tmp_path):
    from distill.common import ExportError, export_onnx
    from distill.trajectory.models import MLPStudent

    torch.manual_seed(0)
    m = MLPStudent().eval()
    x = torch.randn(16, 8, 2)
    path = export_onnx(m, (x[:2],), tmp_path / "s.onnx", ["obs_local"], ["offsets"], check_inputs=(x,))
    fc = OnnxForecaster(path)
    obs = np.cumsum(np.random.default_rng(1).normal(0, 0.4, (16, 8, 2)), axis=1)
    enc, frame = encode(obs)
    with torch.no_grad():
        want = decode(m(torch.from_numpy(enc)).numpy(), frame)
    np.testing.assert_allclose(fc.predict(obs), want, atol=1e-4)
    # the social student: two inputs, neighbours built by the runtime from the other tracks
    from distill.trajectory.models import SocialMLPStudent
    from runtime.forecast import neighbour_features, scene_others

    torch.manual_seed(0)
    sm = SocialMLPStudent().eval()
    soc = neighbour_features(frame, scene_others(obs))
    assert (soc[:, :, 4] == 1).all()          # 15 others each, all within 8 m: the 4 nearest kept
    spath = export_onnx(sm, (torch.from_numpy(enc[:2]), torch.from_numpy(soc[:2])), tmp_path / "soc.onnx",
                        ["obs_local", "neighbours"], ["offsets"],
                        check_inputs=(torch.from_numpy(enc), torch.from_numpy(soc)))
    with torch.no_grad():
        want = decode(sm(torch.from_numpy(enc), torch.from_numpy(soc)).numpy(), frame)
    np.testing.assert_allclose(OnnxForecaster(spath).predict(obs), want, atol=1e-4)
    # a model whose export disagrees must be refused
    class Bad(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 12, 2) + float(torch.rand(()).item())
    with pytest.raises(ExportError):
        export_onnx(Bad(), (x[:2],), tmp_path / "b.onnx", ["obs_local"], ["offsets"], check_inputs=(x,))


def test_training_is_reproducible():
    require_shared_data()
    from distill.common import seed_everything
    from distill.trajectory import data
    from distill.trajectory.models import MLPStudent
    from distill.trajectory.train import Recipe, train

    tr = data.load("zara1", "train", neighbours=False, limit=600)
    va = data.load("zara1", "val", neighbours=False, limit=200)
    outs = []
    for _ in range(2):
        seed_everything(3)
        res = train(MLPStudent(), tr, va, Recipe(epochs=1, max_steps=3), seed=3)
        outs.append([p.detach().clone() for p in res.model.parameters()])
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_zones_file_is_current():
    require_shared_data()
    import yaml

    from distill.trajectory import entry

    doc = yaml.safe_load(entry.ZONES_FILE.read_text())
    for scene in ("hotel", "zara2"):
        assert doc["scenes"][scene] == entry.choose_zones(scene), "run python -m distill.trajectory.entry"


@pytest.mark.skipif(not (SHIPPED / "card.yaml").exists(), reason="no shipped trajectory model yet")
def test_shipped_card_matches_its_file():
    card = read_card(SHIPPED)
    assert card.sha256 == sha256_of(SHIPPED / card.file)
    assert card.costs.params <= 50_000
    cv = card.metric("ADE_m_cv_baseline").value
    assert card.metric("ADE_m").value < cv
    assert card.metric("FDE_m").value < card.metric("FDE_m_cv_baseline").value


def test_read_card_refuses_a_changed_file(tmp_path, smoke_run):
    import shutil

    out, _ = smoke_run
    folder = tmp_path / "copy"
    shutil.copytree(out / "trajectory" / "traj-social-mm", folder)
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelCardError):
        read_card(folder)


# ----------------------------------------------------------------------------- entry warnings

from runtime.forecast import entry_times, points_in_polygon  # noqa: E402


def _score_loop(runs, where, forecasts, zones, dt=0.4, horizon_s=3.0, near_m=1.0, obs_len=8):
    """The straightforward loop the vectorised scorer (entry.prepare/evaluate) replaced."""
    from distill.trajectory import entry

    hsteps = int(round(horizon_s / dt))
    warn_at: dict[tuple[int, int], np.ndarray] = {}
    for zi, poly in enumerate(zones):
        for r, xy in enumerate(runs.xy):
            warn_at[(zi, r)] = np.zeros(len(xy), bool)
        now = np.asarray([runs.xy[r][t] for r, t in where]).reshape(-1, 2)
        warns = np.isfinite(entry_times(forecasts, dt, poly, horizon_s, starts=now))
        warns &= ~points_in_polygon(now, poly)          # only people outside are warned
        for (r, t), w in zip(where, warns):
            warn_at[(zi, r)][t] = w
    tp = fn = fp = tn = false_ev = 0
    leads = []
    for zi, poly in enumerate(zones):
        for r, xy in enumerate(runs.xy):
            warn = warn_at[(zi, r)]
            inside = points_in_polygon(xy, poly)
            dist = entry._dist_to_polygon(xy, poly)
            # approaches: maximal stretches outside the zone
            out_idx = np.flatnonzero(~inside)
            if len(out_idx):
                cuts = np.flatnonzero(np.diff(out_idx) != 1) + 1
                for seg in np.split(out_idx, cuts):
                    a, b = int(seg[0]), int(seg[-1])
                    if b + 1 < len(xy):             # ends by stepping inside: an entry at b + 1
                        e = b + 1
                        steps = np.arange(max(a, obs_len - 1, e - hsteps), e)
                        if not len(steps):
                            continue
                        w = steps[warn[steps]]
                        if len(w):
                            tp += 1
                            leads.append((e - w[0]) * dt)
                        else:
                            fn += 1
                    else:                           # never enters: a near-miss if it came close
                        c = a + int(np.argmin(dist[a:b + 1]))
                        if dist[c] > near_m:
                            continue
                        steps = np.arange(max(a, obs_len - 1, c - hsteps), c + 1)
                        steps = steps[steps < len(xy) - 1]
                        if not len(steps):
                            continue
                        if warn[steps].any():
                            fp += 1
                        else:
                            tn += 1
            # false warning events over all steps
            idx = np.flatnonzero(warn)
            if len(idx):
                for ev in np.split(idx, np.flatnonzero(np.diff(idx) != 1) + 1):
                    true = False
                    for t in ev:
                        fut = inside[t + 1:t + 1 + hsteps]
                        if fut.any():
                            true = True
                            break
                    known = ev[-1] + hsteps < len(xy)
                    if not true and known:
                        false_ev += 1
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    n = tp + fn + fp + tn
    return entry.EntryScores(tp + fn, fp + tn, tp, fn, fp, tn, prec, rec, f1, (tp + tn) / n if n else 0.0,
                       float(np.mean(leads)) if leads else 0.0, false_ev,
                       false_ev / runs.hours if runs.hours else 0.0, runs.hours)


def _zara1_decisions(n_runs=60):
    from distill.trajectory import entry, tune

    runs = entry.first_runs(entry.test_runs("zara1"), n_runs)
    return entry, tune, tune.decisions("zara1", runs, entry.load_zones()["zara1"])


def test_vectorised_entry_scores_equal_the_loop():
    require_shared_data()
    from runtime.forecast import constant_velocity

    entry, tune, dec = _zara1_decisions()
    prep = dec.prep
    for fc in (constant_velocity(dec.obs), constant_velocity(dec.obs) + 0.3):
        want = _score_loop(prep.runs, prep.where, fc, prep.zones)
        assert entry.score(prep.runs, prep.where, fc, prep.zones) == want
        assert want.entries + want.near_misses > 20


def test_tuned_decision_is_the_runtime_decision():
    """entry.fires (tuning and scoring) == warn_entry + EntryWarner fed forecast by forecast."""
    require_shared_data()
    from runtime.forecast import EntryRule, EntryWarner, constant_velocity

    entry, tune, dec = _zara1_decisions(40)
    fc = constant_velocity(dec.obs)
    depth, times = entry.path_depth(dec.prep, fc)
    for rule in (EntryRule(), EntryRule(2.0, 0.2, 0.1, 0.4), EntryRule(2.8, -0.1, 0.0, 0.8)):
        want = entry.fires(dec.prep, depth, times, rule)
        for zi, poly in enumerate(dec.prep.zones):
            warner = EntryWarner(rule)
            got = np.array([warner.update((int(r), zi), 0.4 * int(t), fc[i], 0.4, poly, dec.prep.now[i])
                            for i, (r, t) in enumerate(dec.prep.where)])
            np.testing.assert_array_equal(got, want[:, zi])


def test_rule_choice_respects_the_lead_floor():
    from distill.trajectory import entry, tune
    from runtime.forecast import EntryRule

    def s(f1, lead):
        return entry.EntryScores(10, 10, 9, 1, 1, 9, 0.9, 0.9, f1, 0.9, lead, 0, 0.0, 1.0)

    res = [(EntryRule(3.0), s(0.90, 2.0)), (EntryRule(2.0), s(0.93, 1.6)), (EntryRule(1.6), s(0.95, 1.3))]
    assert tune.choose(res, 1.5)[0] == EntryRule(2.0)
    assert tune.choose(res, 1.0)[0] == EntryRule(1.6)
    assert tune.choose(res, 2.5)[0] == EntryRule(3.0)          # none reaches it: the longest lead


def test_entry_rules_frontier_is_best_f1_at_that_lead_or_more():
    from bench.entry_rules import at_lead, frontier

    pts = [(1.0, 0.90), (1.5, 0.95), (2.0, 0.80), (1.2, 0.70)]
    front = frontier(pts)
    assert [ld for ld, _ in front] == [1.0, 1.2, 1.5, 2.0]
    assert [f for _, f in front] == [0.95, 0.95, 0.95, 0.80]  # a longer lead never buys a better F1
    assert at_lead(front, 1.6) == 0.80 and at_lead(front, 1.5) == 0.95
    assert at_lead(front, 2.5) is None


def test_multimodal_student_paths_probabilities_and_entry_probability():
    require_shared_data()
    from distill.trajectory import data, multimodal
    from distill.trajectory.models import n_params
    from runtime.forecast import dense_path, depth_in_polygon

    tr, va = data.load("hotel", "train", limit=600), data.load("hotel", "val", limit=200)
    model = multimodal.train(tr, va, seed=0, epochs=2, max_steps=6).model
    assert n_params(model) <= 50_000
    paths, p = multimodal.forecast(model, va.obs[:50], [np.zeros((0, 2, 2))] * 50)
    assert paths.shape == (50, multimodal.K, 12, 2) and p.shape == (50, multimodal.K)
    assert np.allclose(p.sum(1), 1, atol=1e-5)
    # P(entry) is a probability and can only fall as the margin the path must reach grows
    zone = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], float) + va.obs[0, -1]
    depths = []
    for k in range(multimodal.K):
        pts, times = dense_path(paths[:, k], 0.4, va.obs[:50, -1], 4)
        depths.append((depth_in_polygon(pts.reshape(-1, 2), zone).reshape(pts.shape[:2])[:, None], times))
    lo = multimodal.entry_probability(depths, p, 3.0, -0.5)
    hi = multimodal.entry_probability(depths, p, 3.0, 0.5)
    assert lo.shape == (50, 1) and (lo >= hi - 1e-9).all() and ((0 <= hi) & (lo <= 1 + 1e-9)).all()


def test_multimodal_decision_is_the_runtime_decision():
    """multimodal.warn (tuning and scoring) == EntryWarner.fires_modes + step, forecast by forecast,
    on the same paths and probabilities (rules with margins, thresholds and persistence)."""
    require_shared_data()
    from distill.trajectory import multimodal
    from runtime.forecast import EntryRule, EntryWarner, constant_velocity

    entry, tune, dec = _zara1_decisions(40)
    cv = constant_velocity(dec.obs)
    rng = np.random.default_rng(0)
    # three alternative paths: CV, CV bent left, CV slowed down; random probabilities
    paths = np.stack([cv, cv + np.linspace(0, 1.5, 12)[None, :, None] * [0.0, 1.0], dec.obs[:, -1:] + (cv - dec.obs[:, -1:]) * 0.5], 1)
    p = rng.dirichlet(np.ones(3), len(cv))
    depths = multimodal.path_depths(dec.prep, paths)
    for rule in (EntryRule(3.0, 0.0, 0.0, 0.0, 0.5), EntryRule(2.0, 0.2, 0.0, 0.4, 0.3), EntryRule(2.8, -0.2, 0.0, 0.8, 0.8)):
        want = multimodal.warn(dec.prep, depths, p, rule)
        assert want.any()
        for zi, poly in enumerate(dec.prep.zones):
            warner = EntryWarner(rule)
            fired = warner.fires_modes(paths, p, 0.4, poly, dec.prep.now)
            got = np.array([warner.step((int(r), zi), 0.4 * int(t), f) for (r, t), f in zip(dec.prep.where, fired)])
            np.testing.assert_array_equal(got, want[:, zi])


def test_training_padding_is_the_runtime_padding():
    """multimodal.pad_short on encoded windows == runtime.forecast.pad_back on world tracks, encoded."""
    from distill.trajectory.multimodal import pad_short
    from runtime.forecast import pad_back

    rng = np.random.default_rng(0)
    obs = np.cumsum(rng.normal(0.3, 0.2, (6, 8, 2)), axis=1)
    x, frame = encode(obs)
    keep = np.array([3, 4, 5, 6, 7, 8])
    got = pad_short(torch.from_numpy(x), torch.from_numpy(keep)).numpy()
    for i, k in enumerate(keep):
        want, f = encode(pad_back(obs[i:i + 1, 8 - k:], 8))
        np.testing.assert_allclose(f.rot, frame.rot[i:i + 1], atol=1e-9)   # same local frame (moving track)
        np.testing.assert_allclose(got[i], want[0], atol=1e-5)


def test_sim_equal_lead_comparison():
    """bench/predicted_entry.py --frontier: each forecaster's best F1 at the other's tuned lead, and
    CV's frontier leads counted as ahead / tied / behind / out of the bundled forecaster's reach."""
    from bench.predicted_entry import FRONTIER_H, equal_lead

    def s(f1, lead):
        return {"f1": f1, "accuracy": 0.5, "mean_lead_s": lead, "fp": 1, "tp": 1}

    hs = FRONTIER_H[:3]
    swept = {("model", hs[0]): s(0.80, 1.5), ("model", hs[1]): s(0.75, 1.8), ("model", hs[2]): s(0.70, 2.0),
             ("cv", hs[0]): s(0.78, 1.4), ("cv", hs[1]): s(0.75, 1.8), ("cv", hs[2]): s(0.60, 2.4)}
    tuned = {"model": s(0.75, 1.8), "cv": s(0.75, 1.8)}
    out = equal_lead(tuned, swept)
    assert out["model_f1_at_cv_lead"]["f1"] == 0.75 and out["cv_f1_at_model_lead"]["f1"] == 0.75
    # CV's frontier: 0.78 at 1.4 (model 0.80 there: ahead), 0.75 at 1.8 (tied), 0.60 at 2.4 (model cannot reach)
    assert out["model_vs_cv_at_cv_leads"] == {"leads": 3, "model_ahead": 1, "tied": 1, "cv_ahead": 0,
                                              "beyond_model_reach": 1}
