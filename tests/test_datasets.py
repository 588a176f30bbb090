"""Dataset readers: every format from tiny fixture datasets written here, and every kind of bad input."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

import heightfusion as hf
from heightfusion import datasets
from heightfusion.datasets import DatasetError, Trajectory, associate, read_tum_trajectory
from heightfusion.datasets.base import (
    BAD_LINE,
    DEPTH_INVALID,
    DEPTH_MISSING,
    DEPTH_UNREADABLE,
    IMAGE_MISSING,
    IMAGE_UNREADABLE,
    NO_DEPTH_MATCH,
    NO_POSE,
    SIZE_MISMATCH,
    FrameRecord,
    Issues,
    OpenOptions,
    Sequence,
)
from heightfusion.datasets.camera_yaml import save_camera_yaml
from heightfusion.datasets.frame import Frame
from heightfusion.datasets.tum import ICL_NUIM_CAMERA, KINECT_DEFAULT_CAMERA, TUM_CAMERAS

W, H = 32, 24
CAMERA = hf.PinholeCamera(W, H, 30.0, 29.0, 15.5, 11.5)
T0 = 1305031102.0  # a TUM-like epoch time, to exercise float precision
RATE = 30.0


# ----------------------------------------------------------------------------- fixture helpers


def motion(t: float) -> tuple[float, ...]:
    """TUM numbers (tx ty tz qx qy qz qw) of a camera moving linearly and turning at 1 rad/s about z.

    Linear interpolation and slerp between any two samples reproduce this motion exactly.
    """
    s = t - T0
    angle = 1.0 * s
    return (0.5 * s, 0.2 - 0.1 * s, 1.5, 0.0, 0.0, math.sin(angle / 2), math.cos(angle / 2))


def rgb_pattern(i: int, width: int = W, height: int = H) -> np.ndarray:
    """A distinct RGB image per frame, with different channels so that a BGR/RGB swap shows."""
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = 10 + 20 * i
    image[..., 1] = 100
    image[..., 2] = 200
    image[0, 0] = (255, 0, 0)
    return image


def depth_pattern(i: int) -> np.ndarray:
    """Depth in metres with a few pixels of value 0 (no measurement)."""
    depth = np.full((H, W), 1.0 + 0.1 * i, np.float64)
    depth[:, : W // 2] += 0.5
    depth[0, :4] = 0.0
    return depth


def write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]))


def write_depth(path: Path, metres: np.ndarray, scale: float = 5000.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.round(metres * scale).astype(np.uint16))


def expected_depth(i: int) -> np.ndarray:
    depth = (np.round(depth_pattern(i) * 5000) / 5000).astype(np.float32)
    depth[depth == 0] = np.nan
    return depth


def write_trajectory(path: Path, times, lines_before: list[str] = (), extra_lines: list[str] = ()) -> None:
    rows = [f"{t:.6f} " + " ".join(f"{v:.9f}" for v in motion(t)) for t in times]
    path.write_text("\n".join(["# timestamp tx ty tz qx qy qz qw", *lines_before, *rows, *extra_lines]) + "\n")


def gt_times(n: int, rate: float = 100.0, start: float = -0.1, end_margin: float = 0.1) -> np.ndarray:
    return T0 + np.arange(start, n / RATE + end_margin, 1.0 / rate)


def frame_times(n: int) -> list[float]:
    return [round(T0 + i / RATE, 6) for i in range(n)]


def make_tum(
    root: Path,
    name: str = "rgbd_dataset_freiburg3_test",
    n: int = 6,
    jitter: list[float] | None = None,
    camera: hf.PinholeCamera | None = CAMERA,
    depth: bool = True,
) -> Path:
    """A TUM RGB-D folder with ``n`` frames; depth timestamps are the image's plus ``jitter``."""
    folder = root / name
    folder.mkdir(parents=True)
    jitter = jitter or [0.0] * n
    rgb_lines, depth_lines = ["# color images"], ["# depth maps"]
    for i, t in enumerate(frame_times(n)):
        write_rgb(folder / "rgb" / f"{t:.6f}.png", rgb_pattern(i))
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
        td = t + jitter[i]
        write_depth(folder / "depth" / f"{td:.6f}.png", depth_pattern(i))
        depth_lines.append(f"{td:.6f} depth/{td:.6f}.png")
    (folder / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    if depth:
        (folder / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    write_trajectory(folder / "groundtruth.txt", gt_times(n))
    if camera is not None:
        save_camera_yaml(folder / "camera.yaml", camera, 5000.0)
    return folder


def expected_pose(t: float) -> np.ndarray:
    return hf.pose_from_tum(*motion(t))


def frames_of(seq) -> list[Frame]:
    return list(seq)


# ----------------------------------------------------------------------------- TUM RGB-D


def test_tum_frames_images_depth_and_poses(tmp_path):
    folder = make_tum(tmp_path)
    seq = datasets.open(folder)
    assert seq.format == "tum"
    assert seq.name == "rgbd_dataset_freiburg3_test"
    assert seq.path == folder
    assert seq.camera == CAMERA  # camera.yaml wins over the folder name
    assert seq.depth_scale == 5000.0
    assert seq.gt_heightmap is None
    assert len(seq) == 6
    frames = frames_of(seq)
    assert [f.index for f in frames] == list(range(6))
    assert not seq.skipped
    for i, (frame, t) in enumerate(zip(frames, frame_times(6))):
        assert isinstance(frame, Frame)
        assert frame.timestamp == pytest.approx(t, abs=1e-6)
        assert frame.image.dtype == np.uint8 and frame.image.shape == (H, W, 3)
        np.testing.assert_array_equal(frame.image, rgb_pattern(i))  # RGB order
        assert frame.depth.dtype == np.float32
        np.testing.assert_allclose(frame.depth, expected_depth(i), rtol=0, atol=1e-6)
        assert np.isnan(frame.depth[0, :4]).all()
        assert frame.T_wc.dtype == np.float64 and frame.T_wc.shape == (4, 4)
        np.testing.assert_allclose(frame.T_wc, expected_pose(t), atol=1e-6)
        assert frame.camera == CAMERA


def test_tum_poses_at_sample_times_equal_pose_from_tum(tmp_path):
    folder = make_tum(tmp_path, n=3)
    # Trajectory samples exactly at the image times, sparse (no interpolation bracket within the gap).
    times = frame_times(3)
    (folder / "groundtruth.txt").write_text(
        "\n".join(f"{t:.6f} " + " ".join(f"{v:.9f}" for v in motion(t)) for t in times[::2]) + "\n"
    )
    frames = frames_of(datasets.open(folder))
    lines = (folder / "groundtruth.txt").read_text().split("\n")
    exact = {float(line.split()[0]): hf.pose_from_tum(*map(float, line.split()[1:])) for line in lines if line}
    assert [f.index for f in frames] == [0, 1, 2]
    np.testing.assert_array_equal(frames[0].T_wc, exact[frames[0].timestamp])
    np.testing.assert_array_equal(frames[2].T_wc, exact[frames[2].timestamp])
    np.testing.assert_allclose(frames[1].T_wc, expected_pose(frames[1].timestamp), atol=1e-6)  # interpolated


def test_tum_pose_interpolation_and_missing_poses(tmp_path):
    folder = make_tum(tmp_path, n=6)
    times = frame_times(6)
    # Images 0-3 (T0 + 0 ... 0.1 s) lie between samples at most 0.1 s apart -> interpolated exactly (slerp).
    # Then a dropout: images 4 and 5 (T0 + 0.133, 0.167) have no sample within 0.02 s.
    samples = [T0 - 0.05, T0 + 0.05, T0 + 0.11, T0 + 1.2]
    write_trajectory(folder / "groundtruth.txt", samples)
    seq = datasets.open(folder)
    frames = frames_of(seq)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    for frame in frames:
        np.testing.assert_allclose(frame.T_wc, expected_pose(frame.timestamp), atol=1e-6)
    assert seq.skipped[NO_POSE] == 2
    assert any("without a pose" in m for m in seq.messages)
    assert times[4] - samples[2] > 0.02


def test_pose_time_offset_takes_each_pose_later_along_the_trajectory(tmp_path):
    folder = make_tum(tmp_path, n=4)
    seq = datasets.open(folder, pose_time_offset=-0.012)
    frames = frames_of(seq)
    assert len(frames) == 4
    for frame in frames:
        np.testing.assert_allclose(frame.T_wc, expected_pose(frame.timestamp - 0.012), atol=1e-6)
    for t, T in seq.reference_trajectory():  # the reference stays as published
        np.testing.assert_allclose(T, expected_pose(t), atol=1e-6)
    with pytest.raises(ValueError, match="pose_time_offset"):
        datasets.open(folder, pose_time_offset=1.5)
    with pytest.raises(ValueError, match="pose_time_offset"):
        datasets.open(folder, pose_time_offset=float("nan"))


def test_tum_association_with_jitter(tmp_path):
    jitter = [0.004, -0.008, 0.019, -0.012, 0.05, 0.0]  # frame 4's depth is 50 ms off: no match
    folder = make_tum(tmp_path, jitter=jitter)
    seq = datasets.open(folder)
    frames = frames_of(seq)
    assert [f.index for f in frames] == [0, 1, 2, 3, 5]
    assert seq.skipped[NO_DEPTH_MATCH] == 1
    for frame in frames:
        np.testing.assert_allclose(frame.depth, expected_depth(frame.index), atol=1e-6)
    # A larger tolerance matches frame 4 as well.
    assert len(datasets.open(folder, max_difference=0.06)) == 6


def test_associate_is_greedy_closest_first():
    assert associate([0.0, 0.025], [0.012, 0.03]) == [(0, 0), (1, 1)]
    assert associate([0.0, 0.01], [0.009]) == [(1, 0)]  # the closer image takes the depth image
    assert associate([0.0, 1.0], [0.5]) == []
    assert associate([2.0, 1.0], [1.001, 2.001]) == [(0, 1), (1, 0)]
    assert associate([], [1.0]) == []


def test_tum_intrinsics_from_folder_name(tmp_path):
    for name, expected in [
        ("rgbd_dataset_freiburg1_desk", TUM_CAMERAS[1]),
        ("rgbd_dataset_freiburg2_xyz", TUM_CAMERAS[2]),
        ("rgbd_dataset_freiburg3_long_office", TUM_CAMERAS[3]),
        ("fr2_desk", TUM_CAMERAS[2]),
    ]:
        seq = datasets.open(make_tum(tmp_path, name=name, n=2, camera=None))
        assert seq.camera == expected, name
    fr1 = TUM_CAMERAS[1]
    assert (fr1.width, fr1.height, fr1.fx, fr1.fy, fr1.cx, fr1.cy) == (640, 480, 517.3, 516.5, 318.6, 255.3)
    assert fr1.distortion == (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)
    assert TUM_CAMERAS[2].distortion == (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)
    assert (TUM_CAMERAS[3].fx, TUM_CAMERAS[3].fy, TUM_CAMERAS[3].cx, TUM_CAMERAS[3].cy) == (535.4, 539.2, 320.1, 247.6)
    assert TUM_CAMERAS[3].distortion is None
    seq = datasets.open(make_tum(tmp_path, name="my_recording", n=2, camera=None))
    assert seq.camera == KINECT_DEFAULT_CAMERA
    assert any("Kinect default" in m for m in seq.messages)


def test_camera_option_and_wrong_size_frames(tmp_path):
    # freiburg1 intrinsics are 640x480: the tiny images do not fit, every frame is counted, none crashes.
    seq = datasets.open(make_tum(tmp_path, name="rgbd_dataset_freiburg1_tiny", n=3, camera=None))
    assert frames_of(seq) == []
    assert seq.skipped[SIZE_MISMATCH] == 3
    other = hf.PinholeCamera(W, H, 40.0, 40.0, 16.0, 12.0)
    seq = datasets.open(tmp_path / "rgbd_dataset_freiburg1_tiny", camera=other)
    assert seq.camera == other and len(frames_of(seq)) == 3


def test_tum_monocular_without_depth(tmp_path):
    seq = datasets.open(make_tum(tmp_path, n=3, depth=False))
    assert seq.depth_scale is None and not seq.has_depth_images
    frames = frames_of(seq)
    assert len(frames) == 3 and all(f.depth is None for f in frames)


def test_depth_images_can_be_left_unread(tmp_path, monkeypatch):
    """Monocular stereo reads the images of an RGB-D dataset alone: the same frames and poses, no depth,
    and no depth image opened."""
    folder = make_tum(tmp_path)
    with_depth = frames_of(datasets.open(folder))
    monkeypatch.setattr(type(datasets.open(folder)), "_read_depth", lambda self, path: pytest.fail(f"read {path}"))
    unread = datasets.open(folder, load_depth=False)
    assert unread.has_depth_images  # on disk, not read
    without = frames_of(unread)
    assert len(without) == len(with_depth) and all(f.depth is None for f in without)
    for a, b in zip(without, with_depth):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.T_wc, b.T_wc)


def test_opened_for_a_depth_source(tmp_path):
    """Monocular stereo ("mvs") fuses frames without depth images read, and keeps the recording with them
    beside (the floor, the map's extent); sensor depth and "auto" read them once."""
    folder = make_tum(tmp_path)
    frames, with_depth = datasets.open_for_depth(folder, "mvs", max_frames=2)
    assert frames is not with_depth and all(f.depth is None for f in frames_of(frames))
    assert all(f.depth is not None for f in frames_of(with_depth)) and len(frames) == len(with_depth) == 2
    for depth in ("sensor", "auto"):
        frames, with_depth = datasets.open_for_depth(folder, depth)
        assert frames is with_depth and all(f.depth is not None for f in frames_of(frames))
    with pytest.raises(ValueError, match="'stereo'"):
        datasets.open_for_depth(folder, "stereo")
    images_only = make_tum(tmp_path / "mono", depth=False)
    frames, with_depth = datasets.open_for_depth(images_only, "mvs")
    assert frames is with_depth and len(frames_of(frames)) == 6


def test_stride_and_max_frames(tmp_path):
    folder = make_tum(tmp_path, n=6)
    assert [f.index for f in datasets.open(folder, stride=2)] == [0, 2, 4]
    assert [f.index for f in datasets.open(folder, stride=2, max_frames=2)] == [0, 2]
    assert [f.index for f in datasets.open(folder, max_frames=4)] == [0, 1, 2, 3]
    assert len(datasets.open(folder, max_frames=0)) == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"stride": 0}, {"stride": 1.5}, {"max_frames": -1}, {"max_difference": 0}, {"fps": -3}, {"camera": "fr1"}],
)
def test_bad_options_raise_value_error(tmp_path, kwargs):
    folder = make_tum(tmp_path, n=1)
    with pytest.raises(ValueError):
        datasets.open(folder, **kwargs)


def test_undistort_option(tmp_path):
    distorted = hf.PinholeCamera(W, H, 30.0, 29.0, 15.5, 11.5, distortion=(0.2, -0.1, 0.0, 0.0, 0.0))
    folder = make_tum(tmp_path, n=2, camera=distorted)
    raw = datasets.open(folder)
    assert raw.camera == distorted
    raw_frames = frames_of(raw)
    np.testing.assert_array_equal(raw_frames[1].image, rgb_pattern(1))  # not undistorted by default
    seq = datasets.open(folder, undistort=True)
    assert seq.camera.distortion is None and seq.camera.K.tolist() == distorted.K.tolist()
    frames = frames_of(seq)
    assert frames[1].camera.distortion is None
    expected = cv2.cvtColor(distorted.undistort_image(rgb_pattern(1)[..., ::-1].copy()), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(frames[1].image, expected)
    # Depth is never blended across an edge: this piecewise-constant input gives only its own values (or NaN).
    values = set(np.unique(raw_frames[1].depth[np.isfinite(raw_frames[1].depth)]).tolist())
    assert set(np.unique(frames[1].depth[np.isfinite(frames[1].depth)]).tolist()) <= values


# ----------------------------------------------------------------------------- bad data


def test_bad_files_are_skipped_counted_and_the_run_continues(tmp_path):
    folder = make_tum(tmp_path, n=8)
    times = frame_times(8)
    (folder / "rgb" / f"{times[1]:.6f}.png").unlink()  # image missing
    (folder / "rgb" / f"{times[2]:.6f}.png").write_bytes(b"not a png at all")  # image unreadable
    (folder / "depth" / f"{times[3]:.6f}.png").unlink()  # depth missing
    (folder / "depth" / f"{times[4]:.6f}.png").write_bytes(b"\x89PNG garbage")  # depth unreadable
    write_depth(folder / "depth" / f"{times[5]:.6f}.png", np.zeros((H, W)))  # no valid pixel
    write_rgb(folder / "rgb" / f"{times[6]:.6f}.png", rgb_pattern(6, width=W + 2))  # wrong size
    seq = datasets.open(folder)
    frames = frames_of(seq)
    assert [f.index for f in frames] == [0, 7]
    assert dict(seq.skipped) == {
        IMAGE_MISSING: 1,
        IMAGE_UNREADABLE: 1,
        DEPTH_MISSING: 1,
        DEPTH_UNREADABLE: 1,
        DEPTH_INVALID: 1,
        SIZE_MISMATCH: 1,
    }
    assert len(seq.messages) == 6
    # Iterating again starts the counts afresh instead of doubling them.
    frames_of(seq)
    assert sum(seq.skipped.values()) == 6


def test_nan_negative_and_infinite_depth_become_nan(tmp_path):
    folder = make_tum(tmp_path, n=2)
    t = frame_times(2)[1]
    depth = np.full((H, W), 5000.0 * 2.0, np.float32)  # depth-image units: 2 m
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3] = np.nan, -5000.0, np.inf, 0.0
    assert cv2.imwrite(str(folder / "depth" / "float.tiff"), depth)
    text = (folder / "depth.txt").read_text().replace(f"depth/{t:.6f}.png", "depth/float.tiff")
    (folder / "depth.txt").write_text(text)
    frames = frames_of(datasets.open(folder))
    d = frames[1].depth
    assert np.isnan(d[0, :4]).all()
    assert np.all(d[1:] == np.float32(2.0))


def test_three_channel_depth_is_unreadable(tmp_path):
    folder = make_tum(tmp_path, n=2)
    write_rgb(folder / "depth" / f"{frame_times(2)[0]:.6f}.png", rgb_pattern(0))
    seq = datasets.open(folder)
    assert [f.index for f in seq] == [1]
    assert seq.skipped[DEPTH_UNREADABLE] == 1


def test_garbled_list_and_trajectory_lines(tmp_path):
    folder = make_tum(tmp_path, n=4)
    with (folder / "rgb.txt").open("a") as f:
        f.write("not_a_time rgb/x.png\n12345.0\n")
    write_trajectory(
        folder / "groundtruth.txt",
        gt_times(4),
        lines_before=["1 2 3", "x y z 0 0 0 1 2"],
        extra_lines=[f"{T0 + 9:.6f} 0 0 0 0 0 0 0", f"{T0 + 9.5:.6f} nan 0 0 0 0 0 1"],
    )
    seq = datasets.open(folder)
    assert seq.skipped[BAD_LINE] == 6
    frames = frames_of(seq)
    assert len(frames) == 4
    for frame in frames:
        np.testing.assert_allclose(frame.T_wc, expected_pose(frame.timestamp), atol=1e-6)


def test_trajectory_without_any_valid_pose_skips_every_frame(tmp_path):
    folder = make_tum(tmp_path, n=3)
    (folder / "groundtruth.txt").write_text("garbage\n")
    seq = datasets.open(folder)
    assert frames_of(seq) == []
    assert seq.skipped == {BAD_LINE: 1, NO_POSE: 3}


def test_folder_without_trajectory_yields_frames_without_pose(tmp_path):
    folder = make_tum(tmp_path, n=2)
    (folder / "groundtruth.txt").unlink()
    seq = datasets.open(folder)
    frames = frames_of(seq)
    assert len(frames) == 2 and all(f.T_wc is None for f in frames)
    assert any("no trajectory" in m for m in seq.messages)


def test_explicit_trajectory(tmp_path):
    folder = make_tum(tmp_path, n=3)
    other = tmp_path / "other.txt"
    shifted = [round(t, 6) for t in gt_times(3)]
    other.write_text("\n".join(f"{t:.6f} 1 2 3 0 0 0 1" for t in shifted) + "\n")
    frames = frames_of(datasets.open(folder, trajectory=other))
    assert all(np.allclose(f.T_wc[:3, 3], (1, 2, 3)) for f in frames)
    with pytest.raises(DatasetError, match="missing.txt"):
        datasets.open(folder, trajectory=tmp_path / "missing.txt")


def test_gt_heightmap(tmp_path):
    folder = make_tum(tmp_path, n=1)
    grid = hf.HeightMap(origin=(-1.0, -2.0), cell_size=0.1, shape=(5, 7))
    hf.save_heightmap(folder / "gt_heightmap.npz", grid)
    seq = datasets.open(folder)
    assert seq.gt_heightmap is not None and seq.gt_heightmap.heights.shape == (5, 7)
    (folder / "gt_heightmap.npz").write_bytes(b"broken")
    seq = datasets.open(folder)
    assert seq.gt_heightmap is None
    assert any("ground-truth height map" in m for m in seq.messages)


def test_malformed_camera_yaml_is_a_dataset_error(tmp_path):
    folder = make_tum(tmp_path, n=1)
    (folder / "camera.yaml").write_text("width: 32\nheight: 24\n")
    with pytest.raises(DatasetError, match="camera.yaml"):
        datasets.open(folder)


# ----------------------------------------------------------------------------- not a dataset


def test_not_a_dataset(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    for path in (empty, text_file, tmp_path / "does_not_exist"):
        with pytest.raises(DatasetError) as info:
            datasets.open(path)
        assert isinstance(info.value, ValueError)
        message = str(info.value)
        assert str(path) in message and "expected" in message and "\n" not in message


def test_undecodable_video_is_a_dataset_error(tmp_path):
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"not a video" * 10)
    with pytest.raises(DatasetError, match="broken.mp4"):
        datasets.open(video)


# ----------------------------------------------------------------------------- ICL-NUIM


def make_icl(root: Path, name: str = "living_room_traj0_frei_png", depth_first: bool = True, n: int = 3) -> Path:
    """The ICL-NUIM TUM-compatible layout: rgb/, depth/, associations.txt, livingRoom0.gt.freiburg."""
    folder = root / name
    lines, gt = [], []
    for i in range(n):
        write_rgb(folder / "rgb" / f"{i}.png", rgb_pattern(i))
        write_depth(folder / "depth" / f"{i}.png", depth_pattern(i))
        pair = [f"{i} depth/{i}.png", f"{i} rgb/{i}.png"]
        lines.append(" ".join(pair if depth_first else pair[::-1]))
        gt.append(f"{i} {0.1 * i} 0 -2.25 0 0 0 1")
    (folder / "associations.txt").write_text("\n".join(lines) + "\n")
    (folder / "livingRoom0.gt.freiburg").write_text("\n".join(gt) + "\n")
    return folder


@pytest.mark.parametrize("depth_first", [True, False])
def test_icl_nuim(tmp_path, depth_first):
    folder = make_icl(tmp_path, depth_first=depth_first)
    seq = datasets.open(folder)
    assert seq.format == "icl-nuim"
    # Published fy = -480 belongs to the mirrored POV-Ray originals; this release uses +480.
    assert (seq.camera.fx, seq.camera.fy, seq.camera.cx, seq.camera.cy) == (481.20, 480.00, 319.50, 239.50)
    assert seq.camera == ICL_NUIM_CAMERA and seq.depth_scale == 5000.0
    save_camera_yaml(folder / "camera.yaml", CAMERA)
    seq = datasets.open(folder)
    frames = frames_of(seq)
    assert [f.index for f in frames] == [0, 1, 2] and not seq.skipped
    for i, frame in enumerate(frames):
        assert frame.timestamp == i
        np.testing.assert_array_equal(frame.image, rgb_pattern(i))
        np.testing.assert_allclose(frame.depth, expected_depth(i), atol=1e-6)
        np.testing.assert_array_equal(frame.T_wc, hf.pose_from_tum(0.1 * i, 0, -2.25, 0, 0, 0, 1))


def test_icl_detected_by_trajectory_file_and_garbled_association(tmp_path):
    folder = make_icl(tmp_path, name="some_sequence")
    with (folder / "associations.txt").open("a") as f:
        f.write("3 depth/3.png\n")
    save_camera_yaml(folder / "camera.yaml", CAMERA)
    seq = datasets.open(folder)
    assert seq.format == "icl-nuim"
    assert len(frames_of(seq)) == 3 and seq.skipped == {BAD_LINE: 1}


# ----------------------------------------------------------------------------- EuRoC MAV


T_BS = hf.look_at((0.1, -0.05, 0.02), (1.0, 0.3, 0.2), up=(0.0, 0.0, 1.0))
EUROC_DISTORTION = (-0.28, 0.07, 0.0002, 1.8e-05)


def make_euroc(root: Path, n: int = 6, gt_start_frame: int = 1) -> Path:
    """A EuRoC sequence: 20 Hz grayscale images, 200 Hz body ground truth starting at frame ``gt_start_frame``."""
    folder = root / "MH_01_easy"
    cam0 = folder / "mav0" / "cam0"
    (cam0 / "data").mkdir(parents=True)
    t0_ns = 1403636579763555584
    lines = ["#timestamp [ns],filename"]
    for i in range(n):
        ns = t0_ns + i * 50_000_000
        gray = np.full((H, W), 30 + 20 * i, np.uint8)
        assert cv2.imwrite(str(cam0 / "data" / f"{ns}.png"), gray)
        lines.append(f"{ns},{ns}.png")
    (cam0 / "data.csv").write_text("\n".join(lines) + "\n")
    t_bs = ", ".join(repr(float(v)) for v in T_BS.ravel())
    (cam0 / "sensor.yaml").write_text(
        "# General sensor definitions.\nsensor_type: camera\ncomment: VI-Sensor cam0 (MT9M034)\n"
        f"T_BS:\n  cols: 4\n  rows: 4\n  data: [{t_bs}]\n"
        f"rate_hz: 20\nresolution: [{W}, {H}]\ncamera_model: pinhole\n"
        "intrinsics: [30.0, 29.0, 15.5, 11.5] #fu, fv, cu, cv\n"
        "distortion_model: radial-tangential\n"
        f"distortion_coefficients: {list(EUROC_DISTORTION)}\n"
    )
    gt_dir = folder / "mav0" / "state_groundtruth_estimate0"
    gt_dir.mkdir(parents=True)
    rows = ["#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], q_RS_y [], q_RS_z [], v..."]
    start = t0_ns + gt_start_frame * 50_000_000 - 2_000_000
    for k in range(int(n * 10 + 5)):
        ns = start + k * 5_000_000  # 200 Hz, offset from the image clock by 2 ms
        tx, ty, tz, qx, qy, qz, qw = (float(v) for v in motion(T0 + (ns - t0_ns) * 1e-9))
        rows.append(f"{ns},{tx!r},{ty!r},{tz!r},{qw!r},{qx!r},{qy!r},{qz!r},0,0,0,0,0,0,0,0,0")
    rows.insert(3, "garbled,line")
    (gt_dir / "data.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_euroc(tmp_path):
    folder = make_euroc(tmp_path)
    seq = datasets.open(folder)
    assert seq.format == "euroc" and seq.name == "MH_01_easy"
    assert seq.camera == hf.PinholeCamera(W, H, 30.0, 29.0, 15.5, 11.5, EUROC_DISTORTION)
    assert seq.depth_scale is None
    frames = frames_of(seq)
    assert [f.index for f in frames] == [1, 2, 3, 4, 5]  # frame 0 precedes the ground truth
    assert seq.skipped == {NO_POSE: 1, BAD_LINE: 1}
    for frame in frames:
        assert frame.depth is None
        assert frame.image.shape == (H, W, 3)
        assert np.all(frame.image == 30 + 20 * frame.index)
        assert frame.timestamp == pytest.approx((1403636579763555584 + frame.index * 50_000_000) * 1e-9)
        # Body pose at the image time (interpolated: w-first quaternions in the file) times T_BS.
        T_wb = hf.pose_from_tum(*motion(T0 + frame.index * 0.05))
        np.testing.assert_allclose(frame.T_wc, T_wb @ T_BS, atol=1e-6)


def test_euroc_opened_at_mav0_and_undistorted(tmp_path):
    folder = make_euroc(tmp_path)
    seq = datasets.open(folder / "mav0", undistort=True)
    assert seq.format == "euroc" and seq.name == "MH_01_easy"
    assert seq.camera.distortion is None
    assert len(frames_of(seq)) == 5


def test_euroc_bad_sensor_yaml(tmp_path):
    folder = make_euroc(tmp_path)
    sensor = folder / "mav0" / "cam0" / "sensor.yaml"
    sensor.write_text(sensor.read_text().replace("radial-tangential", "equidistant"))
    with pytest.raises(DatasetError, match="equidistant"):
        datasets.open(folder)
    save_camera_yaml(folder / "camera.yaml", CAMERA)  # explicit intrinsics make it usable again
    assert datasets.open(folder).camera == CAMERA
    sensor.unlink()
    with pytest.raises(DatasetError, match="sensor.yaml"):
        datasets.open(folder)


# ----------------------------------------------------------------------------- image folder and video


def make_image_folder(root: Path, names: list[str], ext: str = ".png") -> Path:
    folder = root / "images_run"
    for i, name in enumerate(names):
        write_rgb(folder / f"{name}{ext}", rgb_pattern(i))
    save_camera_yaml(folder / "camera.yaml", CAMERA)
    return folder


def test_image_folder_with_timestamp_names(tmp_path):
    times = frame_times(4)
    folder = make_image_folder(tmp_path, [f"{t:.6f}" for t in times])
    write_trajectory(folder / "trajectory.txt", gt_times(4))
    seq = datasets.open(folder)
    assert seq.format == "images" and seq.name == "images_run" and seq.depth_scale is None
    frames = frames_of(seq)
    assert [f.timestamp for f in frames] == pytest.approx(times)
    for i, frame in enumerate(frames):
        assert frame.depth is None
        np.testing.assert_array_equal(frame.image, rgb_pattern(i))
        np.testing.assert_allclose(frame.T_wc, expected_pose(frame.timestamp), atol=1e-6)


def test_image_folder_with_nanosecond_names(tmp_path):
    folder = make_image_folder(tmp_path, ["1403636579763555584", "1403636579813555584"])
    frames = frames_of(datasets.open(folder))
    assert [f.timestamp for f in frames] == pytest.approx([1403636579.763555584, 1403636579.813555584])
    assert all(f.T_wc is None for f in frames)


def test_image_folder_by_index_in_natural_order(tmp_path):
    folder = make_image_folder(tmp_path, ["frame_2", "frame_10", "frame_1"], ext=".jpg")
    (folder / "trajectory.txt").write_text("0 0 0 0 0 0 0 1\n0.5 1 0 0 0 0 0 1\n1.0 2 0 0 0 0 0 1\n")
    seq = datasets.open(folder, fps=2.0)
    frames = frames_of(seq)
    # Natural order frame_1, frame_2, frame_10 at t = 0, 0.5, 1.0 s.
    assert [f.timestamp for f in frames] == [0.0, 0.5, 1.0]
    assert [f.T_wc[0, 3] for f in frames] == [0.0, 1.0, 2.0]
    means = [f.image.reshape(-1, 3).mean(axis=0) for f in frames]
    assert [round((m[0] - 10) / 20) for m in means] == [2, 0, 1]  # frame_1 was written third (JPEG: approximate)
    assert all(abs(m[2] - 200) < 8 for m in means)  # blue channel stays blue: RGB order


def test_image_folder_in_subfolder_and_name_intrinsics(tmp_path):
    folder = tmp_path / "rgbd_dataset_freiburg2_frames"
    write_rgb(folder / "images" / "0.png", rgb_pattern(0))
    seq = datasets.open(folder)
    assert seq.format == "images" and seq.camera == TUM_CAMERAS[2] and len(seq) == 1


def test_image_folder_without_intrinsics_is_a_dataset_error(tmp_path):
    folder = tmp_path / "plain"
    write_rgb(folder / "0.png", rgb_pattern(0))
    with pytest.raises(DatasetError, match="camera.yaml"):
        datasets.open(folder)
    assert len(datasets.open(folder, camera=CAMERA)) == 1


def write_video(path: Path, n: int, fps: float = 10.0, fourcc: str = "MJPG") -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.ascontiguousarray(rgb_pattern(i)[..., ::-1]))
    writer.release()


@pytest.mark.parametrize("fourcc, ext", [("MJPG", ".avi"), ("mp4v", ".mp4")])
def test_video_with_trajectory(tmp_path, fourcc, ext):
    video = tmp_path / f"flight{ext}"
    write_video(video, 6, fourcc=fourcc)
    save_camera_yaml(tmp_path / "camera.yaml", CAMERA)
    (tmp_path / "trajectory.txt").write_text("".join(f"{i / 10:.3f} {i} 0 1 0 0 0 1\n" for i in range(6)))
    seq = datasets.open(video, stride=2)
    assert seq.format == "video" and seq.name == "flight" and len(seq) == 3
    frames = frames_of(seq)
    assert [f.index for f in frames] == [0, 2, 4]
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.2, 0.4])
    for frame in frames:
        np.testing.assert_allclose(frame.T_wc, hf.pose_from_tum(frame.index, 0, 1, 0, 0, 0, 1))
        mean = frame.image.reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(mean, rgb_pattern(frame.index)[1:, 1:].reshape(-1, 3).mean(axis=0), atol=8)
    # The folder holding the video opens as that video; max_frames and fps apply.
    seq = datasets.open(tmp_path, max_frames=2, fps=5.0)
    assert seq.format == "video" and [f.timestamp for f in seq] == [0.0, 0.2]
    write_video(tmp_path / f"second{ext}", 2, fourcc=fourcc)
    with pytest.raises(DatasetError, match="2 video files"):
        datasets.open(tmp_path)


@pytest.mark.parametrize("kind", ["tum", "video"])
def test_iter_frames_passes_over_the_frames_before_a_due_one_unread(tmp_path, kind, monkeypatch):
    """A paced player behind schedule: ``stale(t)`` says the frame at t is due, so the one before it is left
    unread (image files not opened, video frames grabbed past, not decoded); the others read as usual."""
    if kind == "tum":
        seq = datasets.open(make_tum(tmp_path))
        times = frame_times(6)
    else:
        write_video(tmp_path / "clip.avi", 6)
        seq = datasets.open(tmp_path / "clip.avi", camera=CAMERA, fps=10.0)
        times = [i / 10 for i in range(6)]
    read = []
    original = Sequence._read_image_file
    monkeypatch.setattr(Sequence, "_read_image_file", lambda self, path: read.append(path) or original(self, path))
    due = {times[2], times[3], times[5]}  # frames 1, 2 and 4 are stale
    frames = list(seq.iter_frames(lambda t: any(abs(t - d) < 1e-9 for d in due)))
    assert [f.index for f in frames] == [0, 3, 5] and not seq.skipped
    mean = frames[1].image.reshape(-1, 3).mean(axis=0)  # frame 3's pattern (a video's is JPEG-compressed)
    np.testing.assert_allclose(mean, rgb_pattern(3)[1:, 1:].reshape(-1, 3).mean(axis=0), atol=8)
    assert len(read) == (3 if kind == "tum" else 0)  # a video's frames are decoded by the capture instead
    assert [f.index for f in seq] == list(range(6))  # plain iteration reads every frame


def test_video_without_trajectory(tmp_path):
    video = tmp_path / "clip.avi"
    write_video(video, 3)
    seq = datasets.open(video, camera=CAMERA)
    frames = frames_of(seq)
    assert len(frames) == 3 and all(f.T_wc is None for f in frames)


def test_video_shorter_than_its_frame_count(tmp_path):
    """A container that claims more frames than it holds: the missing ones are counted, the rest read."""
    video = tmp_path / "clip.avi"
    write_video(video, 3)
    records = [FrameRecord(n, n / 10, n) for n in (0, 2, 4, 5)]
    seq = Sequence(path=video, name="clip", format="video", camera=CAMERA, records=records, issues=Issues(),
                   options=OpenOptions(), video=video)
    assert [f.index for f in seq] == [0, 2]
    assert seq.skipped == {IMAGE_UNREADABLE: 2}


def test_trajectory_pose_at_edges():
    positions = [[1, 0, 0], [0, 0, 0], [2, 0, 0], [3, 0, 0]]
    trajectory = Trajectory.from_samples([1.0, 0.0, 2.0, 2.0], positions, [[0, 0, 0, 2]] * 4)
    assert list(trajectory.timestamps) == [0.0, 1.0, 2.0]  # sorted; of the two at t = 2 the first is kept
    assert trajectory.positions[:, 0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(trajectory.quaternions, [[0, 0, 0, 1]] * 3)  # normalised
    assert trajectory.pose_at(2.015) is not None  # nearest sample within 0.02 s
    assert trajectory.pose_at(2.03) is None
    assert trajectory.pose_at(0.5) is None  # samples 1 s apart: too far to interpolate or match
    assert trajectory.pose_at(0.5, max_difference=0.6) is not None


def test_read_tum_trajectory_reports_line_numbers(tmp_path):
    path = tmp_path / "traj.txt"
    path.write_text("# comment\n\n0 0 0 0 0 0 0 1\n1 2 3\n2,1,1,1,0,0,0,1\n")
    trajectory, problems = read_tum_trajectory(path)
    assert len(trajectory) == 2
    assert len(problems) == 1 and "traj.txt:4" in problems[0]
