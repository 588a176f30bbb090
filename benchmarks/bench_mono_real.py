"""Monocular depth on real frames (issue 12): motion stereo's per-frame depth against the Kinect's, with the
poses as given and with ``--track refine``.

    python benchmarks/bench_mono_real.py [--path ../shared/data/tum_fr1_rpy_first180] [--frames 60]

Each frame goes through :class:`heightfusion.FramePipeline` with ``depth="mvs"`` (the depth images are not
used), fused into a map as ``replay --depth mvs`` fuses it; every stereo estimate is compared with the same
frame's Kinect depth (undistorted, registered to the colour image) on the pixels both have: median
|relative error|, share within 5 %, density (share of the Kinect's pixels stereo gives a value), and the
share of stereo's errors within its own 1 sigma. The tracking cost and the frames stereo or tracking
skipped are printed too. Times are of this machine (printed first).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

import heightfusion as hf
from heightfusion.pipeline import FramePipeline, SkippedFrame, fusion_config
from heightfusion.render import context
from heightfusion.sizing import grid_for_sequence
from heightfusion.tracking import Tracker
from heightfusion.up_axis import UpAligned, default_up, up_rotation

DEFAULT_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tum_fr1_rpy_first180"


def run(path: Path, frames: int, track: str) -> dict:
    """Stereo depth against the Kinect's over the first ``frames`` frames of ``path`` with ``track``."""
    sequence = hf.datasets.open(path, max_frames=frames, undistort=True)
    sequence = UpAligned(sequence, up_rotation(default_up(sequence.format), sequence))
    grid = grid_for_sequence(sequence, None, None, None)
    renderer = hf.make_renderer("gl")
    fuser = hf.HeightMapFuser(grid, renderer, fusion_config(True))
    tracker = None if track == "off" else Tracker(track, renderer)
    pipeline = FramePipeline(fuser, "mvs", tracker=tracker)
    relative, within_sigma, density, skipped = [], [], [], Counter()
    start = time.perf_counter()
    for frame in sequence:
        result = pipeline.process(frame)
        if isinstance(result, SkippedFrame):
            skipped[result.reason] += 1
            continue
        kinect = frame.depth
        both = np.isfinite(result.depth) & np.isfinite(kinect)
        if not both.any():
            continue
        error = result.depth[both] - kinect[both]
        relative.append(np.abs(error) / kinect[both])
        within_sigma.append(np.abs(error) <= result.sigma[both])
        density.append(both.sum() / max(np.isfinite(kinect).sum(), 1))
    seconds = time.perf_counter() - start
    fuser.release()
    renderer.release()
    relative = np.concatenate(relative) if relative else np.zeros(0)
    return {
        "frames estimated": len(density),
        "median relative error %": 100 * float(np.median(relative)) if len(relative) else float("nan"),
        "within 5 %": float(np.mean(relative <= 0.05)) if len(relative) else float("nan"),
        "density": float(np.mean(density)) if density else float("nan"),
        "within 1 sigma": float(np.mean(np.concatenate(within_sigma))) if within_sigma else float("nan"),
        "ms track": pipeline.timer.mean_ms(frames=max(len(sequence), 1)).get("track", 0.0),
        "ms stereo": pipeline.timer.mean_ms(frames=max(len(sequence), 1)).get("stereo", 0.0),
        "seconds": seconds,
        "skipped": dict(skipped),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="a TUM RGB-D sequence with depth")
    parser.add_argument("--frames", type=int, default=60, help="first N frames (default 60)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; OpenGL: {context.describe()}; {args.path.name}, {args.frames} frames")
    print("| poses | frames estimated | median rel. error % | within 5 % | density | within 1 sigma | ms stereo | ms track | skipped |")
    print("|---|---|---|---|---|---|---|---|---|")
    for track in ("off", "refine"):
        r = run(args.path, args.frames, track)
        print(f"| {'as given' if track == 'off' else 'track refine'} | {r['frames estimated']} | "
              f"{r['median relative error %']:.1f} | {r['within 5 %']:.2f} | {r['density']:.2f} | "
              f"{r['within 1 sigma']:.2f} | {r['ms stereo']:.0f} | {r['ms track']:.0f} | {r['skipped']} |", flush=True)


if __name__ == "__main__":
    main()
