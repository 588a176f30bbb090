"""Probabilistic height-map fusion by differentiable rendering (DESIGN.md, "Fusion").

:class:`HeightMapFuser` runs the per-frame Gauss-Newton step (:mod:`.fuser`); the normal equations are
summed from read-back fragments on the CPU (:mod:`.normal_equations`) or, for backends whose fragments
live in an OpenGL context, by a compute pass next to them (:mod:`.gl_accumulate`).
"""

from .fuser import ACCUMULATORS, SOLVERS, FrameError, FusionConfig, FusionStats, HeightMapFuser

__all__ = ["ACCUMULATORS", "SOLVERS", "FrameError", "FusionConfig", "FusionStats", "HeightMapFuser"]
