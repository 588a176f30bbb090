"""Choosing a map's grid: from explicit values, a ground truth, the data's extent, or the first view."""

from __future__ import annotations

import math

import numpy as np

from .heightmap import HeightMap

#: Longest map side sized from the data before a larger cell size is asked for.
MAX_AUTO_SIDE = 1024
#: Cell size when nothing else gives one, metres.
DEFAULT_CELL_SIZE = 0.02
#: Side of a map centred on the first view (:func:`grid_around_view`) when nothing else gives its extent, metres.
DEFAULT_EXTENT_M = 4.0
# Every how many frames the map extent is sampled from, when sized from the data.
_EXTENT_STRIDE = 5


def grid_for_sequence(
    sequence,
    cell_size: float | None = None,
    origin: tuple[float, float] | None = None,
    shape: tuple[int, int] | None = None,
) -> HeightMap:
    """An empty map for ``sequence`` (a dataset): explicit arguments first, then the ground truth's grid,
    then the extent of the points the sequence's depth sees (monocular data has none: give the grid).

    Raises ValueError for a bad cell size, for data that spans more than :data:`MAX_AUTO_SIDE` vertices,
    or when nothing gives the extent.
    """
    gt = sequence.gt_heightmap
    if gt is not None:
        cell_size = gt.cell_size if cell_size is None else cell_size
        if origin is None and shape is None and cell_size == gt.cell_size:
            return HeightMap(tuple(gt.origin), gt.cell_size, gt.shape)
        x0, x1, y0, y1 = gt.extent
    elif origin is None or shape is None:
        x0, x1, y0, y1 = data_extent(sequence)
    cell_size = DEFAULT_CELL_SIZE if cell_size is None else cell_size
    if not (math.isfinite(cell_size) and cell_size > 0):
        raise ValueError(f"--cell-size must be a positive length in metres, got {cell_size!r}")
    if origin is None:
        origin = (x0, y0)
    if shape is None:
        shape = (int(math.ceil((y1 - origin[1]) / cell_size)) + 1, int(math.ceil((x1 - origin[0]) / cell_size)) + 1)
        if max(shape) > MAX_AUTO_SIDE:
            raise ValueError(
                f"the data spans {x1 - x0:.1f} m x {y1 - y0:.1f} m: {shape[1]} x {shape[0]} vertices at "
                f"{cell_size:g} m cells; pass a larger --cell-size or an explicit --origin and --shape"
            )
    return HeightMap(origin, cell_size, shape)


def data_extent(sequence) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) holding 98 % of the points that every few frames' depth sees."""
    points = [
        frame.camera.world_points(frame.depth, frame.T_wc, stride=4)
        for k, frame in enumerate(sequence)
        if k % _EXTENT_STRIDE == 0 and frame.depth is not None and frame.T_wc is not None
    ]
    points = [p for p in points if len(p)]
    if not points:
        raise ValueError(
            f"{sequence.path}: no frame with depth and pose to size the map from; pass --origin X Y and --shape NY NX"
        )
    xy = np.concatenate(points)[:, :2]
    lo, hi = np.percentile(xy, 1, axis=0), np.percentile(xy, 99, axis=0)
    return lo[0], hi[0], lo[1], hi[1]


def grid_around_view(
    T_wc: np.ndarray,
    extent: float,
    cell_size: float | None = None,
    origin: tuple[float, float] | None = None,
    shape: tuple[int, int] | None = None,
    truth: HeightMap | None = None,
) -> HeightMap:
    """The map for a run that starts at pose ``T_wc``: the explicit grid, else the truth's, else a square of
    side ``extent`` metres centred where the optical axis meets the floor (:func:`look_point`)."""
    if origin is not None and shape is not None:
        return HeightMap(origin, cell_size or DEFAULT_CELL_SIZE, shape)
    if truth is not None and (cell_size is None or cell_size == truth.cell_size):
        return HeightMap(tuple(truth.origin), truth.cell_size, truth.shape)
    cell = cell_size or DEFAULT_CELL_SIZE
    n = math.ceil(extent / cell) + 1
    centre = look_point(T_wc)
    return HeightMap((centre[0] - extent / 2, centre[1] - extent / 2), cell, (n, n))


def look_point(T_wc: np.ndarray, max_range: float = 3.0) -> np.ndarray:
    """World (x, y) where the optical axis meets the floor z = 0 within ``max_range`` m, else 1.5 m ahead."""
    centre, axis = T_wc[:3, 3], T_wc[:3, 2]
    if axis[2] < -1e-6:
        t = -centre[2] / axis[2]
        if 0 < t <= max_range:
            return (centre + t * axis)[:2]
    heading = axis[:2] / max(np.linalg.norm(axis[:2]), 1e-9)
    return centre[:2] + 1.5 * heading
