"""Matrices that take a height map into a GL clip space matching an OpenCV camera."""

from __future__ import annotations

import numpy as np

from ..camera import PinholeCamera
from ..heightmap import HeightMap
from ..poses import invert_pose


def clip_from_camera(cam: PinholeCamera, near: float, far: float) -> np.ndarray:
    """4x4 projection from the OpenCV camera frame to GL clip space.

    OpenCV puts pixel (u, v)'s centre at integer coordinates, GL at half-integers, so pixel u maps to
    window x = u + 0.5. Window row y = v + 0.5 as well (no vertical flip): ``glReadPixels``, which
    returns rows from window y = 0 upwards, then yields the image in OpenCV row order.
    """
    W, H = cam.width, cam.height
    P = np.zeros((4, 4))
    P[0, 0] = 2.0 * cam.fx / W
    P[0, 2] = 2.0 * (cam.cx + 0.5) / W - 1.0
    P[1, 1] = 2.0 * cam.fy / H
    P[1, 2] = 2.0 * (cam.cy + 0.5) / H - 1.0
    P[2, 2] = (far + near) / (far - near)
    P[2, 3] = -2.0 * far * near / (far - near)
    P[3, 2] = 1.0
    return P


def camera_from_map(grid: HeightMap, T_wc: np.ndarray) -> np.ndarray:
    """4x4 transform from the map-local frame (world minus (origin, 0)) to the camera frame."""
    T_map = np.eye(4)
    T_map[:2, 3] = grid.origin
    return invert_pose(T_wc) @ T_map


def depth_range(grid: HeightMap, T_wc: np.ndarray) -> tuple[float, float] | None:
    """(near, far) z-depths enclosing the map's bounding box seen from ``T_wc``; None if it is behind.

    ``far`` is the largest corner depth (with a margin); ``near`` is a tiny fraction of it, since the
    depth test uses linear depth z / far written by the shader and the near plane only clips.
    """
    x0, x1, y0, y1 = grid.extent
    h_lo, h_hi = float(grid.heights.min()), float(grid.heights.max())
    corners = np.array(np.meshgrid([x0, x1], [y0, y1], [h_lo, h_hi])).reshape(3, -1)
    T_cw = invert_pose(T_wc)
    z = T_cw[2, :3] @ corners + T_cw[2, 3]
    far = float(z.max())
    if far <= 0:
        return None
    far = far * 1.001 + 1e-6
    return far * 1e-6, far
