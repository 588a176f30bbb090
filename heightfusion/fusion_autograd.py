"""Differentiable height-map fusion: depth images in, fused heights and information out, in torch.

:func:`fuse_depth` is :class:`heightfusion.HeightMapFuser`'s model (DESIGN.md, "Fusion") written with
torch operations, so that a loss on the fused map (for instance on depth rendered from it with
:func:`heightfusion.autograd.render_depth`) back-propagates to the depth images, their sigmas and the
prior map. Per frame, with the map before the frame as prior (h0, Lambda):

0. take the frame to the fuser's pyramid level (:mod:`heightfusion.pyramid`: 2x2 block means of the
   depths and sigmas that agree);
1. seed the vertices without evidence at the height of the frame's points in their cell;
2. for ``config.iterations`` Gauss-Newton steps: find the triangle each pixel sees at the current
   heights h (:func:`visible_triangles`, any mesh backend), intersect each pixel's ray with that
   triangle in torch (:func:`ray_hits`: depth and d depth / d h), weigh the residuals (Huber, gated
   on the predicted sigma, grazing pixels dropped), sum A = sum w J J^T and g = sum w J r over
   pixels, and solve (Lambda + (1 + damping) A + S) delta = g + Lambda (h0 - h) - S h (the robust
   smoothness prior S; diagonal majorant or sparse coupled solve, :func:`solve_grid`), h += delta
   clipped to the trust region (``gate_k`` spreads of map and frame, at most ``max_update``), for the vertices the
   frame touched and ``SOLVE_MARGIN`` around them;
3. information = min(Lambda + diag(A at the new heights), 1 / sigma_floor^2) where the frame touched.

Several frames are fused in order, each one's posterior the next one's prior: the same map as one
``HeightMapFuser.fuse`` call per frame with ``rasterize_every_render=True`` (the visible triangles are
found again at every step and for the information, whatever ``config`` says; the fuser's default keeps
the first draw's visibility and walks each ray from there, a faster way to the same triangles where
the heights moved little).

How it is differentiated: unrolled iterations, not implicit differentiation. The implicit function
theorem gives d h* / d depth at a *fixed point* of the Gauss-Newton step, but the fuser stops after a
few steps (two by default, each a majorant of the Newton step and clipped to a trust region) from a
start seeded from the frame itself: the heights it returns are not that fixed point, and the
information it returns is measured where the iterations stopped. Differentiating the fixed point
would give the derivative of another function than the one computed (``torch.autograd.gradcheck``
against the forward would fail). Autograd through the unrolled steps is the exact derivative of what
is computed, and costs little: the steps are few, and each is a pass over pixels and vertices.

What is held fixed. The triangle each pixel sees is piecewise constant in the heights: it is taken
from the renderer and held fixed within a step (no silhouette terms, as in :func:`render_depth`);
given it, the hit (depth, barycentric weights, d depth / d h) is recomputed in torch from the heights,
so its derivatives are exact, second-order terms (d J / d h) included. Likewise piecewise constant:
the outlier gate, the grazing test, the seed's choice of cell and of mean or top, which vertices the
trust region clips (the bound itself, gate_k spreads of map and frame, is differentiated), the
information cap, the pyramid level and which blocks agree. The robust (Huber) weights of
the residuals and of the smoothness prior are *not* held fixed: they are smooth functions of the
residuals and differentiated like the rest (``gradcheck`` covers them).

Precision and devices. Everything runs in the dtype and on the device of the depth tensor (float32
or float64; CPU, or CUDA where torch has it); the renderer finds the visible triangles on its own
device and hands back integer ids. The coupled solver's sparse LU runs on the CPU (scipy), as
``HeightMapFuser``'s does. ``torch.autograd.gradcheck`` is tight in float64 with the double-precision
ray marcher (``make_renderer("raymarch", dtype=torch.float64)``); the GL backend is the fast one.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import splu

from .camera import PinholeCamera
from .fusion import FusionConfig
from .fusion.fuser import DEPTH_REACH, MAX_DEPTH, MIN_SIGMA, SOLVE_MARGIN
from .heightmap import HeightMap
from .poses import validate_pose
from .pyramid import AGREEMENT_SIGMAS, MAX_TILT_DEG, auto_level, half_camera, max_level
from .render import Renderer
from .render.raymarch import grid_frame, pixel_directions

__all__ = ["Hits", "fuse_depth", "ray_hits", "solve_grid", "visible_triangles"]

# (rows, cols) offsets of the right, down and diagonal mesh edges, in the order of the fuser's
# NormalEquations fields (heightfusion/fusion/normal_equations.py); an edge's value lives at its
# first vertex.
_EDGES = ((0, 1), (1, 0), (1, 1))
# Huber threshold of the smoothness prior, in its sigmas (SmoothnessPrior.robust's default).
_SMOOTHNESS_HUBER_K = 2.0


def fuse_depth(
    grid: HeightMap,
    camera: PinholeCamera,
    T_wc: np.ndarray | torch.Tensor,
    depths: torch.Tensor,
    sigmas: torch.Tensor | None = None,
    *,
    heights: torch.Tensor | None = None,
    information: torch.Tensor | None = None,
    config: FusionConfig | None = None,
    backend: str | Renderer = "gl",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuse depth images into the map, differentiably: (heights, information) after the frames.

    Args:
        grid: the map: its geometry (origin, cell size, shape), its ``prior_information`` (vertices
            still at it count as without evidence and are seeded), and, unless ``heights`` and
            ``information`` are given, the prior map. It is not modified.
        camera: the depth images' camera.
        T_wc: (4, 4) camera-to-world pose, or (V, 4, 4) for V frames, fused in that order.
        depths: (H, W) or (V, H, W) z-depth, metres; NaN, 0, negative or huge = no value (their
            gradient is zero). Its dtype (float32 or float64) and device are those of the computation.
        sigmas: per-pixel depth standard deviations like ``depths``; None: ``config.noise`` of the
            depth (then the gradient flows through sigma(depth) as well).
        heights, information: (ny, nx) prior map as tensors (gradients flow to them, so calls chain);
            None: the grid's.
        config: the fusion settings (:class:`heightfusion.FusionConfig`); colour and the choice of
            GPU summation do not apply.
        backend: a mesh backend's name (shared renderers, as :func:`heightfusion.autograd.render_depth`)
            or a renderer instance; it only tells which triangle each pixel sees.

    Returns:
        (ny, nx) heights and information (1 / variance) after the last frame, in the depths' dtype.

    Example (the ray marcher needs no OpenGL):
        >>> import torch, heightfusion as hf
        >>> from heightfusion.autograd import fuse_depth, render_depth
        >>> camera = hf.PinholeCamera(32, 24, 25.0, 25.0, 15.5, 11.5)
        >>> T_wc = hf.look_at((0.0, -0.3, 1.0), (0.0, 0.0, 0.0))
        >>> grid = hf.HeightMap((-0.5, -0.5), 0.1, (11, 11))
        >>> floor = torch.full((11, 11), 0.1, dtype=torch.float64)  # a floor 10 cm up
        >>> depth = render_depth(floor, grid, camera, T_wc, backend="raymarch").requires_grad_()
        >>> heights, information = fuse_depth(grid, camera, T_wc, depth, backend="raymarch")
        >>> print(f"{heights[5, 5].item():.3f} m")
        0.100 m
        >>> heights[5, 5].backward()  # a nearer floor is a higher one
        >>> bool(depth.grad.sum() < 0)
        True
    """
    config = config or FusionConfig()
    poses = _poses(T_wc)
    if depths.shape == camera.shape:
        depths = depths[None]
        sigmas = None if sigmas is None else sigmas[None]
    if depths.shape != (len(poses),) + camera.shape:
        raise ValueError(f"depths must have shape {(len(poses),) + camera.shape} for {len(poses)} poses "
                         f"and the camera's image, got {tuple(depths.shape)}")
    if sigmas is not None and sigmas.shape != depths.shape:
        raise ValueError(f"sigmas has shape {tuple(sigmas.shape)}, depths {tuple(depths.shape)}")
    if not depths.is_floating_point():
        raise ValueError(f"depths must be a float32 or float64 tensor, got {depths.dtype}")
    like = dict(dtype=depths.dtype, device=depths.device)
    h = torch.as_tensor(grid.heights, **like) if heights is None else heights.to(**like)
    lam = torch.as_tensor(grid.information, **like) if information is None else information.to(**like)
    for name, value in (("heights", h), ("information", lam)):
        if value.shape != grid.shape:
            raise ValueError(f"{name} has shape {tuple(value.shape)}, the grid is {grid.shape}")
    renderer = _renderer(backend)
    work = grid.copy()  # the renderer's view of the current heights
    for index, T in enumerate(poses):
        sigma = None if sigmas is None else sigmas[index]
        h, lam = _fuse_frame(work, camera, T, depths[index], sigma, h, lam, config, renderer)
    return h, lam


class Hits:
    """What :func:`ray_hits` found for the pixels that see the surface.

    Attributes:
        pixels: (P,) int64 flat pixel index (row-major) of each hit.
        vertex_ids: (P, 3) int64 flat ids of the triangle's vertices, in triangulation order.
        depth: (P,) z-depth of the hit, metres (differentiable in the heights).
        depth_grad: (P, 3) d depth / d h of those vertices (differentiable in the heights).
        cos_incidence: (P,) cosine between the ray and the surface normal (no gradient).
        upper: (P,) bool: the triangle is k = 1 of its cell (see :mod:`heightfusion.heightmap`).
    """

    def __init__(self, pixels, vertex_ids, depth, depth_grad, cos_incidence, upper) -> None:
        self.pixels, self.vertex_ids, self.depth = pixels, vertex_ids, depth
        self.depth_grad, self.cos_incidence, self.upper = depth_grad, cos_incidence, upper


def visible_triangles(
    heights: torch.Tensor,
    grid: HeightMap,
    camera: PinholeCamera,
    T_wc: np.ndarray,
    backend: str | Renderer = "gl",
    max_depth: float = math.inf,
) -> torch.Tensor:
    """(H, W) int64 id of the triangle each pixel sees (-1 where none), on ``heights``' device.

    The rasterisation step: piecewise constant in the heights, so it has no gradient. ``grid`` gives
    the geometry (its heights are not used); ``backend`` must be a mesh backend
    (``capabilities.mesh_triangles``). A pixel whose nearest surface lies deeper than ``max_depth``
    (z-depth, metres) sees none, as the fuser leaves such surface out (``fusion.fuser.DEPTH_REACH``).

    Example:
        >>> import torch, heightfusion as hf
        >>> from heightfusion.autograd import visible_triangles
        >>> grid = hf.HeightMap((-0.5, -0.5), 0.1, (11, 11))
        >>> camera = hf.PinholeCamera(32, 24, 40.0, 40.0, 15.5, 11.5)
        >>> tri = visible_triangles(torch.zeros(11, 11), grid, camera, hf.look_at((0, 0, 1), (0, 0.01, 0)), "raymarch")
        >>> tri.shape, bool((tri >= 0).all())
        (torch.Size([24, 32]), True)
    """
    renderer = _renderer(backend)
    if heights.shape != grid.shape:
        raise ValueError(f"heights has shape {tuple(heights.shape)}, the grid is {grid.shape}")
    work = grid.copy()
    work.heights = heights.detach().cpu().numpy()
    return _triangle_ids(renderer, work, camera, validate_pose(T_wc), max_depth, heights.device)


def ray_hits(
    heights: torch.Tensor, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray, triangle_ids: torch.Tensor
) -> Hits:
    """Each pixel's ray intersected with the triangle ``triangle_ids`` says it sees, at ``heights``.

    The hit on triangle k of cell (i, j) is the ray renderer's formula (:mod:`heightfusion.render.raymarch`):
    with G the triangle's height differences per cell and d the ray (camera-z component 1) in the grid
    frame, t = (h_ij - c_z + G . (c_xy - (j, i))) / den, den = d_z - G . d_xy, barycentric weights b
    from the hit's in-cell coordinates, and d depth / d h_k = b_k / den. Computed with torch
    operations on ``heights``, so autograd differentiates depth and ``depth_grad`` exactly for the
    given triangles.

    Args:
        heights: (ny, nx) tensor; its dtype and device are those of the results.
        triangle_ids: (H, W) integer tensor from :func:`visible_triangles` (-1: no surface).
    """
    return _View(grid, camera, validate_pose(T_wc), heights.dtype, heights.device).hits(heights, triangle_ids)


class _View:
    """A camera at one pose in the grid frame (x, y in cells from vertex (0, 0), z in metres): the
    centre and every pixel's ray (camera-z component 1, row-major), in the computation's dtype."""

    def __init__(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray, dtype: torch.dtype, device) -> None:
        centre, matrix = grid_frame(grid, T_wc)
        self.centre = torch.as_tensor(centre, dtype=dtype, device=device)
        self.directions = pixel_directions(camera, matrix, dtype, device)
        scale = torch.tensor([grid.cell_size, grid.cell_size, 1.0], dtype=dtype, device=device)
        ray_norm_sq = ((self.directions * scale) ** 2).sum(dim=1, keepdim=True)  # |d|^2 in metres
        self.rays = torch.cat([self.directions, ray_norm_sq], dim=1)  # one gather per step fetches both
        self.shape, self.nx, self.cell_size = camera.shape, grid.nx, grid.cell_size

    def hits(self, heights: torch.Tensor, triangle_ids: torch.Tensor, among: torch.Tensor | None = None) -> Hits:
        """:func:`ray_hits` of this view, for the pixels that see a triangle (and are True in ``among``).

        Per triangle kind k (heightfusion/heightmap.py; k = 0: vertices v, v+1, v+nx+1; k = 1: v, v+nx+1,
        v+nx) the height differences per cell G = (G_x, G_y) and the barycentric weights b of the in-cell
        point (s, r) are closed forms in the three heights h: k = 0: G = (h1 - h0, h2 - h1),
        b = (1 - s, s - r, r); k = 1: G = (h1 - h2, h2 - h0), b = (1 - r, s, r - s). Element-wise selects
        rather than per-pixel gathered tables: this runs every Gauss-Newton step.
        """
        tri = triangle_ids.reshape(-1).to(heights.device)
        chosen = tri >= 0 if among is None else (tri >= 0) & among
        pixels = torch.nonzero(chosen).squeeze(1)
        tri = tri.index_select(0, pixels)
        cell, kind = tri >> 1, tri & 1
        upper = kind.bool()
        i = cell // (self.nx - 1)
        v = cell + i  # the cell's first vertex, i * nx + j
        vertex_ids = torch.stack([v, v + 1 + self.nx * kind, v + self.nx + 1 - kind], dim=1)
        h0, h1, h2 = heights.reshape(-1).index_select(0, vertex_ids.reshape(-1)).view(-1, 3).unbind(1)
        g_x = h1 - torch.where(upper, h2, h0)
        g_y = h2 - torch.where(upper, h0, h1)
        ray = self.rays.index_select(0, pixels)  # d_x, d_y, d_z, |d|^2 in metres
        d_x, d_y, d_z = ray.unbind(1)[:3]
        o_x = self.centre[0] - (v - i * self.nx).to(heights.dtype)  # camera minus vertex (i, j), cells
        o_y = self.centre[1] - i.to(heights.dtype)
        den = d_z - g_x * d_x - g_y * d_y
        t = (h0 - self.centre[2] + g_x * o_x + g_y * o_y) / den
        s, r = o_x + t * d_x, o_y + t * d_y  # the hit's in-cell coordinates
        b = torch.stack([1 - torch.where(upper, r, s), torch.where(upper, s, s - r), torch.where(upper, r - s, r)], dim=1)
        with torch.no_grad():
            # cos(incidence) = |d . n| / (|d| |n|) with the unnormalised normal (-g, 1), in metres.
            normal_sq = 1 + (g_x**2 + g_y**2) / self.cell_size**2
            cos = den.abs() / torch.sqrt(ray[:, 3] * normal_sq)
        return Hits(pixels, vertex_ids, t, b / den[:, None], cos, upper)


def solve_grid(
    diagonal: torch.Tensor, right: torch.Tensor, down: torch.Tensor, diag: torch.Tensor, rhs: torch.Tensor
) -> torch.Tensor:
    """x solving M x = rhs for the symmetric grid-stencil matrix M, by a sparse direct solve.

    M's diagonal is ``diagonal``; its off-diagonal entries couple vertex (i, j) with (i, j+1) by
    ``right``, with (i+1, j) by ``down`` and with (i+1, j+1) by ``diag`` (all (rows, cols); entries of
    edges leaving the grid are ignored), as the fuser's coupled solve. The backward pass solves the
    adjoint system with the same factorisation: for a gradient G of x, lambda = M^-T G is the gradient
    of ``rhs`` and -lambda x^T, restricted to the stencil, that of M's entries.

    Runs on the CPU (scipy's SuperLU) in float64; results come back in ``rhs``' dtype and device.

    Example:
        >>> import torch
        >>> from heightfusion.autograd import solve_grid
        >>> ones, zeros = torch.ones(2, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64)
        >>> solve_grid(2 * ones, zeros, zeros, zeros, ones)
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000]], dtype=torch.float64)
    """
    return _SolveGrid.apply(diagonal, right, down, diag, rhs)


class _SolveGrid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, diagonal, right, down, diag, rhs):
        arrays = [a.detach().cpu().numpy().astype(np.float64) for a in (diagonal, right, down, diag)]
        lu = splu(_stencil_matrix(*arrays))
        x = lu.solve(rhs.detach().cpu().numpy().astype(np.float64).reshape(-1)).reshape(rhs.shape)
        ctx.lu, ctx.x = lu, x
        return torch.from_numpy(x).to(dtype=rhs.dtype, device=rhs.device)

    @staticmethod
    def backward(ctx, grad_x):
        x = ctx.x
        lam = ctx.lu.solve(grad_x.detach().cpu().numpy().astype(np.float64).reshape(-1), trans="T").reshape(x.shape)
        grads = [-lam * x]
        for di, dj in _EDGES:  # M_ab = M_ba = edge value at a: dL/d edge = -(lam_a x_b + lam_b x_a)
            g = np.zeros_like(x)
            rows, cols = x.shape[0] - di, x.shape[1] - dj
            g[:rows, :cols] = -(lam[:rows, :cols] * x[di:, dj:] + lam[di:, dj:] * x[:rows, :cols])
            grads.append(g)
        grads.append(lam)
        return tuple(torch.from_numpy(g).to(dtype=grad_x.dtype, device=grad_x.device) for g in grads)


def _stencil_matrix(diagonal: np.ndarray, right: np.ndarray, down: np.ndarray, diag: np.ndarray) -> sp.csc_matrix:
    """The grid stencil as a sparse matrix, row-major vertex order; edges leaving the grid dropped."""
    rows, cols = diagonal.shape
    n = rows * cols
    bands, offsets = [diagonal.reshape(-1)], [0]
    for edges, (di, dj) in zip((right, down, diag), _EDGES):
        e = np.zeros((rows, cols))
        e[: rows - di, : cols - dj] = edges[: rows - di, : cols - dj]
        offset = di * cols + dj
        bands += [e.reshape(-1)[: n - offset]] * 2
        offsets += [offset, -offset]
    return sp.diags(bands, offsets, shape=(n, n), format="csc")


# --- one frame ---------------------------------------------------------------------------------------
def _fuse_frame(
    work: HeightMap,
    camera: PinholeCamera,
    T_wc: np.ndarray,
    depth: torch.Tensor,
    sigma: torch.Tensor | None,
    heights: torch.Tensor,
    information: torch.Tensor,
    config: FusionConfig,
    renderer: Renderer,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(heights, information) after one frame: HeightMapFuser.fuse's steps (module docstring)."""
    camera, frame = _Frame.of(camera, depth, sigma, config, work.cell_size)
    view = _View(work, camera, T_wc, heights.dtype, heights.device)
    if config.forgetting > 0:
        information = torch.clamp_min(information * (1 - config.forgetting), work.prior_information)
    h = _seed(work, view, frame, heights, information, config.seed_stride)
    prior_heights, prior_information = h, information
    for _ in range(config.iterations):
        hits = view.hits(h, _triangle_ids_at(renderer, work, camera, T_wc, frame.reach, h), frame.valid)
        system = _normal_equations(hits, frame, h.shape, prior_information, config)
        h = h + _step(system, h, prior_heights, prior_information, work.cell_size, config)
    # As the fuser: the information the frame adds is measured at the new estimate, gated on sigma alone,
    # and set (capped) in the window of the vertices it touched.
    hits = view.hits(h, _triangle_ids_at(renderer, work, camera, T_wc, frame.reach, h), frame.valid)
    diagonal = _information_gain(hits, frame, h.shape, config)
    touched = _window(diagonal)
    if touched is None:
        return h, prior_information
    updated = torch.clamp_max(prior_information[touched] + diagonal[touched], 1.0 / config.sigma_floor**2)
    return h, _paste(updated, prior_information, touched)


def _step(
    system: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    heights: torch.Tensor,
    prior_heights: torch.Tensor,
    prior_information: torch.Tensor,
    cell_size: float,
    config: FusionConfig,
) -> torch.Tensor:
    """The (ny, nx) change of the heights in one Gauss-Newton iteration (``HeightMapFuser._step``).

    Only the vertices the frame touched and SOLVE_MARGIN around them move (``box``); the solve runs on
    that window grown by one vertex (``around``), so that each vertex of the box has all its mesh edges
    (smoothness prior, couplings) inside.
    """
    a_diagonal, g, a_edges = system
    touched = _window(a_diagonal)
    if touched is None:  # no pixel gave terms: the heights stay
        return torch.zeros_like(heights)
    box, around = _grown(touched, SOLVE_MARGIN, heights.shape), _grown(touched, SOLVE_MARGIN + 1, heights.shape)
    inner = tuple(slice(b.start - a.start, b.stop - a.start) for b, a in zip(box, around))
    h, lam = heights[around], prior_information[around]
    smoothness, smoothness_gradient = _smoothness(h, config.smoothness_slope * cell_size)
    rhs = g[around] + lam * (prior_heights[around] - h) - smoothness_gradient
    edges = a_edges[(slice(None), *around)] - smoothness
    diagonal = lam + (1.0 + config.damping) * a_diagonal[around] + _neighbour_sums(smoothness)
    if config.solver == "coupled":
        delta = solve_grid(diagonal[inner], *(e[inner] for e in edges), rhs[inner])
    else:  # the majorant: each row's diagonal plus its |off-diagonal| terms, so that the step never overshoots
        delta = (rhs / (diagonal + _neighbour_sums(edges.abs())))[inner]
    # The trust region of FusionConfig.max_update: gate_k spreads of map against frame, at most max_update.
    frame = a_diagonal[around][inner]
    measured = frame > 0  # elsewhere no pixel measured the vertex: max_update (and no 1/0 in the backward pass)
    spread = torch.sqrt(1.0 / lam[inner].clamp_min(1e-30) + 1.0 / torch.where(measured, frame, torch.ones_like(frame)))
    limit = torch.where(measured, torch.clamp_max(config.gate_k * spread, config.max_update),
                        torch.full_like(frame, config.max_update))
    return _paste(torch.maximum(torch.minimum(delta, limit), -limit), torch.zeros_like(heights), box)


def _window(diagonal: torch.Tensor) -> tuple[slice, slice] | None:
    """(rows, columns) slices of the smallest window holding the vertices with terms (diagonal > 0);
    None for none."""
    touched = diagonal.detach() > 0
    rows = torch.nonzero(touched.any(dim=1)).squeeze(1)
    if len(rows) == 0:
        return None
    cols = torch.nonzero(touched.any(dim=0)).squeeze(1)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _grown(window: tuple[slice, slice], margin: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """``window`` grown by ``margin`` vertices on every side, within a grid of ``shape``."""
    return tuple(slice(max(w.start - margin, 0), min(w.stop + margin, n)) for w, n in zip(window, shape))


def _paste(part: torch.Tensor, whole: torch.Tensor, window: tuple[slice, slice]) -> torch.Tensor:
    """``whole`` with ``window`` replaced by ``part`` (differentiable in both)."""
    rows, cols = window
    ny, nx = whole.shape
    mask = F.pad(torch.ones_like(part, dtype=torch.bool), (cols.start, nx - cols.stop, rows.start, ny - rows.stop))
    return torch.where(mask, F.pad(part, (cols.start, nx - cols.stop, rows.start, ny - rows.stop)), whole)


class _Frame:
    """One depth image at the pyramid level it is fused at, flat: depth (NaN: no value), its validity,
    sigma (meaningful where the depth is valid), and the depth beyond which the map is not used."""

    def __init__(self, depth: torch.Tensor, sigma: torch.Tensor) -> None:
        self.depth, self.sigma = depth.reshape(-1), sigma.reshape(-1)
        self.valid = torch.isfinite(self.depth)
        # As the fuser: surface deeper than this is none the frame saw, and not used.
        self.reach = DEPTH_REACH * float(self.depth.detach()[self.valid].max()) if bool(self.valid.any()) else 0.0

    @staticmethod
    def of(
        camera: PinholeCamera, depth: torch.Tensor, sigma: torch.Tensor | None, config: FusionConfig, cell_size: float
    ) -> tuple[PinholeCamera, "_Frame"]:
        """The frame as the fuser takes it: no-value depths to NaN, sigma from ``config.noise`` where not
        given, then halved to ``config.pyramid_level`` (:mod:`heightfusion.pyramid`). Returns the
        camera of that level with it."""
        with torch.no_grad():
            valid = (depth > 0) & (depth < MAX_DEPTH)  # False for NaN and infinities too
        if sigma is None:
            noise = config.noise
            # From a stand-in where there is no depth, so that no NaN enters arithmetic that backward
            # would turn into NaN gradients.
            sigma = noise.base + noise.quadratic * (torch.where(valid, depth, 1.0) - noise.offset) ** 2
        else:
            with torch.no_grad():
                if not bool(((sigma > 0) & (sigma < math.inf) | ~valid).all()):
                    raise ValueError("sigmas must be positive and finite where the depth is valid")
            sigma = sigma.clamp_min(MIN_SIGMA)
        depth = torch.where(valid, depth, math.nan)
        if config.pyramid_level == "auto":
            level = auto_level(camera, depth.detach().cpu().numpy().astype(np.float32), cell_size)
        else:
            level = min(config.pyramid_level, max_level(camera))
        for _ in range(level):
            camera, depth, sigma = _halve(camera, depth, sigma)
        return camera, _Frame(depth, sigma)

    def at(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(depth, sigma) at flat ``pixels`` (all valid)."""
        return self.depth.index_select(0, pixels), self.sigma.index_select(0, pixels)


def _halve(
    camera: PinholeCamera, depth: torch.Tensor, sigma: torch.Tensor
) -> tuple[PinholeCamera, torch.Tensor, torch.Tensor]:
    """One pyramid level (``heightfusion.pyramid.halve``): per 2x2 block, the mean of the valid
    depths and of their sigmas where at least two are valid and agree, else no value."""
    height, width = camera.height // 2 * 2, camera.width // 2 * 2
    blocks = torch.stack([depth[i:height:2, j:width:2] for i in (0, 1) for j in (0, 1)])
    valid = torch.isfinite(blocks)
    count = valid.sum(dim=0)
    per_valid = count.clamp_min(1)  # a block without values divides 0 by 1, not by 0 (NaN gradients)
    mean = torch.where(valid, blocks, 0.0).sum(dim=0) / per_valid
    sigmas = torch.stack([sigma[i:height:2, j:width:2] for i in (0, 1) for j in (0, 1)])
    block_sigma = torch.where(valid, sigmas, 0.0).sum(dim=0) / per_valid
    with torch.no_grad():
        filled = torch.where(valid, blocks, mean)  # the mean lies between the valid values' extremes
        spread = filled.amax(dim=0) - filled.amin(dim=0)
        tilt = math.tan(math.radians(MAX_TILT_DEG)) * math.sqrt(2) / min(camera.fx, camera.fy)
        agree = (count >= 2) & (spread <= AGREEMENT_SIGMAS * block_sigma + tilt * mean)
    return half_camera(camera), torch.where(agree, mean, math.nan), torch.where(agree, block_sigma, math.nan)


def _seed(
    work: HeightMap,
    view: _View,
    frame: _Frame,
    heights: torch.Tensor,
    information: torch.Tensor,
    stride: int,
) -> torch.Tensor:
    """Heights with the vertices still at the prior information set from the frame's points in their
    cell: their mean, or the highest where they spread over more than a cell in height (see
    ``HeightMapFuser._seed_unobserved``)."""
    like = dict(dtype=heights.dtype, device=heights.device)
    H, W = view.shape
    rows = torch.arange(0, H, stride, device=heights.device)
    cols = torch.arange(0, W, stride, device=heights.device)
    sub = (rows[:, None] * W + cols[None, :]).reshape(-1)
    pixels = sub[frame.valid[sub]]
    if len(pixels) == 0:
        return heights
    z, _ = frame.at(pixels)
    points = view.centre + z[:, None] * view.directions[pixels]  # grid frame: (column, row, height)
    with torch.no_grad():
        col_row = torch.round(points[:, :2]).long()
        inside = (col_row[:, 0] >= 0) & (col_row[:, 0] < work.nx) & (col_row[:, 1] >= 0) & (col_row[:, 1] < work.ny)
        ids = col_row[:, 1] * work.nx + col_row[:, 0]
        no_evidence = information.reshape(-1) <= np.float32(work.prior_information)
        keep = inside & no_evidence[ids.clamp(0, work.num_vertices - 1)]
        ids = ids[keep]
        counts = torch.bincount(ids, minlength=work.num_vertices)
        seeded = torch.nonzero(counts > 0).squeeze(1)
    if len(seeded) == 0:
        return heights
    height = points[keep, 2]
    n = work.num_vertices
    mean = torch.zeros(n, **like).index_add(0, ids, height)[seeded] / counts[seeded]
    spread_sq = torch.zeros(n, **like).index_add(0, ids, height**2)[seeded] / counts[seeded] - mean**2
    top = torch.full((n,), -math.inf, **like).scatter_reduce(0, ids, height, "amax", include_self=False)[seeded]
    seed = torch.where(spread_sq.detach() <= work.cell_size**2, mean, top)
    return heights.reshape(-1).scatter(0, seeded, seed).reshape(heights.shape)


def _pixel_weights(
    hits: Hits, frame: _Frame, information: torch.Tensor | None, config: FusionConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """(w, r) per hit: the robust weight (Huber over the predicted sigma, 0 for outliers and grazing
    pixels, over the variance) and the residual measured - rendered depth. ``information`` (the prior)
    widens the outlier gate by what the map does not know; None gates on sigma alone."""
    z, s = frame.at(hits.pixels)
    ids, J = hits.vertex_ids, hits.depth_grad
    r = z - hits.depth
    var = s * s
    if information is None:
        predicted = var
    else:
        prior_variance = 1.0 / information.reshape(-1).index_select(0, ids.reshape(-1)).view(ids.shape)
        predicted = var + (J * J * prior_variance).sum(dim=1)
    e = r.abs() / predicted.sqrt()
    with torch.no_grad():
        facing = hits.cos_incidence >= math.cos(math.radians(config.max_incidence_deg))
        # A measurement behind the rendered surface is evidence against the map: never gated.
        inlier = facing & ((e <= config.gate_k) | (r > 0))
    if math.isinf(config.huber_k):  # plain least squares (k / e would give 0 * inf = NaN gradients)
        return inlier / var, r
    return torch.clamp_max(config.huber_k / e.clamp_min(1e-12), 1.0) * inlier / var, r


def _information_gain(hits: Hits, frame: _Frame, shape: tuple[int, int], config: FusionConfig) -> torch.Tensor:
    """(ny, nx) A_jj = sum over pixels of w J_j^2, gated on sigma alone: the information a frame adds."""
    w, _ = _pixel_weights(hits, frame, None, config)
    J = hits.depth_grad
    terms = (w[:, None] * J * J).reshape(-1)
    n = shape[0] * shape[1]
    return torch.zeros(n, dtype=terms.dtype, device=terms.device).index_add(0, hits.vertex_ids.reshape(-1), terms).reshape(shape)


def _normal_equations(
    hits: Hits, frame: _Frame, shape: tuple[int, int], information: torch.Tensor, config: FusionConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A_jj, g, A's edges) on the (ny, nx) grid, the edges (3, ny, nx) right, down, diagonal at their
    first vertex: the fuser's per-pixel rules (``heightfusion.fusion.normal_equations.accumulate``) on
    ``hits`` (measured pixels that see the map), the outlier gate widened by what the prior
    ``information`` does not know.
    """
    w, r = _pixel_weights(hits, frame, information, config)
    ids, J = hits.vertex_ids, hits.depth_grad
    wJ = w[:, None] * J
    # A pixel's vertex pairs, and which of them is its triangle's right, down and diagonal mesh edge:
    # kind 0 (v, v+1, v+nx+1) has right (v, v+1), down (v+1, v+nx+1), diagonal (v, v+nx+1); kind 1
    # (v, v+nx+1, v+nx) has right (v+nx, v+nx+1), down (v, v+nx), diagonal (v, v+nx+1).
    p01, p02, p12 = wJ[:, 0] * J[:, 1], wJ[:, 0] * J[:, 2], wJ[:, 1] * J[:, 2]
    upper = hits.upper
    edges = torch.stack([torch.where(upper, p12, p01), torch.where(upper, p02, p12), torch.where(upper, p01, p02)], dim=1)
    n = shape[0] * shape[1]
    with torch.no_grad():
        # Where each pixel's nine terms go in the (5, ny, nx) sums: A_jj and g at its three vertices,
        # then its three edges at their first vertex (v + nx for kind 1's right edge, v + 1 for kind 0's down).
        v = ids[:, 0]
        nx = shape[1]
        index = torch.cat([ids, ids + n, torch.stack([v + nx * upper + 2 * n, v + (~upper).long() + 3 * n, v + 4 * n],
                                                     dim=1)], dim=1)
    values = torch.cat([wJ * J, wJ * r[:, None], edges], dim=1)
    sums = torch.zeros(5 * n, dtype=values.dtype, device=values.device).index_add(0, index.reshape(-1), values.reshape(-1))
    sums = sums.reshape(5, *shape)
    return sums[0], sums[1], sums[2:]


def _smoothness(heights: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The robust smoothness prior at ``heights`` (``SmoothnessPrior.robust``): its (3, ny, nx) edge
    weights, 1 / sigma^2 Huber-reweighted by each edge's height difference (0 for edges leaving the
    grid), and its gradient d prior / d h = sum over each vertex's edges of w_e (h_j - h_k)."""
    if math.isinf(sigma):  # the prior is off (and k sigma / dh would give NaN gradients)
        return torch.zeros((3, *heights.shape), dtype=heights.dtype, device=heights.device), torch.zeros_like(heights)
    exists = _at_far(torch.ones_like(heights, dtype=torch.bool))
    dh = _at_far(heights) - heights
    weights = torch.clamp_max(_SMOOTHNESS_HUBER_K * sigma / dh.abs().clamp_min(1e-12), 1.0) * exists / sigma**2
    pull = weights * dh  # on each edge's first vertex; the opposite on its second
    return weights, _to_far(pull) - pull.sum(dim=0)


def _neighbour_sums(edges: torch.Tensor) -> torch.Tensor:
    """sum_k M_jk over each vertex's mesh neighbours, from (3, ny, nx) edge values at their first vertex."""
    return edges.sum(dim=0) + _to_far(edges)


def _at_far(a: torch.Tensor) -> torch.Tensor:
    """(3, ny, nx): ``a`` at the second vertex of each vertex's right, down and diagonal edge (0 where the
    edge leaves the grid)."""
    return torch.stack([F.pad(a[:, 1:], (0, 1)), F.pad(a[1:], (0, 0, 0, 1)), F.pad(a[1:, 1:], (0, 1, 0, 1))])


def _to_far(edges: torch.Tensor) -> torch.Tensor:
    """(ny, nx): the sum at each vertex of the (3, ny, nx) edge values of the edges it is the second vertex of."""
    return (F.pad(edges[0, :, :-1], (1, 0)) + F.pad(edges[1, :-1], (0, 0, 1, 0))
            + F.pad(edges[2, :-1, :-1], (1, 0, 1, 0)))


# --- rendering ---------------------------------------------------------------------------------------
def _renderer(backend: str | Renderer) -> Renderer:
    """The renderer named (shared, as render_depth's) or given; ValueError unless it has mesh triangles."""
    if isinstance(backend, Renderer):
        renderer = backend
    else:
        from .autograd import shared_renderer  # at call time: heightfusion.autograd imports this module

        renderer = shared_renderer(backend)
    if not renderer.capabilities.mesh_triangles:
        raise ValueError(f"the {renderer.name!r} backend has no mesh triangles (fusion in torch intersects each pixel's "
                         "ray with the triangle it sees): use gl, raymarch or raymarch-gl")
    return renderer


def _triangle_ids_at(
    renderer: Renderer, work: HeightMap, camera: PinholeCamera, T_wc: np.ndarray, max_depth: float,
    heights: torch.Tensor,
) -> torch.Tensor:
    """The visible triangles at ``heights``, rendered through the working copy of the grid."""
    work.heights = heights.detach().cpu().numpy()
    return _triangle_ids(renderer, work, camera, T_wc, max_depth, heights.device)


def _triangle_ids(
    renderer: Renderer, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray, max_depth: float,
    device: torch.device,
) -> torch.Tensor:
    if renderer.capabilities.gl_fragments:
        ids = renderer.triangle_ids(grid, camera, T_wc, max_depth)  # only the ids cross from the GPU
    else:
        frag = renderer.render(grid, camera, T_wc)
        ids = np.where(frag.depth <= max_depth, frag.triangle_ids, -1) if math.isfinite(max_depth) else frag.triangle_ids
    return torch.from_numpy(ids.astype(np.int64, copy=False)).to(device)


def _poses(T_wc: np.ndarray | torch.Tensor) -> np.ndarray:
    """(V, 4, 4) float64 poses, validated, from (4, 4) or (V, 4, 4)."""
    poses = np.asarray(T_wc.detach().cpu().numpy() if isinstance(T_wc, torch.Tensor) else T_wc, dtype=np.float64)
    if poses.shape == (4, 4):
        poses = poses[None]
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"T_wc must have shape (4, 4) or (V, 4, 4), got {poses.shape}")
    return np.stack([validate_pose(T, f"T_wc[{i}]") for i, T in enumerate(poses)])
