"""Maps merged by summing their evidence in information form.

A fused vertex holds a Gaussian: information Lambda = 1/sigma^2 and height h. What a map learnt from its
frames is its information above the prior, e = Lambda - Lambda_prior, at height h. Maps of disjoint
frames combine as independent measurements: Lambda = Lambda_prior + sum e_k and
h = (Lambda_prior h_prior + sum e_k h_k) / Lambda; colours are evidence-weighted means. This is exact
for linear measurements and what the fusion's own update does (a map's own measurement is recovered
from Lambda h - Lambda_prior h_prior, so the prior is counted once); for the nonlinear rendering model it
is the usual first-order combination (a merged map of two halves matches the whole run within what
``tests/test_export_merge.py`` measures).
"""

from __future__ import annotations

import math

import numpy as np

from .heightmap import HeightMap

# Origins must lie on one lattice: within this share of a cell of a whole number of cells apart.
_LATTICE_TOLERANCE = 1e-6


def merge_maps(maps: list[HeightMap]) -> HeightMap:
    """One map on the union of the grids of ``maps`` (same cell size, origins on one lattice).

    The prior (height and information of unobserved vertices) is the first map's. Raises ValueError
    for no maps, different cell sizes or origins off the lattice, naming the map.
    """
    if not maps:
        raise ValueError("merge needs at least one map")
    first = maps[0]
    cell = first.cell_size
    corners = []
    for k, grid in enumerate(maps):
        if not math.isclose(grid.cell_size, cell, rel_tol=1e-9):
            raise ValueError(f"map {k} has {grid.cell_size:g} m cells, map 0 has {cell:g} m: resample it first")
        offset = (grid.origin - first.origin) / cell
        if np.abs(offset - np.rint(offset)).max() > _LATTICE_TOLERANCE:
            raise ValueError(f"map {k}'s origin {tuple(grid.origin)} is not on map 0's lattice of {cell:g} m cells")
        corners.append((np.rint(offset).astype(int), grid.shape))
    lo = np.min([c[0] for c in corners], axis=0)
    hi = np.max([c[0] + np.array(shape[::-1]) for c, shape in zip(corners, [c[1] for c in corners])], axis=0)
    merged = HeightMap(tuple(first.origin + lo * cell), cell, (int(hi[1] - lo[1]), int(hi[0] - lo[0])),
                       initial_height=first.prior_height, prior_sigma=1.0 / math.sqrt(first.prior_information))
    prior = merged.prior_information
    evidence = np.zeros(merged.shape)
    height_sum = np.zeros(merged.shape)
    color_sum = np.zeros(merged.shape + (3,))
    for grid, ((col, row), (ny, nx)) in zip(maps, corners):
        window = (slice(row - lo[1], row - lo[1] + ny), slice(col - lo[0], col - lo[0] + nx))
        information = grid.information.astype(np.float64)
        e = np.maximum(information - grid.prior_information, 0.0)
        evidence[window] += e
        # A vertex without evidence contributes nothing (its height may be a seed, not a measurement).
        height_sum[window] += np.where(e > 0, information * grid.heights - grid.prior_information * grid.prior_height, 0.0)
        color_sum[window] += e[..., None] * grid.colors
        merged.observed[window] |= grid.observed
    information = prior + evidence
    merged.heights[:] = (prior * merged.prior_height + height_sum) / information
    merged.information[:] = information
    seen = evidence > 0
    merged.colors[seen] = color_sum[seen] / evidence[seen][:, None]
    return merged
