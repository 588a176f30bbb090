import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/reference.py

from reference import ray_directions

import heightfusion as hf


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a test module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``).

    On a machine whose cores other jobs keep busy (CI, shared boxes), torch's OpenMP workers stall in
    every parallel operation: torch code then runs many times slower with two threads than with one.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_mjpg_video(images: list[Path], video: Path, fps: float = 30.0) -> Path:
    """``images`` (files, in order) as an MJPG video at ``video``; returns it."""
    import cv2

    first = cv2.imread(str(images[0]))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), fps, (first.shape[1], first.shape[0]))
    for path in images:
        writer.write(cv2.imread(str(path)))
    writer.release()
    return video


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


def assert_renders_surface_at_size(renderer, shape, image) -> None:
    """A smooth map of ``shape`` vertices in an ``image`` (w, h): every hit lies on the surface."""
    grid = hf.HeightMap((0.0, 0.0), 2.0 / max(shape), shape)
    xy = grid.vertex_xy()
    grid.heights[:] = 0.1 * np.sin(4 * xy[..., 0]) * np.cos(3 * xy[..., 1])
    w, h = image
    cam = hf.PinholeCamera(w, h, 0.8 * w, 0.8 * w, (w - 1) / 2, (h - 1) / 2)
    T = hf.look_at([-0.8, 0.6, 1.2], [1.0, 0.7, 0.0])
    frag = renderer.render(grid, cam, T)
    assert frag.depth.shape == (h, w) and frag.vertex_ids.shape == (h, w, 3)
    assert frag.mask.mean() > 0.3
    # Depth of every hit matches the surface height at the hit point.
    c, d = ray_directions(cam, T)
    m = frag.mask
    hit = c + frag.depth[m][:, None] * d[m]
    surface = grid.sample(hit[:, :2])
    inside = np.isfinite(surface)  # hits on the map's rim may land a rounding error outside it
    assert inside.mean() > 0.99
    np.testing.assert_allclose(surface[inside], hit[inside, 2], atol=1e-4)
    np.testing.assert_array_equal(renderer.render_depth(grid, cam, T), frag.depth)


def assert_rejects_bad_input(renderer, grid, cam, T_wc) -> None:
    """Every backend names what is wrong: a NaN height (and where), a non-rigid pose, a non-camera."""
    bad = grid.copy()
    bad.heights[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*i=3, j=4"):
        renderer.render(bad, cam, T_wc)
    skewed = T_wc.copy()
    skewed[:3, :3] *= 1.1
    with pytest.raises(ValueError, match="not a rigid transform"):
        renderer.render_depth(grid, cam, skewed)
    with pytest.raises(ValueError, match="shape"):
        renderer.render(grid, cam, np.eye(3))
    with pytest.raises(TypeError, match="PinholeCamera"):
        renderer.render(grid, "camera", T_wc)


def load_example(name: str, monkeypatch) -> object:
    """apps/examples/``name``.py as a module (the examples are scripts, not a package), registered in
    ``sys.modules`` for the test's duration (dataclasses look their module up there)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "apps" / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module
