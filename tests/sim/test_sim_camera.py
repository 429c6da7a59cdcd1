import numpy as np
import pytest

from runtime.geometry import apply, solve_homography
from sim.camera import Camera
from sim.scenes import get_scene


def test_crane_swing_camera_is_the_fixed_calibration():
    cam = get_scene("crane-swing").camera
    ground = np.array([[-6, 10], [6, 10], [10, 35], [-10, 35]], float)
    px = apply(cam.ground_to_image, ground)
    np.testing.assert_allclose(px, [[119.3, 302.5], [520.7, 302.5], [449.4, 65.6], [190.6, 65.6]], atol=0.06)
    np.testing.assert_allclose(apply(cam.homography, px), ground, atol=1e-9)
    solved = solve_homography(px, ground)
    np.testing.assert_allclose(solved.matrix / solved.matrix[2, 2], cam.homography, rtol=1e-6, atol=1e-9)


def test_project_agrees_with_the_ground_homography():
    cam = Camera(position=(1.0, -2.0, 7.0), yaw_deg=12.0, pitch_deg=25.0, roll_deg=3.0, width=800, height=450)
    g = np.array([[0.0, 10.0], [3.0, 20.0], [-4.0, 15.0]])
    uv, z = cam.project(np.column_stack([g, np.zeros(3)]))
    assert (z > 0).all()
    np.testing.assert_allclose(uv, apply(cam.ground_to_image, g), atol=1e-9)


@pytest.mark.parametrize("w,h", [(320, 180), (1280, 720)])
def test_focal_length_scales_with_width(w, h):
    base = get_scene("crane-swing").camera
    cam = base.with_resolution(w, h)
    px = apply(cam.ground_to_image, [[6.0, 10.0]])
    np.testing.assert_allclose(px, apply(base.ground_to_image, [[6.0, 10.0]]) * (w / 640), atol=1e-9)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    yaw=st.floats(-60, 60), pitch=st.floats(10, 70), roll=st.floats(-10, 10), height=st.floats(3, 30),
    gx=st.floats(-20, 20), gy=st.floats(5, 60),
)
def test_ground_roundtrip_through_any_camera(yaw, pitch, roll, height, gx, gy):
    cam = Camera(position=(0.0, 0.0, height), yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll)
    # a ground point in front of this camera: rotate the sample into the view direction
    import math
    a = math.radians(yaw)
    p = np.array([gx * math.cos(a) + gy * math.sin(a), -gx * math.sin(a) + gy * math.cos(a)])
    uv, z = cam.project(np.array([[p[0], p[1], 0.0]]))
    if z[0] <= 0.1:
        return
    np.testing.assert_allclose(apply(cam.homography, uv), p[None], rtol=1e-6, atol=1e-6)
