"""The ray marchers ("raymarch": torch, "raymarch-gl": GLSL) against brute-force ray casting, the GL
rasterizer, finite differences and each other."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import (
    assert_rejects_bad_input,
    assert_renders_surface_at_size,
    bumpy_grid,
)
from reference import ray_directions, raycast_mesh

import heightfusion as hf
from heightfusion.render import context

CAM = hf.PinholeCamera(64, 48, 50.0, 52.0, 31.5, 23.5)
OFF_EDGE = 1e-3  # barycentric margin that keeps a pixel off triangle edges
FIELDS = ("depth", "barycentric", "depth_grad", "color", "normal")


def box_grid() -> hf.HeightMap:
    grid = hf.HeightMap((0.0, 0.0), 0.05, (24, 24))
    grid.heights[6:18, 6:18] = 0.5  # a box 0.55 m wide, 0.5 m tall
    return grid


# name: (grid, pose); the views of tests/test_render_gl.py.
SCENES = {
    "oblique": lambda: (bumpy_grid(), hf.look_at([-0.5, 0.4, 0.8], [0.9, 0.35, 0.0])),
    # Horizon: upper rows see sky, lower rows the map; the map partly out of view on the side.
    "horizon": lambda: (bumpy_grid(), hf.look_at([0.35, -0.15, 0.3], [1.5, 0.7, 0.25])),
    "below": lambda: (bumpy_grid(), hf.look_at([0.9, 0.35, -0.5], [0.85, 0.4, 0.3])),
    "grazing": lambda: (
        bumpy_grid(shape=(8, 9), cell_size=0.15, amplitude=0.08, seed=3),
        hf.look_at([-1.5, 0.3, 0.16], [0.9, 0.4, 0.02]),
    ),
    "inside_box": lambda: (box_grid(), hf.look_at([0.6, 0.6, 0.25], [0.9, 0.65, 0.2])),
    "non_square_offset": lambda: (
        bumpy_grid(shape=(7, 19), origin=(-3.25, 10.5), cell_size=0.07),
        hf.look_at([-3.4, 10.4, 0.5], [-2.6, 10.7, 0.0]),
    ),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def raymarch_gl():
    twin = hf.make_renderer("raymarch-gl")
    yield twin
    twin.release()


@pytest.fixture(params=["raymarch", "raymarch-gl"])
def renderer(request, raymarch_gl):
    """Each ray marcher: torch (float32) and GLSL."""
    return raymarch_gl if request.param == "raymarch-gl" else hf.make_renderer(request.param)


def off_edge(frag: hf.Fragments) -> np.ndarray:
    """Pixels that hit the surface well inside a triangle."""
    with np.errstate(invalid="ignore"):
        return frag.mask & (np.fmin.reduce(frag.barycentric, axis=-1) > OFF_EDGE)


def assert_empty_pixels_are_marked(frag: hf.Fragments) -> None:
    empty = ~frag.mask
    assert (frag.vertex_ids[empty] == -1).all() and (frag.triangle_ids[empty] == -1).all()
    for name in FIELDS[1:]:
        assert np.isnan(getattr(frag, name)[empty]).all(), name


def assert_consistent(frag: hf.Fragments, grid: hf.HeightMap, cam: hf.PinholeCamera, T: np.ndarray, atol: float):
    """Ids, colour, normal and the hit point agree with the triangle each pixel reports."""
    m = frag.mask
    ids = grid.triangles()[frag.triangle_ids[m]]
    np.testing.assert_array_equal(frag.vertex_ids[m], ids)
    b = frag.barycentric[m]
    np.testing.assert_allclose(b.sum(-1), 1.0, atol=atol)
    np.testing.assert_allclose(frag.color[m], (grid.colors.reshape(-1, 3)[ids] * b[..., None]).sum(1), atol=atol)
    p = grid.vertices()[ids]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    np.testing.assert_allclose(frag.normal[m], n, atol=atol)  # the triangulation's order faces up
    c, d = ray_directions(cam, T)
    hit = c + frag.depth[m][:, None] * d[m]
    np.testing.assert_allclose((p * b[..., None]).sum(1), hit, atol=10 * atol)
    assert_empty_pixels_are_marked(frag)


@pytest.mark.parametrize("scene", SCENES)
def test_matches_ray_casting(scene):
    grid, T = SCENES[scene]()
    ref = raycast_mesh(grid, CAM, T)
    hit = np.isfinite(ref["depth"])
    inner = hit & (ref["edge"] > OFF_EDGE)
    assert inner.sum() >= 40, "scene set-up should show the map"
    for dtype, rtol, atol in ((torch.float64, 1e-6, 1e-9), (torch.float32, 1e-4, 2e-4)):
        frag = hf.make_renderer("raymarch", dtype=dtype).render(grid, CAM, T)
        assert frag.depth.dtype == (np.float64 if dtype == torch.float64 else np.float32)
        np.testing.assert_array_equal(frag.mask[inner], True)
        assert (frag.mask != hit).mean() < 0.005  # coverage differs at most where a ray grazes an edge
        assert (np.abs(frag.depth - ref["depth"]) / ref["depth"])[inner].max() < rtol
        np.testing.assert_array_equal(frag.triangle_ids[inner], ref["triangle_ids"][inner])
        np.testing.assert_allclose(frag.barycentric[inner], ref["barycentric"][inner], atol=atol)
        assert_consistent(frag, grid, CAM, T, atol=max(atol, 1e-5))


@pytest.mark.parametrize("scene", SCENES)
def test_matches_gl_rasterizer(gl_renderer, scene):
    grid, T = SCENES[scene]()
    ref = hf.make_renderer("raymarch", dtype=torch.float64).render(grid, CAM, T)
    frag = hf.make_renderer("raymarch").render(grid, CAM, T)
    gl = gl_renderer.render(grid, CAM, T)
    # The rasterizer snaps vertices to sub-pixel positions, so it may lose a pixel on a sliver at grazing view.
    assert (gl.mask != frag.mask).mean() < 0.005
    both = off_edge(ref) & gl.mask
    assert both.sum() >= 40
    assert (np.abs(frag.depth - gl.depth) / gl.depth)[both].max() < 1e-4
    np.testing.assert_array_equal(frag.triangle_ids[both], gl.triangle_ids[both])
    np.testing.assert_array_equal(frag.vertex_ids[both], gl.vertex_ids[both])
    np.testing.assert_allclose(frag.barycentric[both], gl.barycentric[both], atol=2e-4)
    np.testing.assert_allclose(frag.color[both], gl.color[both], atol=2e-4)
    np.testing.assert_allclose(frag.normal[both], gl.normal[both], atol=1e-5)
    # Derivatives: both within float32 noise (amplified by 1 / den at grazing view) of the double ones.
    for f in (frag, gl):
        err = np.abs(f.depth_grad - ref.depth_grad)[both] / np.maximum(1.0, np.abs(ref.depth_grad[both]))
        assert err.max() < 2e-3, err.max()


@pytest.mark.parametrize("scene", SCENES)
def test_glsl_twin_matches_torch(raymarch_gl, scene):
    grid, T = SCENES[scene]()
    frag = hf.make_renderer("raymarch").render(grid, CAM, T)
    twin = raymarch_gl.render(grid, CAM, T)
    assert (twin.mask != frag.mask).mean() < 0.002
    inner = off_edge(frag) & twin.mask
    np.testing.assert_array_equal(twin.triangle_ids[inner], frag.triangle_ids[inner])
    np.testing.assert_array_equal(twin.vertex_ids[inner], frag.vertex_ids[inner])
    assert (np.abs(twin.depth - frag.depth) / frag.depth)[inner].max() < 1e-4
    for name in FIELDS[1:]:
        a, b = getattr(twin, name)[inner], getattr(frag, name)[inner]
        assert (np.abs(a - b) / np.maximum(1.0, np.abs(b))).max() < 2e-3, name
    assert_empty_pixels_are_marked(twin)
    np.testing.assert_array_equal(raymarch_gl.render_depth(grid, CAM, T), twin.depth)


@pytest.mark.parametrize("view", ["oblique", "grazing", "below"])
def test_depth_grad_matches_finite_differences(view):
    """Central differences in double precision, one vertex parity class at a time.

    A triangle's three vertices have three different (i mod 2, j mod 2) classes, so moving every vertex
    of one class moves exactly one vertex of each pixel's triangle.
    """
    grid = bumpy_grid(shape=(8, 9), cell_size=0.15, amplitude=0.08, seed=3)
    eye, target = {
        "oblique": ([-0.3, 0.3, 0.9], [0.9, 0.35, 0.0]),
        "grazing": ([-1.5, 0.3, 0.16], [0.9, 0.4, 0.02]),
        "below": ([0.9, 0.35, -0.4], [0.8, 0.4, 0.2]),
    }[view]
    T = hf.look_at(eye, target)
    renderer = hf.make_renderer("raymarch", dtype=torch.float64)
    frag = renderer.render(grid, CAM, T)
    inner = off_edge(frag)
    assert inner.sum() > 20
    eps = 1e-6
    i, j = np.indices(grid.shape)
    worst = 0.0
    for parity in range(4):
        moved = ((i % 2) * 2 + j % 2) == parity
        plus, minus = grid.copy(), grid.copy()
        plus.heights = grid.heights.astype(np.float64) + eps * moved
        minus.heights = grid.heights.astype(np.float64) - eps * moved
        f_plus, f_minus = renderer.render(plus, CAM, T), renderer.render(minus, CAM, T)
        fd = (f_plus.depth - f_minus.depth) / (2 * eps)
        same = inner & (f_plus.triangle_ids == frag.triangle_ids) & (f_minus.triangle_ids == frag.triangle_ids)
        analytic = np.where(moved.reshape(-1)[np.maximum(frag.vertex_ids, 0)], frag.depth_grad, 0.0).sum(-1)
        err = np.abs(fd - analytic)[same] / np.maximum(1.0, np.abs(analytic[same]))
        worst = max(worst, float(err.max()))
    assert worst < 1e-6, worst
    # Raising the surface brings it nearer to a camera above it and moves it away from one below. (At
    # grazing view some rays pass under the map's rim and meet the underside.)
    if view == "below":
        assert (frag.depth_grad[inner] > 0).all()
    elif view == "oblique":
        assert (frag.depth_grad[inner] < 0).all()


def test_map_out_of_view_sky_and_behind(renderer):
    grid = bumpy_grid()
    frag = renderer.render(grid, CAM, hf.look_at([-0.5, 0.4, 0.8], [-2.0, 0.4, 0.8]))  # looking away
    assert not frag.mask.any()
    assert_empty_pixels_are_marked(frag)
    assert np.isnan(renderer.render_depth(grid, CAM, hf.look_at([-0.5, 0.4, 0.3], [-1.5, 0.4, 0.3]))).all()
    frag = renderer.render(grid, CAM, hf.look_at([0.35, -0.15, 0.3], [1.5, 0.7, 0.25]))
    assert not frag.mask[0].any() and frag.mask[-1].any()
    inside = renderer.render(box_grid(), CAM, hf.look_at([0.6, 0.6, 0.25], [0.9, 0.65, 0.2]))
    assert inside.mask.all() and np.nanmax(inside.depth) < 0.5  # the box's walls, from inside
    below = renderer.render(grid, CAM, hf.look_at([0.9, 0.35, -0.5], [0.85, 0.4, 0.3]))
    assert below.mask.mean() > 0.9 and (below.depth_grad[off_edge(below)] > 0).all()  # the underside


def test_rays_through_vertices_and_edges_do_not_slip_through(renderer):
    """Looking straight down with pixel rays landing exactly on grid lines and vertices: no cracks."""
    grid = hf.HeightMap((-0.35, 0.25), 0.1, (16, 12))
    x0, y0 = grid.origin
    cam = hf.PinholeCamera(32, 40, 20.0, 20.0, 16.0, 20.0)  # half a cell per pixel at 1 m
    T = hf.look_at([x0 + 0.6, y0 + 0.8, 1.0], [x0 + 0.6, y0 + 0.8, 0.0], up=(0.0, -1.0, 0.0))
    c, d = ray_directions(cam, T)
    x1, x2, y1, y2 = grid.extent
    for height in (0.0, 0.5):  # a quarter of a cell per pixel at 0.5 m: the next render sees the change
        grid.heights[:] = height
        depth = renderer.render_depth(grid, cam, T)
        xy = c[:2] + (1.0 - height) * d[..., :2]
        on_map = (np.abs(xy[..., 0] - (x1 + x2) / 2) < (x2 - x1) / 2 + 1e-9) & (
            np.abs(xy[..., 1] - (y1 + y2) / 2) < (y2 - y1) / 2 + 1e-9
        )
        assert on_map.mean() > 0.4
        np.testing.assert_allclose(depth[on_map], 1.0 - height, rtol=1e-6)
        assert np.isnan(depth[~on_map]).all()


@pytest.mark.parametrize(
    "shape, image",
    [((16, 16), (64, 48)), ((1024, 1024), (64, 48)), ((300, 200), (320, 240)), ((16, 16), (1280, 960))],
)
def test_sizes(shape, image, renderer):
    assert_renders_surface_at_size(renderer, shape, image)


def test_far_origin_keeps_precision():
    """A map 1 km from the world origin renders like the same map at the origin, in float32."""
    near = bumpy_grid(origin=(0.0, 0.0))
    far = bumpy_grid(origin=(1000.0, -2000.0))
    T = hf.look_at([-0.5, 0.4, 0.8], [0.9, 0.35, 0.0])
    T_far = T.copy()
    T_far[:2, 3] += (1000.0, -2000.0)
    renderer = hf.make_renderer("raymarch")
    d0, d1 = renderer.render_depth(near, CAM, T), renderer.render_depth(far, CAM, T_far)
    m = np.isfinite(d0) & np.isfinite(d1)
    assert m.mean() > 0.3
    assert np.nanmax(np.abs(d0 - d1)[m] / d0[m]) < 1e-5


def test_precision_option():
    grid, T = SCENES["oblique"]()
    for dtype in (torch.float64, np.float64, "float64"):
        frag = hf.make_renderer("raymarch", dtype=dtype).render(grid, CAM, T)
        assert all(getattr(frag, name).dtype == np.float64 for name in FIELDS)
    frag = hf.make_renderer("raymarch").render(grid, CAM, T)
    assert all(getattr(frag, name).dtype == np.float32 for name in FIELDS)
    assert frag.triangle_ids.dtype == frag.vertex_ids.dtype == np.int32
    with pytest.raises(ValueError, match="float32 or float64"):
        hf.make_renderer("raymarch", dtype=torch.float16)


def test_raymarch_needs_no_gl(monkeypatch):
    def no_gl():
        raise hf.GLUnavailableError("no OpenGL here (simulated)")

    monkeypatch.setattr(context, "get_context", no_gl)
    grid, T = SCENES["oblique"]()
    assert hf.make_renderer("raymarch").render(grid, CAM, T).mask.any()
    for name in ("raymarch-gl", "gl"):
        with pytest.raises(hf.GLUnavailableError, match="simulated"):
            hf.make_renderer(name).render(grid, CAM, T)


def test_raymarch_does_not_load_opengl():
    code = (
        "import sys, numpy as np, heightfusion as hf\n"
        "assert 'moderngl' not in sys.modules and 'torch' not in sys.modules\n"
        "grid = hf.HeightMap((0, 0), 0.1, (4, 4))\n"
        "cam = hf.PinholeCamera(8, 6, 5, 5, 3.5, 2.5)\n"
        "T = hf.look_at([0.15, 0.15, 1.0], [0.15, 0.16, 0.0])\n"
        "depth = hf.make_renderer('raymarch').render_depth(grid, cam, T)\n"
        "assert abs(depth[3, 4] - 1.0) < 1e-3 and 'moderngl' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_bad_input_is_named(renderer):
    grid, T = SCENES["oblique"]()
    assert_rejects_bad_input(renderer, grid, CAM, T)
