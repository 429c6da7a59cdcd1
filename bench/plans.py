"""The plan for every device of every example spec on its board, and the demo spec on every board,
with the real zoo: which variant per task, estimated latency, load and memory (or why nothing fits).

    python bench/plans.py     # prints the tables, writes bench/results/plans.json
"""
from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.boards import load_board_profiles  # noqa: E402
from compiler.devices import device_roles  # noqa: E402
from compiler.modelcard import zoo  # noqa: E402
from compiler.planner import PlanError, plan_device  # noqa: E402
from compiler.resolve import resolve_device  # noqa: E402
from compiler.spec import load_spec  # noqa: E402


def plan_one(spec, role, board, cards):
    threads = int(board.runtime_threads.value) if board.runtime_threads else 1
    config = resolve_device(spec, role, {}, threads)
    try:
        return plan_device(config, board, cards, prefer=spec.models.prefer).to_dict()
    except PlanError as e:
        return {"device": role.id, "board": board.id, "error": str(e)}


def show(p):
    if "error" in p:
        print(f"  {p['device']:<14} {p['board']:<17} DOES NOT FIT: {p['error'][:150]}")
        return
    est = "~" if p["estimated"] else ""
    tasks = " ".join(f"{t['task']}={t['variant']}({est}{t['latency_ms']:.1f}ms)" for t in p["tasks"])
    load = " ".join(f"{u} {est}{f:.0%}" for u, f in p["load"].items())
    print(f"  {p['device']:<14} {p['board']:<17} {tasks}  load {load}  mem {p['memory_bytes'] / 2**20:.1f} MB")


def main():
    boards, cards = load_board_profiles(), zoo()
    out = {"example_specs": {}, "demo_on_every_board": []}
    for f in sorted(glob.glob(str(ROOT / "specs" / "*.yaml"))):
        if "secrets" in f:
            continue
        spec = load_spec(f).spec
        name = Path(f).name
        print(name)
        rows = [plan_one(spec, role, boards[role.board], cards) for role in device_roles(spec, "host-cpu")]
        for r in rows:
            show(r)
        out["example_specs"][name] = rows
    spec = load_spec(ROOT / "specs" / "demo-site.yaml").spec
    role = device_roles(spec)[0]
    print("demo-site.yaml on every board (~ = cost-model estimate)")
    for b in sorted(boards):
        r = plan_one(spec, role, boards[b], cards)
        r["board"] = b
        show(r)
        out["demo_on_every_board"].append(r)
    path = ROOT / "bench" / "results" / "plans.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
