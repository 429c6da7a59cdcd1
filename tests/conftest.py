"""Shared test setup: the repo root on sys.path, and `pytest --update-golden`.

Golden files (error texts, manifests, rendered files) are generated, never hand-edited:

    python -m pytest tests/spec --update-golden     # rewrite them from the current code
    python -m pytest tests/spec                     # compare exactly; a missing or stale file fails
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="Rewrite golden files from the current output instead of comparing against them.",
    )


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True under `pytest --update-golden`."""
    return bool(request.config.getoption("--update-golden"))


class Golden:
    """Compare text with a golden file, or rewrite the file under --update-golden."""

    def __init__(self, update: bool):
        self.update = update

    def check(self, path: Path, actual: str) -> None:
        text = actual if actual.endswith("\n") or not actual else actual + "\n"
        if self.update:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
            return
        shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
        if not path.exists():
            pytest.fail(f"golden file {shown} is missing; generate it with `pytest --update-golden`")
        expected = path.read_text(encoding="utf-8")
        assert text == expected, f"{shown} is stale; if the new output is right, run `pytest --update-golden`"


@pytest.fixture(scope="session")
def golden(update_golden: bool) -> Golden:
    return Golden(update_golden)
