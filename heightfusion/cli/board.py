"""``heightfusion board``: write a printable ChArUco board (options shared with calibrate and live:
:func:`heightfusion.cli.options.add_board_arguments`)."""

from __future__ import annotations

import argparse
import math

from .options import add_board_arguments, board_arguments, board_spec_from_args

MAX_IMAGE_SIDE = 1 << 15  # pixels: OpenCV's limit for drawing is 32767 a side, and 32768^2 RGB is 3 GB


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="PNG file to write (e.g. board.png)")
    parser.add_argument("--dpi", type=float, default=300.0, help="printer resolution in dots per inch (default 300)")
    parser.add_argument("--margin", type=float, default=0.01,
                        help="white paper around the board in metres; the caption goes in the bottom one "
                             "(default 0.01)")
    add_board_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..markers import INCH
    from ..visualize import write_png

    if not args.dpi > 0:
        raise ValueError(f"--dpi must be positive, got {args.dpi:g}")
    spec = board_spec_from_args(args)
    if math.isfinite(args.margin):  # a bad margin is the library's error
        side = max(spec.size) + 2 * max(args.margin, 0.0)
        side = round(side * args.dpi / INCH) if math.isfinite(args.dpi) else math.inf
        if side > MAX_IMAGE_SIDE:
            raise ValueError(f"--dpi {args.dpi:g} with --margin {args.margin:g} m makes the picture {side:g} px wide; "
                             f"at most {MAX_IMAGE_SIDE} px a side (lower --dpi or --margin)")
    image = spec.image(dpi=args.dpi, margin=args.margin)
    write_png(args.out, image)
    height_px, width_px = image.shape[:2]
    mm_per_px = 1000 * INCH / args.dpi
    print(
        f"wrote {args.out}: {width_px} x {height_px} px, {width_px * mm_per_px:.1f} x {height_px * mm_per_px:.1f} mm "
        f"printed at {args.dpi:g} dpi (board {1000 * spec.size[0]:.1f} x {1000 * spec.size[1]:.1f} mm)"
    )
    print(
        f"print it at actual size (100%, no fit-to-page) and check that a square measures "
        f"{1000 * spec.square_length:.2f} mm; if it does not, give the measured sizes instead"
    )
    print(f"board options for calibrate and live: {board_arguments(spec)}")
    return 0
