"""The Predictor's import path of earlier releases (``from model.trackon_predictor import Predictor``).

The Predictor lives in ``runtime.predictor``; this alias only re-exports it. No module of ``model/`` imports it.
"""

from trackon2.runtime.predictor import (  # noqa: F401
    SUPPORT_GRID_SIZE,
    UNIFORM_GRID_SIZE,
    FrameTracks,
    Predictor,
    get_points_on_a_grid,
)
