"""Single-frame skeleton posture: keypoints of one person in, one of six postures out.

numpy only, so training (``distill.posture``), evaluation, benchmarks and the device build the
same input and decode the same way:

    x = features(keypoints, boxes)                   # (N, 52) float32: 17 x (x, y, conf) + box shape
    p = decode(session.run(None, {"keypoints": x})[0])   # (N, 6) class probabilities
    labels = [CLASSES[i] for i in p.argmax(1)]

    rule = rule_baseline(keypoints, boxes)           # (N,) class index: the torso-angle hand rule

Normalisation: a joint counts as present when its confidence is at least ``MIN_CONF``; missing
joints become (0, 0, 0), so any subset may be missing (the face, one side, the legs behind a
stack of blocks). Coordinates are centred on the mid-hip (the mid-shoulder where no hip is
present, else the mean of the present joints, else the box centre) and divided by the person
box's longer side (the extent of the present joints where no box is given), so the input does
not change when the person moves or is nearer or farther. The box's aspect (log w/h) is the last
feature: a lying person's box is wide whatever joints are seen.
"""
from __future__ import annotations

import numpy as np

CLASSES = ("standing", "walking", "bending", "crouching", "fallen", "arms_raised")
# the sim's postures -> class index; "falling" (the 1 s of tipping over) is its own label in the data
# and is left out of training and scoring: its first frames look standing, its last ones fallen
LABELS = {"standing": 0, "walking": 1, "bending": 2, "crouching": 3, "fallen": 4, "arms_raised": 5, "falling": -1}
DECODER = "posture-softmax"
INPUT_NAME, OUTPUT_NAME = "keypoints", "logits"
N_JOINTS = 17
N_FEATURES = N_JOINTS * 3 + 1
MIN_CONF = 0.1                    # heatmap peaks: the pose students give ~0.15-0.5 for seen joints
FACE = (0, 1, 2, 3, 4)
LEFT = (1, 3, 5, 7, 9, 11, 13, 15)
RIGHT = (2, 4, 6, 8, 10, 12, 14, 16)
SHOULDERS, HIPS, WRISTS, KNEES, ANKLES = (5, 6), (11, 12), (9, 10), (13, 14), (15, 16)
FALLEN = CLASSES.index("fallen")


def _as_kp(keypoints) -> np.ndarray:
    kp = np.asarray(keypoints, np.float64)
    return kp.reshape(-1, N_JOINTS, kp.shape[-1])


def present_mask(keypoints, min_conf: float = MIN_CONF) -> np.ndarray:
    """(N, 17) bool: joints with a confidence >= ``min_conf`` and finite coordinates."""
    kp = _as_kp(keypoints)
    return (kp[..., 2] >= min_conf) & np.isfinite(kp[..., :2]).all(axis=-1)


def _group_mean(kp: np.ndarray, pres: np.ndarray, idx) -> tuple[np.ndarray, np.ndarray]:
    """Mean (N, 2) of the present joints of ``idx``, and (N,) whether any is present."""
    m = pres[:, list(idx)].astype(np.float64)
    cnt = m.sum(axis=1)
    s = (np.nan_to_num(kp[:, list(idx), :2]) * m[..., None]).sum(axis=1)
    return s / np.maximum(cnt, 1)[:, None], cnt > 0


def normalise(keypoints, boxes=None, min_conf: float = MIN_CONF) -> np.ndarray:
    """(N, 17, 3) float32: centred, scaled x, y and the confidence; missing joints (0, 0, 0)."""
    kp = _as_kp(keypoints)
    n = len(kp)
    pres = present_mask(kp, min_conf)
    hip, has_hip = _group_mean(kp, pres, HIPS)
    sho, has_sho = _group_mean(kp, pres, SHOULDERS)
    allm, has_any = _group_mean(kp, pres, range(N_JOINTS))
    if boxes is not None:
        b = np.asarray(boxes, np.float64).reshape(n, 4)
        box_c = (b[:, :2] + b[:, 2:]) / 2
        scale = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    else:
        box_c = np.zeros((n, 2))
        xy = np.where(pres[..., None], np.nan_to_num(kp[..., :2]), np.nan)
        with np.errstate(invalid="ignore"), _quiet():
            ext = np.nanmax(xy, axis=1) - np.nanmin(xy, axis=1)
        scale = np.nan_to_num(np.max(ext, axis=1), nan=0.0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    centre = np.where(has_hip[:, None], hip, np.where(has_sho[:, None], sho, np.where(has_any[:, None], allm, box_c)))
    out = np.zeros((n, N_JOINTS, 3), np.float32)
    out[..., :2] = (np.nan_to_num(kp[..., :2]) - centre[:, None, :]) / scale[:, None, None]
    out[..., 2] = np.clip(np.nan_to_num(kp[..., 2]), 0.0, 1.0)
    out[~pres] = 0.0
    return out


class _quiet:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *a):
        self._w.__exit__(*a)


def box_aspect(boxes, n: int) -> np.ndarray:
    """(N,) log(w / h) of the person boxes, clipped to +-2; 0 where no box is given."""
    if boxes is None:
        return np.zeros(n, np.float32)
    b = np.asarray(boxes, np.float64).reshape(n, 4)
    w, h = np.maximum(b[:, 2] - b[:, 0], 1e-3), np.maximum(b[:, 3] - b[:, 1], 1e-3)
    return np.clip(np.log(w / h), -2.0, 2.0).astype(np.float32)


def features(keypoints, boxes=None, min_conf: float = MIN_CONF) -> np.ndarray:
    """The posture model's input: (N, 52) float32."""
    kp = _as_kp(keypoints)
    x = normalise(kp, boxes, min_conf).reshape(len(kp), N_JOINTS * 3)
    return np.ascontiguousarray(np.concatenate([x, box_aspect(boxes, len(kp))[:, None]], axis=1), dtype=np.float32)


def decode(logits: np.ndarray) -> np.ndarray:
    """(N, 6) logits -> (N, 6) softmax probabilities."""
    z = np.asarray(logits, np.float64).reshape(len(logits), -1)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


# ----------------------------------------------------------------------------- the rule baseline

RULE = dict(fallen_deg=50.0, fallen_legs=1.0, wide=1.4, wide_deg=40.0, bending_deg=35.0, arms_above=0.6,
            crouch_legs=1.1, walk_feet=0.65)


def torso_angle(keypoints, min_conf: float = MIN_CONF) -> tuple[np.ndarray, np.ndarray]:
    """(N,) angle in degrees of the hip -> shoulder line from image-up (0 upright, 90 lying, 180
    upside down) and (N,) whether it could be measured (a shoulder and a hip present)."""
    kp = _as_kp(keypoints)
    pres = present_mask(kp, min_conf)
    sho, a = _group_mean(kp, pres, SHOULDERS)
    hip, b = _group_mean(kp, pres, HIPS)
    d = sho - hip
    ang = np.degrees(np.arctan2(np.abs(d[:, 0]), -d[:, 1]))
    return ang, a & b


def rule_baseline(keypoints, boxes=None, min_conf: float = MIN_CONF, rule: dict | None = None) -> np.ndarray:
    """The hand rule on the shoulder-hip line and the hip height, (N,) class indices. With the
    torso angle from upright, the hip height above the ankles in torso lengths ("legs") and the
    box aspect, the first that holds wins:

    fallen: the torso leans over 50 degrees and the hips are low (legs < 1) or no ankle is seen,
    or the box is 1.4x wider than tall and the torso leans over 40 degrees; arms raised: a wrist
    0.6 torso lengths above the shoulders; bending: the torso leans over 35 degrees; crouching:
    legs < 1.1; walking: the ankles 0.65 torso lengths apart; else standing. Tests that need a
    missing joint fail (standing is the default). Thresholds were set by eye from the sim TRAIN
    distributions, not fitted."""
    r = {**RULE, **(rule or {})}
    kp = _as_kp(keypoints)
    n = len(kp)
    pres = present_mask(kp, min_conf)
    ang, has_torso = torso_angle(kp, min_conf)
    sho, _ = _group_mean(kp, pres, SHOULDERS)
    hip, _ = _group_mean(kp, pres, HIPS)
    torso = np.maximum(np.hypot(*(sho - hip).T), 1e-3)
    wide = box_aspect(boxes, n) > np.log(r["wide"]) if boxes is not None else np.zeros(n, bool)
    ank, has_ank = _group_mean(kp, pres, ANKLES)
    legs = (ank[:, 1] - hip[:, 1]) / torso
    wy = np.where(pres[:, list(WRISTS)], kp[:, list(WRISTS), 1], np.inf).min(axis=1)
    arms = has_torso & (wy < sho[:, 1] - r["arms_above"] * torso)
    crouch = has_torso & has_ank & (legs < r["crouch_legs"])
    feet = np.abs(kp[:, 15, 0] - kp[:, 16, 0]) / torso
    walk = has_torso & pres[:, 15] & pres[:, 16] & (feet > r["walk_feet"])
    low = ~has_ank | (legs < r["fallen_legs"])
    fallen = has_torso & (((ang > r["fallen_deg"]) & low) | (wide & (ang > r["wide_deg"])))
    bend = has_torso & (ang > r["bending_deg"])
    out = np.zeros(n, np.int64)
    for mask, cls in ((walk, "walking"), (crouch, "crouching"), (bend, "bending"), (arms, "arms_raised"), (fallen, "fallen")):
        out[mask] = CLASSES.index(cls)
    return out
