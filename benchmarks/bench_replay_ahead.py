"""Monocular replay with the stereo in turn, ahead on a worker thread (replay's default) and ahead in a child
process, alternated, on the real 640x480 frames.

    xvfb-run -a python benchmarks/bench_replay_ahead.py [--frames N] [--rounds 2]

Per run: fused frames/s over the whole run (what a user waits for) and from the 20th fused frame on (the
rate once everything runs: the child process takes seconds to start), and ms per stage. The runs alternate
(in turn, thread, process, in turn, ...) so that a change of the shared host's speed shows as a spread
rather than as a difference between the settings. A short warm-up replay comes first (shaders, torch,
CUDA graphs where the stereo runs on a GPU).
"""

from __future__ import annotations

import argparse
import time

import heightfusion as hf
from heightfusion.depth.stereo import resolve_device
from heightfusion.depth import StereoConfig
from heightfusion.render import context
from real_sample import REAL_SAMPLE

#: (name, stereo_ahead, stereo_process) of the settings compared.
SETTINGS = (("in turn", False, False), ("ahead, thread", True, False), ("ahead, process", True, True))
#: Fused frames before the steady rate is measured.
STEADY_AFTER = 20


class FusedClock:
    """A replay sink that notes when each fused frame is done."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def log_frame(self, frame, depth, grid) -> None:
        if depth is not None:
            self.times.append(time.perf_counter())

    def log_map(self, grid) -> None:
        pass

    def steady_fps(self) -> float:
        """Fused frames/s after the first STEADY_AFTER (NaN when the run fused too few for it)."""
        t = self.times[STEADY_AFTER:]
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 10 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, help="replay only the first N frames (default all)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each setting, alternated (default 2)")
    args = parser.parse_args()
    hf.replay(REAL_SAMPLE, depth="mvs", max_frames=8, progress=False)
    print(f"{context.describe()}; stereo on {resolve_device(StereoConfig().device)}; {REAL_SAMPLE.name}")
    print(f"{'setting':>16} {'fused':>6} {'seconds':>8} {'fused/s':>8} {'steady fused/s':>15}   ms per fused frame")
    for _ in range(args.rounds):
        for name, ahead, process in SETTINGS:
            clock = FusedClock()
            run = hf.replay(REAL_SAMPLE, depth="mvs", max_frames=args.frames, progress=False, sink=clock,
                            stereo_ahead=ahead, stereo_process=process)
            stages = ", ".join(f"{k} {v:.1f}" for k, v in run.ms_per_frame.items())
            print(f"{name:>16} {run.frames_used:>6} {run.seconds:8.1f} {run.fps:8.2f} {clock.steady_fps():15.2f}   {stages}",
                  flush=True)


if __name__ == "__main__":
    main()
