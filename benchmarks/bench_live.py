"""The live app's loop on a recording, against offline replay in the same process and context.

    xvfb-run -a python benchmarks/bench_live.py [--runs 3] [--dataset PATH] [--depth auto|sensor|mvs]
    xvfb-run -a python benchmarks/bench_live.py --dataset ../shared/data/tum_fr1_rpy_first180 --depth mvs --runs 1

Baseline: ``heightfusion.replay.replay`` of the recording (default: the bundled sample, sensor depth; no
window work). Then the live loop (hidden 1280x720 window: fusion, free space, pictures, drawing) on the
same frames:

- every frame, as fast as it goes (``--every-frame``): its frames/s over the baseline's is what the
  window costs;
- played at the recording's own timestamps (the default for a recording): frames/s fused, and frames
  dropped because fusion had no time for them;
- with ``--depth mvs``: the stereo runs as the live app chooses (``LiveSettings(stereo_process=None)``: a
  child process for every frame, a thread at the recording's pace), then each run the other way (every
  frame with the stereo on a thread, at the pace in the child process), and every frame with
  ``LiveSettings(stereo_ahead=False)``: stereo and fusion in turn instead of overlapping. Runs of each kind
  alternate, so a host that speeds up or slows down affects them alike.

The goals: >= 10 frames/s fused at 320x240 with sensor depth on this CPU (issue 6); >= 5 frames/s live
from monocular stereo on real 640x480 frames (issue 13: the second command).
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
from heightfusion.pipeline import fusion_config
from heightfusion.render import context
from heightfusion.replay import replay
from heightfusion.sizing import grid_for_sequence
from heightfusion.up_axis import UpAligned, default_up, up_rotation
from heightfusion.viewer.window import Window

#: frames/s fused: sensor depth at 320x240 (issue 6), monocular stereo (issue 13).
GOAL_FPS = {"sensor": 10.0, "mvs": 5.0}


def live_run(window: Window, pace: bool, out: Path, path: Path, depth: str, ahead: bool = True,
             process: bool | None = None):
    """One live run over the recording at ``path``, opened as ``heightfusion live`` opens it; its LiveResult
    (``process``: ``LiveSettings.stereo_process``, None the app's choice)."""
    sequence, with_depth = hf.datasets.open_for_depth(path, depth, undistort=True)
    rotation = up_rotation(default_up(sequence.format), with_depth)
    sequence = UpAligned(sequence, rotation)
    grid = grid_for_sequence(UpAligned(with_depth, rotation))
    app = LiveApp(window, LatestFrameSource(sequence, pace=pace, drop=pace), hf.make_renderer("gl"),
                  lambda frame: hf.HeightMap(tuple(grid.origin), grid.cell_size, grid.shape), free_space,
                  LiveSettings(out=out, exit_at_end=True, depth=depth, config=fusion_config(depth == "mvs"),
                               stereo_ahead=ahead, stereo_process=process))
    result = app.run()
    app.release()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind (median reported)")
    parser.add_argument("--dataset", type=Path, default=hf.datasets.sample_path(), help="recording (default: the bundled sample)")
    parser.add_argument("--depth", choices=("auto", "sensor", "mvs"), default="auto",
                        help="depth source, as for replay (default auto: the recording's depth images)")
    args = parser.parse_args()

    window = Window("bench_live", (1280, 720), visible=False)  # its context serves replay too
    print(context.describe())
    replay(max_frames=5, progress=False)  # warm-up: shaders, torch
    base = statistics.median(replay(args.dataset, depth=args.depth, progress=False).fps for _ in range(args.runs))
    kinds = {"every": {}, "paced": {"pace": True}}
    if args.depth == "mvs":
        kinds.update(threaded={"process": False}, paced_process={"pace": True, "process": True},
                     in_turn={"ahead": False})
    results = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            for kind, options in kinds.items():
                options = {"pace": False, **options}
                results[kind].append(live_run(window, options.pop("pace"), Path(tmp), args.dataset, args.depth, **options))
    window.destroy()
    every, paced = results["every"], results["paced"]

    every_fps = statistics.median(r.fps for r in every)
    paced_fps = statistics.median(r.fps for r in paced)
    dropped = statistics.median(r.dropped for r in paced)
    sequence = hf.datasets.open(args.dataset)
    camera = sequence.camera
    print(f"{sequence.name}: {len(sequence)} frames at {camera.width}x{camera.height}, depth {args.depth}; "
          f"median of {args.runs} runs")
    print(f"{'run':<38}{'frames/s':>10}{'vs replay':>11}")
    print(f"{'replay (baseline, no window)':<38}{base:>10.1f}{1.0:>11.2f}")
    print(f"{'live, every frame':<38}{every_fps:>10.1f}{every_fps / base:>11.2f}")
    print(f"{'live, at the recording pace':<38}{paced_fps:>10.1f}{paced_fps / base:>11.2f}   dropped {dropped:.0f} frames")
    for kind, title in (("threaded", "live, every frame, stereo on a thread"),
                        ("paced_process", "live, at the pace, stereo process"),
                        ("in_turn", "live, every frame, no stereo ahead")):
        if results.get(kind):
            fps = statistics.median(r.fps for r in results[kind])
            print(f"{title:<38}{fps:>10.1f}{fps / base:>11.2f}")
    goal = GOAL_FPS["mvs" if args.depth == "mvs" else "sensor"]
    print(f"goal >= {goal:g} frames/s fused: {'met' if min(every_fps, paced_fps) >= goal else 'NOT met'}")


if __name__ == "__main__":
    main()
