"""``heightfusion export MAP``: a saved map (``heightmap.npz``, or a tiled map folder, whole) as GeoTIFF / COG, PLY
with sigma, or grid_map YAML."""

from __future__ import annotations

import argparse

from . import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map", help="height map file (heightmap.npz, as replay and live write it) or tiled map folder (--tiles)")
    parser.add_argument("--geotiff", metavar="F.tif", help="GeoTIFF: bands height, sigma, observed; north-up")
    parser.add_argument("--cog", metavar="F.tif", help="the same as a Cloud-Optimised GeoTIFF")
    parser.add_argument("--ply", metavar="F.ply", help="coloured mesh of the observed triangles, per-vertex sigma")
    parser.add_argument("--gridmap", metavar="F.yaml", help="grid_map_msgs/GridMap message (elevation, variance, color) as YAML")
    parser.add_argument("--frame-id", default="map", help="frame_id of the grid_map message (default map)")


def run(args: argparse.Namespace) -> int:
    from ..export import export_geotiff, export_gridmap
    from ..heightmap import export_ply
    from ..tiles import load_map

    targets = {"geotiff": args.geotiff, "cog": args.cog, "ply": args.ply, "gridmap": args.gridmap}
    if not any(targets.values()):
        raise UserError("nothing to write: give --geotiff, --cog, --ply and/or --gridmap")
    grid = load_map(args.map)
    try:
        if args.geotiff:
            export_geotiff(args.geotiff, grid)
        if args.cog:
            export_geotiff(args.cog, grid, cog=True)
    except ImportError as exc:
        raise UserError(str(exc)) from None
    if args.ply:
        export_ply(args.ply, grid, observed_only=True)
    if args.gridmap:
        export_gridmap(args.gridmap, grid, args.frame_id)
    print(f"wrote {', '.join(path for path in targets.values() if path)} ({grid.nx} x {grid.ny} vertices, "
          f"{int(grid.observed.sum())} observed)")
    return 0
