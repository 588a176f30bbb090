"""Free space for a ground robot: where on a height map the robot's centre may be.

:func:`free_space` labels every vertex of the map's grid (``(ny, nx)`` int8, same layout as
``grid.heights``) with :data:`FREE`, :data:`OBSTACLE` or :data:`UNKNOWN`. The robot is a disc of
radius ``robot_radius`` that climbs height steps up to ``max_step`` between neighbouring vertices
and slopes up to ``max_slope``. Rules, in order:

1. Known vertices: observed, finite height and, with ``max_sigma``, height sigma (``HeightMap.sigma``)
   at most ``max_sigma``. Only known vertices are tested in 2.
2. Hazards:
   - step: both vertices of a pair of known 4-neighbours whose heights differ by more than
     ``max_step`` (a step of exactly ``max_step`` is climbable);
   - slope: a known vertex whose slope exceeds ``max_slope``. The slope is atan |g| with g the
     component-wise median, over the vertex's 5 x 5 neighbourhood, of the central-difference
     gradient (one-sided next to unknown vertices, 0 at unknown ones). The median averages height
     noise away and ignores a climbable step (two columns of large differences in the window)
     while a ramp, where all differences agree, keeps its slope.
3. Labels describe the robot's disc centred at the vertex: :data:`OBSTACLE` where the disc reaches a
   hazard (unknown vertices included: a robot centred there hits it), else :data:`UNKNOWN` where it
   reaches an unknown vertex, else :data:`FREE`: the whole disc was seen and is traversable. With
   ``inflate_unknown=False`` only the unknown vertices themselves are :data:`UNKNOWN` (free space
   then runs up to the edge of what was seen, as for frontier exploration). Beyond the map's border
   counts as neither hazard nor unknown.
   Reach: a step lies half a cell from the hazard vertices on either side of it, as does the edge of
   unknown space from the last known vertex, so both are dilated by ``robot_radius - cell_size / 2``
   (Euclidean distance in cells): the disc reaches a step when the step's midpoint is nearer than
   ``robot_radius``.

Labels are local: the flat top of a box wider than the robot's diameter is free (the robot would
fit) though no climbable path leads there; reachability is the planner's flood fill.
The step test between neighbours assumes ``cell_size * tan(max_slope) < max_step`` (a traversable
slope never looks like a step), true for maps of a few centimetres per cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .heightmap import HeightMap

#: Label of a vertex the robot's centre may occupy: its disc lies on seen, traversable ground.
FREE = 0
#: Label of a vertex within ``robot_radius`` of a step or slope the robot cannot take.
OBSTACLE = 1
#: Label of a vertex whose robot disc reaches unobserved (or too uncertain) vertices but no obstacle
#: (with ``inflate_unknown=False``: of such a vertex itself).
UNKNOWN = -1
#: Label -> name, in the order pictures and counts list them.
LABEL_NAMES = {FREE: "free", OBSTACLE: "obstacle", UNKNOWN: "unknown"}

#: Defaults for a small ground robot.
DEFAULT_MAX_STEP = 0.05
DEFAULT_MAX_SLOPE = math.radians(20.0)
DEFAULT_ROBOT_RADIUS = 0.1

# Side of the neighbourhood of the slope median (cv2.medianBlur takes float32 up to 5).
_SLOPE_WINDOW = 5


def free_space(
    grid: HeightMap,
    max_step: float = DEFAULT_MAX_STEP,
    max_slope: float = DEFAULT_MAX_SLOPE,
    robot_radius: float = DEFAULT_ROBOT_RADIUS,
    max_sigma: float | None = None,
    inflate_unknown: bool = True,
) -> np.ndarray:
    """(ny, nx) int8 labels FREE / OBSTACLE / UNKNOWN per vertex of ``grid`` (rules: module docstring).

    Args:
        grid: the height map.
        max_step: largest height step the robot climbs between neighbouring vertices, metres (> 0).
        max_slope: steepest slope the robot takes, radians, in (0, pi/2).
        robot_radius: radius of the robot's footprint, metres (>= 0); obstacles are inflated by it.
        max_sigma: vertices whose height sigma exceeds this (metres, > 0) count as unknown; None: only
            the observed flag decides.
        inflate_unknown: label free vertices within ``robot_radius`` of unknown ones unknown (default).

    Raises:
        ValueError: for an argument out of range, naming it and its value.

    Example:
        >>> import heightfusion as hf
        >>> grid = hf.HeightMap((0.0, 0.0), 0.02, (30, 30))
        >>> grid.observed[:] = True
        >>> grid.heights[:, 15:] = 0.2  # a 20 cm step
        >>> labels = hf.free_space(grid, max_step=0.05, robot_radius=0.1)
        >>> int(labels[10, 2]) == hf.navigation.FREE, int(labels[10, 15]) == hf.navigation.OBSTACLE
        (True, True)
    """
    _check_arguments(max_step, max_slope, robot_radius, max_sigma)
    h = grid.heights.astype(np.float32)
    known = grid.observed & np.isfinite(h)
    if max_sigma is not None:
        known &= grid.sigma <= max_sigma
    h = np.where(known, h, np.float32(0))

    # Differences between 4-neighbours: dx[i, j] = h[i, j+1] - h[i, j], dy[i, j] = h[i+1, j] - h[i, j].
    dx, ok_x = np.diff(h, axis=1), known[:, 1:] & known[:, :-1]
    dy, ok_y = np.diff(h, axis=0), known[1:, :] & known[:-1, :]
    # float32 threshold: a step of exactly max_step (as stored in float32) stays climbable.
    step = np.float32(max_step)
    hazard = (_to_vertices(ok_x & (np.abs(dx) > step), axis=1) + _to_vertices(ok_y & (np.abs(dy) > step), axis=0)) > 0

    gx = _median(_vertex_gradient(dx, ok_x, 1, grid.cell_size))
    gy = _median(_vertex_gradient(dy, ok_y, 0, grid.cell_size))
    hazard |= known & (gx * gx + gy * gy > np.float32(math.tan(max_slope) ** 2))

    reach = max(robot_radius / grid.cell_size - 0.5, 0.0)
    labels = np.full(h.shape, FREE, dtype=np.int8)
    labels[_dilate(~known, reach) if inflate_unknown else ~known] = UNKNOWN
    labels[_dilate(hazard, reach)] = OBSTACLE
    return labels


def label_counts(labels: np.ndarray) -> dict[str, int]:
    """Number of vertices per label name, e.g. ``{"free": 900, "obstacle": 80, "unknown": 20}``."""
    return {name: int(np.count_nonzero(labels == value)) for value, name in LABEL_NAMES.items()}


@dataclass(frozen=True)
class FreeSpaceSettings:
    """The robot a free-space map is made for: :func:`free_space`'s arguments, checked once.

    Attributes:
        max_step: largest height step the robot climbs, metres.
        max_slope: steepest slope it takes, radians.
        robot_radius: radius of its footprint, metres.
        max_sigma: vertices with a larger height sigma (metres) count as unknown; None: observed ones are known.

    >>> import heightfusion as hf
    >>> settings = hf.FreeSpaceSettings(max_step=0.03)
    >>> settings.labels(hf.HeightMap((0.0, 0.0), 0.05, (4, 4))).shape
    (4, 4)
    """

    max_step: float = DEFAULT_MAX_STEP
    max_slope: float = DEFAULT_MAX_SLOPE
    robot_radius: float = DEFAULT_ROBOT_RADIUS
    max_sigma: float | None = None

    def __post_init__(self) -> None:
        _check_arguments(self.max_step, self.max_slope, self.robot_radius, self.max_sigma)

    def labels(self, grid: HeightMap) -> np.ndarray:
        """:func:`free_space` of ``grid`` for this robot."""
        return free_space(grid, self.max_step, self.max_slope, self.robot_radius, self.max_sigma)


# --- internals ------------------------------------------------------------------------------------
def _to_vertices(edges: np.ndarray, axis: int) -> np.ndarray:
    """(ny, nx) float32 sum, per vertex, of the values of the (one or two) neighbour pairs along ``axis`` it belongs to.

    ``edges`` holds one value per pair of neighbours: (ny, nx-1) along axis 1, (ny-1, nx) along axis 0.
    """
    shape = list(edges.shape)
    shape[axis] += 1
    out = np.zeros(shape, dtype=np.float32)
    head = [slice(None)] * 2
    tail = [slice(None)] * 2
    head[axis], tail[axis] = slice(1, None), slice(None, -1)
    out[tuple(head)] += edges
    out[tuple(tail)] += edges
    return out


def _dilate(mask: np.ndarray, reach: float) -> np.ndarray:
    """Vertices within ``reach`` cells (Euclidean) of a True vertex of ``mask``."""
    if not mask.any():
        return mask
    # distanceTransform measures the distance to the nearest zero pixel.
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= reach


def _median(values: np.ndarray) -> np.ndarray:
    """Median over each vertex's _SLOPE_WINDOW-square neighbourhood, mirrored at the map's border.

    cv2.medianBlur alone replicates the border, which would give the noisier one-sided border
    gradients most of the window's votes.
    """
    pad = _SLOPE_WINDOW // 2
    padded = cv2.copyMakeBorder(values, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    return cv2.medianBlur(padded, _SLOPE_WINDOW)[pad:-pad, pad:-pad]


def _vertex_gradient(d: np.ndarray, ok: np.ndarray, axis: int, cell_size: float) -> np.ndarray:
    """(ny, nx) float32 height gradient along ``axis`` from the neighbour differences ``d`` valid where ``ok``.

    The mean of the valid differences on either side of a vertex: the central difference inside,
    one-sided at the border and next to unknown vertices, 0 where neither side is valid.
    """
    total = _to_vertices(np.where(ok, d, np.float32(0)), axis)
    count = _to_vertices(ok, axis)
    return total / (np.maximum(count, 1) * np.float32(cell_size))


def _check_arguments(max_step, max_slope, robot_radius, max_sigma) -> None:
    if not (_is_number(max_step) and max_step > 0):
        raise ValueError(f"max_step must be a positive height in metres, got {max_step!r}")
    if not (_is_number(max_slope) and 0 < max_slope < math.pi / 2):
        hint = f" (degrees? pass math.radians({max_slope!r}))" if _is_number(max_slope) and max_slope >= math.pi / 2 else ""
        raise ValueError(f"max_slope must be an angle in radians in (0, pi/2), got {max_slope!r}{hint}")
    if not (_is_number(robot_radius) and robot_radius >= 0):
        raise ValueError(f"robot_radius must be a length in metres >= 0, got {robot_radius!r}")
    if max_sigma is not None and not (_is_number(max_sigma) and max_sigma > 0):
        raise ValueError(f"max_sigma must be a positive height in metres or None, got {max_sigma!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
