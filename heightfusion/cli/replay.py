"""``heightfusion replay [PATH]``: fuse a recorded sequence (the bundled sample by default) into a height map.

Depth from the dataset's depth images, or with ``--depth mvs`` from monocular motion stereo. Writes to
``--out`` what :func:`heightfusion.outputs.write_map_outputs` writes: ``heightmap.npz``, ``mesh.ply``,
PNGs of height, colour, uncertainty, free space (settings ``--max-step``, ``--max-slope``,
``--robot-radius``, ``--max-sigma``) and, with ground truth, error, and ``metrics.json`` (evaluation, ms
per stage, frames used and skipped by reason, free-space settings and vertex counts per label).
``--rerun FILE.rrd`` / ``--rerun-spawn`` record the run for the Rerun viewer (:mod:`heightfusion.rerun_log`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from ..fusion import SOLVERS, FusionConfig
from ..render import BACKENDS
from . import UserError, check_output_folder
from .options import (
    add_depth_arguments,
    add_free_space_arguments,
    add_grid_arguments,
    add_rerun_arguments,
    add_track_arguments,
    add_up_argument,
    camera_offset_option,
    free_space_settings,
    grid_args,
    keyframe_config_from_args,
    rerun_log_from_args,
    stereo_config_from_args,
    time_offset_option,
    track_options,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", help="dataset folder or video (default: the bundled sample)")
    add_replay_arguments(parser)
    parser.add_argument("--out", default="replay_out", help="output folder (default replay_out)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--tiles", metavar="DIR", help="map without edges: a window that follows the camera over the "
                        "tiled map in DIR (Zarr, created or extended, saved per tile); --shape is not used")
    add_rerun_arguments(parser)


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """How a sequence is fused (``replay`` and ``batch``): depth, backend, grid, up axis, frames, solver,
    free space; :func:`replay_options` and :func:`~heightfusion.cli.options.free_space_settings` read them."""
    add_depth_arguments(parser, default="sensor")
    parser.add_argument("--backend", default="gl", choices=BACKENDS, help="renderer backend (default gl)")
    add_grid_arguments(parser)
    add_up_argument(parser)
    add_track_arguments(parser)
    parser.add_argument("--max-frames", type=int, help="fuse at most this many frames")
    parser.add_argument("--solver", default=FusionConfig.solver, choices=SOLVERS, help="Gauss-Newton solve")
    parser.add_argument("--iterations", type=int, default=FusionConfig.iterations, help="Gauss-Newton iterations per frame")
    parser.add_argument("--no-stereo-ahead", dest="stereo_ahead", action="store_false",
                        help="stereo: estimate each frame's depth after the frame before is fused, not during it "
                             "(default: during, on a worker thread)")
    add_free_space_arguments(parser)


def replay_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of :func:`heightfusion.replay.replay` (all but path, progress and sink) of
    :func:`add_replay_arguments`' options, checked."""
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be a positive number, got {args.max_frames}")
    settings = {"solver": args.solver, "iterations": args.iterations, "sigma_floor": args.sigma_floor,
                "pyramid_level": args.fusion_level}
    return {"depth": args.depth, "backend": args.backend, **grid_args(args), "max_frames": args.max_frames,
            "stereo": stereo_config_from_args(args), "keyframes": keyframe_config_from_args(args),
            "fusion_settings": settings, "up": args.up, **track_options(args),
            "camera_offset": camera_offset_option(args), "depth_offset": camera_offset_option(args, "depth_offset"),
            "pose_time_offset": time_offset_option(args) or 0.0,
            "depth_time_offset": time_offset_option(args, "depth_time_offset_ms"), "stereo_ahead": args.stereo_ahead}


def run(args: argparse.Namespace) -> int:
    from .. import datasets
    from ..outputs import write_replay_outputs
    from ..replay import replay

    robot = free_space_settings(args)  # checked before the fusion, not after
    options = replay_options(args)
    check_output_folder(args.out)
    if args.tiles is not None and args.shape is not None:
        raise UserError("--shape has no meaning with --tiles (the window's size is fixed)")
    path = args.path if args.path is not None else datasets.sample_path()
    rerun = rerun_log_from_args(args, f"replay {Path(path).name}")
    with rerun or contextlib.nullcontext():  # closed (the file completed) however the run ends
        result = replay(args.path, **options, progress=not args.quiet, sink=rerun, tiles=args.tiles)
        if rerun is not None:
            rerun.log_map(result.grid)
    metrics = write_replay_outputs(args.out, path, result, options, robot)
    for message in result.messages:  # what the reader noted (assumed intrinsics, an unreadable ground truth...)
        print(f"replay: {message}", file=sys.stderr)
    print(_summary(result, Path(args.out), metrics["free_space"]["vertices"]))
    if args.rerun is not None:
        print(f"wrote {args.rerun}: the run for the Rerun viewer (rerun {args.rerun})")
    return 0


def _summary(result, out: Path, free_counts: dict[str, int]) -> str:
    lines = [
        f"fused {result.frames_used} frames in {result.seconds:.1f} s ({result.fps:.1f} frames/s)"
        + (f"; skipped {sum(result.skipped.values())}: {dict(result.skipped)}" if result.skipped else ""),
        "ms per frame: " + ", ".join(f"{k} {v:.1f}" for k, v in result.ms_per_frame.items()),
    ]
    if result.frames_used == 0:
        reasons = ", ".join(f"{reason} ({n})" for reason, n in result.skipped.most_common(3)) or "the sequence has no frames"
        lines.append(f"nothing was fused: {reasons}")
    e = result.evaluation
    if e is not None:
        lines.append(
            f"vs ground truth: RMSE {e['rmse'] * 1e3:.2f} mm (smooth areas {e['smooth_rmse'] * 1e3:.2f} mm), "
            f"median {e['median'] * 1e3:.2f} mm, completeness {e['completeness']:.3f}, "
            f"within 1/2 sigma {e['calib_1sigma']:.2f}/{e['calib_2sigma']:.2f}"
        )
    lines.append("free space: " + ", ".join(f"{n} {name}" for name, n in free_counts.items()) + " vertices")
    t = result.trajectory
    if t is not None:
        lines.append(
            f"poses vs the reference ({t['matched']} matched): ATE {t['ate_unaligned_m']['rmse'] * 1e3:.1f} mm as used, "
            f"{t['ate_aligned_m']['rmse'] * 1e3:.1f} mm SE(3)-aligned; RPE {t['rpe_translation_m']['rmse'] * 1e3:.2f} mm, "
            f"{t['rpe_rotation_deg']['rmse']:.3f} deg per frame"
            + (f"; tracked {result.tracking.get('tracked', 0)} frames" if result.tracking else "")
        )
    lines.append(f"wrote {out}/: heightmap.npz mesh.ply height.png color.png uncertainty.png free_space.png"
                 + (" error.png" if result.truth is not None else "") + " metrics.json trajectory.txt"
                 + (" trajectory.png" if t is not None else ""))
    return "\n".join(lines)
