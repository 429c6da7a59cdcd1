"""runtime.detector_decoder: known heatmaps and box maps decode to known boxes; NMS; letterbox."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.decoders import Letterbox
from runtime.detector_decoder import DECODER_KIND, decode_student, encode_box, peaks, sigmoid

S = 8


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def maps(objects, grid=(8, 10), classes=2):
    """objects: (class, row, col, score, xyxy input px) -> (heatmap logits, box log-distances)."""
    heat = np.full((1, classes, *grid), -10.0, np.float32)
    box = np.zeros((1, 4, *grid), np.float32)
    for c, r, q, p, xyxy in objects:
        heat[0, c, r, q] = logit(p)
        box[0, :, r, q] = encode_box(xyxy, r, q, S)
    return heat, box


def test_one_known_box():
    heat, box = maps([(0, 3, 4, 0.9, (20.0, 10.0, 52.0, 50.0))])
    d = decode_student(heat, box, stride=S, conf=0.3)
    assert len(d) == 1 and d.class_id[0] == 0
    np.testing.assert_allclose(d.xyxy[0], [20, 10, 52, 50], atol=1e-3)
    assert d.confidence[0] == pytest.approx(0.9, abs=1e-5)
    assert DECODER_KIND == "centernet-ltrb"


def test_classes_and_threshold():
    heat, box = maps([(0, 1, 1, 0.8, (0, 0, 20, 30)), (1, 6, 8, 0.6, (50, 40, 80, 64)),
                      (0, 6, 2, 0.2, (10, 40, 30, 60))])
    d = decode_student(heat, box, stride=S, conf=0.3)
    assert sorted(d.class_id.tolist()) == [0, 1]
    np.testing.assert_allclose(d.xyxy[d.class_id == 1][0], [50, 40, 80, 64], atol=1e-3)
    assert len(decode_student(heat, box, stride=S, conf=0.1)) == 3


def test_peak_picking_keeps_only_local_maxima():
    s = np.zeros((1, 5, 5), np.float32)
    s[0, 2, 2], s[0, 2, 3], s[0, 0, 0] = 0.9, 0.7, 0.5
    c, r, q = peaks(s, 0.3)
    assert list(zip(r.tolist(), q.tolist())) == [(0, 0), (2, 2)]


def test_nms_suppresses_overlapping_peaks_of_one_class_only():
    a = (16.0, 16.0, 48.0, 64.0)
    heat, box = maps([(0, 3, 3, 0.9, a), (0, 3, 5, 0.8, (18.0, 17.0, 50.0, 66.0)),   # same person twice
                      (1, 3, 5 - 0, 0.7, (18.0, 17.0, 50.0, 66.0))])                 # a machine there: kept
    d = decode_student(heat, box, stride=S, conf=0.3, iou=0.5)
    assert sorted(d.class_id.tolist()) == [0, 1]
    np.testing.assert_allclose(d.xyxy[d.class_id == 0][0], a, atol=1e-3)
    assert len(decode_student(heat, box, stride=S, conf=0.3, iou=None)) == 3


def test_letterbox_maps_back_to_the_frame():
    lb = Letterbox.fit((160, 90), 80)            # scale 0.5, pad top 17
    heat, box = maps([(0, 5, 5, 0.9, (30.0, 27.0, 60.0, 57.0))], grid=(10, 10))
    d = decode_student(heat, box, stride=S, conf=0.3, letterbox=lb)
    np.testing.assert_allclose(d.xyxy[0], [60, 20, 120, 80], atol=1e-2)


def test_empty_and_bad_shapes():
    heat, box = maps([])
    assert len(decode_student(heat, box, stride=S, conf=0.3)) == 0
    with pytest.raises(ValueError):
        decode_student(heat, box[:, :, :4], stride=S)
    with pytest.raises(ValueError):
        decode_student(np.concatenate([heat, heat]), np.concatenate([box, box]), stride=S)


def test_sigmoid_is_stable():
    assert np.isfinite(sigmoid(np.array([-1e4, 0, 1e4]))).all()
