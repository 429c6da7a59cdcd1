"""What every benchmark ends with: the table printed, the result written as JSON under
bench/results/, and the machine it ran on."""
from __future__ import annotations

import json
import platform
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine(**extra) -> dict:
    return {"python": platform.python_version(), "cpu": platform.machine(), **extra}


def finish(result: dict, out: Path, table: Callable[[dict], str]) -> int:
    """Print ``table(result)``, write ``result`` to ``out`` (JSON) and say where; exit status 0."""
    print(table(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0
