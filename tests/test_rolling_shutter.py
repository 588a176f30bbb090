"""Rolling shutter in motion stereo (``StereoConfig.readout_s``): row poses, frame velocities, and depth of
images rendered row by row while the camera turns."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from heightfusion.camera import PinholeCamera
from heightfusion.depth import DepthEstimate, KeyframeConfig, MotionStereo, PlaneSweepStereo, StereoConfig
from heightfusion.rolling_shutter import global_shutter_depth, row_poses
from heightfusion.tracking import exp_se3

CAMERA = PinholeCamera(width=160, height=120, fx=150.0, fy=150.0, cx=79.5, cy=59.5)
WALL_DEPTH = 2.0  # metres: the textured plane z = WALL_DEPTH in the world, facing the cameras
READOUT_S = 0.03
# The two images turn in opposite directions (a camera swinging back), at 1.5 rad/s about the camera's y
# axis: a global shutter misplaces the top and bottom rows by +-3.4 px against each other, the baseline's
# parallax is 7.5 px.
REF_VELOCITY = np.array([0.0, 0.0, 0.0, 0.0, 1.5, 0.0])
SRC_VELOCITY = np.array([0.0, 0.0, 0.0, 0.0, -1.5, 0.0])
SRC_T_WC = exp_se3(np.array([0.1, 0.0, 0.0, 0.0, 0.0, 0.0]))


def test_row_poses_follow_the_exponential_map():
    rng = np.random.default_rng(3)
    T_wc, velocity = exp_se3(rng.normal(size=6)), rng.normal(size=6) * 3
    fractions = np.array([0.0, 0.25, 0.5, 1.0])
    expected = [T_wc @ exp_se3((f - 0.5) * READOUT_S * velocity) for f in fractions]
    np.testing.assert_allclose(row_poses(T_wc, velocity, fractions, READOUT_S), expected, atol=1e-12)
    still = row_poses(T_wc, None, fractions, READOUT_S)
    np.testing.assert_array_equal(still, np.broadcast_to(T_wc, (4, 4, 4)))


def _texture() -> np.ndarray:
    noise = np.random.default_rng(0).random((600, 600)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2.5)


def _render(T_wc: np.ndarray, velocity: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """Grey image of the textured wall, each row taken at its own pose (4 mm texels, centred on the axis)."""
    rows = (np.arange(CAMERA.height) + 0.5) / CAMERA.height
    poses = row_poses(T_wc, velocity, rows, READOUT_S)
    v, u = np.mgrid[0 : CAMERA.height, 0 : CAMERA.width].astype(np.float64)
    rays = np.stack([(u - CAMERA.cx) / CAMERA.fx, (v - CAMERA.cy) / CAMERA.fy, np.ones_like(u)], axis=-1)
    R, t = poses[:, None, :3, :3], poses[:, None, :3, 3]
    directions = (R @ rays[..., None])[..., 0]
    along = (WALL_DEPTH - t[..., 2]) / directions[..., 2]
    points = t + along[..., None] * directions
    texels = points[..., :2] / 0.004 + texture.shape[0] / 2
    texels = texels.astype(np.float32)
    grey = cv2.remap(texture, texels[..., 0], texels[..., 1], cv2.INTER_LINEAR)
    return (grey * 255).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def swinging_views():
    texture = _texture()
    return _render(np.eye(4), REF_VELOCITY, texture), _render(SRC_T_WC, SRC_VELOCITY, texture)


def _relative_errors(config: StereoConfig, views, velocities: bool) -> tuple[np.ndarray, float]:
    ref, src = views
    extra = {"ref_velocity": REF_VELOCITY, "src_velocities": [SRC_VELOCITY]} if velocities else {}
    estimate = PlaneSweepStereo(config).estimate(CAMERA, np.eye(4), ref, [src], [SRC_T_WC], **extra)
    depth = estimate.depth[estimate.valid]
    return np.abs(depth - WALL_DEPTH) / WALL_DEPTH, float(estimate.valid.mean())


def test_the_readout_model_recovers_depth_a_global_shutter_gets_wrong(swinging_views):
    config = StereoConfig(planes="fronto", min_depth=1.0, max_depth=6.0, num_hypotheses=48, readout_s=READOUT_S,
                          sweep_size=None)
    rolling, rolling_density = _relative_errors(config, swinging_views, velocities=True)
    global_shutter, _ = _relative_errors(replace(config, readout_s=0.0), swinging_views, True)
    assert rolling_density > 0.5
    assert np.median(rolling) < 0.02
    # The rows a global shutter misplaces most: the top and bottom quarters are off by up to 45 % of the parallax.
    assert np.median(global_shutter) > 3 * np.median(rolling)


def test_without_velocities_the_readout_changes_nothing(swinging_views):
    config = StereoConfig(planes="fronto", min_depth=1.0, max_depth=6.0, num_hypotheses=32, sweep_size=None)
    ref, src = swinging_views
    plain = PlaneSweepStereo(config).estimate(CAMERA, np.eye(4), ref, [src], [SRC_T_WC])
    unknown = PlaneSweepStereo(replace(config, readout_s=READOUT_S)).estimate(
        CAMERA, np.eye(4), ref, [src], [SRC_T_WC], ref_velocity=None, src_velocities=[None])
    np.testing.assert_array_equal(plain.valid, unknown.valid)
    np.testing.assert_array_equal(plain.depth, unknown.depth)


def test_velocities_are_checked(swinging_views):
    ref, src = swinging_views
    stereo = PlaneSweepStereo(StereoConfig(planes="fronto", min_depth=1.0, max_depth=6.0, readout_s=READOUT_S,
                                           sweep_size=None))
    with pytest.raises(ValueError, match="ref_velocity"):
        stereo.estimate(CAMERA, np.eye(4), ref, [src], [SRC_T_WC], ref_velocity=np.zeros(3))
    with pytest.raises(ValueError, match=r"src_velocities\[0\]"):
        stereo.estimate(CAMERA, np.eye(4), ref, [src], [SRC_T_WC], src_velocities=[np.full(6, np.nan)])
    with pytest.raises(ValueError, match="1 source images but 2 source velocities"):
        stereo.estimate(CAMERA, np.eye(4), ref, [src], [SRC_T_WC], src_velocities=[None, None])
    with pytest.raises(ValueError, match="readout_s"):
        StereoConfig(readout_s=-0.01)


def test_motion_stereo_gives_each_keyframe_its_velocity_from_the_frame_before():
    velocity = np.array([0.05, 0.0, 0.02, 0.3, -0.4, 0.1])
    stereo = StereoConfig(planes="fronto", min_depth=1.0, max_depth=6.0, readout_s=READOUT_S, sweep_size=None)
    motion = MotionStereo(stereo, KeyframeConfig(keyframe_parallax=1e-9))
    image = np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8)
    times = [0.0, 1 / 30, 2 / 30, 2 / 30 + 0.5]  # the last comes after a gap: its velocity is unknown
    for t in times:
        motion.push(CAMERA, exp_se3(t * velocity), image, timestamp=t)
    velocities = [k.velocity for k in motion.window.keyframes]
    assert velocities[0] is None
    np.testing.assert_allclose(velocities[1], velocity, atol=1e-9)
    np.testing.assert_allclose(velocities[2], velocity, atol=1e-9)
    assert velocities[3] is None
    motion.push(CAMERA, exp_se3(0.6 * velocity), image)  # no timestamp: unknown too
    assert motion.window.keyframes[-1].velocity is None


def _wall_depth(poses: np.ndarray) -> np.ndarray:
    """Depth of the wall at every pixel for rows at ``poses`` (H, 4, 4)."""
    v, u = np.mgrid[0 : CAMERA.height, 0 : CAMERA.width].astype(np.float64)
    rays = np.stack([(u - CAMERA.cx) / CAMERA.fx, (v - CAMERA.cy) / CAMERA.fy, np.ones_like(u)], axis=-1)
    directions = (poses[:, None, :3, :3] @ rays[..., None])[..., 0]
    return (WALL_DEPTH - poses[:, None, 2, 3]) / directions[..., 2]


def test_global_shutter_depth_is_the_middle_rows_view():
    T_wc = exp_se3(np.array([0.1, 0.0, 0.0, 0.3, 0.2, 0.0]))  # the wall seen at a slant
    velocity = np.array([0.2, 0.1, 0.0, 1.0, 2.0, 0.5])
    rows = (np.arange(CAMERA.height) + 0.5) / CAMERA.height
    rolling = _wall_depth(row_poses(T_wc, velocity, rows, READOUT_S)).astype(np.float32)
    at_once = _wall_depth(np.broadcast_to(T_wc, (CAMERA.height, 4, 4)))
    sigma = np.full_like(rolling, 0.01)
    depth, moved_sigma = global_shutter_depth(CAMERA, rolling, sigma, velocity, READOUT_S)
    known = np.isfinite(depth)
    assert np.abs(rolling - at_once).max() > 0.1  # what the readout changes
    assert known.mean() > 0.9  # only where the rows' points left the image
    assert np.abs(depth[known] - at_once[known]).max() < 0.006  # within the nearest pixel's step
    np.testing.assert_array_equal(np.isfinite(moved_sigma), known)
    rolling[:10] = np.nan  # unknown depth stays unknown
    depth, _ = global_shutter_depth(CAMERA, rolling, sigma, velocity, READOUT_S)
    assert np.isnan(depth[:5]).all()


def test_replay_takes_the_readout_in_milliseconds():
    import argparse

    from heightfusion.cli.options import add_stereo_arguments, stereo_config_from_args

    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", default="mvs")
    add_stereo_arguments(parser)
    assert stereo_config_from_args(parser.parse_args(["--readout-ms", "30"])).readout_s == pytest.approx(0.03)
    assert stereo_config_from_args(parser.parse_args([])).readout_s == 0.0
    with pytest.raises(ValueError, match="--readout-ms must be a non-negative number of milliseconds, got -5"):
        stereo_config_from_args(parser.parse_args(["--readout-ms", "-5"]))


def test_motion_stereo_hands_on_the_middle_rows_view():
    """MotionStereo gives the stereo each frame's velocity and moves its rolling-shutter depth to the middle row,
    and the sigmas (the matching's and the poses') with it."""
    velocity = np.array([3.0, 0.0, 0.0, 1.0, 2.0, 0.5])  # 0.1 m sideways a frame: parallax for a source
    start = exp_se3(np.array([0.1, 0.0, 0.0, 0.3, 0.2, 0.0]))
    rows = (np.arange(CAMERA.height) + 0.5) / CAMERA.height
    given = []

    def rolling_wall(camera, T_wc, image, src_images, src_T_wcs, ref_velocity=None, src_velocities=None,
                     src_pose_covariances=None):
        given.append(ref_velocity)
        depth = _wall_depth(row_poses(T_wc, ref_velocity, rows, READOUT_S)).astype(np.float32)
        assert all(c is not None and c[3, 3] > 0 for c in src_pose_covariances)  # the frames' pose covariance
        return DepthEstimate(depth, np.full_like(depth, 0.01), np.isfinite(depth), 0.1 * depth)

    motion = MotionStereo(StereoConfig(planes="fronto", min_depth=1.0, max_depth=6.0, readout_s=READOUT_S,
                                       sweep_size=None))
    motion.stereo.estimate = rolling_wall
    image = np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8)
    for k in range(3):
        T_wc = start @ exp_se3(k / 30 * velocity)
        result = motion.push(CAMERA, T_wc, image, timestamp=k / 30, pose_covariance=np.eye(6) * 1e-6)
    assert len(given) == 2 and given[0] is not None
    np.testing.assert_allclose(given[-1], velocity, atol=1e-9)
    at_once = _wall_depth(np.broadcast_to(T_wc, (CAMERA.height, 4, 4)))
    rolling = _wall_depth(row_poses(T_wc, velocity, rows, READOUT_S))
    known = result.estimate.valid
    assert known.mean() > 0.9
    moved = np.abs(result.estimate.depth[known] - at_once[known])
    assert np.median(moved) < 0.005 and moved.max() < 0.011  # within the nearest pixel's depth step
    assert np.median(np.abs(rolling[known] - at_once[known])) > 10 * np.median(moved)  # what the readout changes
    np.testing.assert_allclose(result.estimate.sigma[known], 0.01)
    assert np.median(np.abs(result.estimate.pose_sigma[known] - 0.1 * at_once[known])) < 0.001
