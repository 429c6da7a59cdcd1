"""runtime.pose: crops and their transforms, heatmap decoding (known heatmaps), mirroring."""
from __future__ import annotations

import numpy as np
import pytest

from runtime import pose as rt


def _one(x: float, y: float, size=(64, 128), sigma=1.0) -> np.ndarray:
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, 0], kp[0, :, 1], kp[0, :, 2] = x, y, 1
    return rt.gaussian_heatmaps(kp, kp[..., 2] > 0, size, sigma)


@pytest.mark.parametrize("x, y", [(30.0, 60.0), (31.3, 61.7), (9.9, 100.2), (50.5, 17.25), (33.0, 64.0)])
def test_decode_recovers_a_gaussian_peak_to_subpixel(x, y):
    got = rt.decode_crop(_one(x, y))
    assert got.shape == (1, 17, 3)
    np.testing.assert_allclose(got[0, :, 0], x, atol=0.35)       # < a tenth of a heatmap cell (4 px)
    np.testing.assert_allclose(got[0, :, 1], y, atol=0.35)
    assert got[0, 0, 2] > 0.85


def test_decode_known_heatmap_argmax_and_confidence():
    hm = np.zeros((2, 17, 32, 16), np.float32)
    hm[0, 3, 10, 5] = 0.8                       # a lone peak: cell centre, no neighbours to refine with
    hm[1, 0, 0, 0] = 1.7                        # at the corner, above 1: confidence clipped to 1
    hm[1, 0, 0, 1] = 0.5                        # a higher right neighbour: a quarter cell towards it
    got = rt.decode_crop(hm)
    assert got[0, 3, 0] == pytest.approx((5 + 0.5) * rt.STRIDE) and got[0, 3, 1] == pytest.approx((10 + 0.5) * rt.STRIDE)
    assert got[0, 3, 2] == pytest.approx(0.8)
    assert got[1, 0, 2] == pytest.approx(1.0)
    assert got[1, 0, 0] == pytest.approx((0 + 0.5 + 0.25) * rt.STRIDE)
    assert got[0, 5, 2] == pytest.approx(0.0)   # an empty map: confidence 0


def test_crop_transform_maps_a_dot_back_to_the_frame():
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[200:204, 300:304] = 255                # a 4x4 white dot centred on (302, 202)
    boxes = np.array([[280.0, 120.0, 330.0, 260.0], [0.0, 150.0, 40.0, 300.0]], np.float32)
    crops, tf = rt.person_crops(frame, boxes, (64, 128))
    assert crops.shape == (2, 128, 64, 3) and tf.shape == (2, 6)
    g = np.clip(crops[0, ..., 0].astype(np.float64) - 114, 0, None)   # the dot, not the grey padding
    ys, xs = np.mgrid[:128, :64]
    u, v = (g * (xs + 0.5)).sum() / g.sum(), (g * (ys + 0.5)).sum() / g.sum()
    back = rt.to_frame(np.array([[[u, v, 1.0]] * 17], np.float32), tf[:1])
    assert back[0, 0, 0] == pytest.approx(302.0, abs=0.6) and back[0, 0, 1] == pytest.approx(202.0, abs=0.6)
    kp = np.random.default_rng(0).uniform(0, 300, (2, 17, 3)).astype(np.float32)
    np.testing.assert_allclose(rt.to_frame(rt.to_crop(kp, tf), tf), kp, atol=1e-3)


def test_decode_is_batched_and_handles_no_person():
    frame = np.zeros((100, 100, 3), np.uint8)
    crops, tf = rt.person_crops(frame, np.zeros((0, 4)), (64, 128))
    assert crops.shape == (0, 128, 64, 3) and tf.shape == (0, 6)
    assert rt.decode(np.zeros((0, 17, 32, 16), np.float32), tf).shape == (0, 17, 3)
    x = rt.preprocess(np.zeros((3, 128, 64, 3), np.uint8))
    assert x.shape == (3, 3, 128, 64) and x.dtype == np.float32


def test_box_outside_the_frame_gives_a_grey_crop():
    frame = np.zeros((100, 100, 3), np.uint8)
    crops, tf = rt.person_crops(frame, np.array([[200.0, 200.0, 250.0, 300.0]]), (64, 128))
    assert (crops == 114).all() and np.isfinite(tf).all()


def test_flip_heatmaps_swaps_sides_and_is_an_involution():
    hm = _one(20.0, 40.0)
    hm[0, 5] = 0                                # left shoulder empty, right shoulder present
    f = rt.flip_heatmaps(hm)
    assert f[0, 6].max() == 0 and f[0, 5].max() > 0.7
    got = rt.decode_crop(f)
    assert got[0, 5, 0] == pytest.approx(64 - 20.0, abs=0.35)
    np.testing.assert_array_equal(rt.flip_heatmaps(f), hm)
    assert sorted(rt.FLIP) == list(range(17)) and all(rt.FLIP[rt.FLIP[j]] == j for j in range(17))
