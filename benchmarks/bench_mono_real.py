"""Monocular depth on real frames (issue 12): motion stereo's per-frame depth against the Kinect's, with the
poses as given and with ``--track refine``.

    python benchmarks/bench_mono_real.py [--path ../shared/data/tum_fr1_rpy_first180] [--frames 60]

Each frame goes through :class:`heightfusion.FramePipeline` with ``depth="mvs"`` (the depth images are not
used), fused into a map as ``replay --depth mvs`` fuses it; every stereo estimate is compared with the same
frame's Kinect depth (undistorted, registered to the colour image) on the pixels both have: median
|relative error|, share within 5 %, density (share of the Kinect's pixels stereo gives a value), and the
share of stereo's errors within its own 1 sigma; and by the Kinect's depth (bands of :data:`DEPTH_BANDS`):
the share of the compared pixels, median |relative error| and median signed relative error (the bias).
The tracking cost and the frames stereo or tracking skipped are printed too. Then the maps: every 5th frame held out (``heightfusion.heldout``), the rest fused
from the Kinect depth and from monocular stereo (poses as given, and refined; and as given with the
keyframe window of the earlier default, 10 keyframes and 4 sources, beside the current 24 and 3), each
scored against the held-out frames' depth: median |dh| and coverage, stereo's median as a multiple of the
sensor map's, frames fused and fused frames/s.
Times are of this machine (printed first).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

import heightfusion as hf
from heightfusion.heldout import score_heldout
from heightfusion.pipeline import FramePipeline, SkippedFrame, fusion_config
from heightfusion.render import context
from heightfusion.sizing import grid_for_sequence
from heightfusion.tracking import Tracker
from heightfusion.up_axis import UpAligned, default_up, up_rotation
from real_sample import REAL_SAMPLE

#: The keyframe window and sources of the earlier default (KeyframeConfig), fused beside the current one.
EARLIER_KEYFRAMES = (10, 4)
#: Kinect depth bands (metres) that the per-pixel errors are broken down by.
DEPTH_BANDS = (0.0, 0.8, 1.2, 1.6, 2.2, 10.0)


def run(path: Path, frames: int, track: str) -> dict:
    """Stereo depth against the Kinect's over the first ``frames`` frames of ``path`` with ``track``."""
    sequence = hf.datasets.open(path, max_frames=frames, undistort=True)
    sequence = UpAligned(sequence, up_rotation(default_up(sequence.format), sequence))
    grid = grid_for_sequence(sequence, None, None, None)
    renderer = hf.make_renderer("gl")
    fuser = hf.HeightMapFuser(grid, renderer, fusion_config(True))
    tracker = None if track == "off" else Tracker(track, renderer)
    pipeline = FramePipeline(fuser, "mvs", tracker=tracker)
    signed, kinect_depths, within_sigma, density, skipped = [], [], [], [], Counter()
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
        signed.append(error / kinect[both])
        kinect_depths.append(kinect[both])
        within_sigma.append(np.abs(error) <= result.sigma[both])
        density.append(both.sum() / max(np.isfinite(kinect).sum(), 1))
    seconds = time.perf_counter() - start
    fuser.release()
    renderer.release()
    signed = np.concatenate(signed) if signed else np.zeros(0)
    relative = np.abs(signed)
    kinect_depths = np.concatenate(kinect_depths) if kinect_depths else np.zeros(0)
    bands = []
    for lo, hi in zip(DEPTH_BANDS[:-1], DEPTH_BANDS[1:]):
        inside = (kinect_depths >= lo) & (kinect_depths < hi)
        if inside.any():
            bands.append((lo, hi, float(inside.mean()), 100 * float(np.median(relative[inside])),
                          100 * float(np.median(signed[inside]))))
    ms = pipeline.timer.mean_ms(frames=max(len(sequence), 1))
    return {
        "frames estimated": len(density),
        "median relative error %": 100 * float(np.median(relative)) if len(relative) else float("nan"),
        "within 5 %": float(np.mean(relative <= 0.05)) if len(relative) else float("nan"),
        "density": float(np.mean(density)) if density else float("nan"),
        "within 1 sigma": float(np.mean(np.concatenate(within_sigma))) if within_sigma else float("nan"),
        "ms track": ms.get("track", 0.0),
        "ms stereo": ms.get("stereo", 0.0),
        "seconds": seconds,
        "skipped": dict(skipped),
        "bands": bands,
    }


def heldout_maps(path: Path, frames: int) -> list[tuple[str, dict, hf.ReplayResult]]:
    """(run, held-out score, replay result) of the maps fused from sensor depth and from stereo (as given,
    refined, and as given with the keyframe window of the earlier default, :data:`EARLIER_KEYFRAMES`)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_tracking import heldout_split
    from heightfusion.depth import KeyframeConfig

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fuse, held_out = heldout_split(path, Path(tmp) / "fuse", max_frames=frames)
        window, sources = EARLIER_KEYFRAMES
        for name, depth, track, keyframes in (
                ("sensor depth", "sensor", "off", None), ("stereo, poses as given", "mvs", "off", None),
                ("stereo, track refine", "mvs", "refine", None),
                (f"stereo, poses as given, {window} keyframes / {sources} sources", "mvs", "off",
                 KeyframeConfig(window=window, num_sources=sources))):
            result = hf.replay(fuse, depth=depth, track=track, keyframes=keyframes, progress=False)
            rows.append((name, score_heldout(result.grid, held_out), result))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", type=Path, default=REAL_SAMPLE, help="a TUM RGB-D sequence with depth")
    parser.add_argument("--frames", type=int, default=60, help="first N frames (default 60)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; OpenGL: {context.describe()}; {args.path.name}, {args.frames} frames")
    print("| poses | frames estimated | median rel. error % | within 5 % | density | within 1 sigma | ms stereo | ms track | skipped |")
    print("|---|---|---|---|---|---|---|---|---|")
    runs = {}
    for track in ("off", "refine"):
        r = runs[track] = run(args.path, args.frames, track)
        print(f"| {'as given' if track == 'off' else 'track refine'} | {r['frames estimated']} | "
              f"{r['median relative error %']:.1f} | {r['within 5 %']:.2f} | {r['density']:.2f} | "
              f"{r['within 1 sigma']:.2f} | {r['ms stereo']:.0f} | {r['ms track']:.0f} | {r['skipped']} |", flush=True)
    print("\n| poses | Kinect depth m | share of pixels | median rel. error % | median signed rel. error % |\n|---|---|---|---|---|")
    for track, r in runs.items():
        for lo, hi, share, error, bias in r["bands"]:
            print(f"| {'as given' if track == 'off' else 'track refine'} | {lo:g}-{hi:g} | {share:.2f} | {error:.1f} | {bias:+.1f} |")
    print("\n| map (every 5th frame held out) | held-out median mm | coverage | vs sensor map | frames fused | "
          "fused frames/s |\n|---|---|---|---|---|---|")
    sensor = None
    for name, score, result in heldout_maps(args.path, args.frames):
        sensor = score["median"] if sensor is None else sensor
        print(f"| {name} | {score['median'] * 1e3:.1f} | {score['coverage']:.3f} | {score['median'] / sensor:.2f}x | "
              f"{result.frames_used} | {result.fps:.2f} |", flush=True)


if __name__ == "__main__":
    main()
