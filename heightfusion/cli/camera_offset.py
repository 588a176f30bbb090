"""``heightfusion camera-offset [PATH]``: where the camera sits on the body a recording's poses are of, and how
far the poses' clock is from the images'.

Aligns frame pairs of an RGB-D recording with its trajectory (:func:`heightfusion.camera_offset.measured_motions`),
fits the time offset of the trajectory's clock from the pairs' rotations
(:func:`heightfusion.camera_offset.fit_time_offset`), then the camera offset from the motions at that time
(:func:`heightfusion.camera_offset.fit_camera_offset`), and where the depth images have timestamps of their own
the clock offset of the depth stream (:func:`heightfusion.depth_clock.fit_depth_time_offset`); prints them with
how much they explain and the ``--time-offset-ms``, ``--depth-time-offset-ms`` and ``--camera-offset`` /
``--depth-offset`` options that make ``replay`` and ``live`` use them (the whole camera off the trajectory, or the
depth's viewpoint off the colour camera), and the ``--pose-sigma`` that the pairs' remaining disagreement implies
(:attr:`heightfusion.camera_offset.CameraOffset.pose_sigma`); ``--out FILE.json`` writes them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import UserError, check_output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", help="RGB-D dataset folder with a trajectory (default: the bundled sample)")
    parser.add_argument("--max-frames", type=int, help="use at most this many frames")
    parser.add_argument("--gaps", type=int, nargs="+", default=[3, 6, 10], metavar="N",
                        help="pair frames this many apart (default 3 6 10: wider gaps turn more, and tell the offset better)")
    parser.add_argument("--rotation", action="store_true",
                        help="fit the offset's rotation too (default: its translation alone, the trajectory's "
                             "orientation taken as the camera's)")
    parser.add_argument("--no-time-offset", action="store_true",
                        help="take the trajectory's clock as the images' (default: fit the time offset first)")
    parser.add_argument("--out", metavar="FILE.json", help="write the offset, the option and the fit's figures here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from .. import datasets
    from ..atomic import atomic_write
    from ..camera_offset import fit_camera_offset, fit_time_offset, measured_motions
    from ..depth_clock import fit_depth_time_offset
    from ..poses import pose_to_tum

    if args.max_frames is not None and args.max_frames < 2:
        raise UserError(f"--max-frames must be at least 2, got {args.max_frames}")
    if any(gap < 1 for gap in args.gaps):
        raise UserError(f"--gaps must be positive frame counts, got {' '.join(map(str, args.gaps))}")
    if args.out:  # checked before the alignments, not after them
        if Path(args.out).is_dir():
            raise UserError(f"--out {args.out}: is a folder; give a file name (e.g. camera_offset.json)")
        check_output_folder(Path(args.out).parent)
    path = args.path if args.path is not None else datasets.sample_path()
    sequence = datasets.open(path, max_frames=args.max_frames, undistort=True)
    if not sequence.has_poses:
        raise UserError(f"{path}: camera-offset needs a trajectory (the poses of the body the camera sits on)")
    pairs = measured_motions(sequence, args.gaps, progress=not args.quiet)
    if sequence.skipped:
        print(f"camera-offset: frames skipped: {dict(sequence.skipped)}", file=sys.stderr)
    time_offset = None
    if not args.no_time_offset and len(pairs) >= 4:  # with fewer, the camera offset's fit says why below
        try:
            time_offset = fit_time_offset(pairs)
        except ValueError as exc:
            print(f"camera-offset: no time offset: {exc}", file=sys.stderr)
    seconds = 0.0 if time_offset is None else time_offset.seconds
    try:
        offset = fit_camera_offset(pairs.given_at(seconds), pairs.measured, rotation=args.rotation)
    except ValueError as exc:
        raise UserError(f"{path}: {exc} (pairs of frames with depth images whose alignment passed; more frames or "
                        "other --gaps may give more)") from None
    depth_clock = None
    if sequence.has_depth_timestamps:
        try:
            depth_clock = fit_depth_time_offset(datasets.open(path, max_frames=args.max_frames, undistort=True,
                                                              pose_time_offset=seconds), seconds)
        except ValueError as exc:
            print(f"camera-offset: no depth time offset: {exc}", file=sys.stderr)
    numbers = " ".join(f"{v:.6f}" for v in pose_to_tum(offset.T_bc))
    clock = "" if time_offset is None else f"--time-offset-ms {1000 * seconds:.1f} "
    if depth_clock is not None:
        clock += f"--depth-time-offset-ms {1000 * depth_clock.seconds:.1f} "
    options = {"camera": f"{clock}--camera-offset {numbers}", "depth": f"{clock}--depth-offset {numbers}"}
    if time_offset is not None:
        print(time_offset.summary())
    if depth_clock is not None:
        print(depth_clock.summary())
    print(offset.summary())
    print(f"{options['camera']}\n    where the whole camera sits off the trajectory's body (motion-capture markers, a robot's base);")
    print(f"{options['depth']}\n    where the colour camera is where the trajectory says and the depth sees from beside it (a "
          "Kinect's registered depth: try both, keep what the map or replay --depth mvs likes)")
    metres, degrees = offset.pose_sigma
    options["pose_sigma"] = f"--pose-sigma {1000 * metres:.2f} {degrees:.3f}"
    print(f"{options['pose_sigma']}\n    how far each pose errs, from the pairs' disagreement that the offsets leave (with the "
          "depth alignment's own error in it: an upper bound); for monocular depth (replay --depth mvs), whose "
          "sigma then counts it")
    if args.out:
        record = {"T_bc": offset.T_bc.tolist(), "options": options, "pairs": offset.pairs,
                  "disagreement_before_mm_deg": offset.before, "disagreement_after_mm_deg": offset.after,
                  "halves_differ_mm_deg": offset.spread}
        if time_offset is not None:
            record["time_offset"] = {"seconds": seconds, "rotation_disagreement_before_deg": time_offset.before,
                                     "rotation_disagreement_after_deg": time_offset.after,
                                     "halves_differ_s": time_offset.spread}
        if depth_clock is not None:
            record["depth_time_offset"] = {"seconds": depth_clock.seconds, "pairs": depth_clock.pairs,
                                           "depth_disagreement_before_percent": depth_clock.before,
                                           "depth_disagreement_after_percent": depth_clock.after,
                                           "halves_differ_s": depth_clock.spread}
        with atomic_write(args.out) as f:
            f.write(json.dumps(record, indent=2).encode())
    return 0
