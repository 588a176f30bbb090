"""Correct under misuse and hostile numbers: the fusion-side defects of issue 14, each under a test that
failed before its fix, and a map that never holds NaN or infinity whatever a frame contains."""

import math

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.fusion import FrameError, FusionConfig, HeightMapFuser
from heightfusion.pipeline import FramePipeline, SkippedFrame

CAM = hf.PinholeCamera(64, 48, 50.0, 50.0, 31.5, 23.5)
T_DOWN = hf.look_at((0.0, -0.3, 1.0), (0.0, 0.0, 0.0))
ORIGIN, CELL, SHAPE = (-0.6, -0.6), 0.05, (25, 25)


def _plane_depth(renderer, height: float, T_wc=T_DOWN) -> np.ndarray:
    return renderer.render_depth(hf.HeightMap(ORIGIN, CELL, SHAPE, initial_height=height), CAM, T_wc).copy()


def _frame(T_wc, depth, image=None) -> hf.Frame:
    return hf.Frame(timestamp=0.0, image=image, depth=depth, T_wc=T_wc, camera=CAM)


def test_earlier_evidence_is_not_overwritten_by_a_new_frame_seed(gl_renderer):
    """A vertex measured once (information above the prior, but not yet 'observed') keeps its estimate:
    the next frame is fused against it, not against a raw seed from that frame's points."""
    grid = hf.HeightMap(ORIGIN, CELL, SHAPE)
    fuser = HeightMapFuser(grid, gl_renderer, FusionConfig(observed_sigma=1e-4))  # nothing becomes "observed"
    sigma = np.full(CAM.shape, 0.05, np.float32)
    fuser.fuse(CAM, T_DOWN, _plane_depth(gl_renderer, 0.10), sigma=sigma)
    centre = (SHAPE[0] // 2, SHAPE[1] // 2)
    assert grid.information[centre] > grid.prior_information and not grid.observed[centre]
    first = float(grid.heights[centre])
    fuser.fuse(CAM, T_DOWN, _plane_depth(gl_renderer, 0.30), sigma=sigma)
    # Equal evidence at 0.1 and 0.3: the estimate lies between them (was 0.3: the first frame thrown away).
    assert abs(first - 0.10) < 0.01
    assert 0.15 < grid.heights[centre] < 0.25


def test_seeds_take_the_mean_where_points_agree_and_the_top_where_they_do_not(gl_renderer):
    grid = hf.HeightMap(ORIGIN, CELL, SHAPE, initial_height=0.5)
    fuser = HeightMapFuser(grid, gl_renderer, FusionConfig(seed_stride=1))
    depth = _plane_depth(gl_renderer, 0.0)
    fuser._seed_unobserved(depth, T_DOWN, CAM)
    seeded = grid.heights != 0.5
    assert seeded.sum() > 100 and np.abs(grid.heights[seeded]).max() < 0.01  # the floor's points agree
    grid.heights[:] = 0.5
    rows, cols = np.indices(depth.shape)
    clutter = depth + np.where((rows + cols) % 2, 0.0, 0.3).astype(np.float32)  # every other point 30 cm further
    fuser._seed_unobserved(clutter, T_DOWN, CAM)
    reseeded = grid.heights != 0.5
    assert reseeded.sum() > 100
    # The highest point of each cell (the floor), not the mean of floor and the points 30 cm further down the rays.
    assert np.median(grid.heights[reseeded]) > -0.02
    grid.information[:] = grid.prior_information * 2  # evidence from an earlier frame
    before = grid.heights.copy()
    fuser._seed_unobserved(depth, T_DOWN, CAM)
    np.testing.assert_array_equal(grid.heights, before)


@pytest.mark.parametrize("field, value", [("max_update", 0.0), ("max_update", -0.1), ("max_update", math.nan),
                                          ("seed_stride", 0), ("seed_stride", -2), ("seed_stride", 1.5)])
def test_config_values_that_break_every_frame_are_refused(field, value):
    with pytest.raises(ValueError, match=f"FusionConfig.{field}"):
        FusionConfig(**{field: value})


def test_forgetting_clears_observed_where_evidence_faded(gl_renderer):
    grid = hf.HeightMap(ORIGIN, CELL, SHAPE)
    fuser = HeightMapFuser(grid, gl_renderer, FusionConfig(forgetting=0.5))
    fuser.fuse(CAM, T_DOWN, _plane_depth(gl_renderer, 0.2))
    assert grid.observed.sum() > 100
    empty = np.full(CAM.shape, np.nan, np.float32)
    for _ in range(30):  # nothing seen any more: the obstacle left
        fuser.fuse(CAM, T_DOWN, empty)
    assert not grid.observed.any()
    np.testing.assert_allclose(grid.information, grid.prior_information, rtol=1e-5)


def test_pipeline_skips_bad_frames_but_raises_real_failures(gl_renderer):
    grid = hf.HeightMap(ORIGIN, CELL, SHAPE)
    pipeline = FramePipeline(HeightMapFuser(grid, gl_renderer), depth="sensor")
    good = _plane_depth(gl_renderer, 0.0)
    assert isinstance(pipeline.process(_frame(T_DOWN, good[:10])), SkippedFrame)  # wrong size: skipped
    skewed = T_DOWN.copy()
    skewed[:3, :3] *= 1.5
    assert pipeline.process(_frame(skewed, good)).reason == "fusion error"  # not a rotation: skipped

    class Broken:
        name, capabilities = "broken", hf.Renderer.capabilities

        def render(self, grid, camera, T_wc):
            raise ValueError("a configuration error inside the renderer")

    broken = FramePipeline(HeightMapFuser(grid, Broken()), depth="sensor")
    with pytest.raises(ValueError, match="configuration error"):  # was: a skipped frame, exit status 0
        broken.process(_frame(T_DOWN, good))
    assert not isinstance(FrameError("x"), FloatingPointError)


def _hostile_frames(renderer):
    """(label, T_wc, depth, sigma) of frames a long run or a careless caller may feed."""
    good = _plane_depth(renderer, 0.1)
    rng = np.random.default_rng(1)
    nan_pose = T_DOWN.copy()
    nan_pose[0, 3] = np.nan
    skewed = T_DOWN.copy()
    skewed[:3, :3] = skewed[:3, :3] @ np.array([[1.0, 0.2, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    below = hf.look_at((0.0, 0.0, -0.5), (0.3, 0.1, 0.2))  # under the surface, looking up through it
    inside = hf.look_at((0.0, 0.0, 0.1), (0.5, 0.5, 0.1))  # in the surface
    grazing = hf.look_at((-2.0, 0.0, 0.13), (1.0, 0.0, 0.1))
    mixed = good.copy()
    mixed[::3, ::2] = np.nan
    mixed[1::3, ::2] = np.inf
    mixed[2::3, ::2] = -1.0
    mixed[::5, 1::2] = 1e30
    return [
        ("all NaN", T_DOWN, np.full(CAM.shape, np.nan, np.float32), None),
        ("all inf", T_DOWN, np.full(CAM.shape, np.inf, np.float32), None),
        ("negative", T_DOWN, -good, None),
        ("huge", T_DOWN, np.full(CAM.shape, 1e30, np.float32), None),
        ("tiny", T_DOWN, np.full(CAM.shape, 1e-30, np.float32), None),
        ("mixed", T_DOWN, mixed, None),
        ("zero sigma", T_DOWN, good, np.zeros(CAM.shape, np.float32)),
        ("NaN sigma", T_DOWN, good, np.full(CAM.shape, np.nan, np.float32)),
        ("inf sigma", T_DOWN, good, np.full(CAM.shape, np.inf, np.float32)),
        ("tiny sigma", T_DOWN, good, np.full(CAM.shape, 1e-20, np.float32)),
        ("huge sigma", T_DOWN, good, np.full(CAM.shape, 1e20, np.float32)),
        ("NaN pose", nan_pose, good, None),
        ("skewed rotation", skewed, good, None),
        ("camera below the surface", below, good, None),
        ("camera inside the surface", inside, good, None),
        ("grazing view", grazing, _plane_depth(renderer, 0.1, grazing), None),
        ("random depth", T_DOWN, rng.uniform(-5, 50, CAM.shape).astype(np.float32), None),
        ("good", T_DOWN, good, None),
    ]


@pytest.mark.parametrize("solver", ["diagonal", "coupled"])
def test_the_map_never_holds_nan_or_inf_whatever_the_frames(gl_renderer, solver):
    grid = hf.HeightMap(ORIGIN, CELL, SHAPE)
    config = FusionConfig(solver=solver)
    pipeline = FramePipeline(HeightMapFuser(grid, gl_renderer, config), depth="sensor")
    cap = 1.0 / config.sigma_floor**2
    outcomes = {}
    for _ in range(2):
        for label, T_wc, depth, sigma in _hostile_frames(gl_renderer):
            if sigma is None:
                result = pipeline.process(_frame(T_wc, depth))
            else:
                try:
                    pipeline.fuser.fuse(CAM, T_wc, depth, sigma=sigma)
                    result = "fused"
                except FrameError:
                    result = SkippedFrame("fusion error")
            outcomes[label] = type(result).__name__ if not isinstance(result, str) else result
            for name in ("heights", "information", "colors"):
                assert np.isfinite(getattr(grid, name)).all(), f"{name} not finite after the '{label}' frame"
            assert grid.information.max() <= cap * (1 + 1e-6), f"information unbounded after '{label}'"
            assert grid.information.min() >= grid.prior_information * (1 - 1e-6)
    assert outcomes["NaN pose"] == outcomes["skewed rotation"] == "SkippedFrame"
    assert outcomes["good"] in ("FusedFrame", "fused")
    assert abs(float(np.median(grid.heights[grid.observed])) - 0.1) < 0.005  # the good frames still count


def test_replay_releases_its_renderer_and_fuser(monkeypatch):
    import importlib

    replay_module = importlib.import_module("heightfusion.replay")  # the package's `replay` is the function

    released = []
    real = replay_module.make_renderer

    def recording(name, **kwargs):
        renderer = real(name, **kwargs)
        release = renderer.release
        renderer.release = lambda: (released.append("renderer"), release())
        return renderer

    monkeypatch.setattr(replay_module, "make_renderer", recording)
    real_fuser_release = HeightMapFuser.release
    monkeypatch.setattr(HeightMapFuser, "release", lambda self: (released.append("fuser"), real_fuser_release(self)))
    hf.replay(max_frames=1, progress=False)
    assert sorted(released) == ["fuser", "renderer"]


def test_autograd_reuses_one_renderer_per_backend_name():
    import torch

    from heightfusion import autograd

    grid = hf.HeightMap(ORIGIN, CELL, SHAPE)
    heights = torch.zeros(SHAPE, dtype=torch.float64, requires_grad=True)
    autograd.render_depth(heights, grid, CAM, T_DOWN, backend="raymarch")
    before = autograd.shared_renderer.cache_info().currsize
    for _ in range(3):
        autograd.render_depth(heights, grid, CAM, T_DOWN, backend="raymarch")
    assert autograd.shared_renderer.cache_info().currsize == before
    assert autograd.shared_renderer("raymarch") is autograd.shared_renderer("raymarch")
