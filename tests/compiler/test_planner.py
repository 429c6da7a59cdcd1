"""The planner picks the best variant that fits, keeps tiers, and explains failures."""
import pytest

from compiler.boards import load_board_profiles
from compiler.devices import device_roles
from compiler.modelcard import Costs, Metric, ModelCard, Training
from compiler.planner import PlanError, plan_device, tasks_needed
from compiler.resolve import resolve_device
from compiler.spec import load_spec


def card(task, variant, macs, quality, conditions=("any",), quantize=True, metric="AP50", params=None):
    params = params or max(1000, macs // 100)
    return ModelCard(
        task=task, variant=variant, description="fixture", sha256="0" * 64, bytes=params * 4,
        inputs=[], outputs=[], decoder="fixture", quantize=quantize, conditions=list(conditions),
        costs=Costs(params=params, macs=macs, peak_activation_bytes=4 * macs // 50, weight_bytes=4 * params,
                    operators={"Conv": 10}, opset=17, max_rank=4),
        metrics=[Metric(name=metric, value=quality, data="real", split="fixture",
                        higher_is_better=metric != "ADE_m")],
        training=Training(command="fixture", seed=0, data=["fixture"]),
    )


ZOO = [
    card("detector", "det-416", 900_000_000, 0.90),
    card("detector", "det-320", 400_000_000, 0.86),
    card("detector", "det-256", 120_000_000, 0.80),
    card("detector", "det-256-night", 120_000_000, 0.82, conditions=("night", "rain")),
    card("ppe", "ppe-96", 30_000_000, 0.95, metric="accuracy"),
    card("ppe", "ppe-64", 8_000_000, 0.92, metric="accuracy"),
    card("pose", "pose-192", 150_000_000, 0.80, metric="PCK@0.2"),
    card("pose", "pose-128", 40_000_000, 0.74, metric="PCK@0.2"),
    card("posture", "posture-s", 20_000, 0.95, quantize=False, metric="accuracy"),
    card("trajectory", "traj-mlp", 40_000, 0.44, quantize=False, metric="ADE_m"),
]


@pytest.fixture(scope="module")
def boards():
    return load_board_profiles()


def config_of(spec_file, device):
    spec = load_spec(spec_file).spec
    role = next(d for d in device_roles(spec, "host-cpu") if d.id == device)
    return resolve_device(spec, role, {}, threads=2)


def test_demo_needs_every_task():
    assert tasks_needed(config_of("specs/demo-site.yaml", "crane-cam")) == ["detector", "ppe", "pose", "posture", "trajectory"]


def test_camera_soc_plans_only_the_detector(boards):
    cfg = config_of("specs/tower-crane-site.yaml", "excavator")
    plan = plan_device(cfg, boards["rv1106"], ZOO)
    assert [t.task for t in plan.tasks] == ["detector"]
    assert plan.estimated


def test_accuracy_takes_the_best_that_fits_and_keeps_lighter_tiers(boards):
    plan = plan_device(config_of("specs/demo-site.yaml", "crane-cam"), boards["host-cpu"], ZOO, prefer="accuracy")
    det = next(t for t in plan.tasks if t.task == "detector")
    assert det.variant == "det-416" and det.tiers == ("det-416", "det-320", "det-256")
    assert det.situational == ("det-256-night",)
    assert all(f <= 0.7 for f in plan.load.values())
    assert not plan.estimated  # host-cpu figures come from a measured throughput


def test_speed_takes_the_fastest(boards):
    plan = plan_device(config_of("specs/demo-site.yaml", "crane-cam"), boards["host-cpu"], ZOO, prefer="speed")
    assert {t.task: t.variant for t in plan.tasks}["detector"] == "det-256"


def test_overload_steps_down_the_heaviest_task(boards):
    """An RK3566 camera at 10 fps cannot afford a 640 detector plus a big per-person pose model at 6 persons/frame."""
    zoo = ZOO + [card("detector", "det-640", 6_000_000_000, 0.93), card("pose", "pose-256", 1_000_000_000, 0.85, metric="PCK@0.2")]
    cfg = config_of("specs/demo-site.yaml", "crane-cam")
    plan = plan_device(cfg, boards["rk3566"], zoo, prefer="accuracy")
    chosen = {t.task: t.variant for t in plan.tasks}
    assert plan.notes and plan.notes[0].startswith("pose: pose-256 ->"), plan.notes
    assert chosen["detector"] == "det-640"  # the heaviest load (pose at 60 calls/s) stepped down first
    assert all(f <= 0.7 + 1e-9 for f in plan.load.values())


def test_nothing_fits_says_what_to_change(boards):
    heavy = [card("detector", "det-huge", 40_000_000_000, 0.99)] + [c for c in ZOO if c.task != "detector"]
    with pytest.raises(PlanError, match="lower fps to about .*bigger board"):
        plan_device(config_of("specs/demo-site.yaml", "crane-cam"), boards["rv1106"], heavy)


def test_pinned_variant_is_kept_or_refused_clearly(boards):
    cfg = config_of("specs/demo-site.yaml", "crane-cam")
    plan = plan_device(cfg, boards["host-cpu"], ZOO, pinned={"detector": "det-320"})
    assert {t.task: t.variant for t in plan.tasks}["detector"] == "det-320"
    with pytest.raises(PlanError, match="no detector variant 'det-999'.*det-320"):
        plan_device(cfg, boards["host-cpu"], ZOO, pinned={"detector": "det-999"})


def test_missing_task_points_at_distill(boards):
    with pytest.raises(PlanError, match="distill pose"):
        plan_device(config_of("specs/demo-site.yaml", "crane-cam"), boards["host-cpu"], [c for c in ZOO if c.task != "pose"])


def test_edge_device_adds_its_cameras_up(boards):
    cfg = config_of("specs/tower-crane-site.yaml", "edge-box")
    plan = plan_device(cfg, boards["rk3588"], ZOO)
    tasks = {t.task: t for t in plan.tasks}
    assert "detector" not in tasks  # both cameras detect on their own SoCs
    assert tasks["ppe"].calls_per_s == pytest.approx((8 + 10) * 6)


def test_detector_quality_blends_real_and_sim_person_ap50():
    """A detector ranks by the mean of its real-holdout and sim-holdout person AP50: near-camera real
    footage alone would rank a variant that misses far site workers first."""
    from compiler.planner import quality

    def det(variant, real, sim):
        c = card("detector", variant, 100_000_000, real, metric="AP50_person")
        c.metrics.append(Metric(name="AP50_person_all", value=sim, data="synthetic", split="fixture"))
        return c

    near, both = det("near", 0.93, 0.50), det("both", 0.86, 0.65)
    assert quality(near) == pytest.approx(0.715) and quality(both) == pytest.approx(0.755)
    assert quality(both) > quality(near)
    # without the synthetic metric the real one alone decides, as for every other task
    assert quality(card("detector", "real-only", 1, 0.7, metric="AP50_person")) == pytest.approx(0.7)
