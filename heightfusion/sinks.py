"""Frame sinks: what watches a mapping run frame by frame (a Rerun recording, a batch's progress).

``replay`` and the live app hand every frame they read to the sink they were given, fused or not, so a
sink sees the run as it happens without the loop knowing what it does with it.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from .datasets.frame import Frame
from .heightmap import HeightMap
from .pipeline import FusedFrame, SkippedFrame


class FrameSink(Protocol):
    """Receives each frame a run reads (:meth:`log_frame`) and the final map (:meth:`log_map`)."""

    def log_frame(self, frame: Frame, depth: np.ndarray | None, grid: HeightMap | None) -> None:
        """``frame`` was read; ``depth`` is the depth fused (metres, NaN where none), None when the frame was
        skipped; ``grid`` is the map after it (None before the first map exists)."""

    def log_map(self, grid: HeightMap) -> None:
        """The map at the end of the run."""


def log_processed(sink: FrameSink, frame: Frame, result: FusedFrame | SkippedFrame, grid: HeightMap | None) -> None:
    """Hand ``sink`` what the pipeline made of ``frame``: the frame at the pose it was used at (tracked,
    or as given; as read when none was settled) and the depth fused (None for a skipped frame)."""
    at_pose = frame if result.T_wc is None else dataclasses.replace(frame, T_wc=result.T_wc)
    sink.log_frame(at_pose, result.depth if isinstance(result, FusedFrame) else None, grid)
