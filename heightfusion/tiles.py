"""Maps without edges: a tiled world map on disk and a window of it that follows the camera.

**The tiled map** (:class:`TiledMap`) is a Zarr v3 array on one world lattice, ``(rows, cols, 7)``
float32, one chunk per tile of ``tile_size`` x ``tile_size`` vertices (every world vertex belongs to
exactly one tile). Vertex (i, j) of the array sits at x = origin[0] + j * cell_size,
y = origin[1] + i * cell_size (DESIGN.md's grid convention, so other tools read the array's first two
axes as the grid). Its channels (:data:`CHANNELS`) are the information form of :mod:`heightfusion.merge`:
evidence, information-weighted height, evidence-weighted red/green/blue, observed (0/1) and
evidence-weighted systematic sigma (maps written before that channel existed have six and keep none). Tiles
and whole maps therefore merge by summing. The array spans :data:`TILES_PER_SIDE` tiles each way,
centred where the map was created; tiles exist only where something was seen (Zarr writes no chunk
that holds nothing but the fill value). Attributes: ``origin``, ``cell_size``, ``tile_size``, ``up``,
``prior_height``, ``prior_information`` and ``channels``. Every chunk file is written atomically
(:func:`heightfusion.atomic.atomic_write`: temporary file, fsync, rename), so a crash mid-save leaves
each tile as it was before or as it is after, never half of one. One writer per map at a time.

**The window** (:class:`TileWindow`) is a :class:`~heightfusion.heightmap.HeightMap` of a fixed
``tiles`` x ``tiles`` tiles that the fuser and the renderer work on like any map. When the point the
camera looks at (:func:`heightfusion.sizing.look_point`) leaves the window's middle half, the window
moves by whole tiles so that the point is near its centre again: the tiles that leave are written to
the tiled map, the window's arrays are shifted in place, and the tiles that enter are read from it.
The window owns the tiles it covers while it covers them (what it read is its prior; what it writes
back is that plus what it fused), so nothing is counted twice. Not a circular buffer: the renderer's
mesh, its tile culling and the fuser's row windows all index the grid as one contiguous (ny, nx)
array with vertex (0, 0) at the origin; wrapping it would split triangles across the seam. A move
costs one copy of the window's arrays plus ``tiles`` tile writes and reads, bounded by the window
(never the world map) and paid once per tile of travel.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .heightmap import LAYERS, HeightMap
from .merge import Evidence, check_cell_size, lattice_offset
from .sizing import DEFAULT_CELL_SIZE, look_point

#: Vertices per tile side of a new tiled map.
TILE_SIZE = 128
#: Window side in tiles.
WINDOW_TILES = 4
#: The array's side in tiles: half of it each way from where the map was created (at 2 cm cells and
#: 128-vertex tiles, 21 km).
TILES_PER_SIDE = 1 << 14
#: Channels of the array's last axis (:class:`heightfusion.merge.Evidence`).
CHANNELS = ("evidence", "height", "red", "green", "blue", "observed", "systematic")
# The channels of tiled maps written before the systematic sigma was kept (read and written as they are).
_CHANNELS_V1 = CHANNELS[:6]
#: Largest side (vertices) of the tiled extent that :meth:`TileWindow.result` returns whole.
RESULT_MAX_SIDE = 2048
#: Seconds between the checkpoints :meth:`TileWindow.follow` writes.
CHECKPOINT_S = 60.0
_FORMAT = "heightfusion tiled map"


class TilesUnavailable(ImportError):
    """zarr, which tiled maps are stored with, is not installed."""


def _zarr():
    """The zarr module; TilesUnavailable with the install hint when it is missing."""
    try:
        import zarr
        import zarr.storage
    except ImportError:
        raise TilesUnavailable("tiled maps need zarr 3: pip install 'heightfusion[tiles]'") from None
    return zarr


def _store(path: Path, read_only: bool = False):
    """A Zarr store on the folder ``path`` whose files are written through :func:`heightfusion.atomic.atomic_write`."""
    return _durable_store_class()(path, read_only=read_only)


@functools.cache
def _durable_store_class() -> type:
    """zarr's LocalStore, every file written atomically and durably (zarr's own renames skip the fsyncs)."""

    class DurableStore(_zarr().storage.LocalStore):
        async def _set(self, key, value, exclusive: bool = False) -> None:
            if exclusive:  # create-only metadata: zarr's own link-based path
                return await super()._set(key, value, exclusive=True)
            if not self._is_open:
                await self._open()
            self._check_writable()
            await asyncio.to_thread(_write_file, self.root / key, value.as_buffer_like())

    return DurableStore


def _write_file(path: Path, data) -> None:
    with atomic_write(path) as f:
        f.write(data)


def is_tiled_map(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a tiled map (by its ``zarr.json``)."""
    return (Path(path) / "zarr.json").is_file()


class TiledMap:
    """A tiled height map in a Zarr folder (module docstring); :meth:`create` or :meth:`open` one.

    Example:
        >>> import heightfusion as hf
        >>> from heightfusion.tiles import TiledMap
        >>> tiled = TiledMap.create("world.zarr", hf.HeightMap((0.0, 0.0), 0.05, (2, 2)), tile_size=16)
        >>> grid = hf.HeightMap((0.0, 0.0), 0.05, (20, 20))
        >>> grid.information[:] = 100.0; grid.heights[:] = 0.3
        >>> tiled.add(grid)
        >>> TiledMap.open("world.zarr").tiles()  # a 20 x 20 map on 16-vertex tiles
        [(8192, 8192), (8192, 8193), (8193, 8192), (8193, 8193)]
        >>> round(float(tiled.whole().heights[5, 5]), 3)
        0.3
    """

    def __init__(self, path: Path, array) -> None:
        attrs = array.attrs
        self.path = path
        self._array = array
        self.origin = np.asarray(attrs["origin"], dtype=np.float64)
        self.cell_size = float(attrs["cell_size"])
        self.tile_size = int(attrs["tile_size"])
        self.up = str(attrs["up"])
        self.prior_height = float(attrs["prior_height"])
        self.prior_information = float(attrs["prior_information"])
        self.channels = tuple(attrs["channels"])

    @classmethod
    def create(cls, path: str | os.PathLike, like: HeightMap, tile_size: int = TILE_SIZE, up: str = "z") -> "TiledMap":
        """A new, empty tiled map at ``path`` on ``like``'s lattice, cell size and prior, centred on its origin."""
        zarr = _zarr()
        if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 2:
            raise ValueError(f"tile_size must be an integer >= 2 (vertices), got {tile_size!r}")
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ValueError(f"{path}: exists and is not an empty folder: not creating a tiled map there")
        side = TILES_PER_SIDE * tile_size
        origin = like.origin - (side // 2) * like.cell_size
        attributes = {
            "format": _FORMAT, "origin": origin.tolist(), "cell_size": like.cell_size, "tile_size": tile_size,
            "up": up, "prior_height": like.prior_height, "prior_information": like.prior_information,
            "channels": list(CHANNELS),
        }
        array = zarr.create_array(_store(path), shape=(side, side, len(CHANNELS)), chunks=(tile_size, tile_size, len(CHANNELS)),
                                  dtype="float32", fill_value=0.0, attributes=attributes,
                                  config={"write_empty_chunks": False})
        return cls(path, array)

    @classmethod
    def open(cls, path: str | os.PathLike, writable: bool = True) -> "TiledMap":
        """The tiled map at ``path``; ValueError naming it when it is not one."""
        zarr = _zarr()

        path = Path(path)
        if not is_tiled_map(path):
            raise ValueError(f"{path}: not a tiled map (no zarr.json)")
        try:
            array = zarr.open_array(_store(path, read_only=not writable), mode="r+" if writable else "r")
        except Exception as exc:  # a garbled zarr.json fails in zarr's parsers in many ways
            raise ValueError(f"{path}: cannot open tiled map ({type(exc).__name__}: {exc})") from None
        if array.attrs.get("format") != _FORMAT or tuple(array.attrs.get("channels", ())) not in (CHANNELS, _CHANNELS_V1):
            raise ValueError(f"{path}: a Zarr array, but not a heightfusion tiled map")
        return cls(path, array)

    @classmethod
    def open_or_create(cls, path: str | os.PathLike, like: HeightMap, tile_size: int = TILE_SIZE,
                       up: str = "z") -> "TiledMap":
        """The tiled map at ``path`` (which must have ``like``'s cell size and up axis), or a new one there."""
        if not is_tiled_map(path):
            return cls.create(path, like, tile_size, up)
        tiled = cls.open(path)
        check_cell_size(like.cell_size, tiled.cell_size, f"this run's map (extending {path})")
        if tiled.up != up:
            raise ValueError(f"{path} was mapped with up axis {tiled.up!r}, this run uses {up!r}")
        return tiled

    # --- geometry -------------------------------------------------------------------------------
    def tile_origin(self, tile: tuple[int, int]) -> np.ndarray:
        """World (x, y) of the first vertex of ``tile`` (row, col)."""
        return self.origin + np.array([tile[1], tile[0]]) * self.tile_size * self.cell_size

    def tiles(self) -> list[tuple[int, int]]:
        """(row, col) of every tile on disk, sorted (zarr's default chunk keys: a tile's file is ``c/ROW/COL/0``)."""
        chunks = self.path / "c"
        found = []
        for row in chunks.iterdir() if chunks.is_dir() else ():
            for col in row.iterdir():
                if row.name.isdigit() and col.name.isdigit() and (col / "0").is_file():
                    found.append((int(row.name), int(col.name)))
        return sorted(found)

    def has_tile(self, tile: tuple[int, int]) -> bool:
        return (self.path / "c" / str(tile[0]) / str(tile[1]) / "0").is_file()

    def bounds(self) -> tuple[int, int, int, int] | None:
        """Array vertex rows [row0, row1) and columns [col0, col1) of the tiles on disk; None without any."""
        tiles = np.array(self.tiles()).reshape(-1, 2)
        if not len(tiles):
            return None
        lo, hi = tiles.min(axis=0) * self.tile_size, (tiles.max(axis=0) + 1) * self.tile_size
        return int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1])

    @property
    def extent(self) -> tuple[float, float, float, float] | None:
        """(x_min, x_max, y_min, y_max) of the vertices of the tiles on disk, metres; None without any."""
        bounds = self.bounds()
        if bounds is None:
            return None
        r0, r1, c0, c1 = bounds
        x0, y0 = self.origin
        return (x0 + c0 * self.cell_size, x0 + (c1 - 1) * self.cell_size, y0 + r0 * self.cell_size, y0 + (r1 - 1) * self.cell_size)

    # --- reading and writing --------------------------------------------------------------------
    def read(self, row0: int, col0: int, shape: tuple[int, int]) -> Evidence:
        """The evidence of the array's vertices from (row0, col0), ``shape`` (ny, nx); zero outside tiles."""
        ny, nx = shape
        side = self._array.shape[0]
        if row0 < 0 or col0 < 0 or row0 + ny > side or col0 + nx > side:
            raise ValueError(f"{self.path}: rows {row0}..{row0 + ny}, columns {col0}..{col0 + nx} lie beyond the "
                             f"map's {side} x {side} vertices")
        data = self._array[row0 : row0 + ny, col0 : col0 + nx].astype(np.float64)
        systematic = data[..., 6] if len(self.channels) > 6 else np.zeros((ny, nx))
        return Evidence(data[..., 0], data[..., 1], data[..., 2:5], data[..., 5] > 0.5, systematic)

    def write_tile(self, tile: tuple[int, int], evidence: Evidence) -> None:
        """Replace ``tile`` (row, col) by ``evidence`` (tile_size x tile_size), atomically."""
        t = self.tile_size
        data = np.concatenate([evidence.evidence[..., None], evidence.height[..., None], evidence.color,
                               evidence.observed[..., None], evidence.systematic[..., None]], axis=-1).astype(np.float32)
        data = data[..., : len(self.channels)]
        self._array[tile[0] * t : (tile[0] + 1) * t, tile[1] * t : (tile[1] + 1) * t] = data

    def add(self, grid: HeightMap) -> None:
        """Sum the evidence of ``grid`` (this map's cell size, on its lattice) into the tiles it covers."""
        check_cell_size(grid.cell_size, self.cell_size, "the map added")
        self.add_evidence(Evidence.of(grid), grid.origin)

    def add_evidence(self, evidence: Evidence, origin: np.ndarray) -> None:
        """Sum ``evidence`` of the vertices from world (x, y) ``origin`` (on this map's lattice) into the tiles
        it covers, each tile rewritten atomically."""
        col0, row0 = (int(v) for v in lattice_offset(origin, self.origin, self.cell_size, "the map added"))
        (ny, nx), t = evidence.evidence.shape, self.tile_size
        for tr in range(row0 // t, (row0 + ny - 1) // t + 1):
            for tc in range(col0 // t, (col0 + nx - 1) // t + 1):
                tile = self.read(tr * t, tc * t, (t, t))
                # The vertices of the evidence inside this tile, in its and in the tile's coordinates.
                r0, r1 = max(row0, tr * t), min(row0 + ny, (tr + 1) * t)
                c0, c1 = max(col0, tc * t), min(col0 + nx, (tc + 1) * t)
                part = (slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0))
                tile.add(evidence.part(part), (slice(r0 - tr * t, r1 - tr * t), slice(c0 - tc * t, c1 - tc * t)))
                self.write_tile((tr, tc), tile)

    def empty_grid(self, row0: int, col0: int, shape: tuple[int, int]) -> HeightMap:
        """A map with this map's prior and cell size over the array's vertices from (row0, col0)."""
        origin = self.origin + np.array([col0, row0]) * self.cell_size
        grid = HeightMap(tuple(origin), self.cell_size, shape, initial_height=self.prior_height)
        grid.prior_information = self.prior_information
        grid.information[:] = self.prior_information
        return grid

    def region(self, origin: tuple[float, float], shape: tuple[int, int]) -> HeightMap:
        """The map on the grid of ``origin`` (on this map's lattice) and ``shape`` (ny, nx)."""
        col0, row0 = lattice_offset(np.asarray(origin, dtype=np.float64), self.origin, self.cell_size, "the region")
        grid = self.empty_grid(int(row0), int(col0), shape)
        self.read(int(row0), int(col0), shape).to_grid(grid)
        return grid

    def whole(self) -> HeightMap | None:
        """The map over the bounding box of its tiles (None without any)."""
        bounds = self.bounds()
        if bounds is None:
            return None
        r0, r1, c0, c1 = bounds
        grid = self.empty_grid(r0, c0, (r1 - r0, c1 - c0))
        self.read(r0, c0, grid.shape).to_grid(grid)
        return grid


class TileWindow:
    """A ``tiles`` x ``tiles``-tile window of ``tiled`` that follows the camera (module docstring).

    ``grid`` keeps its identity, shape and arrays for the window's life (a fuser and a renderer hold it);
    moves change its ``origin`` and contents.

    Args:
        tiled: the tiled map behind the window.
        centre: world (x, y) the window starts centred on.
        tiles: window side in tiles (at least 3: the middle half must hold a tile's move).
        checkpoint_s: seconds between the checkpoints :meth:`follow` writes (None: none).

    Example:
        >>> import heightfusion as hf
        >>> from heightfusion.tiles import TiledMap, TileWindow
        >>> tiled = TiledMap.create("drive.zarr", hf.HeightMap((0.0, 0.0), 0.05, (2, 2)), tile_size=16)
        >>> window = TileWindow(tiled, centre=(0.0, 0.0))
        >>> window.grid.shape, window.follow(hf.look_at((5.0, 0.0, 0.5), (6.0, 0.0, 0.0)))
        ((64, 64), True)
    """

    def __init__(self, tiled: TiledMap, centre: tuple[float, float], tiles: int = WINDOW_TILES,
                 checkpoint_s: float | None = CHECKPOINT_S) -> None:
        if isinstance(tiles, bool) or not isinstance(tiles, int) or tiles < 3:
            raise ValueError(f"the window needs at least 3 tiles a side, got {tiles!r}")
        self.tiled, self.tiles, self.checkpoint_s = tiled, tiles, checkpoint_s
        self.corner = self._corner_for(np.asarray(centre, dtype=np.float64))
        side = tiles * tiled.tile_size
        self.grid = tiled.empty_grid(*(self.corner * tiled.tile_size), (side, side))
        self.moves = 0
        self._saved_at = time.perf_counter()
        self._load(self._window_tiles())

    # --- following ------------------------------------------------------------------------------
    def follow(self, T_wc: np.ndarray | None) -> bool:
        """Move the window if the point the camera at ``T_wc`` looks at left its middle half; True if it moved.

        Also writes a checkpoint when ``checkpoint_s`` have passed since the last. A frame without a pose
        (None) moves nothing.
        """
        if T_wc is None:
            return False
        half = 0.5 * self.tiles * self.tiled.tile_size * self.tiled.cell_size
        centre = look_point(T_wc, max_range=half)
        tile_m = self.tiled.tile_size * self.tiled.cell_size
        where = (centre - self.grid.origin) / tile_m  # (x, y) in tiles from the window's corner
        outside = bool(((where < self.tiles / 4) | (where > 3 * self.tiles / 4)).any())
        moved = outside and self.move_to(self._corner_for(centre))
        if self.checkpoint_s is not None and time.perf_counter() - self._saved_at >= self.checkpoint_s:
            self.save()
        return moved

    def move_to(self, corner: np.ndarray) -> bool:
        """Put the window's first tile at array tile ``corner`` (row, col): write what leaves, read what enters.
        False if it is there already (at the array's border the window stops)."""
        corner = np.asarray(corner, dtype=np.int64)
        shift = corner - self.corner
        if not shift.any():
            return False
        old = set(self._window_tiles())
        new_tiles = [tuple(int(v) for v in corner + (a, b)) for a in range(self.tiles) for b in range(self.tiles)]
        self._store([tile for tile in old if tile not in set(new_tiles)])
        rows, cols = (int(v) * self.tiled.tile_size for v in shift)
        for name in LAYERS:
            _shift(getattr(self.grid, name), rows, cols)
        self.corner = corner
        self.grid.origin = self.tiled.tile_origin(tuple(corner))
        self._load([tile for tile in new_tiles if tile not in old])
        self.moves += 1
        return True

    def save(self) -> None:
        """Write every tile of the window (those with evidence, or already on disk) to the tiled map."""
        self._store(self._window_tiles())

    def clear(self) -> None:
        """Forget what the window holds (the tiles under it are replaced at the next save)."""
        empty = self.tiled.empty_grid(0, 0, self.grid.shape)
        for name in LAYERS:
            getattr(self.grid, name)[:] = getattr(empty, name)

    # --- results --------------------------------------------------------------------------------
    def result(self, max_side: int = RESULT_MAX_SIDE) -> HeightMap:
        """The map a run reports after :meth:`save`: the whole tiled extent if neither side exceeds ``max_side``
        vertices, else a copy of the window."""
        bounds = self.tiled.bounds()
        if bounds is not None and max(bounds[1] - bounds[0], bounds[3] - bounds[2]) <= max_side:
            return self.tiled.whole()
        return self.grid.copy()

    def region_like(self, grid: HeightMap) -> HeightMap | None:
        """The saved tiled map on ``grid``'s grid (for evaluation against a ground truth); None if ``grid`` is
        not on the map's lattice or has another cell size."""
        try:
            check_cell_size(grid.cell_size, self.tiled.cell_size)
            return self.tiled.region(tuple(grid.origin), grid.shape)
        except ValueError:
            return None

    # --- internals ------------------------------------------------------------------------------
    def _corner_for(self, centre: np.ndarray) -> np.ndarray:
        """Array tile (row, col) of the first tile of the window centred nearest ``centre`` (world x, y)."""
        tile_m = self.tiled.tile_size * self.tiled.cell_size
        x_y = np.rint((centre - self.tiled.origin) / tile_m - self.tiles / 2).astype(np.int64)
        return np.clip(x_y[::-1], 0, TILES_PER_SIDE - self.tiles)

    def _window_tiles(self) -> list[tuple[int, int]]:
        return [(int(self.corner[0] + a), int(self.corner[1] + b)) for a in range(self.tiles) for b in range(self.tiles)]

    def _slices(self, tile: tuple[int, int]) -> tuple[slice, slice]:
        """The window's vertices of array tile ``tile``."""
        t = self.tiled.tile_size
        a, b = tile[0] - int(self.corner[0]), tile[1] - int(self.corner[1])
        return slice(a * t, (a + 1) * t), slice(b * t, (b + 1) * t)

    def _store(self, tiles: list[tuple[int, int]]) -> None:
        for tile in tiles:
            evidence = Evidence.of(self.grid, self._slices(tile))
            if evidence.evidence.any() or evidence.observed.any() or self.tiled.has_tile(tile):
                self.tiled.write_tile(tile, evidence)
        self._saved_at = time.perf_counter()

    def _load(self, tiles: list[tuple[int, int]]) -> None:
        t = self.tiled.tile_size
        for tile in tiles:
            self.tiled.read(tile[0] * t, tile[1] * t, (t, t)).to_grid(self.grid, self._slices(tile))


def _shift(array: np.ndarray, rows: int, cols: int) -> None:
    """In place: ``array[i, j] = array[i + rows, j + cols]`` where both lie inside (the rest is left for loading)."""
    ny, nx = array.shape[:2]
    if abs(rows) >= ny or abs(cols) >= nx:
        return
    dst = (slice(max(-rows, 0), ny - max(rows, 0)), slice(max(-cols, 0), nx - max(cols, 0)))
    src = (slice(max(rows, 0), ny + min(rows, 0)), slice(max(cols, 0), nx + min(cols, 0)))
    array[dst] = array[src]  # numpy copies overlapping source and destination correctly


def window_for_run(
    path: str | os.PathLike,
    up: str,
    cell_size: float | None = None,
    origin: tuple[float, float] | None = None,
    truth: HeightMap | None = None,
    tiles: int = WINDOW_TILES,
    checkpoint_s: float | None = CHECKPOINT_S,
) -> TileWindow:
    """The window of a mapping run with ``--tiles path`` (``up``: the run's up axis, as the map records it).

    The tiled map at ``path`` is extended, or created: cell size ``cell_size``, else the existing map's,
    else ``truth``'s, else :data:`~heightfusion.sizing.DEFAULT_CELL_SIZE`; a new map's lattice passes
    through ``origin``, else the truth's grid, else (0, 0). The window starts over the truth's centre (or
    the origin) and moves to the camera with the first :meth:`TileWindow.follow`.
    """
    if cell_size is None and is_tiled_map(path):
        cell_size = TiledMap.open(path, writable=False).cell_size
    if truth is not None and origin is None and cell_size in (None, truth.cell_size):
        like = HeightMap(tuple(truth.origin), truth.cell_size, truth.shape)
    else:
        like = HeightMap(origin if origin is not None else (0.0, 0.0), cell_size or DEFAULT_CELL_SIZE, (2, 2))
    tiled = TiledMap.open_or_create(path, like, up=up)
    x0, x1, y0, y1 = like.extent
    return TileWindow(tiled, ((x0 + x1) / 2, (y0 + y1) / 2), tiles, checkpoint_s)


def load_map(path: str | os.PathLike) -> HeightMap:
    """The map at ``path``: a height map file (:func:`heightfusion.load_heightmap`) or a tiled map folder, whole
    (:meth:`TiledMap.whole`); ValueError naming it when it is neither, or a tiled map without tiles."""
    from .heightmap import load_heightmap

    if not is_tiled_map(path):
        return load_heightmap(path)
    grid = TiledMap.open(path, writable=False).whole()
    if grid is None:
        raise ValueError(f"{path}: the tiled map has no tiles yet")
    return grid


def merge_tiled(sources: list, out: str | os.PathLike, tile_size: int = TILE_SIZE) -> TiledMap:
    """A new tiled map at ``out``: the sum of ``sources`` (tiled maps and height maps, same cell size, one lattice).

    The lattice, tile size, prior and up axis are the first source's (a height map's: ``tile_size`` and "z").
    The map is built in a temporary folder beside ``out`` and renamed to it when complete.
    """
    if not sources:
        raise ValueError("merge needs at least one map")
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out}: exists: the merged map goes to a new folder")
    first = sources[0]
    scratch = out.parent / f".{out.name}.partial-{os.getpid()}"
    if isinstance(first, TiledMap):  # the same array layout as the first map's
        centre = TILES_PER_SIDE * first.tile_size // 2
        merged = TiledMap.create(scratch, first.empty_grid(centre, centre, (2, 2)), first.tile_size, first.up)
    else:
        merged = TiledMap.create(scratch, first, tile_size)
    for source in sources:
        if isinstance(source, TiledMap):
            check_cell_size(source.cell_size, merged.cell_size, str(source.path))
            t = source.tile_size
            for tile in source.tiles():
                merged.add_evidence(source.read(tile[0] * t, tile[1] * t, (t, t)), source.tile_origin(tile))
        else:
            merged.add(source)
    os.rename(scratch, out)
    return TiledMap.open(out)


__all__ = ["CHANNELS", "TILE_SIZE", "WINDOW_TILES", "TiledMap", "TileWindow", "is_tiled_map", "load_map", "merge_tiled", "window_for_run"]
