"""``heightfusion view MAP.npz``: a saved height map in an orbit view, with its free-space map.

Keys: 1 / 2 / 3 (or m to cycle) switch colour / height / uncertainty; u shows or hides unobserved
vertices; r resets the view; p saves a screenshot next to the map; q or Esc quits. Mouse: left drag
orbits, right drag pans, the wheel zooms.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import UserError

_KEYS_HELP = "[1/2/3 m] colour/height/uncertainty  [u] unobserved  [r] reset view  [p] screenshot  [q] quit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..navigation import add_free_space_arguments
    from .map_view import MODES

    parser.add_argument("map", help="height map file (.npz, as written by replay or live)")
    parser.add_argument("--mode", choices=MODES, default="color", help="what the mesh colours show (default color)")
    parser.add_argument("--size", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"), help="window size")
    parser.add_argument("--screenshot", metavar="FILE.png", help="save the window as PNG before closing")
    parser.add_argument("--frames", type=int, help="draw this many frames, then close (scripted runs)")
    parser.add_argument("--hidden", action="store_true", help="open no visible window (with --frames/--screenshot)")
    add_free_space_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..heightmap import load_heightmap
    from ..navigation import free_space_from_args
    from .window import Window, WindowUnavailableError, check_window_size

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
    labels = free_space_from_args(grid, args)
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


class MapWindow:
    """The viewer's window: orbit view of the map (left), free-space map (right), a status line."""

    def __init__(self, window, grid, free_space_labels, mode: str, screenshot_dir: Path) -> None:
        import glfw

        from .. import visualize
        from .map_view import MODES
        from .orbit_view import OrbitView
        from .panels import ImagePanel

        self.window, self.grid, self.mode = window, grid, mode
        self.modes = MODES
        self.hide_unobserved = True
        self.screenshot_dir = screenshot_dir
        self.view = OrbitView(window)
        self.view.show(grid, mode)
        self.free_panel = ImagePanel(window.ctx)
        self.free_panel.set_image(visualize.render_free_space(free_space_labels))
        self.status_panel = ImagePanel(window.ctx)
        window.on_key = self.on_key
        self._glfw = glfw
        self.message = ""

    def on_key(self, key: int, action: int, mods: int) -> None:
        glfw = self._glfw
        if action != glfw.PRESS:
            return
        mode_keys = {glfw.KEY_1: 0, glfw.KEY_2: 1, glfw.KEY_3: 2}
        if key in mode_keys or key == glfw.KEY_M:
            index = mode_keys.get(key, (self.modes.index(self.mode) + 1) % len(self.modes))
            self.mode = self.modes[index]
            self.view.show(self.grid, self.mode)
        elif key == glfw.KEY_U:
            self.hide_unobserved = not self.hide_unobserved
        elif key == glfw.KEY_R:
            self.view.reset_camera()
        elif key == glfw.KEY_P:
            path = self.screenshot_dir / "view_screenshot.png"
            self.save_screenshot(path)
            self.message = f"saved {path}"
        elif key in (glfw.KEY_Q, glfw.KEY_ESCAPE):
            self.window.close()

    def draw(self) -> None:
        from .layout import Rect, grid_cells, span
        from .panels import TEXT_HEIGHT_PX, text_image

        if not self.window.drawable:
            self.window.skip_frame()
            return
        width, height = self.window.size
        self.window.begin_frame()
        status_rect = Rect(0, 0, width, 2 * TEXT_HEIGHT_PX)
        cells = grid_cells(Rect(0, status_rect.height, width, height - status_rect.height), 1, 3)[0]
        self.view.draw(span(cells[0], cells[1]), self.hide_unobserved)
        self.free_panel.draw(cells[2])
        g = self.grid
        info = f"{g.nx} x {g.ny} vertices, {g.cell_size * 100:g} cm cells, {int(g.observed.sum())} observed | mode: {self.mode}"
        self.status_panel.set_image(text_image([info + ("   " + self.message if self.message else ""), _KEYS_HELP], width))
        self.status_panel.draw(status_rect, fit=False)
        self.window.end_frame()

    def run(self, frames: int | None = None) -> None:
        """Draw until the window closes, or ``frames`` frames."""
        count = 0
        while not self.window.should_close and (frames is None or count < frames):
            self.draw()
            count += 1
            if frames is None:
                self._glfw.wait_events_timeout(0.05)  # idle until input: a viewer needs no busy loop

    def save_screenshot(self, path) -> None:
        from ..visualize import write_png

        write_png(path, self.window.read_rgb())
