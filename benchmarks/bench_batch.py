"""``heightfusion batch`` against the same sequences one after another (issue 15), and a task killed mid-run.

    python benchmarks/bench_batch.py [--sequences 4] [--frames 60] [--depth mvs|sensor] [--out DIR]

1. Writes ``--sequences`` synthetic recordings of the floor scene (320x240, Kinect-like depth noise, a
   different noise seed each: one place recorded several times).
2. One after another: :func:`heightfusion.batch.map_sequence` of each in this process (what ``heightfusion
   replay SEQ --tiles`` does, without a Python start-up per sequence), with the library's own thread counts.
3. The batch: :func:`heightfusion.batch.run_batch` on a local Ray instance sized to the machine. Ray's
   start-up is timed apart: the ratio is printed with and without it. The batch's maps are compared with
   the one-by-one maps (largest height difference).
4. A second batch in which the first sequence's worker is killed (SIGKILL) once it has read a tenth of its
   frames: it is reported and the other sequences are merged.

Issue 15's goal: the batch >= 1.6x faster than one after another on this 2-core machine. Times are of the
machine this runs on (printed with the results; a shared CPU is noisy: the load average is printed too).
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

import heightfusion as hf
from heightfusion.batch import common_lattice, map_sequence, run_batch
from heightfusion.navigation import FreeSpaceSettings
from heightfusion.synthetic import generate, write_tum

SPEED_GOAL = 1.6


def recordings(folder: Path, count: int, frames: int) -> list[Path]:
    """``count`` noisy 320x240 recordings of the floor scene (noise seeds 0, 1, ...) in the TUM layout."""
    return [write_tum(generate("floor", frames=frames, width=320, height=240, noise=True, seed=k, progress=False),
                      folder / f"floor_{k}") for k in range(count)]


def one_by_one(paths: list[Path], out: Path, options: dict) -> float:
    """Seconds to map ``paths`` one after another in this process."""
    start = time.perf_counter()
    for path in paths:
        outcome = map_sequence(path, out / path.name, options, FreeSpaceSettings())
        print(f"  {path.name}: {outcome.frames_used} frames fused at {outcome.fps:.1f} frames/s", flush=True)
    return time.perf_counter() - start


def largest_difference(a: Path, b: Path) -> float:
    """Largest |height difference| (m) between two saved maps over the vertices either observed; inf when
    they differ in grid or observed vertices."""
    ma, mb = hf.load_heightmap(a), hf.load_heightmap(b)
    if ma.shape != mb.shape or not np.array_equal(ma.observed, mb.observed):
        return float("inf")
    return float(np.abs(ma.heights - mb.heights)[ma.observed].max(initial=0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--depth", choices=("mvs", "sensor"), default="mvs")
    parser.add_argument("--out", type=Path, help="folder for the recordings and maps (default: a temporary one)")
    args = parser.parse_args()
    import ray

    root = args.out or Path(tempfile.mkdtemp(prefix="bench_batch_"))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.sequences} sequences of "
          f"{args.frames} frames at 320x240, depth {args.depth}; in {root}", flush=True)
    paths = recordings(root / "data", args.sequences, args.frames)
    options = {"depth": args.depth, **common_lattice(paths)}
    if args.depth == "mvs":
        from heightfusion.depth import StereoConfig

        options["stereo"] = StereoConfig()

    print("\none after another:", flush=True)
    serial = one_by_one(paths, root / "one_by_one", options)
    print(f"  {serial:.1f} s", flush=True)

    print("\nbatch (local Ray):", flush=True)
    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    ray_start = time.perf_counter() - start
    try:
        result = run_batch(paths, root / "batch", options, progress=False)
    finally:
        ray.shutdown()
    batch = result.seconds
    differences = [largest_difference(root / "batch" / "sequences" / p.name / "heightmap.npz",
                                      root / "one_by_one" / p.name / "heightmap.npz") for p in paths]
    for s in result.sequences:
        print(f"  {s.name}: {'ok' if s.ok else 'FAILED: ' + str(s.error)}, {s.frames_used} frames at {s.fps:.1f} frames/s")
    print(f"  Ray start-up {ray_start:.1f} s, batch {batch:.1f} s (with start-up {ray_start + batch:.1f} s)")
    print(f"  largest height difference batch vs one by one: {max(differences) * 1e3:.4f} mm")
    with_start = serial / (ray_start + batch)
    print(f"\nbatch vs one after another: {serial:.1f} s / {batch:.1f} s = {serial / batch:.2f}x faster "
          f"({with_start:.2f}x counting Ray's start-up); goal >= {SPEED_GOAL}x: "
          f"{'met' if with_start >= SPEED_GOAL else 'met without the start-up' if serial / batch >= SPEED_GOAL else 'not met'}",
          flush=True)

    print("\nbatch with the first sequence's worker killed mid-run:", flush=True)
    victim, killed = paths[0].name, {}

    def kill(reports: dict) -> None:
        report = reports.get(victim)
        if report is not None and not killed and report["read"] >= max(1, args.frames // 10):
            killed.update(pid=report["pid"], read=report["read"])
            os.kill(report["pid"], signal.SIGKILL)

    killed_run = run_batch(paths, root / "killed", options, progress=False, on_progress=kill)
    print(f"  killed worker {killed.get('pid')} of {victim} after {killed.get('read')} frames")
    for s in killed_run.sequences:
        print(f"  {s.name}: {'ok' if s.ok else 'FAILED: ' + str(s.error)}")
    merged = [s.name for s in killed_run.sequences if s.ok]
    observed = 0 if killed_run.merged is None else int(killed_run.merged.observed.sum())
    print(f"  merged: {', '.join(merged)} ({observed} vertices observed) in {root / 'killed' / 'merged'}; "
          f"the other {len(paths) - 1} merged: {'yes' if len(merged) == len(paths) - 1 and observed else 'no'}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
