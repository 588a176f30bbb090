"""PyTorch autograd through the height-map renderers.

:func:`render_depth` and :func:`render_image` render one or several views of a heights tensor (and a
colours tensor) with any backend from :func:`heightfusion.make_renderer`; their backward passes
scatter the per-pixel derivatives the renderer returns (``Fragments.depth_grad``, barycentric
weights) into the vertices, so a loss on rendered depth or colour optimises the map with any torch
optimiser. Visibility is piecewise constant: gradients are those of the visible triangles (no
silhouette terms), as in the fusion's Gauss-Newton step.

Rendering runs on the backend's device (OpenGL, or the CPU ray marcher); inputs and outputs are
torch tensors on the CPU, in the heights' dtype (float64 through a double-precision backend makes
``torch.autograd.gradcheck`` tight).

:func:`fuse_depth` (with its parts :func:`visible_triangles`, :func:`ray_hits` and :func:`solve_grid`,
from :mod:`heightfusion.fusion_autograd`) differentiates the fusion itself: depth images in, the fused
map's heights and information out, so that a loss on depth rendered from the fused map reaches the
depth images.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .camera import PinholeCamera
from .fusion_autograd import Hits, fuse_depth, ray_hits, solve_grid, visible_triangles
from .heightmap import HeightMap
from .render import Renderer, make_renderer
from .render.fragments import Fragments

__all__ = ["Hits", "fuse_depth", "ray_hits", "render_depth", "render_image", "solve_grid", "visible_triangles"]


def render_depth(
    heights: torch.Tensor,
    grid: HeightMap,
    camera: PinholeCamera,
    T_wc: np.ndarray | torch.Tensor,
    backend: str | Renderer = "gl",
) -> torch.Tensor:
    """Depth images of the map with ``heights`` seen from one or several poses.

    Args:
        heights: (ny, nx) tensor; ``grid`` gives the geometry (origin, cell size), its own heights are
            not used.
        T_wc: (4, 4) camera-to-world pose, or (V, 4, 4) for V views.
        backend: a backend name (one renderer per name, shared by all calls: :func:`shared_renderer`) or a
            renderer instance.

    Returns:
        (H, W) depth, or (V, H, W) for several poses; NaN where a view sees no surface (its gradient
        is zero there: mask NaNs out of the loss).
    """
    return _RenderDepth.apply(heights, _Views(grid, camera, T_wc, backend))


def render_image(
    heights: torch.Tensor,
    colors: torch.Tensor,
    grid: HeightMap,
    camera: PinholeCamera,
    T_wc: np.ndarray | torch.Tensor,
    backend: str | Renderer = "gl",
) -> torch.Tensor:
    """Colour images (barycentric interpolation of vertex ``colors`` (ny, nx, 3)) of one or several views.

    Gradients flow to ``colors`` (the barycentric weights) and to ``heights``: raising a vertex
    moves the hit along the ray, which changes its barycentric weights.

    Returns:
        (H, W, 3), or (V, H, W, 3) for several poses; NaN where a view sees no surface.

    The "shaded" backend's colour is a BRDF shading, not this interpolation: differentiate it with
    :func:`heightfusion.render.shaded.shade_maps` instead; the "points" backend blends discs, not
    triangles (use :func:`render_depth` with it). Both are a ValueError here.
    """
    views = _Views(grid, camera, T_wc, backend)
    if not views.renderer.capabilities.vertex_color:
        raise ValueError(
            f"render_image differentiates colours interpolated over mesh triangles; the {views.renderer.name!r} "
            "backend's colour is not that (the 'shaded' backend's BRDF images: use heightfusion.render.shaded."
            "shade_maps; the 'points' backend blends discs): use a mesh backend (gl, raymarch, raymarch-gl), "
            "or render_depth"
        )
    return _RenderImage.apply(heights, colors, views)


@functools.cache
def shared_renderer(name: str) -> Renderer:
    """The renderer that calls naming backend ``name`` share: created on first use, then reused, so an
    optimisation loop of many steps holds one set of GPU resources, not one per step."""
    return make_renderer(name)


class _Views:
    """What the autograd functions need besides tensors: geometry, camera, poses and a renderer."""

    def __init__(self, grid: HeightMap, camera: PinholeCamera, T_wc, backend: str | Renderer) -> None:
        poses = np.asarray(T_wc.detach().cpu().numpy() if isinstance(T_wc, torch.Tensor) else T_wc, dtype=np.float64)
        if poses.shape == (4, 4):
            self.batched, poses = False, poses[None]
        elif poses.ndim == 3 and poses.shape[1:] == (4, 4):
            self.batched = True
        else:
            raise ValueError(f"T_wc must have shape (4, 4) or (V, 4, 4), got {poses.shape}")
        self.poses = poses
        self.grid = grid.copy()
        self.camera = camera
        self.renderer = shared_renderer(backend) if isinstance(backend, str) else backend

    def render(self, heights: torch.Tensor, colors: torch.Tensor | None = None) -> list[Fragments]:
        if heights.shape != self.grid.shape:
            raise ValueError(f"heights has shape {tuple(heights.shape)}, the grid is {self.grid.shape}")
        self.grid.heights = heights.detach().cpu().numpy()
        if colors is not None:
            if colors.shape != self.grid.shape + (3,):
                raise ValueError(f"colors has shape {tuple(colors.shape)}, expected {self.grid.shape + (3,)}")
            self.grid.colors = colors.detach().cpu().numpy()
        # Copies: a renderer may reuse its read-back buffers once results are dropped.
        return [_own(self.renderer.render(self.grid, self.camera, T)) for T in self.poses]

    def output(self, images: list[np.ndarray], like: torch.Tensor) -> torch.Tensor:
        out = torch.from_numpy(np.stack(images)).to(like.dtype)
        return out if self.batched else out[0]

    def per_view(self, grad: torch.Tensor) -> torch.Tensor:
        return grad if self.batched else grad[None]


def _own(frag: Fragments) -> Fragments:
    return Fragments(**{k: (None if v is None else np.array(v)) for k, v in frag.__dict__.items()})


class _RenderDepth(torch.autograd.Function):
    @staticmethod
    def forward(ctx, heights: torch.Tensor, views: _Views) -> torch.Tensor:
        frags = views.render(heights)
        ctx.views, ctx.frags = views, frags
        ctx.heights_shape, ctx.dtype = heights.shape, heights.dtype
        return views.output([f.depth for f in frags], heights)

    @staticmethod
    def backward(ctx, grad_depth: torch.Tensor):
        grad = ctx.views.per_view(grad_depth).detach().cpu().numpy().astype(np.float64)
        n = ctx.views.grid.num_vertices
        grad_heights = np.zeros(n)
        for g, frag in zip(grad, ctx.frags):
            hit = frag.mask & np.isfinite(g)
            ids, weighted = frag.vertex_ids[hit], frag.depth_grad[hit] * g[hit][:, None]
            used = ids >= 0  # backends with fewer than three contributors (points) leave slots at -1
            grad_heights += np.bincount(ids[used], weighted[used], n)
        return torch.from_numpy(grad_heights.reshape(ctx.heights_shape)).to(ctx.dtype), None


class _RenderImage(torch.autograd.Function):
    @staticmethod
    def forward(ctx, heights: torch.Tensor, colors: torch.Tensor, views: _Views) -> torch.Tensor:
        frags = views.render(heights, colors)
        ctx.views, ctx.frags = views, frags
        ctx.save_for_backward(colors)
        ctx.dtype = heights.dtype
        return views.output([f.color for f in frags], heights)

    @staticmethod
    def backward(ctx, grad_image: torch.Tensor):
        (colors,) = ctx.saved_tensors
        views = ctx.views
        grid = views.grid
        n = grid.num_vertices
        c = colors.detach().cpu().numpy().reshape(-1, 3).astype(np.float64)
        grad = views.per_view(grad_image).detach().cpu().numpy().astype(np.float64)
        grad_heights, grad_colors = np.zeros(n), np.zeros((n, 3))
        for g, frag, T in zip(grad, ctx.frags, views.poses):
            hit = frag.mask & np.isfinite(g).all(axis=-1)
            ids, b, J, g = frag.vertex_ids[hit], frag.barycentric[hit], frag.depth_grad[hit], g[hit]
            # d colour / d c_k = b_k.
            for ch in range(3):
                grad_colors[:, ch] += np.bincount(ids.reshape(-1), (b * g[:, ch, None]).reshape(-1), n)
            # d colour / d h_m = sum_k c_k (db_k / dxy . d_xy) J_m: the hit slides along the ray.
            db_dt = _barycentric_rate(frag.triangle_ids[hit], _ray_xy(views.camera, T)[hit], grid.cell_size)
            dcolor_dt = np.einsum("pk,pkc->pc", db_dt, c[ids])
            grad_heights += np.bincount(ids.reshape(-1), (J * (dcolor_dt * g).sum(-1)[:, None]).reshape(-1), n)
        return (
            torch.from_numpy(grad_heights.reshape(grid.shape)).to(ctx.dtype),
            torch.from_numpy(grad_colors.reshape(grid.shape + (3,))).to(colors.dtype),
            None,
        )


def _ray_xy(camera: PinholeCamera, T_wc: np.ndarray) -> np.ndarray:
    """(H, W, 2) world xy of each pixel's ray direction with camera-z component 1."""
    return camera.pixel_rays() @ T_wc[:2, :3].T


def _barycentric_rate(triangle_ids: np.ndarray, d_xy: np.ndarray, cell_size: float) -> np.ndarray:
    """(N, 3) d b_k / d t of a hit moving along the ray by t (z-depth), per the triangulation.

    In-cell coordinates (s, r) grow with x and y at 1 / cell_size; b = (1-s, s-r, r) for k = 0 and
    (1-r, s, r-s) for k = 1 (heightfusion/heightmap.py).
    """
    ds, dr = d_xy[:, 0] / cell_size, d_xy[:, 1] / cell_size
    upper = (triangle_ids & 1) == 1
    return np.stack(
        [np.where(upper, -dr, -ds), np.where(upper, ds, ds - dr), np.where(upper, dr - ds, dr)], axis=-1
    )
