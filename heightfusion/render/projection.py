"""Matrices that take a height map into a GL clip space matching an OpenCV camera."""

from __future__ import annotations

import numpy as np

from ..camera import PinholeCamera
from ..heightmap import HeightMap
from ..poses import invert_pose

#: Margin of :func:`depth_range` around the map's box, relative to its largest corner depth: float32
#: rounding (~1e-6 relative) then neither clips a vertex at the near plane nor puts one beyond far.
DEPTH_MARGIN = 0.01
#: Smallest near plane, relative to far: a camera inside the map's box sees nothing closer that matters.
MIN_NEAR = 1e-4


def clip_from_camera(camera: PinholeCamera, near: float, far: float) -> np.ndarray:
    """4x4 projection from the OpenCV camera frame to GL clip space; ``near``, ``far`` in metres.

    ``far`` may be ``np.inf`` (no far plane).

    OpenCV puts pixel (u, v)'s centre at integer coordinates, GL at half-integers, so pixel u maps to
    window x = u + 0.5. Window row y = v + 0.5 as well (no vertical flip): ``glReadPixels``, which
    returns rows from window y = 0 upwards, then yields the image in OpenCV row order.
    """
    W, H = camera.width, camera.height
    P = np.zeros((4, 4))
    P[0, 0] = 2.0 * camera.fx / W
    P[0, 2] = 2.0 * (camera.cx + 0.5) / W - 1.0
    P[1, 1] = 2.0 * camera.fy / H
    P[1, 2] = 2.0 * (camera.cy + 0.5) / H - 1.0
    ratio = near / far  # 0 for far = inf: then no far plane, and clip z - w = -2 near at every depth
    P[2, 2] = (1.0 + ratio) / (1.0 - ratio)
    P[2, 3] = -2.0 * near / (1.0 - ratio)
    P[3, 2] = 1.0
    return P


def camera_from_map(grid: HeightMap, T_wc: np.ndarray) -> np.ndarray:
    """4x4 transform from the map-local frame (world minus (origin, 0)) to the camera frame."""
    T_map = np.eye(4)
    T_map[:2, 3] = grid.origin
    return invert_pose(T_wc) @ T_map


def depth_range(grid: HeightMap, T_wc: np.ndarray) -> tuple[float, float] | None:
    """(near, far) z-depths in metres enclosing the map's bounding box seen from ``T_wc``; None if it is behind.

    Both keep DEPTH_MARGIN x the largest corner depth from the box; ``near`` is at least MIN_NEAR x ``far``
    (the camera may be inside the box).
    """
    x0, x1, y0, y1 = grid.extent
    h_lo, h_hi = float(grid.heights.min()), float(grid.heights.max())
    corners = np.array(np.meshgrid([x0, x1], [y0, y1], [h_lo, h_hi])).reshape(3, -1)
    T_cw = invert_pose(T_wc)
    z = T_cw[2, :3] @ corners + T_cw[2, 3]
    z_max = float(z.max())
    if z_max <= 0:
        return None
    margin = DEPTH_MARGIN * z_max
    far = z_max + margin
    return max(float(z.min()) - margin, MIN_NEAR * far), far
