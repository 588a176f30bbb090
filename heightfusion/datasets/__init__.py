"""Dataset readers: :func:`open` detects the format of a folder or video file and returns a :class:`Sequence`.

Formats: TUM RGB-D and the ICL-NUIM TUM-compatible release (:mod:`.tum`), EuRoC MAV (:mod:`.euroc`),
a folder of images or a video file plus a TUM trajectory (:mod:`.folder`). Iterating a sequence
yields :class:`Frame` objects: RGB uint8 image, float32 depth in metres (NaN = no value) or None,
``T_wc`` 4x4 float64 or None. Bad data (a missing or broken file, a garbled line, a frame with no
depth match or no pose) skips that item, is counted in ``Sequence.skipped`` and never ends a run.

Example:
    >>> import heightfusion as hf
    >>> sequence = hf.datasets.open(hf.datasets.sample_path())
    >>> sequence.format, len(sequence), sequence.camera.shape
    ('tum', 60, (240, 320))
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..camera import PinholeCamera
from . import euroc, folder, tum
from .base import DatasetError, OpenOptions, Sequence
from .frame import Frame
from .trajectory import MAX_INTERPOLATION_GAP, Trajectory, associate, read_tum_trajectory

__all__ = [
    "SAMPLE",
    "MAX_INTERPOLATION_GAP",
    "DatasetError",
    "Frame",
    "Sequence",
    "Trajectory",
    "associate",
    "open",
    "open_for_depth",
    "read_tum_trajectory",
    "sample_path",
]

#: Name of the bundled sample sequence (datasets/README.md).
SAMPLE = "sample_floor"
#: Largest ``pose_time_offset`` accepted, seconds: clocks a second or more apart are a wrong file, not an offset.
MAX_POSE_TIME_OFFSET_S = 1.0


def sample_path(name: str = SAMPLE) -> Path:
    """Folder of a bundled sample sequence (installed with the package as ``heightfusion.bundled``)."""
    from importlib import resources

    path = Path(str(resources.files("heightfusion.bundled") / name))
    if not path.is_dir():
        raise DatasetError(f"bundled sample {name!r} is not installed (looked in {path}); reinstall heightfusion")
    return path

_EXPECTED = (
    "a TUM RGB-D / ICL-NUIM folder (rgb.txt or associations.txt), a EuRoC MAV folder (mav0/cam0/data.csv), "
    "a folder of .png/.jpg images, or a video file"
)


def open(
    path: str | os.PathLike,
    *,
    trajectory: str | os.PathLike | None = None,
    camera: PinholeCamera | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    undistort: bool = False,
    max_difference: float = 0.02,
    fps: float | None = None,
    require_depth: bool = True,
    load_depth: bool = True,
    pose_time_offset: float = 0.0,
    depth_time_offset: float | None = None,
) -> Sequence:
    """Open the dataset at ``path``, detecting its format.

    Args:
        path: a dataset folder or a video file.
        trajectory: a TUM-format trajectory of camera poses to use instead of the dataset's own.
        camera: intrinsics to use instead of ``camera.yaml`` or the format's defaults.
        stride: keep every ``stride``-th frame (after association).
        max_frames: keep at most this many frames (after ``stride``); None keeps all.
        undistort: undistort images (and depth) of a camera with distortion; the sequence's camera
            then has none. Without it images are returned as recorded.
        max_difference: largest time difference, seconds, when matching images to depth images and poses.
        fps: frame rate of an image folder without timestamped names, or to override a video's.
        require_depth: skip (and count) images without a depth image in an RGB-D dataset; False keeps
            them as frames with ``depth=None`` (for monocular stereo, which uses images only).
        load_depth: False gives every frame ``depth=None`` without reading depth images (monocular
            stereo: reading and undistorting a 640x480 depth image costs about as much as its colour image).
        pose_time_offset: seconds the trajectory's clock is ahead of the images': a frame taken at ``t`` gets
            the trajectory's pose at ``t + pose_time_offset`` (motion capture a few milliseconds out of step
            with the camera; ``heightfusion camera-offset`` measures it). The reference trajectory that
            ``metrics.json`` scores against stays as published.
        depth_time_offset: seconds the trajectory's clock is ahead of the depth images' own timestamps (TUM's
            ``depth.txt``): a depth image stamped ``t`` was taken at the trajectory's pose at ``t +
            depth_time_offset`` and is moved from there into the colour camera at the frame's pose
            (:func:`heightfusion.camera_offset.depth_at_colour_camera`). A Kinect's colour and depth streams are
            neither synchronised nor stamped at exposure, so a turning camera's depth is pixels off its image;
            ``heightfusion camera-offset`` measures it (:func:`heightfusion.depth_clock.fit_depth_time_offset`).
            None (default): each depth image is taken as seen from its frame's pose.

    Raises:
        DatasetError: ``path`` is not a dataset (or its configuration files are broken).
        ValueError: an option is out of range.
    """
    path = Path(path)
    options = _options(trajectory, camera, stride, max_frames, undistort, max_difference, fps, require_depth, load_depth,
                       pose_time_offset, depth_time_offset)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder; expected {_EXPECTED}")
    if path.is_file():
        if folder.is_video_file(path):
            return folder.load_video(path, options)
        raise DatasetError(f"{path}: not a dataset; expected {_EXPECTED}")
    if euroc.detect(path):
        return euroc.load(path, options)
    if tum.detect(path):
        return tum.load(path, options)
    if folder.find_images(path):
        return folder.load_images(path, options)
    videos = folder.find_videos(path)
    if len(videos) == 1:
        return folder.load_video(videos[0], options)
    if videos:
        raise DatasetError(f"{path}: holds {len(videos)} video files; open one of them")
    raise DatasetError(f"{path}: not a dataset; expected {_EXPECTED}")


def open_for_depth(path: str | os.PathLike, depth: str, **options) -> tuple[Sequence, Sequence]:
    """(frames, with_depth): the recording at ``path`` opened for the depth source ``depth`` ("sensor",
    "mvs" or "auto", as :func:`heightfusion.replay` takes it).

    ``frames`` is what gets fused: sensor depth skips (and counts) images without a depth image, monocular
    stereo ("mvs") reads no depth images at all. ``with_depth`` is the same recording with its depth images
    where it has them, which still find the floor (up axis "auto") and the map's extent before stereo has
    run; it is ``frames`` itself when the two would not differ. ``options``: :func:`open`'s other keywords.
    """
    from ..pipeline import DEPTH_SOURCES  # fusion's module: imported on use

    if depth not in DEPTH_SOURCES:
        raise ValueError(f"depth source must be one of {', '.join(DEPTH_SOURCES)}, got {depth!r}")
    frames = open(path, require_depth=depth == "sensor", load_depth=depth != "mvs", **options)
    if depth == "mvs" and frames.has_depth_images:
        return frames, open(path, require_depth=False, **options)
    return frames, frames


def _options(
    trajectory: str | os.PathLike | None,
    camera: PinholeCamera | None,
    stride: int,
    max_frames: int | None,
    undistort: bool,
    max_difference: float,
    fps: float | None,
    require_depth: bool = True,
    load_depth: bool = True,
    pose_time_offset: float = 0.0,
    depth_time_offset: float | None = None,
) -> OpenOptions:
    """Checked options; ValueError naming the first one out of range."""
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 0):
        raise ValueError(f"max_frames must be a non-negative integer or None, got {max_frames!r}")
    if not (isinstance(max_difference, (int, float)) and math.isfinite(max_difference) and max_difference > 0):
        raise ValueError(f"max_difference must be a positive number of seconds, got {max_difference!r}")
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    offsets = {"pose_time_offset": pose_time_offset}
    if depth_time_offset is not None:
        offsets["depth_time_offset"] = depth_time_offset
    for name, seconds in offsets.items():
        if not (isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
                and abs(seconds) <= MAX_POSE_TIME_OFFSET_S):
            raise ValueError(f"{name} must be a number of seconds within +-{MAX_POSE_TIME_OFFSET_S:g}, got {seconds!r}")
    if camera is not None and not isinstance(camera, PinholeCamera):
        raise ValueError(f"camera must be a PinholeCamera, got {type(camera).__name__}")
    return OpenOptions(
        trajectory=None if trajectory is None else Path(trajectory),
        camera=camera,
        stride=stride,
        max_frames=max_frames,
        undistort=bool(undistort),
        max_difference=float(max_difference),
        fps=None if fps is None else float(fps),
        require_depth=bool(require_depth) and bool(load_depth),
        load_depth=bool(load_depth),
        pose_time_offset=float(pose_time_offset),
        depth_time_offset=None if depth_time_offset is None else float(depth_time_offset),
    )
