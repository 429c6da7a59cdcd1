"""`build.py preview`: zones and the ground grid drawn on a frame from the camera's source."""
import cv2
import numpy as np
from click.testing import CliRunner

import build


def run(*args):
    return CliRunner().invoke(build.cli, ["preview", *args])


def test_preview_draws_the_danger_zone_where_the_sim_paints_it(tmp_path):
    out = tmp_path / "p.png"
    r = run("specs/demo-site.yaml", "--camera", "crane-cam", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert "reprojection error: 0.00 px" in r.output
    img = cv2.imread(str(out))
    assert img.shape == (360, 640, 3)
    # the crane-swing zone's outline is drawn in red over its pixel polygon's first edge
    y, x0, x1 = 196, 240, 420
    edge = img[y - 1:y + 2, x0:x1].reshape(-1, 3).astype(int)
    assert np.mean((edge[:, 2] > 150) & (edge[:, 1] < 90)) > 0.5


def test_unknown_camera_suggests_the_right_one(tmp_path):
    r = run("specs/demo-site.yaml", "--camera", "crane-came", "-o", str(tmp_path / "p.png"))
    assert r.exit_code == 2 and "did you mean 'crane-cam'" in r.output


def test_unreachable_source_asks_for_a_still(tmp_path):
    spec = tmp_path / "s.yaml"  # a USB camera that is not plugged in (tests never dial out to camera addresses)
    spec.write_text("site: {name: s}\ndefaults: {board: host-cpu}\ncameras: [{id: cam, source: 'usb:9'}]\n")
    r = run(str(spec), "--camera", "cam", "-o", str(tmp_path / "p.png"))
    assert r.exit_code == 2 and "--frame" in r.output


def test_a_still_frame_can_stand_in(tmp_path):
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), np.full((720, 1280, 3), 80, np.uint8))
    r = run("specs/tower-crane-site.yaml", "--camera", "gate", "--frame", str(still), "-o", str(tmp_path / "p.png"))
    assert r.exit_code == 0 and "calibration reprojection error" in r.output
