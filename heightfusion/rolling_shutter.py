"""Rolling shutter: an image's rows are exposed one after another while the camera moves.

A camera reading its rows out in ``readout_s`` seconds, moving at body velocity ``xi`` (a twist ``(v, w)`` in
m/s and rad/s with ``T_wc(t + tau) = T_wc(t) exp_se3(tau xi)``, :mod:`heightfusion.tracking.se3`), takes row
``v`` of an H-row image at ``T_wc exp_se3(((v + 1/2) / H - 1/2) readout_s xi)``: the image's pose ``T_wc`` is its
middle row's. Motion stereo (``StereoConfig.readout_s``) matches along every row's own epipolar geometry, and
hands on depth that :func:`global_shutter_depth` has moved to the middle row's camera, where fusion and
everything after it place a frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from .camera import PinholeCamera
from .poses import invert_pose
from .tracking.se3 import exp_se3, log_se3

#: :func:`body_velocity` knows a frame's velocity when the frame before came at most this many seconds earlier.
MAX_VELOCITY_GAP_S = 0.1
# Fixed-point steps that invert the rows' displacement field (it moves pixels a few percent of their spacing
# per pixel, so each step gains about two digits).
_INVERSION_STEPS = 4


def body_velocity(
    previous: tuple[float, np.ndarray] | None, T_wc: np.ndarray, timestamp: float | None
) -> np.ndarray | None:
    """The body velocity of a frame at ``T_wc`` taken at ``timestamp`` seconds, from ``previous`` (timestamp, pose) of
    the frame before it; None where either time is unknown or more than :data:`MAX_VELOCITY_GAP_S` apart."""
    if previous is None or timestamp is None or not 0 < timestamp - previous[0] <= MAX_VELOCITY_GAP_S:
        return None
    return log_se3(invert_pose(previous[1]) @ T_wc) / (timestamp - previous[0])


def row_motions(velocity: np.ndarray, fractions: np.ndarray, readout_s: float) -> np.ndarray:
    """(n, 4, 4) ``exp_se3(tau xi)`` of the rows at ``fractions`` of the image's height (the middle row: identity)."""
    tau = (np.asarray(fractions, dtype=np.float64) - 0.5) * readout_s
    return exp_se3(tau[:, None] * np.asarray(velocity, dtype=np.float64))


def row_poses(T_wc: np.ndarray, velocity: np.ndarray | None, fractions: np.ndarray, readout_s: float) -> np.ndarray:
    """(n, 4, 4) poses of the rows at ``fractions`` of the image's height; all ``T_wc`` where ``velocity`` is None."""
    if velocity is None:
        return np.broadcast_to(T_wc, (len(fractions), 4, 4))
    return T_wc @ row_motions(velocity, fractions, readout_s)


def global_shutter_depth(
    camera: PinholeCamera, depth: np.ndarray, sigma: np.ndarray, velocity: np.ndarray, readout_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """(depth, sigma) (H, W) float32 of the camera at the middle row's pose, from a rolling shutter's ``depth``
    and ``sigma`` (metres, NaN where unknown) taken at body ``velocity``; ``sigma`` may be (H, W, C), several
    values that go with each pixel's depth (then so is the sigma returned).

    Each pixel's point (at its row's pose) is moved into the middle row's camera; every output pixel takes the
    point that lands on it, found by inverting the rows' displacement field (fixed point, bilinear, with the
    displacement of the rotation alone where the depth is unknown), so the result has no splatting holes.
    Pixels whose source lies off the image are NaN.
    """
    height, width = depth.shape
    motions = row_motions(velocity, (np.arange(height) + 0.5) / height, readout_s)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], axis=-1)
    R, t = motions[:, None, :3, :3], motions[:, None, :3, 3]
    turned = (R @ rays[..., None])[..., 0]
    known = np.isfinite(depth)
    points = turned * np.where(known, depth, 1.0)[..., None] + np.where(known[..., None], t, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        moved_u = camera.fx * points[..., 0] / points[..., 2] + camera.cx
        moved_v = camera.fy * points[..., 1] / points[..., 2] + camera.cy
    shift = np.stack([moved_u - u, moved_v - v], axis=-1).astype(np.float32)
    shift[~np.isfinite(shift).all(axis=-1)] = 0.0
    target = np.stack([u, v], axis=-1).astype(np.float32)
    source = target.copy()
    for _ in range(_INVERSION_STEPS):
        source = target - cv2.remap(shift, source[..., 0], source[..., 1], cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
    column, row = np.rint(source[..., 0]).astype(np.int64), np.rint(source[..., 1]).astype(np.int64)
    inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
    column, row = column.clip(0, width - 1), row.clip(0, height - 1)
    moved_depth = np.where(known & (points[..., 2] > 0), points[..., 2], np.nan)
    out_depth = np.where(inside, moved_depth[row, column], np.nan).astype(np.float32)
    values = np.asarray(sigma)[row, column]
    found = np.isfinite(out_depth).reshape(out_depth.shape + (1,) * (values.ndim - 2))
    return out_depth, np.where(found, values, np.nan).astype(np.float32)
