"""Several cameras in one Device: the detector batched across cameras gives what frame-by-frame
detection gives (same boxes, tracks and events), sharing one set of sessions."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from runtime import stages
from runtime.pipeline import Device


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from compiler.replay import prepare

    image_dir, config, _ = prepare(Path(__file__).resolve().parents[2] / "specs" / "demo-site.yaml",
                                   tmp_path_factory.mktemp("demo"))
    return image_dir, config


def test_batched_detection_matches_frame_by_frame(demo):
    from sim.render import SimSource

    image_dir, config = demo
    cams = tuple(dataclasses.replace(config.cameras[0], id=f"cam-{i}") for i in range(3))
    cfg = dataclasses.replace(config, cameras=cams, sinks=(), situations=())
    assert stages.batchable(cfg.models["detector"][0])
    clips = [[f.image for f in SimSource("crane-swing", seed=s, resolution=(640, 360), fps=10.0, seconds=1.5)]
             for s in range(3)]
    one, batched = Device(cfg, image_dir), Device(cfg, image_dir)
    for d in (one, batched):  # the same models throughout: no latency-driven tier switches mid-batch
        d.governor.observe = lambda total, stages: []
    for i in range(15):
        frames = [(c.id, clips[k][i], i / 10.0, 1.7e9 + i / 10.0) for k, c in enumerate(cams)]
        a = [one.process(*f) for f in frames]
        b = batched.process_batch(frames)
        for ra, rb in zip(a, b):
            assert [p.track for p in ra.people] == [p.track for p in rb.people]
            if ra.people:
                np.testing.assert_allclose(np.stack([p.box for p in ra.people]), np.stack([p.box for p in rb.people]),
                                           atol=0.05)
            assert [e.id for e in ra.events] == [e.id for e in rb.events]
            assert rb.stage_ms["detector"] > 0 and rb.stage_ms["total"] >= rb.stage_ms["detector"]
    assert len(batched.sessions._cache) == len(one.sessions._cache)  # one session per model, not per camera


def test_run_drives_every_camera_of_an_edge_device(demo, tmp_path):
    from runtime.app import run
    from sim.render import SimSource

    image_dir, config = demo
    cams = tuple(dataclasses.replace(config.cameras[0], id=f"cam-{i}", source="sim:crane-swing") for i in range(2))
    cfg = dataclasses.replace(config, cameras=cams, sinks=(),
                              clips=dataclasses.replace(config.clips, enabled=True, pre_s=1.0, post_s=1.0))
    seen = []

    class Status:  # the hook the device agent uses, called once per processed frame
        def tick(self, device):
            seen.append(len(device.events))

    def plugin(scene, resolution=None, fps=None):
        return iter(SimSource(scene, seed=len(seen), resolution=resolution, fps=fps, seconds=4.0))

    device = run(image_dir, tmp_path / "state", cfg, plugins={"sim": plugin}, max_seconds=4.0, status=Status(),
                 log=lambda m: None)
    device.emitter.close()
    assert 2 * 38 <= len(seen) <= 2 * 40  # every frame of both cameras
    assert {e.camera for e in device.events} == {"cam-0", "cam-1"}
    alerts = [e for e in device.events if e.severity != "info"]
    assert alerts and all(e.clip for e in alerts)
    names = {p.name for p in (tmp_path / "state" / "clips").glob("*.mp4")}
    assert {e.clip for e in alerts} <= names
    device.clips.close()
