"""Ground truth for free space on synthetic scenes: obstacles from a scene's analytic boxes and ramps.

Independent of :func:`heightfusion.navigation.free_space` (no grid heights, no neighbour differences),
so the tests and ``benchmarks/bench_free_space.py`` score the labels against it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from ..heightmap import HeightMap
from ..navigation import FREE, OBSTACLE, UNKNOWN


def rectangle_distance(grid: HeightMap, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    """(ny, nx) distance from each vertex to the rectangle [x0, x1] x [y0, y1] (0 inside), metres."""
    xy = grid.vertex_xy()
    dx = np.maximum(np.maximum(x0 - xy[..., 0], xy[..., 0] - x1), 0)
    dy = np.maximum(np.maximum(y0 - xy[..., 1], xy[..., 1] - y1), 0)
    return np.hypot(dx, dy)


def analytic_obstacles(scene, grid, max_step, max_slope, robot_radius, spacing=5e-4) -> np.ndarray:
    """(ny, nx) bool: vertices where the robot's centre may not be, from the scene's Box and Ramp geometry.

    A vertex is an obstacle when it lies within ``robot_radius`` of (a) a point of a box or ramp side
    where the scene's height jumps by more than ``max_step`` across the side (sides sampled every
    ``spacing`` metres, heights just either side of them), or (b) a ramp steeper than ``max_slope``
    (its whole footprint). Shares nothing with free_space: no grid heights, no neighbour differences.
    """
    eps = 1e-6
    points = [np.empty((0, 2))]
    for block in scene.boxes + scene.ramps:
        corners = [(block.x0, block.y0), (block.x1, block.y0), (block.x1, block.y1), (block.x0, block.y1)]
        for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1]):
            length = math.hypot(bx - ax, by - ay)
            t = np.linspace(0.0, 1.0, int(length / spacing) + 2)
            x, y = ax + t * (bx - ax), ay + t * (by - ay)
            nx_, ny_ = (by - ay) / length * eps, (ax - bx) / length * eps  # across the side
            jump = np.abs(scene.height(x + nx_, y + ny_) - scene.height(x - nx_, y - ny_))
            points.append(np.column_stack([x, y])[jump > max_step])
    points = np.concatenate(points)
    xy = grid.vertex_xy().reshape(-1, 2)
    obstacle = np.zeros(len(xy), dtype=bool)
    if len(points):
        obstacle = cKDTree(points).query(xy)[0] < robot_radius
    obstacle = obstacle.reshape(grid.shape)
    for ramp in scene.ramps:
        if math.atan2(ramp.height, ramp.x1 - ramp.x0) > max_slope:
            obstacle |= rectangle_distance(grid, ramp.x0, ramp.x1, ramp.y0, ramp.y1) < robot_radius
    return obstacle


def obstacle_scores(labels, sure, possible=None) -> dict:
    """Precision and recall of the OBSTACLE label against analytic obstacles, and where the rest went.

    ``sure``: obstacles for a robot that climbs a little more than max_step (recall counts these,
    over vertices not labelled unknown); ``possible`` (default ``sure``): obstacles for one that climbs
    a little less (precision: an obstacle label there is not wrong). Equal masks give plain scores.
    ``as_unknown`` / ``as_free``: shares of the ``sure`` obstacles labelled UNKNOWN / FREE (the unsafe miss).
    """
    possible = sure if possible is None else possible
    predicted = labels == OBSTACLE
    known = labels != UNKNOWN
    n_sure = max(sure.sum(), 1)
    return {
        "precision": float((predicted & possible).sum() / max(predicted.sum(), 1)),
        "recall": float((predicted & sure).sum() / max((sure & known).sum(), 1)),
        "as_unknown": float((sure & ~known).sum() / n_sure),
        "as_free": float((sure & (labels == FREE)).sum() / n_sure),
    }
