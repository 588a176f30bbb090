"""What a pose's uncertainty does to a frame's depths and to the heights fused from them.

A tracked or odometry pose comes with the 6x6 covariance of its error, a camera-frame twist
``xi = (v, w)`` (metres, radians; :mod:`heightfusion.tracking.se3`): the error moves a surface point X
(camera frame) by v + w x X. Every pixel of the frame shares that one error, and the errors of
consecutive poses are nearly the same (a trajectory drifts slowly), so it enters fusion twice:

- :func:`pose_depth_sigma`: each pixel's depth sigma, in quadrature with the sensor's or stereo's, so that
  a frame with an uncertain pose weighs less;
- :func:`pose_height_sigma`: the height error it causes at each vertex the frame updates, kept apart in
  ``HeightMap.systematic_sigma``, because more frames with the same error do not average it away: a
  tracked frame shares the error of the map it was aligned to, and only its own error with respect to
  that map is new (``HeightMapFuser._update_systematic`` keeps the two apart). Folding it into the
  information instead (capping each vertex's information at what the pose allows) made within 1 sigma
  honest on the synthetic floor (0.26 -> 0.59) but the real TUM map's held-out median |dh| worse (9.0 ->
  12.0 mm): the cap also weakened what later frames could correct.

Motion stereo's depth errs where the poses of a reference and its sources err relative to each other
(:func:`relative_pose_covariance`, :attr:`heightfusion.depth.DepthEstimate.pose_sigma`); the heights that error
causes (:func:`depth_height_sigma`) join the frame's own share of the systematic sigma.

These take the surface as level (normal = the map's up axis, world z): a height map's surface mostly is,
and its heights are what the error lands in.
"""

from __future__ import annotations

import numpy as np

from ..tracking.se3 import hat


def pose_depth_sigma(camera, T_wc: np.ndarray, depth: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """(H, W) float32 standard deviation (metres) of each pixel's depth that the pose's uncertainty causes.

    ``covariance`` is the 6x6 covariance of the camera-frame twist ``xi = (v, w)`` (the tracker's). A pose
    error moves a surface point X (camera frame) by v + w x X; along the pixel's ray r (z-component 1)
    the depth of a surface with normal n then changes by n . (v + w x X) / (n . r), so the row
    (n, X x n) / (n . r) maps the twist to depth. The normal is taken as the map's up axis: a height map's
    surface is mostly near level, and its heights are what the error lands in.
    """
    n = T_wc[:3, :3].T @ np.array([0.0, 0.0, 1.0])  # world up in the camera frame
    # With X = t r and r = (x, y, 1), the row is (n, t (r x n)) / (n . r), and its quadratic form is
    # c + 2 t L + t^2 Q with L and Q functions of the pixel alone: computed on broadcast rows and columns.
    x = ((np.arange(camera.width, dtype=np.float32) - camera.cx) / camera.fx)[None, :]
    y = ((np.arange(camera.height, dtype=np.float32) - camera.cy) / camera.fy)[:, None]
    t = np.nan_to_num(depth).astype(np.float32)
    facing = x * n[0] + y * n[1] + n[2]
    facing = np.where(np.abs(facing) < 0.05, np.copysign(0.05, facing), facing).astype(np.float32)  # grazing
    a = (y * n[2] - n[1], n[0] - x * n[2], x * n[1] - y * n[0])  # r x n, component by component
    vv, wv, ww = covariance[:3, :3], covariance[3:, :3], covariance[3:, 3:]
    cross = wv @ n
    linear = a[0] * cross[0] + a[1] * cross[1] + a[2] * cross[2]
    quadratic = sum(a[i] * a[j] * (ww[i, j] if i == j else 2 * ww[i, j]) for i in range(3) for j in range(i, 3))
    variance = (float(n @ vv @ n) + t * (2 * linear + t * quadratic)) / (facing * facing)
    return np.sqrt(np.maximum(variance, 0.0)).astype(np.float32)


def pose_height_sigma(T_wc: np.ndarray, points: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """(...) float64 standard deviation (metres) of the height of world ``points`` (..., 3) fused from a frame
    at pose ``T_wc`` whose twist has ``covariance`` (6x6).

    The point's camera-frame position X moves by v + w x X; its height, along the up axis n (camera frame),
    by n . v + w . (X x n), a row (n, X x n) whose quadratic form with the covariance is the variance.
    """
    R, t = T_wc[:3, :3], T_wc[:3, 3]
    n = R.T @ np.array([0.0, 0.0, 1.0])
    X = (np.asarray(points, dtype=np.float64) - t) @ R  # camera frame: R^T (P - t), row by row
    rows = np.concatenate([np.broadcast_to(n, X.shape), np.cross(X, n)], axis=-1)
    variance = np.einsum("...i,ij,...j->...", rows, covariance, rows)
    return np.sqrt(np.maximum(variance, 0.0))


def relative_pose_covariance(T_sr: np.ndarray, ref_covariance: np.ndarray | None,
                             src_covariance: np.ndarray | None) -> np.ndarray | None:
    """6x6 covariance of the error of the motion ``T_sr`` (reference camera to source camera) when the two
    poses err independently by twists with these covariances (each camera's own frame, as the tracker's:
    the error moves the points that camera sees by v + w x X); None where both are None (exact poses).

    The source's error moves its points directly; the reference's reaches them through ``T_sr`` with the
    opposite sign, ``-Ad(T_sr) xi_ref``, whose covariance is ``Ad Sigma Ad^T`` with
    ``Ad = [[R, [t]x R], [0, R]]``. Independence overstates the error of poses whose errors are shared (a
    drifting trajectory's neighbours, frames tracked against one map): an upper bound, not an estimate.
    """
    if ref_covariance is None and src_covariance is None:
        return None
    total = np.zeros((6, 6)) if src_covariance is None else np.array(src_covariance, dtype=np.float64)
    if ref_covariance is not None:
        R, t = T_sr[:3, :3], T_sr[:3, 3]
        adjoint = np.zeros((6, 6))
        adjoint[:3, :3] = adjoint[3:, 3:] = R
        adjoint[:3, 3:] = hat(t) @ R
        total += adjoint @ np.asarray(ref_covariance, dtype=np.float64) @ adjoint.T
    return total


def depth_height_sigma(camera, T_wc: np.ndarray, points: np.ndarray, depth_sigma: np.ndarray) -> np.ndarray:
    """(...) float64 standard deviation (metres) of the height of world ``points`` (..., 3) fused from a depth
    image at pose ``T_wc`` whose depths err by ``depth_sigma`` ((H, W), metres, NaN where none), as motion
    stereo's relative pose errors make them err (:attr:`heightfusion.depth.DepthEstimate.pose_sigma`).

    A pixel's depth error dz moves its point along the pixel's ray r (z-component 1) by dz r, and so the
    height of the (level, as above) surface there by dz (r . n), n the up axis in the camera frame. Each
    point takes the sigma of the pixel it projects to (nearest); where that pixel has none, or the point
    is outside the image or behind the camera, the median of the image's sigmas.
    """
    R, t = T_wc[:3, :3], T_wc[:3, 3]
    n = R.T @ np.array([0.0, 0.0, 1.0])
    X = (np.asarray(points, dtype=np.float64) - t) @ R
    depth_sigma = np.asarray(depth_sigma, dtype=np.float64)
    known = np.isfinite(depth_sigma)
    fallback = float(np.median(depth_sigma[known])) if known.any() else 0.0
    z = X[..., 2]
    safe = np.where(z > 1e-9, z, 1.0)
    x, y = X[..., 0] / safe, X[..., 1] / safe
    u = np.rint(camera.fx * x + camera.cx).astype(np.int64)
    v = np.rint(camera.fy * y + camera.cy).astype(np.int64)
    inside = (z > 1e-9) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    sigma = np.where(inside, depth_sigma[v.clip(0, camera.height - 1), u.clip(0, camera.width - 1)], np.nan)
    sigma = np.where(np.isfinite(sigma), sigma, fallback)
    return sigma * np.abs(x * n[0] + y * n[1] + n[2])
