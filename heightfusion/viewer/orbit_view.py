"""The 3D view both apps show: the map's mesh under a mouse-driven orbit camera, with its colour scale."""

from __future__ import annotations

import numpy as np

from .. import visualize
from ..heightmap import HeightMap
from .layout import Rect
from .map_view import LineSet, MapView
from .orbit import OrbitCamera, OrbitController
from .panels import ImagePanel
from .window import Window

_LEGEND_MARGIN_PX = 8


class OrbitView:
    """A map in 3D: :meth:`show` it (again after it changed), :meth:`draw` it into a rectangle.

    The mouse steers the camera (:class:`~heightfusion.viewer.orbit.OrbitController`, wired to the
    window on the first :meth:`show`); the height and uncertainty modes draw their colour scale at
    the view's right edge. ``map_view`` can also draw the same mesh from other viewpoints.
    """

    def __init__(self, window: Window) -> None:
        self.window = window
        self.map_view = MapView(window.ctx)
        self.legend = ImagePanel(window.ctx)
        self.lines = LineSet(window.ctx)
        self.controller: OrbitController | None = None
        self.grid: HeightMap | None = None
        self.mode = "color"

    def show(self, grid: HeightMap, mode: str) -> None:
        """Upload ``grid`` coloured by ``mode``; the first map also places the camera and takes the mouse."""
        self.grid, self.mode = grid, mode
        self.map_view.update(grid, mode)
        bar = visualize.vertex_colorbar(grid, mode)
        if bar is not None:
            self.legend.set_image(bar)
        if self.controller is None:
            self.controller = OrbitController(OrbitCamera.framing(grid))
            self.window.on_mouse_button = self.controller.on_mouse_button
            self.window.on_cursor = self.controller.on_cursor
            self.window.on_scroll = self.controller.on_scroll

    def reset_camera(self) -> None:
        """Frame the whole map again."""
        if self.controller is not None and self.grid is not None:
            self.controller.orbit = OrbitCamera.framing(self.grid)

    def draw(self, rect: Rect, hide_unobserved: bool = True, lines: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Draw into ``rect`` of the bound framebuffer (nothing before :meth:`show`).

        ``lines``: (N, 2, 3) map-local segments and (N, 3) RGB colours drawn over the map (a camera's
        frustum, its path; see :func:`~heightfusion.viewer.map_view.frustum_segments`).
        """
        if self.controller is None:
            return
        self.controller.rect, self.controller.framebuffer_height = rect, self.window.size[1]
        orbit = self.controller.orbit
        clip = self.map_view.draw(rect, orbit.pose(), orbit.camera(rect.width, rect.height), hide_unobserved)
        if lines is not None:
            self.lines.draw(clip, *lines)
        if self.mode != "color" and self.legend.texture is not None:
            w, h = self.legend.texture.size
            h = min(h, rect.height)
            self.legend.draw(Rect(rect.x + rect.width - w - _LEGEND_MARGIN_PX, rect.y + (rect.height - h) // 2, w, h))

    def release(self) -> None:
        self.map_view.release()
        self.legend.release()
        self.lines.release()
