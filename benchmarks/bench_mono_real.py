"""Monocular depth on real frames (issue 12): motion stereo's per-frame depth against the Kinect's, with the
poses as given and with ``--track refine`` (fronto-parallel planes, the default, and horizontal planes below the
camera, ``planes="below"``), as given with a rolling shutter (``StereoConfig.readout_s``), and with the poses at
the time offset of the trajectory's clock that the recording's frame pairs measure (``heightfusion camera-offset``,
``replay --time-offset-ms``; measured in the run from all the recording's frames, with their depth images), and the
depth images' own clock offset (``replay --depth-time-offset-ms``, :mod:`heightfusion.depth_clock`, measured too);
and at the time offset with the poses' own error (``replay --pose-sigma``, what ``camera-offset`` measures from the
same pairs), which stereo's sigma and the map's then count.

    python benchmarks/bench_mono_real.py [--path ../shared/data/tum_fr1_rpy_first180] [--frames 60] [--splits 5]

Each frame goes through :class:`heightfusion.FramePipeline` with ``depth="mvs"`` (the depth images are not
used), fused into a map as ``replay --depth mvs`` fuses it; every stereo estimate is compared with the same
frame's Kinect depth (undistorted, registered to the colour image) on the pixels both have: median
|relative error|, share within 5 %, density (share of the Kinect's pixels stereo gives a value), and the
share of stereo's errors within its own 1 sigma; and by the Kinect's depth (bands of :data:`DEPTH_BANDS`):
the share of the compared pixels, median |relative error| and median signed relative error (the bias).
The tracking cost and the frames stereo or tracking skipped are printed too. Then the maps: every 5th frame
held out (``heightfusion.heldout``), the rest fused from the Kinect depth and from monocular stereo (poses as
given and refined, with either plane family; as given with a rolling shutter; then sensor depth and stereo as given
and refined at the time offset, sensor depth at both clock offsets, and sensor depth and stereo with the pose
sigma), each scored against the held-out frames' depth: median |dh| and coverage, stereo's median as a multiple of
the sensor map's (the one above it), the share of held-out points within the map's 1 sigma (with the Kinect's
noise in quadrature), frames fused and fused frames/s. The held-out frames are taken at both measured clock offsets, where their depth was
seen from (``--reference-as-recorded``: at the recording's stamps, as before 2026-12-05's depth clock).
A monocular map's score depends much on which frames it was fused from (on the real sample 38-76 mm over the
five splits), so each map is fused and scored on ``--splits`` of the five ways to hold out every 5th frame,
and the table gives the mean, the range and every split's figure.
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
from heightfusion.camera_offset import fit_camera_offset, fit_time_offset, measured_motions
from heightfusion.depth_clock import fit_depth_time_offset
from heightfusion.depth import StereoConfig
from heightfusion.heldout import DEFAULT_EVERY, score_heldout
from heightfusion.pipeline import FramePipeline, SkippedFrame, fusion_config
from heightfusion.render import context
from heightfusion.sizing import grid_for_sequence
from heightfusion.tracking import Tracker
from heightfusion.up_axis import UpAligned, default_up, up_rotation
from real_sample import REAL_SAMPLE

#: Readout time of the Kinect v1's colour camera (a rolling shutter; Kerl et al., ICCV 2015, simulate 28 ms),
#: in seconds: one map is fused with it (``StereoConfig.readout_s``).
KINECT_READOUT_S = 0.03
#: Kinect depth bands (metres) that the per-pixel errors are broken down by.
DEPTH_BANDS = (0.0, 0.8, 1.2, 1.6, 2.2, 10.0)


def run(path: Path, frames: int, track: str, stereo: StereoConfig, pose_time_offset: float = 0.0,
        pose_sigma: tuple[float, float] | None = None) -> dict:
    """Stereo depth against the Kinect's over the first ``frames`` frames of ``path`` with ``track`` and ``stereo``,
    the poses taken ``pose_time_offset`` seconds later along the trajectory and erring by ``pose_sigma``
    (``replay --pose-sigma``: within 1 sigma then counts the pose part of stereo's sigma too)."""
    sequence = hf.datasets.open(path, max_frames=frames, undistort=True, pose_time_offset=pose_time_offset)
    sequence = UpAligned(sequence, up_rotation(default_up(sequence.format), sequence))
    grid = grid_for_sequence(sequence, None, None, None)
    renderer = hf.make_renderer("gl")
    fuser = hf.HeightMapFuser(grid, renderer, fusion_config(True))
    tracker = None if track == "off" else Tracker(track, renderer)
    pipeline = FramePipeline(fuser, "mvs", stereo=stereo, tracker=tracker, pose_sigma=pose_sigma)
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
        sigma = result.sigma if result.pose_sigma is None else np.hypot(result.sigma, result.pose_sigma)
        within_sigma.append(np.abs(error) <= sigma[both])
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


def heldout_maps(path: Path, frames: int, splits: int, clock: float, depth_clock: float, pose_sigma: tuple[float, float],
                 reference: dict) -> list[tuple[str, list[dict], list[hf.ReplayResult]]]:
    """(run, held-out score and replay result of each split) of the maps fused from sensor depth and from
    stereo (as given and refined, fronto-parallel planes and planes below the camera, and as given with a rolling
    shutter of :data:`KINECT_READOUT_S`), and from sensor depth and stereo (as given and refined) with the poses at
    the time offset ``clock`` (seconds, ``replay --time-offset-ms``), and sensor depth with its own clock offset
    ``depth_clock`` too (``replay --depth-time-offset-ms``), and both of the latter with the poses erring by
    ``pose_sigma`` (metres, degrees; ``replay --pose-sigma``). Split k holds out the frames at positions k, k + 5, ...
    (every 5th, :func:`heightfusion.heldout.split_heldout`), opened with ``reference`` (the clock offsets); the
    first ``splits`` of the five run, the last first (the split of the other benchmarks)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_tracking import heldout_split

    runs = (("sensor depth", "sensor", "off", {}), ("stereo, poses as given", "mvs", "off", {}),
            ("stereo, track refine", "mvs", "refine", {}),
            ("stereo, poses as given, planes below", "mvs", "off", {"stereo": StereoConfig(planes="below")}),
            ("stereo, track refine, planes below", "mvs", "refine", {"stereo": StereoConfig(planes="below")}),
            (f"stereo, poses as given, rolling shutter {KINECT_READOUT_S * 1e3:g} ms", "mvs", "off",
             {"stereo": StereoConfig(readout_s=KINECT_READOUT_S)}))
    at = f"time offset {clock * 1e3:+.1f} ms"
    runs += ((f"sensor depth, {at}", "sensor", "off", {"pose_time_offset": clock}),
             (f"sensor depth, {at}, depth clock {depth_clock * 1e3:+.1f} ms", "sensor", "off",
              {"pose_time_offset": clock, "depth_time_offset": depth_clock}),
             (f"stereo, poses at the {at}", "mvs", "off", {"pose_time_offset": clock}),
             (f"stereo, track refine, {at}", "mvs", "refine", {"pose_time_offset": clock}))
    given = f"pose sigma {pose_sigma[0] * 1e3:.1f} mm / {pose_sigma[1]:.2f} deg"
    runs += ((f"sensor depth, {at}, depth clock, {given}", "sensor", "off",
              {"pose_time_offset": clock, "depth_time_offset": depth_clock, "pose_sigma": pose_sigma}),
             (f"stereo, poses at the {at}, {given}", "mvs", "off", {"pose_time_offset": clock, "pose_sigma": pose_sigma}))
    scores = {name: ([], []) for name, *_ in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for offset in list(range(DEFAULT_EVERY))[::-1][:splits]:
            fuse, held_out = heldout_split(path, Path(tmp) / f"fuse{offset}", max_frames=frames, offset=offset,
                                           **reference)
            for name, depth, track, options in runs:
                result = hf.replay(fuse, depth=depth, track=track, progress=False, **options)
                scores[name][0].append(score_heldout(result.grid, held_out))
                scores[name][1].append(result)
    return [(name, *scores[name]) for name, *_ in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", type=Path, default=REAL_SAMPLE, help="a TUM RGB-D sequence with depth")
    parser.add_argument("--frames", type=int, default=60, help="first N frames (default 60)")
    parser.add_argument("--splits", type=int, choices=range(1, 6), default=5, metavar="1-5",
                        help="held-out splits the maps are scored on (default all 5: a monocular map's score "
                             "depends much on the frames it was fused from)")
    parser.add_argument("--reference-as-recorded", action="store_true",
                        help="take the held-out frames at the recording's stamps (default: at the measured offsets)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; OpenGL: {context.describe()}; {args.path.name}, {args.frames} frames")
    # The recording's clock offset, as `heightfusion camera-offset` measures it (all its frames, with depth).
    pairs = measured_motions(hf.datasets.open(args.path, undistort=True))
    clock = fit_time_offset(pairs).seconds
    print(f"time offset of the trajectory's clock, measured from the recording: {clock * 1e3:+.1f} ms")
    # ... and how far each pose errs (its --pose-sigma), from what the pairs disagree by at that offset.
    pose_sigma = fit_camera_offset(pairs.given_at(clock), pairs.measured).pose_sigma
    print(f"pose sigma, measured from the recording: {pose_sigma[0] * 1e3:.2f} mm / {pose_sigma[1]:.3f} deg per axis")
    depth_clock = fit_depth_time_offset(hf.datasets.open(args.path, undistort=True, pose_time_offset=clock), clock)
    print(depth_clock.summary())
    reference = {} if args.reference_as_recorded else {"pose_time_offset": clock,
                                                       "depth_time_offset": depth_clock.seconds}
    print(f"held-out frames: {'at the recording stamps' if not reference else 'at both offsets'}\n")
    print("| poses | frames estimated | median rel. error % | within 5 % | density | within 1 sigma | ms stereo | ms track | skipped |")
    print("|---|---|---|---|---|---|---|---|---|")
    runs = {}
    for label, track, stereo in (("as given", "off", StereoConfig()), ("track refine", "refine", StereoConfig()),
                                 ("as given, planes below", "off", StereoConfig(planes="below")),
                                 ("track refine, planes below", "refine", StereoConfig(planes="below")),
                                 (f"as given, rolling shutter {KINECT_READOUT_S * 1e3:g} ms", "off",
                                  StereoConfig(readout_s=KINECT_READOUT_S)),
                                 (f"at the time offset {clock * 1e3:+.1f} ms", "off", StereoConfig()),
                                 (f"track refine, time offset {clock * 1e3:+.1f} ms", "refine", StereoConfig()),
                                 (f"at the time offset {clock * 1e3:+.1f} ms, pose sigma {pose_sigma[0] * 1e3:.1f} mm / "
                                  f"{pose_sigma[1]:.2f} deg", "off", StereoConfig())):
        r = runs[label] = run(args.path, args.frames, track, stereo, clock if "time offset" in label else 0.0,
                              pose_sigma if "pose sigma" in label else None)
        print(f"| {label} | {r['frames estimated']} | "
              f"{r['median relative error %']:.1f} | {r['within 5 %']:.2f} | {r['density']:.2f} | "
              f"{r['within 1 sigma']:.2f} | {r['ms stereo']:.0f} | {r['ms track']:.0f} | {r['skipped']} |", flush=True)
    print("\n| poses | Kinect depth m | share of pixels | median rel. error % | median signed rel. error % |\n|---|---|---|---|---|")
    for label, r in runs.items():
        for lo, hi, share, error, bias in r["bands"]:
            print(f"| {label} | {lo:g}-{hi:g} | {share:.2f} | {error:.1f} | {bias:+.1f} |")
    print(f"\n| map (every 5th frame held out; {args.splits} splits, the last first) | held-out median mm, mean "
          "(range) | per split | coverage | mean vs sensor map | within 1 sigma | frames fused | fused frames/s |\n"
          "|---|---|---|---|---|---|---|---|")
    sensor = None
    for name, scores, results in heldout_maps(args.path, args.frames, args.splits, clock, depth_clock.seconds,
                                              pose_sigma, reference):
        medians = np.array([1e3 * score["median"] for score in scores])
        sensor = medians.mean() if name.startswith("sensor depth") else sensor
        print(f"| {name} | {medians.mean():.1f} ({medians.min():.1f}-{medians.max():.1f}) | "
              f"{' / '.join(f'{m:.1f}' for m in medians)} | {np.mean([s['coverage'] for s in scores]):.3f} | "
              f"{medians.mean() / sensor:.2f}x | {np.mean([s['calib_1sigma'] for s in scores]):.2f} | "
              f"{np.mean([r.frames_used for r in results]):.0f} | "
              f"{np.mean([r.fps for r in results]):.2f} |", flush=True)


if __name__ == "__main__":
    main()
