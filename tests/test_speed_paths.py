"""The speed paths of issue 13 give the results of the plain ones: frustum culling (the same fragments and
the same fused map), sums on a window of the map, depth range cut at the deepest measurement, fusion at
a pyramid level, stereo on a halved frame with a predicted sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.cli.options import fusion_level
from heightfusion.depth import DepthEstimate, MotionStereo, StereoConfig
from heightfusion.depth.motion import predicted_sweep, sweep_level
from heightfusion.depth.stereo import torch_threads
from heightfusion.fusion.gl_accumulate import GLAccumulator
from heightfusion.fusion.normal_equations import accumulate
from heightfusion.pyramid import auto_level, expand, frame_at_level, half_camera, halve
from heightfusion.render import context
from heightfusion.render.gl import GLRenderer
from heightfusion.render.projection import MapWindow
from heightfusion.synthetic import generate, robot_loop
from heightfusion.synthetic.scenes import TerrainScene

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CAM = hf.PinholeCamera(160, 120, 128.0, 128.0, 79.5, 59.5)
FIELDS = ("depth", "triangle_ids", "vertex_ids", "barycentric", "depth_grad", "color", "normal")
# Views of a 6 m map that see part of it: from above, obliquely towards its middle, from its corner
# towards the horizon (its far part beyond a 2.5 m depth cut), and from inside it.
PARTIAL_VIEWS = [
    ((0.4, -0.3, 1.2), (0.5, 0.1, 0.0)),
    ((-1.0, -1.2, 0.8), (0.3, 0.2, 0.0)),
    ((-2.8, -2.8, 0.5), (0.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.25), (1.5, 0.5, 0.0)),
]


def large_terrain(n: int = 301, cell_size: float = 0.02) -> hf.HeightMap:
    """An n x n map centred on the origin: rolling terrain with random colours."""
    half = (n - 1) * cell_size / 2
    grid = hf.HeightMap((-half, -half), cell_size, (n, n))
    xy = grid.vertex_xy()
    grid.heights[:] = 0.1 * TerrainScene().height(xy[..., 0], xy[..., 1])
    grid.colors[:] = np.random.default_rng(3).random(grid.colors.shape)
    return grid


@pytest.fixture(scope="module")
def renderers():
    culled, whole = GLRenderer(cull=True), GLRenderer(cull=False)
    yield culled, whole
    culled.release()
    whole.release()


def textures(renderer: GLRenderer) -> list[np.ndarray]:
    return [np.frombuffer(texture.read(), np.uint8) for texture in renderer.fragment_textures]


@pytest.mark.parametrize("view", PARTIAL_VIEWS)
def test_culling_draws_the_same_fragments(renderers, view):
    culled, whole = renderers
    grid = large_terrain()
    T_wc = hf.look_at(*view)
    a, b = culled.render(grid, CAM, T_wc), whole.render(grid, CAM, T_wc)
    assert a.mask.mean() > 0.3
    for name in FIELDS:  # bit for bit, NaN where nothing is seen included
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert culled.drawn_window != MapWindow.whole(grid.shape)  # and it did leave part of the map out
    assert whole.drawn_window == MapWindow.whole(grid.shape)
    np.testing.assert_array_equal(culled.render_depth(grid, CAM, T_wc), whole.render_depth(grid, CAM, T_wc))


@pytest.mark.parametrize("view", PARTIAL_VIEWS)
def test_a_depth_cut_draws_the_nearer_fragments_alone(renderers, view):
    culled, whole = renderers
    grid = large_terrain()
    T_wc = hf.look_at(*view)
    reference = whole.render(grid, CAM, T_wc)
    cut = 2.5
    assert culled.draw_fragments(grid, CAM, T_wc, max_depth=cut) and whole.draw_fragments(grid, CAM, T_wc, max_depth=cut)
    for a, b in zip(textures(culled), textures(whole)):  # the same bytes with and without culling
        np.testing.assert_array_equal(a, b)
    drawn = np.frombuffer(culled.fragment_textures[0].read(), np.float32).reshape(CAM.shape + (4,))[..., 0]
    near = reference.depth <= cut
    np.testing.assert_array_equal(drawn[near], reference.depth[near])
    assert np.isnan(drawn[~near]).all()


def fusion_textures(renderer: GLRenderer) -> tuple[np.ndarray, np.ndarray]:
    """The fusion pass's (depth, d depth / d h) and (vertex ids, normal z bits), (H, W, 4) each."""
    depth_grad, ids = renderer.fusion_textures
    return (np.frombuffer(depth_grad.read(), np.float32).reshape(CAM.shape + (4,)).copy(),
            np.frombuffer(ids.read(), np.int32).reshape(CAM.shape + (4,)).copy())


@pytest.mark.parametrize("view", PARTIAL_VIEWS + [((0.3, 0.2, -0.5), (0.5, 0.4, 0.1))], ids=str)
def test_fusion_draw_is_the_full_draw_of_upward_faces(renderers, view):
    """The fusion pass culls back faces: from a camera above the surface, the full pass's depth and
    derivatives bit for bit; from one below it (the last view), none of the underside the full pass shows."""
    culled, _ = renderers
    grid = large_terrain()
    T_wc = hf.look_at(*view)
    full = culled.render(grid, CAM, T_wc)
    assert culled.draw_fusion_fragments(grid, CAM, T_wc)
    depth_grad, ids = fusion_textures(culled)
    if view[0][2] < 0:
        assert full.mask.mean() > 0.9 and np.isnan(depth_grad[..., 0]).all()
        return
    np.testing.assert_array_equal(depth_grad[..., 0], full.depth)
    np.testing.assert_array_equal(depth_grad[..., 1:], full.depth_grad)
    np.testing.assert_array_equal(ids[..., :3], full.vertex_ids)


@pytest.mark.parametrize("view", PARTIAL_VIEWS[:3])
@pytest.mark.parametrize("change", ["noise", "raised"])
def test_refreshed_fusion_fragments_are_a_new_draws(renderers, view, change):
    """After the heights moved by millimetres (each vertex at random, or all raised by 1 cm, which moves
    oblique hits by a cell or more: the walk to the neighbour triangles), re-intersecting each pixel's ray
    near the triangle it saw gives what rasterizing again gives, but for pixels on a triangle's edge."""
    culled, _ = renderers
    grid = large_terrain()
    T_wc = hf.look_at(*view)
    assert culled.draw_fusion_fragments(grid, CAM, T_wc, 4.0)
    if change == "noise":
        grid.heights += np.random.default_rng(0).normal(0.0, 0.002, grid.shape).astype(np.float32)
    else:
        grid.heights += np.float32(0.01)
    assert culled.refresh_fusion_fragments(grid, CAM, T_wc, 4.0)
    refreshed, ids_a = fusion_textures(culled)
    assert culled.draw_fusion_fragments(grid, CAM, T_wc, 4.0)
    drawn, ids_b = fusion_textures(culled)
    (depth_a, grad_a), (depth_b, grad_b) = [(t[..., 0], t[..., 1:]) for t in (refreshed, drawn)]
    seen_a, seen_b = np.isfinite(depth_a), np.isfinite(depth_b)
    assert seen_b.mean() > 0.3
    # Rays the walk loses (far, grazing ones whose hit jumps cells; the window's edge) have no surface,
    # never a wrong one: none gains a surface the draw does not show.
    assert (seen_b & ~seen_a).mean() < 0.01
    assert (seen_a & ~seen_b).sum() == 0
    same = seen_a & seen_b & (ids_a[..., :3] == ids_b[..., :3]).all(axis=-1)
    assert same.sum() > 0.99 * (seen_a & seen_b).sum()
    np.testing.assert_allclose(depth_a[same], depth_b[same], rtol=2e-6)
    # d depth / d h = b / den: float32 rounding of the hit's in-cell position, larger at grazing rays.
    scale = np.abs(grad_b[same]).sum(axis=-1, keepdims=True)
    assert (np.abs(grad_a[same] - grad_b[same]) <= 5e-3 * scale).all()
    np.testing.assert_array_equal(ids_a[same, 3], ids_b[same, 3])  # the normal, bit for bit
    # Elsewhere a pixel on an edge (either triangle, the same depth), or a grazing ray that crosses the
    # noisy surface more than once, where the walk may stop at a crossing behind the first (never before it).
    other = seen_a & seen_b & ~same
    moved = np.abs(depth_a[other] / depth_b[other] - 1) > 1e-4
    assert moved.sum() < 0.01 * seen_b.sum()
    assert (depth_a[other] >= depth_b[other] * (1 - 1e-4)).all()


def test_refresh_without_its_draw_draws(renderers):
    """A refresh for another pose (or after another kind of draw) cannot reuse what was drawn: it draws."""
    culled, _ = renderers
    grid = large_terrain()
    first, second = hf.look_at(*PARTIAL_VIEWS[0]), hf.look_at(*PARTIAL_VIEWS[1])
    assert culled.draw_fusion_fragments(grid, CAM, first)
    assert culled.refresh_fusion_fragments(grid, CAM, second)
    refreshed = fusion_textures(culled)
    culled.render(grid, CAM, second)
    assert culled.refresh_fusion_fragments(grid, CAM, second)  # after a full draw, too
    assert culled.draw_fusion_fragments(grid, CAM, second)
    for a, b in zip(refreshed, fusion_textures(culled)):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


def test_rasterizing_once_per_frame_fuses_the_map_of_rasterizing_every_render(gl_renderer):
    """The default keeps each frame's first draw's visibility for its later renders: against ground truth
    as accurate as rasterizing every time, and the same map up to what noise in the gates moves."""
    sequence = generate("floor", frames=8, width=160, height=120, noise=True, seed=4)
    truth = sequence.gt_heightmap
    frames = list(zip(sequence.frames, sequence.sigmas))
    maps, stats = {}, {}
    for every in (True, False):
        maps[every] = hf.HeightMap(tuple(truth.origin), truth.cell_size, truth.shape)
        stats[every] = fuse_frames(gl_renderer, maps[every], frames, hf.FusionConfig(rasterize_every_render=every))
    smooth = hf.metrics.smooth_mask_from_heights(truth)
    once, every = (hf.metrics.evaluate(maps[k], truth, smooth) for k in (False, True))
    assert once["smooth_rmse"] < 1.15 * every["smooth_rmse"] + 2e-4
    assert once["completeness"] > every["completeness"] - 0.01
    both = maps[True].observed & maps[False].observed
    assert np.median(np.abs(maps[True].heights - maps[False].heights)[both]) < 1e-4
    used = [s.pixels_used for s in stats[False]], [s.pixels_used for s in stats[True]]
    assert all(a > 0.95 * b for a, b in zip(*used))
    with pytest.raises(ValueError, match="rasterize_every_render"):
        hf.FusionConfig(rasterize_every_render="yes")


def fuse_frames(renderer, grid: hf.HeightMap, frames, config: hf.FusionConfig | None = None) -> list[hf.FusionStats]:
    fuser = hf.HeightMapFuser(grid, renderer, config)
    try:
        return [fuser.fuse(f.camera, f.T_wc, f.depth, f.image, s) for f, s in frames]
    finally:
        fuser.release()


@pytest.fixture(scope="module")
def floor_frames():
    """Noisy frames of the floor scene (3 m across), 160x120."""
    sequence = generate("floor", frames=6, width=160, height=120, noise=True, seed=2)
    return list(zip(sequence.frames, sequence.sigmas))


def floor_map(n: int) -> hf.HeightMap:
    """An n x n map of 2 cm cells centred on the floor scene."""
    half = (n - 1) * 0.01
    return hf.HeightMap((-half, -half), 0.02, (n, n))


@pytest.mark.parametrize("accumulator", ["cpu", "gl"])
def test_culling_fuses_the_same_map(renderers, floor_frames, accumulator):
    """Bit for bit with the CPU's sums; with the GL sums up to float32 rounding, which their atomic adds
    leave to the order the GPU's threads run in (also between two runs of the same renderer)."""
    culled, whole = renderers
    config = hf.FusionConfig(accumulate=accumulator)
    a, b = floor_map(401), floor_map(401)
    stats_a, stats_b = fuse_frames(culled, a, floor_frames, config), fuse_frames(whole, b, floor_frames, config)
    for name in ("heights", "information", "colors"):
        if accumulator == "cpu":
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        else:
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-3, atol=1e-5, err_msg=name)
    if accumulator == "cpu":
        np.testing.assert_array_equal(a.observed, b.observed)
        assert [s.pixels_used for s in stats_a] == [s.pixels_used for s in stats_b]


def test_a_frame_changes_only_what_it_sees(gl_renderer, floor_frames):
    """On a map far larger than the view, the vertices no pixel reached (beyond the solve's margin) keep
    their prior exactly."""
    grid = floor_map(801)
    stats = fuse_frames(gl_renderer, grid, floor_frames)
    changed = MapWindow.of_mask((grid.heights != 0) | (grid.information != grid.prior_information))
    assert all(s.pixels_used > 1000 for s in stats)
    assert changed.size < 0.05 * grid.num_vertices  # the 3 m scene on a 16 m map


def test_sums_on_the_drawn_window_are_the_sums_on_the_grid(gl_renderer):
    grid = large_terrain()
    T_wc = hf.look_at(*PARTIAL_VIEWS[0])
    depth = hf.make_renderer("raymarch").render_depth(grid, CAM, T_wc) + np.float32(0.01)
    sigma = np.full(CAM.shape, 0.005, np.float32)
    ray_norm = np.linalg.norm(CAM.pixel_rays(), axis=-1).astype(np.float32)
    information = np.full(grid.shape, 1e3, np.float32)
    colors = np.random.default_rng(0).random(CAM.shape + (3,)).astype(np.float32)
    args = (depth, sigma, ray_norm, 0.1, 2.0, 5.0, information, colors)
    accumulator = GLAccumulator(gl_renderer)
    try:
        windowed = accumulator.accumulate_window(grid, CAM, T_wc, *args)
        on_grid = accumulator.accumulate(grid, CAM, T_wc, *args)
    finally:
        accumulator.release()
    assert windowed.window is not None and windowed.diagonal.shape == windowed.window.shape
    assert windowed.window.size < 0.5 * grid.num_vertices
    cpu = accumulate(gl_renderer.render(grid, CAM, T_wc), depth, sigma, grid.shape, ray_norm, *args[3:])
    assert windowed.touched() == cpu.touched()
    full = windowed.on_grid(grid.shape)
    for name in ("diagonal", "g", "right", "down", "diag", "color_sums"):
        scale = np.abs(getattr(cpu, name)).max()
        for gpu in (full, on_grid):  # float32 atomic sums: any order, as tests/test_gl_accumulate.py allows
            np.testing.assert_allclose(getattr(gpu, name), getattr(cpu, name), rtol=0, atol=1e-4 * scale, err_msg=name)


def test_restricted_sums_hold_zeros_outside_the_window():
    ones = np.ones((2, 3))
    system = hf.fusion.normal_equations.NormalEquations(
        ones, ones, ones, ones, ones, None, 1, 0, 0, 0, 0.0, window=MapWindow(2, 4, 3, 6))
    part = system.restricted(MapWindow(1, 4, 3, 7))
    assert part.window == MapWindow(1, 4, 3, 7)
    np.testing.assert_array_equal(part.diagonal, [[0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]])
    assert system.on_grid((5, 8)).diagonal.sum() == 6 and system.touched() == MapWindow(2, 4, 3, 6)


def test_measurements_far_behind_the_map_surface_are_unseen(gl_renderer):
    grid = large_terrain()
    T_wc = hf.look_at(*PARTIAL_VIEWS[3])
    frag = gl_renderer.render(grid, CAM, T_wc)
    depth = np.where(frag.mask, np.float32(1.0), np.float32(np.nan))  # a measurement wherever the map is seen
    sigma = np.full(CAM.shape, 0.01, np.float32)
    ray_norm = np.linalg.norm(CAM.pixel_rays(), axis=-1).astype(np.float32)
    args = (depth, sigma, grid.shape, ray_norm, 0.0, math.inf, math.inf)
    every = accumulate(frag, *args)
    cut = accumulate(frag, *args, max_depth=1.5)
    deep = int((frag.mask & (frag.depth > 1.5)).sum())
    assert deep > 100 and cut.pixels_unseen == every.pixels_unseen + deep
    assert cut.pixels_used == every.pixels_used - deep


# --- the pyramid ---------------------------------------------------------------------------------
def test_halving_mixes_no_depth_edge():
    camera = hf.PinholeCamera(4, 2, 100.0, 100.0, 1.5, 0.5)
    depth = np.array([[1.0, 1.001, 1.0, 2.0], [1.002, np.nan, 1.0, 2.0]], np.float32)
    depth = np.concatenate([depth, [[np.nan, 1.0, 3.0, 3.0], [np.nan, np.nan, 3.0, 3.001]]])
    camera = hf.PinholeCamera(4, 4, 100.0, 100.0, 1.5, 1.5)
    sigma = np.full(depth.shape, 0.002, np.float32)
    colors = np.arange(48, dtype=np.float32).reshape(4, 4, 3)
    half, d, s, c = halve(camera, depth, sigma, colors)
    assert half == hf.PinholeCamera(2, 2, 50.0, 50.0, 0.5, 0.5)
    np.testing.assert_allclose(d[0, 0], np.float32(1.001), rtol=1e-6)  # the mean of the three valid values
    assert np.isnan(d[0, 1])  # 1 m next to 2 m: an edge, no value
    assert np.isnan(d[1, 0])  # one valid value: no value
    np.testing.assert_allclose(d[1, 1], 3.00025, rtol=1e-6)
    np.testing.assert_array_equal(np.isnan(s), np.isnan(d))
    assert s[0, 0] == np.float32(0.002)  # the sigma of one pixel, not divided
    np.testing.assert_allclose(c[0, 0], colors[:2, :2].mean(axis=(0, 1)))


def test_the_halved_camera_sees_a_point_at_its_block_centre():
    camera = hf.PinholeCamera(641, 481, 520.0, 515.0, 318.6, 255.3)
    half = half_camera(camera)
    assert (half.width, half.height) == (320, 240)
    point = camera.unproject(np.array([[100.5, 60.5]]), 2.0)  # the centre of block (50, 30)
    np.testing.assert_allclose(half.project(point), [[50.0, 30.0]], atol=1e-9)


def test_the_automatic_level_keeps_a_few_pixels_per_cell():
    camera = hf.PinholeCamera(640, 480, 500.0, 500.0, 319.5, 239.5)
    depth = np.full(camera.shape, 1.25, np.float32)  # a 2 cm cell spans 8 pixels
    assert auto_level(camera, depth, 0.02, pixels_per_cell=2.0) == 2
    assert auto_level(camera, depth, 0.02, pixels_per_cell=2.7) == 2  # 2 px is nearer than 4 px
    assert auto_level(camera, depth, 0.02, pixels_per_cell=2.9) == 1
    assert auto_level(camera, depth, 0.02, pixels_per_cell=8.0) == 0
    assert auto_level(camera, depth, 0.5, pixels_per_cell=2.0) == 2  # no further: 160 x 120 pixels
    assert auto_level(camera, np.full(camera.shape, np.nan, np.float32), 0.02) == 0
    small = hf.PinholeCamera(160, 120, 125.0, 125.0, 79.5, 59.5)
    assert auto_level(small, np.full(small.shape, 0.3, np.float32), 0.02, pixels_per_cell=2.0) == 0
    cam, d, _, _ = frame_at_level(camera, depth, depth, None, 3)
    assert cam.shape == d.shape == (60, 80)


def test_fusion_at_a_level(gl_renderer, floor_frames):
    grid = floor_map(161)
    stats = fuse_frames(gl_renderer, grid, floor_frames[:2], hf.FusionConfig(pyramid_level=2))
    frame = floor_frames[0][0]
    assert [s.level for s in stats] == [2, 2]
    assert stats[0].pixels_measured == np.isfinite(frame.depth).sum()  # of the frame as given
    assert 0 < stats[0].pixels_used < np.isfinite(frame.depth).sum() / 8  # a sixteenth of the pixels
    assert "pyramid" in stats[0].ms and grid.observed.any()
    for bad in (-1, 1.5, "coarse", True):
        with pytest.raises(ValueError, match="pyramid_level"):
            hf.FusionConfig(pyramid_level=bad)


def test_cli_fusion_level():
    assert fusion_level("auto") == "auto" and fusion_level("2") == 2
    for bad in ("-1", "x", "1.5"):
        with pytest.raises(Exception, match="auto or a non-negative integer"):
            fusion_level(bad)


# --- stereo ---------------------------------------------------------------------------------------
def test_sweep_level_and_expansion():
    assert sweep_level(hf.PinholeCamera(640, 480, 500, 500, 320, 240), (320, 240)) == 1
    assert sweep_level(hf.PinholeCamera(641, 481, 500, 500, 320, 240), (320, 240)) == 1  # the odd pixel goes
    assert sweep_level(hf.PinholeCamera(642, 480, 500, 500, 320, 240), (320, 240)) == 2
    assert sweep_level(hf.PinholeCamera(320, 240, 500, 500, 160, 120), (320, 240)) == 0
    assert sweep_level(hf.PinholeCamera(1280, 960, 500, 500, 640, 480), None) == 0
    np.testing.assert_array_equal(expand(np.array([[1.0, 2.0]]), 1, (3, 5), np.nan),
                                  [[1, 1, 2, 2, np.nan], [1, 1, 2, 2, np.nan], [np.nan] * 5])


def test_predicted_sweep_keeps_the_step_and_narrows_the_range():
    config = StereoConfig(num_hypotheses=64, planes="fronto", min_depth=0.3, max_depth=10.0)
    T_wc = np.eye(4)
    points = np.column_stack([np.zeros(200), np.zeros(200), np.linspace(1.0, 2.0, 200)])
    narrow = predicted_sweep(config, T_wc, points)
    step = (1 / config.min_depth - 1 / config.max_depth) / (config.num_hypotheses - 1)
    assert 16 <= narrow.num_hypotheses < 32
    np.testing.assert_allclose((1 / narrow.min_depth - 1 / narrow.max_depth) / (narrow.num_hypotheses - 1), step)
    assert narrow.min_depth < 1.0 and narrow.max_depth > 2.0
    spread = np.column_stack([np.zeros(2), np.zeros(2), [0.2, 20.0]])
    assert predicted_sweep(config, T_wc, spread) is config  # nothing to save
    ground = StereoConfig(planes="ground", min_height=-0.2, max_height=0.5)
    camera_up = np.eye(4)
    camera_up[2, 3] = 1.0
    floor = np.column_stack([np.zeros(50), np.zeros(50), np.linspace(0.0, 0.05, 50)])
    narrow = predicted_sweep(ground, camera_up, floor)
    assert narrow.num_hypotheses < 64 and narrow.min_height < 0.0 and narrow.max_height > 0.05
    below = StereoConfig(planes="below", min_depth=0.3, max_depth=10.0)  # the floor 0.95-1 m below the camera
    narrow = predicted_sweep(below, camera_up, floor)
    assert narrow.num_hypotheses < 32 and narrow.min_depth < 0.95 and narrow.max_depth > 1.0


def test_motion_stereo_on_a_halved_frame_answers_at_the_frames_pixels():
    sequence = generate("floor", poses=robot_loop(96)[:8], width=192, height=144)
    stereo = StereoConfig(planes="ground", min_height=-0.05, max_height=0.3, sweep_size=(96, 72))
    motion = MotionStereo(stereo)
    results = [motion.push(f.camera, f.T_wc, f.image) for f in sequence.frames]
    estimates = [(r.estimate, f) for r, f in zip(results, sequence.frames) if r.estimate is not None]
    assert len(estimates) >= 4 and motion.window.keyframes[0].image.shape == (72, 96, 3)
    for estimate, frame in estimates:
        assert isinstance(estimate, DepthEstimate) and estimate.depth.shape == frame.camera.shape
        blocks = estimate.depth.reshape(72, 2, 96, 2)
        np.testing.assert_array_equal(blocks[:, 0, :, 0], blocks[:, 1, :, 1])  # one value per 2x2 block
        valid = estimate.valid & np.isfinite(frame.depth)
        assert np.median(np.abs(estimate.depth[valid] - frame.depth[valid]) / frame.depth[valid]) < 0.03


def test_torch_threads_are_restored():
    import torch

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        StereoConfig(threads=0)
    with pytest.raises(ValueError, match="sweep_size"):
        StereoConfig(sweep_size=(320,))


def test_egl_device_variable_is_checked(monkeypatch):
    monkeypatch.setenv(context.EGL_DEVICE_VARIABLE, "first")
    with pytest.raises(hf.GLUnavailableError, match=context.EGL_DEVICE_VARIABLE):
        context._create_headless()
