"""How a camera sees a height map: the matrices into a GL clip space matching an OpenCV camera, the
depth range of the map's box, and the part of the map inside the view frustum (culling).

Culling works on square tiles of :data:`CULL_TILE` cells. A tile is kept when its bounding box (its
cells' extent, its vertices' lowest and highest height) is not wholly outside one of the frustum's
planes (the four sides, the camera's plane and, where the caller draws nothing deeper than some
depth, a far plane there), a conservative test: a dropped tile cannot put a fragment in the image, so drawing the kept
tiles gives the very fragments of drawing all of them. Heights are first bounded by the whole map's
range, and the tiles that pass are tested again with their own range, which costs in proportion to
what the camera may see rather than to the map's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def depth_range(
    grid: HeightMap, T_wc: np.ndarray, height_range: tuple[float, float] | None = None
) -> tuple[float, float] | None:
    """(near, far) z-depths in metres enclosing the map's bounding box seen from ``T_wc``; None if it is behind.

    Both keep DEPTH_MARGIN x the largest corner depth from the box; ``near`` is at least MIN_NEAR x ``far``
    (the camera may be inside the box). ``height_range`` is the map's (lowest, highest) height when
    the caller has it.
    """
    x0, x1, y0, y1 = grid.extent
    h_lo, h_hi = height_range if height_range is not None else (float(grid.heights.min()), float(grid.heights.max()))
    corners = np.array(np.meshgrid([x0, x1], [y0, y1], [h_lo, h_hi])).reshape(3, -1)
    T_cw = invert_pose(T_wc)
    z = T_cw[2, :3] @ corners + T_cw[2, 3]
    z_max = float(z.max())
    if z_max <= 0:
        return None
    margin = DEPTH_MARGIN * z_max
    far = z_max + margin
    return max(float(z.min()) - margin, MIN_NEAR * far), far


#: Side of the square tiles of cells that culling keeps or drops (16: a 1024^2 map has 4096 tiles, tested
#: in well under a millisecond, while a tile's overdraw along the frustum's edges stays small).
CULL_TILE = 16
#: Pixels the culling frustum extends beyond the image on every side: float32 rounding in the GL
#: pipeline then cannot let a dropped tile reach a pixel centre.
CULL_MARGIN_PX = 1.0


@dataclass(frozen=True)
class MapWindow:
    """The vertices in rows [row0, row1) and columns [col0, col1) of a grid (half-open).

    Example:
        >>> window = MapWindow(2, 5, 0, 3)
        >>> window.shape, window.grown(1, (10, 10))
        ((3, 3), MapWindow(row0=1, row1=6, col0=0, col1=4))
    """

    row0: int
    row1: int
    col0: int
    col1: int

    @classmethod
    def whole(cls, shape: tuple[int, int]) -> MapWindow:
        """Every vertex of a grid of ``shape`` (ny, nx)."""
        return cls(0, int(shape[0]), 0, int(shape[1]))

    @classmethod
    def around(cls, rows: np.ndarray, cols: np.ndarray) -> MapWindow | None:
        """The smallest window holding vertices (rows[k], cols[k]); None for none."""
        if len(rows) == 0:
            return None
        return cls(int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)

    @classmethod
    def of_mask(cls, mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> MapWindow | None:
        """The smallest window holding the True entries of a 2-D mask whose entry [0, 0] is vertex ``origin``
        (row, column); None for none."""
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            return None
        return cls(origin[0] + int(rows[0]), origin[0] + int(rows[-1]) + 1,
                   origin[1] + int(cols[0]), origin[1] + int(cols[-1]) + 1)

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) slices: ``array[window.slices]`` is the window's part of a (ny, nx, ...) array."""
        return slice(self.row0, self.row1), slice(self.col0, self.col1)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.row1 - self.row0, self.col1 - self.col0)

    @property
    def size(self) -> int:
        return (self.row1 - self.row0) * (self.col1 - self.col0)

    def grown(self, margin: int, shape: tuple[int, int]) -> MapWindow:
        """The window grown by ``margin`` vertices on every side, within a grid of ``shape``."""
        return MapWindow(max(self.row0 - margin, 0), min(self.row1 + margin, shape[0]),
                         max(self.col0 - margin, 0), min(self.col1 + margin, shape[1]))

    def union(self, other: MapWindow | None) -> MapWindow:
        """The smallest window holding both (``other`` None: this one)."""
        if other is None:
            return self
        return MapWindow(min(self.row0, other.row0), max(self.row1, other.row1),
                         min(self.col0, other.col0), max(self.col1, other.col1))

    def intersection(self, other: MapWindow) -> MapWindow | None:
        """The vertices in both windows; None for none."""
        row0, row1 = max(self.row0, other.row0), min(self.row1, other.row1)
        col0, col1 = max(self.col0, other.col0), min(self.col1, other.col1)
        return MapWindow(row0, row1, col0, col1) if row0 < row1 and col0 < col1 else None

    def within(self, outer: MapWindow) -> tuple[slice, slice]:
        """Slices of this window inside the arrays of the window ``outer``, which must hold it."""
        return (slice(self.row0 - outer.row0, self.row1 - outer.row0),
                slice(self.col0 - outer.col0, self.col1 - outer.col0))


def tile_counts(shape: tuple[int, int], tile: int = CULL_TILE) -> tuple[int, int]:
    """(rows, columns) of culling tiles over the cells of a grid of ``shape`` vertices; edge tiles may be smaller."""
    return -(-(shape[0] - 1) // tile), -(-(shape[1] - 1) // tile)


def tile_window(tiles: tuple[slice, slice], shape: tuple[int, int], tile: int = CULL_TILE) -> MapWindow:
    """The vertices of the cells of tile rows ``tiles[0]`` and tile columns ``tiles[1]`` (slices with steps of 1)."""
    rows, cols = tiles
    return MapWindow(rows.start * tile, min(rows.stop * tile, shape[0] - 1) + 1,
                     cols.start * tile, min(cols.stop * tile, shape[1] - 1) + 1)


def visible_tiles(grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray, height_range: tuple[float, float],
                  max_depth: float = math.inf, tile: int = CULL_TILE) -> np.ndarray:
    """(tile rows, tile columns) bool: the tiles whose bounding box may reach the image at a z-depth up to
    ``max_depth`` metres (module docstring).

    ``height_range`` is (lowest, highest) height of the whole map, metres.
    """
    planes = _frustum_planes(camera, camera_from_map(grid, T_wc), max_depth)
    ty, tx = tile_counts(grid.shape, tile)
    x0, x1 = _tile_edges(tx, grid.nx, tile, grid.cell_size)
    y0, y1 = _tile_edges(ty, grid.ny, tile, grid.cell_size)
    low, high = height_range
    visible = _boxes_meet(planes, (x0[None], x1[None]), (y0[:, None], y1[:, None]), (low, high))
    candidates = _bounding_slices(visible)
    if candidates is None:
        return visible
    rows, cols = candidates
    low, high = _tile_height_ranges(grid.heights[tile_window(candidates, grid.shape, tile).slices], tile)
    visible[rows, cols] &= _boxes_meet(planes, (x0[None, cols], x1[None, cols]), (y0[rows, None], y1[rows, None]),
                                       (low, high))
    return visible


def _frustum_planes(camera: PinholeCamera, cam_from_map: np.ndarray, max_depth: float) -> np.ndarray:
    """(n, 4) planes (a, b, c, e) in the map-local frame: a point p sees the image (with CULL_MARGIN_PX) only
    where a p_x + b p_y + c p_z + e >= 0 for all of them: the four sides through the camera centre, z > 0
    and, for a finite ``max_depth``, z <= max_depth."""
    m = CULL_MARGIN_PX
    # In the camera frame: u = fx x / z + cx >= -0.5 - m, i.e. fx x + (cx + 0.5 + m) z >= 0, and so on.
    in_camera = [
        [camera.fx, 0.0, camera.cx + 0.5 + m, 0.0],
        [-camera.fx, 0.0, camera.width - 0.5 + m - camera.cx, 0.0],
        [0.0, camera.fy, camera.cy + 0.5 + m, 0.0],
        [0.0, -camera.fy, camera.height - 0.5 + m - camera.cy, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ]
    if math.isfinite(max_depth):
        in_camera.append([0.0, 0.0, -1.0, max_depth])
    in_camera = np.array(in_camera)
    R, t = cam_from_map[:3, :3], cam_from_map[:3, 3]
    return np.column_stack([in_camera[:, :3] @ R, in_camera[:, :3] @ t + in_camera[:, 3]])


def _tile_edges(count: int, vertices: int, tile: int, cell_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Map-local (first, last) vertex coordinates of ``count`` tiles along an axis of ``vertices`` vertices."""
    first = np.arange(count) * tile
    return first * cell_size, np.minimum(first + tile, vertices - 1) * cell_size


def _boxes_meet(planes: np.ndarray, xs, ys, zs) -> np.ndarray:
    """Whether boxes [xs[0], xs[1]] x [ys[0], ys[1]] x [zs[0], zs[1]] (broadcast arrays) reach the inside
    of every plane: a box is outside when even its corner furthest along a plane's normal is not."""
    inside = True
    for a, b, c, e in planes:
        furthest = np.maximum(a * xs[0], a * xs[1]) + np.maximum(b * ys[0], b * ys[1]) + np.maximum(c * zs[0], c * zs[1])
        inside = inside & (furthest + e >= 0)
    return inside


def _bounding_slices(mask: np.ndarray) -> tuple[slice, slice] | None:
    window = MapWindow.of_mask(mask)
    return None if window is None else window.slices


def _tile_height_ranges(heights: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) height of each tile of a window's vertices that starts at a tile corner.

    A tile's vertices run from its first row and column to the next tile's first ones, which
    ``reduceat``'s blocks leave out: they are folded in from the next block's first row and column.
    """
    out = []
    for reduce in (np.minimum, np.maximum):
        rows = _with_next_first(reduce, reduce.reduceat(heights, np.arange(0, len(heights) - 1, tile), axis=0),
                                heights[tile:-1:tile], axis=0)
        out.append(_with_next_first(reduce, reduce.reduceat(rows, np.arange(0, rows.shape[1] - 1, tile), axis=1),
                                    rows[:, tile:-1:tile], axis=1))
    return out[0], out[1]


def _with_next_first(reduce: np.ufunc, blocks: np.ndarray, next_first: np.ndarray, axis: int) -> np.ndarray:
    """``blocks`` with each block but the last also reduced with the first row/column of the block after it."""
    lead = [slice(None)] * blocks.ndim
    lead[axis] = slice(0, next_first.shape[axis])
    reduce(blocks[tuple(lead)], next_first, out=blocks[tuple(lead)])
    return blocks
