"""GL accumulation (compute shader, atomics) against the CPU read-back path on the same frames."""

import math

import numpy as np
import pytest
from conftest import bumpy_grid

import heightfusion as hf
from heightfusion.fusion.normal_equations import NormalEquations, accumulate
from heightfusion.fusion.gl_accumulate import GLAccumulator

CAM = hf.PinholeCamera(64, 48, 50.0, 52.0, 31.5, 23.5)
T_OBLIQUE = hf.look_at([-0.3, 0.3, 0.9], [0.9, 0.35, 0.0])  # the map fills most of the image, not all
RTOL = 1e-4  # of each array's largest magnitude: float32 sums in any order vs float64 np.bincount
ARRAYS = ("diagonal", "g", "right", "down", "diag", "color_sums")
COUNTS = ("pixels_used", "pixels_unseen", "pixels_grazing", "pixels_gated")


@pytest.fixture(scope="module", params=[True, False], ids=["native-float-atomics", "cas-loop"])
def accumulator(request, gl_renderer):
    if request.param and "GL_NV_shader_atomic_float" not in gl_renderer.ctx.extensions:
        pytest.skip("this GL driver has no GL_NV_shader_atomic_float")
    acc = GLAccumulator(gl_renderer, native_float_atomics=request.param)
    yield acc
    acc.release()


@pytest.fixture(scope="module")
def frame():
    """A bumpy map against measurements of another one, with occluders in front of it (gated),
    free space behind it (never gated), pixels without a value, and per-pixel sigma and colour."""
    rng = np.random.default_rng(11)
    grid = bumpy_grid(shape=(10, 12), amplitude=0.05)
    truth = bumpy_grid(shape=(10, 12), amplitude=0.05, seed=7)
    depth = hf.make_renderer("gl").render_depth(truth, CAM, T_OBLIQUE).copy()
    depth[30:40, 10:20] -= 0.2  # an occluder the map lacks: in front, gated at 20 sigma
    depth[5:10, 40:50] += 0.3  # the map's surface is not there: behind, robustified only
    depth[rng.random(CAM.shape) < 0.05] = np.nan
    sigma = rng.uniform(0.005, 0.015, CAM.shape).astype(np.float32)
    information = rng.uniform(1e2, 1e5, grid.shape).astype(np.float32)
    colors = rng.random(CAM.shape + (3,)).astype(np.float32)
    ray_norm = np.linalg.norm(CAM.pixel_rays(), axis=-1)
    return grid, depth, sigma, ray_norm, information, colors


def assert_same_system(gpu: NormalEquations, cpu: NormalEquations) -> None:
    for name in ARRAYS:
        expected, actual = getattr(cpu, name), getattr(gpu, name)
        if expected is None:
            assert actual is None, name
            continue
        assert actual.dtype == np.float64 and actual.shape == expected.shape, name
        scale = max(np.abs(expected).max(), np.finfo(np.float64).tiny)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=RTOL * scale, err_msg=name)
    assert [getattr(gpu, c) for c in COUNTS] == [getattr(cpu, c) for c in COUNTS]
    np.testing.assert_allclose(gpu.mean_abs_residual, cpu.mean_abs_residual, rtol=1e-5)


def cpu_system(renderer, grid, T, depth, sigma, ray_norm, *args) -> NormalEquations:
    return accumulate(renderer.render(grid, CAM, T), depth, sigma, grid.shape, ray_norm, *args)


def assert_no_pixel_at_a_threshold(renderer, grid, T, depth, sigma, ray_norm, cos_min, huber_k, gate_k, information):
    """The CPU's counts do not move when cos_min and gate_k move by 1e-4: then float32 on the GPU
    against float64 on the CPU cannot put a pixel on the other side of a threshold, and the counts
    must agree exactly."""
    reference = cpu_system(renderer, grid, T, depth, sigma, ray_norm, cos_min, huber_k, gate_k, information)
    for factor in (1 - 1e-4, 1 + 1e-4):
        thresholds = (cos_min * factor, huber_k, gate_k * factor)
        moved = cpu_system(renderer, grid, T, depth, sigma, ray_norm, *thresholds, information)
        assert [getattr(moved, c) for c in COUNTS] == [getattr(reference, c) for c in COUNTS]


@pytest.mark.parametrize("with_information", [False, True], ids=["sigma-gate", "predicted-sigma-gate"])
@pytest.mark.parametrize("with_colors", [False, True], ids=["no-colors", "colors"])
def test_matches_cpu_accumulate(gl_renderer, accumulator, frame, with_information, with_colors):
    grid, depth, sigma, ray_norm, information, colors = frame
    args = (0.3, 1.5, 5.0, information if with_information else None, colors if with_colors else None)
    assert_no_pixel_at_a_threshold(gl_renderer, grid, T_OBLIQUE, depth, sigma, ray_norm, *args[:4])
    cpu = cpu_system(gl_renderer, grid, T_OBLIQUE, depth, sigma, ray_norm, *args)
    # Every rule at work: pixels off the map, grazing, gated, and Huber-weighted free space.
    assert cpu.pixels_used > 500 and cpu.pixels_unseen > 10 and cpu.pixels_grazing > 10 and cpu.pixels_gated > 30
    gpu = accumulator.accumulate(grid, CAM, T_OBLIQUE, depth, sigma, ray_norm, *args)
    assert_same_system(gpu, cpu)


def test_plain_least_squares_matches_cpu(gl_renderer, accumulator, frame):
    """Infinite Huber threshold and gate (the CPU tests' setting): every seen pixel is used."""
    grid, depth, sigma, ray_norm, _, _ = frame
    args = (0.0, math.inf, math.inf)
    cpu = cpu_system(gl_renderer, grid, T_OBLIQUE, depth, sigma, ray_norm, *args)
    gpu = accumulator.accumulate(grid, CAM, T_OBLIQUE, depth, sigma, ray_norm, *args)
    assert gpu.pixels_gated == 0 and gpu.pixels_used == np.isfinite(depth).sum() - gpu.pixels_unseen
    assert_same_system(gpu, cpu)


def test_map_partly_out_of_view_on_another_image_shape(gl_renderer, accumulator):
    """Sky above the horizon, the map cut off at the side; the transposed image shape has as many
    pixels as the fixture's, so buffers sized by pixel count alone would be reused wrongly."""
    cam = hf.PinholeCamera(48, 64, 40.0, 40.0, 23.5, 31.5)
    grid = bumpy_grid()
    T = hf.look_at([0.35, -0.15, 0.3], [1.5, 0.7, 0.25])
    depth = np.full(cam.shape, 1.0, np.float32)  # a measurement everywhere, also where the map is not
    sigma = np.full(cam.shape, 0.02, np.float32)
    ray_norm = np.linalg.norm(cam.pixel_rays(), axis=-1).astype(np.float32)
    args = (0.05, 2.0, 5.0, np.full(grid.shape, 1e3, np.float32), None)
    cpu = accumulate(gl_renderer.render(grid, cam, T), depth, sigma, grid.shape, ray_norm, *args)
    assert cpu.pixels_unseen > 0.2 * depth.size and cpu.pixels_used > 100
    assert_same_system(accumulator.accumulate(grid, cam, T, depth, sigma, ray_norm, *args), cpu)


@pytest.mark.parametrize(
    "eye, target",
    [([-0.5, 0.4, 0.8], [-2.0, 0.4, 0.8]), ([-0.5, 0.4, 0.3], [-1.5, 0.4, 0.3])],
    ids=["looking-away", "map-behind-camera"],
)
def test_frame_without_the_map(gl_renderer, accumulator, frame, eye, target):
    grid, depth, sigma, ray_norm, information, colors = frame
    T = hf.look_at(eye, target)
    args = (0.3, 1.5, 5.0, information, colors)
    gpu = accumulator.accumulate(grid, CAM, T, depth, sigma, ray_norm, *args)
    assert_same_system(gpu, cpu_system(gl_renderer, grid, T, depth, sigma, ray_norm, *args))
    assert gpu.pixels_unseen == np.isfinite(depth).sum() and not gpu.diagonal.any()
    assert math.isnan(gpu.mean_abs_residual)


def test_draw_fragments_fills_the_textures_render_reads(gl_renderer):
    grid = bumpy_grid()
    expected = gl_renderer.render(grid, CAM, T_OBLIQUE)
    assert gl_renderer.draw_fragments(grid, CAM, T_OBLIQUE)
    depth_bary, _, ids, _, _ = gl_renderer.fragment_textures
    H, W = CAM.shape
    np.testing.assert_array_equal(np.frombuffer(depth_bary.read(), np.float32).reshape(H, W, 4)[..., 0], expected.depth)
    np.testing.assert_array_equal(np.frombuffer(ids.read(), np.int32).reshape(H, W, 4)[..., :3], expected.vertex_ids)
    assert not gl_renderer.draw_fragments(grid, CAM, hf.look_at([-0.5, 0.4, 0.3], [-1.5, 0.4, 0.3]))


def test_triangle_ids_are_the_full_renders(gl_renderer):
    """GLRenderer.triangle_ids (the fusion pass, two channels read back) against the full render's ids,
    with both triangle kinds, pixels that see no map, and surface beyond max_depth left out."""
    grid = bumpy_grid()
    full = gl_renderer.render(grid, CAM, T_OBLIQUE)
    ids = gl_renderer.triangle_ids(grid, CAM, T_OBLIQUE)
    assert ids.dtype == np.int64 and (ids == -1).any() and {0, 1} <= set(np.unique(ids[ids >= 0] % 2))
    np.testing.assert_array_equal(ids, full.triangle_ids)
    cut = float(np.nanmedian(full.depth))
    near = gl_renderer.triangle_ids(grid, CAM, T_OBLIQUE, max_depth=cut)
    np.testing.assert_array_equal(near, np.where(full.depth <= cut, full.triangle_ids, -1))
    assert (gl_renderer.triangle_ids(grid, CAM, hf.look_at([-0.5, 0.4, 0.3], [-1.5, 0.4, 0.3])) == -1).all()


def test_shapes_are_checked(gl_renderer, frame):
    grid, depth, sigma, ray_norm, information, _ = frame
    acc = GLAccumulator(gl_renderer)
    with pytest.raises(ValueError, match="sigma has shape"):
        acc.accumulate(grid, CAM, T_OBLIQUE, depth, sigma[:10], ray_norm, 0.3, 1.5, 5.0)
    with pytest.raises(ValueError, match="information has shape"):
        acc.accumulate(grid, CAM, T_OBLIQUE, depth, sigma, ray_norm, 0.3, 1.5, 5.0, information.T)
