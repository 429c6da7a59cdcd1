"""Fixtures of the spec tests: fixed board profiles, so error texts do not change while the real
profiles under board_profiles/ grow."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

# The nine boards of `build.py boards`, reduced to what the cross-field checks read.
HOSTS_RUNTIME = {
    "rk3588": True,
    "rk3566": True,
    "rv1126": False,
    "rv1106": False,
    "hi3516dv300": False,
    "jetson-orin-nano": True,
    "hailo8": True,
    "coral-edgetpu": True,
    "host-cpu": True,
}


@pytest.fixture(scope="session")
def fake_boards() -> dict[str, SimpleNamespace]:
    return {board: SimpleNamespace(id=board, hosts_runtime=hosts) for board, hosts in HOSTS_RUNTIME.items()}


@pytest.fixture
def in_repo(repo_root, monkeypatch):
    """Run from the repo root so displayed paths are `tests/spec/...`, and pin the variables the
    `env__*` cases read."""
    monkeypatch.chdir(repo_root)
    monkeypatch.setenv("SITEWARDEN_TEST_TOKEN", "token-from-env")
    monkeypatch.delenv("SITEWARDEN_TEST_UNSET", raising=False)
    return repo_root
