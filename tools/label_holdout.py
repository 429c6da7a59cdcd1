"""Hand-checked person labels on held-out real frames (see ``data/labels/README.md``).

Three steps, each reproducible:

``--propose``   decode the sampled held-out frames, run the shared SSDLite person teacher
                (letterboxed to a square, low threshold) and a static-camera background model
                (median background over the whole clip, foreground blobs), and cache every
                proposal in ``data/labels/proposals.json`` (needs ``../shared``; ~1 min).
``--overlays``  write one PNG per frame with the numbered proposals (teacher ``tN`` red,
                background blobs ``bN`` green), plus the final labels if they exist, into
                ``--out`` (default ``/tmp/sitewarden_holdout_overlays``) for checking by eye.
``--write``     build ``data/labels/real_holdout.json`` (COCO) from the cached proposals plus the
                hand edits in ``data/labels/holdout_edits.yaml``. With ``--check`` nothing is
                written: the rebuilt file must equal the committed one byte for byte.

Edits format (``holdout_edits.yaml``)::

    frames:
      "one-by-one-person-detection.mp4#975":
        objects:                      # the final person boxes of this frame, in order
          - {from: t0}                # keep proposal t0 exactly as proposed
          - {from: b1, box: [x1, y1, x2, y2]}   # proposal b1, box corrected by hand
          - {box: [x1, y1, x2, y2], note: "..."}  # a person no proposal found (added by hand)
        # per object, optional: difficult (bool), helmet / vest (yes|no|unknown), note
        near_duplicate_of_train: "<clip>#<index>"   # optional, per frame
        rejected: {t1: "reflection", b0: "door moving"}   # proposals judged not a person

Every proposal of a frame must be either used by an object or rejected (with a reason), so an
unreviewed frame or proposal cannot slip through. Boxes are pixel corners ``x1 y1 x2 y2``
(exclusive right/bottom edge) in the original frame; COCO ``bbox`` is ``[x1, y1, x2-x1, y2-y1]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LABEL_DIR = REPO / "data" / "labels"
PROPOSALS = LABEL_DIR / "proposals.json"
EDITS = LABEL_DIR / "holdout_edits.yaml"
FINAL = LABEL_DIR / "real_holdout.json"

# (clip, first frame, step): every `step`-th frame from `first`. The labels were made when the
# holdout was the last 30% (mp4 from 975, preview GIF from 27); sim.realdata later moved the mp4's
# cut back to 920 (a scene gap) and held the whole preview GIF out. Every labelled frame is still
# held out; frames 920-974 of the mp4 and 0-26 of the preview GIF are held out but unlabelled.
SAMPLING: tuple[tuple[str, int, int], ...] = (
    ("one-by-one-person-detection.mp4", 975, 10),
    ("preview_worker-zone-detection.gif", 0, 10),
    ("preview_one-by-one-person-detection.gif", 27, 5),  # only 12 frames from 27: every 5th
)
TEACHER_THRESHOLD = 0.05
TEACHER_NMS_IOU = 0.5
BG_DIFF_THRESHOLD = 30      # max abs BGR difference to the median background, 0..255
BG_MIN_AREA_FRAC = 0.0015   # blobs smaller than this fraction of the frame are dropped
PPE_VALUES = ("yes", "no", "unknown")
# Frames the background median is taken over, where the whole-clip median is not clean. In the
# mp4 people stand at the table for most of the clip, so the whole-clip median keeps a ghost of
# them; frames 0..69 show the empty scene (checked by eye on a contact sheet of every 20th frame).
BACKGROUND_FRAMES: dict[str, tuple[int, int]] = {
    "one-by-one-person-detection.mp4": (0, 70),
}


def teacher_path() -> Path:
    from sim.realdata import shared_root
    return shared_root() / "models" / "ssdlite-voc-person" / "teacher.onnx"


def frame_key(clip: str, index: int) -> str:
    return f"{clip}#{index}"


def sampled_frames(clip: str, first: int, step: int) -> list[int]:
    from sim.realdata import clip_info, holdout_start
    assert holdout_start(clip) is not None and holdout_start(clip) <= first, clip
    return list(range(first, clip_info(clip).frames, step))


# ----------------------------------------------------------------------------- proposals

def _letterbox(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """Pad to a square (bottom/right, grey 114) and return (square, side)."""
    h, w = rgb.shape[:2]
    side = max(h, w)
    sq = np.full((side, side, 3), 114, np.uint8)
    sq[:h, :w] = rgb
    return sq, side


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            if _iou(boxes[i], boxes[j]) > iou:
                ok = False
                break
        if ok:
            keep.append(int(i))
    return keep


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def teacher_proposals(session, bgr: np.ndarray) -> list[dict]:
    h, w = bgr.shape[:2]
    sq, side = _letterbox(np.ascontiguousarray(bgr[:, :, ::-1]))
    _, boxes, scores, _ = session.run(None, {"image_tensor:0": sq[None]})
    boxes, scores = boxes[0], scores[0]
    m = scores >= TEACHER_THRESHOLD
    boxes, scores = boxes[m] * side, scores[m]
    xyxy = np.c_[boxes[:, 1], boxes[:, 0], boxes[:, 3], boxes[:, 2]]
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    out = []
    for i in _nms(xyxy, scores, TEACHER_NMS_IOU):
        b = xyxy[i]
        if b[2] - b[0] < 2 or b[3] - b[1] < 2:
            continue
        out.append({"box": [round(float(v), 1) for v in b], "score": round(float(scores[i]), 4)})
    return out


def median_background(clip: str, max_samples: int = 150) -> np.ndarray:
    """Per-pixel median over up to ``max_samples`` frames of :data:`BACKGROUND_FRAMES`
    (default: spread over the whole clip)."""
    from sim.realdata import clip_info, iter_frames
    start, stop = BACKGROUND_FRAMES.get(clip, (0, clip_info(clip).frames))
    step = max(1, (stop - start) // max_samples)
    frames = [f for i, _, f in iter_frames(clip, start, stop) if (i - start) % step == 0]
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


def background_proposals(bgr: np.ndarray, background: np.ndarray) -> list[dict]:
    import cv2
    h, w = bgr.shape[:2]
    diff = np.abs(bgr.astype(np.int16) - background.astype(np.int16)).max(axis=2)
    mask = (diff > BG_DIFF_THRESHOLD).astype(np.uint8)
    k3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, k3)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 15)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if area < BG_MIN_AREA_FRAC * h * w:
            continue
        out.append({"box": [float(x), float(y), float(x + bw), float(y + bh)], "area": area})
    out.sort(key=lambda d: (-d["area"], d["box"]))
    return out


def load_frame(clip: str, index: int) -> np.ndarray:
    from sim.realdata import iter_frames
    for _, _, f in iter_frames(clip, index, index + 1):
        return f
    raise IndexError(f"{clip}: no frame {index}")


def propose() -> dict:
    import onnxruntime as ort
    from sim.realdata import clip_info, iter_frames
    sess = ort.InferenceSession(str(teacher_path()), providers=["CPUExecutionProvider"])
    frames: dict[str, dict] = {}
    for clip, first, step in SAMPLING:
        info = clip_info(clip)
        wanted = set(sampled_frames(clip, first, step))
        bg = median_background(clip)
        for i, _, f in iter_frames(clip, min(wanted), max(wanted) + 1):
            if i not in wanted:
                continue
            t = teacher_proposals(sess, f)
            b = background_proposals(f, bg)
            props = {f"t{k}": p for k, p in enumerate(t)}
            props.update({f"b{k}": p for k, p in enumerate(b)})
            frames[frame_key(clip, i)] = {"clip": clip, "index": i, "width": info.width,
                                          "height": info.height, "proposals": props}
    return {
        "about": "Box proposals for data/labels/real_holdout.json; regenerate with "
                 "`python tools/label_holdout.py --propose`. tN = SSDLite teacher (letterboxed, "
                 f"score >= {TEACHER_THRESHOLD}, NMS IoU {TEACHER_NMS_IOU}); bN = foreground blob "
                 f"vs the clip's median background (|diff| > {BG_DIFF_THRESHOLD}). Boxes x1,y1,x2,y2 px.",
        "teacher_sha256": hashlib.sha256(teacher_path().read_bytes()).hexdigest(),
        "sampling": {c: s for c, _, s in SAMPLING},
        "frames": frames,
    }


def dump_json(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=False) + "\n"


# ----------------------------------------------------------------------------- final labels

def _clip_box(box, w: int, h: int) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = max(0.0, min(x1, w)), max(0.0, min(x2, w))
    y1, y2 = max(0.0, min(y1, h)), max(0.0, min(y2, h))
    return [round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)]


def build_labels(proposals: dict, edits: dict) -> dict:
    """COCO dict from cached proposals + hand edits (pure, deterministic)."""
    pframes = proposals["frames"]
    eframes = edits.get("frames") or {}
    unknown = sorted(set(eframes) - set(pframes))
    if unknown:
        raise ValueError(f"edits for frames that have no proposals: {unknown}")
    missing = [k for k in pframes if k not in eframes]
    if missing:
        raise ValueError(f"frames not reviewed (no entry in the edits): {missing}")
    images, anns = [], []
    for img_id, key in enumerate(pframes, start=1):
        pf, ef = pframes[key], eframes[key] or {}
        w, h = pf["width"], pf["height"]
        dup = ef.get("near_duplicate_of_train")
        images.append({"id": img_id, "file_name": key, "clip": pf["clip"],
                       "frame_index": pf["index"], "width": w, "height": h,
                       "near_duplicate_of_train": dup})
        props = pf["proposals"]
        rejected = ef.get("rejected") or {}
        used: set[str] = set()
        for obj in ef.get("objects") or []:
            src = obj.get("from")
            if src is not None:
                if src not in props:
                    raise ValueError(f"{key}: unknown proposal {src!r}")
                used.add(src)
            if "box" in obj:
                box, how = obj["box"], ("adjusted" if src else "added")
            elif src is not None:
                box, how = props[src]["box"], "kept"
            else:
                raise ValueError(f"{key}: object needs `from` or `box`: {obj}")
            x1, y1, x2, y2 = _clip_box(box, w, h)
            if x2 - x1 < 1 or y2 - y1 < 1:
                raise ValueError(f"{key}: empty box {box}")
            ppe = {}
            for field in ("helmet", "vest"):
                v = obj.get(field, "unknown")
                if v not in PPE_VALUES:
                    raise ValueError(f"{key}: {field} must be one of {PPE_VALUES}, got {v!r}")
                ppe[field] = v
            difficult = bool(obj.get("difficult", False))
            anns.append({
                "id": len(anns) + 1, "image_id": img_id, "category_id": 1,
                "bbox": [x1, y1, round(x2 - x1, 1), round(y2 - y1, 1)],
                "area": round((x2 - x1) * (y2 - y1), 1), "iscrowd": 0,
                "difficult": difficult, "ignore": int(difficult),
                "helmet": ppe["helmet"], "vest": ppe["vest"],
                "source": how if src is None else f"{how}:{src}",
            })
        bad = set(rejected) - set(props)
        if bad:
            raise ValueError(f"{key}: rejected unknown proposals {sorted(bad)}")
        both = used & set(rejected)
        if both:
            raise ValueError(f"{key}: proposals both used and rejected: {sorted(both)}")
        unreviewed = set(props) - used - set(rejected)
        if unreviewed:
            raise ValueError(f"{key}: proposals neither used nor rejected: {sorted(unreviewed)}")
    return {
        "info": {"description": "sitewarden hand-checked person boxes on held-out real frames "
                                "(see data/labels/README.md)",
                 "date_created": "2026-11-25", "version": "1"},
        "licenses": [{"id": 1, "name": "CC BY 4.0 (Intel sample-videos footage)"}],
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }


def load_yaml(path: Path) -> dict:
    import yaml
    return yaml.safe_load(path.read_text()) or {}


def render_final() -> str:
    proposals = json.loads(PROPOSALS.read_text())
    return dump_json(build_labels(proposals, load_yaml(EDITS)))


def check_final() -> bool:
    return FINAL.exists() and FINAL.read_text() == render_final()


# ----------------------------------------------------------------------------- overlays

def write_overlays(out: Path, scale_small: int = 2, final_only: bool = False) -> None:
    import cv2
    out.mkdir(parents=True, exist_ok=True)
    proposals = json.loads(PROPOSALS.read_text())
    final = json.loads(FINAL.read_text()) if FINAL.exists() else None
    final_boxes: dict[str, list] = {}
    if final:
        by_id = {im["id"]: im["file_name"] for im in final["images"]}
        for a in final["annotations"]:
            final_boxes.setdefault(by_id[a["image_id"]], []).append(a)
    for key, pf in proposals["frames"].items():
        img = load_frame(pf["clip"], pf["index"])
        s = scale_small if img.shape[1] < 600 else 1
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
        for name, p in ({} if final_only else pf["proposals"]).items():
            x1, y1, x2, y2 = (int(round(v * s)) for v in p["box"])
            col = (0, 0, 255) if name.startswith("t") else (0, 200, 0)
            cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), col, 1)
            txt = name + (f" {p['score']:.2f}" if "score" in p else "")
            ty = y1 + 12 if name.startswith("b") else max(10, y1 - 3)
            cv2.putText(img, txt, (x1 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.4, col, 1)
        for a in final_boxes.get(key, []):
            x, y, bw, bh = a["bbox"]
            col = (255, 128, 0) if not a["difficult"] else (255, 0, 255)
            cv2.rectangle(img, (int(x * s), int(y * s)), (int((x + bw) * s) - 1,
                                                          int((y + bh) * s) - 1), col, 2)
        cv2.putText(img, key, (4, img.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1)
        safe = key.replace("#", "_")
        cv2.imwrite(str(out / f"{safe}.png"), img)


# ----------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--propose", action="store_true", help="recompute data/labels/proposals.json")
    ap.add_argument("--overlays", action="store_true", help="write overlay PNGs to --out")
    ap.add_argument("--out", type=Path, default=Path("/tmp/sitewarden_holdout_overlays"))
    ap.add_argument("--final-only", action="store_true",
                    help="overlays show only the final labels (orange; magenta = difficult)")
    ap.add_argument("--write", action="store_true", help="build real_holdout.json from edits")
    ap.add_argument("--check", action="store_true",
                    help="with --write: only verify the committed file is reproduced exactly")
    args = ap.parse_args(argv)
    if not (args.propose or args.overlays or args.write):
        ap.error("nothing to do: give --propose, --overlays and/or --write")
    if args.propose:
        LABEL_DIR.mkdir(parents=True, exist_ok=True)
        PROPOSALS.write_text(dump_json(propose()))
        print(f"wrote {PROPOSALS}")
    if args.write:
        text = render_final()
        if args.check:
            if not FINAL.exists() or FINAL.read_text() != text:
                print(f"MISMATCH: {FINAL} is not reproduced by proposals + edits", file=sys.stderr)
                return 1
            print(f"ok: {FINAL} reproduced exactly "
                  f"(sha256 {hashlib.sha256(text.encode()).hexdigest()})")
        else:
            FINAL.write_text(text)
            print(f"wrote {FINAL} (sha256 {hashlib.sha256(text.encode()).hexdigest()})")
    if args.overlays:
        write_overlays(args.out, final_only=args.final_only)
        print(f"overlays in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
