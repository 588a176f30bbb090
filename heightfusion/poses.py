"""Rigid poses as 4x4 float64 matrices; ``T_wc`` maps camera coordinates to world coordinates."""

from __future__ import annotations

import numpy as np

_ROTATION_TOLERANCE = 1e-4


def validate_pose(T: np.ndarray, name: str = "T_wc") -> np.ndarray:
    """Return ``T`` as a float64 4x4 array, or raise ValueError if it is not a rigid transform.

    Checks shape, finiteness, the last row (0, 0, 0, 1), and that the rotation block is orthonormal
    with determinant +1 (tolerance 1e-4, enough for poses read from text files).

    Example:
        >>> import numpy as np, heightfusion as hf
        >>> hf.validate_pose(np.eye(4)).dtype
        dtype('float64')
    """
    try:
        T = np.asarray(T, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 4x4 numeric matrix: {exc}") from None
    if T.shape != (4, 4):
        raise ValueError(f"{name} must have shape (4, 4), got {T.shape}")
    if not np.isfinite(T).all():
        raise ValueError(f"{name} contains NaN or infinite values:\n{T}")
    if np.abs(T[3] - (0.0, 0.0, 0.0, 1.0)).max() > 1e-9:  # np.allclose took 0.3 ms, and renders check every pose
        raise ValueError(f"{name} last row must be (0, 0, 0, 1), got {T[3]}")
    R = T[:3, :3]
    orth_err = np.abs(R.T @ R - np.eye(3)).max()
    if orth_err > _ROTATION_TOLERANCE or np.linalg.det(R) < 0:
        raise ValueError(
            f"{name} is not a rigid transform: rotation block has |R^T R - I| = {orth_err:.2e} and "
            f"det = {np.linalg.det(R):.4f}"
        )
    return T


def invert_pose(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform (uses R^T rather than a general matrix inverse).

    Example:
        >>> import numpy as np, heightfusion as hf
        >>> T = hf.look_at((1.0, 0.0, 1.0), (0.0, 0.0, 0.0))
        >>> np.allclose(hf.invert_pose(T) @ T, np.eye(4))
        True
    """
    T = np.asarray(T, dtype=np.float64)
    inv = np.eye(4)
    inv[:3, :3] = T[:3, :3].T
    inv[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return inv


def quat_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix of a quaternion in TUM order (qx, qy, qz, qw); normalised first.

    Example:
        >>> import heightfusion as hf
        >>> hf.quat_to_matrix([0.0, 0.0, 0.0, 1.0]).diagonal()
        array([1., 1., 1.])
    """
    q = np.asarray(q_xyzw, dtype=np.float64)
    n = np.linalg.norm(q)
    if q.shape != (4,) or not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"quaternion must be 4 finite numbers with non-zero norm, got {q_xyzw!r}")
    x, y, z, w = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Quaternion (qx, qy, qz, qw) with qw >= 0 of a 3x3 rotation matrix (Shepperd's method).

    Example:
        >>> import numpy as np, heightfusion as hf
        >>> hf.matrix_to_quat(np.eye(3))
        array([0., 0., 0., 1.])
    """
    R = np.asarray(R, dtype=np.float64)
    trace = np.trace(R)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def pose_from_tum(tx: float, ty: float, tz: float, qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    """4x4 ``T_wc`` from one TUM trajectory line's numbers (``t tx ty tz qx qy qz qw`` without t).

    Example:
        >>> import heightfusion as hf
        >>> hf.pose_from_tum(1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0)[:3, 3]
        array([1., 2., 3.])
    """
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(np.array([qx, qy, qz, qw]))
    T[:3, 3] = (tx, ty, tz)
    return T


def pose_to_tum(T: np.ndarray) -> np.ndarray:
    """The 7 numbers (tx ty tz qx qy qz qw) of a TUM trajectory line for ``T_wc``.

    Example:
        >>> import numpy as np, heightfusion as hf
        >>> hf.pose_to_tum(np.eye(4))
        array([0., 0., 0., 0., 0., 0., 1.])
    """
    T = np.asarray(T, dtype=np.float64)
    return np.concatenate([T[:3, 3], matrix_to_quat(T[:3, :3])])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """``T_wc`` of an OpenCV camera at ``eye`` looking at ``target`` with image-up towards ``up``.

    Raises ValueError when ``eye == target`` or the viewing direction is parallel to ``up``.

    Example:
        >>> import heightfusion as hf
        >>> T_wc = hf.look_at(eye=(0.0, -1.0, 1.0), target=(0.0, 0.0, 0.0))
        >>> T_wc[:3, 2].round(3)  # the optical axis, towards the target
        array([ 0.   ,  0.707, -0.707])
    """
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    if np.linalg.norm(z) < 1e-12:
        raise ValueError(f"look_at: eye {eye} and target {target} coincide")
    z /= np.linalg.norm(z)
    x = np.cross(z, up)  # camera x (right) = forward x up, since camera y points down
    if np.linalg.norm(x) < 1e-9:
        raise ValueError(f"look_at: viewing direction {z} is parallel to up {up}; pass another up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T
