"""Exact ray casting of analytic height fields, independent of the project's renderers.

A ray o + t d first meets the solid height field where f(t) = z(t) - h(x(t), y(t)) turns from positive
to non-positive. The marcher brackets that crossing with steps of the scene's ``march_step``, short
enough not to step over a feature, except where the ray is above the scene's height bound for the tile
it is over: there it jumps to the tile's border or down to the bound (no crossing is possible on the
way). It then bisects the bracket to ``tol`` and finishes with one secant step inside it, which is
exact on planes. At a height jump f jumps too, so the bracket closes on the jump: a ray that meets a
box side lands on the wall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..camera import PinholeCamera
from .scenes import Scene

# Bounding-box slack (metres) below and above the height range, so a ray leaving through the bottom
# is surely below the surface there.
_Z_SLACK = 1e-3


@dataclass
class RayHits:
    """Per-pixel result of :func:`raycast`.

    Attributes:
        depth: (H, W) float32 z-depth (camera z) of the first hit, metres; NaN where the ray misses.
        points: (H, W, 3) float64 world hit points; NaN where the ray misses.
        directions: (H, W, 3) float64 world ray directions with camera-z component 1.
    """

    depth: np.ndarray
    points: np.ndarray
    directions: np.ndarray

    @property
    def hit(self) -> np.ndarray:
        """(H, W) bool: the ray hit the surface."""
        return np.isfinite(self.depth)


def _residual(scene: Scene, o: np.ndarray, d: np.ndarray, t: np.ndarray) -> np.ndarray:
    """f(t) = ray height minus surface height below it (> 0 above the surface); t is (N,) or (N, K)."""
    if t.ndim == 2:
        d = d[:, None, :]
    return o[2] + t * d[..., 2] - scene.height(o[0] + t * d[..., 0], o[1] + t * d[..., 1])


def _slab(scene: Scene, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit ray parameters of the scene's bounding box (entry >= 0; empty where entry >= exit)."""
    x0, x1, y0, y1 = scene.extent
    lo = np.array([x0, y0, scene.z_range[0] - _Z_SLACK])
    hi = np.array([x1, y1, scene.z_range[1] + _Z_SLACK])
    # Axis-parallel rays: a tiny component keeps the arithmetic finite with the right sign.
    d = np.where(np.abs(d) < 1e-12, np.where(d < 0, -1e-12, 1e-12), d)
    ta, tb = (lo - o) / d, (hi - o) / d
    t_enter = np.maximum(np.minimum(ta, tb).max(axis=1), 0.0)
    t_exit = np.maximum(ta, tb).min(axis=1)
    return t_enter, t_exit


def _free_run(scene: Scene, o: np.ndarray, d: np.ndarray, t: np.ndarray) -> np.ndarray:
    """How far (in t) each ray can surely go from t without meeting the surface.

    Above the height bound of the tile it is over, a ray is clear until it leaves the tile or sinks
    to that bound, whichever comes first; otherwise 0.
    """
    x0, _, y0, _ = scene.extent
    size = scene.tile_size
    bounds = scene.height_bounds
    p = o + t[:, None] * d
    j = np.clip(np.floor((p[:, 0] - x0) / size), 0, bounds.shape[1] - 1)
    i = np.clip(np.floor((p[:, 1] - y0) / size), 0, bounds.shape[0] - 1)
    clearance = p[:, 2] - bounds[i.astype(np.intp), j.astype(np.intp)]
    run = np.minimum(
        _run_to_border(p[:, 0], d[:, 0], x0 + j * size, size), _run_to_border(p[:, 1], d[:, 1], y0 + i * size, size)
    )
    with np.errstate(divide="ignore"):
        run = np.minimum(run, np.where(d[:, 2] < 0, clearance / -d[:, 2], np.inf))  # down to the bound
    return np.where(clearance > 0, np.maximum(run, 0.0), 0.0)


def _run_to_border(p: np.ndarray, d: np.ndarray, lo: np.ndarray, size: float) -> np.ndarray:
    """Ray parameter from coordinate p to the side of the tile [lo, lo + size] that direction d heads for."""
    with np.errstate(divide="ignore", invalid="ignore"):
        run = (np.where(d > 0, lo + size, lo) - p) / d
    return np.where(d == 0, np.inf, run)


def cast_rays(scene: Scene, origin: np.ndarray, directions: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Ray parameter t of the first hit of rays ``origin + t * direction`` with the scene; NaN for misses.

    Args:
        scene: the analytic height field (a solid: a ray entering its box below the surface hits at entry).
        origin: (3,) common ray origin, world metres.
        directions: (N, 3) world directions, any length (t is in units of their length).
        tol: bracket width (metres along the ray) the bisection stops at.

    Returns:
        (N,) float64 t, NaN where the ray leaves the scene's extent without meeting the surface.
    """
    o = np.asarray(origin, dtype=np.float64).reshape(3)
    d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    t_out = np.full(len(d), np.nan)
    t_enter, t_exit = _slab(scene, o, d)
    idx = np.flatnonzero(t_enter < t_exit)
    length = np.linalg.norm(d[idx], axis=1)
    t, t_end, dd = t_enter[idx], t_exit[idx], d[idx]
    f = _residual(scene, o, dd, t)
    inside = f <= 0  # starts inside the solid (enters through the box side, or the camera is buried)
    t_out[idx[inside]] = t[inside]
    keep = ~inside
    idx, length, t, t_end, dd, f = idx[keep], length[keep], t[keep], t_end[keep], dd[keep], f[keep]

    brackets: list[tuple[np.ndarray, ...]] = []
    while len(idx):
        t_new = np.minimum(t + np.maximum(scene.march_step / length, _free_run(scene, o, dd, t)), t_end)
        f_new = _residual(scene, o, dd, t_new)
        crossed = f_new <= 0
        if crossed.any():
            brackets.append((idx[crossed], dd[crossed], t[crossed], t_new[crossed], f[crossed], f_new[crossed]))
        going = ~crossed & (t_new < t_end)
        idx, length, t, t_end, dd, f = idx[going], length[going], t_new[going], t_end[going], dd[going], f_new[going]
    if not brackets:
        return t_out
    idx, dd, lo, hi, f_lo, f_hi = (np.concatenate(parts) for parts in zip(*brackets))

    width = (hi - lo) * np.linalg.norm(dd, axis=1)
    for _ in range(max(0, math.ceil(math.log2(max(width.max(), tol) / tol)))):
        mid = 0.5 * (lo + hi)
        f_mid = _residual(scene, o, dd, mid)
        below = f_mid <= 0
        hi, f_hi = np.where(below, mid, hi), np.where(below, f_mid, f_hi)
        lo, f_lo = np.where(below, lo, mid), np.where(below, f_lo, f_mid)
    # f_lo > 0 >= f_hi, so the secant point lies inside the bracket; on a plane it is the exact root.
    t_out[idx] = lo + (hi - lo) * f_lo / (f_lo - f_hi)
    return t_out


def raycast(scene: Scene, camera: PinholeCamera, T_wc: np.ndarray, tol: float = 1e-6) -> RayHits:
    """Per-pixel first hits of the pixel-centre rays of ``camera`` at pose ``T_wc`` with the scene (through
    the camera's lens distortion, where it has one)."""
    T_wc = np.asarray(T_wc, dtype=np.float64)
    directions = camera.lens_rays() @ T_wc[:3, :3].T  # camera-z component 1: t is the z-depth
    origin = T_wc[:3, 3]
    t = cast_rays(scene, origin, directions.reshape(-1, 3), tol).reshape(camera.shape)
    points = origin + t[..., None] * directions
    return RayHits(depth=t.astype(np.float32), points=points, directions=directions)
