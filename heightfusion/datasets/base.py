"""Machinery every dataset reader shares: the frame list, the :class:`Sequence` that loads it, skip counting.

A reader parses its format's index files into a list of :class:`FrameRecord` (timestamp, image file or
video frame number, depth file, pose) and hands it to :class:`Sequence`, which loads images and depth
lazily while iterating. Bad data never ends a run: each problem skips one item, is counted under a
reason in ``Sequence.skipped`` and described in ``Sequence.messages``.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from ..camera import PinholeCamera
from ..heightmap import HeightMap, load_heightmap
from ..poses import invert_pose
from .camera_yaml import load_camera_yaml
from .files import decode_image, opencv_path, read_file, read_text
from .frame import Frame
from .trajectory import Trajectory, read_tum_trajectory

# Skip reasons: the keys of ``Sequence.skipped``.
BAD_LINE = "bad line"  # a garbled line in an index, list or trajectory file (one line, not always a frame)
NO_DEPTH_MATCH = "no depth match"  # an image with no depth image within the maximum time difference
NO_POSE = "no pose"  # a frame the trajectory has no pose for
IMAGE_MISSING = "image missing"
IMAGE_UNREADABLE = "image unreadable"
DEPTH_MISSING = "depth missing"
DEPTH_UNREADABLE = "depth unreadable"
DEPTH_INVALID = "depth all invalid"  # every pixel 0, negative, NaN or infinite
SIZE_MISMATCH = "size mismatch"  # image or depth size differs from the camera's

CAMERA_FILE = "camera.yaml"
GT_HEIGHTMAP_FILE = "gt_heightmap.npz"
# Trajectory files a folder may carry, in order of preference.
TRAJECTORY_FILES = ("groundtruth.txt", "trajectory.txt")
# Trajectories to evaluate estimated poses against, in order of preference: the true poses beside a
# perturbed ground truth (``heightfusion synth --pose-noise``), else the ground truth.
REFERENCE_FILES = ("groundtruth_true.txt", "groundtruth.txt")
# How many timestamps a summary message lists.
_MESSAGE_EXAMPLES = 3


class DatasetError(ValueError):
    """The path is not a dataset this package can read (the CLI turns it into exit status 2)."""


@dataclass(frozen=True)
class OpenOptions:
    """Options of :func:`heightfusion.datasets.open`, passed on to every reader."""

    trajectory: Path | None = None
    camera: PinholeCamera | None = None
    stride: int = 1
    max_frames: int | None = None
    undistort: bool = False
    max_difference: float = 0.02
    fps: float | None = None
    require_depth: bool = True
    load_depth: bool = True
    pose_time_offset: float = 0.0
    depth_time_offset: float | None = None


@dataclass(frozen=True)
class FrameRecord:
    """One frame before loading: where its data lives and its pose.

    Attributes:
        index: position of the image in the dataset's own image list (file list, video frame number).
        timestamp: seconds.
        image: image file, or frame number in the sequence's video.
        depth: depth image file, or None for monocular data.
        T_wc: 4x4 camera-to-world pose, or None for a sequence without trajectory.
        depth_timestamp: the depth image's own timestamp, seconds, where the dataset gives one (TUM's
            ``depth.txt``: a Kinect's colour and depth streams are not synchronised); None otherwise.
        depth_T_wc: the trajectory's pose at the depth's time (``depth_time_offset`` of
            :func:`heightfusion.datasets.open`), from which the depth is moved to ``T_wc``; None: the depth is
            taken as seen from ``T_wc``.
    """

    index: int
    timestamp: float
    image: Path | int
    depth: Path | None = None
    T_wc: np.ndarray | None = None
    depth_timestamp: float | None = None
    depth_T_wc: np.ndarray | None = None


class Issues:
    """Skip counts by reason and human-readable messages, collected while reading a dataset."""

    def __init__(self) -> None:
        self.skipped: Counter[str] = Counter()
        self.messages: list[str] = []

    def skip(self, reason: str, message: str, count: int = 1) -> None:
        """Count ``count`` items skipped for ``reason`` and keep ``message``."""
        self.skipped[reason] += count
        self.messages.append(message)

    def note(self, message: str) -> None:
        """Keep a message about something that skipped nothing (a fallback, a missing optional file)."""
        self.messages.append(message)

    def copy(self) -> "Issues":
        """An independent copy."""
        other = Issues()
        other.skipped.update(self.skipped)
        other.messages.extend(self.messages)
        return other


def summarize_timestamps(timestamps: list[float]) -> str:
    """'t=1.000000, 2.000000, ... (n in all)' for a message about many frames."""
    shown = ", ".join(f"{t:.6f}" for t in timestamps[:_MESSAGE_EXAMPLES])
    more = f", ... ({len(timestamps)} in all)" if len(timestamps) > _MESSAGE_EXAMPLES else ""
    return f"t={shown}{more}"


class Sequence:
    """A dataset opened for reading: iterate it for :class:`~heightfusion.datasets.frame.Frame` objects.

    Attributes:
        path: the folder or video file opened.
        name: a short name (folder name or video file stem).
        format: "tum", "icl-nuim", "euroc", "images" or "video".
        camera: intrinsics of every frame (without distortion when opened with ``undistort=True``).
        depth_scale: depth-image units per metre, or None for monocular data.
        gt_heightmap: the folder's ``gt_heightmap.npz`` or None.
        reference: the trajectory estimated poses are judged against (:meth:`reference_trajectory`), or None.
        skipped: reason -> count of skipped items: those found when opening (over the whole dataset,
            before ``stride`` and ``max_frames``) plus those found during the latest iteration.
        messages: what was skipped or assumed, and why.

    ``len()`` is the number of frames iteration tries; frames whose files turn out to be missing or
    broken are skipped and counted, so iteration may yield fewer.
    """

    def __init__(
        self,
        *,
        path: Path,
        name: str,
        format: str,
        camera: PinholeCamera,
        records: list[FrameRecord],
        issues: Issues,
        options: OpenOptions,
        depth_scale: float | None = None,
        gt_heightmap: HeightMap | None = None,
        video: Path | None = None,
        reference: Trajectory | None = None,
        reference_offset: np.ndarray | None = None,
    ) -> None:
        self.path = path
        self.name = name
        self.format = format
        self.depth_scale = depth_scale
        self.gt_heightmap = gt_heightmap
        self._source_camera = camera
        self._undistort = options.undistort and camera.distortion is not None
        self._load_depth = options.load_depth
        self.camera = dataclasses.replace(camera, distortion=None) if self._undistort else camera
        self._records = records[:: options.stride][: options.max_frames]
        self._video = video
        self._opening_issues = issues
        self._issues = issues.copy()
        self.reference = reference
        self._reference_offset = np.eye(4) if reference_offset is None else reference_offset
        self._max_difference = options.max_difference

    @property
    def skipped(self) -> Counter[str]:
        """Reason -> count of skipped items (see the class docstring)."""
        return self._issues.skipped

    @property
    def messages(self) -> list[str]:
        """What was skipped or assumed, and why."""
        return self._issues.messages

    @property
    def has_depth_images(self) -> bool:
        """Whether the frames have depth images (read or not: ``load_depth``)."""
        return any(record.depth is not None for record in self._records)

    @property
    def has_depth_timestamps(self) -> bool:
        """Whether the depth images have timestamps of their own (``depth_time_offset`` of :func:`open` applies)."""
        return any(record.depth_timestamp is not None for record in self._records)

    @property
    def has_poses(self) -> bool:
        """Whether the frames carry poses (the sequence has a trajectory)."""
        return any(record.T_wc is not None for record in self._records)

    def reference_trajectory(self) -> list[tuple[float, np.ndarray]] | None:
        """(timestamp, ``T_wc``) of the reference pose of each frame the sequence tries, in the frames' world;
        None without a reference (a sequence with no ground truth).

        The reference is the folder's ``groundtruth_true.txt`` (the true poses of a synthetic sequence
        whose ``groundtruth.txt`` has a drifting error), else its ground truth, interpolated at the
        frame times as the frames' poses are; frames it has no pose for are left out.
        """
        if self.reference is None:
            return None
        poses = ((r.timestamp, self.reference.pose_at(r.timestamp, self._max_difference)) for r in self._records)
        return [(t, T @ self._reference_offset) for t, T in poses if T is not None]

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"Sequence(format={self.format!r}, name={self.name!r}, frames={len(self)}, path={str(self.path)!r})"

    def __iter__(self) -> Iterator[Frame]:
        return self.iter_frames()

    def iter_frames(self, stale: Callable[[float], bool] | None = None) -> Iterator[Frame]:
        """The frames, as iterating the sequence gives them. With ``stale``, a frame is passed over without
        reading its files when ``stale(t)`` says the next frame's timestamp t is already due: a player
        that has fallen behind the recording's pace skips what a camera would have replaced by then,
        rather than spending the time to decode it."""
        self._issues = self._opening_issues.copy()
        for record, image in self._images(stale):
            frame = self._load_frame(record, image)
            if frame is not None:
                yield frame

    def _images(self, stale: Callable[[float], bool] | None = None) -> Iterator[tuple[FrameRecord, np.ndarray | None]]:
        """(record, BGR image or None when it could not be read) for every record, in order; the records that
        ``stale`` passes over (see :meth:`iter_frames`) are left out."""
        records = self._records

        def passed_over(k: int) -> bool:
            return stale is not None and k + 1 < len(records) and stale(records[k + 1].timestamp)

        if self._video is None:
            for k, record in enumerate(records):
                if not passed_over(k):
                    yield record, self._read_image_file(record.image)
            return
        capture = cv2.VideoCapture(opencv_path(self._video))
        position = 0  # number of the frame the next grab() returns
        try:
            for k, record in enumerate(records):
                if passed_over(k):  # grabbed past by the next record read, never decoded
                    continue
                try:
                    while position < record.image and capture.grab():
                        position += 1
                    ok, image = capture.read() if position == record.image else (False, None)
                except cv2.error:  # a garbled chunk: OpenCV's own AVI reader asserts on its size
                    ok, image = False, None
                if ok:
                    position += 1
                else:
                    self._issues.skip(IMAGE_UNREADABLE, f"{self._describe(record)}: cannot decode")
                yield record, image if ok else None
        finally:
            capture.release()

    def _describe(self, record: FrameRecord) -> str:
        """The image file of ``record``, or its frame in the video, for messages."""
        return str(record.image) if self._video is None else f"{self._video} frame {record.image}"

    def _read_image_file(self, path: Path) -> np.ndarray | None:
        """The BGR image in ``path``, or None (counted) when missing or undecodable."""
        data = self._read_file(path, "image", IMAGE_MISSING, IMAGE_UNREADABLE)
        if data is None:
            return None
        image = decode_image(data, cv2.IMREAD_COLOR)
        if image is None:
            self._issues.skip(IMAGE_UNREADABLE, f"{path}: cannot decode image")
        return image

    def _read_file(self, path: Path, what: str, missing: str, unreadable: str) -> bytes | None:
        """The bytes of the ``what`` file ``path``, or None, counted as ``missing`` or ``unreadable``.

        An index file may name anything: a folder, a device, a name too long for the file system.
        """
        try:
            return read_file(path)
        except (FileNotFoundError, NotADirectoryError):
            self._issues.skip(missing, f"{path}: {what} file missing")
        except OSError as exc:
            self._issues.skip(unreadable, f"{path}: cannot read {what} file ({exc.strerror or exc})")
        return None

    def _load_frame(self, record: FrameRecord, bgr: np.ndarray | None) -> Frame | None:
        """The frame of ``record``, or None (counted) when its image or depth is unusable."""
        if bgr is None:
            return None
        if bgr.shape[:2] != self.camera.shape:
            self._issues.skip(SIZE_MISMATCH, f"{self._describe(record)}: image size {bgr.shape[1]}x{bgr.shape[0]} "
                              f"differs from the camera's {self.camera.width}x{self.camera.height}")
            return None
        depth = None
        if record.depth is not None and self._load_depth:
            depth = self._read_depth(record.depth)
            if depth is None:
                return None
        if self._undistort:
            bgr = self._source_camera.undistort_image(bgr)
            if depth is not None:
                depth = undistort_depth(depth, self._source_camera)
                # A lens model far off the image (a wild principal point) can map every valid pixel out.
                if not np.isfinite(depth).any():
                    self._issues.skip(DEPTH_INVALID, f"{record.depth}: no valid depth pixel after undistortion")
                    return None
        T_wc = None if record.T_wc is None else record.T_wc.copy()
        if depth is not None and T_wc is not None and record.depth_T_wc is not None:
            from ..camera_offset import depth_at_colour_camera  # here: it loads scipy's optimiser

            # The camera moved between the two exposures: the depth is re-projected from where it was taken.
            depth = depth_at_colour_camera(self.camera, depth, invert_pose(T_wc) @ record.depth_T_wc)
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return Frame(record.timestamp, image, depth, T_wc, self.camera, record.index, record.depth_timestamp)

    def _read_depth(self, path: Path) -> np.ndarray | None:
        """Depth in metres (float32, NaN where 0, negative or not finite), or None (counted) if unusable."""
        data = self._read_file(path, "depth", DEPTH_MISSING, DEPTH_UNREADABLE)
        if data is None:
            return None
        raw = decode_image(data, cv2.IMREAD_UNCHANGED)
        if raw is None or raw.ndim != 2:
            what = "cannot decode depth image" if raw is None else f"depth image has {raw.shape[2]} channels, expected 1"
            self._issues.skip(DEPTH_UNREADABLE, f"{path}: {what}")
            return None
        if raw.shape != self.camera.shape:
            self._issues.skip(SIZE_MISMATCH, f"{path}: depth size {raw.shape[1]}x{raw.shape[0]} differs "
                              f"from the camera's {self.camera.width}x{self.camera.height}")
            return None
        depth = raw.astype(np.float32) / np.float32(self.depth_scale)
        invalid = ~np.isfinite(depth) | (depth <= 0)
        if invalid.all():
            self._issues.skip(DEPTH_INVALID, f"{path}: no valid depth pixel")
            return None
        depth[invalid] = np.nan
        return depth


def undistort_depth(depth: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """``depth`` as the ideal pinhole ``camera`` sees it, never blended across depth edges
    (:meth:`heightfusion.lens.Undistortion.depth`)."""
    from ..lens import undistortion_for

    return undistortion_for(camera).depth(depth)


def configured_camera(folder: Path, options: OpenOptions) -> tuple[PinholeCamera | None, float | None]:
    """(camera, depth_scale) the user configured: ``options.camera``, else the folder's ``camera.yaml``.

    Either may be None (nothing configured; ``depth_scale`` comes only from ``camera.yaml``). A
    malformed ``camera.yaml`` raises DatasetError: a configuration error, not bad data.
    """
    camera = depth_scale = None
    camera_file = folder / CAMERA_FILE
    if camera_file.is_file():
        try:
            camera, depth_scale = load_camera_yaml(camera_file)
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
    return (options.camera or camera), depth_scale


def load_gt_heightmap(folder: Path, issues: Issues) -> HeightMap | None:
    """The folder's ``gt_heightmap.npz``, or None when absent or unreadable (noted in ``issues``)."""
    path = folder / GT_HEIGHTMAP_FILE
    if not path.is_file():
        return None
    try:
        return load_heightmap(path)
    except ValueError as exc:
        issues.note(f"ignoring ground-truth height map: {exc}")
        return None


def find_trajectory_file(folder: Path, options: OpenOptions, extra_patterns: tuple[str, ...] = ()) -> Path | None:
    """``options.trajectory``, else the folder's first trajectory file, else None."""
    if options.trajectory is not None:
        return options.trajectory
    return _first_file(folder, TRAJECTORY_FILES, extra_patterns)


def _first_file(folder: Path, names: tuple[str, ...], patterns: tuple[str, ...]) -> Path | None:
    """The first of ``names`` that is a file in ``folder``, else the first match of the first matching pattern."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    for pattern in patterns:
        matches = sorted(folder.glob(pattern))
        if matches:
            return matches[0]
    return None


def find_reference_file(folder: Path, extra_patterns: tuple[str, ...] = ()) -> Path | None:
    """The folder's first of REFERENCE_FILES, else the first match of ``extra_patterns``, else None."""
    return _first_file(folder, REFERENCE_FILES, extra_patterns)


def load_reference(
    folder: Path, issues: Issues, loaded: tuple[Path | None, Trajectory | None], extra_patterns: tuple[str, ...] = ()
) -> Trajectory | None:
    """The folder's reference trajectory (:func:`find_reference_file`), or None; ``loaded`` is the
    (file, trajectory) the frames' poses came from, reused when it is the same file. The reference only
    serves evaluation: an unreadable one is noted, not an error."""
    path = find_reference_file(folder, extra_patterns)
    if path is None:
        return None
    if loaded[0] is not None and path == loaded[0]:
        return loaded[1]
    try:
        return load_trajectory(path, issues)
    except DatasetError as exc:
        issues.note(f"no reference trajectory: {exc}")
        return None


def load_trajectory(path: Path, issues: Issues) -> Trajectory:
    """The TUM trajectory in ``path``; garbled lines are counted as BAD_LINE, an unreadable file raises DatasetError."""
    try:
        trajectory, problems = read_tum_trajectory(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read trajectory ({exc})") from None
    for problem in problems:
        issues.skip(BAD_LINE, problem)
    if len(trajectory) == 0:
        issues.note(f"{path}: no valid pose; every frame will be skipped for lack of a pose")
    return trajectory


def attach_poses(
    candidates: list[FrameRecord], trajectory: Trajectory | None, max_difference: float, issues: Issues,
    time_offset: float = 0.0, depth_time_offset: float | None = None,
) -> list[FrameRecord]:
    """``candidates`` with their poses from ``trajectory`` at their timestamps plus ``time_offset`` seconds (the
    trajectory's clock minus the images'); frames it has no pose for are skipped (NO_POSE). With
    ``depth_time_offset``, a record with a ``depth_timestamp`` also gets the pose at that time plus the offset
    (``depth_T_wc``); without a pose there the depth stays at the image's pose.

    Without a trajectory every frame keeps ``T_wc = None`` (noted once).
    """
    if trajectory is None:
        issues.note("no trajectory: frames carry no pose (T_wc is None)")
        return candidates
    records, missing = [], []
    for record in candidates:
        T_wc = trajectory.pose_at(record.timestamp + time_offset, max_difference)
        if T_wc is None:
            missing.append(record.timestamp)
            continue
        depth_T_wc = (None if record.depth_timestamp is None or depth_time_offset is None
                      else trajectory.pose_at(record.depth_timestamp + depth_time_offset, max_difference))
        records.append(dataclasses.replace(record, T_wc=T_wc, depth_T_wc=depth_T_wc))
    if missing:
        issues.skip(NO_POSE, f"{len(missing)} frame(s) without a pose within {max_difference} s "
                    f"({summarize_timestamps(missing)})", count=len(missing))
    return records


def read_text_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped line) of every non-empty, non-comment line; DatasetError if unreadable."""
    try:
        text = read_text(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    lines = ((n, line.strip()) for n, line in enumerate(text.splitlines(), start=1))
    return [(n, line) for n, line in lines if line and not line.startswith("#")]


def sequence_name(path: Path) -> str:
    """The folder name or file stem that names a sequence (also for relative paths such as '.')."""
    path = Path(os.path.abspath(path))
    return path.stem if path.is_file() else path.name
