"""A height map in the formats other tools read: GeoTIFF / Cloud-Optimised GeoTIFF and grid_map.

- :func:`export_geotiff`: three float32 bands, ``height``, ``sigma`` (metres, NaN where unobserved) and
  ``observed`` (1/0), north-up rows (row 0 is the map's largest y), one pixel per vertex centred on
  it, in a local engineering CRS (the map's own frame, metres, X east, Y north). Written with
  rasterio, atomically; ``cog=True`` writes a Cloud-Optimised GeoTIFF (tiled, with overviews).
- :func:`gridmap_message`: the map as ANYbotics grid_map's ``grid_map_msgs/GridMap`` message (layers
  ``elevation``, ``variance``, ``color``; resolution, lengths, centre pose; column-major data in
  grid_map's index order), and :func:`export_gridmap` writes it as YAML that
  ``rostopic pub -f`` (ROS 1) or ``ros2 topic pub`` publishes unchanged.
- PLY with a per-vertex ``sigma`` property: :func:`heightfusion.export_ply`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .heightmap import HeightMap

#: The map's frame as a local engineering CRS (GDAL's LOCAL_CS): metres, X east, Y north.
LOCAL_CRS_WKT = ('LOCAL_CS["heightfusion map frame",LOCAL_DATUM["heightfusion map frame",0],'
                 'UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["X",EAST],AXIS["Y",NORTH]]')
GEOTIFF_BANDS = ("height", "sigma", "observed")
GRIDMAP_LAYERS = ("elevation", "variance", "color")


def _north_up(values: np.ndarray) -> np.ndarray:
    """Rows reordered so that row 0 holds the largest y (the map's row 0 holds the smallest)."""
    return np.ascontiguousarray(values[::-1])


def geotiff_bands(grid: HeightMap) -> np.ndarray:
    """(3, ny, nx) float32 north-up ``height``, ``sigma`` (NaN where unobserved) and ``observed`` bands."""
    seen = grid.observed
    sigma = grid.sigma
    height = np.where(seen, grid.heights, np.nan)
    return np.stack([_north_up(height), _north_up(np.where(seen, sigma, np.nan)), _north_up(seen.astype(np.float64))]).astype(np.float32)


def export_geotiff(path: str | os.PathLike, grid: HeightMap, cog: bool = False) -> None:
    """Write ``grid`` as a GeoTIFF (or with ``cog`` a Cloud-Optimised GeoTIFF) at ``path``, atomically.

    Raises ImportError with the install hint when rasterio is missing.
    """
    try:
        import rasterio
        from rasterio.transform import from_origin
    except ImportError:
        raise ImportError("GeoTIFF export needs rasterio: pip install 'heightfusion[export]'") from None
    path = Path(path)
    x0, _, _, y1 = grid.extent
    half = grid.cell_size / 2  # a pixel is centred on its vertex
    profile = {
        "driver": "GTiff", "width": grid.nx, "height": grid.ny, "count": len(GEOTIFF_BANDS), "dtype": "float32",
        "crs": rasterio.crs.CRS.from_wkt(LOCAL_CRS_WKT), "transform": from_origin(x0 - half, y1 + half, grid.cell_size, grid.cell_size),
        "nodata": np.nan,
    }
    bands = geotiff_bands(grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        plain = Path(scratch) / "map.tif"
        with rasterio.open(plain, "w", **profile) as dst:
            dst.write(bands)
            dst.descriptions = GEOTIFF_BANDS
            dst.update_tags(origin=f"{grid.origin[0]} {grid.origin[1]}", cell_size=str(grid.cell_size), written_by="heightfusion")
        written = plain
        if cog:
            from rasterio.shutil import copy as raster_copy

            written = Path(scratch) / "map_cog.tif"
            raster_copy(plain, written, driver="COG", compress="DEFLATE", overview_resampling="average")
        os.replace(written, path)  # same folder: an atomic rename


def _gridmap_matrix(values: np.ndarray) -> np.ndarray:
    """grid_map's (size_x, size_y) matrix of a (ny, nx) map layer: index (0, 0) at the largest x and y,
    rows along -x, columns along -y."""
    return values[::-1, ::-1].T


def _packed_rgb(colors: np.ndarray) -> np.ndarray:
    """Colours (..., 3) in [0, 1] as grid_map's colour layer: 0x00RRGGBB bits read as float32."""
    rgb = np.clip(np.rint(colors * 255), 0, 255).astype(np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return packed.view(np.float32)


def gridmap_message(grid: HeightMap, frame_id: str = "map") -> dict:
    """The ``grid_map_msgs/GridMap`` message of ``grid`` as a dict (unobserved cells NaN, as grid_map's)."""
    seen = grid.observed
    variance = np.where(seen, np.square(grid.sigma, dtype=np.float64), np.nan)
    layers = {
        "elevation": np.where(seen, grid.heights, np.nan).astype(np.float32),
        "variance": variance.astype(np.float32),
        "color": _packed_rgb(grid.colors),
    }
    size_x, size_y = grid.nx, grid.ny
    x0, x1, y0, y1 = grid.extent
    layout = {
        "dim": [
            {"label": "column_index", "size": size_y, "stride": size_x * size_y},
            {"label": "row_index", "size": size_x, "stride": size_x},
        ],
        "data_offset": 0,
    }
    return {
        "header": {"frame_id": frame_id},
        "info": {
            "resolution": float(grid.cell_size),
            "length_x": float(size_x * grid.cell_size),
            "length_y": float(size_y * grid.cell_size),
            "pose": {"position": {"x": float((x0 + x1) / 2), "y": float((y0 + y1) / 2), "z": 0.0},
                     "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}},
        },
        "layers": list(GRIDMAP_LAYERS),
        "basic_layers": ["elevation"],
        "data": [{"layout": layout, "data": _gridmap_matrix(layers[name]).ravel(order="F").tolist()}
                 for name in GRIDMAP_LAYERS],
        "outer_start_index": 0,
        "inner_start_index": 0,
    }


def export_gridmap(path: str | os.PathLike, grid: HeightMap, frame_id: str = "map") -> None:
    """Write :func:`gridmap_message` of ``grid`` as YAML at ``path``, atomically."""
    import yaml

    text = yaml.safe_dump(gridmap_message(grid, frame_id), default_flow_style=None, sort_keys=False, width=120)
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))


def gridmap_layer(message: dict, name: str) -> np.ndarray:
    """A layer of a :func:`gridmap_message` back as a (ny, nx) map-layout array (the inverse of the export)."""
    info, index = message["info"], message["layers"].index(name)
    size_x = round(info["length_x"] / info["resolution"])
    size_y = round(info["length_y"] / info["resolution"])
    matrix = np.asarray(message["data"][index]["data"], dtype=np.float32).reshape((size_x, size_y), order="F")
    return matrix.T[::-1, ::-1]


def unpack_rgb(values: np.ndarray) -> np.ndarray:
    """Colours (..., 3) uint8 of grid_map's packed float colour layer."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=-1).astype(np.uint8)


__all__ = ["export_geotiff", "export_gridmap", "geotiff_bands", "gridmap_layer", "gridmap_message", "unpack_rgb"]
