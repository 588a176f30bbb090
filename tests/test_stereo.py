"""Monocular depth: plane-sweep stereo on small synthetic views and a crop of Middlebury 2014 "motorcycle",
bad input, keyframe selection, and monocular replay of a tiny synthetic sequence."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

import heightfusion as hf
from heightfusion.camera import PinholeCamera
from heightfusion.cli import main as cli_main
from heightfusion.depth import (
    NO_PARALLAX,
    DepthEstimate,
    KeyframeConfig,
    KeyframeWindow,
    MotionStereo,
    PlaneSweepStereo,
    SourceFeatureCache,
    StereoConfig,
    nominal_depth,
    select_sources,
    view_change,
)
from heightfusion.fusion import HeightMapFuser
from heightfusion.pipeline import STEREO_SIGMA_FLOOR
from heightfusion.replay import replay
from heightfusion.synthetic import generate, robot_loop, write_tum

TERRAIN_FRONTO = StereoConfig(planes="fronto", min_depth=1.0, max_depth=8.0)
TERRAIN_BELOW = StereoConfig(planes="below", min_depth=1.0, max_depth=8.0)
TERRAIN_GROUND = StereoConfig(planes="ground", min_height=-0.6, max_height=0.6)


@pytest.fixture(scope="module")
def terrain_views():
    """Five 96x72 views of the terrain from a drone 2 m up, 30 cm apart sideways; the middle one is the reference."""
    poses = np.stack([hf.look_at([x, 0.0, 2.0], [x + 1.2, 0.3, 0.0]) for x in (-0.6, -0.3, 0.0, 0.3, 0.6)])
    return generate("terrain", poses=poses, width=96, height=72)


def _estimate(stereo: PlaneSweepStereo, seq, ref: int, sources: list[int]) -> DepthEstimate:
    frames = [seq.frames[i] for i in sources]
    reference = seq.frames[ref]
    return stereo.estimate(
        reference.camera, reference.T_wc, reference.image, [f.image for f in frames], [f.T_wc for f in frames]
    )


def _check_consistent(est: DepthEstimate, shape: tuple[int, int]) -> None:
    """Shapes, dtypes, and NaN exactly where invalid; sigma positive where valid."""
    assert est.depth.shape == est.sigma.shape == est.valid.shape == shape
    assert est.depth.dtype == est.sigma.dtype == np.float32 and est.valid.dtype == bool
    assert np.array_equal(np.isfinite(est.depth), est.valid) and np.array_equal(np.isfinite(est.sigma), est.valid)
    assert (est.depth[est.valid] > 0).all() and (est.sigma[est.valid] > 0).all()


@pytest.mark.parametrize("config", [TERRAIN_FRONTO, TERRAIN_GROUND, TERRAIN_BELOW], ids=["fronto", "ground", "below"])
@pytest.mark.parametrize(
    "sources, density", [([3], 0.35), ([1, 3], 0.5), ([0, 1, 3, 4], 0.5)], ids=["two-view", "three-view", "five-view"]
)
def test_depth_of_synthetic_terrain(terrain_views, config, sources, density):
    truth = terrain_views.frames[2].depth
    est = _estimate(PlaneSweepStereo(config), terrain_views, 2, sources)
    _check_consistent(est, truth.shape)
    valid = est.valid & np.isfinite(truth)
    error = np.abs(est.depth[valid] - truth[valid])
    assert valid.mean() > density  # two views leave more occluded and unchecked pixels invalid
    assert np.median(error / truth[valid]) < 0.02
    # Sigma means something; its calibration (55-80 % within 1 sigma) is checked at 320x240 by the benchmark.
    assert np.mean(error <= 3 * est.sigma[valid]) > 0.7 and np.mean(error <= est.sigma[valid]) < 0.95


@pytest.mark.parametrize("config", [TERRAIN_FRONTO, TERRAIN_GROUND, TERRAIN_BELOW], ids=["fronto", "ground", "below"])
def test_coarse_to_fine_finds_the_full_sweeps_depth(terrain_views, config):
    """The sweep at every other pixel plus a band of full-resolution hypotheses (the default) against the
    whole sweep at every pixel: the same depths, nearly the same pixels."""
    full = _estimate(PlaneSweepStereo(replace(config, coarse_to_fine=False)), terrain_views, 2, [0, 1, 3, 4])
    fast = _estimate(PlaneSweepStereo(config), terrain_views, 2, [0, 1, 3, 4])
    _check_consistent(fast, full.depth.shape)
    odd = PinholeCamera(95, 71, *terrain_views.camera.K[[0, 1, 0, 1], [0, 1, 2, 2]])  # every other pixel: 48x36
    frames = [terrain_views.frames[i] for i in (2, 1, 3)]
    cropped = PlaneSweepStereo(config).estimate(odd, frames[0].T_wc, frames[0].image[:71, :95],
                                               [f.image[:71, :95] for f in frames[1:]], [f.T_wc for f in frames[1:]])
    _check_consistent(cropped, odd.shape)
    assert cropped.valid.mean() > 0.3
    both = full.valid & fast.valid
    # At 96x72 the coarse sweep has 48x36 pixels; at 320x240 (bench_depth) the valid shares differ by 1-2 points.
    assert both.sum() > 0.8 * full.valid.sum()
    assert np.median(np.abs(fast.depth[both] - full.depth[both]) / full.depth[both]) < 0.005


def test_band_smoothness_reads_each_pixels_block():
    from heightfusion.depth.stereo import _band_smoothness

    generator = torch.Generator().manual_seed(0)
    smoothness = torch.rand(6, 3, 4, generator=generator)
    labels = torch.randint(0, 6, (3, 7, 9), generator=generator)  # odd sizes: the last row and column reuse a block
    got = _band_smoothness(smoothness, labels)
    for b, y, x in np.ndindex(*labels.shape):
        assert got[b, y, x] == smoothness[labels[b, y, x], min(y // 2, 2), min(x // 2, 3)]


@pytest.fixture(scope="module")
def middlebury_crop():
    """Left, right, ground-truth disparity and camera of a 160x280 crop of "motorcycle" at half resolution."""
    data = pytest.importorskip("skimage.data")
    left, right, disparity = data.stereo_motorcycle()
    half = [cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA) for image in (left, right)]
    truth = cv2.resize(disparity, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_NEAREST) / 2
    rows, cols = slice(40, 200), slice(60, 340)
    # Calibration of the quarter-size images skimage ships; the disparity excludes doffs, so one camera serves both.
    focal, cx, cy = 994.978 / 2, (311.193 + 0.5) / 2 - 0.5 - cols.start, (254.877 + 0.5) / 2 - 0.5 - rows.start
    camera = hf.PinholeCamera(cols.stop - cols.start, rows.stop - rows.start, focal, focal, cx, cy)
    return half[0][rows, cols], half[1][rows, cols], truth[rows, cols], camera


def test_middlebury_crop_two_views(middlebury_crop):
    left, right, truth, camera = middlebury_crop
    baseline = 0.193001
    right_T_wc = np.eye(4)
    right_T_wc[0, 3] = baseline  # rectified: the right camera sits baseline metres along the left's x
    fb = camera.fx * baseline
    config = StereoConfig(num_hypotheses=32, planes="fronto", min_depth=fb / 31.5, max_depth=fb / 0.5)
    est = PlaneSweepStereo(config).estimate(camera, np.eye(4), left, [right], [right_T_wc])
    _check_consistent(est, truth.shape)
    scored = est.valid & np.isfinite(truth)
    disparity = fb / est.depth[scored]
    # 1 px here is 2 px at the quarter size the benchmark scores; SGBM: 13 % at 85 % density on this crop.
    assert np.mean(np.abs(disparity - truth[scored]) > 1.0) < 0.11
    assert scored.sum() / np.isfinite(truth).sum() > 0.7


# --- bad input ---------------------------------------------------------------------------------------
def test_sources_at_the_reference_pose_give_no_depth(terrain_views):
    reference = terrain_views.frames[2]
    est = PlaneSweepStereo(TERRAIN_FRONTO).estimate(
        reference.camera, reference.T_wc, reference.image, [reference.image] * 2, [reference.T_wc] * 2
    )
    _check_consistent(est, reference.camera.shape)
    assert not est.valid.any()


def test_black_reference_gives_no_depth(terrain_views):
    black = np.zeros_like(terrain_views.frames[2].image)
    reference = terrain_views.frames[2]
    source = terrain_views.frames[3]
    est = PlaneSweepStereo(TERRAIN_FRONTO).estimate(reference.camera, reference.T_wc, black, [source.image], [source.T_wc])
    assert not est.valid.any()


def test_black_source_leaks_no_nan_into_the_map(terrain_views, gl_renderer):
    seq = terrain_views
    black = np.zeros_like(seq.frames[1].image)
    images = [black, seq.frames[3].image]
    poses = [seq.frames[1].T_wc, seq.frames[3].T_wc]
    reference = seq.frames[2]
    est = PlaneSweepStereo(TERRAIN_FRONTO).estimate(reference.camera, reference.T_wc, reference.image, images, poses)
    _check_consistent(est, reference.camera.shape)
    alone = PlaneSweepStereo(TERRAIN_FRONTO).estimate(reference.camera, reference.T_wc, reference.image, [black], poses[:1])
    assert alone.valid.mean() < 0.05  # a black source alone matches nothing
    grid = hf.HeightMap((0.0, -1.5), 0.05, (60, 60))
    before = grid.information.copy()
    for depth, sigma in ((est.depth, est.sigma), (alone.depth, alone.sigma)):
        HeightMapFuser(grid, gl_renderer).fuse(reference.camera, reference.T_wc, depth, reference.image, sigma=sigma)
    assert np.isfinite(grid.heights).all() and np.isfinite(grid.information).all()
    assert (grid.information > before).any()  # the good source's depth reached the map


def test_bad_arguments_are_refused(terrain_views):
    stereo = PlaneSweepStereo(TERRAIN_FRONTO)
    reference, source = terrain_views.frames[2], terrain_views.frames[3]
    cam, image, T = reference.camera, reference.image, reference.T_wc
    with pytest.raises(ValueError, match=r"src_images\[0\] has shape \(36, 48, 3\)"):
        stereo.estimate(cam, T, image, [source.image[::2, ::2]], [source.T_wc])
    with pytest.raises(ValueError, match="ref_image has shape"):
        stereo.estimate(cam, T, image[:, :-1], [source.image], [source.T_wc])
    with pytest.raises(ValueError, match="at least one source"):
        stereo.estimate(cam, T, image, [], [])
    with pytest.raises(ValueError, match="1 source images but 2 source poses"):
        stereo.estimate(cam, T, image, [source.image], [source.T_wc] * 2)
    with pytest.raises(ValueError, match="NaN"):
        stereo.estimate(cam, T, image.astype(np.float32) * np.nan, [source.image], [source.T_wc])
    with pytest.raises(ValueError, match="src_T_wcs"):
        stereo.estimate(cam, T, image, [source.image], [np.full((4, 4), np.nan)])
    with pytest.raises(ValueError, match="camera above max_height"):
        PlaneSweepStereo(StereoConfig(planes="ground", max_height=3.0)).estimate(cam, T, image, [source.image], [source.T_wc])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_hypotheses": 2}, "num_hypotheses"),
        ({"planes": "vertical"}, "planes"),
        ({"min_depth": 2.0, "max_depth": 1.0}, "min_depth"),
        ({"window": 4}, "window"),
        ({"p1": 1.0, "p2": 0.5}, "p1"),
        ({"truncation": math.nan}, "truncation"),
        ({"consistency": -1.0}, "consistency"),
        ({"refine_band": 0}, "refine_band"),
        ({"device": "gpu0"}, "device"),
    ],
)
def test_config_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StereoConfig(**kwargs)


def test_device_auto_takes_cuda_where_torch_sees_it():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert PlaneSweepStereo(StereoConfig()).device.type == expected
    assert PlaneSweepStereo(StereoConfig(device="cpu")).device.type == "cpu"


def test_semi_global_ignores_hypotheses_of_infinite_cost():
    """The padding that lets a few CUDA graphs serve every hypothesis count changes nothing."""
    from heightfusion.depth.stereo import _semi_global_ops

    generator = torch.Generator().manual_seed(0)
    cost, guide = torch.rand(20, 12, 14, generator=generator), torch.rand(12, 14, generator=generator)
    padded = torch.cat([cost, torch.full((12, 12, 14), math.inf)])
    settings = {"p1": 0.05, "p2": 0.5, "contrast": 0.05}
    torch.testing.assert_close(_semi_global_ops(padded, guide, **settings)[:20], _semi_global_ops(cost, guide, **settings))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_semi_global_cuda_graph_matches_its_operators():
    from heightfusion.depth.stereo import _GRAPHED_SEMI_GLOBAL, _semi_global, _semi_global_ops

    generator = torch.Generator().manual_seed(0)
    # capture, replay with new values, another shape, a hypothesis count that is padded
    for shape in ((16, 30, 40), (16, 30, 40), (8, 20, 24), (21, 20, 24)):
        cost = torch.rand(shape, generator=generator).cuda()
        guide = torch.rand(shape[1:], generator=generator).cuda()
        expected = _semi_global_ops(cost, guide, p1=0.05, p2=0.5, contrast=0.05)
        torch.testing.assert_close(_semi_global(cost, guide, 0.05, 0.5, 0.05), expected)
    assert not _GRAPHED_SEMI_GLOBAL.failed


# --- keyframes ---------------------------------------------------------------------------------------
CAM = hf.PinholeCamera(96, 72, 80.0, 80.0, 47.5, 35.5)


def _sideways(x: float) -> np.ndarray:
    T = np.eye(4)
    T[0, 3] = x
    return T


def test_view_change_measures_parallax_and_overlap():
    moved = view_change(CAM, np.eye(4), _sideways(0.1), depth=2.0)
    assert moved.parallax == pytest.approx(80.0 * 0.1 / 2.0)  # f b / z for every pixel
    assert moved.overlap == pytest.approx(0.875, abs=0.07)  # a 4 px strip of 96 leaves the view
    turned = np.eye(4)
    turned[:3, :3] = cv2.Rodrigues(np.array([0.0, 0.2, 0.0]))[0]
    rotation = view_change(CAM, np.eye(4), turned, depth=2.0)
    assert rotation.parallax == pytest.approx(0.0, abs=1e-6) and rotation.overlap > 0.5
    with pytest.raises(ValueError, match="depth"):
        view_change(CAM, np.eye(4), turned, depth=0.0)


def test_select_sources_wants_useful_parallax():
    config = KeyframeConfig(num_sources=2, min_parallax=4.0, max_parallax=30.0)
    candidates = [_sideways(x) for x in (0.0, 0.05, 0.2, 0.4, 1.5)]  # parallax 0, 2, 8, 16, 60 px at 2 m
    assert select_sources(CAM, np.eye(4), candidates, 2.0, config) == [2, 3]  # 8 and 16 px, closest to 11 first
    assert select_sources(CAM, np.eye(4), candidates[:2], 2.0, config) == []


def test_keyframe_window_ignores_a_camera_standing_still():
    window = KeyframeWindow(KeyframeConfig(window=3, keyframe_parallax=2.0))
    image = np.zeros((72, 96, 3), np.uint8)
    kept = [window.offer(CAM, _sideways(x), image, 2.0) for x in (0.0, 0.01, 0.02, 0.1, 0.2, 0.3)]
    assert kept == [True, False, False, True, True, True]
    assert [k.T_wc[0, 3] for k in window.keyframes] == [0.1, 0.2, 0.3]  # the window keeps the latest 3


def test_nominal_depth_of_the_sweep():
    # The middle of the sweep in inverse depth (inverse distance to the plane): 1 / mean(1/1, 1/3) = 1.5 m.
    assert nominal_depth(StereoConfig(min_depth=1.0, max_depth=3.0), CAM, np.eye(4)) == pytest.approx(1.5)
    down = hf.look_at([0.0, 0.0, 2.0], [0.0, 1e-3, 0.0], up=(0.0, 1.0, 0.0))  # looking down from 2 m
    ground = StereoConfig(planes="ground", min_height=-1.0, max_height=1.0)  # planes 1 to 3 m below
    assert nominal_depth(ground, CAM, down) == pytest.approx(1.5, rel=1e-3)


# --- motion stereo and replay -------------------------------------------------------------------------
FLOOR_GROUND = StereoConfig(planes="ground", min_height=-0.05, max_height=0.3)


@pytest.fixture(scope="module")
def tiny_floor():
    """The first 24 frames (a quarter) of a 96-frame robot loop over the floor, at 96x72."""
    return generate("floor", poses=robot_loop(96)[:24], width=96, height=72)


def test_motion_stereo_waits_for_parallax(tiny_floor):
    motion = MotionStereo(FLOOR_GROUND)
    frames = tiny_floor.frames[:8]
    results = [motion.push(f.camera, f.T_wc, f.image) for f in frames]
    assert results[0].estimate is None and results[0].reason == NO_PARALLAX
    assert sum(r.estimate is not None for r in results) >= 5
    for result, frame in zip(results, frames):
        if result.estimate is not None:
            valid = result.estimate.valid & np.isfinite(frame.depth)
            assert valid.mean() > 0.2 and result.sources >= 1
            assert np.median(np.abs(result.estimate.depth[valid] - frame.depth[valid]) / frame.depth[valid]) < 0.03
    with pytest.raises(ValueError, match="shape"):
        motion.push(frames[0].camera, frames[0].T_wc, frames[0].image[:10])


def test_source_feature_cache_gives_the_same_depth_and_is_bounded(tiny_floor):
    """Cached source features (what MotionStereo keeps for its keyframes) give the estimate uncached ones
    give; an entry is found by the image object (an equal copy is prepared again); the oldest goes first."""
    cache = SourceFeatureCache(size=2)
    cached, plain = PlaneSweepStereo(FLOOR_GROUND, cache), PlaneSweepStereo(FLOOR_GROUND)
    ref, sources = tiny_floor.frames[8], tiny_floor.frames[:8:3]
    arguments = (ref.camera, ref.T_wc, ref.image, [f.image for f in sources], [f.T_wc for f in sources])
    expected = plain.estimate(*arguments)
    for _ in range(2):  # the second estimate takes the first two sources' features from the cache
        estimate = cached.estimate(*arguments)
        np.testing.assert_array_equal(estimate.depth, expected.depth)
        np.testing.assert_array_equal(estimate.sigma, expected.sigma)
    assert len(cache._entries) == 2
    made = []

    def make(value):
        return lambda: made.append(value) or torch.full((1,), value)

    image = sources[0].image
    first = cache.get(image, ("key",), make(1.0))
    assert cache.get(image, ("key",), make(2.0)) is first and made == [1.0]
    assert float(cache.get(image.copy(), ("key",), make(3.0))) == 3.0 and made == [1.0, 3.0]
    assert float(cache.get(image, ("other key",), make(4.0))) == 4.0


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_prefetched_stereo_gives_what_stereo_in_turn_gives(tiny_floor, process):
    """FramePipeline.prefetch runs stereo on a worker thread (or in a child process) ahead of fusion: the
    same depth, in the same order, whether frames are prefetched one ahead (as the live app does), not at
    all, or mixed."""
    from dataclasses import replace as with_fields

    from heightfusion.pipeline import FramePipeline, FusedFrame

    frames = tiny_floor.frames[:10]
    frames = frames[:6] + [with_fields(frames[6], T_wc=None)] + frames[7:]  # a frame without a pose: not prefetched

    def depths(ahead: bool) -> list:
        grid = hf.HeightMap((-1.5, -1.5), 0.05, (61, 61))
        pipeline = FramePipeline(HeightMapFuser(grid, hf.make_renderer("raymarch")), "mvs", FLOOR_GROUND,
                                 stereo_process=process)
        started, results, pending = [], [], None
        for i, frame in enumerate(frames):  # as the live app: one frame pending while its stereo runs
            ready = [pending] if pending is not None else []
            pending = None
            # Every fourth frame is processed without prefetch, after the pending one.
            started.append(ahead and i % 4 != 3 and pipeline.prefetch(frame))
            if started[-1]:
                pending = frame
            else:
                ready.append(frame)
            results += [pipeline.process(f) for f in ready]
        if pending is not None:
            results.append(pipeline.process(pending))
        assert (pipeline._process is not None) == (process and ahead) and pipeline.stereo_process_error is None
        pipeline.close()
        return started, [r.depth if isinstance(r, FusedFrame) else r.reason for r in results]

    started, prefetched = depths(True)
    _, in_turn = depths(False)
    assert started == [True, True, True, False, True, True, False, False, True, True]
    assert len(prefetched) == len(in_turn) == len(frames)
    assert sum(isinstance(d, np.ndarray) for d in in_turn) >= 5
    for a, b in zip(prefetched, in_turn):
        assert (np.array_equal(a, b, equal_nan=True) if isinstance(b, np.ndarray) else a == b)
    # Frames prefetched but never processed (a caller that skips some) still entered the keyframe window.
    pipeline = FramePipeline(HeightMapFuser(hf.HeightMap((-1.5, -1.5), 0.05, (61, 61)), hf.make_renderer("raymarch")),
                             "mvs", FLOOR_GROUND, stereo_process=process)
    assert all(pipeline.prefetch(frame) for frame in frames[:5])
    assert np.array_equal(pipeline.process(frames[4]).depth, in_turn[4], equal_nan=True)
    pipeline.close()
    pipeline = FramePipeline(HeightMapFuser(hf.HeightMap((-1.5, -1.5), 0.05, (61, 61)), hf.make_renderer("raymarch")), "sensor")
    assert not pipeline.prefetch(frames[0])  # sensor depth: nothing to run ahead


def test_replay_with_stereo_ahead_fuses_what_replay_in_turn_fuses(monkeypatch):
    """replay's stereo ahead (the default) gives the same map as stereo in turn, starting every frame's stereo
    before the frame before is fused."""
    import sys

    replay_module = sys.modules["heightfusion.replay"]  # the package's name "replay" is the function
    runs = {ahead: hf.replay(depth="mvs", max_frames=10, progress=False, backend="raymarch", stereo_ahead=ahead)
            for ahead in (True, False)}
    assert runs[True].frames_used == runs[False].frames_used >= 5
    np.testing.assert_allclose(runs[True].grid.heights, runs[False].grid.heights, atol=1e-6)
    events = []
    monkeypatch.setattr(replay_module.FramePipeline, "prefetch", lambda self, frame: events.append(("ahead", frame.index)))
    monkeypatch.setattr(replay_module.FramePipeline, "process",
                        lambda self, frame: events.append(("fuse", frame.index)) or replay_module.SkippedFrame("test"))
    hf.replay(depth="mvs", max_frames=3, progress=False, backend="raymarch")
    assert events == [("ahead", 0), ("ahead", 1), ("fuse", 0), ("ahead", 2), ("fuse", 1), ("fuse", 2)]


def test_the_stereo_process_starts_without_warnings():
    """The child's command runs with warnings as errors and ends cleanly when its input closes at once
    (``python -m heightfusion.depth.worker`` made runpy warn that the package had imported the module)."""
    import subprocess
    import sys

    from heightfusion.depth.worker import CHILD_CODE

    done = subprocess.run([sys.executable, "-W", "error", "-c", CHILD_CODE], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Warning" not in done.stderr, done.stderr


def test_stereo_process_errors_reach_the_caller_and_a_dead_one_is_replaced(tiny_floor):
    """A bad frame's ValueError comes back from the stereo process as a skipped frame; when the process dies,
    stereo goes on in this process (a new keyframe window), with the reason kept."""
    from dataclasses import replace as with_fields

    from heightfusion.pipeline import FramePipeline, FusedFrame

    frames = tiny_floor.frames[:8]
    pipeline = FramePipeline(HeightMapFuser(hf.HeightMap((-1.5, -1.5), 0.05, (61, 61)), hf.make_renderer("raymarch")),
                             "mvs", FLOOR_GROUND, stereo_process=True)
    bad = with_fields(frames[1], image=frames[1].image[:10])
    results = []
    for frame in [frames[0], bad, *frames[2:5]]:
        assert pipeline.prefetch(frame)
        results.append(pipeline.process(frame))
    assert results[1].reason == "stereo error" and "image has shape" in results[1].detail
    assert any(isinstance(r, FusedFrame) for r in results[2:])
    pipeline._process._child.kill()
    pipeline._process._child.wait()
    after = []
    for frame in frames[5:]:
        assert pipeline.prefetch(frame)
        after.append(pipeline.process(frame))
    assert "stereo process ended" in pipeline.stereo_process_error and pipeline._process is None
    assert after[0].reason.startswith("stereo: too little parallax")  # the new window starts empty
    assert isinstance(after[-1], FusedFrame)
    pipeline.close()


def test_monocular_replay_of_a_tiny_floor_sequence(tiny_floor, tmp_path):
    folder = write_tum(tiny_floor, tmp_path / "floor")
    (folder / "depth.txt").unlink()  # images and poses only: the stereo must make the depth
    shutil.rmtree(folder / "depth")
    result = replay(folder, depth="mvs", stereo=FLOOR_GROUND, progress=False)
    assert result.frames_used >= 16 and result.skipped[f"stereo: {NO_PARALLAX}"] >= 1
    assert "stereo" in result.ms_per_frame and np.isfinite(result.grid.heights).all()
    evaluation = result.evaluation
    # 24 tiny frames leave much of what the camera saw above the map's 5 mm "observed" bar; the
    # benchmark checks completeness on a full sequence.
    assert evaluation["completeness"] > 0.2
    assert evaluation["smooth_rmse"] < 1.5 * result.grid.cell_size
    # Stereo errors repeat across frames: fusion takes the stereo sigma floor (the benchmark measures
    # the calibration it gives on a full sequence).
    assert result.config.sigma_floor == STEREO_SIGMA_FLOOR

    out = tmp_path / "out"
    args = ["replay", str(folder), "--depth", "mvs", "--planes", "ground", "--sweep-range", "-0.05", "0.3",
            "--max-frames", "8", "--out", str(out), "--quiet"]
    assert cli_main(args) == 0
    assert (out / "metrics.json").is_file()
