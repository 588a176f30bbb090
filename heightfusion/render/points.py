"""The "points" backend: the height map as oriented discs (surfels), splatted with a depth test and blended.

It needs no OpenGL: vectorised torch (CPU or GPU device), float32 or float64, like :mod:`.raymarch`.

The model. Vertex (i, j) carries a disc centred on it, at (x_j, y_i, h_ij), lying in the plane through it
with the map's slope there: the height differences per cell S = (S_x, S_y) of :func:`surfel_slopes`
(central differences, one-sided on the map's rim). The disc holds the points of that plane whose XY
distance from the vertex is less than R = ``radius`` cells: a circle seen from above (an ellipse in 3-D),
so that the discs cover the ground under the map whatever its slope (discs of a fixed 3-D radius would
shrink, seen from above, on a steep slope and open holes between the vertices); R > sqrt(1/2) reaches
the centre of every cell. Discs end at the map's edge, so that the backend covers the ground the mesh
covers. They are one-sided, facing the camera's side of the map: up when the camera is above the
surface (at the map's nearest point), down when it is under it (it then sees the underside, as the mesh
backends do). Two-sided discs would let a steep disc show its back over the surface in front of it,
where a height field has no back to show: an artefact that fusion feeds (raising such a vertex pushes
the back of its disc away from the camera, and the disc grows steeper still).

A pixel's ray c + t d (grid frame of :func:`.raymarch.grid_frame`: x, y in cells, z in metres; d scaled
so that t is the z-depth) meets disc k's plane at t_k, with (s_k, r_k) the XY offset of the hit from the
vertex in cells and den_k = d_z - S_k . d_xy (the plane formula of the mesh backends, ``_plane_hit``).
The ray hits the disc where rho_k^2 = (s_k^2 + r_k^2) / R^2 < 1, t_k > 0 and den_k < 0 (it meets the
upper side; den_k > 0 for a camera under the surface). Depth test and blending: of the discs a ray
hits, those whose hit lies at most ``depth_tolerance`` cells (of cell_size metres each) of z-depth behind
the front-most hit are candidates, and the (at most) three candidates with the largest weight
w_k = (1 - rho_k^2)^2, which falls smoothly to zero at the rim, contribute with the normalised weights
beta_k = w_k / W, W = sum_k w_k:

    depth = sum_k beta_k t_k,   colour = sum_k beta_k c_k,   normal = normalise(sum_k beta_k n_k),

n_k being the upward unit normal of disc k's plane.

Derivatives. ``depth_grad`` is the exact d depth / d h_k of that depth, holding fixed the slopes of all
discs (attributes computed from the heights before rendering, as a surfel's normal is) and which discs
contribute (that changes only where a disc crosses the depth tolerance, the top three or the map's edge).
Raising h_k lifts disc k's plane: its hit slides along the ray, dt_k / dh_k = 1 / den_k, and with it the
hit's offset from the vertex, which changes w_k:

    d depth / d h_k = beta_k / den_k + (t_k - depth) / W * dw_k / dh_k,
    dw_k / dh_k = -4 (1 - rho_k^2) (s_k d_x + r_k d_y) / (R^2 den_k).

The second term vanishes where the contributors agree in depth (a plane). :meth:`PointsRenderer.render`
takes the slopes as an argument, so that finite differences can hold them fixed too.

Against the mesh. On a smooth surface each disc is the tangent plane at its vertex, so the blended depth
differs from the triangulated surface's by about the curvature times a cell squared (seen obliquely,
divided by the cosine of incidence); at a height step the discs on the step's edge slant (central
differences) and the step shows as a chamfer about a cell wide. Each of the two reaches R / 2 of the
step's height towards the other, so that seen from the side a one-cell step (a wall) shows a slit of
(1 - R) of its height at mid-height, wider at a box's corners (radius 1.2 closes them, for 2.25 times
the discs per pixel of the default). tests/test_render_points.py bounds the depth difference to the GL
rasterizer on a smooth map.

Splatting. Each disc's footprint in the image is bounded by the projection of the disc's 3-D bounding
box (its rim is o + a cos(theta) + b sin(theta), so the box has half-sizes sqrt(a^2 + b^2) per camera axis);
the (disc, pixel) pairs of all footprints are enumerated in flat batches and hit-tested, each pixel's
front-most depth is taken with ``scatter_reduce`` ("amin"), and the candidates are sorted by pixel and
weight to keep the three strongest.
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..camera import PinholeCamera
from ..heightmap import HeightMap
from .base import Capabilities, Renderer, check_inputs, empty_fragments
from .fragments import Fragments, scatter_fragments
from .projection import camera_from_map
from .raymarch import _float_dtype, _plane_hit, grid_frame, pixel_directions

__all__ = ["CONTRIBUTORS", "PointsRenderer", "surfel_slopes"]

#: Most discs blended per pixel (the Fragments' three vertex slots).
CONTRIBUTORS = 3
# (disc, pixel) pairs hit-tested per batch: about 200 bytes of temporaries each.
_PAIRS = 1 << 19
# Nearest camera-z a footprint is projected from, metres: a disc reaching behind the camera's plane
# spans the image from there (its pixels' rays still need t > 0 to hit it).
_NEAR = 1e-9


def surfel_slopes(heights: np.ndarray) -> np.ndarray:
    """(ny, nx, 2) float64 slopes of the discs: height differences per cell along x (columns) and
    y (rows) at each vertex, metres per cell; central differences, one-sided on the map's rim."""
    d_rows, d_cols = np.gradient(np.asarray(heights, dtype=np.float64))
    return np.stack([d_cols, d_rows], axis=-1)


@dataclass
class _Discs:
    """Per-vertex disc data on the renderer's device, grid frame: (N, 5) rows (h, S_x, S_y, i, j) in flat
    vertex order: height (metres), slopes (metres per cell), row and column (as floats)."""

    table: torch.Tensor

    def at(self, k: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(h, S_x, S_y, i, j) of vertices ``k``, each shaped like ``k``: one gather for all five."""
        return self.table[k].unbind(-1)


@dataclass
class _Blend:
    """The contributors of the pixels that see a disc: (P, 3) tables, slot order by falling weight."""

    pixels: torch.Tensor  # (P,) flat pixel index
    vertex: torch.Tensor  # (P, 3) int64 flat vertex id, -1 in an unused slot
    t: torch.Tensor  # (P, 3) hit z-depth (0 in an unused slot)
    w: torch.Tensor  # (P, 3) weight (0 in an unused slot)

    @property
    def depth(self) -> torch.Tensor:
        return (self.w * self.t).sum(dim=1) / self.w.sum(dim=1)


class PointsRenderer(Renderer):
    """Splats the map's vertices as oriented discs with a depth test and smooth blending; no OpenGL.

    See the module docstring for the model and what ``depth_grad`` holds fixed. ``vertex_ids`` are the
    (at most three) blended vertices, strongest first, -1 in unused slots; ``barycentric`` their
    normalised blend weights and ``depth_grad`` their derivatives, both 0 in unused slots;
    ``triangle_ids`` is None (no triangle is involved). Empty pixels follow :class:`Fragments`.

    Args:
        radius: disc radius, in cells of the map, measured in the XY plane; more than sqrt(1/2), the
            half-diagonal of a cell, so that no hole opens at cell centres.
        depth_tolerance: how far behind the front-most disc hit another disc's hit still blends, in
            cells (cell_size metres of z-depth each); 0 keeps the front-most disc only.
        dtype: working precision, float32 (default) or float64 (torch or numpy dtype, or its name); the
            float fields of the result have this dtype.
        device: torch device the splatting runs on; results come back as numpy arrays.
    """

    name = "points"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(mesh_triangles=False, gl_fragments=False, vertex_color=False,
                            double_precision=self.dtype == torch.float64)

    def __init__(
        self,
        radius: float = 0.8,
        depth_tolerance: float = 0.25,
        dtype: torch.dtype | str | type = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        if not (isinstance(radius, numbers.Real) and math.sqrt(0.5) < radius < math.inf):
            raise ValueError(
                f"PointsRenderer radius must be a number of cells above sqrt(1/2) = 0.707 (smaller discs "
                f"leave holes at the cell centres), got {radius!r}"
            )
        if not (isinstance(depth_tolerance, numbers.Real) and 0 <= depth_tolerance < math.inf):
            raise ValueError(f"PointsRenderer depth_tolerance must be a finite number of cells >= 0, got {depth_tolerance!r}")
        try:
            self.dtype = _float_dtype(dtype)
        except ValueError:
            raise ValueError(f"PointsRenderer dtype must be float32 or float64, got {dtype!r}") from None
        self.radius = float(radius)
        self.depth_tolerance = float(depth_tolerance)
        self.device = torch.device(device)

    def render(
        self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray, slopes: np.ndarray | None = None
    ) -> Fragments:
        """Fragments of ``grid`` seen by ``camera`` at ``T_wc``.

        Args:
            slopes: (ny, nx, 2) disc slopes, metres per cell (x then y); default
                :func:`surfel_slopes` of the heights. ``depth_grad`` holds them fixed.
        """
        splat = self._splat(grid, camera, T_wc, slopes)
        if splat is None:
            return self._empty(camera)
        return _fragments(grid, camera, self.radius, *splat)

    def render_depth(
        self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray, slopes: np.ndarray | None = None
    ) -> np.ndarray:
        splat = self._splat(grid, camera, T_wc, slopes)
        if splat is None:
            return self._empty(camera).depth
        blend = splat[0]
        depth = torch.full((camera.width * camera.height,), math.nan, dtype=self.dtype, device=self.device)
        depth[blend.pixels] = blend.depth
        return depth.reshape(camera.shape).cpu().numpy()

    def _empty(self, camera: PinholeCamera) -> Fragments:
        frag = empty_fragments(camera)
        float_type = torch.empty((), dtype=self.dtype).numpy().dtype
        floats = {k: v.astype(float_type) for k, v in frag.__dict__.items() if v.dtype.kind == "f"}
        return replace(frag, triangle_ids=None, **floats)

    def _splat(
        self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray, slopes: np.ndarray | None
    ) -> tuple[_Blend, _Discs, torch.Tensor, torch.Tensor] | None:
        """The blend of every pixel that sees a disc, with the discs, the camera centre and the pixels'
        ray directions (grid frame); None when no pixel does."""
        T_wc = check_inputs(grid, camera, T_wc)
        slopes = _check_slopes(grid, slopes)
        dtype, device = self.dtype, self.device
        with torch.inference_mode():
            window = _footprints(grid, camera, T_wc, slopes, self.radius, device)
            if window is None:
                return None
            centre_np, matrix = grid_frame(grid, T_wc)
            centre = torch.as_tensor(centre_np, dtype=dtype, device=device)
            d = pixel_directions(camera, matrix, dtype, device)
            i, j = np.indices(grid.shape)
            table = np.stack([grid.heights, slopes[..., 0], slopes[..., 1], i, j], axis=-1).reshape(-1, 5)
            discs = _Discs(torch.as_tensor(table, device=device).to(dtype))
            side = -1.0 if _camera_above(grid, centre_np) else 1.0  # the sign of den on the visible side
            hits = _hits(discs, grid.shape, camera.width, centre, d, window, self.radius, side)
            if hits is None:
                return None
            blend = _blend(*hits, camera.width * camera.height, self.depth_tolerance * grid.cell_size)
        return blend, discs, centre, d


def _check_slopes(grid: HeightMap, slopes: np.ndarray | None) -> np.ndarray:
    """The disc slopes as float64 (ny, nx, 2); ValueError naming a bad ``slopes`` argument."""
    if slopes is None:
        return surfel_slopes(grid.heights)
    slopes = np.asarray(slopes, dtype=np.float64)
    if slopes.shape != grid.shape + (2,):
        raise ValueError(f"slopes has shape {slopes.shape}, expected {grid.shape + (2,)} (the map's (ny, nx, 2))")
    if not np.isfinite(slopes).all():
        raise ValueError(f"slopes has {int((~np.isfinite(slopes)).sum())} NaN/inf value(s)")
    return slopes


def _camera_above(grid: HeightMap, centre: np.ndarray) -> bool:
    """Whether the camera (grid-frame ``centre``) is above the mesh's surface at the map's nearest point."""
    col, row = np.clip(centre[0], 0, grid.nx - 1), np.clip(centre[1], 0, grid.ny - 1)
    return bool(centre[2] >= grid.sample(grid.origin + grid.cell_size * np.array([col, row])))


def _footprints(
    grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray, slopes: np.ndarray, radius: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Pixel windows holding each disc's image, for the discs whose window holds a pixel centre: (M, 4)
    int64 rows (vertex, u0, v0, columns), the flat vertex id, the window's first column and row and its
    width, and (M,) int64 its pixel count; None when no disc reaches the image.

    Conservative: the windows hold every pixel centre whose ray can meet the disc in front of the camera.
    """
    M = camera_from_map(grid, T_wc)
    rotation = torch.as_tensor(M[:3, :3], device=device)
    i, j = np.indices(grid.shape)
    local = np.stack([j * grid.cell_size, i * grid.cell_size, grid.heights.astype(np.float64)], axis=-1)
    o = torch.as_tensor(local.reshape(-1, 3) @ M[:3, :3].T + M[:3, 3], device=device)
    rise = torch.as_tensor(radius * slopes.reshape(-1, 2), device=device)  # metres over a radius
    # Half-axes of the disc's ellipse (camera frame): XY offsets (R, 0) and (0, R) cells lifted onto its plane.
    a = radius * grid.cell_size * rotation[:, 0] + rise[:, :1] * rotation[:, 2]
    b = radius * grid.cell_size * rotation[:, 1] + rise[:, 1:] * rotation[:, 2]
    e = torch.sqrt(a * a + b * b)
    z_near = (o[:, 2] - e[:, 2]).clamp_min(_NEAR)
    z_far = o[:, 2] + e[:, 2]

    def window(axis: int, focal: float, principal: float, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Extremes of x / z over the box: from its nearest face where the numerator is positive at the
        # extreme (for the largest) or negative (for the smallest), else from its farthest face.
        hi, lo = o[:, axis] + e[:, axis], o[:, axis] - e[:, axis]
        top = torch.where(hi >= 0, hi / z_near, hi / z_far)
        bottom = torch.where(lo <= 0, lo / z_near, lo / z_far)
        first = (focal * bottom + principal).clamp(-1.0, size).ceil().clamp_min(0).long()
        last = (focal * top + principal).clamp(-1.0, size).floor().clamp_max(size - 1).long()
        return first, last - first + 1

    u0, columns = window(0, camera.fx, camera.cx, camera.width)
    v0, rows = window(1, camera.fy, camera.cy, camera.height)
    count = columns.clamp_min(0) * rows.clamp_min(0) * (z_far > _NEAR)
    vertex = torch.nonzero(count).squeeze(1)
    if len(vertex) == 0:
        return None
    return torch.stack([vertex, u0[vertex], v0[vertex], columns[vertex]], dim=1), count[vertex]


def _hits(
    discs: _Discs,
    shape: tuple[int, int],
    width: int,
    centre: torch.Tensor,
    d: torch.Tensor,
    window: tuple[torch.Tensor, torch.Tensor],
    radius: float,
    side: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Every (pixel, vertex) pair whose ray hits the vertex's disc on its visible side (where den has
    the sign of ``side``), from the discs' pixel windows: (pixel, vertex, t, w) flat tensors, or None
    when there is none."""
    rows, count = window
    start = torch.cumsum(count, 0) - count  # each disc's first pair in the flat enumeration
    rows = torch.cat([rows, start[:, None]], dim=1)
    # Batches of about _PAIRS pairs, each of whole discs (a disc with more pairs is a batch of its own).
    bounds = torch.searchsorted(start, torch.arange(0, int(start[-1] + count[-1]), _PAIRS, device=start.device))
    bounds = torch.unique_consecutive(torch.cat([bounds, bounds.new_tensor([len(rows)])])).tolist()
    ny, nx = shape
    found = []
    for lo, hi in itertools.pairwise(bounds):
        n = count[lo:hi]
        k, u0, v0, columns, first = rows[lo:hi].repeat_interleave(n, dim=0).unbind(1)
        local = torch.arange(len(k), device=k.device) - (first - start[lo])  # the pair's index in its window
        pixel = (v0 + local // columns) * width + u0 + local % columns
        h, sx, sy, i, j = discs.at(k)
        t, s, r, den = _plane_hit(h, sx, sy, i, j, centre, d[pixel])
        rho2 = (s * s + r * r) / radius**2
        x, y = j + s, i + r
        hit = (rho2 < 1) & (t > 0) & (den * side > 0) & (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
        hit = torch.nonzero(hit).squeeze(1)
        found.append((pixel[hit], k[hit], t[hit], (1 - rho2[hit]) ** 2))
    pixel, k, t, w = (torch.cat(parts) for parts in zip(*found))
    return None if len(pixel) == 0 else (pixel, k, t, w)


def _blend(
    pixel: torch.Tensor, vertex: torch.Tensor, t: torch.Tensor, w: torch.Tensor, num_pixels: int, tolerance: float
) -> _Blend:
    """Depth test (within ``tolerance`` metres of each pixel's front-most hit) and the three strongest
    candidates per pixel, from the flat hit pairs."""
    front = torch.full((num_pixels,), math.inf, dtype=t.dtype, device=t.device)
    front = front.scatter_reduce(0, pixel, t, reduce="amin")
    near = torch.nonzero(t <= front[pixel] + tolerance).squeeze(1)
    pixel, vertex, t, w = pixel[near], vertex[near], t[near], w[near]
    # One sort by pixel, then by falling weight within a pixel: w in (0, 1] puts 0.5 (1 - w) in [0, 0.5).
    key = pixel.double() + 0.5 * (1 - w.double())
    order = torch.sort(key, stable=True).indices
    pixel, vertex, t, w = pixel[order], vertex[order], t[order], w[order]
    first = torch.ones_like(pixel, dtype=torch.bool)
    first[1:] = pixel[1:] != pixel[:-1]
    index = torch.arange(len(pixel), device=pixel.device)
    rank = index - torch.cummax(torch.where(first, index, 0), 0).values
    keep = torch.nonzero(rank < CONTRIBUTORS).squeeze(1)
    slot = (torch.cumsum(first, 0) - 1)[keep] * CONTRIBUTORS + rank[keep]
    pixels = pixel[first]
    tables = []
    for value, empty in ((vertex, -1), (t, 0), (w, 0)):
        table = value.new_full((len(pixels) * CONTRIBUTORS,), empty)
        table[slot] = value[keep]
        tables.append(table.reshape(-1, CONTRIBUTORS))
    return _Blend(pixels, *tables)


def _fragments(
    grid: HeightMap, camera: PinholeCamera, radius: float, blend: _Blend, discs: _Discs, centre: torch.Tensor, d: torch.Tensor
) -> Fragments:
    """Every Fragments field (but triangle ids) from the pixels' contributors."""
    H, W = camera.shape
    used = blend.vertex >= 0
    k = blend.vertex.clamp_min(0)  # unused slots read vertex 0 and are weighed by 0
    ray = d[blend.pixels][:, None, :]
    h, sx, sy, i, j = discs.at(k)
    _, s, r, den = _plane_hit(h, sx, sy, i, j, centre, ray)
    s, r, den = torch.where(used, s, 0.0), torch.where(used, r, 0.0), torch.where(used, den, 1.0)
    total = blend.w.sum(dim=1, keepdim=True)
    beta = blend.w / total
    depth = blend.depth
    rho2 = (s * s + r * r) / radius**2
    dw = -4 * (1 - rho2) * (s * ray[..., 0] + r * ray[..., 1]) / (radius**2 * den)
    depth_grad = beta / den + (blend.t - depth[:, None]) / total * dw

    dtype = blend.t.dtype
    colors = torch.as_tensor(grid.colors.reshape(-1, 3), device=k.device).to(dtype)[k]
    slope = torch.stack([sx, sy], dim=-1) / grid.cell_size
    normals = torch.cat([-slope, torch.ones_like(slope[..., :1])], dim=-1)
    normals = normals / normals.norm(dim=-1, keepdim=True)
    normal = torch.einsum("pk,pkc->pc", beta, normals)
    values = {
        "depth": depth,
        "vertex_ids": blend.vertex.int(),
        "barycentric": beta,
        "depth_grad": depth_grad,
        "color": torch.einsum("pk,pkc->pc", beta, colors),
        "normal": normal / normal.norm(dim=-1, keepdim=True),
    }
    arrays = {name: value.cpu().numpy() for name, value in values.items()}
    return Fragments(triangle_ids=None, **scatter_fragments(arrays, blend.pixels.cpu().numpy(), (H, W)))
