"""The camera-tracking peer: Open3D's RGB-D odometry, frame to frame, from a given first pose.

Each frame is aligned to the last tracked frame with ``open3d.pipelines.odometry.compute_rgbd_odometry``
(dense photometric and geometric alignment, ``RGBDOdometryJacobianFromHybridTerm``, Open3D's default
options, identity as the initial motion, or with ``constant_velocity`` the previous frame's motion);
its pose is the last tracked pose times that motion. A frame
Open3D cannot align is skipped and counted, and the next frame is aligned to the last tracked one.
Open3D reports success even where no pixel found a correspondence (it then returns the initial
motion) or too few did to mean anything, so a frame also counts as not tracked when fewer than
``min_overlap`` of its pixels have one (the count is the translation diagonal of the information
matrix Open3D returns). Frames without valid depth are skipped before alignment. The frames are taken as ideal pinhole images: open the dataset with
``undistort=True``.

Open3D is an optional dependency (``pip install -e ".[baselines]"``); without it
:func:`open3d_rgbd_odometry` raises :class:`~heightfusion.baselines.BaselineUnavailable`.

    from heightfusion.baselines.open3d_odometry import open3d_rgbd_odometry
    run = open3d_rgbd_odometry(hf.datasets.open(path, undistort=True))
    run.poses, run.ms_per_frame, run.skipped
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..camera import PinholeCamera
from ..datasets.frame import Frame
from ..poses import validate_pose
from .tsdf import BaselineUnavailable

_INSTALL_HINT = 'Open3D RGB-D odometry needs Open3D: pip install -e ".[baselines]" (or pip install open3d)'
# Skip reasons: the keys of ``OdometryRun.skipped``.
NO_DEPTH = "no depth"
NOT_TRACKED = "not tracked"  # Open3D's odometry reported failure


@dataclass(frozen=True)
class Open3DOdometryConfig:
    """Open3D's ``OdometryOption`` (its defaults): depth range used, metres; largest depth difference
    of a correspondence, metres; Gauss-Newton iterations per pyramid level, finest level first. And
    ``min_overlap``: the least share of a frame's pixels with a correspondence for it to count as tracked;
    ``constant_velocity``: start each alignment from the previous frame's motion instead of identity."""

    depth_min: float = 0.0
    depth_max: float = 4.0
    depth_diff_max: float = 0.03
    iterations: tuple[int, ...] = (20, 10, 5)
    min_overlap: float = 0.05
    constant_velocity: bool = False

    def __post_init__(self) -> None:
        for name in ("depth_min", "depth_max", "depth_diff_max", "min_overlap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
                raise ValueError(f"Open3DOdometryConfig.{name} must be a non-negative number, got {value!r}")
        if not self.depth_max > self.depth_min:
            raise ValueError(f"Open3DOdometryConfig.depth_max ({self.depth_max}) must exceed depth_min ({self.depth_min})")
        if not self.iterations or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.iterations):
            raise ValueError(f"Open3DOdometryConfig.iterations must be positive integers, got {self.iterations!r}")


@dataclass
class OdometryRun:
    """What :func:`open3d_rgbd_odometry` did.

    Attributes:
        poses: (timestamp, ``T_wc``) of the start frame and of every tracked frame.
        ms_per_frame: mean wall time of one alignment (image conversion included), milliseconds;
            NaN when no frame was aligned.
        attempted: frames after the start frame that had depth (and so were aligned).
        skipped: reason (NO_DEPTH: none or no valid pixel, NOT_TRACKED) -> frames.
    """

    poses: list[tuple[float, np.ndarray]] = field(default_factory=list)
    ms_per_frame: float = math.nan
    attempted: int = 0
    skipped: Counter = field(default_factory=Counter)

    @property
    def tracked(self) -> int:
        """Frames tracked after the start frame."""
        return max(len(self.poses) - 1, 0)


def _open3d():
    try:
        import open3d as o3d
    except ImportError as exc:
        raise BaselineUnavailable(_INSTALL_HINT) from exc
    return o3d


def _rgbd(o3d, frame: Frame, depth_max: float):
    """The frame as an Open3D RGB-D image (intensity from the colour, depth in metres, 0 = no value)."""
    depth = np.where(np.isfinite(frame.depth) & (frame.depth > 0), frame.depth, 0.0).astype(np.float32)
    return o3d.geometry.RGBDImage.create_from_color_and_depth(
        o3d.geometry.Image(np.ascontiguousarray(frame.image)), o3d.geometry.Image(depth),
        depth_scale=1.0, depth_trunc=depth_max, convert_rgb_to_intensity=True)


def _intrinsic(o3d, camera: PinholeCamera):
    return o3d.camera.PinholeCameraIntrinsic(camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy)


def open3d_rgbd_odometry(
    frames: Iterable[Frame], start_pose: np.ndarray | None = None, config: Open3DOdometryConfig | None = None
) -> OdometryRun:
    """Track ``frames`` with Open3D's RGB-D odometry (module docstring).

    The first frame with depth starts the trajectory at ``start_pose``, or at its own ``T_wc`` when
    ``start_pose`` is None (ValueError when it has none). Frames before it and frames without depth
    are skipped (NO_DEPTH).

    Raises:
        BaselineUnavailable: Open3D is not installed.
    """
    o3d = _open3d()
    odometry = o3d.pipelines.odometry
    config = Open3DOdometryConfig() if config is None else config
    option = odometry.OdometryOption(o3d.utility.IntVector(list(config.iterations)), config.depth_diff_max,
                                     config.depth_min, config.depth_max)
    jacobian = odometry.RGBDOdometryJacobianFromHybridTerm()
    run, seconds = OdometryRun(), 0.0
    previous = intrinsic = None  # the last tracked frame's RGB-D image; the frames' intrinsics
    motion = np.eye(4)  # the last tracked frame's motion, T_previous_current
    for frame in frames:
        if frame.depth is None or frame.image is None or not np.isfinite(frame.depth).any():
            run.skipped[NO_DEPTH] += 1
            continue
        if previous is None:
            pose = frame.T_wc if start_pose is None else start_pose
            if pose is None:
                raise ValueError(f"frame {frame.index} (t={frame.timestamp:.6f}) starts the odometry but has no pose; "
                                 f"pass start_pose")
            run.poses.append((frame.timestamp, validate_pose(pose, "start_pose").copy()))
            previous, intrinsic = _rgbd(o3d, frame, config.depth_max), _intrinsic(o3d, frame.camera)
            continue
        start = time.perf_counter()
        current = _rgbd(o3d, frame, config.depth_max)
        # Aligns the current frame (source) to the last tracked one (target): T_target_source.
        guess = motion if config.constant_velocity else np.eye(4)
        ok, T_prev_cur, information = odometry.compute_rgbd_odometry(current, previous, intrinsic, guess, jacobian,
                                                                     option)
        seconds += time.perf_counter() - start
        run.attempted += 1
        if not ok or np.asarray(information)[5, 5] < config.min_overlap * frame.depth.size:
            run.skipped[NOT_TRACKED] += 1
            continue
        motion = np.asarray(T_prev_cur)
        run.poses.append((frame.timestamp, run.poses[-1][1] @ motion))
        previous = current
    run.ms_per_frame = 1e3 * seconds / run.attempted if run.attempted else math.nan
    return run
