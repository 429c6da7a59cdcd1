"""The hand-checked real holdout labels (data/labels/): valid COCO, holdout frames only, frozen,
and reproducible from the cached proposals + the committed hand edits."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sim import realdata
from sim.realdata import SharedDataMissing
from tools import label_holdout as lh

REPO = Path(__file__).resolve().parent.parent
LABELS = REPO / "data" / "labels"
FINAL = LABELS / "real_holdout.json"
README = LABELS / "README.md"

# Frame counts of the labelled clips (as OpenCV reports them), so the split check runs even
# without the shared data; with the data present they are checked against the files.
CLIP_FRAMES = {"one-by-one-person-detection.mp4": 1394,
               "preview_worker-zone-detection.gif": 71,
               "preview_one-by-one-person-detection.gif": 39}


@pytest.fixture(scope="module")
def coco() -> dict:
    return json.loads(FINAL.read_text())


@pytest.fixture(scope="module")
def proposals() -> dict:
    return json.loads(lh.PROPOSALS.read_text())


def test_loads_in_pycocotools(coco):
    from pycocotools.coco import COCO
    c = COCO()
    c.dataset = copy.deepcopy(coco)
    c.createIndex()
    assert c.getCatIds() == [1] and c.loadCats(1)[0]["name"] == "person"
    assert len(c.getImgIds()) == len(coco["images"]) == 53
    assert len(c.getAnnIds()) == len(coco["annotations"])
    assert len({im["file_name"] for im in coco["images"]}) == len(coco["images"])
    for a in coco["annotations"]:
        assert a["iscrowd"] == 0 and a["category_id"] == 1
        assert a["ignore"] == int(a["difficult"])
        assert a["helmet"] in lh.PPE_VALUES and a["vest"] in lh.PPE_VALUES


def test_every_image_is_a_sampled_holdout_frame(coco):
    for im in coco["images"]:
        clip, _, idx = im["file_name"].rpartition("#")
        assert clip == im["clip"] and int(idx) == im["frame_index"]
        n = CLIP_FRAMES[clip]
        assert realdata.footage_split(clip, im["frame_index"], n_frames=n) == "holdout", im
    # exactly every step-th frame from the documented first labelled frame, nothing else
    want = [f"{c}#{i}" for c, first, step in lh.SAMPLING for i in range(first, CLIP_FRAMES[c], step)]
    assert [im["file_name"] for im in coco["images"]] == want


def test_clip_frame_counts_match_the_shared_footage():
    try:
        realdata.data_root()
    except SharedDataMissing as exc:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true but {exc}")
        pytest.skip(str(exc))
    for clip, n in CLIP_FRAMES.items():
        info = realdata.clip_info(clip)
        assert info.frames == n
    sizes = {c: (realdata.clip_info(c).width, realdata.clip_info(c).height) for c in CLIP_FRAMES}
    for im in json.loads(FINAL.read_text())["images"]:
        assert (im["width"], im["height"]) == sizes[im["clip"]]


def test_boxes_inside_image_and_nonempty(coco):
    ims = {im["id"]: im for im in coco["images"]}
    for a in coco["annotations"]:
        im = ims[a["image_id"]]
        x, y, w, h = a["bbox"]
        assert w >= 1 and h >= 1
        assert 0 <= x and 0 <= y and x + w <= im["width"] + 1e-6 and y + h <= im["height"] + 1e-6
        assert a["area"] == pytest.approx(w * h, abs=0.2)


def test_empty_frames_are_kept(coco):
    with_boxes = {a["image_id"] for a in coco["annotations"]}
    empty = [im["file_name"] for im in coco["images"] if im["id"] not in with_boxes]
    assert len(empty) == 6  # numbers quoted in data/labels/README.md


def test_readme_sha256_matches_frozen_file():
    text = README.read_text()
    m = re.search(r"sha256 of `real_holdout.json`: `([0-9a-f]{64})`", text)
    assert m, "README must record the sha256 of real_holdout.json"
    assert hashlib.sha256(FINAL.read_bytes()).hexdigest() == m.group(1), (
        "real_holdout.json changed after it was frozen: labels must not be edited silently")


def test_rebuilt_from_proposals_and_edits_exactly():
    assert lh.render_final() == FINAL.read_text()
    assert lh.check_final()


def test_cli_write_check():
    r = subprocess.run([sys.executable, str(REPO / "tools" / "label_holdout.py"), "--write",
                        "--check"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "reproduced exactly" in r.stdout


def test_every_proposal_is_reviewed(proposals):
    edits = lh.load_yaml(lh.EDITS)
    lh.build_labels(proposals, edits)  # raises on an unreviewed frame or proposal
    key = next(iter(proposals["frames"]))
    broken = copy.deepcopy(edits)
    broken["frames"][key]["rejected"] = {}
    broken["frames"][key]["objects"] = []
    if proposals["frames"][key]["proposals"]:
        with pytest.raises(ValueError, match="neither used nor rejected"):
            lh.build_labels(proposals, broken)
    del broken["frames"][key]
    with pytest.raises(ValueError, match="not reviewed"):
        lh.build_labels(proposals, broken)


def test_labels_are_not_the_teacher_output(coco, proposals):
    """Real-data metrics must not be measured against the teacher: most final boxes differ
    from any teacher proposal, and some people were found by the background model only."""
    sources = [a["source"] for a in coco["annotations"]]
    assert sum(s == "kept:t0" or s.startswith("kept:t") for s in sources) < len(sources) // 2
    assert any(s.endswith(":b0") for s in sources)
    assert proposals["teacher_sha256"] == (
        "98befc59c77db1f8d46c0218bca65257f166f824de660b76eda1a1b0ae8e70ea")
