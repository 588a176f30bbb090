"""``heightfusion view MAP.npz``: a saved height map in an orbit view, with its free-space map
(:class:`heightfusion.viewer.map_window.MapWindow`, whose docstring lists the keys)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import UserError
from .options import add_free_space_arguments, free_space_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..viewer.map_view import MODES

    parser.add_argument("map", help="height map file (.npz, as written by replay or live)")
    parser.add_argument("--mode", choices=MODES, default="color", help="what the mesh colours show (default color)")
    parser.add_argument("--size", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"), help="window size")
    parser.add_argument("--screenshot", metavar="FILE.png", help="save the window as PNG before closing")
    parser.add_argument("--frames", type=int, help="draw this many frames, then close (scripted runs)")
    parser.add_argument("--hidden", action="store_true", help="open no visible window (with --frames/--screenshot)")
    add_free_space_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..heightmap import load_heightmap
    from ..viewer.map_window import MapWindow
    from ..viewer.window import Window, WindowUnavailableError, check_window_size

    path = Path(args.map)
    if not path.is_file():
        raise UserError(f"{path}: no such map file")
    try:
        grid = load_heightmap(path)
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"{path}: not a heightfusion map ({exc})") from None
    check_window_size(args.size)
    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames must be a positive number of frames, got {args.frames}")
    labels = free_space_settings(args).labels(grid)
    try:
        window = Window(f"heightfusion view - {path.name}", tuple(args.size), visible=not args.hidden)
    except WindowUnavailableError as exc:
        raise UserError(str(exc)) from None
    try:
        viewer = MapWindow(window, grid, labels, args.mode, screenshot_dir=path.parent)
        viewer.run(frames=args.frames)
        if args.screenshot:
            viewer.save_screenshot(args.screenshot)
            print(f"wrote {args.screenshot}")
    finally:
        window.destroy()
    return 0
