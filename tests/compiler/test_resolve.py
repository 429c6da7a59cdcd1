"""Resolve: defaults merged once, zones in pixels and metres, roles get what they run."""
import numpy as np
import pytest

from compiler.devices import device_roles, devices_on_board
from compiler.resolve import resolve_device
from compiler.spec import load_spec
from runtime.config import RuntimeConfig
from runtime.geometry import apply


@pytest.fixture(scope="module")
def demo():
    return load_spec("specs/demo-site.yaml").spec


@pytest.fixture(scope="module")
def tower():
    return load_spec("specs/tower-crane-site.yaml").spec


def _config(spec, device_id):
    role = next(d for d in device_roles(spec) if d.id == device_id)
    return resolve_device(spec, role, {}, threads=2)


def test_defaults_are_merged_into_cameras(demo):
    cam = _config(demo, "crane-cam").cameras[0]
    assert cam.resolution == (640, 360) and cam.fps == 10.0


def test_ground_zone_maps_to_the_sim_cameras_pixels(demo):
    """The demo's calibration is the sim camera's own geometry (10 m up, 30 deg down, 70 deg HFOV)."""
    zone = next(z for z in _config(demo, "crane-cam").cameras[0].zones if z.id == "crane-swing")
    # ground (-4, 16) seen by that pinhole camera
    f = 320 / np.tan(np.radians(35))
    p = np.radians(30)
    d = np.array([-4.0, 16.0, -10.0])
    fwd, down = np.array([0, np.cos(p), -np.sin(p)]), np.array([0, -np.sin(p), -np.cos(p)])
    expected = (f * d[0] / (d @ fwd) + 320, f * (d @ down) / (d @ fwd) + 180)
    assert zone.polygon_px[0] == pytest.approx(expected, abs=0.2)
    assert zone.polygon_m[0] == (-4.0, 16.0)


def test_pixels_and_metres_agree_through_the_homography(tower):
    cfg = _config(tower, "gate")
    cam = cfg.cameras[0]
    for zone in cam.zones:
        back = apply(np.array(cam.homography), np.array(zone.polygon_px))
        assert back == pytest.approx(np.array(zone.polygon_m), abs=1e-3)


def test_machine_zone_keeps_radius_and_has_no_fixed_polygon(demo):
    zone = next(z for z in _config(demo, "crane-cam").cameras[0].zones if z.id == "excavator-radius")
    assert zone.shape == "around" and zone.radius_m == 5 and zone.polygon_px is None


def test_edge_device_serves_its_cameras_and_camera_soc_only_detects(tower):
    edge = _config(tower, "edge-box")
    assert {c.id for c in edge.cameras} == {"crane-hook", "excavator"}
    assert not any(c.detect_here for c in edge.cameras)  # both cameras detect on their own NPUs
    assert edge.ppe and edge.actions
    cam = _config(tower, "crane-hook")
    assert cam.role == "camera-detector" and cam.cameras[0].detect_here and not cam.ppe and not cam.actions


def test_rules_sinks_and_situations_resolve(tower):
    cfg = _config(tower, "gate")
    assert cfg.ppe[0].zones == ("gate-lane", "slab-7", "crane-load-area") and cfg.ppe[0].cooldown_s == 30
    kinds = [s.kind for s in cfg.sinks]
    assert kinds == ["http", "mqtt", "alarm"]
    assert cfg.sinks[0].params["target"].startswith("https://") and cfg.sinks[2].params["gpio"].startswith("/sys/")
    night = next(s for s in cfg.situations if s.id == "night")
    assert night.schedule == ((19 * 60, 23 * 60 + 59), (0, 6 * 60)) and night.prefer == "accuracy"


@pytest.mark.parametrize("spec_file", ["specs/demo-site.yaml", "specs/tower-crane-site.yaml", "specs/small-site-rv1106.yaml",
                                       "specs/worker-zone-footage.yaml", "specs/one-by-one-footage.yaml"])
def test_every_device_config_round_trips_through_json(spec_file):
    spec = load_spec(spec_file).spec
    for role in device_roles(spec, "host-cpu"):
        cfg = resolve_device(spec, role, {}, threads=2)
        assert RuntimeConfig.from_json(cfg.to_json()) == cfg


def test_devices_on_board(tower):
    assert [d.id for d in devices_on_board(tower, "rk3588")] == ["edge-box", "gate"]
    assert [d.id for d in devices_on_board(tower, "rv1106")] == ["excavator"]


def test_each_image_carries_only_its_own_vms_token():
    """specs/field-demo.yaml: `device_tokens` gives each device's image its own token and no other's."""
    spec = load_spec("specs/field-demo.yaml").spec
    secrets = {"crane-cam": "example-crane-cam-token", "yard-cam": "example-yard-cam-token"}
    for dev, token in secrets.items():
        http = next(s for s in _config(spec, dev).sinks if s.kind == "http")
        assert http.params["token"] == token and "device_tokens" not in http.params
        others = [t for d, t in secrets.items() if d != dev]
        assert not any(t.encode() in _config(spec, dev).to_json() for t in others)
