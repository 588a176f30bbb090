"""Held-out evaluation for real data without ground truth: score a map against frames it did not fuse.

Protocol: :func:`split_heldout` keeps every ``every``-th frame out of fusion; every method fuses the
rest; :func:`score_heldout` then compares the map with the held-out frames' depth points on
upward-facing surfaces, the part of the scene a height map claims to hold (walls and the sides of
objects are no heights). A point's surface normal is estimated from its depth image: the camera-frame
points are averaged over a ``window`` x ``window`` neighbourhood (only where all of it has depth, which
also drops depth edges and holes), the normal is the cross product of the averaged points' central
differences half a window apart, turned towards the camera; a point is kept when its normal is within
``max_tilt_deg`` of world +z.

The map's height at a kept point (x, y) is the bilinear interpolation of the four vertices of the
cell holding it, defined only where all four are observed; dh = map - point z. The spread dh should have
is the map's sigma there (``HeightMap.sigma``, interpolated alike) and the point's own depth sigma (the
sensor's noise model at its depth; an upper bound of its height error, which is the depth error times
the ray's vertical share) in quadrature. Keys of the result:

====================  ===========================================================================
points                held-out points on upward-facing surfaces
count                 those with a map value (inside the grid, four observed vertices)
coverage              count / points
rmse, mae, median     of dh over the ``count`` points, metres (median is the median |dh|)
bias                  mean dh (positive: the map is too high)
within_1cm/2cm/5cm    share of the ``count`` points with |dh| <= 1 / 2 / 5 cm
calib_1sigma/2sigma   share of the ``count`` points with |dh| <= 1 / 2 times the spread above
====================  ===========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np

from .datasets.frame import Frame
from .depth.sensor import SensorNoise
from .heightmap import HeightMap
from .metrics import calibration, height_error_stats

#: Every how many frames one is held out, by default.
DEFAULT_EVERY = 5
#: Largest angle between a scored point's surface normal and world +z, degrees, by default.
DEFAULT_MAX_TILT_DEG = 30.0
#: Side of the pixel window the normals are estimated over, by default.
DEFAULT_WINDOW = 7


def split_heldout(
    frames: Iterable[Frame], every: int = DEFAULT_EVERY, offset: int | None = None
) -> tuple[list[Frame], list[Frame]]:
    """(fuse, held_out): the frames at positions offset, offset + every, ... are held out, the rest fused.

    Positions count the frames as given (not ``Frame.index``). The default ``offset``, every - 1, always
    fuses the first frame; the ``every`` offsets together hold out each frame once (a map's score can
    depend on which frames it was fused from: compare them over all offsets).
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 2:
        raise ValueError(f"every must be an integer >= 2, got {every!r}")
    offset = every - 1 if offset is None else offset
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < every:
        raise ValueError(f"offset must be an integer in [0, {every}), got {offset!r}")
    fuse, held_out = [], []
    for k, frame in enumerate(frames):
        (held_out if k % every == offset else fuse).append(frame)
    return fuse, held_out


def upward_points(
    frame: Frame, max_tilt_deg: float = DEFAULT_MAX_TILT_DEG, window: int = DEFAULT_WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) world points of ``frame``'s depth on surfaces facing up (module docstring), and their (N,) depths."""
    if frame.depth is None or frame.T_wc is None:
        raise ValueError(f"frame {frame.index} has no depth or no pose: it cannot be scored")
    if isinstance(window, bool) or not isinstance(window, int) or window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 3, got {window!r}")
    depth = np.asarray(frame.depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    points = (frame.camera.pixel_rays() * np.where(valid, depth, 0.0)[..., None]).astype(np.float32)
    size = (window, window)
    count = cv2.boxFilter(valid.astype(np.float32), -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)
    full = count >= window * window - 0.5
    mean = cv2.boxFilter(points, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT) / window**2
    k = window // 2
    # Central differences k pixels either way; a pixel needs its own and its four neighbours' full windows.
    du = np.zeros_like(mean)
    dv = np.zeros_like(mean)
    du[:, k:-k] = mean[:, 2 * k :] - mean[:, : -2 * k]
    dv[k:-k] = mean[2 * k :] - mean[: -2 * k]
    ok = np.zeros_like(full)
    ok[k:-k, k:-k] = (
        full[k:-k, k:-k] & full[k:-k, 2 * k :] & full[k:-k, : -2 * k] & full[2 * k :, k:-k] & full[: -2 * k, k:-k]
    )
    normal = np.cross(du[ok], dv[ok]).astype(np.float64)
    p_cam = points[ok].astype(np.float64)
    normal *= -np.sign(np.einsum("ij,ij->i", normal, p_cam))[:, None]  # towards the camera
    R, t = frame.T_wc[:3, :3], frame.T_wc[:3, 3]
    up = (normal @ R[2]) / np.maximum(np.linalg.norm(normal, axis=1), 1e-12)
    keep = up > math.cos(math.radians(max_tilt_deg))
    return p_cam[keep] @ R.T + t, p_cam[keep, 2]


def map_heights(grid: HeightMap, xy: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """Bilinear map heights (or per-vertex ``values``, (ny, nx)) at world points (N, 2); NaN outside the grid or
    where a cell vertex is unobserved."""
    rc = grid.world_to_grid(xy)
    r, c = rc[:, 0], rc[:, 1]
    inside = (r >= 0) & (r <= grid.ny - 1) & (c >= 0) & (c <= grid.nx - 1)
    i = np.clip(np.floor(r), 0, grid.ny - 2).astype(np.intp)
    j = np.clip(np.floor(c), 0, grid.nx - 2).astype(np.intp)
    fr, fc = r - i, c - j
    h = (grid.heights if values is None else values).astype(np.float64)
    value = (
        (1 - fr) * ((1 - fc) * h[i, j] + fc * h[i, j + 1]) + fr * ((1 - fc) * h[i + 1, j] + fc * h[i + 1, j + 1])
    )
    obs = grid.observed
    known = inside & obs[i, j] & obs[i, j + 1] & obs[i + 1, j] & obs[i + 1, j + 1]
    return np.where(known, value, np.nan)


def score_heldout(
    grid: HeightMap,
    frames: Iterable[Frame],
    max_tilt_deg: float = DEFAULT_MAX_TILT_DEG,
    window: int = DEFAULT_WINDOW,
    noise: SensorNoise | None = None,
) -> dict:
    """Score ``grid`` against the held-out ``frames``' upward-facing depth points (keys: module docstring);
    ``noise``: the depth sensor's (default :class:`SensorNoise`'s Kinect model).

    Statistics over no points are NaN (and counts 0), as in :mod:`heightfusion.metrics`.
    """
    if not (0 < max_tilt_deg < 90):
        raise ValueError(f"max_tilt_deg must be in (0, 90) degrees, got {max_tilt_deg!r}")
    noise = noise or SensorNoise()
    map_sigma = grid.sigma
    errors, spreads, total = [], [], 0
    for frame in frames:
        points, depths = upward_points(frame, max_tilt_deg, window)
        total += len(points)
        h = map_heights(grid, points[:, :2])
        known = np.isfinite(h)
        errors.append(h[known] - points[known, 2])
        spreads.append(np.hypot(map_heights(grid, points[known, :2], map_sigma), noise.sigma(depths[known])))
    dh = np.concatenate(errors) if errors else np.zeros(0)
    spread = np.concatenate(spreads) if spreads else np.zeros(0)
    result = {"points": total, **height_error_stats(dh)}
    result["coverage"] = result["count"] / total if total else float("nan")
    result.update(calibration(dh, spread))
    return result
