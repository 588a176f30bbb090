"""``python -m heightfusion``: the same as the ``heightfusion`` command."""

import sys

from .cli import main

sys.exit(main())
