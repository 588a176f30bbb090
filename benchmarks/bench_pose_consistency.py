"""Do the images agree with the reference trajectory? A keyframe pose graph from image alignment alone.

    xvfb-run -a python benchmarks/bench_pose_consistency.py [--dataset PATH] [--every 5] [--min-overlap 0.5]

Issue 12's RGB-D odometry goal (ATE <= 30 mm on the real sample) assumes that what the images say about the
camera's motion is what the motion capture says. This checks it, in two runs:

1. keyframes (every ``--every``-th frame) start at the poses of ``--track odometry``;
2. keyframes start at the reference poses themselves (the motion capture).

Every pair of keyframes whose views overlap (``--min-overlap`` of the first one's depth points seen by the
second) is aligned with the tracker's dense alignment (``heightfusion.tracking.align``: photometric and
geometric residuals, one keyframe as the reference, no map, no prior), and each alignment that passes
(inliers, a bounded covariance, a correction under 10 cm / 8 deg) becomes an edge of a pose graph: the
relative pose, weighted by the alignment's information. The graph is solved (``scipy.optimize.least_squares``,
Huber loss, the first keyframe fixed) and every frame takes its nearest keyframe's correction. Printed per
run: the ATE (as given and SE(3)-aligned, evo) before and after. Loop edges would remove drift; if the
images agree with the reference, run 2 stays near 0 mm. A run 2 that moves far from the reference, to where
run 1 ends, means the images and the reference disagree systematically (camera or depth model, rolling
shutter, the motion capture's calibration), and better alignment cannot close that gap.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

import heightfusion as hf
from heightfusion.tracking import (TrackingConfig, align, exp_se3, log_se3, make_reference, motion_size,
                                   tracked_pyramid)
from heightfusion.tracking.tracker import points_in_view
from heightfusion.tracking.views import level_range
from heightfusion.trajectory_eval import trajectory_errors
from real_sample import REAL_SAMPLE

#: An alignment is an edge when this share of its residuals are inliers, and it moved the pose less than this.
MIN_INLIERS = 0.6
MAX_CORRECTION = (0.10, 8.0)  # metres, degrees
#: The tracker's settings: pyramid levels and reference points.
TRACKING = TrackingConfig()


def pose_graph(frames: list, start: list[np.ndarray], min_overlap: float) -> tuple[list[np.ndarray], int]:
    """(solved poses, number of edges) of keyframes ``frames`` starting at poses ``start``."""
    camera = frames[0].camera
    finest, coarsest = level_range(camera, TRACKING.max_side, TRACKING.min_side)
    pyramids = [tracked_pyramid(camera, f.image, f.depth, finest, coarsest) for f in frames]
    references = [make_reference("keyframe", p[0].camera, T, p[0].gray, p[0].geometry[..., 0], 0, len(p) - 1,
                                 TRACKING.max_points, TRACKING.min_gradient) for p, T in zip(pyramids, start)]
    edges = []
    for i, reference in enumerate(references):
        for j in range(i + 1, len(frames)):
            points = reference.levels[0].geometric
            if points_in_view(points, pyramids[j][0].camera, start[j]) < min_overlap * len(points):
                continue
            a = align(pyramids[j], [reference], start[j], TRACKING.alignment)
            if a.data_covariance is None or not np.isfinite(a.data_covariance).all() or a.inliers < MIN_INLIERS:
                continue
            moved, turned = motion_size(np.linalg.inv(start[j]) @ a.T_wc)
            if moved > MAX_CORRECTION[0] or turned > MAX_CORRECTION[1]:
                continue
            # The alignment's twist is in camera j's frame, as the edge residual below.
            weight = np.linalg.cholesky(np.linalg.inv(a.data_covariance)).T
            edges.append((i, j, np.linalg.inv(start[i]) @ a.T_wc, weight))

    def pose(x: np.ndarray, k: int) -> np.ndarray:
        return start[k] if k == 0 else start[k] @ exp_se3(x[6 * (k - 1): 6 * k])

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.concatenate([w @ log_se3(np.linalg.inv(Z) @ np.linalg.inv(pose(x, i)) @ pose(x, j))
                               for i, j, Z, w in edges])

    solution = least_squares(residuals, np.zeros(6 * (len(frames) - 1)), loss="huber", f_scale=3.0)
    return [pose(solution.x, k) for k in range(len(frames))], len(edges)


def corrected(poses: list, keyframes: list[int], frames: list, before: list[np.ndarray], after: list[np.ndarray]) -> list:
    """Every (timestamp, pose) of ``poses`` moved as its nearest keyframe moved."""
    times = np.array([frames[k].timestamp for k in keyframes])
    out = []
    for t, T in poses:
        k = int(np.argmin(np.abs(times - t)))
        out.append((t, after[k] @ np.linalg.inv(before[k]) @ T))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=REAL_SAMPLE, help=f"TUM sequence (default {REAL_SAMPLE})")
    parser.add_argument("--every", type=int, default=5, help="every N-th frame is a keyframe (default 5)")
    parser.add_argument("--min-overlap", type=float, default=0.5, help="overlap that makes a pair (default 0.5)")
    args = parser.parse_args()

    sequence = hf.datasets.open(args.dataset, undistort=True)
    frames = list(sequence)
    reference = sequence.reference_trajectory()
    odometry = hf.replay(args.dataset, track="odometry", depth="sensor", progress=False).poses
    for name, poses in (("odometry's poses", odometry), ("the reference poses", [(f.timestamp, f.T_wc) for f in frames])):
        start_time = time.perf_counter()
        at = dict(poses)
        keyframes = [k for k in range(0, len(frames), args.every) if frames[k].timestamp in at]
        start = [at[frames[k].timestamp] for k in keyframes]
        solved, edges = pose_graph([frames[k] for k in keyframes], start, args.min_overlap)
        before = trajectory_errors(poses, reference)
        after = trajectory_errors(corrected(poses, keyframes, frames, start, solved), reference)
        print(f"from {name}: {len(keyframes)} keyframes, {edges} edges, {time.perf_counter() - start_time:.0f} s; ATE "
              f"{1e3 * before['ate_unaligned_m']['rmse']:.1f} mm (aligned {1e3 * before['ate_aligned_m']['rmse']:.1f}) -> "
              f"{1e3 * after['ate_unaligned_m']['rmse']:.1f} mm (aligned {1e3 * after['ate_aligned_m']['rmse']:.1f})",
              flush=True)


if __name__ == "__main__":
    main()
