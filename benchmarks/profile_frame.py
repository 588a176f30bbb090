"""Where a frame's time goes: Python profiles (cProfile) of sensor-depth fusion and of motion stereo on
the real sample, and, where the stereo runs on a CUDA device, torch's profile of its operators.

    python benchmarks/profile_frame.py [--frames 40] [--top 20]

For finding the next thing to speed up (a GPU machine especially, where the time is launch and
synchronisation overhead rather than arithmetic); benchmarks/bench_realtime.py gives the figures to report.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import torch

import heightfusion as hf
from heightfusion.depth import MotionStereo, StereoConfig
from heightfusion.depth.stereo import resolve_device
from heightfusion.heldout import split_heldout
from heightfusion.sizing import grid_for_sequence
from real_sample import REAL_SAMPLE

WARM_UP = 5


def print_profile(profile: cProfile.Profile, top: int) -> None:
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(top)
    print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:20000])


def profile_fusion(frames, grid: hf.HeightMap, top: int) -> None:
    renderer = hf.make_renderer("gl")
    fuser = hf.HeightMapFuser(grid, renderer, hf.FusionConfig())
    try:
        for frame in frames[:WARM_UP]:
            fuser.fuse(frame.camera, frame.T_wc, frame.depth, frame.image)
        stages: dict[str, float] = {}
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        for frame in frames[WARM_UP:]:
            for stage, ms in fuser.fuse(frame.camera, frame.T_wc, frame.depth, frame.image).ms.items():
                stages[stage] = stages.get(stage, 0.0) + ms
        profile.disable()
        n = len(frames) - WARM_UP
        print(f"\n1. sensor fusion ({hf.render.context.describe()}): {(time.perf_counter() - start) * 1e3 / n:.1f} ms "
              f"per frame under the profiler; by stage: " + ", ".join(f"{k} {v / n:.1f}" for k, v in stages.items()))
        print_profile(profile, top)
    finally:
        fuser.release()
        renderer.release()


def profile_stereo(frames, top: int) -> None:
    device = resolve_device(StereoConfig().device)
    motion = MotionStereo(StereoConfig())
    for frame in frames[:WARM_UP]:
        motion.push(frame.camera, frame.T_wc, frame.image)
    profile = cProfile.Profile()
    start = time.perf_counter()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as operators:
        profile.enable()
        estimated = sum(motion.push(f.camera, f.T_wc, f.image).estimate is not None for f in frames[WARM_UP:])
        profile.disable()
    n = len(frames) - WARM_UP
    print(f"\n2. motion stereo on {device}: {(time.perf_counter() - start) * 1e3 / n:.1f} ms per frame under both "
          f"profilers ({estimated} of {n} frames with depth)")
    print_profile(profile, top)
    events = operators.key_averages()
    print(f"   torch operator records per frame (nested ones and graph captures included): "
          f"{sum(e.count for e in events) / n:.0f}")
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=top, max_name_column_width=40))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    sequence = hf.datasets.open(REAL_SAMPLE, undistort=True, max_frames=args.frames)
    frames = list(sequence)
    fused, _ = split_heldout(frames, 5)
    profile_fusion(fused, grid_for_sequence(sequence), args.top)
    profile_stereo(frames, args.top)


if __name__ == "__main__":
    main()
