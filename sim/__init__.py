"""Synthetic construction-site scenes with ground truth (training, calibration, tests).

    from sim.render import SimSource
    for frame in SimSource("crane-swing", seed=0, seconds=3):
        frame.image, frame.truth

Scenes are named in `sim.scenes`; `python build.py sim --list` shows them.
"""
