"""A folder of images, or a video file, plus a TUM-format trajectory of camera poses.

Images: ``*.png``, ``*.jpg``, ``*.jpeg`` in the folder (or, if it has none, in its ``images/``,
``rgb/`` or ``frames/`` subfolder); hidden files (``.name``: temporary files of an interrupted write,
macOS ``._name`` resource forks) are not images of the sequence. Timestamps come from the file names when every name is one:
``1305031102.175304.png`` (seconds) or ``1403636579763555584.png`` (16 or more digits: nanoseconds);
otherwise images are taken in natural name order (``2.png`` before ``10.png``) at ``fps`` frames per
second from t = 0 (``fps`` option, default 30).

Video: any file OpenCV's VideoCapture reads (recognised by extension); frame n has t = n / fps, with
the video's own frame rate unless the ``fps`` option is given. Side files are looked for in the
video's folder; a folder holding no images but exactly one video is opened as that video.

The trajectory is ``trajectory=`` if given, else ``groundtruth.txt`` or ``trajectory.txt`` beside the
data, on the same clock as the timestamps above; without one, frames carry no pose. The intrinsics
come from the ``camera`` option, ``camera.yaml``, or a TUM freiburg1/2/3 or ICL-NUIM folder name;
with none of these the path is not a usable dataset (DatasetError).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import cv2

from ..camera import PinholeCamera
from .base import (
    DatasetError,
    FrameRecord,
    Issues,
    OpenOptions,
    Sequence,
    attach_poses,
    configured_camera,
    find_trajectory_file,
    load_gt_heightmap,
    load_reference,
    load_trajectory,
    sequence_name,
)
from .files import opencv_path
from .tum import camera_from_name

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")
IMAGE_SUBFOLDERS = ("images", "rgb", "frames")
DEFAULT_FPS = 30.0

_SECONDS_NAME = re.compile(r"\d+\.\d+")
_NANOSECONDS_NAME = re.compile(r"\d{16,}")
_DIGITS = re.compile(r"(\d+)")


def find_images(folder: Path) -> list[Path]:
    """Image files of an image-folder dataset (unsorted), empty if there are none."""
    for candidate in (folder, *(folder / name for name in IMAGE_SUBFOLDERS)):
        if candidate.is_dir():
            files = [p for p in candidate.iterdir()
                     if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()]
            if files:
                return files
    return []


def is_video_file(path: Path) -> bool:
    """Whether ``path`` is a file with a video extension (and not a hidden one, see the module docstring)."""
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def find_videos(folder: Path) -> list[Path]:
    """The video files in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if is_video_file(p))


def load_images(folder: Path, options: OpenOptions) -> Sequence:
    """Open a folder of images (see the module docstring)."""
    issues = Issues()
    files, timestamps = _timestamped(find_images(folder), options.fps or DEFAULT_FPS, issues)
    candidates = [FrameRecord(i, t, f) for i, (t, f) in enumerate(zip(timestamps, files))]
    return _sequence(folder, folder, "images", candidates, options, issues)


def load_video(video: Path, options: OpenOptions) -> Sequence:
    """Open a video file (see the module docstring)."""
    issues = Issues()
    try:
        capture = cv2.VideoCapture(opencv_path(video))
    except OSError as exc:
        raise DatasetError(f"{video}: cannot open the video ({exc})") from None
    try:
        if not capture.isOpened():
            raise DatasetError(f"{video}: cannot open the video (not a video OpenCV can decode)")
        fps = options.fps or capture.get(cv2.CAP_PROP_FPS)
        if not (math.isfinite(fps) and fps > 0):
            issues.note(f"{video}: unknown frame rate; assuming {DEFAULT_FPS} fps")
            fps = DEFAULT_FPS
        count = _frame_count(capture, video)
    finally:
        capture.release()
    candidates = [FrameRecord(n, n / fps, n) for n in range(count)]
    return _sequence(video, video.parent, "video", candidates, options, issues, video=video)


def _frame_count(capture: cv2.VideoCapture, video: Path) -> int:
    """The number of frames in the opened ``video``: as its container says, else counted by decoding.

    The container's count is not trusted beyond one frame per byte of the file: a garbled header can
    claim billions of frames (or a negative or non-finite number), and a list of billions of frames
    would not fit in memory. Decoding stops where the file does.
    """
    claimed = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    if math.isfinite(claimed) and 0 < claimed <= video.stat().st_size:
        return int(claimed)
    count = 0
    while capture.grab():
        count += 1
    return count


def _sequence(
    path: Path,
    folder: Path,
    format: str,
    candidates: list[FrameRecord],
    options: OpenOptions,
    issues: Issues,
    video: Path | None = None,
) -> Sequence:
    """The sequence of ``candidates`` with the camera, trajectory and ground truth found in ``folder``."""
    name = sequence_name(path)
    camera, _ = configured_camera(folder, options)
    camera = camera or _camera_from_names(name, folder)
    if camera is None:
        raise DatasetError(f"{path}: no camera intrinsics for this {format} dataset; put a camera.yaml "
                           f"(width height fx fy cx cy) in {folder} or pass camera=")
    trajectory_file = find_trajectory_file(folder, options)
    trajectory = None if trajectory_file is None else load_trajectory(trajectory_file, issues)
    return Sequence(
        path=path,
        name=name,
        format=format,
        camera=camera,
        records=attach_poses(candidates, trajectory, options.max_difference, issues, options.pose_time_offset),
        issues=issues,
        options=options,
        gt_heightmap=load_gt_heightmap(folder, issues),
        video=video,
        reference=load_reference(folder, issues, (trajectory_file, trajectory)),
    )


def _camera_from_names(name: str, folder: Path) -> PinholeCamera | None:
    """Intrinsics named by the sequence name or its folder's name (TUM freiburg1/2/3, ICL-NUIM)."""
    return camera_from_name(name) or camera_from_name(sequence_name(folder))


def _timestamped(files: list[Path], fps: float, issues: Issues) -> tuple[list[Path], list[float]]:
    """(files in time order, their timestamps) from the names if all are times, else by index at ``fps``."""
    stems = [f.stem for f in files]
    if all(_SECONDS_NAME.fullmatch(s) for s in stems):
        timestamps = [float(s) for s in stems]
    elif all(_NANOSECONDS_NAME.fullmatch(s) for s in stems):
        timestamps = [int(s) * 1e-9 for s in stems]
    else:
        issues.note(f"image names are not timestamps: frame i has t = i / {fps:g} s")
        ordered = sorted(files, key=_natural_key)
        return ordered, [i / fps for i in range(len(ordered))]
    order = sorted(range(len(files)), key=lambda i: timestamps[i])
    return [files[i] for i in order], [timestamps[i] for i in order]


def _natural_key(path: Path) -> list[int | str]:
    """Sort key comparing the digit runs of a file name as numbers (``2.png`` before ``10.png``)."""
    # isdecimal, not isdigit: a digit such as '²' is no decimal digit, and int() refuses it.
    return [int(part) if part.isdecimal() else part.lower() for part in _DIGITS.split(path.name)]
