"""``heightfusion live [SOURCE]``: map live from a camera, a video or a dataset folder played in real time.

Poses come from the dataset, from ``--poses traj.txt`` (TUM format), or else from a marker board
(``heightfusion board``) lying on the floor; depth from the dataset's depth images, else from monocular
motion stereo. When fusion is slower than the source, frames are dropped (and counted), never queued.
At the end (source ended, camera disconnected, q) the map is saved to ``--out`` with the same pictures
and metrics as ``heightfusion replay``; exit status 0.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from ..cli import UserError

DEFAULT_EXTENT_M = 4.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..board_command import add_board_arguments
    from ..navigation import add_free_space_arguments
    from ..pipeline import add_depth_arguments
    from ..render import BACKENDS
    from ..viewer.map_view import MODES
    from .sources import capture_device

    parser.add_argument("source", nargs="?", help="dataset folder or video file (default: the bundled sample)")
    parser.add_argument("--camera", type=capture_device, metavar="N|URL",
                        help="OpenCV capture device N, or a stream URL (IP camera, GStreamer), instead of SOURCE")
    parser.add_argument("--calibration", metavar="camera.yaml", help="intrinsics (from `heightfusion calibrate`)")
    parser.add_argument("--poses", metavar="traj.txt", help="TUM-format camera trajectory for a video or folder")
    add_depth_arguments(parser, default="auto")
    parser.add_argument("--backend", default="gl", choices=BACKENDS, help="renderer backend for fusion (default gl)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="read at most N frames, then save and exit")
    parser.add_argument("--screenshot", metavar="FILE.png", help="save the window after the last frame, then exit")
    parser.add_argument("--autosave", type=float, metavar="SECONDS", help="checkpoint the map every SECONDS (atomic)")
    parser.add_argument("--every-frame", action="store_true",
                        help="fuse every frame of a recording, as fast as possible (no real-time pacing, no drops)")
    parser.add_argument("--exit-at-end", action="store_true", help="close when the source ends")
    parser.add_argument("--out", default="live_out", help="folder for the saved map and pictures (default live_out)")
    parser.add_argument("--cell-size", type=float, help="map cell size in metres (default: ground truth's, else 0.02)")
    parser.add_argument("--origin", type=float, nargs=2, metavar=("X", "Y"), help="world (x, y) of vertex (0, 0)")
    parser.add_argument("--shape", type=int, nargs=2, metavar=("NY", "NX"), help="map size in vertices")
    parser.add_argument("--extent", type=float, default=DEFAULT_EXTENT_M,
                        help="side in metres of a map centred where the first frame looks (default 4)")
    parser.add_argument("--mode", choices=MODES, default="color", help="colouring of the 3D views")
    parser.add_argument("--size", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"), help="window size")
    parser.add_argument("--hidden", action="store_true", help="open no visible window (scripted runs)")
    add_free_space_arguments(parser)
    add_board_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from .. import datasets
    from ..board_command import board_spec_from_args
    from ..datasets.camera_yaml import load_camera_yaml
    from ..navigation import free_space, free_space_kwargs
    from ..pipeline import fusion_config, stereo_config_from_args, uses_stereo
    from ..render import make_renderer
    from ..viewer.window import Window, WindowUnavailableError
    from .app import LiveApp, LiveSettings
    from .sources import BoardPoses, LatestFrameSource, open_camera

    _check_args(args)
    free_space_settings = free_space_kwargs(args)
    _leave_a_core_for_the_reader()
    camera = None
    if args.calibration is not None:
        camera, _ = load_camera_yaml(args.calibration)
    truth = None
    if args.camera is not None:
        if args.source is not None:
            raise UserError("give either SOURCE or --camera N, not both")
        frames = open_camera(args.camera, camera, args.max_frames)
        if camera is None:
            print(f"live: no --calibration given; guessing camera {args.camera}'s intrinsics (60 degree field of view)", file=sys.stderr)
        stereo_depth = args.depth != "sensor"  # a camera gives images only
        pace = False
        name = f"camera {args.camera}"
        end_message = f"camera {args.camera} stopped delivering frames (disconnected?)"
    else:
        path = args.source if args.source is not None else datasets.sample_path()
        sequence = datasets.open(path, trajectory=args.poses, camera=camera, max_frames=args.max_frames)
        for message in sequence.messages:
            print(f"live: {message}", file=sys.stderr)
        frames, truth, pace, name = sequence, sequence.gt_heightmap, not args.every_frame, sequence.name
        end_message = f"{'video' if sequence.format == 'video' else 'sequence'} {name} ended"
        stereo_depth = uses_stereo(args.depth, sequence)
    board_poses = BoardPoses(board_spec_from_args(args)) if args.camera is not None or not frames.has_poses else None
    source = LatestFrameSource(frames, pace=pace, drop=not args.every_frame, prepare=board_poses)
    scripted = args.max_frames is not None or args.screenshot is not None
    settings = LiveSettings(
        out=Path(args.out), depth=args.depth, config=fusion_config(stereo_depth, sigma_floor=args.sigma_floor),
        stereo=stereo_config_from_args(args),
        autosave_s=args.autosave,
        exit_at_end=args.exit_at_end or scripted, mode=args.mode, truth=truth, end_message=end_message,
        pose_problem=None if board_poses is None else (lambda: board_poses.reason),
    )
    try:
        window = Window(f"heightfusion live - {name}", tuple(args.size), visible=not args.hidden)
    except WindowUnavailableError as exc:
        raise UserError(str(exc)) from None
    try:
        app = LiveApp(window, source, make_renderer(args.backend), _grid_maker(args, truth),
                      lambda grid: free_space(grid, **free_space_settings), settings)
        result = app.run()
        if args.screenshot:
            from ..visualize import write_png

            write_png(args.screenshot, window.read_rgb())
        evaluation = app.evaluation()
        app.release()
    finally:
        window.destroy()
    print(_summary(result, evaluation, args))
    if result.grid is not None:
        _write_outputs(result, evaluation, truth, args)
    return 0


def _leave_a_core_for_the_reader() -> None:
    """Run torch's CPU kernels (motion stereo) on all cores but one.

    The frame reader (decoding, marker detection) and the GL driver run beside them. Torch's OpenMP
    workers spin at barriers, so on an oversubscribed machine a stereo step measured 2-13 s instead of
    0.2 s with both of 2 cores busy, and 0.2 s steadily with one thread.
    """
    import os

    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))


def _check_args(args: argparse.Namespace) -> None:
    from ..viewer.window import check_window_size

    for name in ("max_frames",):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    if args.autosave is not None and not (math.isfinite(args.autosave) and args.autosave > 0):
        raise UserError(f"--autosave must be a positive number of seconds, got {args.autosave}")
    if not (math.isfinite(args.extent) and args.extent > 0):
        raise UserError(f"--extent must be a positive length in metres, got {args.extent}")
    check_window_size(args.size)
    if (args.origin is None) != (args.shape is None):
        raise UserError("--origin and --shape go together")


def _grid_maker(args: argparse.Namespace, truth):
    """The map for the first posed frame: explicit grid, else the truth's, else a square where it looks."""
    from ..heightmap import HeightMap

    def make(frame) -> HeightMap:
        if args.origin is not None:
            return HeightMap(tuple(args.origin), args.cell_size or 0.02, tuple(args.shape))
        if truth is not None and (args.cell_size is None or args.cell_size == truth.cell_size):
            return HeightMap(tuple(truth.origin), truth.cell_size, truth.shape)
        cell = args.cell_size or 0.02
        n = math.ceil(args.extent / cell) + 1
        centre = _look_point(frame.T_wc)
        return HeightMap((centre[0] - args.extent / 2, centre[1] - args.extent / 2), cell, (n, n))

    return make


def _look_point(T_wc: np.ndarray, max_range: float = 3.0) -> np.ndarray:
    """Where the optical axis meets the floor z = 0 within ``max_range`` m, else 1.5 m ahead."""
    centre, axis = T_wc[:3, 3], T_wc[:3, 2]
    if axis[2] < -1e-6:
        t = -centre[2] / axis[2]
        if 0 < t <= max_range:
            return (centre + t * axis)[:2]
    heading = axis[:2] / max(np.linalg.norm(axis[:2]), 1e-9)
    return centre[:2] + 1.5 * heading


def _summary(result, evaluation, args) -> str:
    skipped = dict(result.skipped)
    lines = [
        f"live: {result.ended}; read {result.read} frames, fused {result.fused} at {result.fps:.1f} frames/s, "
        f"dropped {result.dropped} it had no time for, skipped {sum(skipped.values())}"
        + (f" {skipped}" if skipped else ""),
        "ms per fused frame: " + ", ".join(f"{k} {v:.1f}" for k, v in result.ms_per_frame.items()),
    ]
    if evaluation is not None:
        lines.append(f"vs ground truth: RMSE {evaluation['rmse'] * 1e3:.2f} mm "
                     f"(smooth areas {evaluation['smooth_rmse'] * 1e3:.2f} mm), completeness {evaluation['completeness']:.3f}")
    if result.grid is None:
        lines.append("no frame had a pose: no map")
    return "\n".join(lines)


def _write_outputs(result, evaluation, truth, args) -> None:
    """The map, mesh, pictures and metrics, as replay writes them."""
    from ..navigation import free_space_kwargs
    from ..replay import ReplayResult, write_outputs

    skipped = Counter(result.skipped)
    if result.dropped:
        skipped["dropped (fusion too slow)"] += result.dropped
    replay_result = ReplayResult(
        grid=result.grid, frames_used=result.fused, skipped=skipped, seconds=result.seconds,
        ms_per_frame=result.ms_per_frame, truth=truth if evaluation is not None else None, evaluation=evaluation,
    )
    source = args.source or (f"camera {args.camera}" if args.camera is not None else "bundled sample")
    write_outputs(replay_result, args.out, {"source": source, "mode": "live", "ended": result.ended},
                  **free_space_kwargs(args))
    print(f"wrote {args.out}/: heightmap.npz, mesh, pictures (height, colour, uncertainty, free space) and metrics.json")
