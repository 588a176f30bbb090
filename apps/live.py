"""The live app: `python apps/live.py ...` is `heightfusion live ...` (see `--help`)."""

import sys

from heightfusion.cli import main

sys.exit(main(["live", *sys.argv[1:]]))
