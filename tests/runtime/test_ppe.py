"""runtime.ppe: crop geometry, preprocessing, decoding and the colour baseline (numpy only)."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from runtime import ppe

SRC = Path(ppe.__file__)


def test_imports_only_the_runtime_set():
    tree = ast.parse(SRC.read_text())
    mods = {n.module.split(".")[0] if isinstance(n, ast.ImportFrom) else a.name.split(".")[0]
            for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
            for a in (n.names if isinstance(n, ast.Import) else [n])}
    assert mods <= {"numpy", "cv2", "__future__"}  # cv2: optional at import, the crops' resize


@pytest.mark.parametrize("box", [
    (100, 50, 140, 150),          # well inside
    (-20, -30, 30, 80),           # over the top-left corner
    (600, 300, 700, 420),         # over the bottom-right corner
    (10.4, 20.7, 11.2, 22.9),     # tiny
    (700, 400, 760, 500),         # wholly outside
])
def test_regions_inside_box_and_clipped(box):
    shape = (360, 640, 3)
    b = np.array([box], float)
    for region in (ppe.head_boxes(b, shape), ppe.torso_boxes(b, shape), ppe.crop_boxes(b, shape)):
        x1, y1, x2, y2 = region[0]
        assert 0 <= x1 <= x2 <= 640 and 0 <= y1 <= y2 <= 360
    grown = ppe.crop_boxes(b, (10_000, 10_000))[0]
    for region in (ppe.head_boxes(b, (10_000, 10_000)), ppe.torso_boxes(b, (10_000, 10_000))):
        x1, y1, x2, y2 = region[0]
        # head / torso lie inside the (unclipped) box, up to the rounding out to whole pixels
        assert box[0] - 1 <= x1 and x2 <= box[2] + 1 and box[1] - 1 <= y1 and y2 <= box[3] + 1
        assert grown[0] <= x1 and grown[2] >= x2


def test_head_above_torso():
    b = np.array([[100, 40, 140, 140]], float)
    h, t = ppe.head_boxes(b, (360, 640))[0], ppe.torso_boxes(b, (360, 640))[0]
    assert h[1] == 40 and h[1] < t[1] < h[3] < t[3] and t[3] <= 40 + 0.6 * 100


def test_person_crops_letterbox_and_edges():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    boxes = np.array([[100, 50, 140, 150], [-50, -50, 20, 30], [700, 0, 800, 100]], float)
    crops = ppe.person_crops(frame, boxes, size=(64, 128))
    assert crops.shape == (3, 128, 64, 3) and crops.dtype == np.uint8
    assert (crops[2] == ppe.PAD_VALUE).all()           # outside the frame: all padding
    # a box taller than 2:1 fills the height and pads the sides
    assert (crops[0][:, 0] == ppe.PAD_VALUE).all() and not (crops[0][64] == ppe.PAD_VALUE).all()


def test_resize_matches_opencv_bilinear():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (50, 30, 3), dtype=np.uint8)
    ours = ppe.resize_bilinear(img, 64, 128)
    ref = cv2.resize(img, (64, 128), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    assert np.abs(ours - ref).max() <= 1.0


def test_opencv_resize_matches_the_numpy_reference_up_and_down():
    """The crops training used (numpy) and the runtime's (OpenCV) are the same to 5e-3 (of 255)."""
    rng = np.random.default_rng(2)
    for _ in range(200):
        h, w = rng.integers(1, 300, 2)
        ow, oh = rng.integers(1, 140, 2)
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        fast, ref = ppe.resize_bilinear(img, ow, oh), ppe.resize_bilinear_numpy(img, ow, oh)
        assert fast.shape == ref.shape == (oh, ow, 3) and fast.dtype == np.float32
        assert np.abs(fast - ref).max() < 5e-3, (h, w, ow, oh)
    grey = rng.integers(0, 256, (40, 20), dtype=np.uint8)
    assert ppe.resize_bilinear(grey, 8, 16).shape == ppe.resize_bilinear_numpy(grey, 8, 16).shape == (16, 8, 1)


def test_preprocess_layout_and_scale():
    crops = np.zeros((2, 128, 64, 3), np.uint8)
    crops[..., 0] = 255                                  # blue in BGR
    x = ppe.preprocess(crops)
    assert x.shape == (2, 3, 128, 64) and x.dtype == np.float32
    assert np.all(x[:, 2] == 1.0) and np.all(x[:, :2] == 0.0)   # RGB: blue is the last channel
    assert ppe.preprocess(crops[0]).shape == (1, 3, 128, 64)


def test_decode_sigmoid():
    p = ppe.decode(np.array([[0.0, 100.0], [-100.0, 2.0]], np.float32))
    assert p.shape == (2, 2)
    np.testing.assert_allclose(p, [[0.5, 1.0], [0.0, 1 / (1 + np.exp(-2))]], atol=1e-6)
    assert ppe.decode(np.zeros((3, 2, 1, 1))).shape == (3, 2)


def test_hsv_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(2)
    img = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    h, s, v = ppe.hsv(img)
    ref = cv2.cvtColor(img, cv2.COLOR_BGR2HSV_FULL).astype(np.float32)   # H scaled to 0..255
    dh = np.abs(h / 360 * 256 - ref[..., 0])
    dh = np.minimum(dh, 256 - dh)
    assert dh[s > 0.1].max() <= 2.0
    assert np.abs(s * 255 - ref[..., 1]).max() <= 1.0 and np.abs(v * 255 - ref[..., 2]).max() <= 1.0


def _person(torso_bgr, head_bgr=(60, 60, 60)):
    """A 40x100 'person' on a grey frame: head on top, torso below."""
    frame = np.full((200, 200, 3), 128, np.uint8)
    frame[50:70, 85:115] = head_bgr
    frame[70:110, 82:118] = torso_bgr
    frame[110:150, 85:115] = (80, 60, 40)
    return frame, np.array([[80, 50, 120, 150]], float)


def test_colour_baseline_flags_orange_vest_not_grey():
    orange, box = _person((20, 110, 255))
    grey, _ = _person((130, 130, 130))
    assert ppe.colour_baseline(orange, box)[0, 1]
    assert not ppe.colour_baseline(grey, box)[0, 1]
    assert ppe.colour_scores(orange, box)[0, 1] > 0.5 > ppe.colour_scores(grey, box)[0, 1]


def test_colour_baseline_flags_yellow_helmet():
    yellow, box = _person((130, 130, 130), head_bgr=(20, 215, 245))
    dark, _ = _person((130, 130, 130))
    assert ppe.colour_baseline(yellow, box)[0, 0] and not ppe.colour_baseline(dark, box)[0, 0]


def test_empty_inputs():
    frame = np.zeros((10, 10, 3), np.uint8)
    assert ppe.person_crops(frame, np.zeros((0, 4))).shape == (0, 128, 64, 3)
    assert ppe.colour_scores(frame, np.zeros((0, 4))).shape == (0, 2)
