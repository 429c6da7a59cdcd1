"""runtime.forecast: encode/decode round trip, CV, resampling, predicted entry, the ONNX forecaster."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.forecast import (OnnxForecaster, constant_velocity, cv_local, decode, encode, entry_times,
                              neighbour_features, predict_entry, resample, scene_others, target_offsets, to_local)

RNG = np.random.default_rng(0)


def _walks(n=64, t=8, p=12):
    start = RNG.uniform(-20, 20, (n, 1, 2))
    vel = RNG.normal(0, 0.5, (n, 1, 2))
    steps = np.cumsum(vel + RNG.normal(0, 0.05, (n, t + p, 2)), axis=1)
    xy = start + steps
    return xy[:, :t], xy[:, t:]


def test_decode_of_target_offsets_is_the_future():
    obs, fut = _walks()
    _, frame = encode(obs)
    np.testing.assert_allclose(decode(target_offsets(fut, frame), frame), fut, atol=1e-5)


def test_encode_puts_last_point_at_origin_and_heading_on_plus_x():
    obs, _ = _walks()
    x, frame = encode(obs)
    np.testing.assert_allclose(x[:, -1], 0, atol=1e-6)
    v = x[:, -1] - x[:, -2]
    assert np.all(v[:, 0] > 0)
    np.testing.assert_allclose(v[:, 1], 0, atol=1e-5)
    np.testing.assert_allclose(to_local(obs, frame), x, atol=1e-5)


def test_encode_is_rotation_and_translation_invariant():
    obs, _ = _walks(8)
    a = 0.7
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    x1, _ = encode(obs)
    x2, _ = encode(obs @ r.T + np.array([3.0, -5.0]))
    np.testing.assert_allclose(x1, x2, atol=1e-4)


def test_zero_offsets_decode_to_constant_velocity_even_when_standing():
    obs, _ = _walks(16)
    obs[:3, -1] = obs[:3, -2]              # standing still on the last step
    obs[3] = obs[3, :1]                   # never moved at all
    _, frame = encode(obs)
    np.testing.assert_allclose(decode(np.zeros((16, 12, 2)), frame), constant_velocity(obs), atol=1e-9)
    assert cv_local(frame).shape == (16, 12, 2)


def test_constant_velocity_on_a_straight_line_is_exact():
    t = np.arange(20)[:, None]
    line = np.array([1.0, 2.0]) + t * np.array([0.5, -0.2])
    np.testing.assert_allclose(constant_velocity(line[:8])[0], line[8:], atol=1e-12)


def test_resample_10hz_straight_line_gives_2_5hz_points():
    t = np.arange(0, 5.0, 0.1)
    xy = np.c_[1.3 * t, 0.4 * t + 2]
    out = resample(t, xy, rate_hz=2.5, n=8)
    want_t = t[-1] - 0.4 * np.arange(7, -1, -1)
    np.testing.assert_allclose(out, np.c_[1.3 * want_t, 0.4 * want_t + 2], atol=1e-9)


def test_resample_irregular_and_too_short():
    t = np.array([0.0, 0.13, 0.5, 0.61, 1.4, 2.0, 2.95, 3.3])
    xy = np.c_[t * 2, -t]
    out = resample(t, xy, 2.5, 8)
    np.testing.assert_allclose(out[:, 0], 2 * (3.3 - 0.4 * np.arange(7, -1, -1)), atol=1e-9)
    assert resample(t[-3:], xy[-3:], 2.5, 8) is None
    assert resample(t[:1], xy[:1]) is None
    with pytest.raises(ValueError):
        resample(np.array([0.0, 0.0, 1.0]), np.zeros((3, 2)))


SQUARE = np.array([[4.0, -1.0], [6.0, -1.0], [6.0, 1.0], [4.0, 1.0]])


@pytest.mark.parametrize("speed, enters, time_s", [
    (1.0, True, 1.6),     # 1 m per 0.4 s step from x = 0: reaches the square's edge x = 4 at step 4
    (0.5, True, 3.2),
    (0.0, False, None),   # standing still
])
def test_predict_entry_straight_walk(speed, enters, time_s):
    path = np.c_[np.arange(1, 13) * speed, np.zeros(12)]
    e = predict_entry(path, 0.4, SQUARE, start=np.zeros(2))
    assert e.enters is enters
    assert e.time_s == (pytest.approx(time_s) if enters else None)


def test_predict_entry_horizon_and_thin_zone():
    path = np.c_[np.arange(1, 13) * 1.0, np.zeros(12)]
    assert not predict_entry(path, 0.4, SQUARE, horizon_s=1.2, start=np.zeros(2)).enters
    assert predict_entry(path, 0.4, SQUARE, horizon_s=1.6, start=np.zeros(2)).enters
    thin = np.array([[2.4, -1], [2.6, -1], [2.6, 1], [2.4, 1]])   # between two samples
    e = predict_entry(path, 0.4, thin, start=np.zeros(2))
    assert e.enters and 0.8 < e.time_s < 1.2
    assert not predict_entry(path, 0.4, thin, start=np.zeros(2), substeps=1).enters
    assert predict_entry(path + [-5, 0], 0.4, SQUARE, start=np.array([5.0, 0])).time_s == 0.0


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory):
    """A tiny ONNX 'model' that outputs zero offsets (so the forecaster must equal CV)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("obs_local", TensorProto.FLOAT, ["batch", 8, 2])
    y = helper.make_tensor_value_info("offsets", TensorProto.FLOAT, ["batch", 12, 2])
    nodes = [helper.make_node("Slice", ["obs_local", "s", "e", "a"], ["first"]),
             helper.make_node("Mul", ["first", "zero"], ["z"]),
             helper.make_node("Expand", ["z", "shape"], ["offsets"])]
    inits = [helper.make_tensor("s", TensorProto.INT64, [1], [0]), helper.make_tensor("e", TensorProto.INT64, [1], [1]),
             helper.make_tensor("a", TensorProto.INT64, [1], [1]), helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("shape", TensorProto.INT64, [3], [1, 12, 2])]
    m = helper.make_model(helper.make_graph(nodes, "zero", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("m") / "zero.onnx"
    onnx.save(m, str(path))
    return path


def test_onnx_forecaster_zero_offsets_is_cv(identity_model):
    fc = OnnxForecaster(identity_model, rate_hz=2.5, obs_len=8, pred_len=12)
    obs, _ = _walks(5)
    np.testing.assert_allclose(fc.predict(obs), constant_velocity(obs), atol=1e-4)
    t = np.arange(0, 4.0, 0.1)                # a 10 Hz track is resampled to 2.5 Hz first
    xy = np.c_[t, 2 * t]
    path, how = fc.forecast_track(t, xy)
    assert how == "model"
    np.testing.assert_allclose(path[0], xy[-1] + [0.4, 0.8], atol=1e-4)
    path, how = fc.forecast_track(t[-3:], xy[-3:])
    assert how == "cv"
    np.testing.assert_allclose(path[:2], [xy[-1] + [0.4, 0.8], xy[-1] + [0.8, 1.6]], atol=1e-6)
    with pytest.raises(ValueError):
        fc.predict(obs[:, :5])


def test_neighbour_features_local_frame_sorted_and_bounded():
    ego = np.array([[[0.0, 0.0], [0.0, 1.0]]])        # walking north: local +x is world +y
    _, frame = encode(ego)
    others = [np.array([[[5.0, 1.0], [5.0, 1.5]],      # 5 m to the east = local -y, moving along +x
                        [[0.0, 3.0], [0.0, 3.0]],      # 2 m ahead, standing
                        [[20.0, 0.0], [20.0, 0.0]]])]  # too far
    f = neighbour_features(frame, others, k=4)
    assert f.shape == (1, 4, 5) and f.dtype == np.float32
    np.testing.assert_allclose(f[0, 0], [2.0, 0.0, 0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(f[0, 1], [0.5, -5.0, 0.5, 0.0, 1.0], atol=1e-6)
    assert not f[0, 2:].any()
    assert not neighbour_features(frame, [np.zeros((0, 2, 2))]).any()
    obs, _ = _walks(3)
    assert [len(o) for o in scene_others(obs)] == [2, 2, 2]


def test_entry_times_matches_predict_entry():
    paths = np.stack([np.c_[np.arange(1, 13) * v, np.zeros(12)] for v in (0.0, 0.5, 1.0, 2.0)])
    starts = np.zeros((4, 2))
    t = entry_times(paths, 0.4, SQUARE, 3.0, starts)
    for p, ti in zip(paths, t):
        e = predict_entry(p, 0.4, SQUARE, 3.0, start=np.zeros(2))
        assert (e.time_s if e.enters else np.inf) == pytest.approx(ti)
    assert np.isinf(t[0]) and t[3] < t[2] < t[1]


# ----------------------------------------------------------------------------- the warning decision

from runtime.forecast import (EntryRule, EntryWarner, depth_in_polygon, entry_rule_note,  # noqa: E402
                              entry_rules_from_notes, warn_entry)

ZONE2 = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])


def test_depth_in_polygon_signed_distance_to_the_boundary():
    d = depth_in_polygon(np.array([[1.0, 1.0], [0.5, 1.0], [-1.0, 1.0], [3.0, 3.0], [2.0, 1.0]]), ZONE2)
    np.testing.assert_allclose(d[:4], [1.0, 0.5, -1.0, -np.sqrt(2)])
    assert abs(d[4]) < 1e-9
    # depth >= 0 is exactly "inside" (the plain rule is the zero-margin rule)
    pts = np.random.default_rng(0).uniform(-1, 3, (500, 2))
    from runtime.geometry import points_in_polygon
    np.testing.assert_array_equal(depth_in_polygon(pts, ZONE2) >= 0, points_in_polygon(pts, ZONE2))


def _walk(y=1.0, speed=0.5, n=12, x0=-2.0):
    start = np.array([x0, y])
    path = start + np.stack([speed * np.arange(1, n + 1), np.zeros(n)], -1)
    return start, path


def test_warn_entry_margin_horizon_and_growth():
    start, path = _walk()                  # 1.25 m/s from x = -2: enters x = 0 at 1.6 s, 0.5 m deep at 2.0 s
    assert warn_entry(path, 0.4, ZONE2, 2.0, start)
    assert not warn_entry(path, 0.4, ZONE2, 1.2, start)           # too short a horizon
    assert warn_entry(path, 0.4, ZONE2, 2.0, start, margin_m=0.5)
    assert not warn_entry(path, 0.4, ZONE2, 2.0, start, margin_m=0.6)
    assert warn_entry(path, 0.4, ZONE2, 2.0, start, margin_m=0.35)
    assert not warn_entry(path, 0.4, ZONE2, 2.0, start, margin_m=0.35, margin_per_s=0.1)  # 0.55 m at 2.0 s
    # a path that only grazes the zone edge (0.2 m inside) fires plainly but not with a 0.3 m margin
    start, path = _walk(y=0.2)
    assert warn_entry(path, 0.4, ZONE2, 3.0, start) and not warn_entry(path, 0.4, ZONE2, 3.0, start, margin_m=0.3)
    # someone already inside is not warned
    assert not warn_entry(path, 0.4, ZONE2, 3.0, np.array([1.0, 1.0]))
    # margin 0 is predict_entry
    start, path = _walk()
    assert warn_entry(path, 0.4, ZONE2, 3.0, start) == predict_entry(path, 0.4, ZONE2, 3.0, start).enters


def test_entry_warner_persistence_in_seconds():
    w = EntryWarner(EntryRule(horizon_s=3.0, persist_s=0.4))
    start, path = _walk()
    far_start, far_path = _walk(y=5.0)
    # at 10 Hz: fires at 0.0, 0.1, ..., warns from 0.4 s on; one miss resets
    got = [w.update("p1", 0.1 * i, path, 0.4, ZONE2, start) for i in range(6)]
    assert got == [False, False, False, False, True, True]
    assert not w.update("p1", 0.6, far_path, 0.4, ZONE2, far_start)
    assert not w.update("p1", 0.7, path, 0.4, ZONE2, start)
    assert not w.update("p2", 0.7, path, 0.4, ZONE2, start)        # keys are independent
    assert EntryWarner(EntryRule()).update("p", 0.0, path, 0.4, ZONE2, start)   # no persistence: at once
    assert EntryRule(persist_s=0.8).persist_steps(0.4) == 3


def test_entry_rules_round_trip_through_card_notes():
    rules = {"model": EntryRule(2.4, 0.1, 0.05, 0.4), "cv": EntryRule(2.0)}
    notes = "Input: ... warnings: " + entry_rule_note(rules) + " (tuned on val)"
    assert entry_rules_from_notes(notes) == rules
    assert entry_rules_from_notes("no rule here") == {}


def test_short_tracks_are_padded_back_for_the_model(identity_model):
    from runtime.forecast import pad_back, resample_short

    obs = np.array([[[0.0, 0.0], [0.4, 0.1], [0.9, 0.1]]])
    padded = pad_back(obs, 8)
    assert padded.shape == (1, 8, 2)
    np.testing.assert_allclose(padded[0, -3:], obs[0])
    np.testing.assert_allclose(padded[0, :5], [[-2.0, -0.5], [-1.6, -0.4], [-1.2, -0.3], [-0.8, -0.2], [-0.4, -0.1]])
    t = np.arange(0, 1.25, 0.1)                 # 1.2 s at 10 Hz: 4 steps at 2.5 Hz, not 8
    xy = np.c_[t, 0.5 * t]
    assert resample_short(t, xy, 2.5, 8, 5) is None
    short = resample_short(t, xy, 2.5, 8, 3)
    np.testing.assert_allclose(short, np.c_[np.arange(-7, 1) * 0.4 + 1.2, (np.arange(-7, 1) * 0.4 + 1.2) * 0.5], atol=1e-9)
    fc = OnnxForecaster(identity_model, rate_hz=2.5, obs_len=8, pred_len=12)
    assert fc.forecast_track(t, xy)[1] == "cv"                  # a model not trained on padding: CV
    fc = OnnxForecaster(identity_model, rate_hz=2.5, obs_len=8, pred_len=12, min_obs=3)
    path, how = fc.forecast_track(t, xy)
    assert how == "model"
    np.testing.assert_allclose(path[0], xy[-1] + [0.4, 0.2], atol=1e-4)


def test_min_obs_is_read_from_the_card_notes():
    from runtime.forecast import min_obs_from_notes

    assert min_obs_from_notes("... at least short_track_min_obs=3 is padded back") == 3
    assert min_obs_from_notes("no such note") is None


def test_fires_from_entry_times_is_the_same_decision():
    """The rules engine's shortcut (one entry_times pass, then the rule) == fires_all / fires_modes."""
    from runtime.forecast import EntryRule, EntryWarner, entry_times, points_in_polygon

    rng = np.random.default_rng(3)
    zone = np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 2.0], [0.0, 2.0]])
    n, k = 200, 4
    starts = rng.uniform(-4, 6, (n, 2))
    steps = rng.normal(0, 0.5, (n, k, 1, 2)) + (np.array([1.5, 1.0]) - starts)[:, None, None] * rng.uniform(0, 0.3, (n, k, 1, 1))
    modes = starts[:, None, None] + np.cumsum(np.repeat(steps, 12, axis=2), axis=2)
    probs = rng.dirichlet(np.ones(k), n)
    outside = ~points_in_polygon(starts, zone)
    for rule in (EntryRule(3.0, tau=0.5), EntryRule(2.0, tau=0.3), EntryRule(1.6)):
        w = EntryWarner(rule)
        t_alt = entry_times(modes.reshape(n * k, 12, 2), 0.4, zone, 3.0, np.repeat(starts, k, 0)).reshape(n, k)
        np.testing.assert_array_equal(w.fires_from_times(t_alt, outside, probs), w.fires_modes(modes, probs, 0.4, zone, starts))
        when = entry_times(modes[:, 0], 0.4, zone, 3.0, starts)
        got = w.fires_from_times(when, outside)
        np.testing.assert_array_equal(got, w.fires_all(modes[:, 0], 0.4, zone, starts))
        assert got.any() and not got.all()
    assert EntryWarner(EntryRule(3.0, margin_m=0.2)).fires_from_times(when, outside) is None


def test_a_restarted_track_takes_over_the_lost_tracks_history():
    """runtime.pipeline: a new track starting where a lost one ended, soon after, forecasts from the
    lost one's ground history; a far one or a late one does not, and stale tracks are forgotten."""
    from collections import deque
    from types import SimpleNamespace

    from runtime.pipeline import HISTORY_S, CameraPipeline, _Track

    def walker(t_end):
        return _Track(history=deque([(t, 1.0 * t, 0.0) for t in np.arange(0, t_end + 1e-9, 0.1)]), last_t=t_end)

    cam = SimpleNamespace(tracks={1: walker(2.0), 2: walker(2.0), 3: walker(2.0)})
    cam.tracks[2].history = deque([(t, x, 9.0) for t, x, _ in cam.tracks[2].history])   # a walker 9 m away
    cam.tracks[3].last_t = 2.0 - HISTORY_S - 1                                             # long gone
    # at t=2.5: track 7 starts 0.6 m ahead of where track 1 ended; track 8 starts nowhere near anyone
    CameraPipeline._handover(cam, np.array([7, 8]), np.array([[2.6, 0.0], [20.0, 20.0]]), 2.5)
    assert 3 not in cam.tracks and 1 not in cam.tracks and 2 in cam.tracks
    assert len(cam.tracks[7].history) == 21 and cam.tracks[7].history[-1][1] == pytest.approx(2.0)
    assert 8 not in cam.tracks                     # gets a fresh track when it is first forecast
    # a track seen this frame keeps its own history, and one lost too long ago is not handed over
    CameraPipeline._handover(cam, np.array([2, 9]), np.array([[2.0, 9.0], [2.1, 9.0]]), 3.6)
    assert 9 not in cam.tracks
