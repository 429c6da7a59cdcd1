"""Task gates for INT8: does the quantized model still *decide* what the FP32 one decides?

The raw-output cosine (compiler/quantize.py) is a poor judge of small heads: a PPE classifier
emits two logits per crop, and where both sit near zero a harmless wobble swings the cosine from
0.999 to 0.90 between calibrations (measured on the zoo, bench/results/int8.json). So for the
decoders we own, the gate compares what the runtime would do with each model's output, on the
same held-out inputs, with FP32 as the reference:

* ``centernet-ltrb`` (detectors): detections decoded at the runtime's confidence; a box of either
  model agrees when the other model has a box at IoU >= 0.5 scoring at least the tracker's
  low-score band below that confidence (:data:`DETECTION_BAND`: ByteTrack's second stage keeps
  such a box on its track, so a person at 0.31 in FP32 and 0.29 in INT8 is the same decision);
  the score is the share of agreeing boxes, pooled over the samples.
* ``pose-heatmap``: keypoints decoded from both; a joint agrees when INT8's lies within 5% of the
  crop's longer side of FP32's (joints FP32 is unsure of, confidence < 0.2, are not scored).
* ``ppe-sigmoid``: helmet and vest decisions at 0.5; the share of crop x class decisions that agree.

Each returns ``(metric, 1.0, agreement)``: the gate's drop is ``1 - agreement`` and its threshold
is :data:`MAX_DISAGREEMENT`. One disagreeing decision is always allowed (:func:`_share`): the gate
frames of a quiet site may hold only ~20 boxes, where one box at the threshold's edge is already
5%. Decoders we do not own (a user's own model) keep the cosine gate.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from runtime.detections import iou
from runtime.detector_decoder import decode_student
from runtime.pose import decode_crop

from .modelcard import ModelCard
from .quantize import TaskGate

MAX_DISAGREEMENT = 0.05  # the INT8 model may disagree with FP32 on at most 5% of decisions
DETECTION_CONF = 0.3  # the runtime's student threshold (runtime/pipeline.py)
DETECTION_BAND = 0.1  # a box within this much below the threshold still keeps its track
POSE_TOLERANCE = 0.05  # of the crop's longer side
POSE_MIN_CONF = 0.2
PPE_THRESHOLD = 0.5


def _share(agree: int, total: int) -> float:
    """Agreement with one disagreeing decision forgiven (see the module docstring)."""
    return 1.0 if total == 0 else min(1.0, (agree + 1) / total)


def _outputs(sess, feed) -> list[np.ndarray]:
    return [np.asarray(o) for o in sess.run(None, feed)]


def detection_gate(stride: int) -> TaskGate:
    low = DETECTION_CONF - DETECTION_BAND

    def agreeing(strong, other) -> int:
        """Boxes of `strong` (>= conf) that `other` (>= conf - band) also has: same class, IoU >= 0.5."""
        keep = strong.confidence >= DETECTION_CONF
        if not keep.any() or not len(other):
            return 0
        same_class = strong.class_id[keep][:, None] == other.class_id[None, :]
        return int(((iou(strong.xyxy[keep], other.xyxy) >= 0.5) & same_class).any(axis=1).sum())

    def gate(fp32, int8, samples: Sequence[dict[str, np.ndarray]]):
        agree = n32 = n8 = 0
        for feed in samples:
            a = decode_student(*_outputs(fp32, feed)[:2], stride=stride, conf=low)
            b = decode_student(*_outputs(int8, feed)[:2], stride=stride, conf=low)
            n32 += int((a.confidence >= DETECTION_CONF).sum())
            n8 += int((b.confidence >= DETECTION_CONF).sum())
            agree += agreeing(a, b) + agreeing(b, a)
        share = _share(agree, n32 + n8)
        return (f"detections agreeing with FP32 (IoU 0.5, conf {DETECTION_CONF}, band {DETECTION_BAND}; "
                f"{n32} FP32 boxes)"), 1.0, share
    return gate


def pose_gate(fp32, int8, samples: Sequence[dict[str, np.ndarray]]):
    agree = scored = 0
    for feed in samples:
        x = next(iter(feed.values()))
        side = float(max(x.shape[-2:]))
        ha, hb = _outputs(fp32, feed)[0], _outputs(int8, feed)[0]
        stride = x.shape[-2] / ha.shape[-2]
        a, b = decode_crop(ha, stride), decode_crop(hb, stride)
        ok = a[..., 2] >= POSE_MIN_CONF
        d = np.hypot(a[..., 0] - b[..., 0], a[..., 1] - b[..., 1])
        agree += int(((d <= POSE_TOLERANCE * side) & ok).sum())
        scored += int(ok.sum())
    return f"keypoints within {POSE_TOLERANCE:.0%} of the crop of FP32's ({scored} joints)", 1.0, _share(agree, scored)


def ppe_gate(fp32, int8, samples: Sequence[dict[str, np.ndarray]]):
    agree = total = 0
    for feed in samples:
        za, zb = _outputs(fp32, feed)[0], _outputs(int8, feed)[0]
        a = 1 / (1 + np.exp(-za.reshape(len(za), -1)[:, :2].astype(np.float64))) >= PPE_THRESHOLD
        b = 1 / (1 + np.exp(-zb.reshape(len(zb), -1)[:, :2].astype(np.float64))) >= PPE_THRESHOLD
        agree += int((a == b).sum())
        total += a.size
    return f"helmet/vest decisions equal to FP32's ({total} decisions)", 1.0, _share(agree, total)


def task_gate(card: ModelCard) -> TaskGate | None:
    """The gate for a card's decoder, or None where only the cosine can judge."""
    if card.decoder == "centernet-ltrb":
        side = int(card.inputs[0].shape[-1])
        out_side = next((int(o.shape[-1]) for o in card.outputs if isinstance(o.shape[-1], int)), 0)
        return detection_gate(side // out_side if out_side else 8)
    if card.decoder == "pose-heatmap":
        return pose_gate
    if card.decoder == "ppe-sigmoid":
        return ppe_gate
    return None
