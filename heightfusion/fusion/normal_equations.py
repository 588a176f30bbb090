"""Gauss-Newton normal equations of a depth frame over the height-map vertices, and their solution.

Each pixel's depth depends on up to three vertex heights (``Fragments.vertex_ids``, -1 in an unused
slot) through J = depth_grad: the mesh backends' triangle, the points backend's blended discs.
Summed over pixels, A = sum w J J^T couples a vertex with the vertices that share pixels with it; for
a triangle those are its mesh neighbours, so A is stored on the grid: ``diagonal`` (A_jj) and one
array per edge direction, indexed by the edge's first vertex (i, j): ``right`` to (i, j+1), ``down``
to (i+1, j), ``diag`` to (i+1, j+1) (the triangulation's diagonal, see :mod:`heightfusion.heightmap`).
A pair that is no mesh edge (two corners across a cell's other diagonal, or farther apart: the points
backend) is bounded instead: 2 A_jk x_j x_k <= |A_jk| (x_j^2 + x_k^2), so |A_jk| goes into ``lumped`` on
both vertices, and the solves stay majorants of the true system. The coupled solve applies that
stencil; the diagonal solve ignores the edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from ..render.fragments import Fragments
from ..render.projection import MapWindow


@dataclass
class NormalEquations:
    """A = sum w J J^T and g = sum w J r of one frame, on the (ny, nx) grid (float64), or on a ``window`` of it.

    ``color_sums`` holds sum w J_j^2 * rgb per vertex (the colour counterpart of ``diagonal``) when
    an image was given. ``lumped`` holds the bound of the couplings the stencil cannot hold (module
    docstring), None when there are none (a mesh backend's frame). With a ``window`` the arrays cover
    only it, and every vertex with terms lies inside: a frame's sums then cost what it sees, not what
    the map holds. :meth:`on_grid` gives them on the whole grid.
    """

    diagonal: np.ndarray
    g: np.ndarray
    right: np.ndarray
    down: np.ndarray
    diag: np.ndarray
    color_sums: np.ndarray | None
    pixels_used: int
    pixels_unseen: int
    pixels_grazing: int
    pixels_gated: int
    mean_abs_residual: float
    lumped: np.ndarray | None = None
    window: MapWindow | None = None

    def _covered(self) -> MapWindow:
        return self.window or MapWindow.whole(self.diagonal.shape)

    def touched(self) -> MapWindow | None:
        """The smallest window holding every vertex the frame's pixels gave terms (``diagonal`` > 0); None for none."""
        covered = self._covered()
        return MapWindow.of_mask(self.diagonal > 0, origin=(covered.row0, covered.col0))

    def restricted(self, window: MapWindow) -> NormalEquations:
        """The sums on ``window`` (zero where it leaves the arrays' window: no vertex there has terms)."""
        covered = self._covered()
        inner = window.intersection(covered)
        part = {}
        for name in _ARRAYS:
            value = getattr(self, name)
            if value is None:
                continue
            if inner == window:  # inside the arrays: a view will do
                part[name] = value[window.within(covered)]
            else:
                part[name] = np.zeros(window.shape + value.shape[2:])
                if inner is not None:
                    part[name][inner.within(window)] = value[inner.within(covered)]
        return replace(self, **part, window=window)

    def on_grid(self, shape: tuple[int, int]) -> NormalEquations:
        """The sums on the whole (ny, nx) grid."""
        system = self.restricted(MapWindow.whole(shape))
        return replace(system, window=None)


# The per-vertex arrays of NormalEquations.
_ARRAYS = ("diagonal", "g", "right", "down", "diag", "color_sums", "lumped")


# Slot pairs (p, q) of a pixel's three vertices.
_SLOT_PAIRS = (np.array([0, 0, 1]), np.array([1, 2, 2]))


def accumulate(
    frag: Fragments,
    depth: np.ndarray,
    sigma: np.ndarray,
    grid_shape: tuple[int, int],
    ray_norm: np.ndarray,
    cos_min: float,
    huber_k: float,
    gate_k: float,
    information: np.ndarray | None = None,
    colors: np.ndarray | None = None,
    max_depth: float = math.inf,
) -> NormalEquations:
    """Per-vertex sums of one frame's pixels, read back on the CPU and summed with ``np.bincount``.

    Args:
        frag: the map rendered at the frame's pose; needs ``depth``, ``vertex_ids`` and ``depth_grad``.
            Without ``normal`` no pixel is dropped as grazing.
        depth, sigma: (H, W) measured depth and its standard deviation, metres (NaN = no value).
        grid_shape: (ny, nx) of the map.
        information: (ny, nx) the map's information before the frame: the residual's predicted
            spread sqrt(sigma^2 + sum_k J_k^2 / Lambda_k) then includes what the map does not know
            yet. None judges residuals against sigma alone (at the posterior, for the information
            update: a pixel the converged map does not explain adds no confidence).
        ray_norm: (H, W) length of each pixel's ray with camera-z component 1.
        cos_min: pixels seeing the surface at a cosine of incidence below this are dropped.
        huber_k, gate_k: Huber threshold and outlier gate, in predicted sigmas.
        colors: (H, W, 3) float RGB of the frame, or None.
        max_depth: a pixel whose rendered surface lies deeper than this (z-depth, metres) counts as
            unseen, as if the map were not there.
    """
    missing = [name for name in ("vertex_ids", "depth_grad") if getattr(frag, name) is None]
    if missing:
        raise ValueError(f"fusion needs the renderer's Fragments.{' and '.join(missing)}, which this backend leaves None")
    shape = tuple(grid_shape)
    n = shape[0] * shape[1]
    measured = np.isfinite(depth)
    seen = measured & np.isfinite(frag.depth)
    if math.isfinite(max_depth):
        seen &= frag.depth <= max_depth
    ids = frag.vertex_ids[seen]
    slot = ids >= 0
    J = np.where(slot, frag.depth_grad[seen].astype(np.float64), 0.0)  # an unused slot may hold NaN
    r = depth[seen].astype(np.float64) - frag.depth[seen]
    var = sigma[seen].astype(np.float64) ** 2

    if frag.normal is None:
        facing = np.ones(len(r), dtype=bool)
    else:
        # cos(incidence) = n_z |den| / |d|, with sum_k J_k = 1 / den (barycentric weights sum to 1).
        cos = frag.normal[..., 2][seen] / (np.abs(J.sum(axis=1)) * ray_norm[seen])
        facing = cos >= cos_min
    predicted = var if information is None else var + (J**2 / information.reshape(-1)[np.maximum(ids, 0)]).sum(axis=1)
    e = np.abs(r) / np.sqrt(predicted)
    # A measurement behind the rendered surface shows free space where the map has surface: evidence
    # against the map itself, never gated (only robustified). One in front may be an occluder the map
    # lacks, and is gated.
    inlier = facing & ((e <= gate_k) | (r > 0))
    w = np.where(inlier, np.minimum(1.0, huber_k / np.maximum(e, 1e-12)), 0.0) / var

    wJ = w[:, None] * J
    diagonal_terms = wJ * J
    if slot.all():  # every slot used (mesh backends): no masked copies
        flat_ids, weighted = ids.reshape(-1), lambda x: x.reshape(-1)
    else:
        flat_ids, weighted = ids[slot], lambda x: x[slot]
    diagonal = np.bincount(flat_ids, weighted(diagonal_terms), n)
    g = np.bincount(flat_ids, weighted(wJ * r[:, None]), n)
    if frag.triangle_ids is not None:
        right, down, diag, lumped = *_triangle_edges(ids, wJ, J, n), None
    else:
        right, down, diag, lumped = _pair_edges(ids, wJ, J, shape)

    color_sums = None
    if colors is not None:
        c = colors[seen]
        color_sums = np.stack(
            [np.bincount(flat_ids, weighted(diagonal_terms * c[:, ch, None]), n) for ch in range(3)], axis=-1
        ).reshape(shape + (3,))

    used = inlier.sum()
    return NormalEquations(
        diagonal=diagonal.reshape(shape),
        g=g.reshape(shape),
        right=right.reshape(shape),
        down=down.reshape(shape),
        diag=diag.reshape(shape),
        color_sums=color_sums,
        pixels_used=int(used),
        pixels_unseen=int((measured & ~seen).sum()),
        pixels_grazing=int((~facing).sum()),
        pixels_gated=int((facing & ~inlier).sum()),
        mean_abs_residual=float(np.abs(r[inlier]).mean()) if used else float("nan"),
        lumped=lumped,
    )


@dataclass
class SmoothnessPrior:
    """The prior sum over mesh edges of w_e (h_j - h_k)^2 / 2, as edge weights by direction.

    Weak against the measurements, it decides what they leave open (vertices few pixels see,
    combinations of heights a frame does not constrain), which keeps such vertices from drifting
    into spikes. Arrays are (ny, nx), indexed like the ``NormalEquations`` edges; entries for edges
    that leave the grid are 0.
    """

    right: np.ndarray
    down: np.ndarray
    diag: np.ndarray

    @classmethod
    def robust(cls, heights: np.ndarray, sigma: float, huber_k: float = 2.0) -> SmoothnessPrior:
        """Weights 1 / sigma^2, Huber-reweighted by each edge's height difference at ``heights``.

        ``sigma`` (metres) is the expected height difference between neighbours; an edge differing
        by more than ``huber_k * sigma`` (a step, a box's edge) keeps a bounded pull, so the prior
        smooths noise without rounding off real discontinuities.
        """
        h = heights.astype(np.float64)
        weights = []
        for far, near in _EDGE_SLICES:
            w = np.zeros_like(h)
            ratio = np.subtract(h[far], h[near])  # in place from here: this runs twice per fused frame
            np.abs(ratio, out=ratio)
            with np.errstate(divide="ignore"):  # dh = 0: an infinite ratio, capped at 1 below
                np.divide(huber_k * sigma, ratio, out=ratio)
            np.minimum(ratio, 1.0, out=ratio)
            np.divide(ratio, sigma**2, out=w[near])
            weights.append(w)
        return cls(*weights)

    def gradient(self, heights: np.ndarray) -> np.ndarray:
        """d prior / d h at ``heights``: sum over each vertex's edges of w_e (h_j - h_k)."""
        h = heights.astype(np.float64)
        out = np.zeros_like(h)
        for w, (far, near) in zip((self.right, self.down, self.diag), _EDGE_SLICES):
            f = w[near] * (h[far] - h[near])
            out[far] += f
            out[near] -= f
        return out


# (far end, near end) of the right, down and diagonal mesh edges; weights live at the near end.
_EDGE_SLICES = ((np.s_[:, 1:], np.s_[:, :-1]), (np.s_[1:], np.s_[:-1]), (np.s_[1:, 1:], np.s_[:-1, :-1]))


def _triangle_edges(ids: np.ndarray, wJ: np.ndarray, J: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edge sums when every pixel's slots are a mesh triangle, in triangulation order.

    Triangle k = 0 is (v, v+1, v+nx+1), k = 1 is (v, v+nx+1, v+nx): the slot pairs map to edge
    directions by k alone: a CPU fusion step at 320x240 / 128^2 took 11 ms with it and 16 ms with the
    general sort of :func:`_pair_edges` (benchmarks/bench_fusion.py).
    """
    k0 = ids[:, 1] == ids[:, 0] + 1
    p01, p02, p12 = wJ[:, 0] * J[:, 1], wJ[:, 0] * J[:, 2], wJ[:, 1] * J[:, 2]
    right = np.bincount(np.where(k0, ids[:, 0], ids[:, 2]), np.where(k0, p01, p12), n)
    down = np.bincount(np.where(k0, ids[:, 1], ids[:, 0]), np.where(k0, p12, p02), n)
    diag = np.bincount(ids[:, 0], np.where(k0, p02, p01), n)
    return right, down, diag


def _pair_edges(ids: np.ndarray, wJ: np.ndarray, J: np.ndarray, shape: tuple[int, int]):
    """(right, down, diag, lumped) sums for any vertices per pixel (-1: unused slot), e.g. blended discs.

    Each slot pair is sorted into a mesh edge by its vertex ids' difference; a pair that is no mesh edge
    is bounded into ``lumped`` (module docstring), None when there is none.
    """
    n, nx = shape[0] * shape[1], shape[1]
    p, q = ids[:, _SLOT_PAIRS[0]], ids[:, _SLOT_PAIRS[1]]
    a, b = np.minimum(p, q), np.maximum(p, q)
    terms = wJ[:, _SLOT_PAIRS[0]] * J[:, _SLOT_PAIRS[1]]
    step, b_col = b - a, b % nx
    # kind 0 right, 1 down, 2 diag, 3 no mesh edge
    kind = np.select([(step == 1) & (b_col != 0), step == nx, (step == nx + 1) & (b_col != 0)], [0, 1, 2], 3)
    edge = (a >= 0) & (kind < 3)
    right, down, diag = np.bincount((3 * a + kind)[edge], terms[edge], 3 * n).reshape(n, 3).T
    other = (a >= 0) & (kind == 3)
    lumped = None
    if other.any():
        bound = np.abs(terms[other])
        lumped = (np.bincount(a[other], bound, n) + np.bincount(b[other], bound, n)).reshape(shape)
    return right, down, diag, lumped


def solve(
    system: NormalEquations,
    prior_information: np.ndarray,
    rhs: np.ndarray,
    solver: str,
    damping: float = 0.0,
    smoothness: SmoothnessPrior | None = None,
) -> np.ndarray:
    """delta solving (Lambda + A + damping diag(A) + S) delta = rhs on the grid.

    A is taken as its stencil plus ``system.lumped`` on the diagonal where a frame has couplings the
    stencil cannot hold (see the module docstring).

    S is the smoothness prior's Hessian (a weighted graph Laplacian of the mesh edges). "diagonal"
    replaces the matrix by its lumped diagonal, each row's diagonal plus the sum of |off-diagonal|
    terms: a majorant, so the step never overshoots. (With A_jj alone, each vertex would try to
    explain a whole pixel's residual by itself: a vertex with a small barycentric weight jumps by
    r / J.) "coupled" solves the full system with a sparse direct solver on the bounding box of the
    vertices the frame touched, grown by a margin; outside it the diagonal step stands.
    """
    diagonal = prior_information + (1.0 + damping) * system.diagonal
    if system.lumped is not None:
        diagonal = diagonal + system.lumped
    right, down, diag = system.right, system.down, system.diag
    if smoothness is not None:
        right, down, diag = right - smoothness.right, down - smoothness.down, diag - smoothness.diag
    # S's diagonal (the sums of its weights) and the majorant's sum |A_jk - S_jk|, in one pass over the edges
    delta = rhs / (diagonal + _neighbour_sums(right, down, diag, smoothness))
    if solver == "diagonal":
        return delta
    touched = np.argwhere(system.diagonal > 0)
    if len(touched) == 0:
        return delta
    if smoothness is not None:
        diagonal = diagonal + _neighbour_sums(smoothness.right, smoothness.down, smoothness.diag)
    margin = 2
    (r0, c0) = np.maximum(touched.min(axis=0) - margin, 0)
    (r1, c1) = np.minimum(touched.max(axis=0) + 1 + margin, system.diagonal.shape)
    box = (slice(r0, r1), slice(c0, c1))
    matrix = _box_matrix(diagonal[box], right[box], down[box], diag[box])
    delta[box] = spsolve(matrix, rhs[box].reshape(-1)).reshape(delta[box].shape)
    return delta


def _box_matrix(diagonal: np.ndarray, right: np.ndarray, down: np.ndarray, diag: np.ndarray):
    """The grid stencil on a box as a sparse matrix (row-major vertex order within the box)."""
    rows, cols = diagonal.shape
    bands, offsets = [diagonal.reshape(-1)], [0]
    for edges, offset in ((right, 1), (down, cols), (diag, cols + 1)):
        e = edges.copy()
        if offset != cols:  # edges leaving the box's last column would wrap to the next row
            e[:, -1] = 0.0
        e = e.reshape(-1)[: rows * cols - offset]  # and those leaving its last row fall off the band
        bands += [e, e]
        offsets += [offset, -offset]
    return sp.diags(bands, offsets, shape=(rows * cols, rows * cols), format="csc")


def _neighbour_sums(
    right: np.ndarray, down: np.ndarray, diag: np.ndarray, plus: SmoothnessPrior | None = None
) -> np.ndarray:
    """sum_k |M_jk| over each vertex's mesh neighbours, from the per-direction edge arrays, plus the
    edge weights of ``plus`` (non-negative) where given."""
    out = np.zeros(right.shape)
    extra = (None, None, None) if plus is None else (plus.right, plus.down, plus.diag)
    for edges, more, (far, near) in zip((right, down, diag), extra, _EDGE_SLICES):
        e = np.abs(edges[near])
        if more is not None:
            e += more[near]
        out[far] += e
        out[near] += e
    return out


