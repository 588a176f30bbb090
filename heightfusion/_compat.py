"""Shims that keep older call signatures working for a release, with a warning naming the new one."""

from __future__ import annotations

import warnings


def deprecated_order(old: str, new: str) -> None:
    """Warn that the call ``old`` passes its arguments in the order before 0.2 and should be ``new``.

    Every frame now meets the map as (grid, camera, T_wc, data...) (the package's API conventions).
    """
    warnings.warn(f"{old} is deprecated: call {new}", DeprecationWarning, stacklevel=3)
