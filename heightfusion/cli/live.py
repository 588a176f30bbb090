"""``heightfusion live [SOURCE]``: map live from a camera, a video or a dataset folder played in real time.

Poses come from the dataset, from ``--poses traj.txt`` (TUM format), or else from a marker board
(``heightfusion board``) lying on the floor; depth from the dataset's depth images, else from monocular
motion stereo. When fusion is slower than the source, frames are dropped (and counted), never queued.
At the end (source ended, camera disconnected, q) the map is saved to ``--out`` with the same pictures
and metrics as ``heightfusion replay``; exit status 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import UserError, check_output_folder
from .options import (
    add_board_arguments,
    add_depth_arguments,
    add_free_space_arguments,
    add_grid_arguments,
    add_rerun_arguments,
    add_track_arguments,
    add_up_argument,
    board_spec_from_args,
    camera_offset_option,
    check_positive,
    free_space_settings,
    grid_args,
    keyframe_config_from_args,
    rerun_log_from_args,
    stereo_config_from_args,
    time_offset_option,
    track_options,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..live.sources import capture_device
    from ..render import BACKENDS
    from ..sizing import DEFAULT_EXTENT_M
    from ..viewer.map_view import MODES

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
    parser.add_argument("--no-stereo-ahead", dest="stereo_ahead", action="store_false",
                        help="with stereo depth, estimate each frame's depth after the frame before is fused, "
                             "not during it (default: during, in a child process; the map lags a frame)")
    parser.add_argument("--out", default="live_out", help="folder for the saved map and pictures (default live_out)")
    add_grid_arguments(parser)
    add_up_argument(parser)
    add_track_arguments(parser)
    parser.add_argument("--extent", type=float, default=DEFAULT_EXTENT_M,
                        help="side in metres of a map centred where the first frame looks (default 4)")
    parser.add_argument("--mode", choices=MODES, default="color", help="colouring of the 3D views")
    parser.add_argument("--size", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"), help="window size")
    parser.add_argument("--hidden", action="store_true", help="open no visible window (scripted runs)")
    add_free_space_arguments(parser)
    add_board_arguments(parser)
    add_rerun_arguments(parser)
    parser.add_argument("--tiles", metavar="DIR", help="map without edges: a window that follows the camera over the "
                        "tiled map in DIR (Zarr, created or extended, saved per tile with the map); not with --shape")


def run(args: argparse.Namespace) -> int:
    from .. import datasets
    from ..datasets.camera_yaml import load_camera_yaml
    from ..live.app import LiveApp, LiveSettings
    from ..live.sources import BoardPoses, LatestFrameSource, open_camera
    from ..outputs import write_map_outputs, write_trajectory_outputs
    from ..pipeline import fusion_config, uses_stereo
    from ..render import make_renderer
    from ..metrics import same_grid
    from ..sizing import grid_around_view
    from ..tiles import CHECKPOINT_S, window_for_run
    from ..up_axis import UpAligned, default_up, up_rotation
    from ..viewer.window import Window, WindowUnavailableError

    _check_args(args)
    robot = free_space_settings(args)
    check_output_folder(args.out)
    board_spec = board_spec_from_args(args)  # bad board options are an error even when the poses come from elsewhere
    camera = None
    if args.calibration is not None:
        camera, _ = load_camera_yaml(args.calibration)
    truth = reference = None
    up = args.up or "z"  # the marker board's; a dataset's reader says its own
    if args.camera is not None:
        if args.source is not None:
            raise UserError("give either SOURCE or --camera N, not both")
        recording_only = (args.camera_offset, args.depth_offset, args.time_offset_ms, args.depth_time_offset_ms)
        if any(value is not None for value in recording_only):
            raise UserError("--camera-offset, --depth-offset, --time-offset-ms and --depth-time-offset-ms are for "
                            "recordings (given poses, depth images); a live camera has neither")
        frames = open_camera(args.camera, camera, args.max_frames)
        if camera is None:
            print(f"live: no --calibration given; guessing camera {args.camera}'s intrinsics (60 degree field of view)", file=sys.stderr)
        stereo_depth = args.depth != "sensor"  # a camera gives images only
        pace = False
        name = f"camera {args.camera}"
        end_message = f"camera {args.camera} stopped delivering frames (disconnected?)"
    else:
        path = args.source if args.source is not None else datasets.sample_path()
        sequence, with_depth = datasets.open_for_depth(path, args.depth, trajectory=args.poses, camera=camera,
                                                       max_frames=args.max_frames, undistort=True,
                                                       pose_time_offset=time_offset_option(args) or 0.0,
                                                       depth_time_offset=time_offset_option(args,
                                                                                            "depth_time_offset_ms"))
        sequence = UpAligned(sequence, up_rotation(default_up(sequence.format) if args.up is None else args.up, with_depth),
                             camera_offset_option(args), camera_offset_option(args, "depth_offset"))
        up = args.up or default_up(sequence.format)
        if not sequence.identity:
            print(f"live: {sequence.describe()}", file=sys.stderr)
        for message in sequence.messages:
            print(f"live: {message}", file=sys.stderr)
        frames, truth, pace, name = sequence, sequence.gt_heightmap, not args.every_frame, sequence.name
        reference = sequence.reference_trajectory()
        end_message = f"{'video' if sequence.format == 'video' else 'sequence'} {name} ended"
        stereo_depth = uses_stereo(args.depth, sequence)
    board_poses = BoardPoses(board_spec) if args.camera is not None or not frames.has_poses else None
    source = LatestFrameSource(frames, pace=pace, drop=not args.every_frame, prepare=board_poses)
    scripted = args.max_frames is not None or args.screenshot is not None
    rerun = rerun_log_from_args(args, f"live {name}")
    settings = LiveSettings(
        out=Path(args.out), depth=args.depth, config=fusion_config(stereo_depth, sigma_floor=args.sigma_floor,
                                                                   pyramid_level=args.fusion_level),
        stereo=stereo_config_from_args(args), keyframes=keyframe_config_from_args(args),
        autosave_s=args.autosave, stereo_ahead=args.stereo_ahead,
        exit_at_end=args.exit_at_end or scripted, mode=args.mode, truth=truth, end_message=end_message,
        pose_problem=None if board_poses is None else (lambda: board_poses.reason), sink=rerun,
        **track_options(args),
        tiles=None if args.tiles is None else window_for_run(args.tiles, up, args.cell_size, args.origin, truth,
                                                             checkpoint_s=args.autosave or CHECKPOINT_S),
    )
    grid = grid_args(args)
    try:
        window = Window(f"heightfusion live - {name}", tuple(args.size), visible=not args.hidden)
    except WindowUnavailableError as exc:
        raise UserError(str(exc)) from None
    try:
        renderer = make_renderer(args.backend)
        app = LiveApp(window, source, renderer,
                      lambda frame: grid_around_view(frame.T_wc, args.extent, truth=truth, **grid),
                      robot.labels, settings)
        result = app.run()
        poses = list(app.pipeline.poses) if app.pipeline is not None else []
        if rerun is not None and result.grid is not None:
            rerun.log_map(result.grid)
        if args.screenshot:
            from ..visualize import write_png

            write_png(args.screenshot, window.read_rgb())
        evaluation = app.evaluation()
        app.release()
        renderer.release()
    finally:
        window.destroy()
        if rerun is not None:
            rerun.close()
    print(_summary(result, evaluation))
    if settings.tiles is not None and result.grid is not None:  # the tiled map (saved at the end) is the run's
        result.grid = settings.tiles.result()
    if result.grid is not None:
        source_name = args.source or (f"camera {args.camera}" if args.camera is not None else "bundled sample")
        write_map_outputs(args.out, result.grid, {"source": source_name, "mode": "live", **result.metrics(evaluation)},
                          truth if evaluation is not None and same_grid(result.grid, truth) else None, robot)
        write_trajectory_outputs(args.out, poses, reference)
        print(f"wrote {args.out}/: heightmap.npz, mesh, pictures (height, colour, uncertainty, free space), metrics.json "
              "and trajectory.txt")
    return 0


def _check_args(args: argparse.Namespace) -> None:
    from ..viewer.window import check_window_size

    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be a positive number, got {args.max_frames}")
    check_positive(args, {"autosave": "seconds", "extent": "metres"})
    check_window_size(args.size)
    if (args.origin is None) != (args.shape is None):
        raise UserError("--origin and --shape go together")
    if args.tiles is not None and args.shape is not None:
        raise UserError("--shape has no meaning with --tiles (the window's size is fixed)")


def _summary(result, evaluation) -> str:
    skipped = dict(result.skipped)
    lines = [
        f"live: {result.ended}; read {result.read} frames, fused {result.fused} at {result.fps:.1f} frames/s, "
        f"dropped {result.dropped} it had no time for, skipped {sum(skipped.values())}"
        + (f" {skipped}" if skipped else ""),
        "ms per fused frame: " + ", ".join(f"{k} {v:.1f}" for k, v in result.ms_per_frame.items()),
    ]
    lines += [f"live: {message}" for message in result.messages]
    if evaluation is not None:
        lines.append(f"vs ground truth: RMSE {evaluation['rmse'] * 1e3:.2f} mm "
                     f"(smooth areas {evaluation['smooth_rmse'] * 1e3:.2f} mm), completeness {evaluation['completeness']:.3f}")
    if result.grid is None:
        lines.append("no frame had a pose: no map (poses come from the dataset, --poses or the marker board in view; "
                     "without them, --track odometry --start-pose TX TY TZ QX QY QZ QW starts from the camera's pose "
                     "over the floor)")
    return "\n".join(lines)
