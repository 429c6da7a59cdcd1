"""Detections: construction, masking, merging, immutability and the IoU matrix."""
import dataclasses
from contextlib import nullcontext as does_not_raise

import numpy as np
import pytest

from runtime.detections import Detections, cxcywh_to_xyxy, iou

BOXES = np.array([[0, 0, 10, 20], [5, 5, 15, 15], [100, 100, 110, 130], [50, 0, 60, 10]], np.float32)


def make(n=4, **kw):
    return Detections.from_arrays(
        BOXES[:n], confidence=np.linspace(0.9, 0.6, n), class_id=np.arange(n) % 2,
        data={"kp": np.arange(n * 6, dtype=np.float32).reshape(n, 2, 3), "vest": np.arange(n) / 10}, **kw)


def test_from_arrays_defaults_and_dtypes():
    d = Detections.from_arrays([[1, 2, 3, 4]])
    assert len(d) == 1
    assert d.xyxy.dtype == np.float32 and d.confidence.dtype == np.float32
    assert d.class_id.dtype == np.int64 and d.tracker_id.dtype == np.int64
    assert d.confidence.tolist() == [1.0] and d.class_id.tolist() == [0] and d.tracker_id.tolist() == [-1]
    assert dict(d.data) == {}


@pytest.mark.parametrize(
    "kwargs, expectation",
    [
        (dict(xyxy=np.zeros((2, 4)), confidence=np.ones(2), class_id=[0, 1], tracker_id=[-1, -1]), does_not_raise()),
        (dict(xyxy=np.zeros((0, 4)), confidence=[], class_id=[], tracker_id=[]), does_not_raise()),
        (dict(xyxy=np.zeros((2, 3)), confidence=np.ones(2), class_id=[0, 1], tracker_id=[-1, -1]), pytest.raises(ValueError, match="xyxy")),
        (dict(xyxy=np.zeros((2, 4)), confidence=np.ones(3), class_id=[0, 1], tracker_id=[-1, -1]), pytest.raises(ValueError, match="confidence")),
        (dict(xyxy=np.zeros((2, 4)), confidence=np.ones(2), class_id=[[0, 1]], tracker_id=[-1, -1]), pytest.raises(ValueError, match="class_id")),
        (dict(xyxy=np.zeros((2, 4)), confidence=np.ones(2), class_id=[0, 1], tracker_id=[-1]), pytest.raises(ValueError, match="tracker_id")),
        (dict(xyxy=np.zeros((2, 4)), confidence=np.ones(2), class_id=[0, 1], tracker_id=[-1, -1], data={"kp": np.zeros((3, 17, 3))}), pytest.raises(ValueError, match="kp")),
    ],
)
def test_validation(kwargs, expectation):
    with expectation:
        Detections(**kwargs)


@pytest.mark.parametrize(
    "index, expected_rows",
    [
        (np.array([True, False, True, False]), [0, 2]),
        ([True, False, False, True], [0, 3]),
        (np.array([3, 1]), [3, 1]),
        ([2], [2]),
        (slice(1, 3), [1, 2]),
        (slice(None, None, -1), [3, 2, 1, 0]),
        (2, [2]),
        (np.int64(-1), [3]),
        ([], []),
        (np.zeros(4, bool), []),
    ],
)
def test_indexing_selects_every_column(index, expected_rows):
    d = make()
    sub = d[index]
    assert isinstance(sub, Detections)
    assert len(sub) == len(expected_rows)
    np.testing.assert_array_equal(sub.xyxy, d.xyxy[expected_rows].reshape(-1, 4))
    np.testing.assert_array_equal(sub.confidence, d.confidence[expected_rows])
    np.testing.assert_array_equal(sub.class_id, d.class_id[expected_rows])
    np.testing.assert_array_equal(sub.tracker_id, d.tracker_id[expected_rows])
    np.testing.assert_array_equal(sub.data["kp"], d.data["kp"][expected_rows].reshape(-1, 2, 3))
    np.testing.assert_array_equal(sub.data["vest"], d.data["vest"][expected_rows])


@pytest.mark.parametrize(
    "index, expectation",
    [
        (np.array([True, False]), pytest.raises(IndexError)),
        (np.array([0.5]), pytest.raises(IndexError)),
        (7, pytest.raises(IndexError)),
        (np.array([True, True, False, False]), does_not_raise()),
    ],
)
def test_bad_indices(index, expectation):
    with expectation:
        make()[index]


def test_mask_by_class_is_the_everyday_use():
    d = make()
    people = d[d.class_id == 0]
    assert people.class_id.tolist() == [0, 0]
    assert people.data["vest"].tolist() == pytest.approx([0.0, 0.2])


def test_immutable_and_never_locks_the_callers_arrays():
    boxes = BOXES.copy()
    d = Detections.from_arrays(boxes)
    with pytest.raises(ValueError):
        d.xyxy[0, 0] = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.xyxy = boxes  # type: ignore[misc]
    with pytest.raises(TypeError):
        make().data["kp"] = np.zeros((4, 2, 3))  # type: ignore[index]
    boxes[0, 0] = 99  # the caller's own array stays writeable
    assert boxes.flags.writeable


def test_with_replaces_fields_and_validates():
    d = make()
    e = d.with_(tracker_id=np.array([7, 8, 9, 10]))
    assert e.tracker_id.tolist() == [7, 8, 9, 10]
    assert d.tracker_id.tolist() == [-1, -1, -1, -1]  # the original is untouched
    np.testing.assert_array_equal(e.xyxy, d.xyxy)
    with pytest.raises(ValueError):
        d.with_(confidence=np.ones(2))


def test_merge_concatenates_and_skips_empty_parts():
    d = make()
    m = Detections.merge([d[:1], Detections.empty(), d[2:]])
    assert len(m) == 3
    np.testing.assert_array_equal(m.xyxy, d.xyxy[[0, 2, 3]])
    np.testing.assert_array_equal(m.data["kp"], d.data["kp"][[0, 2, 3]])
    assert len(Detections.merge([])) == 0


def test_merge_keeps_data_keys_of_empty_inputs_and_refuses_mismatched_keys():
    empty = Detections.empty({"kp": ((17, 3), np.float32)})
    assert empty.data["kp"].shape == (0, 17, 3)
    assert set(Detections.merge([empty, empty]).data) == {"kp"}
    with pytest.raises(ValueError, match="data keys"):
        Detections.merge([make(), Detections.from_arrays(BOXES[:1])])


def test_geometry_helpers():
    d = Detections.from_arrays([[0, 0, 10, 20], [10, 10, 20, 50], [5, 5, 5, 9]])
    assert d.areas.tolist() == [200, 400, 0]
    assert d.bottom_centre.tolist() == [[5, 20], [15, 50], [5, 9]]
    assert d.centres.tolist() == [[5, 10], [15, 30], [5, 7]]
    np.testing.assert_array_equal(d.clip(12, 30).xyxy, [[0, 0, 10, 20], [10, 10, 12, 30], [5, 5, 5, 9]])
    np.testing.assert_array_equal(cxcywh_to_xyxy([[5, 10, 10, 20]]), [[0, 0, 10, 20]])


def _iou_loop(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def test_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 10, 20, 20], [2, 2, 4, 4]])
    np.testing.assert_allclose(iou(a, b), [[1.0, 50 / 150, 0.0, 0.04]], rtol=1e-6)


def test_iou_matches_a_plain_loop_on_random_boxes():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (30, 2))
    a = np.concatenate([xy, xy + rng.uniform(1, 40, (30, 2))], axis=1)
    xy = rng.uniform(0, 100, (20, 2))
    b = np.concatenate([xy, xy + rng.uniform(1, 40, (20, 2))], axis=1)
    got = iou(Detections.from_arrays(a), Detections.from_arrays(b))
    assert got.shape == (30, 20)
    np.testing.assert_allclose(got, _iou_loop(a.astype(np.float32), b.astype(np.float32)), atol=1e-6)
    assert (got > 0).any() and (got == 0).any()  # the sample really has overlapping and disjoint pairs


def test_iou_shapes_with_no_boxes_and_degenerate_boxes():
    assert iou(np.zeros((0, 4)), BOXES).shape == (0, 4)
    assert iou(BOXES, Detections.empty()).shape == (4, 0)
    assert iou([[1, 1, 1, 1]], [[1, 1, 1, 1]]).tolist() == [[0.0]]  # no NaN from 0/0
