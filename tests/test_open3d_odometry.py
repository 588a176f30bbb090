"""The tracking peer: Open3D's RGB-D odometry over real frames (skipped without Open3D)."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.baselines import BaselineUnavailable
from heightfusion.baselines.open3d_odometry import NO_DEPTH, NOT_TRACKED, Open3DOdometryConfig, open3d_rgbd_odometry
from heightfusion.trajectory_eval import trajectory_errors

SAMPLE = "tests/data/tum_fr1_rpy_sample"


@pytest.fixture(scope="module")
def real():
    pytest.importorskip("open3d")
    sequence = hf.datasets.open(SAMPLE, undistort=True, max_frames=4)
    return list(sequence), sequence.reference_trajectory()


@pytest.mark.parametrize("constant_velocity", [False, True])
def test_tracks_real_frames_from_the_first_pose(real, constant_velocity):
    frames, reference = real
    run = open3d_rgbd_odometry(frames, config=Open3DOdometryConfig(constant_velocity=constant_velocity))
    assert run.tracked == run.attempted == 3 and not run.skipped and run.ms_per_frame > 0
    np.testing.assert_array_equal(run.poses[0][1], frames[0].T_wc)
    errors = trajectory_errors(run.poses, reference)
    # About 6 degrees of hand-held rotation between these frames; Open3D follows it to a fraction of one.
    assert errors["rpe_rotation_deg"]["max"] < 1.0 and errors["ate_unaligned_m"]["max"] < 0.03


def test_skips_frames_without_depth_or_alignment(real):
    frames, _ = real
    start = np.eye(4)
    blank = dataclasses.replace(frames[1], depth=np.full_like(frames[1].depth, np.nan))
    corner = frames[1].depth.copy()
    corner[20:] = np.nan  # Open3D "succeeds" on this, with a handful of correspondences
    flipped = dataclasses.replace(frames[3], image=frames[3].image[::-1].copy(), depth=frames[3].depth[::-1].copy())
    run = open3d_rgbd_odometry([dataclasses.replace(frames[0], depth=None), frames[0], blank,
                                dataclasses.replace(frames[1], depth=corner), flipped, frames[1]], start)
    assert run.skipped == {NO_DEPTH: 2, NOT_TRACKED: 2} and run.attempted == 3 and run.tracked == 1
    np.testing.assert_array_equal(run.poses[0][1], start)
    with pytest.raises(ValueError, match="frame 0 .* has no pose; pass start_pose"):
        open3d_rgbd_odometry([dataclasses.replace(frames[0], T_wc=None)])


def test_bad_config_and_missing_open3d(monkeypatch):
    with pytest.raises(ValueError, match="depth_max"):
        Open3DOdometryConfig(depth_min=3.0, depth_max=2.0)
    with pytest.raises(ValueError, match="min_overlap"):
        Open3DOdometryConfig(min_overlap=-0.1)
    with pytest.raises(ValueError, match="iterations"):
        Open3DOdometryConfig(iterations=())
    monkeypatch.setitem(sys.modules, "open3d", None)  # makes `import open3d` raise ImportError
    with pytest.raises(BaselineUnavailable, match="pip install"):
        open3d_rgbd_odometry([])
