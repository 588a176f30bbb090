"""An orbit camera for the 3D map view: drag to orbit, scroll to zoom, right-drag to pan."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..camera import PinholeCamera
from ..heightmap import HeightMap
from ..poses import look_at

# Radians of orbit per pixel dragged, and zoom factor per scroll step.
_ORBIT_RATE = 0.008
_ZOOM_STEP = 0.9
_MIN_ELEVATION, _MAX_ELEVATION = math.radians(5.0), math.radians(89.0)


@dataclass
class OrbitCamera:
    """A camera on a sphere around ``target`` (world frame, metres), always upright (world Z up).

    Attributes:
        target: (3,) point looked at.
        distance: metres from the target.
        azimuth: radians, angle of the camera around Z measured from +x.
        elevation: radians above the horizontal plane of the target.
        fov_y: vertical field of view, radians.
    """

    target: np.ndarray
    distance: float
    azimuth: float = -math.pi / 2
    elevation: float = math.radians(45.0)
    fov_y: float = math.radians(50.0)

    @classmethod
    def framing(cls, grid: HeightMap) -> OrbitCamera:
        """A view of the whole map from the south, 45 degrees up: its bounding circle spans the view's height."""
        x0, x1, y0, y1 = grid.extent
        shown = grid.heights[grid.observed] if grid.observed.any() else grid.heights
        target = np.array([(x0 + x1) / 2, (y0 + y1) / 2, float(np.median(shown))])
        radius = 0.5 * math.hypot(x1 - x0, y1 - y0)
        return cls(target=target, distance=radius / math.tan(math.radians(50.0) / 2))

    @property
    def eye(self) -> np.ndarray:
        ce = math.cos(self.elevation)
        offset = np.array([ce * math.cos(self.azimuth), ce * math.sin(self.azimuth), math.sin(self.elevation)])
        return self.target + self.distance * offset

    def pose(self) -> np.ndarray:
        """``T_wc`` of the view (OpenCV camera looking at the target, image-up towards +Z)."""
        return look_at(self.eye, self.target)

    def camera(self, width: int, height: int) -> PinholeCamera:
        """Pinhole intrinsics for a ``width`` x ``height`` viewport."""
        f = 0.5 * height / math.tan(self.fov_y / 2)
        return PinholeCamera(width, height, f, f, (width - 1) / 2, (height - 1) / 2)

    def orbit(self, dx_px: float, dy_px: float) -> None:
        """Turn around the target by a mouse drag of (dx, dy) pixels."""
        self.azimuth -= dx_px * _ORBIT_RATE
        self.elevation = min(max(self.elevation + dy_px * _ORBIT_RATE, _MIN_ELEVATION), _MAX_ELEVATION)

    def zoom(self, steps: float) -> None:
        """Move towards the target (positive ``steps``, a scroll up) or away from it."""
        self.distance = max(self.distance * _ZOOM_STEP**steps, 1e-3)

    def pan(self, dx_px: float, dy_px: float, viewport_height: int) -> None:
        """Slide the target in the view plane so that the scene follows a drag of (dx, dy) pixels."""
        metres_per_px = 2.0 * self.distance * math.tan(self.fov_y / 2) / max(viewport_height, 1)
        R = self.pose()[:3, :3]
        self.target = self.target - metres_per_px * (dx_px * R[:, 0] + dy_px * R[:, 1])


class OrbitController:
    """Steers an :class:`OrbitCamera` with the mouse inside one rectangle of a window.

    Left drag orbits, right (or shift + left) drag pans, the wheel zooms. Wire its methods to
    :class:`~heightfusion.viewer.window.Window`'s ``on_mouse_button``, ``on_cursor`` and ``on_scroll``.
    """

    def __init__(self, orbit: OrbitCamera) -> None:
        self.orbit = orbit
        self.rect = None  # the view's Rect, set by the app at each layout
        self.framebuffer_height = 0
        self._cursor = (0.0, 0.0)
        self._drag: str | None = None  # "orbit" or "pan" while a button is held

    def on_mouse_button(self, button: int, action: int, mods: int) -> None:
        import glfw

        if action == glfw.RELEASE:
            self._drag = None
        elif action == glfw.PRESS and self._inside():
            pan = button == glfw.MOUSE_BUTTON_RIGHT or (button == glfw.MOUSE_BUTTON_LEFT and mods & glfw.MOD_SHIFT)
            self._drag = "pan" if pan else "orbit" if button == glfw.MOUSE_BUTTON_LEFT else None

    def on_cursor(self, x: float, y: float) -> None:
        dx, dy = x - self._cursor[0], y - self._cursor[1]
        self._cursor = (x, y)
        if self._drag == "orbit":
            self.orbit.orbit(dx, dy)
        elif self._drag == "pan" and self.rect is not None:
            self.orbit.pan(dx, dy, self.rect.height)

    def on_scroll(self, dx: float, dy: float) -> None:
        if self._inside():
            self.orbit.zoom(dy)

    def _inside(self) -> bool:
        return self.rect is not None and self.rect.contains(*self._cursor, self.framebuffer_height)
