"""Monocular odometry from a start pose alone (frames without a trajectory: a plain video), against the same
odometry started from the trajectory's first poses, on the same frames.

    python benchmarks/bench_bootstrap.py [--frames 120] [--real PATH]

Scenes: the synthetic floor at 320x240 along the robot's loop of ``bench_tracking.py`` (240 frames' spacing,
32 mm and about 4 deg a frame; the first ``--frames``), written twice: with ``groundtruth.txt`` (odometry keeps
the given poses until the map covers the view) and with it renamed ``groundtruth_true.txt`` (no poses: the
monocular bootstrap poses the first frames from the start pose, :mod:`heightfusion.tracking.bootstrap`), both
scored against the true poses and the true map; then the real sequence's images without their trajectory
(what the bootstrap says of them). Columns: the bootstrap's start, the pose error of the frames it posed,
frames fused, ATE, map RMSE and completeness, and ms per frame. Times are of this machine (printed first).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

import heightfusion as hf
from heightfusion.render import context
from heightfusion.synthetic import TRUE_TRAJECTORY_FILE, generate, write_tum
from heightfusion.tracking.bootstrap import Bootstrapped
from real_sample import REAL_SAMPLE


def pose_errors(posed: list, truth: dict) -> tuple[float, float]:
    """(median position error mm, median rotation error deg) of (timestamp, T_wc) against ``truth``."""
    mm, deg = [], []
    for t, T in posed:
        ref = truth[round(t, 4)]
        mm.append(np.linalg.norm(T[:3, 3] - ref[:3, 3]) * 1e3)
        deg.append(np.degrees(np.arccos(np.clip((np.trace(T[:3, :3].T @ ref[:3, :3]) - 1) / 2, -1, 1))))
    return float(np.median(mm)), float(np.median(deg))


def row(name: str, result: hf.ReplayResult, start: str, posed: str) -> str:
    ate = (result.trajectory or {}).get("ate_unaligned_m", {}).get("rmse", float("nan")) * 1e3
    ev = result.evaluation or {}
    ms = sum(result.ms_per_frame.values())
    frames = result.frames_used + sum(result.skipped.values())
    return (f"| {name} | {start} | {posed} | {result.frames_used} of {frames} "
            f"| {ate:.1f} | {ev.get('rmse', float('nan')) * 1e3:.1f} | {ev.get('completeness', float('nan')):.3f} "
            f"| {ms:.0f} | {dict(result.skipped)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=120, help="first N frames of the synthetic loop (default 120)")
    parser.add_argument("--real", type=Path, default=REAL_SAMPLE, help="a real sequence whose images are tried too")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; OpenGL: {context.describe()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        seq = generate("floor", frames=240, width=320, height=240)
        given = write_tum(seq, Path(tmp) / "given")
        plain = write_tum(seq, Path(tmp) / "plain")
        (plain / "groundtruth.txt").rename(plain / TRUE_TRAJECTORY_FILE)
        frames = list(hf.datasets.open(given, max_frames=args.frames))
        truth = {round(f.timestamp, 4): f.T_wc for f in frames}
        start = frames[0].T_wc
        grid = {"origin": tuple(seq.gt_heightmap.origin), "shape": seq.gt_heightmap.shape}

        booted = Bootstrapped(hf.datasets.open(plain, max_frames=args.frames), start)
        posed = [(f.timestamp, f.T_wc) for f in booted if f.T_wc is not None]
        mm, deg = pose_errors(posed, truth)
        message = booted.bootstrap.message
        print(message)
        print("\n| run | start | bootstrap poses: frames, median error | fused | ATE mm | map RMSE mm | completeness | "
              "ms a frame | skipped |\n|---|---|---|---|---|---|---|---|---|")
        first = message.split("frame ")[1].split(" ")[0] if "posed from frame" in message else "-"
        result = hf.replay(plain, depth="mvs", track="odometry", start_pose=start, max_frames=args.frames,
                           progress=False, **grid)
        print(row("no trajectory, start pose only (bootstrap)", result, f"frame {first}",
                  f"{len(posed)}, {mm:.1f} mm / {deg:.2f} deg"), flush=True)
        result = hf.replay(given, depth="mvs", track="odometry", max_frames=args.frames, progress=False, **grid)
        print(row("trajectory's poses until the map covers the view", result, "frame 0", "-"), flush=True)

    if args.real.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            images = Path(tmp) / args.real.name
            shutil.copytree(args.real / "rgb", images / "rgb")
            shutil.copy(args.real / "camera.yaml", images)
            truth = list(hf.datasets.open(args.real, undistort=True, max_frames=1))
            booted = Bootstrapped(hf.datasets.open(images, undistort=True), truth[0].T_wc)
            posed = sum(f.T_wc is not None for f in booted)
            print(f"\n{args.real.name} without its trajectory: {posed} frames posed; {booted.bootstrap.message}")


if __name__ == "__main__":
    main()
