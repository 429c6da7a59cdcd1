"""The rules engine on scripted tracks: inertia, dwell, machine zones, PPE grace, postures,
predicted entry and cooldowns."""
import numpy as np
import pytest

from runtime.config import (
    ActionRuleConfig, CameraConfig, PPERuleConfig, RuntimeConfig, ZoneConfig,
)
from runtime.rules import CameraRules, Machine, Person
from runtime.schedule import active, in_ranges

SQUARE_PX = ((100.0, 100.0), (200.0, 100.0), (200.0, 200.0), (100.0, 200.0))
SQUARE_M = ((0.0, 10.0), (4.0, 10.0), (4.0, 14.0), (0.0, 14.0))


def make(zones=(), ppe=(), actions=(), cooldown=30.0, entry_rules=None, min_confidence=0.0):
    cam = CameraConfig(id="cam", source="file:x", resolution=(320, 240), fps=10.0, zones=tuple(zones))
    cfg = RuntimeConfig(site="s", timezone="UTC", device="d", role="camera", board="host-cpu", threads=1,
                        cameras=(cam,), models={}, ppe=tuple(ppe), actions=tuple(actions), cooldown_s=cooldown,
                        min_confidence=min_confidence)
    return CameraRules(cfg, cam, entry_rules=entry_rules)


def danger(inertia=3, dwell=0.0, horizon=None):
    return ZoneConfig(id="pit", kind="danger", shape="polygon", severity="critical", inertia_frames=inertia,
                      dwell_s=dwell, polygon_px=SQUARE_PX, polygon_m=SQUARE_M, predict_horizon_s=horizon)


def at(track, x, y, **kw):
    return Person(track=track, box=np.array([x - 10, y - 50, x + 10, y], float), **kw)


def run(rules, frames, fps=10.0):
    alerts = []
    for i, people in enumerate(frames):
        alerts += rules.update(i / fps, people[0] if isinstance(people, tuple) else people,
                               people[1] if isinstance(people, tuple) else [])
    return alerts


def test_entry_needs_inertia_frames_and_fires_once():
    rules = make([danger(inertia=3)])
    frames = [[at(1, 50, 150)]] * 3 + [[at(1, 150, 150)]] * 10
    alerts = run(rules, frames)
    assert [(a.type, a.zone, a.track) for a in alerts] == [("zone_intrusion", "pit", 1)]


def test_min_confidence_hides_faint_tracks_until_their_confidence_rises():
    # track 1: a faint false detection inside the zone all along; track 2: a person whose
    # confidence rises from 0.3 to 0.8 while standing inside the zone
    def frame(i):
        return [at(1, 150, 150, confidence=0.35), at(2, 160, 160, confidence=0.3 if i < 10 else 0.8)]

    frames = [frame(i) for i in range(30)]
    off = run(make([danger(inertia=3)]), frames)
    assert sorted(a.track for a in off) == [1, 2]
    on = run(make([danger(inertia=3)], min_confidence=0.45), frames)
    assert [(a.type, a.track) for a in on] == [("zone_intrusion", 2)]
    # seen by the rules from the first frame whose smoothed confidence (EMA 0.3) passes 0.45
    assert 1.1 <= on[0].t_start <= 1.4


def test_a_two_frame_flicker_is_not_an_entry():
    rules = make([danger(inertia=3)])
    frames = [[at(1, 50, 150)], [at(1, 150, 150)], [at(1, 150, 150)], [at(1, 50, 150)]] * 3
    assert run(rules, frames) == []


def test_cooldown_suppresses_reentry_of_the_same_person():
    rules = make([danger(inertia=1)], cooldown=30)
    frames = ([[at(1, 150, 150)]] * 3 + [[at(1, 50, 150)]] * 3) * 3
    assert len(run(rules, frames)) == 1


def test_dwell_fires_after_dwell_seconds():
    rules = make([danger(inertia=1, dwell=2.0)])
    alerts = run(rules, [[at(1, 150, 150)]] * 30)
    assert [a.type for a in alerts] == ["zone_intrusion", "zone_dwell"]
    assert alerts[1].details["dwell_s"] >= 2.0


def test_machine_zone_follows_the_machine():
    zone = ZoneConfig(id="exc", kind="danger", shape="around", severity="critical", inertia_frames=2,
                      around_class="machine", radius_m=5.0)
    rules = make([zone])
    person = lambda x: at(1, 10, 10, ground=np.array([x, 0.0]))  # noqa: E731
    machine = lambda x: Machine(track=9, box=np.zeros(4), ground=np.array([x, 0.0]))  # noqa: E731
    # the machine drives towards a standing person: the zone reaches them
    frames = [([person(0.0)], [machine(12.0 - i)]) for i in range(12)]
    alerts = run(rules, frames)
    assert len(alerts) == 1 and alerts[0].details["machine_track"] == 9


def test_ppe_violation_waits_for_grace_and_respects_zones():
    rules = make([danger(inertia=1)], ppe=[PPERuleConfig(require=("helmet", "vest"), zones=("pit",), grace_s=1.0)])
    bare = {"helmet": 0.05, "vest": 0.9}
    outside = [[at(1, 50, 150, ppe=bare)]] * 20
    assert run(rules, outside) == []  # no PPE needed outside the zone
    rules = make([danger(inertia=1)], ppe=[PPERuleConfig(require=("helmet", "vest"), zones=("pit",), grace_s=1.0)])
    alerts = [a for a in run(rules, [[at(1, 150, 150, ppe=bare)]] * 20) if a.type == "ppe_violation"]
    assert len(alerts) == 1 and alerts[0].details["missing"] == ["helmet"]
    assert alerts[0].zone == "pit"


def test_ppe_smoothing_ignores_single_frame_misses():
    rules = make(ppe=[PPERuleConfig(require=("helmet",), grace_s=0.5)])
    frames = [[at(1, 50, 50, ppe={"helmet": 0.95 if i % 4 else 0.1})] for i in range(40)]
    assert run(rules, frames) == []


def test_fallen_posture_must_hold():
    rules = make(actions=[ActionRuleConfig(postures=("fallen",), min_duration_s=1.0)])
    stumble = [[at(1, 50, 50, posture="fallen")]] * 5 + [[at(1, 50, 50, posture="standing")]] * 5
    assert run(rules, stumble) == []
    rules = make(actions=[ActionRuleConfig(postures=("fallen",), min_duration_s=1.0)])
    alerts = run(rules, [[at(1, 50, 50, posture="fallen", posture_confidence=0.9)]] * 15)
    assert len(alerts) == 1 and alerts[0].details["posture"] == "fallen"


def test_predicted_entry_warns_before_entry_with_time_to_entry():
    rules = make([danger(inertia=2, horizon=3.0)])
    # walking at 1 m/s towards the zone (its edge at y=10 m); the forecast is a straight line
    frames = []
    for i in range(80):
        y = 4.0 + 0.1 * i
        fc = np.array([[2.0, y + 0.4 * (k + 1)] for k in range(12)])
        inside_px = 150 if y >= 10 else 50
        frames.append([at(1, inside_px, 150, ground=np.array([2.0, y]), forecast=fc, speed_mps=1.0)])
    alerts = run(rules, frames)
    kinds = [a.type for a in alerts]
    assert kinds[0] == "predicted_entry" and "zone_intrusion" in kinds
    warn = alerts[0]
    assert 2.5 <= warn.details["time_to_entry_s"] <= 3.0
    assert warn.t_start < next(a for a in alerts if a.type == "zone_intrusion").t_start


def test_standing_people_are_not_predicted_to_enter():
    rules = make([danger(horizon=3.0)])
    fc = np.array([[2.0, 9.9]] * 12)
    assert run(rules, [[at(1, 50, 150, ground=np.array([2.0, 9.5]), forecast=fc, speed_mps=0.0)]] * 10) == []


@pytest.mark.parametrize("minute,ranges,expected", [
    (20 * 60, ((19 * 60, 6 * 60),), True),
    (3 * 60, ((19 * 60, 6 * 60),), True),
    (12 * 60, ((19 * 60, 6 * 60),), False),
    (23 * 60 + 59, ((19 * 60, 23 * 60 + 59),), True),
    (6 * 60, ((19 * 60, 6 * 60),), False),
])
def test_schedule_ranges(minute, ranges, expected):
    assert in_ranges(minute, ranges) is expected


def test_schedule_follows_daylight_saving():
    """19:00-20:00 in Berlin is 18:00 UTC in winter and 17:00 UTC in summer."""
    winter = 1736359200.0  # 2025-01-08 18:00:00 UTC = 19:00 CET
    summer = 1751994000.0  # 2025-07-08 17:00:00 UTC = 19:00 CEST
    assert active(((19 * 60, 20 * 60),), winter, "Europe/Berlin")
    assert active(((19 * 60, 20 * 60),), summer, "Europe/Berlin")
    assert not active(((19 * 60, 20 * 60),), summer + 3600 * 1.5, "Europe/Berlin")


def test_tuned_entry_rule_ignores_a_forecast_that_only_grazes_the_zone():
    from runtime.forecast import EntryRule

    graze = np.array([[4.1 - 0.2 * (k + 1), 9.0 + 0.2 * (k + 1)] for k in range(12)])  # just clips the corner
    person = lambda: at(1, 50, 150, ground=np.array([4.3, 9.0]), forecast=graze, forecast_kind="model", speed_mps=1.0)  # noqa: E731
    plain = make([danger(horizon=3.0)])
    assert [a.type for a in run(plain, [[person()]])] == ["predicted_entry"]
    tuned = make([danger(horizon=3.0)], entry_rules={"model": EntryRule(horizon_s=2.8, margin_m=0.5)})
    assert run(tuned, [[person()]] * 3) == []


def test_multimodal_forecast_warns_on_the_probability_of_entry():
    """A multi-modal forecast warns when the probable paths enter (P >= tau), whatever its mean
    path says, and gives the time to entry of the most probable entering path."""
    from runtime.forecast import EntryRule

    y0 = 8.0   # 2 m short of the zone's edge at y = 10 m
    straight = np.array([[2.0, y0 + 0.4 * (k + 1)] for k in range(12)])          # 1 m/s into the zone
    turn = np.array([[2.0 - 0.4 * (k + 1), y0] for k in range(12)])              # turns away along the edge
    mean = (straight + turn) / 2                                                 # grazes nothing

    def person(p_enter):
        return at(1, 50, 150, ground=np.array([2.0, y0]), forecast=mean, forecast_kind="model", speed_mps=1.0,
                  forecast_modes=np.stack([straight, turn]), forecast_probs=np.array([p_enter, 1 - p_enter]))

    rule = {"model": EntryRule(horizon_s=3.0, margin_m=0.2, tau=0.6)}
    alerts = run(make([danger(horizon=3.0)], entry_rules=rule), [[person(0.7)]])
    assert [a.type for a in alerts] == ["predicted_entry"]
    assert 2.0 <= alerts[0].details["time_to_entry_s"] <= 2.4       # the straight path's entry (2 m at 1 m/s)
    assert run(make([danger(horizon=3.0)], entry_rules=rule), [[person(0.5)]] * 3) == []   # P below tau
    # without tau in the rule, the deterministic (mean) path decides: it does not reach the zone
    plain = {"model": EntryRule(horizon_s=3.0, margin_m=0.2)}
    assert run(make([danger(horizon=3.0)], entry_rules=plain), [[person(0.9)]] * 3) == []
