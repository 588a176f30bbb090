"""Frame sinks: what watches a mapping run frame by frame (a Rerun recording, a batch's progress).

``replay`` and the live app hand every frame they read to the sink they were given, fused or not, so a
sink sees the run as it happens without the loop knowing what it does with it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .datasets.frame import Frame
from .heightmap import HeightMap


class FrameSink(Protocol):
    """Receives each frame a run reads (:meth:`log_frame`) and the final map (:meth:`log_map`)."""

    def log_frame(self, frame: Frame, depth: np.ndarray | None, grid: HeightMap | None) -> None:
        """``frame`` was read; ``depth`` is the depth fused (metres, NaN where none), None when the frame was
        skipped; ``grid`` is the map after it (None before the first map exists)."""

    def log_map(self, grid: HeightMap) -> None:
        """The map at the end of the run."""
