"""Marker-board poses and calibration: synthetic views of the board on the floor with known poses."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import heightfusion as hf
from heightfusion.cli.options import (
    add_board_arguments,
    board_arguments,
    board_spec_from_args,
)
from heightfusion.cli import main
from heightfusion.datasets.camera_yaml import load_camera_yaml
from heightfusion.markers import (
    INCH,
    BoardDetection,
    BoardDetector,
    BoardSpec,
    MarkerPoseEstimator,
    calibrate,
    render_board_view,
)

SPEC = BoardSpec()  # 7 x 5 squares of 35 mm: 245 x 175 mm
CENTRE = np.array([SPEC.size[0] / 2, SPEC.size[1] / 2, 0.0])
# A webcam-like lens with barrel distortion, as calibrate would report it.
CAMERA = hf.PinholeCamera(640, 480, 520.0, 515.0, 322.0, 236.0, distortion=(-0.12, 0.05, 0.001, -0.0005, 0.0))
MAX_POSITION_ERROR = 0.01  # metres
MAX_ROTATION_ERROR = 1.0  # degrees


def rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    return T


def robot_poses(n: int = 16) -> list[np.ndarray]:
    """A robot camera 0.25-0.4 m above the floor circling the board, looking down-forward at it, slight roll."""
    poses = []
    for k in range(n):
        s = k / (n - 1)
        bearing = math.radians(-70 + 140 * s)  # direction from the board to the camera, from -Y
        distance = 0.42 + 0.08 * math.sin(3 * s)
        eye = CENTRE + [distance * math.sin(bearing), -distance * math.cos(bearing), 0.25 + 0.15 * s]
        target = CENTRE + [0.04 * math.cos(5 * s), 0.03 * math.sin(4 * s), 0.0]
        poses.append(hf.look_at(eye, target) @ rot_z(math.radians(6 * math.sin(7 * s))))
    return poses


def calibration_poses() -> list[np.ndarray]:
    """Eight views from different sides, tilted 25-45 degrees from the board's normal, board off centre."""
    poses = []
    for k in range(8):
        azimuth = 2 * math.pi * k / 8
        tilt = math.radians(25 + 20 * (k % 2))
        distance = 0.36 + 0.04 * (k % 3)
        eye = CENTRE + distance * np.array(
            [math.sin(tilt) * math.cos(azimuth), math.sin(tilt) * math.sin(azimuth), math.cos(tilt)]
        )
        target = CENTRE + [0.05 * math.cos(3 * azimuth), 0.04 * math.sin(2 * azimuth), 0.0]
        poses.append(hf.look_at(eye, target, up=(0.0, 1.0, 0.0)) @ rot_z(azimuth))
    return poses


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild defocus blur and sensor noise."""
    blurred = cv2.GaussianBlur(image, (0, 0), 0.8).astype(np.float32)
    return np.clip(blurred + rng.normal(0, 3.0, image.shape), 0, 255).astype(np.uint8)


def pose_errors(T_true: np.ndarray, T_est: np.ndarray) -> tuple[float, float]:
    """(position error in metres, rotation error in degrees)."""
    position = float(np.linalg.norm(T_est[:3, 3] - T_true[:3, 3]))
    cos = (np.trace(T_true[:3, :3].T @ T_est[:3, :3]) - 1) / 2
    return position, math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    size = (frames[0].shape[1], frames[0].shape[0])
    for fourcc, suffix in (("mp4v", ".mp4"), ("MJPG", ".avi")):
        out = path.with_suffix(suffix)
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if writer.isOpened():
            for frame in frames:
                writer.write(np.ascontiguousarray(frame[..., ::-1]))
            writer.release()
            return out
    pytest.skip("OpenCV can write neither mp4v nor MJPG video here")


def read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def write_images(folder: Path, images: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        assert cv2.imwrite(str(folder / f"view{i}.png"), np.ascontiguousarray(image[..., ::-1]))
    return folder


@pytest.fixture(scope="module")
def calibration_views() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [degrade(render_board_view(SPEC, CAMERA, T), rng) for T in calibration_poses()]


# ----------------------------------------------------------------------------- board and world frame


def test_corner_world_points_are_opencv_board_points_turned_face_up():
    opencv = SPEC.make_board().getChessboardCorners().astype(np.float64)
    world = SPEC.corner_world_points()
    np.testing.assert_allclose(world[:, 0], opencv[:, 0], atol=1e-7)
    np.testing.assert_allclose(world[:, 1], SPEC.size[1] - opencv[:, 1], atol=1e-7)
    assert (world[:, 2] == 0).all()
    assert world[0].tolist() == pytest.approx([0.035, 0.14, 0.0])  # corner 0: top-left as printed


def test_printed_board_is_true_to_scale_with_origin_at_its_bottom_left_corner():
    dpi, margin = 150.0, 0.01
    image = SPEC.image(dpi=dpi, margin=margin)
    ppm = dpi / INCH
    m = round(margin * ppm)
    board_w, board_h = (round(s * ppm) for s in SPEC.size)
    assert image.dtype == np.uint8 and image.shape == (board_h + 2 * m, board_w + 2 * m, 3)
    detection = BoardDetector(SPEC).detect(image)
    assert detection.corners == SPEC.corner_count
    # Pixel of a world point: X to the right from the board's left edge, Y up from its bottom edge.
    expected = np.column_stack([
        m + detection.world_points[:, 0] * ppm - 0.5,
        m + board_h - detection.world_points[:, 1] * ppm - 0.5,
    ])
    np.testing.assert_allclose(detection.image_points, expected, atol=1.0)  # OpenCV draws squares on whole dots
    assert (image[m + board_h + 2 :, m : m + board_w] < 128).any()  # the caption in the bottom margin


def test_board_spec_validation():
    assert BoardSpec(dictionary="5x5_250").dictionary == "DICT_5X5_250"
    assert SPEC.marker_count == 17 and SPEC.corner_count == 24
    with pytest.raises(ValueError, match="squares_x must be an integer >= 3"):
        BoardSpec(squares_x=2)
    with pytest.raises(ValueError, match="square_length must be a positive length"):
        BoardSpec(square_length=-0.03)
    with pytest.raises(ValueError, match="must be less than square_length"):
        BoardSpec(square_length=0.03, marker_length=0.03)
    with pytest.raises(ValueError, match="unknown ArUco dictionary 'DICT_9X9'"):
        BoardSpec(dictionary="DICT_9X9")
    with pytest.raises(ValueError, match="needs 60 markers but DICT_4X4_50 has only 50"):
        BoardSpec(12, 10, dictionary="DICT_4X4_50")
    with pytest.raises(ValueError, match="too coarse"):
        SPEC.image(dpi=10)


# ----------------------------------------------------------------------------- poses


def test_poses_from_a_video_of_the_board_on_the_floor(tmp_path):
    poses = robot_poses()
    rng = np.random.default_rng(0)
    video = write_video(tmp_path / "board", [degrade(render_board_view(SPEC, CAMERA, T), rng) for T in poses])
    frames = read_video(video)
    assert len(frames) == len(poses)
    estimator = MarkerPoseEstimator(SPEC, CAMERA)
    errors = []
    for T_true, frame in zip(poses, frames):
        pose = estimator.estimate(frame)
        if pose is None:
            continue
        assert pose.T_wc.dtype == np.float64 and pose.T_wc.shape == (4, 4)
        assert pose.corners >= 6 and pose.rms_px < 1.0 and estimator.reason is None
        errors.append(pose_errors(T_true, pose.T_wc))
    worst_position, worst_rotation = np.max(errors, axis=0)
    print(f"\n{len(errors)}/{len(poses)} poses; worst error {100 * worst_position:.2f} cm, {worst_rotation:.3f} deg")
    assert len(errors) >= 0.9 * len(poses)
    assert worst_position < MAX_POSITION_ERROR and worst_rotation < MAX_ROTATION_ERROR


def test_pose_axes_world_z_up():
    """A camera 0.5 m straight above the board's centre, image right along world X."""
    T_true = hf.look_at(CENTRE + [0.0, 0.0, 0.5], CENTRE, up=(0.0, 1.0, 0.0))
    pose = MarkerPoseEstimator(SPEC, CAMERA).estimate(render_board_view(SPEC, CAMERA, T_true))
    assert pose is not None and pose.corners == SPEC.corner_count
    np.testing.assert_allclose(pose.T_wc[:3, 3], CENTRE + [0.0, 0.0, 0.5], atol=2e-3)
    np.testing.assert_allclose(pose.T_wc[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=0.01)  # looks down -Z


def test_distortion_is_used():
    T = calibration_poses()[1]  # the board fills the image: the lens bends its corners by pixels
    image = render_board_view(SPEC, CAMERA, T)
    with_lens = MarkerPoseEstimator(SPEC, CAMERA).estimate(image)
    ideal = hf.PinholeCamera(640, 480, CAMERA.fx, CAMERA.fy, CAMERA.cx, CAMERA.cy)
    without = MarkerPoseEstimator(SPEC, ideal).estimate(image)
    assert with_lens.rms_px < 0.15 and without.rms_px > 3 * with_lens.rms_px
    assert pose_errors(T, with_lens.T_wc)[0] < 0.001
    assert pose_errors(T, without.T_wc)[0] > 0.003


def test_no_pose_without_the_board():
    estimator = MarkerPoseEstimator(SPEC, CAMERA)
    assert estimator.estimate(np.full((480, 640, 3), 120, np.uint8)) is None
    assert estimator.reason == "no board markers seen"
    # Looking past the board's corner: a marker or two at the image edge, too few corners.
    corner = hf.look_at([-0.25, -0.25, 0.3], [-0.12, -0.12, 0.0])
    assert estimator.estimate(render_board_view(SPEC, CAMERA, corner)) is None
    assert re.fullmatch(r"[1-5] ChArUco corners seen, need >= 6", estimator.reason)
    # Corners on one line give no pose; a wrong fit is rejected by its reprojection error.
    line = BoardDetection(np.arange(6), np.zeros((6, 2)), np.zeros((6, 3)), 3, True, (640, 480))
    assert line.problem() == "the 6 ChArUco corners seen lie on one line"
    strict = MarkerPoseEstimator(SPEC, CAMERA, max_rms_px=1e-6)
    assert strict.estimate(render_board_view(SPEC, CAMERA, robot_poses()[0])) is None
    assert strict.reason.startswith("reprojection error")
    with pytest.raises(ValueError, match="does not match camera shape"):
        estimator.estimate(np.zeros((240, 320, 3), np.uint8))


# ----------------------------------------------------------------------------- calibration


def test_calibrate_recovers_the_intrinsics(calibration_views):
    camera, rms, used = calibrate(calibration_views, SPEC)
    print(
        f"\ncalibration from {len(used)} views, RMS {rms:.3f} px: fx {camera.fx:.1f} ({CAMERA.fx}) "
        f"fy {camera.fy:.1f} ({CAMERA.fy}) cx {camera.cx:.1f} ({CAMERA.cx}) cy {camera.cy:.1f} ({CAMERA.cy}) "
        f"k1 {camera.distortion[0]:.3f} ({CAMERA.distortion[0]})"
    )
    assert used == list(range(8)) and rms < 0.5
    assert (camera.width, camera.height) == (CAMERA.width, CAMERA.height)
    for name in ("fx", "fy"):
        assert getattr(camera, name) == pytest.approx(getattr(CAMERA, name), rel=0.02)
    assert camera.cx == pytest.approx(CAMERA.cx, abs=0.02 * CAMERA.width)
    assert camera.cy == pytest.approx(CAMERA.cy, abs=0.02 * CAMERA.height)
    assert camera.distortion[0] == pytest.approx(CAMERA.distortion[0], abs=0.03)


def test_calibrate_needs_enough_views(calibration_views):
    with pytest.raises(ValueError, match="3 of 5 views show the board.*at least 4"):
        calibrate([*calibration_views[:3], *[np.zeros((480, 640, 3), np.uint8)] * 2], SPEC)
    with pytest.raises(ValueError, match="not seen in any of the 2 views"):
        calibrate([np.zeros((480, 640, 3), np.uint8)] * 2, SPEC)
    with pytest.raises(ValueError, match="differ in size"):
        calibrate([*calibration_views[:4], np.zeros((240, 320, 3), np.uint8)], SPEC)


# ----------------------------------------------------------------------------- commands


def test_board_command(tmp_path, capsys):
    out = tmp_path / "board.png"
    assert main(["board", "--out", str(out), "--dpi", "100", "--squares", "6", "4", "--square-length", "0.04"]) == 0
    printed = capsys.readouterr().out
    spec = BoardSpec(6, 4, 0.04, 0.03)
    assert board_arguments(spec) in printed and "board 240.0 x 160.0 mm" in printed
    image = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    detection = BoardDetector(spec).detect(image)
    assert detection.corners == spec.corner_count
    row = detection.image_points[detection.ids < 5]  # the first row of corners: 4 squares apart end to end
    assert np.linalg.norm(row[-1] - row[0]) == pytest.approx(4 * 0.04 * 100 / INCH, abs=1.0)  # true scale at 100 dpi
    # The printed options give the same board back.
    parser = argparse.ArgumentParser()
    add_board_arguments(parser)
    assert board_spec_from_args(parser.parse_args(board_arguments(spec).split())) == spec
    assert board_spec_from_args(parser.parse_args([])) == BoardSpec()

    assert main(["board", "--out", str(tmp_path / "x.png"), "--marker-length", "0.05"]) == 2
    assert "must be less than square_length" in capsys.readouterr().err
    assert main(["board", "--out", str(tmp_path / "x.png"), "--dpi", "0"]) == 2
    assert "--dpi must be positive" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_calibrate_command_from_folder_and_video(tmp_path, calibration_views, capsys):
    folder = write_images(tmp_path / "views", calibration_views)
    out = tmp_path / "camera.yaml"
    assert main(["calibrate", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "8 of 8 frames" in printed and "from 8 views" in printed and "view0.png" in printed
    camera, _ = load_camera_yaml(out)
    assert camera.fx == pytest.approx(CAMERA.fx, rel=0.02) and camera.distortion is not None

    video = write_video(tmp_path / "views", calibration_views)
    out = tmp_path / "camera_video.yaml"
    assert main(["calibrate", str(video), "--out", str(out), "--max-views", "6"]) == 0
    assert "from 6 views" in capsys.readouterr().out
    assert load_camera_yaml(out)[0].fy == pytest.approx(CAMERA.fy, rel=0.03)


def test_calibrate_command_errors(tmp_path, calibration_views, capsys):
    out = tmp_path / "camera.yaml"

    def error(*argv: str) -> str:
        assert main(["calibrate", *argv, "--out", str(out)]) == 2
        return capsys.readouterr().err

    few = write_images(tmp_path / "few", calibration_views[:3])
    assert "calibration needs at least 4" in error(str(few))
    blank = write_images(tmp_path / "blank", [np.full((480, 640, 3), 200, np.uint8)] * 4)
    assert "board was not seen in any of the 4 views" in error(str(blank))
    assert "not seen" in error(str(few), "--dictionary", "DICT_6X6_50")
    assert "no such file or folder" in error(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("hello")
    assert "not a folder of images or a video file" in error(str(tmp_path / "notes.txt"))
    assert "no .png/.jpg images" in error(str(tmp_path))
    assert "give either SOURCE" in error()
    assert "give either SOURCE" in error(str(few), "--camera", "0")
    assert "--max-views must be at least 4" in error(str(few), "--max-views", "2")
    assert "squares_y must be an integer >= 3" in error(str(few), "--squares", "7", "2")
    assert "camera 99: OpenCV could not open it" in error("--camera", "99")
    assert not out.exists()
