"""Depth sources: a depth sensor's images with a noise model (:mod:`.sensor`), or monocular motion stereo:
plane-sweep stereo of a frame against earlier frames with known poses (:mod:`.stereo`), on keyframes
chosen by parallax and overlap (:mod:`.keyframes`), frame by frame (:mod:`.motion`).

The stereo names load on first use: they need torch, which a sensor-only user (and ``import
heightfusion``, whose fusion imports :mod:`.sensor`) should not pay for.
"""

from __future__ import annotations

import importlib

from .sensor import SensorNoise

_LAZY = {
    "KeyframeConfig": "keyframes",
    "KeyframeWindow": "keyframes",
    "ViewChange": "keyframes",
    "select_sources": "keyframes",
    "view_change": "keyframes",
    "NO_PARALLAX": "motion",
    "NO_VALID_DEPTH": "motion",
    "MotionStereo": "motion",
    "MotionStereoResult": "motion",
    "PLANE_FAMILIES": "stereo",
    "DepthEstimate": "stereo",
    "PlaneSweepStereo": "stereo",
    "SourceFeatureCache": "stereo",
    "StereoConfig": "stereo",
    "nominal_depth": "stereo",
}

__all__ = [
    "NO_PARALLAX",
    "NO_VALID_DEPTH",
    "PLANE_FAMILIES",
    "DepthEstimate",
    "KeyframeConfig",
    "KeyframeWindow",
    "MotionStereo",
    "MotionStereoResult",
    "PlaneSweepStereo",
    "SensorNoise",
    "SourceFeatureCache",
    "StereoConfig",
    "ViewChange",
    "nominal_depth",
    "select_sources",
    "view_change",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
