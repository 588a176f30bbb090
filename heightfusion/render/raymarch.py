"""The "raymarch" backend: ray marching of the height field with exact hits on the triangulated mesh.

It needs no OpenGL: it is the pure reference the GL rasterizer is tested against and the backend for
machines without OpenGL. It is vectorised with torch (CPU or GPU device), in float32 or float64.

The walk. Each pixel's ray c + t d (d scaled to camera-z 1, so that t is the z-depth) is taken into
the *grid frame* (:func:`grid_frame`): x and y in cells from vertex (0, 0), z in metres. It is clipped
to the map's bounding box (a slab test, :func:`march_box`), then walked one column of cells at a time
along its major axis (x, or y for rays that run more along y). Since its minor coordinate moves by at
most one cell per column, the ray crosses at most two cells of a column: the cells under its entry
and exit points. Both triangles of each of these cells are intersected exactly (the triangle's plane,
then an in-triangle test on the hit's in-cell coordinates) and the nearest hit with t > 0 is the
first intersection with the surface, from above or below. The in-triangle test accepts hits about a
rounding error outside the triangle (:func:`edge_slack`), so that no ray slips through the crack
between two triangles.

Vectorisation. All rays march in lock-step over blocks of columns (short blocks first, since most
rays hit soon after they enter the box) and leave the batch when they hit or leave the box. Of a
block's cells only those whose height range meets the ray's over the column are hit-tested, gathered
into one flat batch, so that the walk above (or below) the surface costs a few comparisons per column.
``shaders/raymarch.frag`` runs the same walk per pixel on the GPU (:mod:`.raymarch_gl`), testing every
cell it crosses until the first column with a hit.

The hit. On triangle k of cell (i, j), with G the triangle's height differences per cell along x and
y (the height gradient g times the cell size), the ray meets the plane at t = q / den with
q = h_ij - c_z + G . (c_xy - (j, i)) and den = d_z - G . d_xy (d_xy in cells), the same plane
formula as shaders/triangle_hit.glsl. Barycentric weights come from the in-cell coordinates of the
hit (:func:`heightfusion.heightmap.cell_barycentric`). Implicit differentiation of the hit condition
c_z + t d_z = sum_k b_k(t) h_k, where b depends on t only, gives DESIGN.md's formula
d depth / d h_k = b_k / (d_z - g . d_xy) = b_k / den.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
import torch

from ..camera import PinholeCamera
from ..heightmap import HeightMap, cell_barycentric
from ..poses import invert_pose
from .base import Capabilities, Renderer, check_inputs
from .fragments import Fragments, scatter_fragments
from .projection import camera_from_map

__all__ = ["RaymarchRenderer", "Surface", "edge_slack", "grid_frame", "height_pad", "march", "march_box"]

# Columns per lock-step block: short first (most rays hit within a few columns of entering the box),
# then longer, so that long walks (grazing rays) cost few Python-level steps.
_BLOCKS = (4, 8, 16, 32)
# Rays per batch, and rays x columns per block: bound the (rays, columns, 2 cells) temporaries to
# tens of MB while keeping each tensor operation large.
_CHUNK = 1 << 17
_COLUMNS = 1 << 19
# Ray components smaller than this become this (with their sign): 1 / d stays finite and the slab and
# column arithmetic needs no special case for axis-parallel rays. Shared with shaders/raymarch.frag.
TINY = 1e-20
# Relative widening of a column's ray-parameter range where it bounds the ray's height over the column.
_WIDEN = torch.tensor([1 - 1e-5, 1 + 1e-5])
# Rounding errors (in units of the dtype's epsilon times the coordinates' magnitude) the in-triangle
# test tolerates; see edge_slack.
_SLACK_ULPS = 1.0


# --- geometry shared with the GLSL twin (render/raymarch_gl.py) ----------------------------------
def grid_frame(grid: HeightMap, T_wc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The camera in the grid frame: centre (3,) and ray matrix (3, 3), float64.

    The grid frame has x along columns j and y along rows i, in cells from vertex (0, 0), and z in
    metres (up). The matrix takes a camera-frame direction to the grid frame, so that pixel (u, v)'s
    ray is ``centre + t * matrix @ ((u - cx) / fx, (v - cy) / fy, 1)`` with t its z-depth. Computed in
    float64 from the map-local transform, so a map far from the world origin keeps its precision.
    """
    map_from_cam = invert_pose(camera_from_map(grid, T_wc))
    scale = np.array([1.0 / grid.cell_size, 1.0 / grid.cell_size, 1.0])
    return scale * map_from_cam[:3, 3], scale[:, None] * map_from_cam[:3, :3]


def height_pad(grid: HeightMap) -> float:
    """Metres by which the walk widens height ranges (the box, the cells' bounds) against rounding.

    A flat map is a box of no height, and a ray along a face of a box may lose it by a rounding
    error; widening only lengthens walks, it never adds hits.
    """
    return 1e-3 * grid.cell_size + 1e-6 * float(np.abs(grid.heights).max())


def march_box(grid: HeightMap) -> tuple[np.ndarray, np.ndarray]:
    """Corners (lo, hi) of the box the walk clips rays to, grid frame, float64: the map's bounding box,
    widened by :func:`height_pad` (and 1e-4 cells across)."""
    pad_z, pad_xy = height_pad(grid), 1e-4
    lo = np.array([-pad_xy, -pad_xy, float(grid.heights.min()) - pad_z])
    hi = np.array([grid.nx - 1 + pad_xy, grid.ny - 1 + pad_xy, float(grid.heights.max()) + pad_z])
    return lo, hi


def edge_slack(eps: float) -> float:
    """How far outside a triangle the in-triangle test accepts a hit, in cells per cell of distance
    between the camera and the triangle's cell (1 plus the L1 distance), at working precision ``eps``.

    The in-cell coordinates of a hit are differences of grid-frame coordinates about that large, so
    they carry about that many epsilons of rounding error: a ray through the edge between two triangles
    must not fall between them. More slack fattens silhouettes instead (a ray grazing a ridge hits the
    plane of a triangle it passes beside).
    """
    return _SLACK_ULPS * eps


# --- the walk --------------------------------------------------------------------------------------
@dataclass
class Surface:
    """The triangulated height field as the walk reads it, per cell in cell-id order i * (nx - 1) + j.

    Attributes:
        planes: (num_cells, 5) the height of vertex (i, j), then the height differences per cell
            (G_x, G_y) of triangle k = 0 and of k = 1 (as shaders/heightmap.vert derives them).
        bounds: (num_cells, 2) lowest and highest height of the cell, widened by :func:`height_pad` and
            by what the in-triangle slack lets a hit stray beyond the cell: culling by them drops no hit.
        shape: (ny, nx) vertices.
        slack: :func:`edge_slack` at the working precision.
    """

    planes: torch.Tensor
    bounds: torch.Tensor
    shape: tuple[int, int]
    slack: float

    @staticmethod
    def of(grid: HeightMap, centre: np.ndarray, dtype: torch.dtype, device: torch.device) -> "Surface":
        """The tables of ``grid`` seen from grid-frame ``centre``, in ``dtype`` on ``device``."""
        heights = torch.as_tensor(np.asarray(grid.heights), device=device).to(dtype)
        h00, h01, h10, h11 = heights[:-1, :-1], heights[:-1, 1:], heights[1:, :-1], heights[1:, 1:]
        planes = torch.stack([h00, h01 - h00, h11 - h01, h11 - h10, h10 - h00], dim=-1).reshape(-1, 5)
        corners = torch.stack([h00, h01, h10, h11], dim=-1).reshape(-1, 4)
        lo, hi = corners.amin(dim=1), corners.amax(dim=1)
        slack = edge_slack(torch.finfo(dtype).eps)
        farthest = 1 + 2 * (float(np.abs(centre[:2]).max()) + max(grid.shape))  # L1 distance to a cell, bound
        margin = height_pad(grid) + 2 * slack * farthest * (hi - lo)  # |G_x| + |G_y| <= 2 (hi - lo)
        return Surface(planes, torch.stack([lo - margin, hi + margin], dim=1), grid.shape, slack)

    def cell_ij(self, cells: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(i, j) of cell ids, as floats of ``dtype``."""
        nx = self.shape[1]
        return (cells // (nx - 1)).to(dtype), (cells % (nx - 1)).to(dtype)


def _plane_hit(
    h: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
    centre: torch.Tensor, d: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, s, r, den) of rays ``centre + t d`` meeting the plane of a triangle of cell (i, j).

    The plane passes through vertex (i, j) (a vertex of both triangles of the cell) at height ``h``
    with height differences per cell (gx, gy); (s, r) are the in-cell coordinates of the hit along x
    and y, den = d_z - G . d_xy. ``d`` is (..., 3); everything else broadcasts with ``d[..., 0]``.
    """
    dx, dy, dz = d.unbind(-1)
    ogx, ogy = centre[0] - j, centre[1] - i  # camera minus vertex (i, j), cells
    den = dz - gx * dx - gy * dy
    t = (h - centre[2] + gx * ogx + gy * ogy) / den
    return t, ogx + t * dx, ogy + t * dy, den


def _in_triangle(s: torch.Tensor, r: torch.Tensor, upper: torch.Tensor, slack: torch.Tensor) -> torch.Tensor:
    """Whether in-cell coordinates lie in triangle k = 0 (0 <= r <= s <= 1) or, where ``upper``,
    k = 1 (0 <= s <= r <= 1), within ``slack``."""
    lo, hi = torch.where(upper, s, r), torch.where(upper, r, s)
    return (lo >= -slack) & (hi <= 1.0 + slack) & (hi - lo >= -slack)


@dataclass
class _Rays:
    """The rays of a batch still walking, one row each, grid frame; u is the major axis (walked one
    column of cells at a time), w the minor one."""

    index: torch.Tensor  # (N,) position in the caller's ray array
    d: torch.Tensor  # (N, 3) directions
    t_start: torch.Tensor  # (N,) box entry (0 for a camera inside the box)
    t_end: torch.Tensor  # (N,) box exit
    xmajor: torch.Tensor  # (N,) bool: u is x (columns j), else y (rows i)
    u_centre: torch.Tensor  # (N,) camera coordinate along u
    u_dir: torch.Tensor  # (N,) direction along u
    u_cells: torch.Tensor  # (N,) cells along u
    w_centre: torch.Tensor
    w_dir: torch.Tensor
    w_cells: torch.Tensor
    first: torch.Tensor  # (N,) index along u of the first column walked

    @staticmethod
    def start(
        index: torch.Tensor, d: torch.Tensor, t_start: torch.Tensor, t_end: torch.Tensor,
        centre: torch.Tensor, shape: tuple[int, int],
    ) -> "_Rays":
        xmajor = d[:, 0].abs() >= d[:, 1].abs()
        u = (~xmajor).long()  # 0: x, 1: y
        w = 1 - u
        rows = torch.arange(len(d), device=d.device)
        cells = torch.tensor([shape[1] - 1, shape[0] - 1], dtype=d.dtype, device=d.device)
        u_centre, u_dir, u_cells = centre[u], d[rows, u], cells[u]
        first = torch.minimum((u_centre + t_start * u_dir).floor().clamp_min(0.0), u_cells - 1)
        return _Rays(index, d, t_start, t_end, xmajor, u_centre, u_dir, u_cells, centre[w], d[rows, w], cells[w], first)

    def take(self, keep: torch.Tensor) -> "_Rays":
        return _Rays(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})


def _block_sizes() -> Iterator[int]:
    return itertools.chain(_BLOCKS, itertools.repeat(_BLOCKS[-1]))


def march(
    surface: Surface, centre: torch.Tensor, d: torch.Tensor, box: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """First hits of rays ``centre + t d`` (grid frame) with the triangulated height field.

    Args:
        surface: the height field's tables.
        centre: (3,) ray origin; d: (N, 3) directions, no component smaller than :data:`TINY`.
        box: (lo, hi) corners of :func:`march_box`.

    Returns:
        (N,) int64 triangle id of each ray's first hit (-1 on a miss) and (N,) its t (NaN on a miss).
    """
    tri = torch.full((len(d),), -1, dtype=torch.int64, device=d.device)
    t_hit = torch.full((len(d),), float("nan"), dtype=d.dtype, device=d.device)
    # Slab test: entry and exit of the box (t >= 0: the walk starts at the camera when it is inside).
    ta, tb = (box[0] - centre) / d, (box[1] - centre) / d
    t_start = torch.minimum(ta, tb).amax(dim=1).clamp_min(0.0)
    t_end = torch.maximum(ta, tb).amin(dim=1)
    for chunk in torch.nonzero(t_start <= t_end).squeeze(1).split(_CHUNK):
        rays = _Rays.start(chunk, d[chunk], t_start[chunk], t_end[chunk], centre, surface.shape)
        start = 0  # columns already walked by every ray of the batch
        for block in _block_sizes():
            if len(rays.index) == 0:
                break
            block = min(block, max(1, _COLUMNS // len(rays.index)))
            cells, candidate, more = _block_cells(rays, surface, centre, start, block)
            hit = _nearest_hits(rays, surface, centre, cells, candidate, tri, t_hit)
            rays = rays.take(~hit & more)
            start += block
    return tri, t_hit


def _block_cells(
    rays: _Rays, surface: Surface, centre: torch.Tensor, start: int, block: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cells of columns ``start`` to ``start + block - 1`` of each ray's walk.

    Returns (N, block, 2) cell ids (under the column's entry and exit points), (N, block, 2) bool:
    worth a hit test (a distinct cell in the box whose height range meets the ray's over the column),
    and (N,) bool: the walk goes on past the block.
    """
    u_centre, u_dir, u_cells, first = (a[:, None] for a in (rays.u_centre, rays.u_dir, rays.u_cells, rays.first))
    back = (u_dir < 0).to(u_dir.dtype)  # a column walked backwards is entered at its high side
    col = first + torch.sign(u_dir) * torch.arange(start, start + block + 1, device=u_dir.device, dtype=u_dir.dtype)
    # Ray parameters where each column is entered and left, clipped to the box.
    t_in = torch.maximum(rays.t_start[:, None], (col + back - u_centre) / u_dir)
    t_out = torch.minimum(rays.t_end[:, None], (col + 1 - back - u_centre) / u_dir)
    live = (col >= 0) & (col < u_cells) & (t_in <= t_out)  # (N, block + 1): the last is the next block's first
    col, t_in, t_out, live, more = col[:, :-1], t_in[:, :-1], t_out[:, :-1], live[:, :-1], live[:, -1]
    t_ends = torch.stack([t_in, t_out], dim=-1)
    w = (rays.w_centre[:, None, None] + t_ends * rays.w_dir[:, None, None]).floor()
    w = torch.minimum(w.clamp_min(0.0), rays.w_cells[:, None, None] - 1)
    col = torch.minimum(col.clamp_min(0.0), u_cells - 1)[..., None].expand_as(w)  # dead columns: any cell
    xmajor = rays.xmajor[:, None, None]
    i, j = torch.where(xmajor, w, col), torch.where(xmajor, col, w)
    cells = i.long() * (surface.shape[1] - 1) + j.long()
    # The ray meets a cell's surface only if their height ranges over the column meet (the ray's
    # covers that of the part of the column over the cell; widened against rounding at the column's sides).
    z = centre[2] + t_ends * _WIDEN.to(t_ends) * rays.d[:, None, None, 2]
    z_lo, z_hi = z.amin(dim=-1, keepdim=True), z.amax(dim=-1, keepdim=True)
    bounds = surface.bounds[cells]
    candidate = live[..., None] & (z_lo <= bounds[..., 1]) & (z_hi >= bounds[..., 0])
    candidate[..., 1] &= w[..., 1] != w[..., 0]  # the ray stays in one cell of the column
    return cells, candidate, more


def _nearest_hits(
    rays: _Rays, surface: Surface, centre: torch.Tensor, cells: torch.Tensor, candidate: torch.Tensor,
    tri_out: torch.Tensor, t_out: torch.Tensor,
) -> torch.Tensor:
    """Hit-test both triangles of the candidate cells; write each ray's nearest hit into ``tri_out`` and
    ``t_out`` (at the ray's index); return (N,) bool: the ray hit."""
    ray = torch.nonzero(candidate)[:, 0]
    cell = cells[candidate]
    rows = surface.planes[cell]
    i, j = surface.cell_ij(cell, rays.d.dtype)
    gx, gy = rows[:, 1::2], rows[:, 2::2]  # (M, 2): triangles k = 0, 1
    t, s, r, _ = _plane_hit(rows[:, :1], gx, gy, i[:, None], j[:, None], centre, rays.d[ray, None])
    upper = torch.tensor([False, True], device=t.device)  # triangle k along the last axis
    slack = surface.slack * (1 + (centre[0] - j).abs() + (centre[1] - i).abs())[:, None]  # see edge_slack
    t = torch.where(_in_triangle(s, r, upper, slack) & (t > 0), t, torch.inf)
    t_cell, k = t.min(dim=1)
    t_best = torch.full((len(rays.index),), torch.inf, dtype=t.dtype, device=t.device)
    t_best = t_best.scatter_reduce(0, ray, t_cell, reduce="amin")
    winner = torch.isfinite(t_cell) & (t_cell == t_best[ray])
    tri_out[rays.index[ray[winner]]] = (2 * cell + k)[winner]
    hit = torch.isfinite(t_best)
    t_out[rays.index[hit]] = t_best[hit]
    return hit


# --- the renderer ----------------------------------------------------------------------------------
def pixel_directions(camera: PinholeCamera, matrix: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(H * W, 3) grid-frame ray directions of the pixel centres (row-major), camera-z component 1.

    Components smaller than :data:`TINY` become TINY with their sign (see there).
    """
    ray_cam = _camera_rays(camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy, dtype, device)
    d = ray_cam @ torch.as_tensor(matrix, dtype=dtype, device=device).T
    return torch.where(d.abs() < TINY, torch.copysign(torch.full_like(d, TINY), d), d)


@functools.lru_cache(maxsize=8)
def _camera_rays(width: int, height: int, fx: float, fy: float, cx: float, cy: float, dtype: torch.dtype,
                 device: torch.device) -> torch.Tensor:
    """(H * W, 3) camera-frame rays of the pixel centres, z = 1: the same for every frame of a camera
    (fusion builds a view per frame; never modified by the callers)."""
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype, device=device), torch.arange(width, dtype=dtype, device=device),
                          indexing="ij")
    return torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u)], dim=-1).reshape(-1, 3)


@dataclass
class _Scene:
    """One render's inputs on the renderer's device, grid frame."""

    surface: Surface
    centre: torch.Tensor
    d: torch.Tensor
    tri: torch.Tensor  # (H * W,) first-hit triangle id, -1 on a miss
    t: torch.Tensor  # (H * W,) its ray parameter (the z-depth), NaN on a miss


class RaymarchRenderer(Renderer):
    """Ray marches the height map with torch: exact first hits on the triangulated surface, no OpenGL.

    Fills every :class:`Fragments` field, with the GL backend's conventions: z-depth (NaN where
    empty), triangle and vertex ids (-1 where empty), barycentric weights in the triangulation's vertex
    order, ``depth_grad`` = b_k / (d_z - g . d_xy) (positive for a camera below the surface, which sees
    the underside), colour interpolated from the vertex colours, unit world normal of the upper side.
    Pixel centres are at integer coordinates (OpenCV); the image is the ideal pinhole one (no lens
    distortion). See the module docstring for the method.

    Args:
        dtype: working precision, ``torch.float32`` (default) or ``torch.float64`` (or their numpy or
            string names). The float fields of the result have this dtype: float64 makes finite
            differences and ``torch.autograd.gradcheck`` tight.
        device: torch device the march runs on (e.g. ``"cuda"``); results come back as numpy arrays.
    """

    name = "raymarch"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(mesh_triangles=True, gl_fragments=False, vertex_color=True,
                            double_precision=self.dtype == torch.float64)

    def __init__(self, dtype: torch.dtype | str | type = torch.float32, device: str | torch.device = "cpu") -> None:
        self.dtype = _float_dtype(dtype)
        self.device = torch.device(device)

    def render(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> Fragments:
        scene = self._march(grid, camera, T_wc)
        return _fragments(grid, camera, scene)

    def render_depth(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> np.ndarray:
        return self._march(grid, camera, T_wc).t.reshape(camera.shape).cpu().numpy()

    def _march(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> _Scene:
        T_wc = check_inputs(grid, camera, T_wc)
        centre_np, matrix = grid_frame(grid, T_wc)
        dtype, device = self.dtype, self.device
        surface = Surface.of(grid, centre_np, dtype, device)
        centre = torch.as_tensor(centre_np, dtype=dtype, device=device)
        d = pixel_directions(camera, matrix, dtype, device)
        lo, hi = (torch.as_tensor(c, dtype=dtype, device=device) for c in march_box(grid))
        with torch.inference_mode():
            tri, t = march(surface, centre, d, (lo, hi))
        return _Scene(surface, centre, d, tri, t)


def _float_dtype(dtype: torch.dtype | str | type) -> torch.dtype:
    """torch.float32 or torch.float64 from a torch dtype or a numpy dtype (or its name)."""
    if not isinstance(dtype, torch.dtype):
        try:
            dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}.get(np.dtype(dtype))
        except TypeError:
            dtype = None
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"RaymarchRenderer dtype must be float32 or float64, got {dtype!r}")
    return dtype


def _fragments(grid: HeightMap, camera: PinholeCamera, scene: _Scene) -> Fragments:
    """Every Fragments field from the first-hit triangles, computed on the hit pixels only."""
    H, W = camera.shape
    pixels = torch.nonzero(scene.tri >= 0).squeeze(1)
    tri = scene.tri[pixels]
    cell, k = tri // 2, tri % 2
    i, j = scene.surface.cell_ij(cell, scene.d.dtype)
    rows = scene.surface.planes[cell]
    gx, gy = rows.gather(1, 1 + 2 * k[:, None])[:, 0], rows.gather(1, 2 + 2 * k[:, None])[:, 0]
    _, s, r, den = (a.cpu().numpy() for a in _plane_hit(rows[:, 0], gx, gy, i, j, scene.centre, scene.d[pixels]))
    t = scene.t[pixels].cpu().numpy()  # the march's own t: render_depth gives the same depth bit for bit
    g = torch.stack([gx, gy], dim=1).cpu().numpy() / grid.cell_size
    tri_np, k_np, hit = tri.cpu().numpy().astype(np.int32), k.cpu().numpy(), pixels.cpu().numpy()

    float_type = t.dtype
    b = cell_barycentric(s, r, k_np).astype(float_type)
    vertex_ids = grid.triangle_vertex_ids(tri_np)
    normal = np.concatenate([-g, np.ones_like(g[:, :1])], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    values = {
        "depth": t,
        "triangle_ids": tri_np,
        "vertex_ids": vertex_ids,
        "barycentric": b,
        "depth_grad": b / den[:, None],
        "color": np.einsum("pk,pkc->pc", b, grid.colors.reshape(-1, 3)[vertex_ids].astype(float_type)),
        "normal": normal,
    }
    return Fragments(**scatter_fragments(values, hit, (H, W)))
