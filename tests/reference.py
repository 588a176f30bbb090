"""Independent reference implementations the fast code is tested against (float64, brute force)."""

from __future__ import annotations

import numpy as np

import heightfusion as hf


def ray_directions(cam: hf.PinholeCamera, T_wc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre (3,) and per-pixel world ray directions (H, W, 3) with camera-z component 1."""
    u, v = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
    d_cam = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], axis=-1)
    return T_wc[:3, 3].copy(), d_cam @ T_wc[:3, :3].T


def raycast_mesh(grid: hf.HeightMap, cam: hf.PinholeCamera, T_wc: np.ndarray) -> dict[str, np.ndarray]:
    """Nearest ray-triangle hit per pixel by Moller-Trumbore against every triangle of the mesh.

    Returns depth (NaN on a miss), triangle id (-1), barycentric weights in the triangulation's vertex
    order, and ``edge``: the smallest barycentric weight (distance to the triangle's edges).
    """
    c, d = ray_directions(cam, T_wc)
    d = d.reshape(-1, 3)
    verts = grid.vertices()
    tris = grid.triangles()
    p0, p1, p2 = (verts[tris[:, k]] for k in range(3))
    e1, e2 = p1 - p0, p2 - p0
    best_t = np.full(len(d), np.inf)
    best_tri = np.full(len(d), -1)
    best_b = np.full((len(d), 3), np.nan)
    chunk = max(1, 4_000_000 // len(tris))
    for start in range(0, len(d), chunk):
        dd = d[start : start + chunk, None, :]  # (R, 1, 3)
        pvec = np.cross(dd, e2[None])  # (R, T, 3)
        det = np.einsum("tk,rtk->rt", e1, pvec)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / det
            tvec = c - p0  # (T, 3)
            b1 = np.einsum("tk,rtk->rt", tvec, pvec) * inv
            qvec = np.cross(tvec[None], e1[None])  # (1, T, 3)
            b2 = np.einsum("rk,tk->rt", dd[:, 0], qvec[0]) * inv
            t = np.einsum("tk,tk->t", e2, qvec[0])[None] * inv
        ok = (np.abs(det) > 1e-15) & (b1 >= 0) & (b2 >= 0) & (b1 + b2 <= 1) & (t > 0)
        t = np.where(ok, t, np.inf)
        k = np.argmin(t, axis=1)
        rows = np.arange(len(k))
        tk = t[rows, k]
        hit = np.isfinite(tk)
        idx = start + rows[hit]
        best_t[idx] = tk[hit]
        best_tri[idx] = k[hit]
        best_b[idx] = np.stack([1 - b1[rows, k] - b2[rows, k], b1[rows, k], b2[rows, k]], -1)[hit]
    shape = cam.shape
    depth = np.where(np.isfinite(best_t), best_t, np.nan)
    return {
        "depth": depth.reshape(shape),
        "triangle_ids": best_tri.reshape(shape),
        "barycentric": best_b.reshape(shape + (3,)),
        "edge": np.nanmin(best_b, axis=1, initial=np.inf).reshape(shape) if len(best_b) else best_b,
    }
