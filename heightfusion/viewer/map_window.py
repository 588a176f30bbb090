"""The map viewer's window: orbit view of a saved map (left), its free-space map (right), a status line.

Keys: 1 / 2 / 3 (or m to cycle) switch colour / height / uncertainty; u shows or hides unobserved
vertices; r resets the view; p saves a screenshot next to the map; q or Esc quits. Mouse: left drag
orbits, right drag pans, the wheel zooms.
"""

from __future__ import annotations

from pathlib import Path

_KEYS_HELP = "[1/2/3 m] colour/height/uncertainty  [u] unobserved  [r] reset view  [p] screenshot  [q] quit"


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
