"""Analytic scenes: height fields z = h(x, y) with procedural textures, the ground truth of synthetic data.

A scene is a solid height field over a rectangle (world Z up, metres). It gives its heights
(vectorised), normals, a colour function defined on the whole surface (box sides included), a
suggested ground-truth grid and a mask of where the surface is smooth enough for a mesh on that grid
to represent it (evaluation leaves out the band around height jumps).

Scenes by name (:func:`make_scene`):

- ``floor``: 3 m x 3 m flat floor with nine boxes 3-25 cm tall, a 15 degree ramp with a platform and a
  three-step staircase, clear of the path of the robot trajectory.
- ``ramp``, ``steps``: the same floor with only the ramp or only the staircase.
- ``flat``: the bare floor.
- ``terrain``: 8 m x 8 m rolling terrain, a sum of sines (amplitude ~0.45 m, wavelengths 0.7-6.3 m).
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..heightmap import HeightMap

#: Direction towards the sun (world), for Lambertian shading.
SUN_DIRECTION = np.array([0.35, 0.2, 0.91]) / np.linalg.norm([0.35, 0.2, 0.91])
#: Share of the light that does not depend on the surface orientation.
AMBIENT = 0.35
# Half-width of the central differences behind scene normals: far above the ray caster's 1e-6 m
# tolerance, so at a wall hit the difference straddles the height jump and the normal comes out
# horizontal; small enough that smooth surfaces get their analytic normal.
_NORMAL_DELTA = 1e-4


@dataclass(frozen=True)
class GridSpec:
    """A ground-truth grid: vertex (i, j) at origin + (j, i) * cell_size, shape (ny, nx)."""

    origin: tuple[float, float]
    cell_size: float
    shape: tuple[int, int]

    def make_heightmap(self) -> HeightMap:
        """An empty :class:`HeightMap` on this grid."""
        return HeightMap(self.origin, self.cell_size, self.shape)


# --- textures --------------------------------------------------------------------------------------
def _value_noise(shape: tuple[int, int], cell: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise of unit-ish variance: a random lattice of pitch ``cell`` texels, upsampled bicubically."""
    import cv2

    gh, gw = shape[0] // cell + 3, shape[1] // cell + 3
    lattice = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(lattice, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)
    # A random offset so that the lattices of different octaves do not line up.
    oy, ox = rng.integers(0, cell, size=2)
    return big[oy : oy + shape[0], ox : ox + shape[1]]


def _voronoi_patches(shape: tuple[int, int], patch: float, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) random colour per Voronoi cell of random seeds about ``patch`` texels apart."""
    import cv2

    n = max(2, int(shape[0] * shape[1] / patch**2))
    seeds = np.full(shape, 255, dtype=np.uint8)
    seeds[rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)] = 0
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    hsv = np.stack(
        [rng.uniform(0, 360, n + 1), rng.uniform(0.15, 0.8, n + 1), rng.uniform(0.3, 0.95, n + 1)], axis=-1
    ).astype(np.float32)
    palette = cv2.cvtColor(hsv[:, None, :], cv2.COLOR_HSV2RGB)[:, 0, :]
    return palette[labels]


def _procedural_albedo(shape: tuple[int, int], texel: float, patch_m: float, seed: int) -> np.ndarray:
    """(h, w, 3) float32 albedo: colour patches at two scales modulated by 1/f luminance and colour noise.

    Multi-scale and random everywhere, so that no two places look alike (stereo is never ambiguous).
    """
    rng = np.random.default_rng(seed)
    patches = 0.6 * _voronoi_patches(shape, patch_m / texel, rng) + 0.4 * _voronoi_patches(
        shape, 0.3 * patch_m / texel, rng
    )
    octaves = [c for c in (2, 4, 8, 16, 32, 64, 128) if c < min(shape)]
    lum = sum(_value_noise(shape, c, rng) * c**0.3 for c in octaves)
    lum /= lum.std() + 1e-9
    tint = np.stack([_value_noise(shape, 16, rng) for _ in range(3)], axis=-1)
    albedo = patches * (0.8 + 0.25 * np.tanh(0.8 * lum))[..., None] + 0.06 * tint
    return np.clip(albedo, 0.02, 0.98).astype(np.float32)


class Texture:
    """A procedural RGB texture over a world rectangle, mip-mapped so that lookups are pre-filtered.

    Args:
        u_range, v_range: world interval covered along the texture's columns and rows (metres).
        texel: size of a finest-level texel, metres.
        patch: typical size of a colour patch, metres.
        seed: fixes the texture.
    """

    def __init__(self, u_range: tuple[float, float], v_range: tuple[float, float], texel: float, patch: float, seed: int):
        import cv2

        self.u0, self.v0, self.texel = float(u_range[0]), float(v_range[0]), float(texel)
        shape = (math.ceil((v_range[1] - v_range[0]) / texel) + 1, math.ceil((u_range[1] - u_range[0]) / texel) + 1)
        self.levels = [_procedural_albedo(shape, texel, patch, seed)]
        while min(self.levels[-1].shape[:2]) >= 16:
            self.levels.append(cv2.pyrDown(self.levels[-1]))

    def sample(self, u: np.ndarray, v: np.ndarray, footprint: np.ndarray | float) -> np.ndarray:
        """(N, 3) float32 colours at world texture coordinates (N,), averaged over about ``footprint`` metres.

        Picks the two mip levels whose texels bracket the footprint and blends them (trilinear filtering).
        """
        u, v = np.ravel(u), np.ravel(v)
        level = np.log2(np.maximum(np.broadcast_to(footprint, u.shape), self.texel) / self.texel)
        level = np.clip(level, 0, len(self.levels) - 1)
        lo = np.floor(level).astype(np.intp)
        frac = (level - lo).astype(np.float32)[:, None]
        out = np.zeros((len(u), 3), dtype=np.float32)
        for lev in np.unique(lo):
            sel = np.flatnonzero(lo == lev)
            out[sel] = (1 - frac[sel]) * self._lookup(lev, u[sel], v[sel])
            if lev + 1 < len(self.levels):
                out[sel] += frac[sel] * self._lookup(lev + 1, u[sel], v[sel])
        return out

    def _lookup(self, level: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Bilinear lookup at one mip level.

        Texel k of level 0 has its centre at (k + 0.5) * texel. ``cv2.pyrDown`` centres texel i of level L on
        texel 2i of level L - 1, so texel i of level L sits at (2^L i + 0.5) * texel: every level is aligned
        with level 0, and a surface point keeps its colour whatever the distance it is seen from.
        """
        import cv2

        n = len(u)
        cols = 1024
        rows = -(-n // cols)
        mx = np.zeros(rows * cols, dtype=np.float32)
        my = np.zeros(rows * cols, dtype=np.float32)
        mx[:n] = ((u - self.u0) / self.texel - 0.5) / 2**level
        my[:n] = ((v - self.v0) / self.texel - 0.5) / 2**level
        img = self.levels[level]
        sampled = cv2.remap(img, mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        return sampled.reshape(-1, 3)[:n]


# --- scenes ----------------------------------------------------------------------------------------
class Scene(ABC):
    """A solid height field z = h(x, y) over ``extent`` with a texture on its surface.

    Attributes:
        name: the scene's name.
        extent: (x_min, x_max, y_min, y_max) of the surface, metres; outside it there is nothing (sky).
        z_range: (z_min, z_max) bounds of h, metres.
        grid: suggested ground-truth grid.
        march_step: ray-marching step (metres) short enough never to step over a whole feature.
        lipschitz: bound on |grad h| (inf where h has jumps), for the generic :attr:`height_bounds`.
        tile_size: side of the tiles of :attr:`height_bounds`, metres.
        platform: which trajectory suits the scene: "robot" (ground camera) or "drone".
        texel: finest texture texel, metres.
        patch: typical size of the texture's colour patches, metres.
        texture_seed: fixes the textures (the scene looks the same in every sequence).
    """

    name: str
    extent: tuple[float, float, float, float]
    z_range: tuple[float, float]
    grid: GridSpec
    march_step: float
    lipschitz: float
    tile_size: float
    platform: str
    texel: float
    patch: float
    texture_seed: int

    @abstractmethod
    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Heights h(x, y) (float64, broadcast shape) of world points, metres."""

    @abstractmethod
    def smooth_mask(self, x: np.ndarray, y: np.ndarray, margin: float | None = None) -> np.ndarray:
        """True where no height discontinuity (or crease) lies within ``margin`` (default 1.5 grid cells)."""

    def normal(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(..., 3) unit surface normals; horizontal on a wall hit (a point on a height jump)."""
        d = _NORMAL_DELTA
        x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        dx = self.height(x + d, y) - self.height(x - d, y)
        dy = self.height(x, y + d) - self.height(x, y - d)
        n = np.stack([-dx, -dy, np.full_like(dx, 2 * d)], axis=-1)
        return n / np.linalg.norm(n, axis=-1, keepdims=True)

    @functools.cached_property
    def height_bounds(self) -> np.ndarray:
        """(rows, cols) upper bounds of h over square tiles of ``tile_size`` from the extent's corner.

        Generic version: the maximum over samples a twentieth of a tile apart plus the most h can rise
        between samples (lipschitz * half the sample diagonal); subclasses may give tighter bounds.
        """
        x0, x1, y0, y1 = self.extent
        size = self.tile_size
        rows, cols = math.ceil((y1 - y0) / size - 1e-9), math.ceil((x1 - x0) / size - 1e-9)
        k = 20
        xs = x0 + np.arange(cols * k + 1) * size / k
        ys = y0 + np.arange(rows * k + 1) * size / k
        h = self.height(xs[None, :], ys[:, None])
        # Tile (i, j) holds samples [i*k, (i+1)*k] x [j*k, (j+1)*k] (shared borders included).
        tiles = sliding_window_view(h, (k + 1, k + 1))[::k, ::k].max(axis=(2, 3))
        return tiles + self.lipschitz * size / k / math.sqrt(2)

    @functools.cached_property
    def _textures(self) -> tuple[Texture, Texture, Texture]:
        """Triplanar textures, projected along z (top), y (x-z plane) and x (y-z plane); built on first use."""
        x0, x1, y0, y1 = self.extent
        z0, z1 = self.z_range
        pad = 4 * self.texel
        z_span = (z0 - pad, z1 + pad)
        return (
            Texture((x0 - pad, x1 + pad), (y0 - pad, y1 + pad), self.texel, self.patch, self.texture_seed),
            Texture((x0 - pad, x1 + pad), z_span, self.texel, self.patch, self.texture_seed + 1),
            Texture((y0 - pad, y1 + pad), z_span, self.texel, self.patch, self.texture_seed + 2),
        )

    def colour(
        self,
        x: np.ndarray,
        y: np.ndarray,
        z: np.ndarray,
        footprint: np.ndarray | float | None = None,
        normal: np.ndarray | None = None,
    ) -> np.ndarray:
        """(..., 3) float32 albedo in [0, 1] of surface points (x, y, z), box sides included.

        Triplanar mapping: each of three textures is projected along a world axis and weighted by how
        squarely the surface faces that axis, so tops and walls are textured without stretching.

        Args:
            footprint: size (metres) of the surface patch one sample stands for; the texture is
                pre-filtered to it (anti-aliasing). Default: the finest texel.
            normal: (..., 3) surface normals if already known (else computed from h).
        """
        x, y, z = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x, y, z)))
        n = (self.normal(x, y) if normal is None else np.asarray(normal)).reshape(-1, 3)
        fp = self.texel if footprint is None else np.broadcast_to(footprint, x.shape).ravel()
        w = np.abs(n) ** 4
        w /= w.sum(axis=1, keepdims=True)
        coords = ((x, y), (x, z), (y, z))  # projected along z, y, x
        axes = (2, 1, 0)
        out = np.zeros((x.size, 3), dtype=np.float32)
        for tex, (u, v), axis in zip(self._textures, coords, axes):
            sel = np.flatnonzero(w[:, axis] > 1e-3)  # skip projections that do not contribute
            if len(sel):
                fp_sel = fp if np.isscalar(fp) else fp[sel]
                out[sel] += w[sel, axis, None].astype(np.float32) * tex.sample(u.ravel()[sel], v.ravel()[sel], fp_sel)
        return out.reshape(x.shape + (3,))

    def __repr__(self) -> str:
        x0, x1, y0, y1 = self.extent
        return f"{type(self).__name__}({self.name!r}, extent=[{x0:g}, {x1:g}] x [{y0:g}, {y1:g}])"


def shade(normals: np.ndarray) -> np.ndarray:
    """(...,) Lambertian brightness in [AMBIENT, 1] of surfaces with unit ``normals`` under the fixed sun."""
    return AMBIENT + (1 - AMBIENT) * np.clip(normals @ SUN_DIRECTION, 0, None)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box on the floor: top at ``height`` over [x0, x1) x [y0, y1)."""

    x0: float
    x1: float
    y0: float
    y1: float
    height: float


@dataclass(frozen=True)
class Ramp:
    """A wedge over [x0, x1) x [y0, y1) rising linearly along +x from 0 at x0 to ``height`` at x1."""

    x0: float
    x1: float
    y0: float
    y1: float
    height: float

    def height_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        inside = (x >= self.x0) & (x < self.x1) & (y >= self.y0) & (y < self.y1)
        return np.where(inside, self.height * (x - self.x0) / (self.x1 - self.x0), 0.0)


def _segment_distance(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from points (x, y) to the axis-aligned segment from a to b."""
    dx = np.maximum(np.maximum(min(a[0], b[0]) - x, x - max(a[0], b[0])), 0)
    dy = np.maximum(np.maximum(min(a[1], b[1]) - y, y - max(a[1], b[1])), 0)
    return np.hypot(dx, dy)


class BlockScene(Scene):
    """A flat floor (z = 0) with boxes and ramps on it; the union takes the highest surface.

    Box and ramp edges must lie on the ``snap`` lattice (multiples of ``snap`` from the extent's
    corner): the boxes then rasterise exactly into a lookup table of that pitch, which makes h a
    table look-up plus the ramps (the ray marcher evaluates h millions of times per frame).
    """

    def __init__(
        self,
        name: str,
        boxes: tuple[Box, ...] = (),
        ramps: tuple[Ramp, ...] = (),
        extent: tuple[float, float, float, float] = (-1.5, 1.5, -1.5, 1.5),
        snap: float = 0.02,
        cell_size: float = 0.02,
        texture_seed: int = 1,
    ):
        self.name, self.extent, self.boxes, self.ramps = name, tuple(map(float, extent)), tuple(boxes), tuple(ramps)
        x0, x1, y0, y1 = self.extent
        self._snap = snap
        table_shape = (self._lattice(y1 - y0), self._lattice(x1 - x0))
        self._table = np.zeros(table_shape)
        for b in self.boxes:
            i0, i1, j0, j1 = (self._lattice(v - o) for v, o in ((b.y0, y0), (b.y1, y0), (b.x0, x0), (b.x1, x0)))
            self._table[i0:i1, j0:j1] = np.maximum(self._table[i0:i1, j0:j1], b.height)
        for r in self.ramps:
            for v, o in ((r.x0, x0), (r.x1, x0), (r.y0, y0), (r.y1, y0)):
                self._lattice(v - o)
        self.z_range = (0.0, max([b.height for b in self.boxes] + [r.height for r in self.ramps] + [0.0]))
        # Vertices half a cell off the lattice never sit on an edge, where h is ambiguous.
        n = (round((x1 - x0) / cell_size), round((y1 - y0) / cell_size))
        self.grid = GridSpec((x0 + cell_size / 2, y0 + cell_size / 2), cell_size, (n[1], n[0]))
        self.march_step = 0.01  # features are >= 10 cm wide: only a box corner's last centimetre can be skipped
        self.lipschitz = math.inf
        self.tile_size = 5 * snap
        self.platform = "robot"
        self.texel, self.patch, self.texture_seed = 0.002, 0.12, texture_seed

    def _lattice(self, length: float) -> int:
        k = round(length / self._snap)
        if abs(k * self._snap - length) > 1e-9:
            raise ValueError(f"{self.name}: block edge at offset {length:g} m is not on the {self._snap:g} m lattice")
        return k

    @functools.cached_property
    def height_bounds(self) -> np.ndarray:
        """Exact tile maxima of the boxes; a ramp raises every tile it touches to its top height."""
        k = round(self.tile_size / self._snap)
        ny, nx = self._table.shape
        table = np.zeros((-(-ny // k) * k, -(-nx // k) * k))
        table[:ny, :nx] = self._table
        bounds = table.reshape(table.shape[0] // k, k, table.shape[1] // k, k).max(axis=(1, 3))
        x0, _, y0, _ = self.extent
        for r in self.ramps:
            i0, j0 = math.floor((r.y0 - y0) / self.tile_size), math.floor((r.x0 - x0) / self.tile_size)
            i1, j1 = math.ceil((r.y1 - y0) / self.tile_size), math.ceil((r.x1 - x0) / self.tile_size)
            bounds[i0:i1, j0:j1] = np.maximum(bounds[i0:i1, j0:j1], r.height)
        return bounds

    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        ny, nx = self._table.shape
        j = np.clip(np.floor((x - self.extent[0]) / self._snap), 0, nx - 1).astype(np.intp)
        i = np.clip(np.floor((y - self.extent[2]) / self._snap), 0, ny - 1).astype(np.intp)
        h = self._table[i, j]
        for r in self.ramps:
            h = np.maximum(h, r.height_at(x, y))
        return h

    def smooth_mask(self, x: np.ndarray, y: np.ndarray, margin: float | None = None) -> np.ndarray:
        """False within ``margin`` of any box or ramp edge (height jumps, and the creases at a ramp's ends)."""
        margin = 1.5 * self.grid.cell_size if margin is None else margin
        x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        smooth = np.ones(x.shape, dtype=bool)
        for b in self.boxes + self.ramps:
            corners = np.array([(b.x0, b.y0), (b.x1, b.y0), (b.x1, b.y1), (b.x0, b.y1)])
            for k in range(4):
                smooth &= _segment_distance(x, y, corners[k], corners[(k + 1) % 4]) > margin
        return smooth


class TerrainScene(Scene):
    """Rolling terrain: h = sum_k a_k sin(w_k . (x, y) + phi_k), smooth everywhere."""

    # (amplitude m, wavelength m, direction deg, phase rad)
    WAVES = ((0.18, 6.3, 20.0, 0.3), (0.12, 3.7, 110.0, 1.9), (0.08, 2.3, 250.0, 4.1), (0.05, 1.3, 40.0, 2.6), (0.025, 0.7, 160.0, 5.3))

    def __init__(self, name: str = "terrain", half_size: float = 4.0, cell_size: float = 0.04, texture_seed: int = 2):
        self.name = name
        self.extent = (-half_size, half_size, -half_size, half_size)
        amps = np.array([w[0] for w in self.WAVES])
        k = 2 * np.pi / np.array([w[1] for w in self.WAVES])
        ang = np.radians([w[2] for w in self.WAVES])
        self._amp, self._phase = amps, np.array([w[3] for w in self.WAVES])
        self._kx, self._ky = k * np.cos(ang), k * np.sin(ang)
        self.z_range = (-float(amps.sum()), float(amps.sum()))
        n = round(2 * half_size / cell_size) + 1
        self.grid = GridSpec((-half_size, -half_size), cell_size, (n, n))
        self.march_step = 0.01  # the shortest wave is 0.7 m: a 1 cm overshoot cannot skip a crest
        self.lipschitz = float((amps * k).sum())
        self.tile_size = 0.25
        self.platform = "drone"
        self.texel, self.patch, self.texture_seed = 0.004, 0.3, texture_seed

    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        h = np.zeros(np.broadcast_shapes(x.shape, y.shape))
        for a, kx, ky, phi in zip(self._amp, self._kx, self._ky, self._phase):
            h += a * np.sin(kx * x + ky * y + phi)
        return h

    def smooth_mask(self, x: np.ndarray, y: np.ndarray, margin: float | None = None) -> np.ndarray:
        """All True: the terrain has no discontinuities."""
        return np.ones(np.broadcast_shapes(np.shape(x), np.shape(y)), dtype=bool)


# Floor layout: obstacles near the centre and towards the edges, at least 0.2 m from the robot's
# path (trajectories.robot_loop: r = 0.9 + 0.3 sin(4 theta)). Edges on the 2 cm lattice.
_FLOOR_BOXES = (
    Box(-0.12, 0.12, -0.12, 0.12, 0.06),  # centre
    Box(-0.30, -0.10, 0.36, 0.56, 0.20),  # tall
    Box(0.40, 0.64, 0.10, 0.32, 0.04),  # low
    Box(-0.60, -0.32, -0.30, -0.10, 0.03),  # low
    Box(0.10, 0.30, -0.58, -0.36, 0.12),  # medium
    Box(1.00, 1.30, -1.36, -1.06, 0.25),  # tall, corner
    Box(-1.40, -1.00, 0.96, 1.30, 0.05),  # low, corner
    Box(-0.20, 0.20, 1.34, 1.48, 0.15),  # far edge
    Box(1.28, 1.46, -0.30, 0.00, 0.08),  # right edge
)
_RAMP = (Ramp(-1.48, -1.04, -1.40, -1.04, 0.12),)  # atan(0.12 / 0.44) = 15.3 degrees
_RAMP_PLATFORM = (Box(-1.04, -0.90, -1.40, -1.04, 0.12),)
_STEPS = (  # three 4 cm steps with 12 cm treads, rising along +y
    Box(0.96, 1.40, 0.96, 1.08, 0.04),
    Box(0.96, 1.40, 1.08, 1.20, 0.08),
    Box(0.96, 1.40, 1.20, 1.32, 0.12),
)

_FACTORIES = {
    "floor": lambda: BlockScene("floor", _FLOOR_BOXES + _RAMP_PLATFORM + _STEPS, _RAMP),
    "ramp": lambda: BlockScene("ramp", _RAMP_PLATFORM, _RAMP),
    "steps": lambda: BlockScene("steps", _STEPS),
    "flat": lambda: BlockScene("flat"),
    "terrain": lambda: TerrainScene(),
}
#: Names accepted by :func:`make_scene`.
SCENE_NAMES = tuple(_FACTORIES)


def make_scene(name: str) -> Scene:
    """A scene by name; ValueError listing the valid names for an unknown one."""
    try:
        factory = _FACTORIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown synthetic scene {name!r}; valid scenes: {', '.join(SCENE_NAMES)}") from None
    return factory()
