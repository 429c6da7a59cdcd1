"""Draw one worker as shaded body parts in depth order, and measure the boxes of what was drawn.

Each limb is a thick line in a darker tone with a narrower, lighter line offset toward the light
(a cheap cylinder); the torso is a filled quad plus a thick spine line so it has depth when seen
side-on; the vest is an overlay on the torso with retro-reflective stripes; the head is a skin disc
with hair or headwear (hard hat dome with brim, cap with visor, hood, beanie). Every part is also
drawn into a label image (one id per entity) so keypoint visibility comes from what is on screen.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .appearance import Appearance
from .skeleton import HEAD, HEAD_R, HEAD_TOP, L_TOE, NECK, PELVIS, R_TOE

SHIFT = 3
ONE = 1 << SHIFT
STRIPE = (205, 212, 215)
LIGHT = np.array([-0.55, -0.83])  # image direction toward the light (up-left)

# (a, b, width m, colour key)
LIMBS = (
    (11, 13, 0.155, "trousers"), (13, 15, 0.115, "trousers"), (15, L_TOE, 0.095, "boots"),
    (12, 14, 0.155, "trousers"), (14, 16, 0.115, "trousers"), (16, R_TOE, 0.095, "boots"),
    (5, 7, 0.100, "shirt"), (7, 9, 0.080, "sleeve"), (6, 8, 0.100, "shirt"), (8, 10, 0.080, "sleeve"),
)


def _dark(c, k=0.62):
    return (int(c[0] * k), int(c[1] * k), int(c[2] * k))


def _pt(p):
    x, y = p.tolist() if hasattr(p, "tolist") else p
    return (int(x * ONE + 0.5) if x >= 0 else -int(-x * ONE + 0.5), int(y * ONE + 0.5) if y >= 0 else -int(-y * ONE + 0.5))


def _limb(img, lab, lab_id, a, b, w, col):
    t = max(1, int(round(w)))
    pa, pb = _pt(a), _pt(b)
    if t >= 3:
        cv2.line(img, pa, pb, _dark(col), t, cv2.LINE_8, SHIFT)
        o = LIGHT * (0.2 * t * ONE)
        ox, oy = int(o[0]), int(o[1])
        cv2.line(img, (pa[0] + ox, pa[1] + oy), (pb[0] + ox, pb[1] + oy), col, max(1, int(t * 0.55)), cv2.LINE_8, SHIFT)
    else:
        cv2.line(img, pa, pb, col, t, cv2.LINE_8, SHIFT)
    cv2.line(lab, pa, pb, lab_id, t, cv2.LINE_8, SHIFT)


def _poly(img, lab, lab_id, pts, col):
    ip = (pts * ONE + 0.5).astype(np.int32)
    cv2.fillConvexPoly(img, ip, _dark(col, 0.7), cv2.LINE_8, SHIFT)
    c = (pts[0] + pts[1] + pts[2] + pts[3]) * 0.25
    d = pts - c
    inner = c + d * 0.72 + LIGHT * (0.12 * float(np.abs(d).max()))
    cv2.fillConvexPoly(img, (inner * ONE + 0.5).astype(np.int32), col, cv2.LINE_8, SHIFT)
    cv2.fillConvexPoly(lab, ip, lab_id, cv2.LINE_8, SHIFT)


def _disc(img, lab, lab_id, c, r, col, shade=True):
    ir = max(1, int(round(r * ONE)))
    cv2.circle(img, _pt(c), ir, _dark(col, 0.7) if shade else col, -1, cv2.LINE_8, SHIFT)
    if shade and r >= 2:
        cv2.circle(img, _pt(c + LIGHT * 0.25 * r), int(ir * 0.7), col, -1, cv2.LINE_8, SHIFT)
    if lab is not None:
        cv2.circle(lab, _pt(c), ir, lab_id, -1, cv2.LINE_8, SHIFT)


def _unit(v):
    n = math.hypot(v[0], v[1])
    return v / n if n > 1e-6 else np.array([0.0, -1.0])


def _ellipse_box(c, a, b):
    r = max(a, b)
    return np.array([c[0] - r, c[1] - r, c[0] + r, c[1] + r])


def draw_person(img, lab, lab_id: int, uv: np.ndarray, depth: np.ndarray, focal: float, app: Appearance,
                facing_camera: float, shadow: bool = True, glow=None) -> dict:
    """Draw a worker; returns pixel boxes {'box', 'head', 'helmet', 'vest'} (xyxy, None if absent).

    glow: optional single-channel image; the vest's retro-reflective stripes are drawn into it so
    that at night they can shine back at the camera after the scene is darkened."""
    s = focal / max(depth[PELVIS], 0.5)  # px per metre at the body
    h = app.height_m
    parts = []  # (depth, kind, payload)
    colours = {"trousers": app.trousers, "boots": app.boots, "shirt": app.shirt,
               "sleeve": app.shirt if app.long_sleeves else app.skin}
    for a, b, w, key in LIMBS:
        parts.append((0.5 * (depth[a] + depth[b]), "limb", (uv[a], uv[b], w * s * h / 1.75, colours[key])))
    for w in (9, 10):
        parts.append((depth[w] - 0.01, "disc", (uv[w], 0.045 * s, app.skin)))
    torso_d = 0.25 * (depth[5] + depth[6] + depth[11] + depth[12])
    parts.append((torso_d, "torso", None))
    head_r = HEAD_R * h * s
    parts.append((min(depth[HEAD], torso_d) - 0.05, "head", None))
    parts.sort(key=lambda p: -p[0])

    boxes: dict = {"head": None, "helmet": None, "vest": None}
    ext = []  # (x0, y0, x1, y1) extents of everything drawn
    if shadow:
        feet = 0.5 * (uv[15] + uv[16])
        _shadow(img, feet + np.array([0.12 * s, 0.0]), 0.42 * s, 0.16 * s)
    for _, kind, payload in parts:
        if kind == "limb":
            a, b, w, col = payload
            _limb(img, lab, lab_id, a, b, w, col)
            r = max(w, 1) / 2
            ext.append((min(a[0], b[0]) - r, min(a[1], b[1]) - r, max(a[0], b[0]) + r, max(a[1], b[1]) + r))
        elif kind == "disc":
            c, r, col = payload
            _disc(img, lab, lab_id, c, r, col, shade=False)
        elif kind == "torso":
            boxes["vest"] = _torso(img, lab, lab_id, uv, s, app, ext, glow)
        else:
            boxes["head"], boxes["helmet"] = _head(img, lab, lab_id, uv, head_r, app, facing_camera, ext)
    e = np.array(ext)
    boxes["box"] = np.array([e[:, 0].min(), e[:, 1].min(), e[:, 2].max(), e[:, 3].max()])
    return boxes


def _shadow(img, c, a, b):
    """A soft-edged contact shadow: the ground colour under the feet, darkened."""
    hh, ww = img.shape[:2]
    x, y = int(c[0]), int(c[1])
    if not (0 <= x < ww and 0 <= y < hh) or a < 1:
        return
    g = img[y, x]
    col = (int(g[0]) * 5 >> 3, int(g[1]) * 5 >> 3, int(g[2]) * 5 >> 3)
    cv2.ellipse(img, _pt(c), (max(1, int(a * ONE)), max(1, int(b * ONE))), 0, 0, 360, col, -1, cv2.LINE_AA, SHIFT)


def _torso(img, lab, lab_id, uv, s, app: Appearance, ext, glow=None) -> np.ndarray | None:
    ls, rs, lh, rh = uv[5], uv[6], uv[11], uv[12]
    neck, pelvis = uv[NECK], uv[PELVIS]
    across = _unit(rs - ls)
    ls2, rs2 = ls - across * 0.05 * s, rs + across * 0.05 * s
    across_h = _unit(rh - lh)
    lh2, rh2 = lh - across_h * 0.035 * s, rh + across_h * 0.035 * s
    spine_w = 0.24 * s
    col = app.vest_colour if app.vest else app.shirt
    _limb(img, lab, lab_id, 0.5 * (ls + rs), pelvis, spine_w, col)
    quad = np.array([ls2, rs2, rh2, lh2])
    _poly(img, lab, lab_id, quad, app.shirt)
    ext.append((min(quad[:, 0].min(), neck[0]) - spine_w / 2, min(quad[:, 1].min(), neck[1]) - spine_w / 2,
                max(quad[:, 0].max(), pelvis[0]) + spine_w / 2, max(quad[:, 1].max(), pelvis[1]) + spine_w / 2))
    if not app.vest:
        return None
    # vest: narrower at the shoulders (arm holes), down to just above the hips
    vs_l = ls2 + (neck - ls2) * 0.28
    vs_r = rs2 + (neck - rs2) * 0.28
    vh_l = ls2 + (lh2 - ls2) * 0.95
    vh_r = rs2 + (rh2 - rs2) * 0.95
    vest = np.array([vs_l, vs_r, vh_r, vh_l])
    _poly(img, lab, lab_id, vest, app.vest_colour)
    tw = max(1, int(round(0.045 * s)))
    for f in (0.55, 0.8):
        a = vs_l + (vh_l - vs_l) * f
        b = vs_r + (vh_r - vs_r) * f
        cv2.line(img, _pt(a), _pt(b), STRIPE, tw, cv2.LINE_8, SHIFT)
        if glow is not None:
            cv2.line(glow, _pt(a), _pt(b), 200, tw, cv2.LINE_8, SHIFT)
    if s > 25:  # braces over the shoulders, visible when the worker is large enough
        for top, bot in ((vs_l, vh_l), (vs_r, vh_r)):
            a = top + (vs_r - vs_l) * (0.18 if top is vs_l else -0.18)
            b = a + (bot - top) * 0.55
            cv2.line(img, _pt(a), _pt(b), STRIPE, tw, cv2.LINE_8, SHIFT)
    spine = np.array([0.5 * (ls + rs), pelvis])
    pts = np.vstack([vest, spine])
    return np.array([pts[:, 0].min() - (spine_w / 2 if abs(across[0]) < 0.5 else 0), pts[:, 1].min(),
                     pts[:, 0].max() + (spine_w / 2 if abs(across[0]) < 0.5 else 0), pts[:, 1].max()])


def _head(img, lab, lab_id, uv, r, app: Appearance, facing_camera: float, ext):
    c = uv[HEAD]
    up = _unit(uv[HEAD_TOP] - c)
    face = uv[0] - c
    fn = math.hypot(face[0], face[1])
    face_dir = face / fn if fn > 1e-6 else np.zeros(2)
    face_k = min(1.0, fn / max(r, 1e-3))  # how much of the face direction shows in the image
    _limb(img, lab, lab_id, uv[NECK], c, 0.75 * r * 2 * 0.55, app.skin)
    _disc(img, lab, lab_id, c, r, app.skin)
    helmet_box = None
    ang = math.degrees(math.atan2(up[1], up[0])) + 90.0
    hw = app.headwear
    if hw == "helmet":
        hc = c + up * 0.28 * r - face_dir * 0.08 * r * face_k
        a, b = 1.17 * r, 1.05 * r
        col = app.headwear_colour
        # brim first, a flat ellipse slightly wider, its peak toward the face
        bc = c + up * 0.05 * r + face_dir * 0.18 * r * face_k
        cv2.ellipse(img, _pt(bc), (max(1, int(1.3 * r * ONE)), max(1, int(0.8 * r * ONE))), ang, 0, 360,
                    _dark(col, 0.75), -1, cv2.LINE_8, SHIFT)
        cv2.ellipse(img, _pt(hc), (max(1, int(a * ONE)), max(1, int(b * ONE))), ang, 0, 360, _dark(col, 0.8), -1, cv2.LINE_8, SHIFT)
        if r >= 1.5:
            cv2.ellipse(img, _pt(hc + LIGHT * 0.22 * r), (max(1, int(0.72 * a * ONE)), max(1, int(0.68 * b * ONE))), ang, 0, 360,
                        col, -1, cv2.LINE_8, SHIFT)
            cv2.circle(img, _pt(hc + LIGHT * 0.45 * r), max(1, int(0.22 * r * ONE)), (250, 250, 250), -1, cv2.LINE_8, SHIFT)
        cv2.ellipse(lab, _pt(hc), (max(1, int(a * ONE)), max(1, int(b * ONE))), ang, 0, 360, lab_id, -1, cv2.LINE_8, SHIFT)
        helmet_box = np.minimum(_ellipse_box(hc, a, b), 1e9)
        bb = _ellipse_box(bc, 1.3 * r, 0.8 * r)
        helmet_box = np.array([min(helmet_box[0], bb[0]), min(helmet_box[1], bb[1]),
                               max(helmet_box[2], bb[2]), max(helmet_box[3], bb[3])])
        head_box = np.array([min(helmet_box[0], c[0] - r), min(helmet_box[1], c[1] - r),
                             max(helmet_box[2], c[0] + r), max(helmet_box[3], c[1] + r)])
    elif hw == "hood":
        hc = c - face_dir * 0.22 * r * face_k + up * 0.1 * r
        _disc(img, lab, lab_id, hc, 1.22 * r, app.headwear_colour)
        if facing_camera > 0.1:
            cv2.circle(img, _pt(c + face_dir * 0.45 * r * face_k), max(1, int(0.55 * r * ONE)), app.skin, -1, cv2.LINE_8, SHIFT)
        head_box = _ellipse_box(hc, 1.22 * r, 1.22 * r)
    else:
        col = app.hair if hw == "hair" else app.headwear_colour
        k = 0.92 if hw == "hair" else 0.98
        hc = c + up * 0.3 * r - face_dir * 0.38 * r * face_k
        _disc(img, None, lab_id, hc, k * r, col, shade=hw != "hair")
        if hw == "cap":
            tip = c + face_dir * 1.25 * r * max(face_k, 0.3) + up * 0.15 * r
            cv2.line(img, _pt(c + up * 0.15 * r), _pt(tip), _dark(col, 0.85), max(1, int(0.7 * r)), cv2.LINE_8, SHIFT)
        head_box = np.array([min(c[0] - r, hc[0] - k * r), min(c[1] - r, hc[1] - k * r),
                             max(c[0] + r, hc[0] + k * r), max(c[1] + r, hc[1] + k * r)])
    ext.append(tuple(head_box))
    return head_box, helmet_box
