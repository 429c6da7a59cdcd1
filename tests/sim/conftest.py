import pytest

from sim.render import SimSource


@pytest.fixture(scope="session")
def crane_frames():
    """4 s of crane-swing at 320x180, 5 fps: every frame with its truth."""
    src = SimSource("crane-swing", seed=3, resolution=(320, 180), fps=5.0, seconds=4.0)
    return src, list(src)
