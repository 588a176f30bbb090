"""llvmpipe's rasterizer threads: fusion of real 640x480 frames against the Kalman map, per thread count.

    xvfb-run -a python benchmarks/bench_threads.py [--threads 2 4 8] [--rounds 2] [--frames 180]

Each thread count runs in its own process (``LP_NUM_THREADS`` is read when the GL context is created), the
counts alternating round by round so that all see the same load: the TUM fr1/rpy frames (undistorted,
every 5th held out, as benchmarks/bench_realtime.py's sensor setting "auto") fused with the default
settings, each frame timed next to the Kalman elevation map's fusion of the same frame. Printed per run:
ms per frame of both, their ratio, and the held-out median |dh| and coverage (the map must not change).
The library's default is :data:`heightfusion.render.context.LLVMPIPE_MIN_THREADS` threads at least.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from real_sample import REAL_SAMPLE



def one_run(frames_limit: int) -> dict:
    """Fuse the real frames in this process; its ms per frame, the Kalman map's and the held-out score."""
    import heightfusion as hf
    from heightfusion.baselines import KalmanElevationMap
    from heightfusion.heldout import score_heldout, split_heldout
    from heightfusion.sizing import grid_for_sequence

    sequence = hf.datasets.open(REAL_SAMPLE, undistort=True, max_frames=frames_limit)
    frames, held_out = split_heldout(list(sequence), 5)
    renderer = hf.make_renderer("gl")
    grid = grid_for_sequence(sequence)
    fuser = hf.HeightMapFuser(grid, renderer, hf.FusionConfig())
    kalman = KalmanElevationMap(grid_for_sequence(sequence))
    ms, kalman_ms = [], []
    for frame in frames:
        start = time.perf_counter()
        fuser.fuse(frame.camera, frame.T_wc, frame.depth, frame.image)
        ms.append(time.perf_counter() - start)
        start = time.perf_counter()
        kalman.fuse(frame.camera, frame.T_wc, frame.depth, frame.image, timestamp=frame.timestamp)
        kalman_ms.append(time.perf_counter() - start)
    fuser.release()
    renderer.release()
    score = score_heldout(grid, held_out)
    return {"ms": 1e3 * float(np.mean(ms)), "kalman_ms": 1e3 * float(np.mean(kalman_ms)),
            "median_mm": 1e3 * score["median"], "coverage": score["coverage"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 4, 8], help="LP_NUM_THREADS values")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frames", type=int, default=180)
    parser.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one_run:
        print(json.dumps(one_run(args.frames)))
        return
    print(f"{'threads':>7} {'round':>5} {'fusion ms':>9} {'Kalman ms':>9} {'ratio':>6} {'median |dh| mm':>14} {'coverage':>8}")
    ratios: dict[int, list[float]] = {n: [] for n in args.threads}
    for round_ in range(args.rounds):
        for threads in args.threads:
            env = {**os.environ, "LP_NUM_THREADS": str(threads)}
            out = subprocess.run([sys.executable, __file__, "--one-run", "--frames", str(args.frames)], env=env,
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            ratios[threads].append(r["ms"] / r["kalman_ms"])
            print(f"{threads:7d} {round_ + 1:5d} {r['ms']:9.1f} {r['kalman_ms']:9.1f} {ratios[threads][-1]:6.2f} "
                  f"{r['median_mm']:14.2f} {r['coverage']:8.3f}", flush=True)
    print("ratio to the Kalman map, by threads: " +
          ", ".join(f"{n}: {min(v):.2f}-{max(v):.2f}" for n, v in ratios.items()))


if __name__ == "__main__":
    main()
