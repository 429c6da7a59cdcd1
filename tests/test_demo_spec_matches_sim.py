"""The embedded demo spec describes the sim scene it watches: same ground plane, same zones."""
import numpy as np
import pytest

from compiler.resolve import homography
from compiler.spec import load_spec
from sim.render import SimSource


@pytest.fixture(scope="module")
def pair():
    spec = load_spec("specs/demo-site.yaml").spec
    cam = spec.cameras[0]
    assert cam.source == "sim:crane-swing"
    return cam, SimSource("crane-swing", resolution=tuple(spec.defaults.resolution))


def test_calibration_is_the_sim_cameras_homography(pair):
    cam, src = pair
    pts = np.array([[100, 300], [320, 180], [500, 80], [600, 340]], dtype=float)
    ours = homography(cam)
    hom = lambda H, p: (np.c_[p, np.ones(len(p))] @ np.asarray(H).T)[:, :2] / (np.c_[p, np.ones(len(p))] @ np.asarray(H).T)[:, 2:]  # noqa: E731
    assert hom(ours, pts) == pytest.approx(hom(src.homography, pts), abs=0.05)


def test_zones_are_the_scenes_zones(pair):
    cam, src = pair
    scene = {z["id"]: z for z in src.zones}
    spec = {z.id: z for z in cam.zones}
    assert set(spec) == set(scene)
    assert [list(p) for p in spec["crane-swing"].ground] == scene["crane-swing"]["ground"]
    assert spec["excavator-radius"].around.radius_m == scene["excavator-radius"]["radius_m"]
    assert spec["crane-swing"].predict_entry is not None
