"""The GL rasterizer against an independent ray-triangle intersection and finite differences."""

import numpy as np
import pytest
from conftest import (
    assert_rejects_bad_input,
    assert_renders_surface_at_size,
    bumpy_grid,
)
from reference import ray_directions, raycast_mesh

import heightfusion as hf

CAM = hf.PinholeCamera(64, 48, 50.0, 52.0, 31.5, 23.5)
OFF_EDGE = 1e-3  # barycentric margin that keeps a pixel off triangle edges


def assert_matches_reference(renderer, grid, cam, T_wc, min_hits=50):
    """Depth, triangle ids, barycentrics, vertex ids, colour and normal against ray casting."""
    frag = renderer.render(grid, cam, T_wc)
    ref = raycast_mesh(grid, cam, T_wc)
    hit = np.isfinite(ref["depth"])
    inner = hit & (ref["edge"] > OFF_EDGE)
    assert inner.sum() >= min_hits, "scene set-up should show the map"
    # Coverage agrees except at pixels whose ray grazes an edge.
    assert np.array_equal(np.isfinite(frag.depth)[inner], hit[inner])
    assert (np.isfinite(frag.depth) != hit).mean() < 0.01
    rel = np.abs(frag.depth - ref["depth"]) / ref["depth"]
    assert rel[inner].max() < 1e-4
    np.testing.assert_array_equal(frag.triangle_ids[inner], ref["triangle_ids"][inner])
    np.testing.assert_allclose(frag.barycentric[inner], ref["barycentric"][inner], atol=2e-4)
    ids = grid.triangles()[frag.triangle_ids[inner]]
    np.testing.assert_array_equal(frag.vertex_ids[inner], ids)
    colors = (grid.colors.reshape(-1, 3)[ids] * frag.barycentric[inner][..., None]).sum(1)
    np.testing.assert_allclose(frag.color[inner], colors, atol=1e-4)
    # Empty pixels: NaN floats, -1 ids.
    empty = ~np.isfinite(frag.depth)
    assert np.all(frag.vertex_ids[empty] == -1) and np.all(frag.triangle_ids[empty] == -1)
    assert np.isnan(frag.depth_grad[empty]).all() and np.isnan(frag.color[empty]).all()
    return frag, ref, inner


def test_depth_ids_barycentric_match_ray_casting(gl_renderer):
    grid = bumpy_grid()
    T = hf.look_at([-0.5, 0.4, 0.8], [0.9, 0.35, 0.0])
    assert_matches_reference(gl_renderer, grid, CAM, T)


def test_barycentric_reproduces_hit_point(gl_renderer):
    grid = bumpy_grid()
    T = hf.look_at([-0.4, 0.2, 0.7], [0.8, 0.4, 0.05])
    frag = gl_renderer.render(grid, CAM, T)
    m = frag.mask
    c, d = ray_directions(CAM, T)
    hit = c + frag.depth[m][:, None] * d[m]
    verts = grid.vertices()[frag.vertex_ids[m]]  # (N, 3, 3)
    interp = (verts * frag.barycentric[m][..., None]).sum(1)
    np.testing.assert_allclose(interp, hit, atol=2e-5)
    np.testing.assert_allclose(frag.barycentric[m].sum(-1), 1.0, atol=1e-5)


def test_normal_is_the_triangle_normal(gl_renderer):
    grid = bumpy_grid()
    T = hf.look_at([-0.4, 0.2, 0.7], [0.8, 0.4, 0.05])
    frag = gl_renderer.render(grid, CAM, T)
    m = frag.mask
    p = grid.vertices()[frag.vertex_ids[m]]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    n *= np.sign(n[:, 2:3])  # upper side
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    np.testing.assert_allclose(frag.normal[m], n, atol=1e-5)


@pytest.mark.parametrize("view", ["oblique", "grazing", "below"])
def test_depth_grad_matches_finite_differences(gl_renderer, view):
    grid = bumpy_grid(shape=(8, 9), cell_size=0.15, amplitude=0.08, seed=3)
    eye, target = {
        "oblique": ([-0.3, 0.3, 0.9], [0.9, 0.35, 0.0]),
        "grazing": ([-1.5, 0.3, 0.16], [0.9, 0.4, 0.02]),
        "below": ([0.9, 0.35, -0.4], [0.8, 0.4, 0.2]),
    }[view]
    T = hf.look_at(eye, target)
    frag = gl_renderer.render(grid, CAM, T)
    ref = raycast_mesh(grid, CAM, T)
    inner = np.isfinite(ref["depth"]) & (ref["edge"] > 0.02)
    assert inner.sum() > 20
    eps = 3e-4  # small against the curvature of depth(h) at grazing view, large against float32 noise
    worst = 0.0
    for vid in np.unique(frag.vertex_ids[inner]):
        i, j = divmod(int(vid), grid.nx)
        plus, minus = grid.copy(), grid.copy()
        plus.heights[i, j] += eps
        minus.heights[i, j] -= eps
        f_plus, f_minus = gl_renderer.render(plus, CAM, T), gl_renderer.render(minus, CAM, T)
        fd = (f_plus.depth - f_minus.depth) / (2 * eps)
        # Pixels whose visible triangle changes under the perturbation (occlusion) have no derivative.
        same = inner & (f_plus.triangle_ids == frag.triangle_ids) & (f_minus.triangle_ids == frag.triangle_ids)
        analytic = np.where(frag.vertex_ids == vid, frag.depth_grad, 0.0).sum(-1)
        err = np.abs(fd - analytic)[same] / np.maximum(1.0, np.abs(analytic[same]))
        worst = max(worst, float(err.max()))
    print(f"{view}: worst relative derivative error {worst:.2e}")
    assert worst < 1e-2, worst
    # Raising the surface brings it nearer to a camera above it and moves it away from one below.
    if view == "below":
        assert (frag.depth_grad[inner] > 0).all()
    elif view == "oblique":
        assert (frag.depth_grad[inner] < 0).all()


def test_map_out_of_view_and_sky(gl_renderer):
    grid = bumpy_grid()
    # Looking away from the map: nothing.
    frag = gl_renderer.render(grid, CAM, hf.look_at([-0.5, 0.4, 0.8], [-2.0, 0.4, 0.8]))
    assert not frag.mask.any() and (frag.vertex_ids == -1).all()
    # Map entirely behind the camera takes the early-out path.
    assert np.isnan(gl_renderer.render_depth(grid, CAM, hf.look_at([-0.5, 0.4, 0.3], [-1.5, 0.4, 0.3]))).all()
    # Horizon: upper rows see sky, lower rows the map; the map partly out of view on the side.
    T = hf.look_at([0.35, -0.15, 0.3], [1.5, 0.7, 0.25])
    frag, _, _ = assert_matches_reference(gl_renderer, grid, CAM, T)
    assert not frag.mask[0].any() and frag.mask[-1].any()


def test_camera_below_surface_sees_underside(gl_renderer):
    grid = bumpy_grid()
    T = hf.look_at([0.9, 0.35, -0.5], [0.85, 0.4, 0.3])
    frag, _, inner = assert_matches_reference(gl_renderer, grid, CAM, T)
    assert frag.mask.mean() > 0.9


def test_camera_inside_a_box(gl_renderer):
    grid = hf.HeightMap((0.0, 0.0), 0.05, (24, 24))
    grid.heights[6:18, 6:18] = 0.5  # a box 0.55 m wide, 0.5 m tall
    T = hf.look_at([0.6, 0.6, 0.25], [0.9, 0.65, 0.2])  # inside it, looking at a wall
    frag, _, _ = assert_matches_reference(gl_renderer, grid, CAM, T)
    assert np.nanmax(frag.depth) < 0.5


def test_non_square_grid_with_offset_origin(gl_renderer):
    grid = bumpy_grid(shape=(7, 19), origin=(-3.25, 10.5), cell_size=0.07)
    T = hf.look_at([-3.4, 10.4, 0.5], [-2.6, 10.7, 0.0])
    assert_matches_reference(gl_renderer, grid, CAM, T)


def test_far_origin_keeps_precision(gl_renderer):
    """A map 1 km from the world origin renders like the same map at the origin."""
    near = bumpy_grid(origin=(0.0, 0.0))
    far = bumpy_grid(origin=(1000.0, -2000.0))
    T = hf.look_at([-0.5, 0.4, 0.8], [0.9, 0.35, 0.0])
    T_far = T.copy()
    T_far[:2, 3] += (1000.0, -2000.0)
    d0 = gl_renderer.render_depth(near, CAM, T)
    d1 = gl_renderer.render_depth(far, CAM, T_far)
    m = np.isfinite(d0) & np.isfinite(d1)
    assert m.mean() > 0.3
    assert np.nanmax(np.abs(d0 - d1)[m] / d0[m]) < 1e-4


@pytest.mark.parametrize(
    "shape, image",
    [((16, 16), (64, 48)), ((1024, 1024), (64, 48)), ((300, 200), (1280, 960)), ((16, 16), (1280, 960))],
)
def test_sizes(gl_renderer, shape, image):
    assert_renders_surface_at_size(gl_renderer, shape, image)


def test_height_update_is_seen_by_next_render(gl_renderer):
    grid = bumpy_grid()
    T = hf.look_at([-0.5, 0.4, 0.8], [0.9, 0.35, 0.0])
    before = gl_renderer.render_depth(grid, CAM, T)
    grid.heights += 0.05
    after = gl_renderer.render_depth(grid, CAM, T)
    assert np.nanmean(after) < np.nanmean(before)


def test_bad_input_is_named(gl_renderer):
    grid = bumpy_grid()
    assert_rejects_bad_input(gl_renderer, grid, CAM, hf.look_at([-0.5, 0.4, 0.8], [0.9, 0.35, 0.0]))


def test_unknown_backend_lists_valid_ones():
    with pytest.raises(ValueError, match="valid backends: gl"):
        hf.make_renderer("nope")


def test_clear_fallback_matches_bitwise_clear(gl_renderer):
    """Drivers whose glClear does not write bits into integer targets get a clearing draw instead."""
    grid = bumpy_grid()
    T = hf.look_at([0.35, -0.15, 0.3], [1.5, 0.7, 0.25])  # sky in the upper rows
    expected = gl_renderer.render(grid, CAM, T)
    fallback = hf.make_renderer("gl")
    fallback._bitwise_clear = False
    frag = fallback.render(grid, CAM, T)
    fallback.render(bumpy_grid(seed=5), CAM, hf.look_at([-0.5, 0.4, 0.8], [0.9, 0.35, 0.0]))
    again = fallback.render(grid, CAM, T)  # the clear really resets what the previous render left
    for f in (frag, again):
        np.testing.assert_array_equal(f.vertex_ids, expected.vertex_ids)
        np.testing.assert_array_equal(f.depth, expected.depth)
    assert (~expected.mask).any()
    fallback.release()


def test_readback_buffers_are_not_shared_with_results_in_use(gl_renderer):
    grid = bumpy_grid()
    T1 = hf.look_at([-0.5, 0.4, 0.8], [0.9, 0.35, 0.0])
    T2 = hf.look_at([0.35, -0.15, 0.3], [1.5, 0.7, 0.25])
    first = gl_renderer.render(grid, CAM, T1)
    kept = first.depth.copy()
    second = gl_renderer.render(grid, CAM, T2)
    np.testing.assert_array_equal(first.depth, kept)
    assert not np.array_equal(np.isfinite(first.depth), np.isfinite(second.depth))
    depth1 = gl_renderer.render_depth(grid, CAM, T1)
    depth2 = gl_renderer.render_depth(grid, CAM, T2)
    np.testing.assert_array_equal(depth1, kept)
    assert not np.shares_memory(depth1, depth2)


def test_depth_gray_pass_matches_ray_casting_the_default_and_the_ray_marcher(gl_renderer):
    """The grey value of observed surface (camera tracking's view of the map), drawn by its own pass, against
    the grey mix of the ray-cast hit's vertices, the base class's lookup on the CPU, and the ray marcher."""
    from heightfusion.heightmap import GRAY_WEIGHTS
    from heightfusion.render.base import Renderer

    grid = bumpy_grid()
    grid.observed[:] = True
    grid.observed[3:6, 4:8] = False  # a patch never seen: its triangles have no grey value
    T = hf.look_at([-0.5, 0.4, 0.8], [0.9, 0.35, 0.0])
    depth, gray = gl_renderer.render_depth_gray(grid, CAM, T)
    ref = raycast_mesh(grid, CAM, T)
    inner = np.isfinite(ref["depth"]) & (ref["edge"] > OFF_EDGE)
    ids = grid.triangles()[ref["triangle_ids"][inner]]
    vertex_gray = grid.colors.reshape(-1, 3) @ GRAY_WEIGHTS
    expected = np.where(grid.observed.ravel()[ids].all(axis=1), (vertex_gray[ids] * ref["barycentric"][inner]).sum(1), np.nan)
    assert np.isnan(expected).sum() > 20 and np.isfinite(expected).sum() > 200
    np.testing.assert_array_equal(np.isfinite(gray[inner]), np.isfinite(expected))
    np.testing.assert_allclose(gray[inner], expected, atol=1e-4)
    np.testing.assert_allclose(depth[inner], ref["depth"][inner], rtol=1e-4)
    assert np.isnan(gray[~np.isfinite(depth)]).all()

    cpu_depth, cpu_gray = Renderer.render_depth_gray(gl_renderer, grid, CAM, T)  # triangles found on the CPU
    both = np.isfinite(cpu_gray) & np.isfinite(gray)
    assert (np.isfinite(cpu_gray) != np.isfinite(gray)).mean() < 0.01  # pixel centres on triangle edges
    np.testing.assert_allclose(gray[both], cpu_gray[both], atol=1e-4)
    np.testing.assert_array_equal(depth, cpu_depth)

    marched_depth, marched_gray = hf.make_renderer("raymarch").render_depth_gray(grid, CAM, T)
    both = np.isfinite(marched_gray) & np.isfinite(gray)
    assert both.sum() > 0.95 * np.isfinite(gray).sum()
    assert np.median(np.abs(marched_gray[both] - gray[both])) < 1e-3

    fallback = hf.make_renderer("gl")  # the clearing draw resets this pass as glClear does
    fallback._bitwise_clear = False
    other = bumpy_grid(seed=5)
    other.observed[:] = True  # grey values where the second view is empty: the clear must remove them
    fallback.render_depth_gray(other, CAM, hf.look_at([0.35, -0.15, 0.3], [1.5, 0.7, 0.25]))
    again_depth, again_gray = fallback.render_depth_gray(grid, CAM, T)
    np.testing.assert_array_equal(again_depth, depth)
    np.testing.assert_array_equal(again_gray, gray)
    fallback.release()
