"""``heightfusion batch`` against the same sequences one after another (issue 15), and a task killed mid-run.

    python benchmarks/bench_batch.py [--sequences 4] [--frames 60] [--depth mvs|sensor] [--rounds 1] [--out DIR]

1. Writes ``--sequences`` synthetic recordings of the floor scene (320x240, Kinect-like depth noise, a
   different noise seed each: one place recorded several times).
2. One after another: :func:`heightfusion.batch.map_sequence` of each in this process (what ``heightfusion
   replay SEQ --tiles`` does, without a Python start-up per sequence), with the library's own thread counts.
3. The batch: :func:`heightfusion.batch.run_batch` on a local Ray instance sized to the machine. Ray's
   start-up is timed apart: the ratio is printed with and without it. With ``--rounds R`` steps 2 and 3
   run in turn R times and the best times are compared (a shared machine's load comes and goes). The
   batch's maps are compared with the one-by-one maps (largest height difference).
4. A second batch in which the first sequence's worker is killed (SIGKILL) once it has read a tenth of its
   frames: it is reported and the other sequences are merged.

Issue 15's goal: the batch >= 1.6x faster than one after another on this 2-core machine. Times are of the
machine this runs on (printed with the results; a shared CPU is noisy: the load average is printed too).
The CPU time each sequence took (its process, all threads) shows whether the batch does more work than
one after another, apart from how much of the machine other programs left it; and the cores busy
processes get at the start and the end (:func:`cores_available`) say how much of it they left.
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


def _spin(seconds: float) -> float:
    """Busy for ``seconds`` of wall-clock time; the CPU seconds it got."""
    start, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        pass
    return time.process_time() - cpu


def cores_available(seconds: float = 2.0) -> float:
    """Cores this machine gives a process per core right now: the CPU seconds that as many busy processes as
    it has CPUs get in ``seconds``, over ``seconds`` (other programs' load takes the rest)."""
    from concurrent.futures import ProcessPoolExecutor

    n = os.cpu_count() or 1
    with ProcessPoolExecutor(n) as pool:
        return sum(pool.map(_spin, [seconds] * n)) / seconds


def recordings(folder: Path, count: int, frames: int) -> list[Path]:
    """``count`` noisy 320x240 recordings of the floor scene (noise seeds 0, 1, ...) in the TUM layout."""
    return [write_tum(generate("floor", frames=frames, width=320, height=240, noise=True, seed=k, progress=False),
                      folder / f"floor_{k}") for k in range(count)]


def one_by_one(paths: list[Path], out: Path, options: dict) -> float:
    """Seconds to map ``paths`` one after another in this process."""
    start = time.perf_counter()
    cpu = 0.0
    for path in paths:
        outcome = map_sequence(path, out / path.name, options, FreeSpaceSettings())
        cpu += outcome.cpu_seconds
        print(f"  {path.name}: {outcome.frames_used} frames fused at {outcome.fps:.1f} frames/s, "
              f"{outcome.cpu_seconds:.1f} CPU s", flush=True)
    print(f"  CPU time {cpu:.1f} s in all")
    return time.perf_counter() - start


def height_differences(a: Path, b: Path) -> np.ndarray:
    """|height differences| (m) between two saved maps at their observed vertices; [inf] when they differ in
    grid or observed vertices."""
    ma, mb = hf.load_heightmap(a), hf.load_heightmap(b)
    if ma.shape != mb.shape or not np.array_equal(ma.observed, mb.observed):
        return np.array([np.inf])
    return np.abs(ma.heights - mb.heights)[ma.observed]


def timed_batch(paths: list[Path], out: Path, options: dict) -> tuple[float, float]:
    """Seconds to start a local Ray instance sized to the machine, and to run the batch on it."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    ray_start = time.perf_counter() - start
    try:
        result = run_batch(paths, out, options, progress=False)
    finally:
        ray.shutdown()
    for s in result.sequences:
        print(f"  {s.name}: {'ok' if s.ok else 'FAILED: ' + str(s.error)}, {s.frames_used} frames at {s.fps:.1f} "
              f"frames/s, {s.cpu_seconds:.1f} CPU s")
    print(f"  CPU time {sum(s.cpu_seconds for s in result.sequences):.1f} s in all (the tasks' processes)")
    return ray_start, result.seconds


def killed_run(paths: list[Path], out: Path, options: dict, after: int) -> None:
    """A batch whose first sequence's worker is SIGKILLed once it has read ``after`` frames; prints what is merged."""
    victim, killed = paths[0].name, {}

    def kill(reports: dict) -> None:
        report = reports.get(victim)
        if report is not None and not killed and report["read"] >= after:
            killed.update(pid=report["pid"], read=report["read"])
            os.kill(report["pid"], signal.SIGKILL)

    result = run_batch(paths, out, options, progress=False, on_progress=kill)
    print(f"  killed worker {killed.get('pid')} of {victim} after {killed.get('read')} frames")
    for s in result.sequences:
        print(f"  {s.name}: {'ok' if s.ok else 'FAILED: ' + str(s.error)}")
    merged = [s.name for s in result.sequences if s.ok]
    observed = 0 if result.merged is None else int(result.merged.observed.sum())
    print(f"  merged: {', '.join(merged)} ({observed} vertices observed) in {out / 'merged'}; "
          f"the other {len(paths) - 1} merged: {'yes' if len(merged) == len(paths) - 1 and observed else 'no'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--depth", choices=("mvs", "sensor"), default="mvs")
    parser.add_argument("--rounds", type=int, default=1,
                        help="one-after-another and batch runs in turn, this many times; the best of each is compared")
    parser.add_argument("--out", type=Path, help="folder for the recordings and maps (default: a temporary one)")
    args = parser.parse_args()

    root = args.out or Path(tempfile.mkdtemp(prefix="bench_batch_"))
    print(f"machine: {os.cpu_count()} CPUs ({cores_available():.2f} available to busy processes now), load average "
          f"{os.getloadavg()[0]:.2f}; {args.sequences} sequences of "
          f"{args.frames} frames at 320x240, depth {args.depth}; in {root}", flush=True)
    paths = recordings(root / "data", args.sequences, args.frames)
    options = {"depth": args.depth, **common_lattice(paths)}
    if args.depth == "mvs":
        from heightfusion.depth import StereoConfig

        options["stereo"] = StereoConfig()
    serial, batch, with_start = [], [], []
    for k in range(args.rounds):
        print(f"\nround {k + 1}, one after another (load average {os.getloadavg()[0]:.2f}):", flush=True)
        serial.append(one_by_one(paths, root / "one_by_one", options))
        print(f"  {serial[-1]:.1f} s\nround {k + 1}, batch on a local Ray (load average {os.getloadavg()[0]:.2f}):",
              flush=True)
        ray_start, seconds = timed_batch(paths, root / "batch", options)
        batch.append(seconds)
        with_start.append(ray_start + seconds)
        print(f"  Ray start-up {ray_start:.1f} s, batch {seconds:.1f} s (with start-up {with_start[-1]:.1f} s)", flush=True)
    d = np.concatenate([height_differences(root / "batch" / "sequences" / p.name / "heightmap.npz",
                                           root / "one_by_one" / p.name / "heightmap.npz") for p in paths])
    print(f"\nheights, batch vs one by one (same observed vertices): median |dh| {np.median(d) * 1e3:.4f} mm, "
          f"largest {d.max() * 1e3:.4f} mm, {np.mean(d > 1e-5):.2%} of {len(d)} vertices over 0.01 mm")
    ratio, ratio_start = min(serial) / min(batch), min(serial) / min(with_start)
    verdict = "met" if ratio_start >= SPEED_GOAL else "met without Ray's start-up" if ratio >= SPEED_GOAL else "not met"
    print(f"batch vs one after another (best of {args.rounds}): {min(serial):.1f} s / {min(batch):.1f} s = {ratio:.2f}x "
          f"faster, {ratio_start:.2f}x counting Ray's start-up ({min(with_start):.1f} s); goal >= {SPEED_GOAL}x: {verdict}",
          flush=True)

    print("\nbatch with the first sequence's worker killed mid-run:", flush=True)
    killed_run(paths, root / "killed", options, max(1, args.frames // 10))
    print(f"load average at the end {os.getloadavg()[0]:.2f}; {cores_available():.2f} of {os.cpu_count()} CPUs available "
          "to busy processes")


if __name__ == "__main__":
    main()
