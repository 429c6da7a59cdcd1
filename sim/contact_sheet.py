"""Annotated contact sheets: one PNG per named scene, a grid of frames with the ground truth drawn
(zones, person boxes with id/posture/PPE, skeletons, head/helmet/vest boxes, machines, events).

    python -m sim.contact_sheet --out docs/scenes
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from .render import SimSource
from .scenes import SCENES
from .skeleton import COCO_SKELETON
from .truth import FrameTruth

ZONE_COL = (0, 0, 255)
CLS_COL = {"person": (80, 255, 80), "machine": (0, 160, 255)}


def annotate(img: np.ndarray, truth: FrameTruth, caption: str = "") -> np.ndarray:
    out = img.copy()
    for zid, poly in truth.zones_px.items():
        p = np.round(poly).astype(np.int32)
        cv2.polylines(out, [p], True, ZONE_COL, 1, cv2.LINE_AA)
        top = p[np.argmin(p[:, 1])]
        cv2.putText(out, zid, (int(top[0]), int(top[1]) - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.35, ZONE_COL, 1, cv2.LINE_AA)
    for k in range(len(truth)):
        x0, y0, x1, y1 = (int(round(v)) for v in truth.boxes[k])
        cls = truth.classes[k]
        inside = any(m[k] for m in truth.in_zones.values())
        col = (0, 0, 255) if inside else CLS_COL[cls]
        cv2.rectangle(out, (x0, y0), (x1, y1), col, 1)
        if cls == "person":
            kp = truth.keypoints[k]
            for a, b in COCO_SKELETON:
                if kp[a - 1, 2] > 0 and kp[b - 1, 2] > 0:
                    cv2.line(out, tuple(int(v) for v in kp[a - 1, :2]), tuple(int(v) for v in kp[b - 1, :2]), (255, 200, 0), 1, cv2.LINE_AA)
            for x, y, v in kp:
                if v > 0:
                    cv2.circle(out, (int(x), int(y)), 1, (0, 255, 255) if v == 2 else (0, 0, 180), -1)
            for boxes, c in ((truth.helmet_boxes, (255, 255, 255)), (truth.vest_boxes, (0, 255, 255))):
                b = boxes[k]
                if np.isfinite(b).all():
                    cv2.rectangle(out, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), c, 1)
            label = f"{truth.track_ids[k]} {truth.postures[k]} {'H' if truth.helmet[k] else 'h'}{'V' if truth.vest[k] else 'v'}"
        else:
            label = f"{truth.track_ids[k]} {truth.subtypes[k]}"
        cv2.putText(out, label, (x0, max(8, y0 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(out, label, (x0, max(8, y0 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, col, 1, cv2.LINE_AA)
    lines = [caption] if caption else []
    lines.append(f"{truth.condition}" + (f"  faults: {','.join(truth.faults)}" if truth.faults else ""))
    ev = [f"{e['type']} {e.get('zone', '')} #{e['track_id']}" for e in truth.events]
    if ev:
        lines.append("; ".join(ev)[:80])
    for j, text in enumerate(lines):
        y = 14 + 14 * j
        cv2.putText(out, text, (5, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, (5, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def sheet(scene: str, seed: int = 0, n: int = 6, cols: int = 3, tile=(640, 360), fps: float = 10.0) -> np.ndarray:
    spec = SCENES[scene]
    src = SimSource(scene, seed=seed, resolution=tile, fps=fps)
    times = np.linspace(0.5, spec.duration_s - 0.5, n)
    if spec.faults:  # show each fault
        times = np.array(sorted({0.5, *(min(f.start + 0.6, spec.duration_s - 0.2) for f in spec.faults), spec.duration_s - 0.3}))[:n]
    tiles = []
    for t in times:
        f = src.frame(int(round(t * fps)))
        tiles.append(annotate(f.image, f.truth, f"{scene}  t={f.t:.1f}s  seed={seed}"))
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    return np.vstack(rows)


def write_all(out: Path, seed: int = 0, scenes=None, max_bytes: int = 400_000) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in scenes or SCENES:
        img = sheet(name, seed=seed)
        scale = 1.0
        while True:
            small = img if scale == 1.0 else cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            small = (small & 0xF8) | 0x04  # 5 bits a channel: noise and rain compress, nothing visible is lost
            ok, buf = cv2.imencode(".png", small, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            if len(buf) <= max_bytes or scale < 0.3:
                break
            scale *= 0.85
        path = out / f"{name}.png"
        path.write_bytes(buf.tobytes())
        paths.append(path)
    return paths


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/scenes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scene", action="append", help="only these scenes (default: all)")
    a = ap.parse_args(argv)
    for p in write_all(Path(a.out), seed=a.seed, scenes=a.scene):
        print(f"wrote {p} ({p.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
