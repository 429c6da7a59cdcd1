"""Loaders of the shared real data: exact counts, the CV baseline, footage and the holdout split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sim import realdata
from sim.realdata import SharedDataMissing


def require_shared_data() -> Path:
    """The shared data folder; SKIP when it is missing, but FAIL when CI=true."""
    try:
        return realdata.data_root()
    except SharedDataMissing as exc:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true but {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def shared_data() -> Path:
    return require_shared_data()


# (scene, split) -> (files, rows, pedestrians, windows), counted from the shared files.
COUNTS = {
    ("eth", "train"): (7, 56842, 1548, 30307), ("eth", "val"): (7, 12094, 402, 5422),
    ("eth", "test"): (1, 5492, 360, 364),
    ("hotel", "train"): (7, 55562, 1487, 29676), ("hotel", "val"): (7, 12323, 441, 5203),
    ("hotel", "test"): (1, 6543, 389, 1197),
    ("univ", "train"): (6, 26514, 1059, 9874), ("univ", "val"): (6, 8148, 334, 2800),
    ("univ", "test"): (2, 39766, 849, 24334),
    ("zara1", "train"): (7, 56201, 1673, 28577), ("zara1", "val"): (7, 13074, 493, 5184),
    ("zara1", "test"): (1, 5153, 148, 2356),
    ("zara2", "train"): (7, 52887, 1627, 26076), ("zara2", "val"): (7, 11819, 475, 4262),
    ("zara2", "test"): (1, 9722, 204, 5910),
}
# Published CV numbers (REFERENCES.md): ADE/FDE on test from the last two observed steps.
CV_TEST = {"eth": (1.075, 2.282), "hotel": (0.319, 0.614), "univ": (0.524, 1.165),
           "zara1": (0.427, 0.952), "zara2": (0.324, 0.724)}


# ----------------------------------------------------------------------------- missing data

def test_missing_shared_raises_clear_error(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(realdata.ENV_VAR, str(missing))
    with pytest.raises(SharedDataMissing) as info:
        realdata.load_split("eth", "test")
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(missing / "data") in msg and realdata.ENV_VAR in msg


def test_missing_shared_skips_locally_and_fails_on_ci(monkeypatch, tmp_path):
    monkeypatch.setenv(realdata.ENV_VAR, str(tmp_path / "nowhere"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="SITEWARDEN_SHARED"):
        require_shared_data()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="SITEWARDEN_SHARED"):
        require_shared_data()


def test_env_var_points_at_shared(monkeypatch, shared_data):
    monkeypatch.setenv(realdata.ENV_VAR, str(shared_data.parent))
    assert realdata.data_root() == shared_data
    assert len(realdata.load_split("eth", "test")) == 5492


# ----------------------------------------------------------------------------- ETH/UCY

@pytest.mark.parametrize("scene,split", sorted(COUNTS))
def test_split_counts(shared_data, scene, split):
    n_files, n_rows, n_peds, n_windows = COUNTS[(scene, split)]
    rows = realdata.load_split(scene, split)
    assert len(rows.files) == n_files
    assert len(rows) == n_rows == len(rows.xy) == len(rows.file_idx)
    assert rows.n_pedestrians() == n_peds
    trajs = realdata.trajectories(rows)
    assert len(trajs) == n_peds and sum(len(t.frames) for t in trajs) == n_rows
    wins = realdata.make_windows(rows)
    assert len(wins) == n_windows
    assert wins.obs.shape == (n_windows, 8, 2) and wins.fut.shape == (n_windows, 12, 2)


def test_eth_test_rows_and_trajectories(shared_data):
    rows = realdata.load_split("eth", "test")
    assert rows.files == ("biwi_eth.txt",)
    assert (rows.frame[0], rows.ped[0]) == (780, 1)
    np.testing.assert_allclose(rows.xy[0], [8.46, 3.59])
    first = realdata.trajectories(rows)[0]
    assert (first.file, first.ped) == ("biwi_eth.txt", 1)
    assert np.all(np.diff(first.frames) == 10)


@pytest.mark.parametrize("scene", realdata.SCENES)
def test_constant_velocity_matches_published(shared_data, scene):
    ade, fde = realdata.constant_velocity_ade_fde(realdata.load_windows(scene, "test"))
    assert ade == pytest.approx(CV_TEST[scene][0], abs=0.005)
    assert fde == pytest.approx(CV_TEST[scene][1], abs=0.005)


def test_windows_are_consecutive_track_slices(shared_data):
    rows = realdata.load_split("hotel", "test")
    wins = realdata.make_windows(rows)
    by_key = {(t.file, t.ped): t for t in realdata.trajectories(rows)}
    for w in range(0, len(wins), 97):
        tr = by_key[(wins.files[wins.file_idx[w]], int(wins.ped[w]))]
        i = int(np.searchsorted(tr.frames, wins.start_frame[w]))
        assert np.all(np.diff(tr.frames[i:i + 20]) == 10)
        np.testing.assert_array_equal(tr.xy[i:i + 8], wins.obs[w])
        np.testing.assert_array_equal(tr.xy[i + 8:i + 20], wins.fut[w])


def test_window_neighbours(shared_data):
    rows = realdata.load_split("zara1", "test")
    wins = realdata.make_windows(rows)
    nbrs = realdata.window_neighbours(rows, wins)
    assert len(nbrs) == len(wins)
    for w in range(0, len(wins), 131):
        frames = wins.start_frame[w] + 10 * np.arange(8)
        m = np.isin(rows.frame, frames) & (rows.ped != wins.ped[w])
        assert nbrs[w].shape == (len(np.unique(rows.ped[m])), 8, 2)
        assert np.count_nonzero(~np.isnan(nbrs[w][..., 0])) == m.sum()
        np.testing.assert_allclose(np.sort(nbrs[w][~np.isnan(nbrs[w][..., 0])][:, 0]),
                                   np.sort(rows.xy[m, 0]), atol=1e-5)
    full = realdata.window_neighbours(rows, wins, observed_only=False)
    assert full[0].shape[1] == 20


@pytest.mark.parametrize("seq,split_file,size", [
    ("seq_eth", "eth/test/biwi_eth.txt", (640, 480)),
    ("seq_hotel", "hotel/test/biwi_hotel.txt", (720, 576)),
    ("zara01", "zara1/test/crowds_zara01.txt", (720, 576)),
    ("students03", "univ/test/students003.txt", (720, 576)),
])
def test_world_to_pixel_lands_in_image(shared_data, seq, split_file, size):
    rows = realdata.load_split(split_file.split("/")[0], "test")
    xy = rows.xy[np.array(rows.files)[rows.file_idx] == Path(split_file).name]
    assert realdata.sequence_for_file(split_file) == seq
    uv = realdata.world_to_pixel(seq, xy)
    w, h = size
    inside = (uv[:, 0] >= -10) & (uv[:, 0] < w + 10) & (uv[:, 1] >= -10) & (uv[:, 1] < h + 10)
    assert inside.mean() > 0.99


def test_world_to_pixel_conventions(shared_data):
    h_eth = realdata.load_homography("seq_eth")
    p = np.linalg.inv(h_eth) @ [1.0, 2.0, 1.0]
    row, col = p[:2] / p[2]
    np.testing.assert_allclose(realdata.world_to_pixel("seq_eth", np.array([1.0, 2.0])),
                               [col, row])
    # UCY split files: 0.02104651 m/px across, 0.02386598 m/px up from the bottom edge.
    np.testing.assert_allclose(realdata.world_to_pixel("zara02", np.array([[2.104651, 2.386598]])),
                               [[100.0, 476.0]], atol=1e-3)


# ----------------------------------------------------------------------------- footage

def test_list_clips(shared_data):
    clips = {c.name: c for c in realdata.list_clips()}
    assert set(clips) == {
        "one-by-one-person-detection.mp4", "preview_one-by-one-person-detection.gif",
        "preview_people-detection.gif", "preview_person-bicycle-car-detection.gif",
        "preview_store-aisle-detection.gif", "preview_worker-zone-detection.gif"}
    mp4 = clips["one-by-one-person-detection.mp4"]
    assert (mp4.width, mp4.height, mp4.frames) == (768, 432, 1394)
    assert mp4.fps == pytest.approx(10.0, abs=0.1)
    assert mp4.duration_s == pytest.approx(139.4, abs=0.5)
    gif = clips["preview_worker-zone-detection.gif"]
    assert (gif.width, gif.height, gif.frames) == (480, 270, 71)
    assert all((c.width, c.height) == (480, 270) for n, c in clips.items() if n.endswith(".gif"))


def test_iter_frames_mp4(shared_data):
    times, frame100 = [], None
    for idx, t, frame in realdata.iter_frames("one-by-one-person-detection.mp4"):
        assert idx == len(times)
        times.append(t)
        frame100 = frame if idx == 100 else frame100
    assert len(times) == 1394 and times[-1] == pytest.approx(139.3, abs=0.01)
    assert frame.shape == (432, 768, 3) and frame.dtype == np.uint8
    assert np.all(np.diff(times) > 0)
    part = list(realdata.iter_frames("one-by-one-person-detection.mp4", start=100, stop=103))
    assert [i for i, _, _ in part] == [100, 101, 102]
    assert part[0][1] == pytest.approx(10.0, abs=0.01)
    np.testing.assert_array_equal(part[0][2], frame100)


def test_iter_frames_gif_uses_frame_delays(shared_data):
    seen = list(realdata.iter_frames("preview_worker-zone-detection.gif"))
    assert len(seen) == 71 and seen[0][2].shape == (270, 480, 3)
    times = np.array([t for _, t, _ in seen])
    assert times[0] == 0.0 and np.all(np.diff(times) > 0)
    # The GIF's own delays are 70/60/70 ms ... summing to 4.74 s over 71 frames.
    np.testing.assert_allclose(times[:4], [0.0, 0.07, 0.13, 0.20], atol=0.005)
    assert times[-1] == pytest.approx(4.67, abs=0.02)


def test_footage_split(shared_data):
    mp4, gif = "one-by-one-person-detection.mp4", "preview_one-by-one-person-detection.gif"
    assert realdata.holdout_start(mp4) == 920 and realdata.holdout_start(gif) == 0
    assert realdata.footage_split(mp4, 919) == "train"
    assert realdata.footage_split(mp4, 920) == "holdout"
    assert realdata.footage_split(mp4, 1393) == "holdout"
    assert all(realdata.footage_split(gif, i) == "holdout" for i in range(40))  # a cut-out of the mp4
    worker = "preview_worker-zone-detection.gif"
    assert all(realdata.footage_split(worker, i) == "holdout" for i in range(71))
    for other in ("preview_people-detection.gif", "preview_store-aisle-detection.gif",
                  "preview_person-bicycle-car-detection.gif"):
        assert realdata.footage_split(other, 0) == "train"
        assert realdata.footage_split(other, 10_000) == "train"
    counts = [realdata.footage_split(mp4, i) for i in range(1394)].count("holdout")
    assert counts == 474 >= 0.3 * 1394  # cut at the scene gap at 920: 34%


def test_footage_split_without_data(monkeypatch, tmp_path):
    monkeypatch.setenv(realdata.ENV_VAR, str(tmp_path / "nowhere"))
    mp4 = "one-by-one-person-detection.mp4"
    assert realdata.footage_split(mp4, 975, n_frames=1394) == "holdout"
    assert realdata.footage_split("preview_people-detection.gif", 5) == "train"
    with pytest.raises(SharedDataMissing):
        realdata.footage_split(mp4, 975)
