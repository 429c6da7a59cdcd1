"""Decoders: letterbox round trips, OpenCV NMS, YOLOv8 on a synthetic head output, SSD on the real teacher."""
import os
from contextlib import nullcontext as does_not_raise
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.decoders import Letterbox, decode_ssd, decode_yolov8, letterbox, nms, to_nchw_float, to_nhwc_rgb
from runtime.detections import iou

SHARED = Path(os.environ.get("SITEWARDEN_SHARED", Path(__file__).resolve().parents[3] / "shared"))
TEACHER = SHARED / "models" / "ssdlite-voc-person" / "teacher.onnx"
WORKER_GIF = SHARED / "data" / "video" / "preview_worker-zone-detection.gif"


# ---------------------------------------------------------------------------- letterbox


@pytest.mark.parametrize(
    "frame, size, centre, scale_up, scale, pad, resized",
    [
        ((480, 270), 640, True, True, 640 / 480, (0, 140), (640, 360)),
        ((480, 270), 640, False, True, 640 / 480, (0, 0), (640, 360)),
        ((270, 480), (320, 320), True, True, 320 / 480, (70, 0), (180, 320)),
        ((480, 270), 960, True, False, 1.0, (240, 345), (480, 270)),
        ((1280, 720), (640, 384), True, True, 0.5, (0, 12), (640, 360)),
    ],
)
def test_letterbox_fit(frame, size, centre, scale_up, scale, pad, resized):
    lb = Letterbox.fit(frame, size, centre=centre, scale_up=scale_up)
    assert lb.scale == pytest.approx(scale)
    assert lb.pad == pad
    assert lb.resized_size == resized


def test_letterbox_image_and_box_round_trip():
    frame = np.zeros((270, 480, 3), np.uint8)
    frame[100:150, 200:260] = 255                           # a white box, x 200..260, y 100..150
    img, lb = letterbox(frame, 640)
    assert img.shape == (640, 640, 3) and img.dtype == np.uint8
    assert (img[:140] == 114).all() and (img[500:] == 114).all()  # grey bands above and below
    ys, xs = np.nonzero(img[:, :, 0] == 255)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    np.testing.assert_allclose(lb.to_frame(found), [[200, 100, 260, 150]], atol=1.0)
    boxes = np.array([[0, 0, 480, 270], [10.5, 20.25, 30, 40]], np.float32)
    np.testing.assert_allclose(lb.to_frame(lb.to_input(boxes)), boxes, atol=1e-4)
    # boxes reaching into the padding are clipped to the frame
    np.testing.assert_array_equal(lb.to_frame([[-5, 100, 700, 600]]), [[0, 0, 480, 270]])


@pytest.mark.parametrize(
    "frame_size, input_size, image_shape, expectation",
    [
        ((480, 270), 640, (270, 480, 3), does_not_raise()),
        ((0, 270), 640, None, pytest.raises(ValueError, match="positive")),
        ((480, 270), 640, (480, 270, 3), pytest.raises(ValueError, match="fitted")),
    ],
)
def test_letterbox_errors(frame_size, input_size, image_shape, expectation):
    with expectation:
        lb = Letterbox.fit(frame_size, input_size)
        lb.apply(np.zeros(image_shape, np.uint8))


def test_input_blobs():
    img = np.zeros((4, 6, 3), np.uint8)
    img[..., 0] = 255                                       # blue in BGR
    blob = to_nchw_float(img)
    assert blob.shape == (1, 3, 4, 6) and blob.dtype == np.float32
    assert blob[0, 2].max() == 1.0 and blob[0, 0].max() == 0.0  # RGB order: blue is the last plane
    nhwc = to_nhwc_rgb(img)
    assert nhwc.shape == (1, 4, 6, 3) and nhwc.dtype == np.uint8 and (nhwc[..., 2] == 255).all()


# ---------------------------------------------------------------------------- NMS


def test_nms_is_class_aware_and_ordered_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.7, 0.8, 0.9, 0.1], np.float32)
    assert nms(boxes, scores, np.array([0, 0, 1, 0]), iou=0.5).tolist() == [2, 1, 3]
    assert nms(boxes, scores, None, iou=0.5).tolist() == [2, 3]
    assert nms(boxes, scores, None, iou=0.5, max_det=1).tolist() == [2]
    assert nms(boxes, scores, np.zeros(4), iou=0.95).tolist() == [2, 1, 3]  # only the exact copy goes
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []


# ---------------------------------------------------------------------------- YOLOv8

FRAME = (480, 270)
# known objects in frame pixels: (x1, y1, x2, y2), model class, score
TRUTH = [((100, 50, 160, 230), 0, 0.92), ((300, 120, 460, 220), 7, 0.81), ((20, 200, 60, 260), 2, 0.55)]
NC = 80


def yolo_output(lb: Letterbox, channels_first=True, n=8400, seed=0) -> np.ndarray:
    """A [1, 4+nc, N] head output: background noise below 0.1, each true object as its best
    candidate plus two shifted, weaker duplicates that NMS must remove."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 4 + NC), np.float32)
    out[:, :2] = rng.uniform(0, 640, (n, 2))
    out[:, 2:4] = rng.uniform(4, 60, (n, 2))
    out[:, 4:] = rng.uniform(0, 0.1, (n, NC))
    row = 0
    for box, cls, score in TRUTH:
        x1, y1, x2, y2 = lb.to_input(np.array([box], np.float32))[0]
        for k, (shift, s) in enumerate([(0, score), (3, score - 0.1), (-4, score - 0.2)]):
            r = 97 * row + 11                               # spread among the noise
            out[r, :4] = [(x1 + x2) / 2 + shift, (y1 + y2) / 2 - shift, x2 - x1, y2 - y1]
            out[r, 4:] = 0.01
            out[r, 4 + cls] = s
            row += 1
    out = out.T if channels_first else out
    return out[None]


@pytest.mark.parametrize("channels_first", [True, False])
def test_decode_yolov8_recovers_known_boxes(channels_first):
    lb = Letterbox.fit(FRAME, 640)
    dets = decode_yolov8(yolo_output(lb, channels_first), conf=0.25, iou=0.45, letterbox=lb)
    assert len(dets) == 3                                   # duplicates suppressed, noise below conf
    assert dets.confidence.tolist() == pytest.approx([0.92, 0.81, 0.55], abs=1e-6)  # best first
    assert dets.class_id.tolist() == [0, 7, 2]
    np.testing.assert_allclose(dets.xyxy, [box for box, _, _ in TRUTH], atol=0.5)
    assert dets.tracker_id.tolist() == [-1, -1, -1]


def test_decode_yolov8_class_map_merges_and_drops_classes():
    lb = Letterbox.fit(FRAME, 640)
    out = yolo_output(lb)
    dets = decode_yolov8(out, conf=0.25, letterbox=lb, class_map={0: 0, 7: 1, 2: 1})
    assert sorted(dets.class_id.tolist()) == [0, 1, 1]
    only_people = decode_yolov8(out, conf=0.25, letterbox=lb, class_map={0: 0})
    assert only_people.class_id.tolist() == [0] and len(only_people) == 1
    high = decode_yolov8(out, conf=0.6, letterbox=lb)
    assert high.class_id.tolist() == [0, 7]
    no_nms = decode_yolov8(out, conf=0.25, iou=None, letterbox=lb)
    assert len(no_nms) == 9                                 # every object and both its duplicates


def test_decode_yolov8_without_letterbox_stays_in_input_pixels():
    lb = Letterbox.fit(FRAME, 640)
    dets = decode_yolov8(yolo_output(lb), conf=0.5, num_classes=NC)
    np.testing.assert_allclose(dets.xyxy[0], lb.to_input(np.array([[100, 50, 160, 230]]))[0], atol=0.5)


@pytest.mark.parametrize(
    "shape, kwargs, expectation",
    [
        ((1, 84, 100), {}, does_not_raise()),
        ((1, 100, 84), {"num_classes": 80}, does_not_raise()),
        ((2, 84, 100), {}, pytest.raises(ValueError, match="batch")),
        ((1, 84, 100), {"num_classes": 3}, pytest.raises(ValueError, match="4 \\+ 3")),
        ((1, 4, 100), {}, pytest.raises(ValueError, match="at least one class")),
        ((84,), {}, pytest.raises(ValueError)),
    ],
)
def test_decode_yolov8_shapes(shape, kwargs, expectation):
    with expectation:
        decode_yolov8(np.zeros(shape, np.float32), **kwargs)


# ---------------------------------------------------------------------------- SSD


def test_decode_ssd_synthetic_layouts():
    boxes = np.array([[[0.1, 0.2, 0.5, 0.4], [0.0, 0.0, 0.001, 0.001], [0.5, 0.5, 0.9, 0.9]]], np.float32)
    scores = np.array([[0.9, 0.8, 0.2]], np.float32)
    classes = np.array([[1.0, 1.0, 1.0]], np.float32)
    d = decode_ssd(boxes, scores, classes, conf=0.3, frame_size=(480, 270), class_map={1: 0})
    assert len(d) == 1                                      # the tiny box and the weak one are gone
    np.testing.assert_allclose(d.xyxy, [[0.2 * 480, 0.1 * 270, 0.4 * 480, 0.5 * 270]], rtol=1e-5)
    assert d.class_id.tolist() == [0]
    assert len(decode_ssd(boxes, scores, classes, conf=0.3, frame_size=(480, 270), class_map={2: 0})) == 0
    # a letterboxed input: normalised coordinates refer to the padded square
    lb = Letterbox.fit((480, 270), 480)                     # pads 105 rows above and below
    d = decode_ssd(boxes, scores, None, conf=0.3, letterbox=lb)
    np.testing.assert_allclose(d.xyxy, [[96, 0, 192, 0.5 * 480 - 105]], atol=1e-3)  # top clipped at 0
    d = decode_ssd([[0.3, 0.2, 0.5, 0.4]], [0.9], None, letterbox=lb)
    np.testing.assert_allclose(d.xyxy, [[96, 0.3 * 480 - 105, 192, 0.5 * 480 - 105]], atol=1e-3)
    assert d.class_id.tolist() == [0]
    with pytest.raises(ValueError, match="exactly one"):
        decode_ssd(boxes, scores)


@pytest.fixture(scope="module")
def teacher():
    if not TEACHER.is_file() or not WORKER_GIF.is_file():
        pytest.skip(f"shared teacher/footage not found under {SHARED} (set SITEWARDEN_SHARED)")
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(TEACHER), so, providers=["CPUExecutionProvider"])


def read_frame(path: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    for _ in range(index + 1):
        ok, frame = cap.read()
        assert ok, f"{path.name} has fewer than {index + 1} frames"
    cap.release()
    return frame


# The worker in frame 35, boxed by hand from the frame (hard hat to shoes).
WORKER_35 = np.array([[110, 64, 176, 246]], np.float32)


def test_decode_ssd_finds_the_worker_with_the_real_teacher(teacher):
    frame = read_frame(WORKER_GIF, 35)
    h, w = frame.shape[:2]
    img, lb = letterbox(frame, max(h, w), centre=False)     # padded to a square, as the teacher was measured
    _, boxes, scores, classes = teacher.run(None, {"image_tensor:0": to_nhwc_rgb(img)})
    people = decode_ssd(boxes, scores, classes, conf=0.5, iou=0.5, letterbox=lb, class_map={1: 0})
    assert len(people) == 1, people
    assert iou(people, WORKER_35)[0, 0] >= 0.6, people.xyxy
    x1, y1, x2, y2 = people.xyxy[0]
    assert (y2 - y1) > 1.5 * (x2 - x1)                      # an upright person, not a blob
    # the same frame squashed straight into the graph (no letterbox) maps back to the frame too
    _, boxes, scores, classes = teacher.run(None, {"image_tensor:0": to_nhwc_rgb(frame)})
    squashed = decode_ssd(boxes, scores, classes, conf=0.3, frame_size=(w, h))
    if len(squashed):                                       # recall is low without the letterbox
        assert iou(squashed[:1], WORKER_35)[0, 0] >= 0.5
