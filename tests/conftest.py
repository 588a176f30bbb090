import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/reference.py

import heightfusion as hf  # noqa: E402


@pytest.fixture(scope="session")
def gl_renderer():
    renderer = hf.make_renderer("gl")
    yield renderer
    renderer.release()


def bumpy_grid(shape=(12, 16), origin=(0.3, -0.2), cell_size=0.1, amplitude=0.1, seed=0) -> hf.HeightMap:
    """A small grid with random heights and colours (steep, so many triangles face many ways)."""
    grid = hf.HeightMap(origin, cell_size, shape)
    rng = np.random.default_rng(seed)
    grid.heights[:] = rng.random(shape) * amplitude
    grid.colors[:] = rng.random(shape + (3,))
    return grid
