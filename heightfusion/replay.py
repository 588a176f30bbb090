"""Offline replay: fuse a recorded sequence into a height map.

:func:`replay` fuses a dataset's depth images, or with ``depth="mvs"`` depth from monocular motion stereo
(:class:`heightfusion.depth.MotionStereo`: images and poses only; frames without enough parallax yet are
skipped and counted), and returns a :class:`ReplayResult`; :func:`heightfusion.outputs.write_map_outputs`
writes it as ``heightfusion replay`` does.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .datasets.frame import Frame
from .fusion import FusionConfig, HeightMapFuser
from .heightmap import HeightMap
from .metrics import StageTimer, evaluate, same_grid, smooth_mask_from_heights
from .outputs import run_metrics
from .pipeline import FramePipeline, SkippedFrame, fusion_config, given_pose_covariance, uses_stereo
from .poses import pose_to_tum, validate_pose
from .render import make_renderer
from .sizing import DEFAULT_EXTENT_M, grid_around_view, grid_for_sequence
from .tiles import window_for_run
from .tracking import TRACK_MODES, Tracker, TrackingConfig
from .sinks import FrameSink, log_processed
from .trajectory_eval import MIN_MATCHED, trajectory_errors
from .tracking.bootstrap import Bootstrapped
from .up_axis import UpAligned, default_up, up_rotation

if TYPE_CHECKING:  # the stereo needs torch: imported when "mvs" is asked for
    import numpy as np

    from .depth import KeyframeConfig, StereoConfig


@dataclass
class ReplayResult:
    """What :func:`replay` did.

    Attributes:
        grid: the fused map.
        frames_used: frames fused.
        skipped: reason -> count of frames (or lines) skipped, by the reader and by the fusion.
        seconds: wall-clock time of the fusion loop, reading frames included.
        ms_per_frame: mean milliseconds per fused frame, per fusion stage (and "read").
        truth: the dataset's ground-truth height map, or None (also when the map is on another grid).
        evaluation: :func:`heightfusion.metrics.evaluate` against it, or None.
        messages: what the dataset reader had to say (skipped lines, assumed intrinsics...).
        config: the fusion settings used.
        poses: (timestamp, T_wc) of every frame whose pose was settled, in order (``trajectory.txt``).
        tracking: with a tracker, how frames got their poses ("tracked", "given") and the mode.
        trajectory: :func:`heightfusion.trajectory_eval.trajectory_errors` of ``poses`` against the
            dataset's reference trajectory, or None when it has none.
        reference_poses: that reference trajectory (:meth:`Sequence.reference_trajectory`), or None.
        camera_offset: the camera offset the frames and the reference were moved by, or None.
        depth_offset: the depth viewpoint the depth images were moved from, or None.
        pose_time_offset: seconds the poses' clock was taken to be ahead of the images' (0: as recorded).
        depth_time_offset: seconds it was taken to be ahead of the depth images' own stamps, or None (each depth
            image seen from its frame's pose).
        pose_sigma: (metres, degrees) the given poses were taken to err by, or None (exact).

    Example:
        >>> import heightfusion as hf
        >>> result = hf.replay(max_frames=2, progress=False)
        >>> result.metrics()["frames"]
        {'used': 2, 'skipped': {}}
    """

    grid: HeightMap
    frames_used: int
    skipped: Counter
    seconds: float
    ms_per_frame: dict[str, float]
    truth: HeightMap | None = None
    evaluation: dict | None = None
    messages: list[str] = field(default_factory=list)
    config: FusionConfig | None = None
    poses: list = field(default_factory=list)
    tracking: dict | None = None
    trajectory: dict | None = None
    reference_poses: list | None = None
    camera_offset: np.ndarray | None = None
    depth_offset: np.ndarray | None = None
    pose_time_offset: float = 0.0
    depth_time_offset: float | None = None
    pose_sigma: tuple[float, float] | None = None

    @property
    def fps(self) -> float:
        return self.frames_used / self.seconds if self.seconds > 0 else math.nan

    def metrics(self) -> dict:
        """This run's entries of ``metrics.json`` (:func:`heightfusion.outputs.run_metrics`)."""
        metrics = run_metrics(self.frames_used, self.skipped, self.seconds, self.ms_per_frame, self.evaluation, self.messages)
        if self.tracking is not None:
            metrics["tracking"] = self.tracking
        if self.trajectory is not None:
            metrics["trajectory"] = self.trajectory
        for name, offset in (("camera_offset", self.camera_offset), ("depth_offset", self.depth_offset)):
            if offset is not None:
                metrics[name] = pose_to_tum(offset).tolist()  # tx ty tz qx qy qz qw
        if self.pose_time_offset:
            metrics["pose_time_offset_s"] = self.pose_time_offset
        if self.depth_time_offset is not None:
            metrics["depth_time_offset_s"] = self.depth_time_offset
        if self.pose_sigma is not None:
            metrics["pose_sigma"] = {"m": self.pose_sigma[0], "deg": self.pose_sigma[1]}
        return metrics


def replay(
    path: str | Path | None = None,
    *,
    depth: str = "sensor",
    backend: str = "gl",
    cell_size: float | None = None,
    origin: tuple[float, float] | None = None,
    shape: tuple[int, int] | None = None,
    max_frames: int | None = None,
    config: FusionConfig | None = None,
    stereo: StereoConfig | None = None,
    keyframes: KeyframeConfig | None = None,
    progress: bool = True,
    fusion_settings: dict | None = None,
    up: str | None = None,
    sink: FrameSink | None = None,
    tiles: str | Path | None = None,
    track: str = "off",
    tracking: TrackingConfig | None = None,
    start_pose: np.ndarray | None = None,
    camera_offset: np.ndarray | None = None,
    depth_offset: np.ndarray | None = None,
    pose_time_offset: float = 0.0,
    depth_time_offset: float | None = None,
    pose_sigma: tuple[float, float] | None = None,
    stereo_ahead: bool = True,
    stereo_process: bool = False,
) -> ReplayResult:
    """Fuse the sequence at ``path`` (default: the bundled sample) into a height map.

    The map's grid is :func:`heightfusion.sizing.grid_for_sequence` of ``cell_size``/``origin``/``shape``.
    With ``depth="mvs"`` each frame's depth and sigma come from :class:`~heightfusion.depth.MotionStereo` (settings ``stereo`` and ``keyframes``) and depth images in
    the dataset are not used; ``"auto"`` uses them where frames have them (:mod:`heightfusion.pipeline`).
    Without ``config`` the fusion settings are :func:`heightfusion.pipeline.fusion_config` of
    ``fusion_settings`` (with the stereo sigma floor when stereo gives the depth).
    ``up`` is the world axis that points up (:data:`heightfusion.up_axis.UP_AXES`; None: the reader's
    default, :func:`heightfusion.up_axis.default_up`): the poses are turned so that it becomes +Z.
    ``sink`` (e.g. :class:`heightfusion.rerun_log.RerunLog`) gets every frame read, with the depth fused
    (None when skipped) and the map (:class:`heightfusion.sinks.FrameSink`); the caller closes it.
    With ``tiles`` (a folder) the map is a window that follows the camera over the tiled map there
    (:func:`heightfusion.tiles.window_for_run`; ``shape`` is not used), extended and saved per tile; the
    result's ``grid`` is :meth:`heightfusion.tiles.TileWindow.result` and the evaluation is made on the
    ground truth's grid of the tiled map.
    ``track`` (:data:`heightfusion.tracking.TRACK_MODES`): "refine" corrects the dataset's poses by dense
    alignment against the map and the latest keyframe, "odometry" tracks from the first pose (or
    ``start_pose``) alone (:class:`heightfusion.tracking.Tracker`, settings ``tracking``); a frame that
    cannot be tracked is skipped with a "tracking: ..." reason. The poses used are ``result.poses``.
    Monocular odometry on frames without poses (a plain video) needs ``start_pose``: the first frames are
    posed from it by :class:`heightfusion.tracking.bootstrap.MonocularBootstrap` (scale from its height
    over the ground, z = 0), and ``result.messages`` says how that went.
    ``camera_offset``: the camera's 4x4 pose on the body the dataset's poses are of
    (:mod:`heightfusion.camera_offset`): frames, and the reference trajectory they are scored against, are
    taken at ``pose @ camera_offset``. ``depth_offset``: the depth images' viewpoint (4x4) in the colour camera's
    frame; each depth image is moved into the colour camera
    (:func:`heightfusion.camera_offset.depth_at_colour_camera`) and the frame keeps its pose.
    ``pose_time_offset``: seconds the poses' clock is ahead of the images' (:func:`heightfusion.datasets.open`):
    each frame is taken at the dataset's pose at its timestamp plus it; the reference stays as published.
    ``depth_time_offset``: ... ahead of the depth images' own timestamps; each depth image is moved from the pose
    at its stamp plus it into the colour camera (None: seen from its frame's pose); not with odometry, which
    would then use the trajectory's motion.
    ``pose_sigma``: (metres, degrees) by which the given poses err, one standard deviation per axis
    (:class:`heightfusion.pipeline.FramePipeline`): frames fused at their given pose take it into their depth
    sigma, the map's systematic sigma and motion stereo's sigma. None: the poses are exact.
    ``stereo_ahead``: with stereo depth and no tracking, run each frame's stereo on a worker thread while the
    frame before is fused (:meth:`FramePipeline.prefetch`; torch and numpy release the GIL in their work).
    Measured on the real TUM frames (640x480), fused frames/s in turn -> ahead: 4.5-4.8 -> 5.0-5.4 on an idle
    2-core CPU (no gain on a loaded one), 14.6-15.7 -> 21.5-24.3 with the stereo on an H200
    (``benchmarks/bench_replay_ahead.py``).
    ``stereo_process``: ... in a child process instead, as the live app does (``LiveSettings.stereo_process``):
    as fast once running, but it takes seconds to start (7.4 frames/s over 80 frames on the H200).
    Raises ``DatasetError`` (a ValueError) for a path that is not a dataset.

    Example:
        >>> import heightfusion as hf
        >>> result = hf.replay(max_frames=5, progress=False)  # the bundled sample
        >>> result.frames_used, bool(result.grid.observed.any())
        (5, True)
    """
    from tqdm import tqdm

    from . import datasets

    if track not in TRACK_MODES:
        raise ValueError(f"track must be one of {', '.join(TRACK_MODES)}, got {track!r}")
    if track == "odometry" and depth_time_offset is not None:
        raise ValueError("depth_time_offset moves each depth image by the trajectory's motion; odometry tracks without "
                         "the trajectory: use it with track 'off' or 'refine'")
    if pose_sigma is not None:
        pose_sigma = tuple(pose_sigma)
        if len(pose_sigma) != 2:
            raise ValueError(f"pose_sigma must be (metres, degrees), got {pose_sigma!r}")
        given_pose_covariance(*pose_sigma)  # checked before any frame is read
    camera_offset = None if camera_offset is None else validate_pose(camera_offset, "camera_offset")
    depth_offset = None if depth_offset is None else validate_pose(depth_offset, "depth_offset")
    path = path if path is not None else datasets.sample_path()
    sequence, with_depth = datasets.open_for_depth(path, depth, max_frames=max_frames, undistort=True,
                                                   pose_time_offset=pose_time_offset,
                                                   depth_time_offset=depth_time_offset)
    reopened = with_depth is not sequence
    up = default_up(sequence.format) if up is None else up
    rotation = up_rotation(up, with_depth)
    sequence = UpAligned(sequence, rotation, camera_offset, depth_offset)
    with_depth = UpAligned(with_depth, rotation, camera_offset, depth_offset) if reopened else sequence
    messages = list(sequence.messages) + ([] if sequence.identity else [sequence.describe()])
    if track == "odometry" and uses_stereo(depth, sequence) and not sequence.has_poses:
        if start_pose is None:
            raise ValueError(f"{path}: monocular odometry on frames without poses needs start_pose (--start-pose): "
                             "the first camera pose over the ground (z = 0), whose height sets the scale")
        sequence = Bootstrapped(sequence, start_pose)
    window = None if tiles is None else window_for_run(tiles, up, cell_size, origin,
                                                         sequence.gt_heightmap)
    if window is not None:
        grid = window.grid
    elif isinstance(sequence, Bootstrapped) and sequence.gt_heightmap is None:  # no poses, no depth: the start view
        grid = grid_around_view(start_pose, DEFAULT_EXTENT_M, cell_size, origin, shape)
    else:
        grid = grid_for_sequence(with_depth, cell_size, origin, shape)
    timer = StageTimer()
    if config is None:
        config = fusion_config(uses_stereo(depth, sequence), **(fusion_settings or {}))
    renderer = make_renderer(backend)
    fuser = HeightMapFuser(grid, renderer, config)
    try:
        tracker = None if track == "off" else Tracker(track, renderer, tracking, start_pose)
        pipeline = FramePipeline(fuser, depth, stereo, keyframes, timer=timer, tracker=tracker,
                                 stereo_process=stereo_process, pose_sigma=pose_sigma)
        skipped: Counter = Counter()
        used = 0
        start = time.perf_counter()
        frames = _read_ahead(iter(sequence), pipeline) if stereo_ahead else iter(sequence)
        with tqdm(total=len(sequence), unit="frame", desc=f"replay {sequence.name}", disable=not progress) as bar:
            while True:
                with timer("read"):
                    frame = next(frames, None)
                if frame is None:
                    break
                bar.update()
                if window is not None:
                    window.follow(frame.T_wc)
                result = pipeline.process(frame)
                if sink is not None:
                    log_processed(sink, frame, result, grid)
                if isinstance(result, SkippedFrame):
                    skipped[result.reason] += 1
                    if result.detail and skipped[result.reason] == 1:  # once per reason: long runs stay readable
                        bar.write(f"frame {frame.index} (t={frame.timestamp:.3f}) skipped ({result.reason}): "
                                  f"{result.detail}")
                    continue
                used += 1
    finally:
        pipeline.close()
        fuser.release()
        renderer.release()
    seconds = time.perf_counter() - start
    skipped.update(sequence.skipped)
    if getattr(sequence, "bootstrap", None) is not None:
        messages.append(sequence.bootstrap.summary)
    truth = sequence.gt_heightmap
    scored = grid
    if window is not None:  # the saved tiled map is the run's map, scored on the truth's grid
        window.save()
        grid = window.result()
        scored = None if truth is None else window.region_like(truth)
    if truth is not None and (scored is None or not same_grid(scored, truth)):
        truth = None  # a grid the user chose: no vertex-by-vertex comparison (the truth is not resampled)
    evaluation = None if truth is None else evaluate(scored, truth, smooth_mask_from_heights(truth))
    reference = sequence.reference_trajectory()
    trajectory = None
    if reference and len(pipeline.poses) >= MIN_MATCHED:
        try:
            trajectory = trajectory_errors(pipeline.poses, reference)
        except ValueError as exc:  # too few poses matched in time: said, not fatal
            messages.append(f"no trajectory errors: {exc}")
    return ReplayResult(
        grid=grid,
        frames_used=used,
        skipped=skipped,
        seconds=seconds,
        ms_per_frame=timer.mean_ms(frames=max(used, 1)),
        truth=truth if truth is not None and same_grid(grid, truth) else None,
        evaluation=evaluation,
        messages=messages,
        config=config,
        poses=pipeline.poses,
        tracking=None if tracker is None else {"mode": track, **pipeline.tracking},
        trajectory=trajectory,
        reference_poses=reference,
        camera_offset=camera_offset,
        depth_offset=depth_offset,
        pose_time_offset=float(pose_time_offset),
        depth_time_offset=depth_time_offset,
        pose_sigma=pose_sigma,
    )


def _read_ahead(frames: Iterator[Frame], pipeline: FramePipeline) -> Iterator[Frame]:
    """``frames`` one behind as read: each frame's stereo is started (prefetched) before the frame before it
    is handed on to be processed."""
    previous = None
    for frame in frames:
        pipeline.prefetch(frame)
        if previous is not None:
            yield previous
        previous = frame
    if previous is not None:
        yield previous
