"""The runtime's progress lines for bounded runs (file sources, --seconds)."""
from runtime.app import Progress, bounded_frames


class _File:
    frame_count = 40


def test_a_line_at_every_tenth_and_none_for_live_sources():
    lines = []
    p = Progress({"a": 40, "live": None}, lines.append)
    for _ in range(40):
        p.step("a")
        p.step("live")
    assert len(lines) == 10 and lines[0] == "progress a: [#.........] 10% (4/40 frames)"
    assert lines[-1] == "progress a: [##########] 100% (40/40 frames)"


def test_bounded_frames():
    assert bounded_frames(_File(), 10.0, None) == 40
    assert bounded_frames(_File(), 10.0, 2.0) == 20           # --seconds cuts the file short
    assert bounded_frames(object(), 10.0, 3.0) == 30          # a sim scene with --seconds
    assert bounded_frames(object(), 10.0, None) is None        # live: no progress
