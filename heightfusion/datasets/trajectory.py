"""TUM-format trajectories (``t tx ty tz qx qy qz qw``) and timestamp association.

Association follows TUM's ``associate.py``: every pair of timestamps closer than ``max_difference``
is a candidate, and candidates are accepted greedily, closest first, each timestamp used at most once.

Poses between trajectory samples (:meth:`Trajectory.pose_at`): a time bracketed by two samples at most
``MAX_INTERPOLATION_GAP`` apart gets a pose interpolated between them (position linearly, rotation by
slerp); otherwise the nearest sample is used if it lies within ``max_difference``, and there is no
pose at all beyond that. So a trajectory sampled faster than the camera (motion capture) gives poses
at the image times, and a dropout longer than the gap is not bridged.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..poses import pose_from_tum
from .files import read_text

# Longest interval between two trajectory samples that a pose is interpolated across, seconds.
MAX_INTERPOLATION_GAP = 0.1
# Relative times below this are treated as equal, seconds.
_TIME_EPSILON = 1e-9
# Quaternion components whose squares leave the float range (below, above): see Trajectory.from_samples.
_EXTREME = (1e-150, 1e150)


@dataclass(frozen=True)
class Trajectory:
    """Timestamped camera poses: ``timestamps`` (N,) increasing, ``positions`` (N, 3), ``quaternions`` (N, 4) xyzw unit.

    Build one with :meth:`from_samples`, which sorts, removes duplicate times and normalises.
    """

    timestamps: np.ndarray
    positions: np.ndarray
    quaternions: np.ndarray

    @classmethod
    def from_samples(cls, timestamps: np.ndarray, positions: np.ndarray, quaternions_xyzw: np.ndarray) -> "Trajectory":
        """A trajectory from unsorted samples; of samples with equal times the first in the input is kept.

        Raises ValueError for a value that is not finite or a quaternion of zero norm.
        """
        t = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        p = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        q = np.asarray(quaternions_xyzw, dtype=np.float64).reshape(-1, 4)
        if not all(np.isfinite(a).all() for a in (t, p, q)) or not np.abs(q).max(axis=1, initial=0).all():
            raise ValueError("trajectory samples must be finite numbers, with quaternions of non-zero norm")
        order = np.argsort(t, kind="stable")
        t, p, q = t[order], p[order], q[order]
        keep = np.concatenate([[True], np.diff(t) > 0]) if len(t) else np.zeros(0, dtype=bool)
        q = q[keep]
        # The norm of (1e-300, 0, 0, 0) underflows to 0 and that of (1e300, 1e300, 1e300, 1e300) overflows
        # to inf, either of which would make the quaternion NaN: such a quaternion is divided by its largest
        # component first. Others are not, so that a pose at a sample time is bit for bit pose_from_tum's.
        scale = np.abs(q).max(axis=1, keepdims=True)
        q = np.where((scale < _EXTREME[0]) | (scale > _EXTREME[1]), q / scale, q)
        return cls(t[keep], p[keep], q / np.linalg.norm(q, axis=1, keepdims=True))

    def __len__(self) -> int:
        return len(self.timestamps)

    def sample(self, i: int) -> np.ndarray:
        """The 4x4 ``T_wc`` of sample ``i``."""
        return pose_from_tum(*self.positions[i], *self.quaternions[i])

    def pose_at(
        self, t: float, max_difference: float = 0.02, max_gap: float = MAX_INTERPOLATION_GAP
    ) -> np.ndarray | None:
        """4x4 ``T_wc`` at time ``t`` (see the module docstring), or None when the trajectory has none."""
        ts = self.timestamps
        after = int(np.searchsorted(ts, t - _TIME_EPSILON))  # first sample at or after t
        before = after - 1
        if after < len(ts) and abs(ts[after] - t) <= _TIME_EPSILON:
            return self.sample(after)
        if before >= 0 and after < len(ts) and ts[after] - ts[before] <= max_gap:
            alpha = (t - ts[before]) / (ts[after] - ts[before])
            position = (1 - alpha) * self.positions[before] + alpha * self.positions[after]
            quaternion = slerp(self.quaternions[before], self.quaternions[after], alpha)
            return pose_from_tum(*position, *quaternion)
        nearest = [i for i in (before, after) if 0 <= i < len(ts) and abs(ts[i] - t) < max_difference]
        if not nearest:
            return None
        return self.sample(min(nearest, key=lambda i: abs(ts[i] - t)))


def slerp(q0: np.ndarray, q1: np.ndarray, alpha: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions along the shorter arc (alpha 0 -> q0, 1 -> q1)."""
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly equal: the linear blend is exact to rounding and avoids dividing by sin(~0)
        q = (1 - alpha) * q0 + alpha * q1
    else:
        theta = math.acos(dot)
        q = (math.sin((1 - alpha) * theta) * q0 + math.sin(alpha * theta) * q1) / math.sin(theta)
    return q / np.linalg.norm(q)


def read_tum_trajectory(path: str | os.PathLike) -> tuple[Trajectory, list[str]]:
    """(trajectory, one message per garbled line) from a TUM trajectory file.

    Lines are ``t tx ty tz qx qy qz qw`` (spaces or commas); blank lines and ``#`` comments are ignored.
    A line with another number of fields, a value that is not a finite number or a zero quaternion is
    garbled. Raises OSError when the file cannot be read.
    """
    path = Path(path)
    rows, problems = [], []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.replace(",", " ").split()
        try:
            values = [float(f) for f in fields]
        except ValueError:
            values = []
        if len(values) != 8 or not is_pose_row(values):
            problems.append(f"{path}:{number}: garbled trajectory line {line[:80]!r}")
            continue
        rows.append(values)
    data = np.array(rows, dtype=np.float64).reshape(-1, 8)
    return Trajectory.from_samples(data[:, 0], data[:, 1:4], data[:, 4:8]), problems


def is_pose_row(values: list[float]) -> bool:
    """Whether the 8 numbers of a trajectory line (time, position, quaternion in either order) make a pose:
    all finite, the quaternion not zero."""
    return all(math.isfinite(v) for v in values) and any(values[4:8])


def associate(first: np.ndarray, second: np.ndarray, max_difference: float = 0.02) -> list[tuple[int, int]]:
    """Index pairs (i, j) matching ``first[i]`` with ``second[j]``, sorted by i (see the module docstring).

    Only pairs with ``|first[i] - second[j]| < max_difference`` are candidates, as in ``associate.py``.
    """
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    order = np.argsort(second, kind="stable")
    sorted_second = second[order]
    lo = np.searchsorted(sorted_second, first - max_difference, side="left")
    hi = np.searchsorted(sorted_second, first + max_difference, side="right")
    candidates = sorted(
        (abs(first[i] - sorted_second[k]), i, int(order[k]))
        for i in range(len(first))
        for k in range(lo[i], hi[i])
        if abs(first[i] - sorted_second[k]) < max_difference
    )
    used_first, used_second, pairs = set(), set(), []
    for _, i, j in candidates:
        if i not in used_first and j not in used_second:
            used_first.add(i)
            used_second.add(j)
            pairs.append((i, j))
    return sorted(pairs)
