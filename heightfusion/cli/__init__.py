"""The ``heightfusion`` console command: one subcommand per job, each a module of this package.

All argparse code of the project lives here; the library modules take plain arguments. A subcommand
module provides ``add_arguments(parser)`` and ``run(args) -> int`` (the exit status),
and keeps heavy imports (OpenGL, torch, OpenCV) inside ``run`` so that ``heightfusion --help`` stays fast.
Errors meant for the user (bad paths, bad values) are raised as ``UserError`` or ``ValueError`` and
printed as one line, with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "replay": ("heightfusion.cli.replay", "fuse a recorded sequence (default: the bundled sample) into a height map"),
    "synth": ("heightfusion.cli.synth", "write a synthetic sequence (TUM layout) with ground truth"),
    "live": ("heightfusion.cli.live", "map live from a camera, video or dataset in a window (marker-board poses)"),
    "view": ("heightfusion.cli.view", "show a saved height map in 3D with its free-space map"),
    "export": ("heightfusion.cli.export", "write a saved map as GeoTIFF/COG, PLY with sigma, or a grid_map message"),
    "merge": ("heightfusion.cli.merge", "merge maps of the same place into one (information-weighted)"),
    "info": ("heightfusion.cli.info", "print the OpenGL renderer heightfusion would use"),
    "board": ("heightfusion.cli.board", "write a printable ChArUco marker board (PNG) for metric camera poses"),
    "calibrate": ("heightfusion.cli.calibrate", "calibrate a camera from views of the marker board; writes camera.yaml"),
}


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heightfusion", description="Real-time height-map fusion with differentiable rendering.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (UserError, ValueError, FileNotFoundError) as exc:
        print(f"heightfusion {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"heightfusion {args.command}: interrupted", file=sys.stderr)
        return 130
