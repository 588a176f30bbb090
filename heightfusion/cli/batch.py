"""``heightfusion batch SEQ... --out DIR [--ray-address ADDR]``: many recordings mapped at once on Ray, then
merged into one map (:mod:`heightfusion.batch`).

Each sequence is fused as ``heightfusion replay SEQ --tiles DIR/sequences/NAME/tiles --out
DIR/sequences/NAME`` would with the same options (on the lattice printed at the end), one Ray task per
sequence; the maps of those that finished are merged into ``DIR/merged`` (``tiles/``, ``heightmap.npz`` and
pictures); ``DIR/batch.json`` holds each sequence's outcome. Exit status 0 when every sequence was mapped,
3 when some failed (each is named with its reason; the others are merged).
"""

from __future__ import annotations

import argparse
import math

from . import UserError, check_output_folder
from .options import free_space_settings
from .replay import add_replay_arguments, replay_options

#: Exit status when some sequences failed and the others were merged.
SOME_FAILED = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sequences", nargs="+", metavar="SEQ", help="dataset folders or videos, as the Ray workers see them")
    parser.add_argument("--out", required=True, help="batch folder: sequences/NAME/ per sequence, merged/, batch.json")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="an existing Ray cluster (auto, HOST:6379, ray://HOST:10001); default: a local Ray "
                             "instance on this machine's cores")
    parser.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of the local Ray instance (default: the machine's)")
    parser.add_argument("--cpus-per-task", type=int, default=1, metavar="N",
                        help="CPUs (and threads) each sequence's task uses (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_replay_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..batch import run_batch

    robot = free_space_settings(args)
    options = replay_options(args)
    if args.shape is not None:
        raise UserError("--shape has no meaning in a batch (each sequence's map is tiled)")
    for name in ("num_cpus", "cpus_per_task"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    check_output_folder(args.out)
    result = run_batch(args.sequences, args.out, options, robot, ray_address=args.ray_address, num_cpus=args.num_cpus,
                       cpus_per_task=args.cpus_per_task, progress=not args.quiet)
    for s in result.sequences:
        if s.ok:
            fps = f"{s.fps:.1f}" if math.isfinite(s.fps) else "-"
            print(f"{s.name}: fused {s.frames_used} frames in {s.seconds:.1f} s ({fps} frames/s)"
                  + (f", skipped {s.frames_skipped}" if s.frames_skipped else ""))
        else:
            print(f"{s.name}: FAILED ({s.path}): {s.error}")
    cell, origin = result.lattice["cell_size"], result.lattice["origin"]
    print(f"lattice: --cell-size {cell:g} --origin {origin[0]:g} {origin[1]:g} (the same map one by one: heightfusion "
          f"replay SEQ --tiles T --cell-size {cell:g} --origin {origin[0]:g} {origin[1]:g})")
    finished = len(result.sequences) - len(result.failed)
    if result.merged is not None:
        print(f"merged {finished} of {len(result.sequences)} sequences into {result.out / 'merged'}/: "
              f"{result.merged.nx} x {result.merged.ny} vertices, {int(result.merged.observed.sum())} observed")
    elif finished:
        print(f"merged {finished} of {len(result.sequences)} sequences into {result.out / 'merged' / 'tiles'}/")
    else:
        print("no sequence was mapped: nothing merged")
    print(f"batch of {len(result.sequences)} sequences took {result.seconds:.1f} s; wrote {result.out / 'batch.json'}")
    return SOME_FAILED if result.failed else 0
