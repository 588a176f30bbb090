"""The height map: a regular grid of vertices z = h(x, y), triangulated, with uncertainty and colour.

Grid geometry: vertex (i, j) sits at x = origin[0] + j * cell_size, y = origin[1] + i * cell_size;
arrays are (ny, nx) = (rows, cols); vertex (i, j) has the flat id ``i * nx + j``.

Triangulation (the one place it is defined; the GLSL shaders and every backend follow it):
cell (i, j) spans vertices v = i*nx + j, v+1, v+nx, v+nx+1 and is split along the diagonal from
v to v+nx+1 into triangle ``2 * (i * (nx - 1) + j) + k``:

    k = 0: (v, v+1, v+nx+1)    covers s >= r
    k = 1: (v, v+nx+1, v+nx)   covers r >= s

where (s, r) in [0, 1]^2 are the in-cell coordinates along x (columns) and y (rows). The barycentric
weights of a point in the cell, in the vertex order above, are (1-s, s-r, r) for k = 0 and
(1-r, s, r-s) for k = 1.
"""

from __future__ import annotations

import functools
import io
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_write

#: Colour (grey, each channel in [0, 1]) of a vertex that no image has coloured yet.
UNSEEN_COLOR = 0.5
#: Weights of R, G, B in a grey value (ITU-R BT.601 luma): what camera tracking compares.
GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: The per-vertex arrays of a :class:`HeightMap`, (ny, nx) or (ny, nx, 3) each.
LAYERS = ("heights", "information", "colors", "observed", "systematic_sigma")

def triangle_vertex_offsets(nx: int) -> np.ndarray:
    """(2, 3) int32 vertex-id offsets of a cell's two triangles from the cell's vertex (i, j)."""
    return np.array([[0, 1, nx + 1], [0, nx + 1, nx]], dtype=np.int32)


def cell_barycentric(s: np.ndarray, r: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Barycentric weights (..., 3) of in-cell coordinates (s, r) in triangle k (0 or 1) of the cell."""
    s, r, k = np.broadcast_arrays(s, r, k)
    b = np.empty(s.shape + (3,), dtype=np.result_type(s, r, np.float32))
    upper = k == 1
    b[..., 0] = np.where(upper, 1 - r, 1 - s)
    b[..., 1] = np.where(upper, s, s - r)
    b[..., 2] = np.where(upper, r - s, r)
    return b


class HeightMap:
    """A height map on a regular grid with per-vertex information (1/variance), colour and observed flag.

    Each vertex's height uncertainty has two parts: ``information``, what its frames measured with errors
    independent from frame to frame (it grows with every frame), and ``systematic_sigma`` (metres), an
    error its frames share and that more frames do not average away: the pose error of a tracked or
    odometry trajectory, which drifts slowly. :attr:`sigma` combines them.

    Args:
        origin: world (x, y) of vertex (0, 0), metres.
        cell_size: grid spacing, metres.
        shape: (ny, nx) vertices, at least 2 x 2.
        initial_height: prior height of unobserved vertices, metres.
        prior_sigma: prior standard deviation of unobserved heights, metres (a weak prior: large).

    Example:
        >>> import heightfusion as hf
        >>> grid = hf.HeightMap(origin=(-1.0, -1.0), cell_size=0.02, shape=(101, 151))
        >>> grid.shape, [float(v) for v in grid.extent]  # (ny, nx); (x0, x1, y0, y1) in metres
        ((101, 151), [-1.0, 2.0, -1.0, 1.0])
    """

    def __init__(
        self,
        origin: tuple[float, float],
        cell_size: float,
        shape: tuple[int, int],
        initial_height: float = 0.0,
        prior_sigma: float = 1.0,
    ) -> None:
        origin_arr = np.asarray(origin, dtype=np.float64)
        if origin_arr.shape != (2,) or not np.isfinite(origin_arr).all():
            raise ValueError(f"HeightMap origin must be two finite numbers (x0, y0), got {origin!r}")
        if not (math.isfinite(cell_size) and cell_size > 0):
            raise ValueError(f"HeightMap cell_size must be a positive length in metres, got {cell_size!r}")
        try:
            ny, nx = (int(n) for n in shape)
        except (TypeError, ValueError):
            raise ValueError(f"HeightMap shape must be (ny, nx), got {shape!r}") from None
        if ny < 2 or nx < 2:
            raise ValueError(f"HeightMap shape must be at least (2, 2) vertices (one cell), got {tuple(shape)!r}")
        if not math.isfinite(initial_height):
            raise ValueError(f"HeightMap initial_height must be finite, got {initial_height!r}")
        if not (math.isfinite(prior_sigma) and prior_sigma > 0):
            raise ValueError(f"HeightMap prior_sigma must be a positive length in metres, got {prior_sigma!r}")
        self.origin = origin_arr
        self.cell_size = float(cell_size)
        self.prior_height = float(initial_height)
        self.prior_information = float(1.0 / prior_sigma**2)
        self.heights = np.full((ny, nx), initial_height, dtype=np.float32)
        self.information = np.full((ny, nx), self.prior_information, dtype=np.float32)
        self.colors = np.full((ny, nx, 3), UNSEEN_COLOR, dtype=np.float32)
        self.observed = np.zeros((ny, nx), dtype=bool)
        self.systematic_sigma = np.zeros((ny, nx), dtype=np.float32)

    @property
    def sigma(self) -> np.ndarray:
        """(ny, nx) float32 height standard deviation, metres: 1/sqrt(information) and ``systematic_sigma`` in
        quadrature (infinite where the information is 0)."""
        with np.errstate(divide="ignore"):
            variance = 1.0 / self.information.astype(np.float64)
        return np.sqrt(variance + np.square(self.systematic_sigma, dtype=np.float64)).astype(np.float32)

    # --- geometry -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) vertices."""
        return self.heights.shape  # type: ignore[return-value]

    @property
    def nx(self) -> int:
        return self.heights.shape[1]

    @property
    def ny(self) -> int:
        return self.heights.shape[0]

    @property
    def num_vertices(self) -> int:
        return self.nx * self.ny

    @property
    def num_triangles(self) -> int:
        return 2 * (self.nx - 1) * (self.ny - 1)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) of the vertices, metres."""
        x0, y0 = self.origin
        return (x0, x0 + (self.nx - 1) * self.cell_size, y0, y0 + (self.ny - 1) * self.cell_size)

    def vertex_xy(self, window: tuple[slice, slice] | None = None) -> np.ndarray:
        """(ny, nx, 2) float64 world (x, y) of every vertex, or of those in ``window`` (row and column slices)."""
        rows, cols = window or (slice(None), slice(None))
        xs = self.origin[0] + np.arange(self.nx)[cols] * self.cell_size
        ys = self.origin[1] + np.arange(self.ny)[rows] * self.cell_size
        return np.stack(np.meshgrid(xs, ys), axis=-1)

    def vertices(self) -> np.ndarray:
        """(ny * nx, 3) float64 world positions of the vertices in flat-id order."""
        xy = self.vertex_xy().reshape(-1, 2)
        return np.column_stack([xy, self.heights.reshape(-1).astype(np.float64)])

    def triangles(self) -> np.ndarray:
        """(num_triangles, 3) int32 vertex ids in triangle-id order (see the module docstring)."""
        return _triangles(self.ny, self.nx)

    def triangle_vertex_ids(self, triangle_ids: np.ndarray) -> np.ndarray:
        """(..., 3) int32 vertex ids of triangle ids (..., ); -1 where the triangle id is negative."""
        tri = np.asarray(triangle_ids, dtype=np.int32)
        cell = tri >> 1
        base = cell + cell // (self.nx - 1)  # i * nx + j from i * (nx - 1) + j
        ids = base[..., None] + triangle_vertex_offsets(self.nx)[tri & 1]
        ids[tri < 0] = -1
        return ids

    def world_to_grid(self, xy: np.ndarray) -> np.ndarray:
        """Fractional (row, col) grid coordinates (..., 2) of world points (..., 2)."""
        xy = np.asarray(xy, dtype=np.float64)
        return (xy[..., ::-1] - self.origin[::-1]) / self.cell_size

    def triangle_at(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vertex ids (..., 3), barycentric weights (..., 3), inside (...)) of the triangles under world
        points (..., 2); points outside the grid get the nearest border cell's (``inside`` False)."""
        rc = self.world_to_grid(xy)
        r, c = rc[..., 0], rc[..., 1]
        inside = (r >= 0) & (r <= self.ny - 1) & (c >= 0) & (c <= self.nx - 1)
        i = np.clip(np.floor(r), 0, self.ny - 2).astype(np.int64)
        j = np.clip(np.floor(c), 0, self.nx - 2).astype(np.int64)
        rr, ss = r - i, c - j
        k = (rr > ss).astype(np.int64)
        ids = (i * self.nx + j)[..., None] + triangle_vertex_offsets(self.nx)[k]
        return ids, cell_barycentric(ss, rr, k), inside

    def sample(self, xy: np.ndarray) -> np.ndarray:
        """Heights of the triangulated surface at world points (..., 2); NaN outside the grid."""
        ids, b, inside = self.triangle_at(xy)
        h = (self.heights.reshape(-1)[ids] * b).sum(-1)
        return np.where(inside, h, np.nan)

    # --- checks and copies ----------------------------------------------------------------------
    def check_finite(self) -> None:
        """Raise ValueError naming the first non-finite height (renderers call this before drawing)."""
        bad = ~np.isfinite(self.heights)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(
                f"HeightMap.heights has {int(bad.sum())} NaN/inf value(s), first at vertex (i={i}, j={j}): "
                f"{self.heights[i, j]!r}"
            )

    def copy(self) -> "HeightMap":
        """A deep copy (arrays copied)."""
        other = HeightMap.__new__(HeightMap)
        other.__dict__.update({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()})
        return other

    def __repr__(self) -> str:
        return (
            f"HeightMap(origin=({self.origin[0]:g}, {self.origin[1]:g}), cell_size={self.cell_size:g}, "
            f"shape={self.shape}, observed={int(self.observed.sum())}/{self.num_vertices})"
        )


@functools.lru_cache(maxsize=8)
def _triangles(ny: int, nx: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(ny - 1, dtype=np.int32), np.arange(nx - 1, dtype=np.int32), indexing="ij")
    base = (i * nx + j).reshape(-1, 1, 1)
    tris = (base + triangle_vertex_offsets(nx)[None]).reshape(-1, 3)
    tris.setflags(write=False)
    return tris


# --- files --------------------------------------------------------------------------------------
_NPZ_KEYS = ("heights", "information", "colors", "observed", "origin", "cell_size")
# The prior of unobserved vertices (0-d float64 each) and the systematic sigma ((ny, nx) float32). Files
# written before they were saved load with the constructor's defaults (no systematic error).
_OPTIONAL_KEYS = ("prior_height", "prior_information", "systematic_sigma")


def save_heightmap(path: str | os.PathLike, grid: HeightMap) -> None:
    """Write ``grid`` to ``path`` (.npz, DESIGN.md schema plus the prior and the systematic sigma) atomically:
    temp file + rename.

    A map that :func:`load_heightmap` would refuse (NaN heights, say) is not written: ValueError naming
    the file, which keeps its previous content.

    Example:
        >>> import heightfusion as hf
        >>> hf.save_heightmap("map.npz", hf.HeightMap((0.0, 0.0), 0.05, (10, 10)))
        >>> hf.load_heightmap("map.npz").shape
        (10, 10)
    """
    arrays = {
        "heights": grid.heights.astype(np.float32),
        "information": grid.information.astype(np.float32),
        "colors": grid.colors.astype(np.float32),
        "observed": grid.observed.astype(bool),
        "origin": grid.origin.astype(np.float64),
        "cell_size": np.float64(grid.cell_size),
        "prior_height": np.float64(grid.prior_height),
        "prior_information": np.float64(grid.prior_information),
        "systematic_sigma": grid.systematic_sigma.astype(np.float32),
    }
    try:
        _heightmap_from_arrays(arrays)
    except ValueError as exc:
        raise ValueError(f"{path}: not saved, the map is not valid: {exc}") from None
    with atomic_write(path) as f:
        np.savez_compressed(f, **arrays)


def load_heightmap(path: str | os.PathLike) -> HeightMap:
    """Read a height map written by :func:`save_heightmap`; ValueError naming the file if it is not a valid one.

    Valid: the DESIGN.md arrays with consistent shapes, real numbers, finite heights, information and
    colours, information >= 0 and a positive prior information.

    Example:
        >>> import heightfusion as hf
        >>> hf.save_heightmap("map.npz", hf.HeightMap((1.0, 2.0), 0.05, (10, 10)))
        >>> hf.load_heightmap("map.npz").origin
        array([1., 2.])
    """
    path = Path(path)
    try:
        arrays = _read_npz(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such height map file") from None
    except Exception as exc:  # a garbled file fails in any of a dozen ways in zipfile, zlib and numpy's reader
        raise ValueError(f"{path}: cannot read height map ({type(exc).__name__}: {exc})") from None
    try:
        return _heightmap_from_arrays(arrays)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the height-map keys present in the .npz archive ``path`` (no pickles).

    Each member is read whole, so that zipfile checks its CRC: numpy's own loader stops at the last
    array byte, before the check, and so loads a bit-flipped file as a map with wrong values.
    """
    with zipfile.ZipFile(path) as archive:
        members = {name.removesuffix(".npy"): name for name in archive.namelist() if name.endswith(".npy")}
        return {
            key: np.lib.format.read_array(io.BytesIO(archive.read(members[key])), allow_pickle=False)
            for key in _NPZ_KEYS + _OPTIONAL_KEYS
            if key in members
        }


def _heightmap_from_arrays(arrays: dict[str, np.ndarray]) -> HeightMap:
    """The map the arrays of a height-map file describe; ValueError saying what is wrong with them."""
    missing = [k for k in _NPZ_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"not a heightfusion height map, missing arrays {missing}")
    for key, array in arrays.items():
        if array.dtype.kind not in "biuf":  # complex, strings, dates, records: not map data
            raise ValueError(f"'{key}' has dtype {array.dtype}, expected real numbers")
    heights = arrays["heights"]
    if heights.ndim != 2:
        raise ValueError(f"'heights' must be 2-D (ny, nx), got shape {heights.shape}")
    expected = {"information": heights.shape, "colors": heights.shape + (3,), "observed": heights.shape,
                "origin": (2,), "cell_size": (), "prior_height": (), "prior_information": (),
                "systematic_sigma": heights.shape}
    for key, shape in expected.items():
        if key in arrays and arrays[key].shape != shape:
            raise ValueError(f"'{key}' has shape {arrays[key].shape}, expected {shape}")
    grid = HeightMap(tuple(arrays["origin"]), float(arrays["cell_size"]), heights.shape)
    # Cast first, check after: a float64 value beyond float32's range becomes inf only in the cast
    # (which is no reason to warn, the check below says what is wrong).
    with np.errstate(over="ignore"):
        grid.heights = heights.astype(np.float32)
        grid.information = arrays["information"].astype(np.float32)
        grid.colors = arrays["colors"].astype(np.float32)
        if "systematic_sigma" in arrays:
            grid.systematic_sigma = arrays["systematic_sigma"].astype(np.float32)
    grid.observed = arrays["observed"].astype(bool)
    for key in ("heights", "information", "colors", "systematic_sigma"):
        if not np.isfinite(getattr(grid, key)).all():
            raise ValueError(f"'{key}' holds NaN or infinite values")
    for key in ("information", "systematic_sigma"):
        if (getattr(grid, key) < 0).any():
            raise ValueError(f"'{key}' holds negative values")
    # Set as saved rather than through the constructor's prior_sigma, whose 1/sigma**2 may differ in the
    # last bit: the reloaded map must fuse exactly as the saved one.
    grid.prior_height = float(arrays.get("prior_height", grid.prior_height))
    grid.prior_information = float(arrays.get("prior_information", grid.prior_information))
    if not (math.isfinite(grid.prior_height) and math.isfinite(grid.prior_information) and grid.prior_information > 0):
        raise ValueError(f"the prior (height {grid.prior_height}, information {grid.prior_information}) must be "
                         f"finite with a positive information")
    return grid


def export_ply(path: str | os.PathLike, grid: HeightMap, observed_only: bool = False) -> None:
    """Write the coloured triangle mesh as binary little-endian PLY, atomically.

    Each vertex has x, y, z, red, green, blue and ``sigma`` (its height's standard deviation, metres:
    :attr:`HeightMap.sigma`). With ``observed_only`` the mesh keeps only triangles whose three vertices
    are observed.

    Example:
        >>> import heightfusion as hf
        >>> hf.export_ply("map.ply", hf.HeightMap((0.0, 0.0), 0.05, (10, 10)))
        >>> open("map.ply", "rb").readline()
        b'ply\\n'
    """
    vertices = grid.vertices()
    tris = grid.triangles()
    if observed_only:
        tris = tris[grid.observed.reshape(-1)[tris].all(axis=1)]
    rgb = np.clip(np.rint(grid.colors.reshape(-1, 3) * 255), 0, 255).astype(np.uint8)
    vdata = np.empty(len(vertices), dtype=[("p", "<f4", 3), ("c", "u1", 3), ("s", "<f4")])
    vdata["p"], vdata["c"] = vertices, rgb
    vdata["s"] = grid.sigma.reshape(-1)
    fdata = np.empty(len(tris), dtype=[("n", "u1"), ("v", "<i4", 3)])
    fdata["n"], fdata["v"] = 3, tris
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment heightfusion height map\n"
        f"element vertex {len(vdata)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty float sigma\n"
        f"element face {len(fdata)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    with atomic_write(path) as f:
        f.write(header.encode("ascii"))
        f.write(vdata.tobytes())
        f.write(fdata.tobytes())
