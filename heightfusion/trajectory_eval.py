"""Trajectories a run used or estimated: TUM files, errors against a reference (with evo), and a plot.

A trajectory here is a list of ``(timestamp, T_wc)``: seconds and 4x4 float64 camera-to-world poses.

:func:`trajectory_errors` follows the TUM RGB-D benchmark's protocol as the ``evo`` package implements
it: poses are matched by timestamp (nearest, within ``max_difference``), then

- ATE (absolute trajectory error, translation, metres) after an SE(3) Umeyama alignment of the
  estimate to the reference (the shape of the trajectory), and without alignment (the poses as
  given: what a map fused at them suffers; odometry started from a given first pose is judged so too);
- RPE (relative pose error) between consecutive matched poses: translation (metres) and rotation
  (degrees) of the error of each frame-to-frame motion (drift per frame).

evo is imported when a function needs it, never by ``import heightfusion``.

Example:
    >>> import numpy as np
    >>> from heightfusion.trajectory_eval import trajectory_errors
    >>> def pose(x, y):
    ...     T = np.eye(4)
    ...     T[:2, 3] = x, y
    ...     return T
    >>> reference = [(0.1 * i, pose(np.cos(i), np.sin(i))) for i in range(8)]
    >>> shifted = [(t, pose(T[0, 3], T[1, 3] + 0.01)) for t, T in reference]  # 1 cm off, all along
    >>> errors = trajectory_errors(shifted, reference)
    >>> round(errors["ate_unaligned_m"]["rmse"], 6), round(errors["ate_aligned_m"]["rmse"], 6)
    (0.01, 0.0)
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .poses import pose_to_tum, validate_pose

#: A trajectory: (timestamp in seconds, 4x4 ``T_wc``) per pose.
Poses = Sequence[tuple[float, np.ndarray]]
#: Largest time difference between matched poses, seconds (TUM's associate.py uses 20 ms).
DEFAULT_MAX_DIFFERENCE = 0.02
#: Matched poses needed for the errors: three for a defined alignment.
MIN_MATCHED = 3
_STATISTICS = ("rmse", "mean", "median", "max")


def tum_lines(poses: Poses) -> list[str]:
    """``t tx ty tz qx qy qz qw`` lines (no newline) of a TUM trajectory file."""
    return [f"{t:.6f} " + " ".join(f"{v:.9f}" for v in pose_to_tum(T)) for t, T in poses]


def write_tum_trajectory(path: str | os.PathLike, poses: Poses, comment: str = "") -> Path:
    """Write ``poses`` to ``path`` as a TUM trajectory (``t tx ty tz qx qy qz qw``), atomically; returns the path.

    ``comment``: lines written first, each prefixed with ``# ``.
    """
    path = Path(path)
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    text = header + "# timestamp tx ty tz qx qy qz qw\n" + "".join(line + "\n" for line in tum_lines(poses))
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))
    return path


def read_tum_trajectory(path: str | os.PathLike) -> list[tuple[float, np.ndarray]]:
    """The poses of a TUM trajectory file, in time order; ValueError naming the file and line if one is garbled.

    (The dataset readers use :func:`heightfusion.datasets.trajectory.read_tum_trajectory`, which skips
    and counts garbled lines instead: bad data in a recording must not end a run, a bad result file must.)
    """
    from .datasets.trajectory import read_tum_trajectory as read_samples

    trajectory, problems = read_samples(path)
    if problems:
        raise ValueError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return [(float(trajectory.timestamps[i]), trajectory.sample(i)) for i in range(len(trajectory))]


def _evo_trajectory(poses: Poses, name: str):
    """``poses`` as an evo ``PoseTrajectory3D`` in time order; ValueError for an empty or malformed one."""
    from evo.core.trajectory import PoseTrajectory3D

    if len(poses) == 0:
        raise ValueError(f"{name} trajectory is empty")
    ordered = sorted(poses, key=lambda pose: pose[0])
    matrices = [validate_pose(T, f"{name} pose at t={t:.6f}") for t, T in ordered]
    return PoseTrajectory3D(poses_se3=matrices, timestamps=np.array([t for t, _ in ordered], dtype=np.float64))


def _associated(estimated: Poses, reference: Poses, max_difference: float):
    """(reference, estimate) evo trajectories reduced to their matched poses; ValueError under MIN_MATCHED."""
    from evo.core import sync

    est, ref = _evo_trajectory(estimated, "estimated"), _evo_trajectory(reference, "reference")
    try:
        ref, est = sync.associate_trajectories(ref, est, max_diff=max_difference)
    except sync.SyncException:
        ref = None
    matched = 0 if ref is None else ref.num_poses
    if matched < MIN_MATCHED:
        raise ValueError(f"only {matched} estimated pose(s) lie within {max_difference} s of a reference pose; "
                         f"trajectory errors need at least {MIN_MATCHED}")
    return ref, est


def _aligned(estimate, reference):
    """A copy of ``estimate`` moved by the SE(3) Umeyama alignment onto ``reference`` (no scale), or None
    where the alignment is undefined (the positions of one of them all equal or on a line)."""
    from evo.core.geometry import GeometryException

    aligned = copy.deepcopy(estimate)
    try:
        aligned.align(reference, correct_scale=False)
    except GeometryException:
        return None
    return aligned


def _statistics(metric, reference, estimate) -> dict[str, float]:
    metric.process_data((reference, estimate))
    stats = metric.get_all_statistics()
    return {key: float(stats[key]) for key in _STATISTICS}


def trajectory_errors(estimated: Poses, reference: Poses, max_difference: float = DEFAULT_MAX_DIFFERENCE) -> dict:
    """ATE and RPE of ``estimated`` against ``reference`` (module docstring), computed with evo.

    Returns ``{"matched": n, "max_difference_s": ..., "ate_aligned_m": S, "ate_unaligned_m": S,
    "rpe_translation_m": S, "rpe_rotation_deg": S}`` with each S ``{"rmse", "mean", "median", "max"}``.
    The aligned statistics are NaN where the alignment is undefined (a camera standing still or
    moving on an exact line). Raises ValueError when fewer than :data:`MIN_MATCHED` poses match or a
    pose is not rigid.
    """
    from evo.core import metrics
    from evo.core.units import Unit

    ref, est = _associated(estimated, reference, max_difference)
    translation, rotation = metrics.PoseRelation.translation_part, metrics.PoseRelation.rotation_angle_deg
    rpe = {"delta": 1, "delta_unit": Unit.frames, "all_pairs": False}
    aligned = _aligned(est, ref)
    return {
        "matched": int(ref.num_poses),
        "max_difference_s": float(max_difference),
        "ate_aligned_m": (dict.fromkeys(_STATISTICS, math.nan) if aligned is None
                          else _statistics(metrics.APE(translation), ref, aligned)),
        "ate_unaligned_m": _statistics(metrics.APE(translation), ref, est),
        "rpe_translation_m": _statistics(metrics.RPE(translation, **rpe), ref, est),
        "rpe_rotation_deg": _statistics(metrics.RPE(rotation, **rpe), ref, est),
    }


def plot_trajectories(
    path_png: str | os.PathLike,
    estimated: Poses | Mapping[str, Poses],
    reference: Poses,
    title: str = "",
    max_difference: float = DEFAULT_MAX_DIFFERENCE,
) -> Path:
    """A PNG (written atomically) with the top view (x-y) of the reference and the estimate(s), and each
    estimate's translation error over time, as given (solid) and after SE(3) alignment (dashed; on a log
    scale when the estimates' largest errors differ more than tenfold, so that a lost one hides no other).

    ``estimated``: one trajectory, or several as ``{label: poses}``; one with too few poses matching
    the reference in time is drawn in the top view only. Returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    estimates = dict(estimated) if isinstance(estimated, Mapping) else {"estimate": estimated}
    if not estimates or not reference:
        raise ValueError("plot_trajectories needs a reference and at least one estimated trajectory")
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    top, errors = figure.subplots(1, 2, width_ratios=(1, 1.4))
    ref_xyz = np.array([T[:3, 3] for _, T in sorted(reference, key=lambda pose: pose[0])])
    top.plot(ref_xyz[:, 0], ref_xyz[:, 1], color="black", lw=2.5, alpha=0.6, label="reference", zorder=0)
    top.plot(*ref_xyz[0, :2], "ko", ms=5)
    start_time = min(t for t, _ in reference)
    peaks = [0.0]
    for (label, poses), colour in zip(estimates.items(), _colours(len(estimates))):
        xyz = np.array([T[:3, 3] for _, T in sorted(poses, key=lambda pose: pose[0])]).reshape(-1, 3)
        top.plot(xyz[:, 0], xyz[:, 1], color=colour, lw=1.2, label=label)
        try:
            ref, est = _associated(poses, reference, max_difference)
        except ValueError:
            continue
        xyz = est.positions_xyz
        aligned = _aligned(est, ref)
        t = est.timestamps - start_time
        given = 1000 * np.linalg.norm(xyz - ref.positions_xyz, axis=1)
        peaks.append(given.max())
        errors.plot(t, given, color=colour, label=f"{label}, as given")
        if aligned is not None:
            errors.plot(t, 1000 * np.linalg.norm(aligned.positions_xyz - ref.positions_xyz, axis=1), color=colour,
                        ls="--", label=f"{label}, SE(3)-aligned")
    top.set(xlabel="x [m]", ylabel="y [m]", title="top view", aspect="equal")
    errors.set(xlabel="time [s]", ylabel="translation error [mm]", title="error against the reference")
    if max(peaks) > 10 * max(min(peaks[1:], default=0.0), 1e-3):
        errors.set_yscale("log")
        errors.set_ylim(bottom=0.1)
        errors.set_ylabel("translation error [mm], log scale")
    else:
        errors.set_ylim(bottom=0)
    errors.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    errors.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    path = Path(path_png)
    with atomic_write(path) as f:
        figure.savefig(f, format="png", dpi=110)
    return path


def _colours(count: int) -> list:
    """Distinct line colours (matplotlib's tab10 cycle)."""
    from matplotlib import colormaps

    return [colormaps["tab10"](i % 10) for i in range(count)]
