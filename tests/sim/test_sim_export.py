import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

import build

ROOT = Path(__file__).resolve().parents[2]


def test_cli_writes_the_four_files_and_standard_tools_read_them(tmp_path):
    out = tmp_path / "x"
    r = CliRunner().invoke(build.cli, ["sim", "--scene", "crane-swing", "--seconds", "1.5", "--out", str(out),
                                       "--resolution", "320x180", "--fps", "10"])
    assert r.exit_code == 0, r.output
    for name in ("video.mp4", "annotations.json", "mot.txt", "scene.json"):
        assert (out / name).stat().st_size > 0, name
    from pycocotools.coco import COCO
    coco = COCO(str(out / "annotations.json"))
    assert len(coco.getImgIds()) == 15
    cats = {c["name"]: c for c in coco.loadCats(coco.getCatIds())}
    assert set(cats) == {"person", "head", "helmet", "vest", "machine"}
    assert len(cats["person"]["keypoints"]) == 17 and len(cats["person"]["skeleton"]) == 19
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id], catIds=[cats["person"]["id"]]))
        assert anns and all(len(a["keypoints"]) == 51 and a["num_keypoints"] > 0 for a in anns)
    import motmetrics as mm
    df = mm.io.loadtxt(str(out / "mot.txt"), fmt="mot15-2D")
    assert len(df) > 0 and df.index.get_level_values(0).min() == 1
    assert {"X", "Y", "Width", "Height", "Confidence"} <= set(df.columns)
    assert (df["Width"] > 0).all() and (df["Height"] > 0).all()
    # (motmetrics' own accumulators call np.asfarray, gone in numpy 2; reading the file is what we own)
    scene = json.loads((out / "scene.json").read_text())
    assert scene["scene"] == "crane-swing" and np.array(scene["homography_image_to_ground"]).shape == (3, 3)
    assert {z["id"] for z in scene["zones"]} == {"crane-swing", "excavator-radius"}
    assert scene["calibration"]["ground"][0] == [-6.0, 10.0]
    import cv2
    cap = cv2.VideoCapture(str(out / "video.mp4"))
    ok, frame = cap.read()
    assert ok and frame.shape == (180, 320, 3)


def test_cli_errors_are_usage_errors_without_tracebacks(tmp_path):
    r = CliRunner().invoke(build.cli, ["sim", "--scene", "crane-swng", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "did you mean 'crane-swing'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(build.cli, ["sim", "--scene", "crane-swing", "--out", str(tmp_path), "--resolution", "big"])
    assert r.exit_code == 2 and "WIDTHxHEIGHT" in r.output
    r = CliRunner().invoke(build.cli, ["sim", "--scene", "crane-swing", "--out", str(tmp_path), "--condition", "snwo"])
    assert r.exit_code == 2 and "did you mean 'snow'" in r.output


def test_cli_lists_scenes():
    r = CliRunner().invoke(build.cli, ["sim", "--list"])
    assert r.exit_code == 0
    for name in ("crane-swing", "night-rain", "fall-incident", "ppe-mix", "camera-faults"):
        assert name in r.output


def test_contact_sheets_are_committed_for_every_scene():
    """docs/scenes/*.png come from `python -m sim.contact_sheet --out docs/scenes`."""
    from sim.scenes import SCENES
    for name in SCENES:
        png = ROOT / "docs" / "scenes" / f"{name}.png"
        assert png.exists(), f"{png} missing: run python -m sim.contact_sheet --out docs/scenes"
        assert png.stat().st_size < 400_000


def test_cocoeval_scores_the_ground_truth_against_itself_perfectly(tmp_path):
    """The keypoint and box fields are what COCOeval expects (evaluate keypoints with catIds=[person];
    COCOeval scores at most 20 keypoint detections per image, so not ppe-mix)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from sim.cli import render_clip
    render_clip("crane-swing", tmp_path, seconds=0.6, resolution=(320, 180), fps=5)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "annotations.json"))
        persons = gt.loadAnns(gt.getAnnIds(catIds=[1]))
        dt = gt.loadRes([dict(image_id=a["image_id"], category_id=1, keypoints=a["keypoints"], bbox=a["bbox"], score=1.0)
                         for a in persons])
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        kp_ap = ev.stats[0]
        dt2 = gt.loadRes([dict(image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"], score=1.0)
                          for a in gt.dataset["annotations"]])
        ev = COCOeval(gt, dt2, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert kp_ap > 0.99 and ev.stats[0] > 0.99
