"""Ground-truth consistency: what the annotations say agrees with the geometry and the pixels."""
import numpy as np
import pytest

from runtime.geometry import points_in_polygon
from sim.render import SimSource
from sim.skeleton import POSTURES, UPRIGHT, pose


def test_every_frame_has_people_with_keypoints(crane_frames):
    _, frames = crane_frames
    for f in frames:
        persons = f.truth[f.truth.is_person]
        assert len(persons) >= 5
        assert ((persons.keypoints[:, :, 2] > 0).sum(axis=1) > 0).all()
        assert f.image.shape == (180, 320, 3) and f.image.dtype == np.uint8


def test_boxes_inside_frame_and_keypoints_inside_boxes(crane_frames):
    _, frames = crane_frames
    for f in frames:
        tr = f.truth
        b = tr.boxes
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 320).all() and (b[:, 3] <= 180).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        for k in np.nonzero(tr.is_person)[0]:
            kp = tr.keypoints[k]
            lab = kp[:, 2] > 0
            x, y = kp[lab, 0], kp[lab, 1]
            assert ((x >= b[k, 0] - 1) & (x <= b[k, 2] + 1) & (y >= b[k, 1] - 1) & (y <= b[k, 3] + 1)).all(), (f.index, k)
            assert set(np.unique(kp[:, 2])) <= {0.0, 1.0, 2.0}
            for sub in (tr.head_boxes[k], tr.helmet_boxes[k], tr.vest_boxes[k]):
                if np.isfinite(sub).all():
                    assert sub[0] >= b[k, 0] - 1 and sub[2] <= b[k, 2] + 1 and sub[1] >= b[k, 1] - 1 and sub[3] <= b[k, 3] + 1


def test_helmet_box_above_the_shoulders(crane_frames):
    _, frames = crane_frames
    seen = 0
    for f in frames:
        tr = f.truth
        for k in np.nonzero(tr.is_person & tr.helmet)[0]:
            assert np.isfinite(tr.helmet_boxes[k]).all()
            if tr.postures[k] in UPRIGHT:
                shoulders_y = tr.keypoints[k, [5, 6], 1].mean()
                centre_y = 0.5 * (tr.helmet_boxes[k, 1] + tr.helmet_boxes[k, 3])
                assert centre_y < shoulders_y and tr.helmet_boxes[k, 1] < shoulders_y
                seen += 1
        assert np.isnan(tr.helmet_boxes[tr.is_person & ~tr.helmet]).all()
        assert np.isnan(tr.vest_boxes[tr.is_person & ~tr.vest]).all()
    assert seen > 20


def test_zone_membership_and_events_agree_with_ground_and_polygons(crane_frames):
    _, frames = crane_frames
    last: dict = {}
    n_entries = 0
    for f in frames:
        tr = f.truth
        assert set(tr.in_zones) == {"crane-swing", "excavator-radius"}
        for zid, member in tr.in_zones.items():
            expect = points_in_polygon(tr.ground_xy, tr.zones_ground[zid]) & tr.is_person
            np.testing.assert_array_equal(member, expect)
        for e in tr.events:
            if e["type"] not in ("zone_entry", "zone_exit"):
                continue
            inside = bool(points_in_polygon(np.array([e["ground_xy"]]), tr.zones_ground[e["zone"]])[0])
            assert inside == (e["type"] == "zone_entry")
            if (e["zone"], e["track_id"]) in last:
                assert last[(e["zone"], e["track_id"])] != inside
            n_entries += e["type"] == "zone_entry"
        cur = {}
        for zid, member in tr.in_zones.items():
            for k in np.nonzero(tr.is_person)[0]:
                cur[(zid, int(tr.track_ids[k]))] = bool(member[k])
        for key, now in cur.items():
            if key in last and last[key] != now:
                assert any(e.get("zone") == key[0] and e["track_id"] == key[1] for e in tr.events), (f.index, key)
        last = cur
    assert n_entries >= 1


def test_zone_pixels_follow_the_homography(crane_frames):
    src, frames = crane_frames
    from runtime.geometry import apply
    tr = frames[0].truth
    np.testing.assert_allclose(apply(tr.homography, tr.zones_px["crane-swing"]), tr.zones_ground["crane-swing"], atol=1e-6)
    assert np.allclose(src.homography, tr.homography)


def test_machines_are_boxed_with_a_subtype(crane_frames):
    _, frames = crane_frames
    subs = {s for f in frames for s, c in zip(f.truth.subtypes, f.truth.classes) if c == "machine"}
    assert {"excavator", "crane_load"} <= subs


@pytest.mark.parametrize("posture", POSTURES)
def test_postures_have_plausible_bodies(posture):
    p = pose(posture, 1.75, phase=1.0, progress=0.6)
    assert np.isfinite(p).all() and (p[:, 2] >= 0).all()
    top = p[:, 2].max()
    if posture in ("standing", "walking"):
        assert 1.65 < top < 1.8
    if posture == "fallen":
        assert top < 0.6
    if posture == "crouching":
        assert top < 1.3


def test_wind_shake_keeps_truth_consistent():
    src = SimSource("crane-swing", seed=1, resolution=(320, 180), fps=5, seconds=1, condition="wind")
    for f in src:
        tr = f.truth
        assert not np.allclose(tr.homography, src.homography)
        b = tr.boxes
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= 320).all()


def test_knocked_camera_changes_the_homography_and_truth_follows():
    src = SimSource("camera-faults", seed=0, resolution=(320, 180), fps=5)
    before, after = src.frame(5), src.frame(45)   # 1 s and 9 s
    assert before.truth.faults == [] and "knocked" in after.truth.faults
    assert not np.allclose(before.truth.homography, after.truth.homography)
    from runtime.geometry import apply
    tr = after.truth
    np.testing.assert_allclose(apply(tr.homography, tr.zones_px["crane-swing"]), tr.zones_ground["crane-swing"], atol=1e-6)


def test_fall_incident_has_a_fall():
    src = SimSource("fall-incident", seed=0, resolution=(320, 180), fps=5)
    postures = set()
    events = []
    for i in range(0, 40):
        f = src.frame(i)
        postures |= set(f.truth.postures)
        events += [e for e in f.truth.events if e["type"] == "fall"]
    assert {"falling", "fallen"} <= postures and events
