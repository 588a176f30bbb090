"""``heightfusion merge MAP... --out OUT``: several maps of one place (same cell size, aligned grids) as one, by
summing their evidence in information form (:mod:`heightfusion.merge`).

A MAP is a height map file (``heightmap.npz``) or a tiled map folder (``--tiles DIR`` of replay/live). With
a tiled map among them, OUT is a new tiled map folder (:func:`heightfusion.tiles.merge_tiled`) unless it
ends in ``.npz``; otherwise OUT is a height map file.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("maps", nargs="+", metavar="MAP", help="height map files (heightmap.npz) or tiled map folders")
    parser.add_argument("--out", required=True, help="merged map to write: a .npz file, or a new tiled map folder")


def run(args: argparse.Namespace) -> int:
    from ..heightmap import load_heightmap, save_heightmap
    from ..merge import merge_maps
    from ..tiles import TiledMap, is_tiled_map, load_map, merge_tiled

    if any(is_tiled_map(path) for path in args.maps) and not args.out.endswith(".npz"):
        sources = [TiledMap.open(path, writable=False) if is_tiled_map(path) else load_heightmap(path) for path in args.maps]
        tiled = merge_tiled(sources, args.out)
        x0, x1, y0, y1 = tiled.extent or (0.0, 0.0, 0.0, 0.0)
        print(f"merged {len(args.maps)} maps into the tiled map {args.out}: {len(tiled.tiles())} tiles, "
              f"x {x0:.2f}..{x1:.2f} m, y {y0:.2f}..{y1:.2f} m")
        return 0
    merged = merge_maps([load_map(path) for path in args.maps])
    save_heightmap(args.out, merged)
    print(f"merged {len(args.maps)} maps into {args.out}: {merged.nx} x {merged.ny} vertices, "
          f"{int(merged.observed.sum())} observed")
    return 0
