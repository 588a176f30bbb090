"""Depth sources: a depth sensor's images with a noise model (:mod:`.sensor`)."""

from .sensor import SensorNoise

__all__ = ["SensorNoise"]
