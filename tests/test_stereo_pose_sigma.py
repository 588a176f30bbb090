"""Motion stereo's sigma with uncertain poses: the depth error a pose error causes (against the error the
stereo makes when a source's pose is off by that much), and its way from the given poses' sigma through
:class:`heightfusion.pipeline.FramePipeline`, ``replay`` and the command line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.cli import main as cli_main
from heightfusion.camera_offset import CameraOffset
from heightfusion.depth import PlaneSweepStereo, StereoConfig
from heightfusion.fusion import HeightMapFuser
from heightfusion.pipeline import FramePipeline, FusedFrame, given_pose_covariance
from heightfusion.synthetic import generate, write_tum
from heightfusion.tracking.se3 import exp_se3, log_se3

FRONTO = StereoConfig(planes="fronto", min_depth=1.0, max_depth=8.0)


@pytest.fixture(scope="module")
def terrain_pair():
    """A 160x120 view of the terrain from 2 m up and one 20 cm to its side."""
    poses = np.stack([hf.look_at([0.0, y, 2.0], [1.2, y + 0.3, 0.0]) for y in (0.0, 0.2)])
    return generate("terrain", poses=poses, width=160, height=120)


def _estimate(seq, src_T_wc=None, covariance=None):
    ref, src = seq.frames
    return PlaneSweepStereo(FRONTO).estimate(
        ref.camera, ref.T_wc, ref.image, [src.image], [src.T_wc if src_T_wc is None else src_T_wc],
        src_pose_covariances=None if covariance is None else [covariance])


@pytest.mark.parametrize("twist", [
    (0, 0, 0, 0, math.radians(0.5), 0),  # yaw: the matches move along the (near horizontal) epipolar lines
    (0, 0, 0, math.radians(0.5), 0, 0),  # pitch: across them, which slanted texture turns into depth
    (0, 0, 0, math.radians(0.3), math.radians(0.3), math.radians(0.3)),
    (0.01, 0, 0, 0, 0, 0),
], ids=["yaw", "pitch", "every-axis", "translation"])
def test_pose_sigma_is_the_depth_error_a_wrong_source_pose_causes(terrain_pair, twist):
    """The source's pose off by a twist xi (T_cw <- exp(xi) T_cw): the inverse depths the stereo then finds differ
    from those at the true pose by what the pose sigma of the rank-one covariance xi xi^T says."""
    twist = np.array(twist, dtype=np.float64)
    src = terrain_pair.frames[1]
    wrong = np.linalg.inv(exp_se3(twist) @ np.linalg.inv(src.T_wc))
    right, off = _estimate(terrain_pair), _estimate(terrain_pair, src_T_wc=wrong)
    with_pose = _estimate(terrain_pair, covariance=np.outer(twist, twist))
    both = right.valid & off.valid
    assert both.mean() > 0.5
    depth = right.depth[both]
    predicted = with_pose.pose_sigma[both] / depth**2
    moved = np.abs(1 / off.depth[both] - 1 / depth)
    assert np.median(moved) > 2 * np.median(right.sigma[both] / depth**2)  # the pose error moved them, not noise
    ratio = np.median(moved) / np.median(predicted)
    assert 0.8 < ratio < 1.25, ratio


def test_pose_sigma_leaves_depth_sigma_and_validity_alone(terrain_pair):
    plain = _estimate(terrain_pair)
    assert plain.pose_sigma is None and plain.total_sigma() is plain.sigma
    uncertain = _estimate(terrain_pair, covariance=given_pose_covariance(0.002, 0.3))
    for name in ("valid", "depth", "sigma"):
        np.testing.assert_array_equal(getattr(uncertain, name), getattr(plain, name))
    assert np.array_equal(np.isfinite(uncertain.pose_sigma), plain.valid)
    assert np.median(uncertain.pose_sigma[plain.valid] / plain.sigma[plain.valid]) > 3
    np.testing.assert_allclose(uncertain.total_sigma(), np.hypot(plain.sigma, uncertain.pose_sigma))
    exact = _estimate(terrain_pair, covariance=np.zeros((6, 6)))
    assert not exact.pose_sigma[plain.valid].any()


def test_bad_pose_covariances_are_refused(terrain_pair):
    ref, src = terrain_pair.frames
    stereo = PlaneSweepStereo(FRONTO)
    for covariances, match in [([np.eye(5)], r"src_pose_covariances\[0\].*6x6"),
                               ([np.full((6, 6), np.nan)], r"src_pose_covariances\[0\]"),
                               ([np.triu(np.ones((6, 6)))], "symmetric"),
                               ([None, None], "1 source images but 2 source pose covariances")]:
        with pytest.raises(ValueError, match=match):
            stereo.estimate(ref.camera, ref.T_wc, ref.image, [src.image], [src.T_wc], src_pose_covariances=covariances)
    with pytest.raises(ValueError, match="pose_covariance must be a finite symmetric 6x6"):
        hf.MotionStereo(FRONTO).push(ref.camera, ref.T_wc, ref.image, pose_covariance=np.eye(3))


def test_given_pose_covariance():
    covariance = given_pose_covariance(0.003, 0.5)
    np.testing.assert_allclose(np.diag(covariance), [0.003**2] * 3 + [math.radians(0.5) ** 2] * 3)
    for bad in [(-0.001, 0.5), (0.003, math.nan), (True, 0.5)]:
        with pytest.raises(ValueError, match="pose_sigma's"):
            given_pose_covariance(*bad)


def test_camera_offset_pose_sigma_recovers_the_error_of_each_pose():
    """Poses each off by independent errors of 2 mm / 0.3 deg per axis: the RMS disagreement of pairs' relative
    motions, as camera-offset measures it, gives those back."""
    rng = np.random.default_rng(0)
    poses = [hf.look_at((0.1 * k, -1.0, 1.2), (0.0, 0.2, 0.0)) for k in range(400)]
    sigma = np.array([0.002] * 3 + [math.radians(0.3)] * 3)
    given = [np.linalg.inv(exp_se3(rng.normal(size=6) * sigma) @ np.linalg.inv(T)) for T in poses]
    twists = np.stack([log_se3(np.linalg.inv(np.linalg.inv(given[k]) @ given[k + 1])
                               @ np.linalg.inv(poses[k]) @ poses[k + 1]) for k in range(0, 398, 2)])
    rms = (1000 * np.sqrt(np.mean(np.sum(twists[:, :3] ** 2, axis=1))),
           math.degrees(np.sqrt(np.mean(np.sum(twists[:, 3:] ** 2, axis=1)))))
    offset = CameraOffset(np.eye(4), len(twists), rms, rms, (0.0, 0.0), np.zeros(3))
    metres, degrees = offset.pose_sigma
    assert metres == pytest.approx(0.002, rel=0.12) and degrees == pytest.approx(0.3, rel=0.12)


@pytest.fixture(scope="module")
def small_floor():
    """16 frames of a robot's loop over the floor at 96x72."""
    return generate("floor", poses=hf.synthetic.robot_loop(64)[:16], width=96, height=72)


def _fused(seq, pose_sigma):
    grid = hf.HeightMap((-1.5, -1.5), 0.05, (61, 61))
    pipeline = FramePipeline(HeightMapFuser(grid, hf.make_renderer("raymarch")), "mvs",
                             StereoConfig(planes="ground", min_height=-0.05, max_height=0.3), pose_sigma=pose_sigma)
    results = [pipeline.process(frame) for frame in seq.frames]
    return grid, [r for r in results if isinstance(r, FusedFrame)]


def test_pipeline_takes_the_given_poses_sigma_into_stereo_and_the_map(small_floor):
    exact_grid, exact = _fused(small_floor, None)
    zero_grid, zero = _fused(small_floor, (0.0, 0.0))
    grid, uncertain = _fused(small_floor, (0.002, 0.3))
    assert len(exact) == len(zero) == len(uncertain) >= 8
    # Zero sigma is exact poses: the same depth, sigma and map.
    for a, b in zip(exact, zero):
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_allclose(a.sigma, b.sigma, rtol=1e-6)
        assert a.pose_sigma is None and not np.nan_to_num(b.pose_sigma).any()
    np.testing.assert_allclose(zero_grid.heights, exact_grid.heights, atol=1e-6)
    assert not zero_grid.systematic_sigma.any()
    # Uncertain poses: the same depths, a pose sigma beside the matching's, and a map that says it is less sure.
    for a, b in zip(exact, uncertain):
        np.testing.assert_array_equal(a.depth, b.depth)
        assert np.array_equal(np.isfinite(b.pose_sigma), np.isfinite(a.depth))
    ratios = np.concatenate([(b.pose_sigma / b.sigma)[np.isfinite(b.sigma)] for b in uncertain])
    assert np.median(ratios) > 2
    seen = exact_grid.observed & grid.observed
    assert seen.sum() > 0.8 * exact_grid.observed.sum()  # the weights are the matching's: about as much observed
    assert np.median(grid.sigma[seen]) > 3 * np.median(exact_grid.sigma[seen])
    assert not exact_grid.systematic_sigma.any()


def test_replay_and_cli_take_pose_sigma(tmp_path, capsys):
    seq = generate("floor", poses=hf.synthetic.robot_loop(64)[:6], width=64, height=48)
    path = write_tum(seq, tmp_path / "seq")
    result = hf.replay(path, progress=False, pose_sigma=(0.002, 0.25))
    assert result.metrics()["pose_sigma"] == {"m": 0.002, "deg": 0.25}
    assert "pose_sigma" not in hf.replay(path, progress=False).metrics()
    for bad, match in [((0.002,), r"\(metres, degrees\)"), ((-1.0, 0.2), "pose_sigma's metres")]:
        with pytest.raises(ValueError, match=match):
            hf.replay(path, progress=False, pose_sigma=bad)
    out = tmp_path / "out"
    assert cli_main(["replay", str(path), "--out", str(out), "--quiet", "--pose-sigma", "2", "0.25"]) == 0
    assert json.loads((out / "metrics.json").read_text())["pose_sigma"] == {"m": 0.002, "deg": 0.25}
    assert cli_main(["replay", str(path), "--out", str(tmp_path / "bad"), "--quiet", "--pose-sigma", "-2", "0.25"]) == 2
    assert "--pose-sigma takes two numbers >= 0" in capsys.readouterr().err


class _StubTracker:
    """Gives every frame its own pose, as tracked with ``covariance`` (None: used as given)."""

    def __init__(self, covariance):
        self.covariance = covariance

    def track(self, frame, grid):
        from heightfusion.tracking import TrackingResult

        return TrackingResult(frame.T_wc, tracked=self.covariance is not None, covariance=self.covariance)

    def accept(self, frame, T_wc, grid):
        pass


def test_tracked_frames_give_stereo_no_pose_covariance(small_floor):
    """A tracked pose's covariance is with respect to the map, which the keyframes were tracked against too: stereo
    takes no pose sigma from it (fusion still does); frames a tracker leaves as given take the given poses' sigma."""
    for covariance, pose_sigma, expected in [(np.eye(6) * 1e-6, (0.002, 0.3), False), (None, (0.002, 0.3), True)]:
        grid = hf.HeightMap((-1.5, -1.5), 0.05, (61, 61))
        pipeline = FramePipeline(HeightMapFuser(grid, hf.make_renderer("raymarch")), "mvs",
                                 StereoConfig(planes="ground", min_height=-0.05, max_height=0.3),
                                 tracker=_StubTracker(covariance), pose_sigma=pose_sigma)
        fused = [r for r in map(pipeline.process, small_floor.frames[:8]) if isinstance(r, FusedFrame)]
        assert len(fused) >= 4 and all((r.pose_sigma is not None) == expected for r in fused)
        assert grid.systematic_sigma.any()


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_prefetched_stereo_gets_the_given_poses_sigma(small_floor, process):
    """Stereo run ahead (on a worker thread or in the stereo process) gives the pose sigma that stereo in turn gives."""
    def pose_sigmas(ahead: bool) -> list:
        grid = hf.HeightMap((-1.5, -1.5), 0.05, (61, 61))
        pipeline = FramePipeline(HeightMapFuser(grid, hf.make_renderer("raymarch")), "mvs",
                                 StereoConfig(planes="ground", min_height=-0.05, max_height=0.3),
                                 stereo_process=process, pose_sigma=(0.002, 0.3))
        frames = small_floor.frames[:6]
        if ahead:
            assert all(pipeline.prefetch(frame) for frame in frames)
        results = [pipeline.process(frame) for frame in frames]
        pipeline.close()
        return [r.pose_sigma for r in results if isinstance(r, FusedFrame)]

    prefetched, in_turn = pose_sigmas(True), pose_sigmas(False)
    assert len(prefetched) == len(in_turn) >= 3
    for a, b in zip(prefetched, in_turn):
        assert a is not None and np.array_equal(a, b, equal_nan=True)
