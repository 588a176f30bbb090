"""Where the benchmarks find the real TUM sample: ``$HEIGHTFUSION_REAL_SAMPLE``, else
``../shared/data/tum_fr1_rpy_first180`` beside the checkout (a copy of a few of its frames on another
machine, a GPU one say, is named by the variable)."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming another copy of the real sample.
REAL_SAMPLE_VARIABLE = "HEIGHTFUSION_REAL_SAMPLE"
REAL_SAMPLE = Path(os.environ.get(REAL_SAMPLE_VARIABLE)
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tum_fr1_rpy_first180")
