"""The runtime on real footage (Intel sample-videos in ../shared/data/video; CC BY 4.0), with the
real-footage specs: the issue's checks, with what is met and what is still open kept visible.
`python bench/real_footage.py` reports the same on the whole clips. Skips without ../shared, fails
without it under CI=true."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from compiler.replay import prepare, replay_image

REPO = Path(__file__).resolve().parents[2]
VIDEO = REPO.parent / "shared" / "data" / "video"


@pytest.fixture(scope="module")
def video() -> Path:
    if not (VIDEO / "one-by-one-person-detection.mp4").exists():
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true but no real footage at {VIDEO}")
        pytest.skip(f"no real footage at {VIDEO}")
    return VIDEO


def _inside(poly, box) -> bool:
    foot = (float(box[0] + box[2]) / 2, float(box[3]))
    return cv2.pointPolygonTest(np.asarray(poly, np.float32).reshape(-1, 1, 2), foot, False) >= 0


def test_one_by_one_raises_ppe_only_where_the_spec_requires_it(video, tmp_path):
    image_dir, config, _ = prepare(REPO / "specs" / "one-by-one-footage.yaml", tmp_path)
    cam = config.cameras[0]
    run = replay_image(image_dir, config, f"file:{video / 'one-by-one-person-detection.mp4'}", cam.id, seconds=30.0)
    table = next(z.polygon_px for z in cam.zones if z.id == "table-area")
    ppe = [o for o in run.observed if o.event.type == "ppe_violation"]
    assert ppe, "nobody wears a helmet at the table: expected PPE events"  # measured: 2 in the first 30 s
    assert all(o.event.zone == "table-area" and _inside(table, o.box) for o in ppe)
    away = sum(not _inside(table, b) for _, _, boxes, _ in run.tracks for b in boxes)
    assert away >= 10  # people seen away from the table (measured 31 person-frames), where no PPE is required


def test_worker_zone_worker_keeps_one_id_and_raises_no_ppe_violation(video, tmp_path):
    from bench.real_footage import worker_zone  # the bench's own measurement (fragments of him included)

    r = worker_zone(tmp_path)
    print(r)
    assert r["worker_detected_frames"] >= 0.9 * r["frames"]  # he is found (measured 46 of 47 frames)
    # issue 8's bar: one track id on the worker, no PPE violation in >= 95% of frames (measured: id 1 in
    # every frame; 98%: one violation, on a fragment track on half his vest); the stricter per-frame,
    # unsmoothed PPE reading (91%) is reported, not asserted
    assert r["check_one_id"], r["worker_track_ids"]
    assert r["check_no_violation_95"], r["worker_no_violation_share"]
