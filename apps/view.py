"""The view app: `python apps/view.py ...` is `heightfusion view ...` (see `--help`)."""

import sys

from heightfusion.cli import main

sys.exit(main(["view", *sys.argv[1:]]))
