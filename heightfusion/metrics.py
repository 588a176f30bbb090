"""Evaluation of a fused height map against ground truth, and per-stage timing.

:func:`evaluate` returns a flat dict of plain Python floats and ints (DESIGN.md "Evaluation"):

====================  ===========================================================================
key                   meaning (e = estimate - truth, metres, over vertices both maps observed)
====================  ===========================================================================
count                 number of vertices both maps observed
rmse, mae             sqrt(mean e^2), mean |e|
median                median |e|
bias                  mean e (positive: the estimate is too high)
within_1cm/2cm/5cm    share of vertices with |e| <= 1 / 2 / 5 cm
truth_count           number of vertices the ground truth observed
completeness          share of ``truth_count`` vertices that the estimate observed
calib_1sigma/2sigma   share of ``count`` vertices with |e| <= 1 / 2 sigma, sigma = the estimate's
                      ``HeightMap.sigma`` (information and systematic part); a calibrated Gaussian
                      gives 0.683 / 0.954
smooth_*              count, rmse, mae, median, bias, within_* restricted to the smooth mask
                      (vertices away from height discontinuities)
====================  ===========================================================================

A statistic over no vertices is ``float('nan')`` (and its count 0), never an exception.
``json.dump`` writes NaN as the bare token ``NaN``, which Python's ``json`` reads back but strict
JSON parsers reject; pass ``allow_nan=False`` to catch it, or map NaN to ``None`` first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from scipy import ndimage

from .heightmap import HeightMap

#: (key suffix, threshold in metres) of the "share within" statistics.
WITHIN_THRESHOLDS: tuple[tuple[str, float], ...] = (("1cm", 0.01), ("2cm", 0.02), ("5cm", 0.05))

_GRID_TOL = 1e-9


def check_same_grid(estimate: HeightMap, truth: HeightMap) -> None:
    """Raise ValueError naming the difference unless both maps have the same shape, origin and cell size.

    Origin and cell size are compared within 1e-9 m. Maps on different grids are not resampled:
    evaluate on the ground truth's grid instead.
    """
    if estimate.shape != truth.shape:
        raise ValueError(f"grid mismatch: estimate shape {estimate.shape} != truth shape {truth.shape}")
    if abs(estimate.cell_size - truth.cell_size) > _GRID_TOL:
        raise ValueError(
            f"grid mismatch: estimate cell_size {estimate.cell_size!r} != truth cell_size {truth.cell_size!r}"
        )
    if np.abs(estimate.origin - truth.origin).max() > _GRID_TOL:
        raise ValueError(
            f"grid mismatch: estimate origin {tuple(estimate.origin.tolist())} != "
            f"truth origin {tuple(truth.origin.tolist())}"
        )


def same_grid(a: HeightMap, b: HeightMap) -> bool:
    """Whether ``a`` and ``b`` lie on the same grid (what :func:`check_same_grid` checks)."""
    try:
        check_same_grid(a, b)
    except ValueError:
        return False
    return True


def calibration(errors: np.ndarray, sigma: np.ndarray) -> dict:
    """``calib_1sigma`` and ``calib_2sigma``: the shares of ``errors`` within 1 and 2 times their ``sigma``
    (NaN for no errors); a calibrated Gaussian gives 0.683 / 0.954."""
    a = np.abs(np.asarray(errors, dtype=np.float64))
    sigma = np.asarray(sigma, dtype=np.float64)
    return {f"calib_{k}sigma": float(np.mean(a <= k * sigma)) if a.size else float("nan") for k in (1, 2)}


def height_error_stats(errors: np.ndarray) -> dict[str, float | int]:
    """count, rmse, mae, median |e|, bias and within_* shares of height errors ``errors`` (metres).

    NaN statistics (and count 0) for an empty array.
    """
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    stats: dict[str, float | int] = {"count": int(e.size)}
    if e.size == 0:
        nan = float("nan")
        stats.update(rmse=nan, mae=nan, median=nan, bias=nan)
        stats.update({f"within_{name}": nan for name, _ in WITHIN_THRESHOLDS})
        return stats
    abs_e = np.abs(e)
    stats.update(
        rmse=float(np.sqrt(np.mean(e**2))),
        mae=float(abs_e.mean()),
        median=float(np.median(abs_e)),
        bias=float(e.mean()),
    )
    stats.update({f"within_{name}": float(np.mean(abs_e <= t)) for name, t in WITHIN_THRESHOLDS})
    return stats


def evaluate(estimate: HeightMap, truth: HeightMap, smooth_mask: np.ndarray | None = None) -> dict:
    """Height error, completeness and calibration of ``estimate`` against ``truth`` (keys: module docstring).

    Args:
        estimate: the fused map.
        truth: the ground-truth map on the same grid (see :func:`check_same_grid`); its ``observed``
            marks the vertices the ground truth knows (visible surface).
        smooth_mask: bool (ny, nx), True at vertices away from discontinuities, for the ``smooth_*``
            statistics; ``None`` uses :func:`smooth_mask_from_heights` on ``truth``.

    Raises:
        ValueError: the grids differ, ``smooth_mask`` has the wrong shape, or an observed height
            is NaN/inf (a broken map should fail loudly, not lower the RMSE).
    """
    check_same_grid(estimate, truth)
    if smooth_mask is None:
        smooth_mask = smooth_mask_from_heights(truth)
    smooth_mask = np.asarray(smooth_mask)
    if smooth_mask.shape != truth.shape:
        raise ValueError(f"smooth_mask has shape {smooth_mask.shape}, expected the grid's {truth.shape}")
    smooth_mask = smooth_mask.astype(bool)
    _check_observed_finite(estimate, "estimate")
    _check_observed_finite(truth, "truth")

    both = estimate.observed & truth.observed
    e = estimate.heights[both].astype(np.float64) - truth.heights[both].astype(np.float64)
    result = height_error_stats(e)

    truth_count = int(truth.observed.sum())
    result["truth_count"] = truth_count
    result["completeness"] = float(both.sum() / truth_count) if truth_count else float("nan")

    result.update(calibration(e, estimate.sigma[both]))

    smooth = height_error_stats(e[smooth_mask[both]])
    result.update({f"smooth_{key}": value for key, value in smooth.items()})
    return result


def smooth_mask_from_heights(truth: HeightMap, step: float | None = None, dilate_cells: int = 1) -> np.ndarray:
    """Bool (ny, nx): False near height discontinuities of ``truth``, True elsewhere.

    A discontinuity is a pair of 4-neighbour vertices, both observed by ``truth``, whose heights
    differ by more than ``step``; both vertices of the pair and every vertex within ``dilate_cells``
    of them (square neighbourhood) are marked False. Pairs with an unobserved vertex tell nothing
    and mark nothing.

    ``step`` defaults to ``max(0.01, 0.5 * cell_size)`` metres: a slope steeper than about 27
    degrees between neighbours counts as an edge (a mesh vertex there is smeared across the
    step), and on fine grids steps under 1 cm, the size of sensor noise, do not.
    """
    if step is None:
        step = max(0.01, 0.5 * truth.cell_size)
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be a positive height in metres, got {step!r}")
    if int(dilate_cells) != dilate_cells or dilate_cells < 0:
        raise ValueError(f"dilate_cells must be a non-negative integer, got {dilate_cells!r}")
    h = truth.heights.astype(np.float64)
    seen = truth.observed
    edge = np.zeros(truth.shape, dtype=bool)
    for axis in (0, 1):
        jump = (np.abs(np.diff(h, axis=axis)) > step) & _pairs(seen, axis)
        lo = [slice(None), slice(None)]
        hi = [slice(None), slice(None)]
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        edge[tuple(lo)] |= jump
        edge[tuple(hi)] |= jump
    if dilate_cells > 0 and edge.any():
        size = 2 * int(dilate_cells) + 1
        edge = ndimage.binary_dilation(edge, structure=np.ones((size, size), dtype=bool))
    return ~edge


class StageTimer:
    """Accumulates wall-clock milliseconds per named stage, for "ms per frame by stage".

    >>> timer = StageTimer()
    >>> with timer("render"):
    ...     pass
    >>> sorted(timer.mean_ms())
    ['render']

    A stage may be entered several times per frame (render in every Gauss-Newton iteration):
    ``mean_ms()`` is per entry, ``mean_ms(frames=n)`` divides the totals by the frame count.
    The time is recorded even when the block raises.
    """

    def __init__(self) -> None:
        self._total_ms: dict[str, float] = {}
        self._count: dict[str, int] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, (time.perf_counter() - start) * 1e3)

    def add(self, stage: str, ms: float) -> None:
        """Record ``ms`` milliseconds spent in ``stage`` (for times measured elsewhere, e.g. GPU queries)."""
        self._total_ms[stage] = self._total_ms.get(stage, 0.0) + float(ms)
        self._count[stage] = self._count.get(stage, 0) + 1

    def total_ms(self) -> dict[str, float]:
        """Total milliseconds per stage, in first-entered order."""
        return dict(self._total_ms)

    def counts(self) -> dict[str, int]:
        """Number of entries per stage."""
        return dict(self._count)

    def mean_ms(self, frames: int | None = None) -> dict[str, float]:
        """Mean milliseconds per stage: per entry, or per frame when ``frames`` is given."""
        if frames is not None and frames <= 0:
            raise ValueError(f"frames must be positive, got {frames!r}")
        return {
            stage: total / (frames if frames is not None else self._count[stage])
            for stage, total in self._total_ms.items()
        }

    def reset(self) -> None:
        """Forget all recorded times."""
        self._total_ms.clear()
        self._count.clear()


def _pairs(mask: np.ndarray, axis: int) -> np.ndarray:
    """Neighbour pairs along ``axis`` with both ends in ``mask`` (shape of ``np.diff`` along ``axis``)."""
    return mask[:-1, :] & mask[1:, :] if axis == 0 else mask[:, :-1] & mask[:, 1:]


def _check_observed_finite(grid: HeightMap, name: str) -> None:
    bad = grid.observed & ~np.isfinite(grid.heights)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} has {int(bad.sum())} observed vertex height(s) that are NaN/inf, first at (i={i}, j={j})"
        )
