"""The live app's loop on the bundled sample, against offline replay in the same process and context.

    xvfb-run -a python benchmarks/bench_live.py [--runs 3]     (or on a desktop, without xvfb-run)

Baseline: ``heightfusion.replay.replay`` of the bundled sample (sensor depth, no window work). Then the
live loop (hidden 1280x720 window: fusion, free space, pictures, drawing) on the same frames:

- every frame, as fast as it goes (``--every-frame``): its frames/s over the baseline's is what the
  window costs;
- played at the recording's own timestamps (the default for a recording): frames/s fused, and frames
  dropped because fusion had no time for them.

The goal (issue 6): >= 10 frames/s fused at 320x240 with sensor depth on this CPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import heightfusion as hf
from heightfusion.live.app import LiveApp, LiveSettings
from heightfusion.live.sources import LatestFrameSource
from heightfusion.navigation import free_space
from heightfusion.render import context
from heightfusion.replay import replay
from heightfusion.viewer.window import Window

GOAL_FPS = 10.0


def live_run(window: Window, pace: bool, out: Path):
    """One live run over the bundled sample; its LiveResult."""
    sequence = hf.datasets.open(hf.datasets.sample_path())
    gt = sequence.gt_heightmap
    app = LiveApp(window, LatestFrameSource(sequence, pace=pace, drop=pace), hf.make_renderer("gl"),
                  lambda frame: hf.HeightMap(tuple(gt.origin), gt.cell_size, gt.shape), free_space,
                  LiveSettings(out=out, exit_at_end=True))
    result = app.run()
    app.release()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind (median reported)")
    args = parser.parse_args()

    window = Window("bench_live", (1280, 720), visible=False)  # its context serves replay too
    print(context.describe())
    replay(progress=False)  # warm-up: shaders, torch
    base = statistics.median(replay(progress=False).fps for _ in range(args.runs))
    with tempfile.TemporaryDirectory() as tmp:
        every = [live_run(window, False, Path(tmp)) for _ in range(args.runs)]
        paced = [live_run(window, True, Path(tmp)) for _ in range(args.runs)]
    window.destroy()

    every_fps = statistics.median(r.fps for r in every)
    paced_fps = statistics.median(r.fps for r in paced)
    dropped = statistics.median(r.dropped for r in paced)
    print(f"bundled sample, {len(hf.datasets.open(hf.datasets.sample_path()))} frames at 320x240, sensor depth; "
          f"median of {args.runs} runs")
    print(f"{'run':<38}{'frames/s':>10}{'vs replay':>11}")
    print(f"{'replay (baseline, no window)':<38}{base:>10.1f}{1.0:>11.2f}")
    print(f"{'live, every frame':<38}{every_fps:>10.1f}{every_fps / base:>11.2f}")
    print(f"{'live, at the recording pace':<38}{paced_fps:>10.1f}{paced_fps / base:>11.2f}   dropped {dropped:.0f} frames")
    print(f"goal >= {GOAL_FPS:g} frames/s fused: {'met' if min(every_fps, paced_fps) >= GOAL_FPS else 'NOT met'}")


if __name__ == "__main__":
    main()
