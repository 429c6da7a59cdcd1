"""The shared on-disk cache of rendered training data."""
from distill.cache import cached_pickle, source_digest


def test_builds_once_then_reads_back(tmp_path):
    calls = []
    build = lambda: calls.append(1) or {"frames": [1, 2, 3]}  # noqa: E731
    path = tmp_path / "sub" / "sim-abc.pkl"
    assert cached_pickle(path, build) == {"frames": [1, 2, 3]}
    assert cached_pickle(path, build) == {"frames": [1, 2, 3]}
    assert calls == [1] and path.is_file() and not list(path.parent.glob("*.tmp*"))


def test_source_digest_follows_the_renderer_source():
    assert source_digest("sim") == source_digest("sim") and source_digest("sim") != source_digest("runtime")
