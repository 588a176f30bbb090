"""``heightfusion board``: write a printable ChArUco board, and the board options every board user shares.

``add_board_arguments`` / ``board_spec_from_args`` give ``board``, ``calibrate`` and the live app the
same options (``--squares X Y --square-length M --marker-length M --dictionary NAME``), and
``board_arguments`` writes a spec back as those options.
"""

from __future__ import annotations

import argparse

DEFAULT_SQUARES = (7, 5)
DEFAULT_SQUARE_LENGTH = 0.035  # metres: 7 x 5 squares fit A4 and US Letter landscape
DEFAULT_DICTIONARY = "DICT_5X5_100"


def add_board_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that describe the printed board (defaults: the board ``heightfusion board`` prints)."""
    group = parser.add_argument_group("marker board (the same values for board, calibrate and live)")
    group.add_argument("--squares", type=int, nargs=2, metavar=("X", "Y"), default=DEFAULT_SQUARES,
                       help="chessboard squares along X and Y (default %(default)s)")
    group.add_argument("--square-length", type=float, metavar="M", default=DEFAULT_SQUARE_LENGTH,
                       help="side of a square in metres, as printed: measure it (default %(default)s)")
    group.add_argument("--marker-length", type=float, metavar="M", default=None,
                       help="side of an ArUco marker in metres (default 0.75 x the square length)")
    group.add_argument("--dictionary", metavar="NAME", default=DEFAULT_DICTIONARY,
                       help="OpenCV ArUco dictionary (default %(default)s)")


def board_spec_from_args(args: argparse.Namespace):
    """The :class:`heightfusion.markers.BoardSpec` of the options added by :func:`add_board_arguments`.

    Raises ValueError (one line, naming the bad value) for an impossible board.
    """
    from .markers import MARKER_RATIO, BoardSpec

    # Rounded to nanometres so that the default prints (and parses back) as 0.02625, not 0.026250000000000002.
    marker = args.marker_length if args.marker_length is not None else round(MARKER_RATIO * args.square_length, 9)
    return BoardSpec(args.squares[0], args.squares[1], args.square_length, marker, args.dictionary)


def board_arguments(spec) -> str:
    """The command-line options that describe ``spec`` (for ``calibrate`` and ``live``)."""
    return (
        f"--squares {spec.squares_x} {spec.squares_y} --square-length {spec.square_length:g} "
        f"--marker-length {spec.marker_length:g} --dictionary {spec.dictionary}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="PNG file to write (e.g. board.png)")
    parser.add_argument("--dpi", type=float, default=300.0, help="printer resolution in dots per inch (default 300)")
    parser.add_argument("--margin", type=float, default=0.01,
                        help="white paper around the board in metres; the caption goes in the bottom one "
                             "(default 0.01)")
    add_board_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from .markers import INCH
    from .visualize import write_png

    if not args.dpi > 0:
        raise ValueError(f"--dpi must be positive, got {args.dpi:g}")
    spec = board_spec_from_args(args)
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
