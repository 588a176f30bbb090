"""Monocular bootstrap: poses for the first frames of odometry on frames without poses, from a start pose."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_mjpg_video

import heightfusion as hf
from heightfusion.cli import main
from heightfusion.poses import pose_to_tum
from heightfusion.sizing import look_point
from heightfusion.tracking import exp_se3
from heightfusion.tracking.bootstrap import Bootstrapped, BootstrapConfig, MonocularBootstrap, ground_level

#: Frames 1 cm apart sideways, turning 0.3 deg a frame, looking down at the floor from 0.7 m.
STEPS = 16


def _poses() -> np.ndarray:
    start = hf.look_at((0.0, -0.6, 0.7), (0.0, 0.2, 0.0))
    return np.stack([start @ exp_se3([0.01 * i, 0.0, 0.002 * i, 0.0, 0.005 * i, 0.0]) for i in range(STEPS)])


@pytest.fixture(scope="module")
def floor():
    from heightfusion.synthetic.sequence import generate

    return list(generate("floor", poses=_poses()))


def _errors(T: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(position error mm, rotation error deg)."""
    cosine = (np.trace(T[:3, :3].T @ truth[:3, :3]) - 1) / 2
    return float(np.linalg.norm(T[:3, 3] - truth[:3, 3]) * 1e3), float(np.degrees(np.arccos(np.clip(cosine, -1, 1))))


def _run(frames, start_pose, config=None):
    boot = MonocularBootstrap(start_pose, config)
    out = []
    for frame in frames:
        out += boot.push(dataclasses.replace(frame, T_wc=None))
    return boot, out + boot.finish()


def test_bootstrap_poses_the_first_frames_at_the_scale_of_the_start_height(floor):
    boot, out = _run(floor, floor[0].T_wc)
    assert [f.index for f in out] == [f.index for f in floor]  # every frame handed on, in order
    assert boot.message.startswith("monocular bootstrap: posed from frame")
    posed = [(f, t) for f, t in zip(out, floor) if f.T_wc is not None]
    assert len(posed) >= 10
    for frame, truth in posed:
        mm, deg = _errors(frame.T_wc, truth.T_wc)
        # The scale comes from the start pose's height over the floor (its median is at z = 0): a wrong
        # scale would show as an error growing with the distance moved (up to 15 cm here).
        assert mm <= 8.0 and deg <= 0.6, (frame.index, mm, deg)


def test_the_two_view_polish_brings_a_pose_that_ransac_left_off_down_to_the_noise():
    """Independent check: points and poses made up here, projected exactly plus 0.2 px of noise. The polish
    fits the corners to the noise; it cannot pin the turn fully (two views at a 15 cm baseline trade it
    against the translation's direction: at 0.14 px the truth and 0.5 deg from it fit alike), but it halves it."""
    from heightfusion.tracking.bootstrap import _refine_two_view, _triangulate

    rng = np.random.default_rng(1)
    K = hf.PinholeCamera(320, 240, 256.0, 256.0, 159.5, 119.5).K
    X = np.c_[rng.uniform(-0.5, 0.5, (300, 2)), rng.uniform(0.8, 1.6, 300)]  # a box of points ahead
    R, t = exp_se3([0, 0, 0, 0.02, -0.05, 0.01])[:3, :3], np.array([0.15, 0.02, 0.01])

    def pixels(points):
        return points[:, :2] / points[:, 2:] * 256.0 + [159.5, 119.5] + rng.normal(0, 0.2, (len(points), 2))

    def reprojection_px(R_, t_, points):
        seen = points @ R_.T + t_
        return float(np.sqrt(np.mean(np.sum((seen[:, :2] / seen[:, 2:] * 256.0 + [159.5, 119.5] - now) ** 2, 1))))

    def turn_deg(A):
        return np.degrees(np.arccos(np.clip((np.trace(A.T @ R) - 1) / 2, -1, 1)))

    first, now = pixels(X), pixels(X @ R.T + t)
    off = exp_se3([0, 0, 0, 0.015, -0.01, 0.0])[:3, :3] @ R  # a degree off, as RANSAC leaves it
    t_off = t / np.linalg.norm(t) + [0.0, 0.05, -0.03]
    t_off /= np.linalg.norm(t_off)
    start, _ = _triangulate(K, off, t_off, first, now, 50.0)
    refined_R, refined_t, points = _refine_two_view(K, off, t_off, start, first, now, 1.0)
    assert reprojection_px(off, t_off, start) > 0.9 and reprojection_px(refined_R, refined_t, points) < 0.15
    assert turn_deg(refined_R) < 0.6 * turn_deg(off)


def test_the_ground_is_the_lowest_level_that_holds_enough_points():
    rng = np.random.default_rng(0)
    floor = -0.45 * (1 + 0.005 * rng.standard_normal(300))  # 0.45 m below, as triangulated
    boxes = -0.45 + rng.uniform(0.05, 0.6, 500)  # objects and walls above it (most of the points)
    strays = np.array([-0.9, -0.7])  # mistriangulated deep points: too few to be a level
    found = ground_level(np.r_[floor, boxes, strays])
    assert found == pytest.approx(-0.45, rel=0.01)  # the median of all lies 0.16 m higher
    hills = np.linspace(-2.5, -1.5, 400)  # no level holds 30 %: the median of all
    assert ground_level(hills) == pytest.approx(-2.0)
    assert ground_level(np.linspace(0.1, 1.0, 50)) is None  # nothing below the camera


def test_without_motion_it_gives_up_and_hands_every_frame_on(floor):
    still = [dataclasses.replace(floor[0], index=i, timestamp=i / 30) for i in range(6)]
    boot, out = _run(still, floor[0].T_wc, BootstrapConfig(max_held=3))
    assert [f.index for f in out] == list(range(6))
    assert out[0].T_wc is not None and all(f.T_wc is None for f in out[1:])
    assert boot.state == "done" and "3 frames after the first" in boot.message and "under 20 px" in boot.message


def test_a_camera_turning_in_place_is_told_to_move_sideways():
    """Turning gives flow but no depth (the real TUM fr1/rpy frames do this: rays meet at 2 deg)."""
    from heightfusion.synthetic.sequence import generate

    start = hf.look_at((0.0, -0.6, 0.7), (0.0, 0.2, 0.0))
    turning = list(generate("floor", poses=np.stack([start @ exp_se3([0, 0, 0, 0, 0.05 * i, 0]) for i in range(16)])))
    boot, out = _run(turning, start)
    assert len(out) == 16 and all(f.T_wc is None for f in out[1:])
    assert "turned more than it moved" in boot.message and "move it sideways" in boot.message


def test_the_sequence_ending_first_hands_the_held_frames_on(floor):
    boot, out = _run(floor[:2], floor[0].T_wc)
    assert len(out) == 2 and out[1].T_wc is None and "the sequence ended 1 frame after the first" in boot.message


def test_a_start_pose_at_or_below_the_ground_is_refused(floor):
    below = hf.look_at((0.0, 0.0, -0.5), (0.0, 1.0, -1.0))
    with pytest.raises(ValueError, match="start_pose must put the camera above the ground"):
        MonocularBootstrap(below)
    with pytest.raises(ValueError, match="start_pose must put the camera above the ground"):
        Bootstrapped(floor, below)  # before any frame is read


def test_a_sequence_with_poses_passes_through(floor):
    seq = Bootstrapped(floor, floor[0].T_wc)
    assert all(a is b for a, b in zip(seq, floor)) and seq.bootstrap is None


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory, floor):
    """The floor frames as a folder of images with intrinsics and no trajectory (a plain video's case)."""
    from heightfusion.synthetic.sequence import generate, write_tum

    folder = write_tum(generate("floor", poses=_poses()), tmp_path_factory.mktemp("plain") / "seq")
    (folder / "groundtruth.txt").rename(folder / "groundtruth_true.txt")  # the reference the run is scored on
    (folder / "gt_heightmap.npz").unlink()  # nothing gives the map's extent but the start view
    return folder


def test_replay_odometry_on_frames_without_poses_needs_a_start_pose(plain_folder, capsys):
    grid = ["--origin", "-1.0", "-1.0", "--shape", "101", "101"]
    assert main(["replay", str(plain_folder), "--depth", "mvs", "--track", "odometry", *grid,
                 "--out", str(plain_folder.parent / "no_start"), "--quiet"]) == 2
    assert "--start-pose" in capsys.readouterr().err


def test_replay_odometry_on_frames_without_poses_maps_from_the_bootstrap(plain_folder):
    out = plain_folder.parent / "out"
    tx, ty, tz, qx, qy, qz, qw = (f"{v:.9f}" for v in pose_to_tum(_poses()[0]))
    assert main(["replay", str(plain_folder), "--depth", "mvs", "--track", "odometry", "--start-pose",
                 tx, ty, tz, qx, qy, qz, qw, "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    grid = hf.load_heightmap(out / "heightmap.npz")  # without --origin and --shape: 4 m around the first view
    assert grid.shape == (201, 201) and np.allclose(grid.origin + 2.0, look_point(_poses()[0]))
    assert any(m.startswith("monocular bootstrap: posed from frame") for m in metrics["messages"])
    assert metrics["frames"]["used"] >= 10  # all but the first two, whose keyframes have too little parallax
    assert metrics["trajectory"]["ate_unaligned_m"]["rmse"] <= 0.02  # measured 9.4 mm over 15 cm of travel
    assert grid.observed.sum() > 100


needs_display = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="window tests need X: run under xvfb-run -a")


@pytest.fixture(scope="module")
def plain_video(plain_folder, tmp_path_factory):
    """The floor frames as an MJPG video beside their camera.yaml: no trajectory, no board in view."""
    folder = tmp_path_factory.mktemp("video")
    (folder / "camera.yaml").write_text((plain_folder / "camera.yaml").read_text())
    return write_mjpg_video(sorted((plain_folder / "rgb").iterdir()), folder / "floor.avi")


def _live(video, out, *options):
    # Window tests run in a subprocess: this process may hold a headless EGL context (other GL tests).
    return subprocess.run([sys.executable, "-m", "heightfusion", "live", str(video), "--calibration",
                           str(video.parent / "camera.yaml"), "--depth", "mvs", *options, "--every-frame",
                           "--max-frames", "16", "--hidden", "--out", str(out)],
                          check=False, capture_output=True, text=True, timeout=240)


@needs_display
def test_live_on_a_plain_video_without_a_start_pose_says_how_to_map_it(plain_video, tmp_path):
    done = _live(plain_video, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "no frame had a pose" in done.stdout and "--track odometry --start-pose" in done.stdout


@needs_display
def test_live_odometry_on_a_plain_video_maps_from_the_bootstrap(plain_video, tmp_path):
    """A video with intrinsics and nothing else (no trajectory, no board in view), as a webcam gives."""
    out = tmp_path / "out"
    start = [f"{v:.9f}" for v in pose_to_tum(_poses()[0])]
    done = _live(plain_video, out, "--track", "odometry", "--start-pose", *start)
    assert done.returncode == 0, done.stderr
    assert "monocular bootstrap: posed from frame" in done.stdout, done.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"]["used"] >= 10
    assert hf.load_heightmap(out / "heightmap.npz").observed.sum() > 100
