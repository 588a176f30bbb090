"""One frame of a sequence, as every dataset reader yields it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..camera import PinholeCamera


@dataclass
class Frame:
    """A frame of a recorded or synthetic sequence.

    Attributes:
        timestamp: seconds.
        image: (H, W, 3) uint8 RGB, or None for depth-only data.
        depth: (H, W) float32 z-depth in metres, NaN where unknown; None for monocular data.
        T_wc: 4x4 float64 camera-to-world pose, or None when the trajectory has no pose for it.
        camera: intrinsics of this frame.
        index: position in the sequence (0-based, counting skipped frames too).
        depth_timestamp: the depth image's own timestamp, seconds, where the dataset stamps depth apart from
            the image (TUM's ``depth.txt``); None otherwise.

    Example:
        >>> import heightfusion as hf
        >>> frame = next(iter(hf.datasets.open(hf.datasets.sample_path())))
        >>> frame.image.shape, frame.depth.dtype, frame.T_wc.shape
        ((240, 320, 3), dtype('float32'), (4, 4))
    """

    timestamp: float
    image: np.ndarray | None
    depth: np.ndarray | None
    T_wc: np.ndarray | None
    camera: PinholeCamera
    index: int = 0
    depth_timestamp: float | None = None
