"""Which way is up: the world axis a dataset's gravity points against, and the rotation that makes it +Z.

The map's grid lies in the world's XY plane (DESIGN.md: world Z up). Recordings whose world is not
Z-up (ICL-NUIM's scene model, a SLAM trajectory started with a tilted camera) are turned so that the
given axis, or with ``"auto"`` the normal of the dominant plane the first frames see (the floor or a
table: :func:`estimate_up`), becomes +Z. :class:`UpAligned` applies the turn to every frame's pose.

Each reader's default (:func:`default_up`): TUM RGB-D (motion-capture world, Z up), EuRoC (Vicon,
Z up), an image folder or video with a trajectory (the trajectory's frame, assumed Z up) and the
marker board (Z up by construction) keep ``"z"``; ICL-NUIM, whose scene model has Y along gravity,
uses ``"auto"``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

#: Accepted values of ``up``: a signed world axis, or "auto" (from the dominant plane).
UP_AXES = ("z", "-z", "y", "-y", "x", "-x", "auto")
_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}
# The dominant plane: RANSAC over the first frames' points (every 8th pixel), inliers within 2 cm.
_PLANE_FRAMES, _PLANE_STRIDE, _PLANE_TOLERANCE, _PLANE_TRIALS = 10, 8, 0.02, 300


def default_up(dataset_format: str) -> str:
    """The up axis of a reader's world (module docstring): "auto" for ICL-NUIM, else "z"."""
    return "auto" if dataset_format == "icl-nuim" else "z"


def axis_vector(up: str) -> np.ndarray:
    """The unit vector of a signed axis name ("z", "-y", ...); ValueError for anything else."""
    sign, name = (-1.0, up[1:]) if up.startswith("-") else (1.0, up)
    if name not in _AXES:
        raise ValueError(f"up axis must be one of {', '.join(UP_AXES)}, got {up!r}")
    return sign * np.array(_AXES[name])


def rotation_to_z(up: np.ndarray) -> np.ndarray:
    """3x3 rotation taking the direction ``up`` to +Z by the smallest turn (a half turn about X for -Z)."""
    u = np.asarray(up, dtype=np.float64)
    u = u / np.linalg.norm(u)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(u, z)
    s, c = np.linalg.norm(axis), float(u @ z)
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / s
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * K + (1 - c) * K @ K


def estimate_up(frames, rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    """(unit normal of the dominant plane, its inlier count) in the first frames with depth and pose.

    The normal points to the side the cameras are on: the up of a floor or table seen from above.
    Raises ValueError when the frames give no points to find a plane in.
    """
    rng = rng or np.random.default_rng(0)
    points, centres = [], []
    for frame in frames:
        if frame.depth is None or frame.T_wc is None:
            continue
        points.append(frame.camera.world_points(frame.depth, frame.T_wc, stride=_PLANE_STRIDE))
        centres.append(frame.T_wc[:3, 3])
        if len(centres) == _PLANE_FRAMES:
            break
    cloud = np.concatenate(points) if points else np.empty((0, 3))
    if len(cloud) < 3:
        raise ValueError("up axis 'auto' needs frames with depth and pose (none of the first frames has both); "
                         "give the axis, e.g. --up y")
    best_normal, best_count = np.array([0.0, 0.0, 1.0]), -1
    for _ in range(_PLANE_TRIALS):
        a, b, c = cloud[rng.choice(len(cloud), 3, replace=False)]
        normal = np.cross(b - a, c - a)
        norm = np.linalg.norm(normal)
        if norm < 1e-9:
            continue
        normal /= norm
        count = int((np.abs((cloud - a) @ normal) < _PLANE_TOLERANCE).sum())
        if count > best_count:
            best_normal, best_count, best_point = normal, count, a
    inliers = cloud[np.abs((cloud - best_point) @ best_normal) < _PLANE_TOLERANCE]
    centred = inliers - inliers.mean(axis=0)
    normal = np.linalg.svd(centred, full_matrices=False)[2][-1]  # least squares on the inliers
    if (np.mean(centres, axis=0) - inliers.mean(axis=0)) @ normal < 0:
        normal = -normal
    return normal, best_count


def up_rotation(up: str, frames) -> np.ndarray:
    """4x4 world rotation that makes ``up`` (one of :data:`UP_AXES`) +Z; ``frames`` serve "auto"."""
    if up not in UP_AXES:
        raise ValueError(f"up axis must be one of {', '.join(UP_AXES)}, got {up!r}")
    R = np.eye(4)
    R[:3, :3] = rotation_to_z(estimate_up(frames)[0] if up == "auto" else axis_vector(up))
    return R


class UpAligned:
    """A sequence whose frames' poses (and reference trajectory) are turned by ``rotation`` (4x4, from :func:`up_rotation`)
    and, with ``camera_offset`` (the camera's 4x4 pose on the body the poses are of,
    :mod:`heightfusion.camera_offset`), moved onto the camera: ``T_wc = rotation @ G @ camera_offset``; with
    ``depth_offset`` (the depth's viewpoint in the colour camera's frame) the depth images are moved into the
    colour camera (:func:`heightfusion.camera_offset.depth_at_colour_camera`).

    Everything else (name, ground truth, skip counts...) is the wrapped sequence's. A ground-truth
    height map is only meaningful in the original world, so it is dropped unless the turn is the
    identity.
    """

    def __init__(self, sequence, rotation: np.ndarray, camera_offset: np.ndarray | None = None,
                 depth_offset: np.ndarray | None = None) -> None:
        self._sequence = sequence
        self.rotation = rotation
        self.depth_offset = depth_offset
        self.identity = bool(np.allclose(rotation, np.eye(4)))
        self.gt_heightmap = sequence.gt_heightmap if self.identity else None
        self._offset = np.eye(4) if camera_offset is None else camera_offset
        self._unchanged = self.identity and bool(np.allclose(self._offset, np.eye(4)))

    def _pose(self, T: np.ndarray) -> np.ndarray:
        return self.rotation @ T @ self._offset

    def __getattr__(self, name: str):
        return getattr(self._sequence, name)

    def __len__(self) -> int:
        return len(self._sequence)

    def __iter__(self):
        return self.iter_frames()

    def iter_frames(self, stale=None):
        """The wrapped sequence's ``iter_frames(stale)`` (its plain frames without ``stale``, or where it has no
        such method), turned."""
        reader = getattr(self._sequence, "iter_frames", None)
        for frame in (iter(self._sequence) if stale is None or reader is None else reader(stale)):
            if frame.T_wc is not None and not self._unchanged:  # a new frame: the wrapped one may be kept in memory
                frame = dataclasses.replace(frame, T_wc=self._pose(frame.T_wc))
            if frame.depth is not None and self.depth_offset is not None:
                from .camera_offset import depth_at_colour_camera  # here: it loads scipy's optimiser

                frame = dataclasses.replace(frame, depth=depth_at_colour_camera(frame.camera, frame.depth, self.depth_offset))
            yield frame

    def reference_trajectory(self) -> list[tuple[float, np.ndarray]] | None:
        """The wrapped sequence's reference poses, turned (and moved onto the camera) as the frames' poses are."""
        reference = self._sequence.reference_trajectory()
        if reference is None or self._unchanged:
            return reference
        return [(t, self._pose(T)) for t, T in reference]

    def describe(self) -> str:
        """The turn in words, e.g. "up axis: world (0.00, -1.00, 0.00) made +Z (90.0 deg turn)"."""
        up = self.rotation[:3, :3].T @ np.array([0.0, 0.0, 1.0])
        angle = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(self.rotation[:3, :3]) - 1) / 2))))
        return f"up axis: world ({up[0]:.2f}, {up[1]:.2f}, {up[2]:.2f}) made +Z ({angle:.1f} deg turn)"
