"""Every example spec plans for every board it names: a fit, or a precise reason (with the fixture zoo)."""
import glob

import pytest

from compiler.boards import load_board_profiles
from compiler.devices import device_roles
from compiler.modelcard import zoo
from compiler.planner import PlanError, plan_device
from compiler.resolve import resolve_device
from compiler.spec import load_spec
from tests.compiler.zoo_fixture import make_zoo

SPECS = sorted(f for f in glob.glob("specs/*.yaml") if "secrets" not in f)


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    return zoo(make_zoo(tmp_path_factory.mktemp("zoo")))


@pytest.mark.parametrize("spec_file", SPECS)
def test_every_device_of_every_example_spec_plans(spec_file, cards):
    boards = load_board_profiles()
    spec = load_spec(spec_file).spec
    for role in device_roles(spec, "host-cpu"):
        board = boards[role.board]
        threads = int(board.runtime_threads.value) if board.runtime_threads else 1
        config = resolve_device(spec, role, {}, threads)
        try:
            plan = plan_device(config, board, cards, prefer=spec.models.prefer)
        except PlanError as e:  # a refusal must say what to change
            assert "change one of" in str(e) or "distill" in str(e), str(e)
            continue
        assert plan.tasks and all(f <= 0.7 + 1e-9 for f in plan.load.values())
        if role.role == "camera-detector":
            assert [t.task for t in plan.tasks] == ["detector"]


@pytest.mark.parametrize("board_id", sorted(load_board_profiles()))
def test_demo_site_plans_or_explains_on_every_board(board_id, cards):
    board = load_board_profiles()[board_id]
    spec = load_spec("specs/demo-site.yaml").spec
    role = device_roles(spec)[0]
    threads = int(board.runtime_threads.value) if board.runtime_threads else 1
    config = resolve_device(spec, role, {}, threads)
    try:
        plan = plan_device(config, board, cards)
        assert {t.task for t in plan.tasks} == {"detector", "ppe", "pose", "posture", "trajectory"}
    except PlanError as e:
        assert "change one of" in str(e), str(e)
