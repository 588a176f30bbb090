"""One frame through the mapping pipeline: depth (sensor or motion stereo), then fusion.

Shared by offline replay and the live app, so both treat frames alike: a frame that cannot be fused
(no pose, no depth yet, a bad image) is skipped with a reason that the caller counts, never an error
that ends the run.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .datasets.frame import Frame
from .depth.worker import StereoProcess, StereoWorkerError
from .fusion import FrameError, FusionConfig, FusionStats, HeightMapFuser
from .metrics import StageTimer

#: "sensor": the frames' depth images; "mvs": plane-sweep stereo on images and poses; "auto": sensor
#: depth where a frame has it, else stereo.
DEPTH_SOURCES = ("sensor", "mvs", "auto")

#: Smallest height sigma that fusion gives a vertex measured by motion stereo, metres. Stereo errors
#: are correlated across frames (the same keyframes and image texture enter many estimates), so
#: averaging them stops paying off: on the synthetic floor (60 frames, depths 0.5-1.5 m) the fused
#: heights erred by 2.0 mm (median) while the sensor floor of 0.2 mm let them claim 0.4 mm, and only
#: 16 % lay within 1 sigma; with 2 mm, 59 % do and the smooth-area RMSE drops from 4.9 to 4.4 mm.
STEREO_SIGMA_FLOOR = 0.002


@dataclass
class FusedFrame:
    """A frame that was fused: the depth used (metres, NaN where none), its sigma or None, fusion stats, the
    pose it was fused at (tracked, or as given), and for stereo depth with uncertain poses the depth error those
    poses cause (:attr:`heightfusion.depth.DepthEstimate.pose_sigma`), else None."""

    depth: np.ndarray
    sigma: np.ndarray | None
    stats: FusionStats
    T_wc: np.ndarray | None = None
    pose_sigma: np.ndarray | None = None


@dataclass
class SkippedFrame:
    """A frame that was not fused; ``reason`` is what callers count; ``detail`` says more (or None);
    ``T_wc`` is the pose it got when one was settled (e.g. stereo had no sources yet), else None."""

    reason: str
    detail: str | None = None
    T_wc: np.ndarray | None = None


class FramePipeline:
    """Fuses frames into ``fuser``'s map with depth from ``depth`` (one of :data:`DEPTH_SOURCES`).

    Args:
        fuser: the fusion of the map.
        depth: the depth source.
        stereo, keyframes: settings of :class:`heightfusion.depth.MotionStereo` (when stereo is used).
        timer: stages are timed into it ("track", "stereo", and the fusion's own stages).
        tracker: a :class:`heightfusion.tracking.Tracker` that gives each frame its pose (refined or
            estimated), or None to use the frames' poses as they are.
        stereo_process: once :meth:`prefetch` is used, run the stereo in a child process
            (:class:`heightfusion.depth.worker.StereoProcess`) rather than in this one: a thread shares the
            GIL with the caller's GL work and hardly overlaps it. Should the child fail, stereo goes on in
            this process with a new keyframe window (``stereo_process_error`` says why).
        pose_sigma: how far the given poses err, (metres, degrees), one standard deviation per axis of each
            pose's own error (:func:`given_pose_covariance`), or None: exact. Frames used at their given pose
            then carry that covariance into fusion (the map's systematic sigma, as an error shared with the
            frames around it; for sensor depth the weights too: ``HeightMapFuser.fuse(..., aligned_to_map=False)``)
            and into motion stereo, whose estimates then give the depth error of each pair's relative pose
            (``DepthEstimate.pose_sigma``), which fusion adds to the map's systematic sigma. Without it a map's
            sigma on real poses is far too small (on the real TUM frames 20 % of held-out sensor points and 6 %
            of monocular ones lay within 1 sigma; README, "Pose sigma").

    Attributes:
        poses: (timestamp, T_wc) of every frame whose pose was settled (fused, or passed to stereo),
            in order: what ``trajectory.txt`` holds.
        tracking: counts of how frames got their poses ("tracked", "given": used as given, e.g. before
            the map exists) when a tracker is used.
        stereo_process_error: why the stereo process failed, or None.

    Example:
        >>> import heightfusion as hf
        >>> grid = hf.HeightMap((-1.5, -1.5), 0.05, (61, 61))
        >>> pipeline = hf.FramePipeline(hf.HeightMapFuser(grid, hf.make_renderer("raymarch")), depth="sensor")
        >>> frame = next(iter(hf.datasets.open(hf.datasets.sample_path(), max_frames=1)))
        >>> type(pipeline.process(frame)).__name__
        'FusedFrame'
    """

    def __init__(self, fuser: HeightMapFuser, depth: str = "sensor", stereo=None, keyframes=None,
                 timer: StageTimer | None = None, tracker=None, stereo_process: bool = False,
                 pose_sigma: tuple[float, float] | None = None) -> None:
        if depth not in DEPTH_SOURCES:
            raise ValueError(f"depth source must be one of {', '.join(DEPTH_SOURCES)}, got {depth!r}")
        self.fuser = fuser
        self.depth = depth
        self.timer = timer if timer is not None else StageTimer()
        self.tracker = tracker
        self.given_covariance = None if pose_sigma is None else given_pose_covariance(*pose_sigma)
        self.poses: list[tuple[float, np.ndarray]] = []
        self.tracking: Counter = Counter()
        self._stereo_settings = (stereo, keyframes)
        self._motion = None  # created on first use: it needs torch
        self._use_process = stereo_process
        self._process = None  # the StereoProcess, started with the worker
        self.stereo_process_error: str | None = None
        # (frame, its stereo) of the frames handed to prefetch, oldest first; once there is a worker, every
        # stereo estimate runs on it, in the order the frames came, as the keyframe window needs.
        self._worker: ThreadPoolExecutor | None = None
        self._ahead: deque[tuple[Frame, Future]] = deque()

    def _motion_stereo(self):
        if self._motion is None:
            from .depth import MotionStereo

            self._motion = MotionStereo(*self._stereo_settings)
        return self._motion

    def prefetch(self, frame: Frame) -> bool:
        """Start ``frame``'s stereo depth on a worker thread (which hands it to the stereo process with
        ``stereo_process``); :meth:`process` of the same frame object then waits for it. The caller fuses
        (and draws) the frame before meanwhile. Only for a frame whose depth comes from stereo, with a pose
        and without a tracker (tracking needs the map the frame before makes); False when not started.
        Frames must then be processed in the order they were prefetched.
        """
        if self.tracker is not None or frame.T_wc is None or frame.image is None or not self._uses_stereo(frame):
            return False
        self._ahead.append((frame, self._stereo_worker().submit(self._timed_push, frame, self.given_covariance)))
        return True

    def close(self) -> None:
        """Wait for prefetched stereo and stop its worker thread and process (a pipeline that never prefetched
        has none)."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        if self._process is not None:
            self._process.close()
            self._process = None
        self._ahead.clear()

    def _stereo_worker(self) -> ThreadPoolExecutor:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heightfusion-stereo")
            if self._use_process:
                self._worker.submit(self._start_process)
        return self._worker

    def _start_process(self) -> None:
        """Start the stereo process (on the worker thread: it takes a second or two, importing torch)."""
        try:
            self._process = StereoProcess(*self._stereo_settings)
        except StereoWorkerError as exc:
            self.stereo_process_error = str(exc)

    def _uses_stereo(self, frame: Frame) -> bool:
        return not (self.depth == "sensor" or (self.depth == "auto" and frame.depth is not None))

    def _timed_push(self, frame: Frame, pose_covariance: np.ndarray | None):
        """(MotionStereoResult, ms) of ``frame``'s stereo (its pose erring with ``pose_covariance``): in the
        stereo process while it runs."""
        if self._process is not None:
            try:
                return self._process.push(frame.camera, frame.T_wc, frame.image, frame.timestamp, pose_covariance)
            except StereoWorkerError as exc:
                self.stereo_process_error = str(exc)
                self._process.close()
                self._process = None
        start = time.perf_counter()
        result = self._motion_stereo().push(frame.camera, frame.T_wc, frame.image, frame.timestamp, pose_covariance)
        return result, (time.perf_counter() - start) * 1e3

    def _stereo(self, frame: Frame, pose_covariance: np.ndarray | None):
        """``frame``'s MotionStereoResult: prefetched, or computed now (on the worker when there is one,
        after the frames before it)."""
        position = next((i for i, (ahead, _) in enumerate(self._ahead) if ahead is frame), None)
        if position is not None:
            for _ in range(position):  # prefetched before it but never processed: their stereo ran, unused
                self._ahead.popleft()
            result, ms = self._ahead.popleft()[1].result()
        elif self._worker is not None:
            result, ms = self._worker.submit(self._timed_push, frame, pose_covariance).result()
        else:
            result, ms = self._timed_push(frame, pose_covariance)
        self.timer.add("stereo", ms)
        return result

    def process(self, frame: Frame) -> FusedFrame | SkippedFrame:
        """Fuse ``frame``, or say why it was skipped."""
        if self.tracker is not None:
            with self.timer("track"):
                tracked = self.tracker.track(frame, self.fuser.grid)
            if not tracked.ok:
                return SkippedFrame(f"tracking: {tracked.reason}")
            self.tracking["tracked" if tracked.tracked else "given"] += 1
            frame = dataclasses.replace(frame, T_wc=tracked.T_wc)
            pose_covariance = tracked.covariance if tracked.covariance is not None else self.given_covariance
            aligned_to_map = tracked.covariance is not None
        elif frame.T_wc is None:
            return SkippedFrame("no pose")
        else:
            pose_covariance = self.given_covariance
            aligned_to_map = False
        result = self._fuse(frame, pose_covariance, aligned_to_map)
        if self.tracker is not None:
            self.tracker.accept(frame, frame.T_wc, self.fuser.grid)
        self.poses.append((frame.timestamp, frame.T_wc))
        result.T_wc = frame.T_wc
        return result

    def _fuse(self, frame: Frame, pose_covariance: np.ndarray | None = None,
              aligned_to_map: bool = False) -> FusedFrame | SkippedFrame:
        sigma = pose_sigma = None
        if not self._uses_stereo(frame):
            if frame.depth is None:
                return SkippedFrame("no depth")
            measured = frame.depth
        else:
            if frame.image is None:
                return SkippedFrame("no image")
            try:
                # A tracked pose's covariance is with respect to the map, which the keyframes were tracked
                # against too: their relative error is not the sum of the two (on the synthetic floor it made
                # the monocular map's sigma claim too little error: 92 % within 1 sigma).
                result = self._stereo(frame, None if aligned_to_map else pose_covariance)
            except ValueError as exc:
                return SkippedFrame("stereo error", str(exc))
            if result.estimate is None:
                return SkippedFrame(f"stereo: {result.reason}", result.detail)
            measured, sigma, pose_sigma = result.estimate.depth, result.estimate.sigma, result.estimate.pose_sigma
        try:
            stats = self.fuser.fuse(frame.camera, frame.T_wc, measured, frame.image, sigma=sigma,
                                    pose_covariance=pose_covariance, pose_sigma=pose_sigma,
                                    aligned_to_map=aligned_to_map)
        except FrameError as exc:  # a bad frame is skipped and counted; other errors are real failures
            return SkippedFrame("fusion error", str(exc))
        for stage, ms in stats.ms.items():
            self.timer.add(stage, ms)
        return FusedFrame(measured, sigma, stats, pose_sigma=pose_sigma)


def given_pose_covariance(metres: float, degrees: float) -> np.ndarray:
    """6x6 covariance of a given pose's error (camera-frame twist (v, w), metres and radians) that errs by
    ``metres`` along and ``degrees`` about each axis (one standard deviation, independent)."""
    for name, value in (("metres", metres), ("degrees", degrees)):
        if isinstance(value, bool) or not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
            raise ValueError(f"pose_sigma's {name} must be a number >= 0, got {value!r}")
    return np.diag([metres**2] * 3 + [math.radians(degrees) ** 2] * 3)


def uses_stereo(depth: str, sequence) -> bool:
    """Whether ``depth`` (one of :data:`DEPTH_SOURCES`) means stereo for ``sequence`` (a dataset)."""
    return depth == "mvs" or (depth == "auto" and getattr(sequence, "depth_scale", None) is None)


def fusion_config(stereo: bool, **settings) -> FusionConfig:
    """Fusion settings for a depth source: ``FusionConfig(**settings)``, with the stereo sigma floor
    (:data:`STEREO_SIGMA_FLOOR`) when the depth comes from stereo and ``sigma_floor`` is not given."""
    if stereo and settings.get("sigma_floor") is None:
        settings["sigma_floor"] = STEREO_SIGMA_FLOOR
    return FusionConfig(**{k: v for k, v in settings.items() if v is not None})
