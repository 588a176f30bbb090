"""``heightfusion compare SEQ...``: heightfusion against the Kalman elevation map and the TSDF, same data, one run.

Every method fuses the same frames, poses, depth and grid (:mod:`heightfusion.compare`); sequences with
a ground-truth height map are scored against it, real data without one by held-out frames. Writes
``compare.json``, ``compare.md`` (the table it prints) and ``compare.png`` (a grouped bar chart) to ``--out``.
With ``--depth mvs`` the stereo, computed once per frame for all methods, sweeps the planes ``--planes`` and
``--sweep-range`` give, on ``--stereo-device`` (as for ``replay``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..compare import DEPTH_SOURCES, METHODS, compare, write_outputs
from ..heldout import DEFAULT_EVERY
from .options import add_stereo_arguments, check_positive, stereo_config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="SEQ", help="dataset folders (TUM RGB-D, ICL-NUIM, EuRoC, ...)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated methods to compare (default {','.join(METHODS)})")
    parser.add_argument("--depth", default="sensor", choices=DEPTH_SOURCES,
                        help="depth for every method: the frames' depth images, or monocular motion stereo computed "
                             "once per frame (default sensor)")
    add_stereo_arguments(parser)
    parser.add_argument("--every", type=int, default=DEFAULT_EVERY,
                        help=f"data without ground truth: hold out every N-th frame for scoring (default {DEFAULT_EVERY})")
    parser.add_argument("--cell-size", type=float, help="map cell size in metres (default: ground truth's, else 0.02)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    check_positive(args, {"cell_size": "metres"})
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    result = compare(args.paths, methods, depth=args.depth, every=args.every, cell_size=args.cell_size,
                     stereo=stereo_config_from_args(args), progress=not args.quiet)
    written = write_outputs(result, args.out)
    print(result.markdown(), end="")
    print(f"wrote {Path(args.out)}/: " + " ".join(p.name for p in written))
    return 0
