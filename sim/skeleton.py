"""An articulated 3D body with COCO-17 joints and adult proportions.

`pose()` builds the body in its own frame (x to the body's right, y forward, z up, metres, feet
on the ground at the origin) for a posture, a gait phase and, for a fall, its progress; `place()`
turns it to a heading and moves it to a ground position. Segment lengths follow standard
anthropometric ratios of stature (Drillis & Contini / Winter).
"""
from __future__ import annotations

import math

import numpy as np

KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# COCO's own skeleton, 1-based as in the COCO keypoint files
COCO_SKELETON = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
    [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]
# extra points used for drawing, after the 17 COCO joints
HEAD, NECK, L_TOE, R_TOE, HEAD_TOP, PELVIS = 17, 18, 19, 20, 21, 22
N_POINTS = 23

POSTURES = ("standing", "walking", "bending", "crouching", "falling", "fallen", "arms_raised")
UPRIGHT = frozenset({"standing", "walking", "arms_raised"})

# segment lengths as fractions of stature
HEAD_R = 0.065          # head radius (~0.11 m at 1.75 m)
SHOULDER_H = 0.818
HIP_H = 0.530
THIGH = 0.245
SHIN = 0.246
ANKLE_H = 0.039
UPPER_ARM = 0.186
FOREARM = 0.146
HAND = 0.06
SHOULDER_W = 0.259
HIP_W = 0.160
FOOT = 0.11


def _leg(hip, side, thigh_a, knee_flex, h, spread=0.0):
    """Sagittal leg chain; angles in radians from the vertical, positive forward."""
    knee = hip + THIGH * h * np.array([side * spread, math.sin(thigh_a), -math.cos(thigh_a)])
    shin_a = thigh_a - knee_flex
    ankle = knee + SHIN * h * np.array([side * spread * 0.5, math.sin(shin_a), -math.cos(shin_a)])
    toe = ankle + np.array([0.0, FOOT * h, -0.6 * ANKLE_H * h])
    return knee, ankle, toe


def _arm(shoulder, side, fwd_a, abduct, elbow_flex, h, torso_pitch=0.0, world_down=False):
    """Arm chain. fwd_a swings the upper arm forward from hanging; abduct lifts it sideways."""
    if world_down:
        d1 = np.array([side * math.sin(abduct), math.sin(fwd_a), -math.cos(fwd_a)])
    else:
        a = fwd_a + torso_pitch
        d1 = np.array([side * math.sin(abduct), math.sin(a) * math.cos(abduct), -math.cos(a) * math.cos(abduct)])
    d1 /= np.linalg.norm(d1)
    elbow = shoulder + UPPER_ARM * h * d1
    a2 = math.atan2(d1[1], -d1[2]) + elbow_flex
    d2 = np.array([d1[0] * 0.6, math.sin(a2), -math.cos(a2)])
    d2 /= np.linalg.norm(d2)
    wrist = elbow + FOREARM * h * d2
    return elbow, wrist


def pose(posture: str, h: float = 1.75, phase: float = 0.0, speed: float = 1.2, progress: float = 1.0,
         fall_side: float = 0.0) -> np.ndarray:
    """(N_POINTS, 3) body-frame points for a posture.

    phase: gait phase in radians (walking); progress: 0..1 through a fall; fall_side: -1..1,
    the share of the fall that goes sideways instead of forwards.
    """
    p = np.zeros((N_POINTS, 3))
    torso_pitch = 0.04
    hip_z = HIP_H * h
    legs = [(0.0, 0.06), (0.0, 0.06)]  # (thigh angle, knee flex) left, right
    arms = [(0.06, 0.10, 0.20), (0.06, 0.10, 0.20)]  # (forward, abduct, elbow flex)
    arms_world_down = False
    if posture == "walking":
        amp = 0.22 + 0.12 * max(0.0, min(1.0, speed - 0.8))
        s = math.sin(phase)
        c = math.cos(phase)
        legs = [(amp * s, 0.08 + 0.55 * max(0.0, c)), (-amp * s, 0.08 + 0.55 * max(0.0, -c))]
        arms = [(-0.9 * amp * s, 0.10, 0.35), (0.9 * amp * s, 0.10, 0.35)]
        hip_z -= 0.012 * h * abs(c)
        torso_pitch = 0.08
    elif posture == "bending":
        torso_pitch = 1.25
        legs = [(-0.18, 0.05), (-0.18, 0.05)]
        arms = [(0.15, 0.12, 0.25), (0.25, 0.12, 0.3)]
        arms_world_down = True
    elif posture == "crouching":
        legs = [(1.35, 2.35), (1.15, 2.25)]
        torso_pitch = 0.45
        arms = [(0.35, 0.22, 0.9), (0.3, 0.22, 0.95)]
    elif posture == "arms_raised":
        arms = [(2.85, 0.30, 0.15), (2.85, 0.30, 0.15)]
    elif posture in ("falling", "fallen"):
        q = 1.0 if posture == "fallen" else progress
        if posture == "fallen":
            arms = [(0.35, 1.25, 0.5), (-0.2, 0.5, 0.3)]
        else:
            arms = [(0.2 + 1.2 * q, 0.25 + 0.6 * q, 0.3), (0.2 + 1.2 * q, 0.25 + 0.6 * q, 0.3)]
        legs = [(0.10 * q, 0.15 * q), (-0.05 * q, 0.35 * q)]

    # legs: hips at (±HIP_W/2, 0, hip_z); adjust hip height so the lower ankle is at ANKLE_H
    hips = [np.array([-HIP_W * h / 2, 0.0, hip_z]), np.array([HIP_W * h / 2, 0.0, hip_z])]
    chains = [_leg(hips[i], (-1, 1)[i], legs[i][0], legs[i][1], h) for i in range(2)]
    lowest = min(chains[0][1][2], chains[1][1][2])
    dz = np.array([0.0, 0.0, ANKLE_H * h - lowest])
    hips = [x + dz for x in hips]
    chains = [(k + dz, a + dz, t + dz) for k, a, t in chains]
    pelvis = (hips[0] + hips[1]) / 2
    trunk = (SHOULDER_H - HIP_H) * h
    up = np.array([0.0, math.sin(torso_pitch), math.cos(torso_pitch)])
    shoulder_c = pelvis + trunk * up
    neck = pelvis + (trunk + 0.035 * h) * up
    head = neck + (0.03 * h + HEAD_R * h) * up
    fwd = np.array([0.0, math.cos(torso_pitch), -math.sin(torso_pitch)])
    half_sh = np.array([SHOULDER_W * h / 2, 0.0, 0.0])
    shoulders = [shoulder_c - half_sh, shoulder_c + half_sh]
    arm_pts = [
        _arm(shoulders[i], (-1, 1)[i], arms[i][0], arms[i][1], arms[i][2], h, torso_pitch, arms_world_down)
        for i in range(2)
    ]
    r = HEAD_R * h
    p[0] = head + fwd * 0.95 * r - up * 0.15 * r
    eye = head + fwd * 0.80 * r + up * 0.20 * r
    xr = np.array([r, 0.0, 0.0])
    p[1], p[2] = eye - 0.35 * xr, eye + 0.35 * xr
    ear = head - fwd * 0.1 * r
    p[3], p[4] = ear - 0.95 * xr, ear + 0.95 * xr
    p[5], p[6] = shoulders
    p[7], p[8] = arm_pts[0][0], arm_pts[1][0]
    p[9], p[10] = arm_pts[0][1], arm_pts[1][1]
    p[11], p[12] = hips
    p[13], p[14] = chains[0][0], chains[1][0]
    p[15], p[16] = chains[0][1], chains[1][1]
    p[HEAD], p[NECK] = head, neck
    p[L_TOE], p[R_TOE] = chains[0][2], chains[1][2]
    p[HEAD_TOP] = head + up * r
    p[PELVIS] = pelvis

    if posture in ("falling", "fallen"):
        q = 1.0 if posture == "fallen" else progress
        ang = (math.pi / 2 - 0.03) * (q ** 1.7)
        side = max(-1.0, min(1.0, fall_side))
        # tip over about a horizontal axis through the feet, mixing forward and sideways
        axis = np.array([math.cos(side * math.pi / 2), -math.sin(side * math.pi / 2), 0.0])
        p = _rotate(p, axis, -ang)
        p[:, 2] += 0.11 * h / 1.75 * math.sin(ang)
        p[:, 2] = np.maximum(p[:, 2], 0.03)
    return p


def _rotate(points: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation about an axis through the origin."""
    k = axis / np.linalg.norm(axis)
    c, s = math.cos(angle), math.sin(angle)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = np.eye(3) * c + s * kx + (1 - c) * np.outer(k, k)
    return points @ rot.T


def place(points: np.ndarray, xy, heading: float) -> np.ndarray:
    """Body frame -> world: heading in radians (0 = facing +Y, positive toward +X)."""
    c, s = math.cos(heading), math.sin(heading)
    # body x (right) -> world (c, -s); body y (forward) -> world (s, c)
    out = np.empty_like(points)
    out[:, 0] = xy[0] + points[:, 0] * c + points[:, 1] * s
    out[:, 1] = xy[1] - points[:, 0] * s + points[:, 1] * c
    out[:, 2] = points[:, 2]
    return out
