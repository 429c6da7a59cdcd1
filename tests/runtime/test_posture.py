"""runtime.posture: normalisation invariances, missing joints, decoding, the torso-angle rule."""
from __future__ import annotations

import math

import numpy as np
import pytest

from runtime import posture as rp


def _upright(cx=100.0, cy=200.0, h=120.0, feet=0.0) -> tuple[np.ndarray, np.ndarray]:
    """A standing person in image pixels (y down), all joints confident, and its box."""
    s = h / 1.75
    pts = {0: (0, 1.62), 1: (-0.03, 1.66), 2: (0.03, 1.66), 3: (-0.07, 1.63), 4: (0.07, 1.63), 5: (-0.2, 1.43),
           6: (0.2, 1.43), 7: (-0.24, 1.12), 8: (0.24, 1.12), 9: (-0.25, 0.85), 10: (0.25, 0.85), 11: (-0.12, 0.93),
           12: (0.12, 0.93), 13: (-0.12 - feet / 2, 0.5), 14: (0.12 + feet / 2, 0.5), 15: (-0.12 - feet, 0.07),
           16: (0.12 + feet, 0.07)}
    kp = np.zeros((1, 17, 3), np.float32)
    for j, (x, z) in pts.items():
        kp[0, j] = (cx + x * s, cy - z * s, 0.9)
    box = np.array([[kp[0, :, 0].min() - 5, kp[0, :, 1].min() - 8, kp[0, :, 0].max() + 5, cy]], np.float32)
    return kp, box


def _rotate(kp: np.ndarray, box: np.ndarray, deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate about the feet (a fall); the box becomes the joints' extent."""
    out = kp.copy()
    a = math.radians(deg)
    fx, fy = kp[0, 15:17, 0].mean(), kp[0, 15:17, 1].mean()
    dx, dy = kp[0, :, 0] - fx, kp[0, :, 1] - fy
    out[0, :, 0] = fx + dx * math.cos(a) - dy * math.sin(a)
    out[0, :, 1] = fy + dx * math.sin(a) + dy * math.cos(a)
    b = np.array([[out[0, :, 0].min() - 5, out[0, :, 1].min() - 5, out[0, :, 0].max() + 5, out[0, :, 1].max() + 5]], np.float32)
    return out, b


def test_features_shape_and_centre_on_hips():
    kp, box = _upright()
    x = rp.features(kp, box)
    assert x.shape == (1, rp.N_FEATURES) and x.dtype == np.float32
    n = rp.normalise(kp, box)
    np.testing.assert_allclose(n[0, [11, 12], :2].mean(axis=0), 0.0, atol=1e-6)   # mid-hip at the origin
    assert n[0, 0, 1] < 0 < n[0, 15, 1]                                           # head up, feet down


@pytest.mark.parametrize("shift, scale", [((0.0, 0.0), 2.0), ((310.5, -42.0), 1.0), ((-50.0, 80.0), 0.37)])
def test_features_are_translation_and_scale_invariant(shift, scale):
    kp, box = _upright()
    k2 = kp.copy()
    k2[..., :2] = kp[..., :2] * scale + np.array(shift, np.float32)
    b2 = box * scale + np.array(shift * 2, np.float32)
    np.testing.assert_allclose(rp.features(k2, b2), rp.features(kp, box), atol=1e-5)
    # without a box the joints' own extent sets the scale: invariant too
    np.testing.assert_allclose(rp.features(k2), rp.features(kp), atol=1e-5)


@pytest.mark.parametrize("missing", [rp.FACE, rp.LEFT, rp.RIGHT, (11, 12), (11, 12, 5, 6), tuple(range(17))])
def test_missing_joints_are_zero_and_the_rest_stays_finite(missing):
    kp, box = _upright()
    k2 = kp.copy()
    k2[0, list(missing), 2] = 0.05                       # below MIN_CONF
    k2[0, list(missing), :2] = np.nan if len(missing) < 17 else 0.0   # garbage coordinates must not leak
    n = rp.normalise(k2, box)
    assert np.isfinite(n).all()
    assert (n[0, list(missing)] == 0).all()
    keep = [j for j in range(17) if j not in missing]
    assert (n[0, keep, 2] > 0).all()
    x = rp.features(k2, box)
    assert np.isfinite(x).all() and x.shape == (1, rp.N_FEATURES)


def test_centre_falls_back_to_the_shoulders_without_hips():
    kp, box = _upright()
    kp[0, [11, 12], 2] = 0
    n = rp.normalise(kp, box)
    np.testing.assert_allclose(n[0, [5, 6], :2].mean(axis=0), 0.0, atol=1e-6)


def test_decode_is_a_softmax():
    p = rp.decode(np.array([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [100.0, 0, 0, 0, 0, 0]], np.float32))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert p[0].argmax() == 5 and p[1, 0] == pytest.approx(1.0)


def test_rule_baseline_on_clear_postures():
    kp, box = _upright()
    assert rp.CLASSES[rp.rule_baseline(kp, box)[0]] == "standing"
    lying, lbox = _rotate(kp, box, 85.0)
    assert rp.CLASSES[rp.rule_baseline(lying, lbox)[0]] == "fallen"
    raised = kp.copy()
    raised[0, [9, 10], 1] = kp[0, 0, 1] - 20              # wrists above the head
    assert rp.CLASSES[rp.rule_baseline(raised, box)[0]] == "arms_raised"
    stride, sbox = _upright(feet=0.3)
    assert rp.CLASSES[rp.rule_baseline(stride, sbox)[0]] == "walking"
    ang, ok = rp.torso_angle(np.concatenate([kp, lying]))
    assert ok.all() and ang[0] < 5 and 75 < ang[1] < 95


def test_rule_baseline_without_the_torso_defaults_to_standing():
    kp, box = _upright()
    lying, lbox = _rotate(kp, box, 85.0)
    lying[0, [5, 6, 11, 12], 2] = 0
    assert rp.rule_baseline(lying)[0] == rp.CLASSES.index("standing")
    assert rp.rule_baseline(np.zeros((0, 17, 3))).shape == (0,)
