"""Depth from a sensor (RGB-D camera): the per-pixel noise model that gives fusion its sigma."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SensorNoise:
    """Axial depth noise sigma(z) = base + quadratic * (z - offset)^2, metres.

    The defaults are a Kinect-like structured-light sensor (1.2 mm + 1.9 mm (z - 0.4 m)^2, as in
    Nguyen et al., "Modeling Kinect Sensor Noise", 2012); a time-of-flight sensor is closer to a
    constant (``quadratic=0``).

    Example:
        >>> import heightfusion as hf
        >>> print(f"{hf.SensorNoise().sigma(2.0) * 1000:.1f} mm")  # a Kinect at 2 m
        6.1 mm
    """

    base: float = 0.0012
    quadratic: float = 0.0019
    offset: float = 0.4

    def __post_init__(self) -> None:
        for name in ("base", "quadratic", "offset"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"SensorNoise.{name} must be a non-negative number, got {value!r}")
        if self.base <= 0:
            raise ValueError(f"SensorNoise.base must be positive (sigma would reach 0), got {self.base!r}")

    def sigma(self, depth: np.ndarray) -> np.ndarray:
        """Per-pixel standard deviation (metres) of depth values (metres); NaN stays NaN."""
        depth = np.asarray(depth, dtype=np.float32)
        return (self.base + self.quadratic * (depth - self.offset) ** 2).astype(np.float32)
