"""The depth stream's clock: when a recording's depth images were taken, on the trajectory's clock.

An RGB-D sensor whose colour and depth streams are not synchronised (a Kinect v1: the TUM RGB-D recordings)
stamps each stream when its frames arrive, after latencies of their own. A camera turning at 60 deg/s moves
a pixel by about 0.1 px per millisecond at 640x480, so a depth image a few milliseconds off its colour
image lands pixels off it, and a map fused at the colour image's pose is smeared by it.

The depth images say when they were taken by themselves: two depth images of a static scene agree, point
for point, only when each is placed at the pose it was taken from. :func:`fit_depth_time_offset` moves every
depth image along the trajectory (the frames' poses and their velocities) to a common offset from its own
timestamp, and keeps the offset at which frame pairs' depths agree best. ``datasets.open(...,
depth_time_offset=s)`` then moves each depth image from there into the colour camera.

On the TUM fr1/rpy frames, whose depth stamps follow the images' by 0-13 ms: the depth was taken about 17 ms
before the trajectory's time of its stamp, 7 ms before the colour image's (README, Depth clock).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from .camera import PinholeCamera
from .camera_offset import MAX_TIME_OFFSET_S, body_velocities, least_of_scan
from .datasets.frame import Frame
from .poses import invert_pose
from .tracking.se3 import exp_se3

#: Step of the scan over offsets, seconds; a parabola through the least and its neighbours refines it.
_STEP_S = 0.0025
#: About this many points of each first frame's depth are compared (every few pixels' along rows and columns).
_POINTS = 20000


@dataclass(frozen=True)
class DepthTimeOffset:
    """The fitted clock offset of a recording's depth images and how much it explains.

    Attributes:
        seconds: the trajectory's clock ahead of the depth images' timestamps (``depth_time_offset`` of
            :func:`heightfusion.datasets.open`): the depth stamped t was taken at the trajectory's pose at
            t + seconds.
        pose_time_offset: the frames' own offset the fit was made at (``pose_time_offset`` they were opened
            with); ``seconds - pose_time_offset`` is how far the depth's stamps are from being the images'.
        pairs: frame pairs compared.
        before: mean over the pairs of the median relative depth disagreement (percent) with each depth image
            at its frame's pose (``depth_time_offset=None``).
        after: ... with each depth at the trajectory's pose at its stamp plus ``seconds``.
        spread: seconds between the offsets fitted on alternate pairs (the even and the odd ones).
    """

    seconds: float
    pose_time_offset: float
    pairs: int
    before: float
    after: float
    spread: float

    def summary(self) -> str:
        lag = 1000 * (self.seconds - self.pose_time_offset)
        return (f"depth time offset {1000 * self.seconds:+.1f} ms (the trajectory's clock ahead of the depth images' "
                f"stamps; {lag:+.1f} ms from the images' offset): {self.pairs} frame pairs' depths disagree by "
                f"{self.before:.3f} % (median, mean over pairs) each at its frame's pose, {self.after:.3f} % at it "
                f"(alternate pairs' fits differ by {1000 * self.spread:.1f} ms)")


def fit_depth_time_offset(frames: Iterable[Frame], pose_time_offset: float = 0.0, gaps: Iterable[int] = (2, 4),
                          every: int = 3, max_offset: float = MAX_TIME_OFFSET_S) -> DepthTimeOffset:
    """The clock offset of the depth images, within ``pose_time_offset`` +- ``max_offset`` seconds, at which
    frame pairs' depth images agree best.

    ``frames`` come from :func:`heightfusion.datasets.open` with ``depth_time_offset=None`` (the depth as
    recorded) and ``pose_time_offset`` (their poses are the trajectory's at their timestamps plus it); frames
    without depth, pose or depth timestamp are passed over. The depth stamped ``t_d`` of a frame at ``t`` is
    placed at ``T_wc exp((t_d + s - pose_time_offset - t) xi)`` (``xi``: the frame's body velocity, central
    differences of the poses) for a candidate offset ``s``; pairs ``gaps`` frames apart (every ``every``-th
    first frame) are compared by projecting the first one's depth (about 20000 points) into the second's view
    and taking the median relative difference to the second's depth there (every second pixel's, bilinear, where
    it has depth all around). The mean of the pairs' medians is scanned every 2.5 ms and refined by a parabola
    through the least and its neighbours. The frames are read once; of each, its points and depth are kept (about
    0.5 MB at 640x480): give a long recording's first few hundred frames.

    Raises:
        ValueError: fewer than 4 pairs, or bad ``gaps``/``every``/``max_offset``.
    """
    gaps = sorted(set(int(g) for g in gaps))
    if not gaps or gaps[0] < 1 or every < 1:
        raise ValueError(f"gaps and every must be positive frame counts, got {gaps}, {every}")
    if not (math.isfinite(max_offset) and max_offset > 0):
        raise ValueError(f"max_offset must be a positive number of seconds, got {max_offset!r}")
    camera = None
    stamps, depth_stamps, poses, points, depths = [], [], [], [], []  # of the usable frames: not their images
    for frame in frames:
        if frame.depth is None or frame.T_wc is None or frame.depth_timestamp is None:
            continue
        camera = frame.camera  # every frame's: a sequence has one camera
        stamps.append(frame.timestamp)
        depth_stamps.append(frame.depth_timestamp)
        poses.append(frame.T_wc)
        points.append(_points(camera, frame.depth))
        depths.append(np.ascontiguousarray(frame.depth[::2, ::2], dtype=np.float32))  # sampled at half resolution
    pairs = np.array([(i, i + g) for i in range(0, len(poses), every) for g in gaps if i + g < len(poses)],
                     dtype=np.int64).reshape(-1, 2)
    if len(pairs) < 4:
        raise ValueError(f"a depth time offset needs at least 4 pairs of frames with depth images, their own depth "
                         f"timestamps and poses; got {len(pairs)} from {len(poses)} such frames")
    velocities = body_velocities(np.array(stamps), poses)
    lags = np.array(depth_stamps) - np.array(stamps)

    def disagreement(subset: np.ndarray, depth_poses: list[np.ndarray]) -> float:
        medians = []
        for i, j in pairs[subset]:
            T = invert_pose(depth_poses[j]) @ depth_poses[i]
            X = points[i] @ T[:3, :3].T + T[:3, 3]
            z = X[:, 2]
            ahead = z > 1e-6
            u = ((camera.fx * X[ahead, 0] / z[ahead] + camera.cx) / 2).astype(np.float32)  # half-resolution pixels
            v = ((camera.fy * X[ahead, 1] / z[ahead] + camera.cy) / 2).astype(np.float32)
            # Bilinear: NaN where a neighbour has no depth (an edge, a hole) or the point falls outside.
            seen = cv2.remap(depths[j], u[:, None], v[:, None], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=np.nan)[:, 0]
            both = np.isfinite(seen)
            if both.any():
                medians.append(np.median(np.abs(z[ahead][both] - seen[both]) / seen[both]))
        return 100 * float(np.mean(medians)) if medians else math.inf

    def at(offset: float) -> list[np.ndarray]:
        return [T @ exp_se3((lag + offset - pose_time_offset) * xi) for T, lag, xi in zip(poses, lags, velocities)]

    offsets = pose_time_offset + np.arange(-max_offset, max_offset + _STEP_S / 2, _STEP_S)
    placed = [at(s) for s in offsets]

    def best(subset: np.ndarray) -> float:
        return least_of_scan(offsets, np.array([disagreement(subset, p) for p in placed]))

    every_pair = np.arange(len(pairs))
    seconds = best(every_pair)
    return DepthTimeOffset(seconds=seconds, pose_time_offset=pose_time_offset, pairs=len(pairs),
                           before=disagreement(every_pair, poses), after=disagreement(every_pair, at(seconds)),
                           spread=abs(best(every_pair[::2]) - best(every_pair[1::2])))


def _points(camera: PinholeCamera, depth: np.ndarray) -> np.ndarray:
    """(N, 3) float32 camera-frame points of the depth at every few pixels along rows and columns (about
    :data:`_POINTS` of them; where it has a value)."""
    step = max(1, round(math.sqrt(camera.width * camera.height / _POINTS)))
    v, u = np.mgrid[0 : camera.height : step, 0 : camera.width : step]
    d = depth[::step, ::step]
    known = np.isfinite(d)
    d, u, v = d[known], u[known], v[known]
    return np.stack([(u - camera.cx) / camera.fx * d, (v - camera.cy) / camera.fy * d, d], axis=1).astype(np.float32)
