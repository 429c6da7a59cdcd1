"""Tracking on sim video through the whole runtime, against the tracker fed the true boxes.

    python bench/tracking_sim.py [--seconds 40] [--seed 10]   # table + bench/results/tracking_sim.json

bench/tracker.py measures the tracker alone on generated boxes. This bench asks what a site gets:
the demo image (specs/demo-site.yaml for host-cpu: det-m320 and the pipeline's ByteTrack settings)
replays sim scenes rendered by `build.py sim` (mp4 + ground truth), and its person tracks are
scored by compiler/groundtruth.py's tracking_metrics (motmetrics, IoU >= 0.5, people >= 20 px) as
`build.py replay` scores them. In the same run, the same tracker settings (runtime.pipeline's
thresholds and spawn_overlap) are fed the *true* person boxes of every frame (score 0.9): the
baseline that tells how much of the gap is the detector's and how much the tracker's.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import finish, machine  # noqa: E402

OUT = ROOT / "bench" / "results" / "tracking_sim.json"
SPEC = ROOT / "specs" / "demo-site.yaml"
SCENES = ("crane-swing", "ppe-mix", "fall-incident", "night-rain")


def render(scene: str, seed: int, seconds: float, out: Path) -> Path:
    subprocess.run([sys.executable, str(ROOT / "build.py"), "sim", "--scene", scene, "--seed", str(seed),
                    "--seconds", str(seconds), "--out", str(out)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out


def truth_tracks(truth, config, cam) -> list:
    """The pipeline's tracker on the true person boxes: [(t, ids, boxes, {})] like ReplayRun.tracks."""
    from runtime.detections import Detections
    from runtime.pipeline import DEFAULT_TRACK_THRESHOLDS, SPAWN_OVERLAP, TRACK_THRESHOLDS
    from runtime.tracker import ByteTrack

    decoder = config.models["detector"][0].decoder
    high, low, new = TRACK_THRESHOLDS.get(decoder, DEFAULT_TRACK_THRESHOLDS)
    tracker = ByteTrack(fps=cam.fps, high=high, low=low, new_track=new, spawn_overlap=SPAWN_OVERLAP)
    out = []
    for fr in truth.frames:
        d = Detections.from_arrays(np.asarray(fr.boxes, np.float32).reshape(-1, 4),
                                   np.full(len(fr.boxes), 0.9, np.float32), np.zeros(len(fr.boxes), np.int64))
        res = tracker.update(d)
        out.append((fr.t, res.tracker_id, res.xyxy, {}))
    return out


def measure(seed: int, seconds: float, log=print) -> dict:
    from compiler.groundtruth import tracking_metrics
    from compiler.replay import load_truth, prepare, replay_image

    tmp = Path(tempfile.mkdtemp(prefix="sitewarden-tracking-"))
    image_dir, config, _ = prepare(SPEC, tmp / "replay")
    cam = next(c for c in config.cameras if c.detect_here)
    rows = {}
    for scene in SCENES:
        folder = render(scene, seed, seconds, tmp / scene)
        truth = load_truth(folder, cam.fps)
        run = replay_image(image_dir, config, f"file:{(folder / 'video.mp4').resolve()}", cam.id)
        heights = np.concatenate([f.boxes[:, 3] - f.boxes[:, 1] for f in truth.frames if len(f.boxes)] or [np.zeros(0)])
        rows[scene] = {"pipeline": tracking_metrics(run.tracks, truth), "truth_boxes": tracking_metrics(truth_tracks(truth, config, cam), truth),
                       "people_per_frame": round(float(np.mean([len(f.boxes) for f in truth.frames])), 1),
                       "person_height_px_median": round(float(np.median(heights)), 1) if len(heights) else None}
        log(f"  {scene}: pipeline {rows[scene]['pipeline']}  truth boxes {rows[scene]['truth_boxes']}")
    mean = {k: {m: round(float(np.mean([r[k][m] for r in rows.values()])), 3) for m in ("mota", "idf1")}
            for k in ("pipeline", "truth_boxes")}
    return {"bench": "tracking_sim", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "about": __doc__.split("\n\n")[0],
            "spec": str(SPEC.relative_to(ROOT)), "detector": config.models["detector"][0].variant,
            "seed": seed, "seconds_per_scene": seconds, "resolution": list(cam.resolution), "fps": cam.fps,
            "scenes": rows, "mean": mean, "machine": machine()}


def table(r: dict) -> str:
    lines = [f"tracking on sim ({r['resolution'][0]}x{r['resolution'][1]}, {r['fps']:g} fps, seed {r['seed']}, "
             f"{r['seconds_per_scene']:g} s a scene): the demo image ({r['detector']}) vs its tracker on true boxes",
             f"{'scene':<15}{'people':>7}{'height':>7}  {'MOTA':>6}{'IDF1':>6}{'IDsw':>6}   {'MOTA':>6}{'IDF1':>6}{'IDsw':>6}"]
    for scene, row in r["scenes"].items():
        p, t = row["pipeline"], row["truth_boxes"]
        lines.append(f"{scene:<15}{row['people_per_frame']:>7}{row['person_height_px_median']:>7}  "
                     f"{p['mota']:>6.3f}{p['idf1']:>6.3f}{p['id_switches']:>6}   {t['mota']:>6.3f}{t['idf1']:>6.3f}{t['id_switches']:>6}")
    m = r["mean"]
    lines.append(f"{'mean':<29}  {m['pipeline']['mota']:>6.3f}{m['pipeline']['idf1']:>6.3f}{'':>6}   "
                 f"{m['truth_boxes']['mota']:>6.3f}{m['truth_boxes']['idf1']:>6.3f}")
    lines.append("left: the whole pipeline (detector + tracker); right: the same tracker on the true boxes")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args(argv)
    return finish(measure(args.seed, args.seconds), OUT, table)


if __name__ == "__main__":
    raise SystemExit(main())
