"""The ``heightfusion`` console command: one subcommand per job, each a module of this package.

All argparse code of the project lives here; the library modules take plain arguments. A subcommand
module provides ``add_arguments(parser)`` and ``run(args) -> int`` (the exit status),
and keeps heavy imports (OpenGL, torch, OpenCV) inside ``run`` so that ``heightfusion --help`` stays fast.
Errors meant for the user (bad paths, bad values, a garbled file) are raised as ``UserError``,
``ValueError`` or ``OSError`` and printed as one line on stderr, with exit status 2, never as a traceback
(``MemoryError`` from a size the user asked for, and a missing OpenGL or display, count as such too). Any
other exception is a bug: one line ``heightfusion CMD: internal error: TYPE: MESSAGE``, exit status 1.
``heightfusion --debug CMD ...`` (or ``CMD ... --debug``) prints the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "replay": ("heightfusion.cli.replay", "fuse a recorded sequence (default: the bundled sample) into a height map"),
    "synth": ("heightfusion.cli.synth", "write a synthetic sequence (TUM layout) with ground truth"),
    "live": ("heightfusion.cli.live", "map live from a camera, video or dataset in a window (marker-board poses)"),
    "view": ("heightfusion.cli.view", "show a saved height map in 3D with its free-space map"),
    "export": ("heightfusion.cli.export", "write a saved map as GeoTIFF/COG, PLY with sigma, or a grid_map message"),
    "batch": ("heightfusion.cli.batch", "map many recordings at once on Ray (local or a cluster) and merge them into one map"),
    "merge": ("heightfusion.cli.merge", "merge maps of the same place into one (information-weighted)"),
    "info": ("heightfusion.cli.info", "print the OpenGL renderer and the stereo device heightfusion would use"),
    "board": ("heightfusion.cli.board", "write a printable ChArUco marker board (PNG) for metric camera poses"),
    "calibrate": ("heightfusion.cli.calibrate", "calibrate a camera from views of the marker board; writes camera.yaml"),
    "camera-offset": ("heightfusion.cli.camera_offset", "measure where the camera sits on the body an RGB-D recording's poses are of"),
    "compare": ("heightfusion.cli.compare", "compare heightfusion with the Kalman elevation map and the TSDF on the same data"),
}


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit status 2."""


# Exceptions that are the user's input or machine, not a bug, by class name (no heavy imports here):
# no OpenGL / no display (render.context, viewer.window), an optional extra not installed (baselines, rerun, batch,
# tiles).
_USER_ERROR_NAMES = frozenset({"GLUnavailableError", "WindowUnavailableError", "BaselineUnavailable",
                               "RerunUnavailableError", "RayUnavailableError", "TilesUnavailable"})


def check_output_folder(path, option: str = "--out") -> None:
    """UserError unless ``path`` is a folder or can be made one (checked before a run, not after it).

    Catches an existing file (or a file among its parents) and a parent the user cannot write in.
    """
    from pathlib import Path

    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UserError(f"{option} {path}: exists and is not a folder")
    parent = target
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{option} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: no permission to write in {parent}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heightfusion", description="Real-time height-map fusion with differentiable rendering.")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(sp)
        # Also after the command; SUPPRESS keeps the subparser from resetting a --debug given before it.
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print the traceback of an error")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    0: done; 1: a bug (internal error); 2: bad input (argparse's usage errors too, as SystemExit); 130: Ctrl-C.
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    debug = "--debug" in argv
    try:
        parser = build_parser()
    except Exception as exc:  # a subcommand module that does not import: a bug
        return _report("heightfusion", exc, debug)
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    restore = (lambda: None) if debug else _quiet_native_logs()
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print(f"heightfusion {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return _report(f"heightfusion {args.command}", exc, debug)
    finally:
        restore()


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the user's (bad value, bad or missing file, size too large, no GL/display), not a bug."""
    if isinstance(exc, (UserError, ValueError, OSError, MemoryError)):
        return True
    return any(cls.__name__ in _USER_ERROR_NAMES for cls in type(exc).__mro__)


def error_message(exc: BaseException) -> str:
    """``exc`` as one line: an OSError names its file, a multi-line message is joined."""
    if isinstance(exc, FileExistsError) and exc.filename is not None and not os.path.isdir(exc.filename):
        text = f"{exc.filename}: exists and is not a folder"  # mkdir(parents=True) met a file on the way
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        # An atomic write renames ".NAME.xxxx.tmp" to NAME: name the file the user asked for, not the temp.
        temp = exc.filename2 is not None and os.path.basename(str(exc.filename)).startswith(
            f".{os.path.basename(str(exc.filename2))}.")
        text = f"{exc.filename2 if temp else exc.filename}: {exc.strerror}"
    elif isinstance(exc, MemoryError):
        text = f"out of memory ({exc}); ask for smaller sizes" if str(exc) else "out of memory; ask for smaller sizes"
    else:
        text = str(exc)
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return text or type(exc).__name__


def _report(prefix: str, exc: BaseException, debug: bool) -> int:
    """Print ``exc`` (one line; the traceback before it with ``debug``) and return its exit status."""
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if is_user_error(exc):
        print(f"{prefix}: error: {error_message(exc)}", file=sys.stderr)
        return 2
    hint = "" if debug else " (run with --debug for the traceback)"
    print(f"{prefix}: internal error: {type(exc).__name__}: {error_message(exc)}{hint}", file=sys.stderr)
    return 1


def _quiet_native_logs():
    """Keep OpenCV's and FFmpeg's own log lines off stderr while a command runs; returns the undo.

    A garbled PNG or video makes them print warnings and errors of their own, where our error (or the
    skipped-frame count) says it once, in one line. ``--debug`` leaves them on.
    """
    # FFmpeg's level is read once per process, when OpenCV first opens a video; a value the user set wins.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET: "moov atom not found" and the like
    cv2 = sys.modules.get("cv2")  # loaded by the subcommands' options (markers); never imported here
    if cv2 is None:
        return lambda: None
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    return lambda: logging.setLogLevel(level)
