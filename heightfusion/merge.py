"""Maps merged by summing their evidence in information form.

A fused vertex holds a Gaussian: information Lambda = 1/sigma^2 and height h. What a map learnt from its
frames is its information above the prior, e = Lambda - Lambda_prior, at height h. Maps of disjoint
frames combine as independent measurements: Lambda = Lambda_prior + sum e_k and
h = (Lambda_prior h_prior + sum e_k h_k) / Lambda; colours and systematic sigmas are evidence-weighted means
(the sigma of a mean of fully correlated errors: an upper bound when the maps' errors are not). This is exact
for linear measurements and what the fusion's own update does (a map's own measurement is recovered
from Lambda h - Lambda_prior h_prior, so the prior is counted once); for the nonlinear rendering model it
is the usual first-order combination (a merged map of two halves matches the whole run within what
``tests/test_export_merge.py`` measures).

:class:`Evidence` is that information form as arrays: evidence of disjoint maps (or of the tiles of a
tiled map, :mod:`heightfusion.tiles`) adds up, and :meth:`Evidence.to_grid` turns a sum back into a map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .heightmap import UNSEEN_COLOR, HeightMap

# Origins must lie on one lattice: within this share of a cell of a whole number of cells apart.
_LATTICE_TOLERANCE = 1e-6

Window = tuple[slice, slice]
_ALL: Window = (slice(None), slice(None))


@dataclass
class Evidence:
    """A map's information form: what its frames added above the prior, per vertex (arrays (ny, nx), float64).

    Attributes:
        evidence: e = Lambda - Lambda_prior >= 0 (1/m^2).
        height: information-weighted height Lambda h - Lambda_prior h_prior where e > 0, else 0 (1/m).
        color: (ny, nx, 3) evidence-weighted colour e * rgb.
        observed: bool, the vertex counted as observed.
        systematic: evidence-weighted systematic sigma e * ``HeightMap.systematic_sigma`` (1/m).
    """

    evidence: np.ndarray
    height: np.ndarray
    color: np.ndarray
    observed: np.ndarray
    systematic: np.ndarray

    @classmethod
    def zeros(cls, shape: tuple[int, int]) -> "Evidence":
        """No evidence on a grid of ``shape`` (ny, nx)."""
        return cls(np.zeros(shape), np.zeros(shape), np.zeros(shape + (3,)), np.zeros(shape, dtype=bool), np.zeros(shape))

    def part(self, window: Window) -> "Evidence":
        """The evidence of the vertices in ``window`` (views)."""
        return Evidence(self.evidence[window], self.height[window], self.color[window], self.observed[window],
                        self.systematic[window])

    @classmethod
    def of(cls, grid: HeightMap, window: Window = _ALL) -> "Evidence":
        """The evidence of ``grid`` (of its vertices in ``window``) above its own prior."""
        information = grid.information[window].astype(np.float64)
        e = np.maximum(information - grid.prior_information, 0.0)
        # A vertex without evidence contributes nothing (its height may be a seed, not a measurement).
        height = np.where(e > 0, information * grid.heights[window] - grid.prior_information * grid.prior_height, 0.0)
        return cls(e, height, e[..., None] * grid.colors[window], grid.observed[window].copy(),
                   e * grid.systematic_sigma[window])

    def add(self, other: "Evidence", window: Window = _ALL) -> None:
        """Sum ``other`` into the vertices ``window`` of this evidence (the merge of independent maps)."""
        self.evidence[window] += other.evidence
        self.height[window] += other.height
        self.color[window] += other.color
        self.observed[window] |= other.observed
        self.systematic[window] += other.systematic

    def to_grid(self, grid: HeightMap, window: Window = _ALL) -> None:
        """Set the vertices ``window`` of ``grid`` to this evidence on top of ``grid``'s prior."""
        prior = grid.prior_information
        information = prior + self.evidence
        grid.heights[window] = (prior * grid.prior_height + self.height) / information
        grid.information[window] = information
        seen = self.evidence > 0
        safe = np.where(seen, self.evidence, 1.0)[..., None]
        grid.colors[window] = np.where(seen[..., None], self.color / safe, UNSEEN_COLOR)
        grid.systematic_sigma[window] = np.where(seen, self.systematic / safe[..., 0], 0.0)
        grid.observed[window] = self.observed


def lattice_offset(origin: np.ndarray, reference: np.ndarray, cell_size: float, name: str = "map") -> np.ndarray:
    """(columns, rows) int64 from ``reference`` to ``origin`` (world x, y); ValueError naming ``name`` when
    they are not a whole number of cells apart."""
    offset = (np.asarray(origin, dtype=np.float64) - reference) / cell_size
    if np.abs(offset - np.rint(offset)).max() > _LATTICE_TOLERANCE:
        raise ValueError(f"{name}'s origin {tuple(float(v) for v in origin)} is not on the lattice of "
                         f"{cell_size:g} m cells through {tuple(float(v) for v in reference)}")
    return np.rint(offset).astype(np.int64)


def check_cell_size(cell_size: float, expected: float, name: str = "map") -> None:
    """ValueError naming ``name`` unless ``cell_size`` equals ``expected`` (metres)."""
    if not math.isclose(cell_size, expected, rel_tol=1e-9):
        raise ValueError(f"{name} has {cell_size:g} m cells, expected {expected:g} m: resample it first")


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
        check_cell_size(grid.cell_size, cell, f"map {k}")
        corners.append(lattice_offset(grid.origin, first.origin, cell, f"map {k}"))
    lo = np.min(corners, axis=0)
    hi = np.max([c + np.array(grid.shape[::-1]) for c, grid in zip(corners, maps)], axis=0)
    merged = HeightMap(tuple(first.origin + lo * cell), cell, (int(hi[1] - lo[1]), int(hi[0] - lo[0])),
                       initial_height=first.prior_height, prior_sigma=1.0 / math.sqrt(first.prior_information))
    merged.prior_information = first.prior_information  # as the first map's, not rounded through a sigma
    total = Evidence.zeros(merged.shape)
    for grid, (col, row) in zip(maps, corners):
        ny, nx = grid.shape
        total.add(Evidence.of(grid), (slice(row - lo[1], row - lo[1] + ny), slice(col - lo[0], col - lo[0] + nx)))
    total.to_grid(merged)
    return merged
