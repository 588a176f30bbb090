"""``heightfusion merge MAP... --out F.npz``: several maps of one place (same cell size, aligned grids) as
one, by summing their evidence in information form (:func:`heightfusion.merge.merge_maps`)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("maps", nargs="+", metavar="MAP", help="height map files (heightmap.npz)")
    parser.add_argument("--out", required=True, help="merged map file to write (.npz)")


def run(args: argparse.Namespace) -> int:
    from ..heightmap import load_heightmap, save_heightmap
    from ..merge import merge_maps

    merged = merge_maps([load_heightmap(path) for path in args.maps])
    save_heightmap(args.out, merged)
    print(f"merged {len(args.maps)} maps into {args.out}: {merged.nx} x {merged.ny} vertices, "
          f"{int(merged.observed.sum())} observed")
    return 0
