"""Options several subcommands share, and their conversion to the library's plain arguments."""

from __future__ import annotations

import argparse
import math

from ..fusion import FusionConfig
from ..navigation import DEFAULT_MAX_SLOPE, DEFAULT_MAX_STEP, DEFAULT_ROBOT_RADIUS, FreeSpaceSettings
from ..pipeline import DEPTH_SOURCES, STEREO_SIGMA_FLOOR

DEFAULT_SQUARES = (7, 5)
DEFAULT_SQUARE_LENGTH = 0.035  # metres: 7 x 5 squares fit A4 and US Letter landscape
DEFAULT_DICTIONARY = "DICT_5X5_100"


# --- depth source and stereo ----------------------------------------------------------------------
def add_depth_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    """Options --depth, --planes, --sweep-range, --stereo-device, --sigma-floor (for
    :func:`stereo_config_from_args`) and --fusion-level."""
    parser.add_argument("--depth", default=default, choices=DEPTH_SOURCES,
                        help="depth source: the frames' depth images, monocular motion stereo (mvs), or auto "
                             f"(depth images where frames have them, else stereo; default {default})")
    add_stereo_arguments(parser)
    parser.add_argument("--min-parallax", type=float, metavar="PX",
                        help="stereo: a source frame must move the image by at least PX pixels (default 6)")
    parser.add_argument("--max-parallax", type=float, metavar="PX",
                        help="stereo: ... and by at most PX pixels (default 40; raise it for sparse keyframes)")
    parser.add_argument("--sigma-floor", type=float, metavar="M",
                        help=f"smallest height sigma of a fused vertex, metres (default {FusionConfig.sigma_floor:g} "
                             f"with depth images, {STEREO_SIGMA_FLOOR:g} with stereo, whose errors repeat across frames)")
    parser.add_argument("--fusion-level", type=fusion_level, metavar="auto|N",
                        help="image pyramid level frames are fused at: auto (per frame, a few pixels per map cell; "
                             "the default) or N (0: the camera's resolution, each level halves it)")


def add_stereo_arguments(parser: argparse.ArgumentParser) -> None:
    """Options --planes, --sweep-range, --stereo-device and --readout-ms (for :func:`stereo_config_from_args`)."""
    parser.add_argument("--planes", choices=("fronto", "below", "ground"), default="fronto",
                        help="stereo: sweep planes at constant depth (default fronto), horizontal planes at distances "
                             "below the camera, or horizontal planes at world heights")
    parser.add_argument("--sweep-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="stereo: distance range below the camera (below), depth range (fronto) or world height "
                             "range (ground) of the sweep, metres")
    parser.add_argument("--stereo-device", default="auto", metavar="auto|cpu|cuda[:N]",
                        help="stereo: the torch device (default auto: the first CUDA GPU torch sees, else the CPU)")
    parser.add_argument("--readout-ms", type=float, default=0.0, metavar="MS",
                        help="stereo: a rolling shutter's readout time, first row to last, milliseconds (default 0: "
                             "a global shutter); needs the frames' timestamps (heightfusion.rolling_shutter)")


def fusion_level(text: str) -> int | str:
    """``--fusion-level``'s value: "auto" or a non-negative integer (argparse type)."""
    if text == "auto":
        return text
    try:
        level = int(text)
    except ValueError:
        level = -1
    if level < 0:
        raise argparse.ArgumentTypeError(f"must be auto or a non-negative integer, got {text!r}")
    return level


def keyframe_config_from_args(args: argparse.Namespace):
    """The :class:`~heightfusion.depth.KeyframeConfig` of ``--min-parallax`` and ``--max-parallax``; None for
    sensor depth or when neither is given (the defaults)."""
    if args.depth == "sensor" or (args.min_parallax is None and args.max_parallax is None):
        return None
    from ..depth import KeyframeConfig

    bounds = {k: v for k, v in (("min_parallax", args.min_parallax), ("max_parallax", args.max_parallax)) if v is not None}
    return KeyframeConfig(**bounds)


def stereo_config_from_args(args: argparse.Namespace):
    """The :class:`~heightfusion.depth.StereoConfig` of ``--planes``, ``--sweep-range``, ``--stereo-device`` and
    ``--readout-ms``; None for sensor depth. ValueError for a bad value (the CLI reports it)."""
    if args.depth == "sensor":
        return None
    from ..depth import StereoConfig

    if not (math.isfinite(args.readout_ms) and args.readout_ms >= 0):
        raise ValueError(f"--readout-ms must be a non-negative number of milliseconds, got {args.readout_ms}")
    common = {"planes": args.planes, "device": args.stereo_device, "readout_s": args.readout_ms / 1000}
    if args.sweep_range is None:
        return StereoConfig(**common)
    low, high = args.sweep_range
    if args.planes in ("fronto", "below"):
        return StereoConfig(**common, min_depth=low, max_depth=high)
    return StereoConfig(**common, min_height=low, max_height=high)


# --- up axis --------------------------------------------------------------------------------------
def add_up_argument(parser: argparse.ArgumentParser) -> None:
    """Option --up: the world axis that points up (for :mod:`heightfusion.up_axis`)."""
    from ..up_axis import UP_AXES

    parser.add_argument("--up", choices=UP_AXES, metavar="AXIS",
                        help=f"world axis that points up ({', '.join(UP_AXES)}; auto: normal of the floor the first "
                             "frames see); the map lies in the plane normal to it (default: the dataset's, z for "
                             "TUM/EuRoC/trajectories, auto for ICL-NUIM)")


# --- map grid -------------------------------------------------------------------------------------
def add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    """Options --cell-size, --origin and --shape (for :func:`grid_args`)."""
    parser.add_argument("--cell-size", type=float, help="map cell size in metres (default: ground truth's, else 0.02)")
    parser.add_argument("--origin", type=float, nargs=2, metavar=("X", "Y"), help="world (x, y) of vertex (0, 0)")
    parser.add_argument("--shape", type=int, nargs=2, metavar=("NY", "NX"), help="map size in vertices")


def grid_args(args: argparse.Namespace) -> dict:
    """``cell_size``, ``origin`` and ``shape`` keyword arguments (tuples or None) of :func:`add_grid_arguments`'s options."""
    return {
        "cell_size": args.cell_size,
        "origin": None if args.origin is None else tuple(args.origin),
        "shape": None if args.shape is None else tuple(args.shape),
    }


# --- free space -----------------------------------------------------------------------------------
def add_free_space_arguments(parser: argparse.ArgumentParser) -> None:
    """Options --max-step, --max-slope (degrees), --robot-radius and --max-sigma, for :func:`free_space_settings`."""
    group = parser.add_argument_group("free space")
    group.add_argument("--max-step", type=float, default=DEFAULT_MAX_STEP, metavar="M",
                       help=f"largest height step the robot climbs, metres (default {DEFAULT_MAX_STEP:g})")
    group.add_argument("--max-slope", type=float, default=math.degrees(DEFAULT_MAX_SLOPE), metavar="DEG",
                       help=f"steepest slope the robot takes, degrees (default {math.degrees(DEFAULT_MAX_SLOPE):g})")
    group.add_argument("--robot-radius", type=float, default=DEFAULT_ROBOT_RADIUS, metavar="M",
                       help=f"robot radius, metres: obstacles are inflated by it (default {DEFAULT_ROBOT_RADIUS:g})")
    group.add_argument("--max-sigma", type=float, metavar="M",
                       help="vertices with a larger height sigma (metres) count as unknown (default: all observed ones are known)")


def free_space_settings(args: argparse.Namespace) -> FreeSpaceSettings:
    """The checked :class:`~heightfusion.navigation.FreeSpaceSettings` of :func:`add_free_space_arguments`'s options."""
    if not (isinstance(args.max_slope, (int, float)) and 0 < args.max_slope < 90):
        raise ValueError(f"--max-slope must be an angle in degrees in (0, 90), got {args.max_slope!r}")
    return FreeSpaceSettings(args.max_step, math.radians(args.max_slope), args.robot_radius, args.max_sigma)


# --- Rerun recording ------------------------------------------------------------------------------
def add_rerun_arguments(parser: argparse.ArgumentParser) -> None:
    """Options --rerun, --rerun-spawn and --rerun-mesh-every (for :func:`rerun_log_from_args`)."""
    from ..rerun_log import DEFAULT_MESH_EVERY

    group = parser.add_argument_group("Rerun recording (needs the rerun extra: pip install 'heightfusion[rerun]')")
    group.add_argument("--rerun", metavar="FILE.rrd", help="record frames, depth, poses and the map mesh to FILE.rrd")
    group.add_argument("--rerun-spawn", action="store_true", help="stream them to a Rerun viewer started for the run")
    group.add_argument("--rerun-mesh-every", type=int, default=DEFAULT_MESH_EVERY, metavar="N",
                       help=f"log the map mesh every N fused frames and at the end (default {DEFAULT_MESH_EVERY})")


def rerun_log_from_args(args: argparse.Namespace, name: str):
    """A :class:`heightfusion.rerun_log.RerunLog` named ``name`` for the Rerun options, or None when none is
    given. Made before the run, so that a missing SDK or folder fails at once; the caller closes it."""
    if args.rerun is None and not args.rerun_spawn:
        return None
    from ..rerun_log import RerunLog

    return RerunLog(args.rerun, spawn=args.rerun_spawn, mesh_every=args.rerun_mesh_every, name=name)


# --- camera tracking ------------------------------------------------------------------------------
def add_track_arguments(parser: argparse.ArgumentParser, default: str = "off") -> None:
    """Options --track and --start-pose (for :func:`track_options`)."""
    from ..tracking import TRACK_MODES, TrackingConfig

    parser.add_argument("--track", choices=TRACK_MODES, default=default,
                        help="camera tracking against the map: 'refine' corrects the given poses, 'odometry' needs "
                             f"only a starting pose, 'off' uses the poses as given (default {default})")
    parser.add_argument("--start-pose", type=float, nargs=7, metavar=("TX", "TY", "TZ", "QX", "QY", "QZ", "QW"),
                        help="odometry's starting pose (camera to world, TUM order); default the first frame's pose. "
                             "Monocular odometry on frames without poses (a plain video) needs it: its height over "
                             "the ground (z = 0) sets the scale")
    parser.add_argument("--camera-offset", type=float, nargs=7, metavar=("TX", "TY", "TZ", "QX", "QY", "QZ", "QW"),
                        help="the camera's pose on the body the given poses are of (motion-capture markers, a robot's "
                             "base; metres, TUM order): frames are used at pose @ offset; "
                             "'heightfusion camera-offset' measures it (default: the poses are the camera's)")
    parser.add_argument("--depth-offset", type=float, nargs=7, metavar=("TX", "TY", "TZ", "QX", "QY", "QZ", "QW"),
                        help="the depth images' viewpoint in the colour camera's frame (metres, TUM order): a Kinect's "
                             "depth, registered to its colour image, still sees from beside it; each depth image is "
                             "moved into the colour camera, and frames keep their poses. "
                             "'heightfusion camera-offset' measures it")
    parser.add_argument("--time-offset-ms", type=float, metavar="MS",
                        help="milliseconds the given poses' clock is ahead of the images' (motion capture out of step "
                             "with the camera): a frame taken at t gets the trajectory's pose at t + MS; "
                             "'heightfusion camera-offset' measures it (default 0)")
    parser.add_argument("--depth-time-offset-ms", type=float, metavar="MS",
                        help="milliseconds the given poses' clock is ahead of the depth images' own timestamps (TUM's "
                             "depth.txt; a Kinect's depth and colour streams are not in step): a depth image stamped t "
                             "is moved from the trajectory's pose at t + MS into the colour camera; 'heightfusion "
                             "camera-offset' measures it (default: each depth image seen from its frame's pose)")
    default_mm, default_deg = TrackingConfig.refine_prior
    parser.add_argument("--pose-drift", type=float, nargs=2, metavar=("MM", "DEG"),
                        help="refine: the given poses drift (odometry, a trajectory without loop closure), by about "
                             "this much per frame; their error may build up, and the map pulls it back (default: "
                             f"motion capture's, whose error does not build up, {default_mm * 1e3:g} mm, "
                             f"{default_deg:g} deg per frame)")
    parser.add_argument("--pose-sigma", type=float, nargs=2, metavar=("MM", "DEG"),
                        help="how far the given poses err: millimetres along and degrees about each axis (one "
                             "standard deviation of each pose's own error), for poses whose error does not build up "
                             "(motion capture, a board; drifting ones: --track refine --pose-drift). Frames fused at "
                             "their given pose carry it into motion stereo's sigma (the error of each pair's relative "
                             "pose) and the map's; 'heightfusion camera-offset' measures it, an upper bound (default: "
                             "the poses are exact)")


def track_options(args: argparse.Namespace) -> dict:
    """``track``, ``start_pose``, ``tracking`` and ``pose_sigma`` keyword arguments of the tracking options, checked."""
    from ..poses import pose_from_tum, validate_pose
    from ..tracking import TrackingConfig
    from . import UserError

    tracking = None
    if args.pose_drift is not None:
        if args.track != "refine" or not all(math.isfinite(v) and v > 0 for v in args.pose_drift):
            raise UserError(f"--pose-drift takes two positive numbers (mm, degrees) with --track refine, got "
                            f"{' '.join(map(str, args.pose_drift))} with --track {args.track}")
        tracking = TrackingConfig(refine_prior=(args.pose_drift[0] * 1e-3, args.pose_drift[1]), refine_drift=True)
    if args.track == "odometry" and getattr(args, "depth_time_offset_ms", None) is not None:
        raise UserError("--depth-time-offset-ms moves each depth image by the trajectory's motion; --track odometry "
                        "tracks without the trajectory: use it with --track off or refine")
    start_pose = None
    if args.start_pose is not None:
        if args.track != "odometry":
            raise UserError("--start-pose is odometry's starting pose: use it with --track odometry")
        start_pose = validate_pose(pose_from_tum(*args.start_pose), "--start-pose")
    pose_sigma = None
    if args.pose_sigma is not None:
        if not all(math.isfinite(v) and v >= 0 for v in args.pose_sigma):
            raise UserError(f"--pose-sigma takes two numbers >= 0 (mm, degrees), got {' '.join(map(str, args.pose_sigma))}")
        pose_sigma = (args.pose_sigma[0] * 1e-3, args.pose_sigma[1])
    return {"track": args.track, "start_pose": start_pose, "tracking": tracking, "pose_sigma": pose_sigma}


def camera_offset_option(args: argparse.Namespace, option: str = "camera_offset"):
    """The 4x4 offset of ``--camera-offset`` (or ``--depth-offset`` with ``option="depth_offset"``), checked, or None."""
    from ..poses import pose_from_tum, validate_pose
    from . import UserError

    values, name = getattr(args, option), "--" + option.replace("_", "-")
    if values is None:
        return None
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"{name} takes 7 finite numbers, got {' '.join(map(str, values))}")
    try:
        return validate_pose(pose_from_tum(*values), name)
    except ValueError as exc:
        raise UserError(f"{name}: {exc}") from None


def time_offset_option(args: argparse.Namespace, option: str = "time_offset_ms") -> float | None:
    """``--time-offset-ms`` (or ``--depth-time-offset-ms`` with ``option="depth_time_offset_ms"``) in seconds,
    checked; None when not given."""
    from ..datasets import MAX_POSE_TIME_OFFSET_S
    from . import UserError

    milliseconds, name = getattr(args, option), "--" + option.replace("_", "-")
    if milliseconds is None:
        return None
    if not (math.isfinite(milliseconds) and abs(milliseconds) <= 1000 * MAX_POSE_TIME_OFFSET_S):
        raise UserError(f"{name} must be a number of milliseconds within +-{1000 * MAX_POSE_TIME_OFFSET_S:g}, "
                        f"got {milliseconds}")
    return milliseconds / 1000


# --- marker board ---------------------------------------------------------------------------------
def add_board_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that describe the printed board (defaults: the board ``heightfusion board`` prints)."""
    group = parser.add_argument_group("marker board (the same values for board, calibrate and live)")
    group.add_argument("--squares", type=int, nargs=2, metavar=("X", "Y"), default=DEFAULT_SQUARES,
                       help="chessboard squares along X and Y (default %(default)s)")
    group.add_argument("--square-length", type=float, metavar="M", default=DEFAULT_SQUARE_LENGTH,
                       help="side of a square in metres, as printed: measure it (default %(default)s)")
    group.add_argument("--marker-length", type=float, metavar="M", default=None,
                       help="side of an ArUco marker in metres (default 0.75 x the square length)")
    group.add_argument("--dictionary", metavar="NAME", default=DEFAULT_DICTIONARY,
                       help="OpenCV ArUco dictionary (default %(default)s)")


def board_spec_from_args(args: argparse.Namespace):
    """The :class:`heightfusion.markers.BoardSpec` of the options added by :func:`add_board_arguments`.

    Raises ValueError (one line, naming the bad value) for an impossible board.
    """
    from ..markers import MARKER_RATIO, BoardSpec

    # Rounded to nanometres so that the default prints (and parses back) as 0.02625, not 0.026250000000000002.
    marker = args.marker_length if args.marker_length is not None else round(MARKER_RATIO * args.square_length, 9)
    return BoardSpec(args.squares[0], args.squares[1], args.square_length, marker, args.dictionary)


def board_arguments(spec) -> str:
    """The command-line options that describe ``spec`` (for ``calibrate`` and ``live``)."""
    return (
        f"--squares {spec.squares_x} {spec.squares_y} --square-length {spec.square_length:g} "
        f"--marker-length {spec.marker_length:g} --dictionary {spec.dictionary}"
    )


def check_positive(args: argparse.Namespace, units: dict[str, str]) -> None:
    """ValueError naming the option when an option of ``units`` (attribute name -> unit) is given but not a
    positive number of that unit."""
    for name, unit in units.items():
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"--{name.replace('_', '-')} must be a positive number of {unit}, got {value}")
