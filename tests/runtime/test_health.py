"""Camera health on the simulator: each fault of the camera-faults scene raises its own check
within a bounded delay, fault-free scenes (day, night in rain) raise nothing, silence is seen, and
persistence / hysteresis / once-per-episode hold on small synthetic cases."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.config import HealthRuleConfig
from runtime.health import CHECKS, HealthChange, HealthMonitor, HealthThresholds

FAULT_CHECK = {"blocked": "blocked", "defocus": "defocused", "knocked": "moved", "lights_out": "too_dark"}
AFTER_S = 1.0
MAX_DELAY_S = AFTER_S + 1.0  # after_s plus the time to see it (frames, the ORB cadence)
ALL = HealthRuleConfig(checks=CHECKS, after_s=AFTER_S)


def run_scene(scene: str, fps: float, seconds: float | None = None, rules=(ALL,)):
    from sim.render import SimSource

    src = SimSource(scene, seed=0, resolution=(640, 360), fps=fps)
    n = int(round((seconds or src.spec.duration_s) * fps))
    mon = HealthMonitor("cam", list(rules), fps=fps)
    timeline, changes = [], []
    for i in range(n):
        f = src.frame(i)
        timeline.append((f.t, list(f.truth.faults)))
        changes += mon.update(f.image, f.t)
    return timeline, changes, mon


@pytest.fixture(scope="module")
def faults_run():
    return run_scene("camera-faults", fps=5)


@pytest.mark.parametrize("fault, check", sorted(FAULT_CHECK.items()))
def test_each_fault_raises_its_own_check(faults_run, fault, check):
    timeline, changes, _ = faults_run
    onset = min(t for t, faults in timeline if fault in faults)
    raised = [c for c in changes if c.check == check and c.state == "raised"]
    assert len(raised) == 1, f"{check}: raised {len(raised)} times: {changes}"
    c = raised[0]
    assert onset <= c.t_start and c.t - onset <= MAX_DELAY_S, (onset, c)
    assert c.t - c.t_start >= AFTER_S - 1e-9, "after_s persistence"
    assert c.camera == "cam" and c.severity == "warning" and c.threshold is not None
    assert c.to_event("site", "dev").details["check"] == check


def test_faults_raise_nothing_else(faults_run):
    """No check raised by another check's fault: dark is not 'blocked', blocked is not 'defocused'."""
    timeline, changes, mon = faults_run
    for c in changes:
        if c.state != "raised":
            continue
        fault = {v: k for k, v in FAULT_CHECK.items()}[c.check]
        active = [faults for t, faults in timeline if c.t_start <= t <= c.t]
        assert all(fault in faults for faults in active), f"{c.check} raised without its fault: {c}"
    assert sorted(c.check for c in changes if c.state == "raised") == sorted(FAULT_CHECK.values())
    # the faults that end clear again (after clear_s); the knock is permanent, so moved stays raised
    cleared = {c.check for c in changes if c.state == "cleared"}
    assert {"blocked", "defocused"} <= cleared and "moved" not in cleared
    assert not mon.calibration_valid and "moved" in mon.raised


@pytest.mark.parametrize("scene", ["crane-swing", "night-rain"])
def test_fault_free_scenes_raise_nothing(scene):
    timeline, changes, mon = run_scene(scene, fps=2, seconds=12)
    assert not any(faults for _, faults in timeline)
    assert changes == [], changes
    assert not mon.learning and mon.calibration_valid
    # night under floodlights in rain is still a visible scene: far from "too dark"
    assert mon.last.luma > 1.5 * HealthThresholds().dark_luma_clear


# --- small synthetic cases ---------------------------------------------------------------------


def textured(seed: int = 0, size=(320, 180)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    import cv2

    img = cv2.resize(base, size, interpolation=cv2.INTER_NEAREST)
    return cv2.GaussianBlur(img, (3, 3), 0)


def feed(mon, image, t0, t1, fps=10.0):
    out = []
    for t in np.arange(t0, t1, 1 / fps):
        out += mon.update(image, float(t))
    return out


def test_silent_after_after_s_and_cleared_when_frames_flow():
    mon = HealthMonitor("cam", [HealthRuleConfig(checks=("silent",), after_s=3.0)], fps=10)
    img = textured()
    assert feed(mon, img, 0.0, 1.0) == []
    got = []
    for t in np.arange(1.0, 6.0, 0.5):
        got += [(float(t), c) for c in mon.update(None, float(t))]
    assert [(round(t, 1), c.check, c.state) for t, c in got] == [(4.0, "silent", "raised")]  # 3.1 s after 0.9
    c = got[0][1]
    assert c.t_start == pytest.approx(0.9) and c.value == pytest.approx(3.1)
    assert mon.update(None, 7.0) == []  # once per episode
    back = feed(mon, img, 8.0, 11.0)
    assert [(c.check, c.state) for c in back] == [("silent", "cleared")]
    assert back[0].t == pytest.approx(8.0 + HealthThresholds().clear_s, abs=0.11)


def test_silent_gap_seen_on_the_next_frame():
    mon = HealthMonitor("cam", [HealthRuleConfig(checks=("silent",), after_s=2.0)], fps=10)
    mon.update(textured(), 0.0)
    got = mon.update(textured(), 5.0)  # the caller never reported the silence
    assert [(c.check, c.state, c.t_start, c.value) for c in got] == [("silent", "raised", 0.0, 5.0)]


def test_short_flicker_never_raises_and_value_hysteresis_holds():
    rules = [HealthRuleConfig(checks=("too_dark",), after_s=2.0)]
    mon = HealthMonitor("cam", rules, fps=10)
    bright, dark = textured(), (textured() // 12)
    feed(mon, bright, 0.0, 3.0)
    for k in range(5):  # dark for 1.5 s, bright for 0.5 s, over and over: never 2 s of dark in a row
        assert feed(mon, dark, 3.0 + 2 * k, 4.5 + 2 * k) == []
        assert feed(mon, bright, 4.5 + 2 * k, 5.0 + 2 * k) == []
    got = feed(mon, dark, 20.0, 23.0)
    assert [(c.check, c.state) for c in got] == [("too_dark", "raised")]
    assert got[0].t == pytest.approx(22.0, abs=0.11) and got[0].value < 25
    # luma 30 is above the raise threshold but under the clear threshold: stays raised
    mid = np.full_like(bright, 30)
    mid[::2, ::2] = 34
    assert feed(mon, mid, 23.0, 30.0) == []
    assert feed(mon, bright, 30.0, 33.0)[0].state == "cleared"


def test_moved_by_a_shift_and_not_by_a_pixel():
    import cv2

    img = textured(3)
    rules = [HealthRuleConfig(checks=("moved",), after_s=1.0)]

    def shifted(dx, dy, rot=0.0):
        m = cv2.getRotationMatrix2D((160, 90), rot, 1.0)
        m[:, 2] += (dx, dy)
        return cv2.warpAffine(img, m, (320, 180), borderMode=cv2.BORDER_REFLECT)

    mon = HealthMonitor("cam", rules, fps=10)
    assert feed(mon, img, 0.0, 2.5) == [] and not mon.learning
    assert feed(mon, shifted(1, 1), 2.5, 6.0) == []  # wind shake
    got = feed(mon, shifted(25, -10), 6.0, 8.0)
    assert [(c.check, c.state) for c in got] == [("moved", "raised")]
    assert got[0].value == pytest.approx(np.hypot(25, 10), abs=2.0) and not mon.calibration_valid
    assert got[0].details["matched"] is True
    mon2 = HealthMonitor("cam", rules, fps=10)
    feed(mon2, img, 0.0, 2.5)
    got = feed(mon2, shifted(0, 0, rot=4.0), 2.5, 5.0)
    assert [c.check for c in got] == ["moved"] and abs(got[0].details["rotation_deg"]) == pytest.approx(4.0, abs=0.5)
    mon2.rebaseline()  # a deliberate re-aim: the new view becomes the reference
    assert mon2.learning and mon2.calibration_valid is False  # still raised until it clears
    feed(mon2, shifted(0, 0, rot=4.0), 5.0, 10.0)
    assert mon2.calibration_valid


def test_blocked_from_boot_without_a_baseline():
    mon = HealthMonitor("cam", [HealthRuleConfig(checks=("blocked", "too_dark"), after_s=1.0)], fps=10)
    tape = np.full((180, 320, 3), (60, 70, 80), np.uint8)  # a taped-over lens: flat, not dark
    got = feed(mon, tape, 0.0, 2.0)
    assert [(c.check, c.state) for c in got] == [("blocked", "raised")]
    assert mon.learning  # nothing usable to learn from yet


def test_rules_per_camera_and_severity():
    rules = [HealthRuleConfig(checks=("too_dark",), cameras=("other",), after_s=0.0),
             HealthRuleConfig(checks=("too_dark", "silent"), after_s=0.0, severity="critical")]
    mon = HealthMonitor("cam", rules, fps=10)
    assert set(mon.checks) == {"too_dark", "silent"}
    got = mon.update(np.zeros((90, 160, 3), np.uint8), 0.0)
    assert [(c.check, c.severity) for c in got] == [("too_dark", "critical")]
    with pytest.raises(ValueError, match="'smudged' is not one of"):
        HealthMonitor("cam", [HealthRuleConfig(checks=("smudged",))])


def test_change_to_event_ids_differ_for_raise_and_clear():
    raised = HealthChange("cam", "blocked", "raised", 12.0, 10.0, 0.8, 0.6, "warning", {"baseline": 0.3})
    cleared = HealthChange("cam", "blocked", "cleared", 20.0, 10.0, 0.3, 0.6, "warning")
    a, b = raised.to_event("site", "dev", clock_offset=1.7e9), cleared.to_event("site", "dev", clock_offset=1.7e9)
    assert a.type == b.type == "camera_health" and a.id != b.id
    assert a.t_start == pytest.approx(1.7e9 + 10.0) and a.t_event == pytest.approx(1.7e9 + 12.0)
    assert a.details == {"check": "blocked", "state": "raised", "value": 0.8, "threshold": 0.6, "baseline": 0.3}
    assert (a.severity, b.severity) == ("warning", "info")
    assert a.id == raised.to_event("site", "dev", clock_offset=1.7e9).id  # same episode, same id
