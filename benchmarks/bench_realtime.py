"""Real time at camera resolution: fusion and monocular replay of 640x480 frames, against the Kalman
elevation map on the same frames, with the accuracy of every setting (issue 13).

    xvfb-run -a python benchmarks/bench_realtime.py [--frames 180] [--sizes 128 256 512 1024]

1. Sensor depth, real frames (TUM fr1/rpy, first 180, undistorted): every 5th frame held out
   (:func:`heightfusion.heldout.split_heldout`), the rest fused at full resolution, at the automatic
   pyramid level and at fixed levels, and at the automatic level with every render rasterized (the
   default rasterizes once per frame: ``FusionConfig.rasterize_every_render``). Per setting: ms per frame (mean and median) and by stage, the
   Kalman elevation map's ms on the same frames (timed in turn with each fusion frame, so that both
   see the same machine load) and the ratio, held-out median |dh| and coverage, and the median |dh|
   on the held-out points that the full-resolution map also covers (coverage moves the median).
2. Sensor depth, the synthetic floor at 640x480 with Kinect-like noise: the same settings against
   ground truth (:func:`heightfusion.metrics.evaluate`).
3. Map size: the synthetic floor fused into maps of 128^2 .. 1024^2 vertices around the same scene
   (2 cm cells, the same frames and view; a renderer per map, as an application holds): ms per frame.
4. Monocular: ``heightfusion.replay(depth="mvs")`` of the real frames end to end (reading included),
   frames/s and ms per stage, with the stereo ahead on a thread (replay's default) and in turn; held-out accuracy of the fused map (stereo sweep with and without the
   predicted range, and the single-level sweep that coarse to fine replaced), also on the vertices all
   three maps observe; the synthetic floor against ground truth.
5. The goals, met or not; on a GPU (a GL renderer other than Mesa's software ones) also the GPU goals: sensor
   fusion at 640x480 >= 100 frames/s, monocular replay >= 30 fused frames/s.

Times are wall-clock on whatever else the machine runs: the load average is printed; ratios are
taken within the run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

import heightfusion as hf
from heightfusion.baselines import KalmanElevationMap
from heightfusion.depth import StereoConfig
from heightfusion.depth.stereo import resolve_device
from heightfusion.heldout import score_heldout, split_heldout
from heightfusion.metrics import StageTimer, evaluate, smooth_mask_from_heights
from heightfusion.pipeline import FramePipeline, FusedFrame, fusion_config
from heightfusion.sizing import grid_for_sequence
from heightfusion.synthetic import generate
from real_sample import REAL_SAMPLE

HELD_OUT_EVERY = 5
# Fusion settings by name: pyramid levels with the default rendering (rasterized once per frame), and the
# default level with every render rasterized (what the fuser did before refresh_fusion_fragments).
SETTINGS = {
    "full (0)": hf.FusionConfig(pyramid_level=0),
    "auto": hf.FusionConfig(),
    "1": hf.FusionConfig(pyramid_level=1),
    "2": hf.FusionConfig(pyramid_level=2),
    "auto, each render drawn": hf.FusionConfig(rasterize_every_render=True),
}
GOAL_KALMAN_RATIO = 2.0
GOAL_ACCURACY_RATIO = 1.05
GOAL_SIZE_RATIO = 1.2
GOAL_MONO_FPS = 5.0
GOAL_GPU_SENSOR_FPS = 100.0
GOAL_GPU_MONO_FPS = 30.0


@dataclass
class Run:
    """One setting's fusion of a sequence: ms per frame, by stage, the baseline's ms, and the map."""

    name: str
    grid: hf.HeightMap
    ms: list[float] = field(default_factory=list)
    kalman_ms: list[float] = field(default_factory=list)
    stages: StageTimer = field(default_factory=StageTimer)
    levels: list[int] = field(default_factory=list)

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.ms))

    @property
    def ratio(self) -> float:
        """Mean fusion ms over the mean Kalman ms of the same frames."""
        return self.mean_ms / float(np.mean(self.kalman_ms))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def fuse_sensor(frames, make_grid, sigmas=None) -> tuple[dict[str, Run], hf.HeightMap]:
    """Every SETTINGS setting and the Kalman map over ``frames``; each fusion frame is timed next to a Kalman
    frame (a Kalman map per setting: they see the same frames in the same order)."""
    renderer = hf.make_renderer("gl")
    runs = {}
    try:
        for name, config in SETTINGS.items():
            run = Run(name, make_grid())
            fuser = hf.HeightMapFuser(run.grid, renderer, config)
            kalman_grid = make_grid()
            kalman = KalmanElevationMap(kalman_grid)
            for k, frame in enumerate(frames):
                sigma = None if sigmas is None else sigmas[k]
                stats = None

                def fuse() -> None:
                    nonlocal stats
                    stats = fuser.fuse(frame.camera, frame.T_wc, frame.depth, frame.image, sigma)

                run.ms.append(timed(fuse))
                run.kalman_ms.append(timed(lambda: kalman.fuse(frame.camera, frame.T_wc, frame.depth, frame.image,
                                                               sigma=sigma, timestamp=frame.timestamp)))
                run.levels.append(stats.level)
                for stage, ms in stats.ms.items():
                    run.stages.add(stage, ms)
            fuser.release()
            runs[name] = run
    finally:
        renderer.release()
    return runs, kalman_grid


def stage_text(run: Run) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in run.stages.mean_ms(frames=len(run.ms)).items())


def covered_by(grid: hf.HeightMap, reference: hf.HeightMap) -> hf.HeightMap:
    """``grid`` observed only where ``reference`` is observed too."""
    both = grid.copy()
    both.observed &= reference.observed
    return both


def sensor_real(frames_limit: int) -> dict:
    print(f"\n1. sensor depth, real 640x480 frames ({REAL_SAMPLE}), held-out every {HELD_OUT_EVERY}th frame")
    sequence = hf.datasets.open(REAL_SAMPLE, undistort=True, max_frames=frames_limit)
    fuse_frames, held_out = split_heldout(list(sequence), HELD_OUT_EVERY)
    runs, kalman_grid = fuse_sensor(fuse_frames, lambda: grid_for_sequence(sequence))
    kalman_score = score_heldout(kalman_grid, held_out)
    full = runs["full (0)"]
    full_score = score_heldout(full.grid, held_out)
    print(f"   {len(fuse_frames)} frames fused, {len(held_out)} held out; map {full.grid.shape}")
    print(f"{'setting':>23} {'levels used':>16} {'ms mean':>8} {'median':>7} {'Kalman ms':>9} {'ratio':>6} "
          f"{'median |dh| mm':>14} {'coverage':>8} {'on full-res points mm':>21}")
    results = {}
    for name, run in runs.items():
        score = score_heldout(run.grid, held_out)
        common = score_heldout(covered_by(run.grid, full.grid), held_out)
        used = "/".join(f"L{lv}:{n}" for lv, n in enumerate(np.bincount(run.levels)) if n)
        print(f"{name:>23} {used:>16} {run.mean_ms:8.1f} {statistics.median(run.ms):7.1f} "
              f"{np.mean(run.kalman_ms):9.1f} {run.ratio:6.2f} {score['median'] * 1e3:14.2f} {score['coverage']:8.3f} "
              f"{common['median'] * 1e3:21.2f}")
        results[name] = (run, score)
    print(f"{'Kalman':>23} {'':>16} {'':>8} {'':>7} {'':>9} {'':>6} {kalman_score['median'] * 1e3:14.2f} "
          f"{kalman_score['coverage']:8.3f}")
    print("   ms per frame by stage: " + "; ".join(f"{n}: {stage_text(r)}" for n, (r, _) in results.items()))
    auto, auto_score = results["auto"]
    return {"ratio": auto.ratio, "accuracy": auto_score["median"] / full_score["median"],
            "ms": auto.mean_ms, "kalman_ms": float(np.mean(auto.kalman_ms))}


def synthetic_floor(frames: int):
    return generate("floor", frames=frames, width=640, height=480, noise=True)


def sensor_synthetic(sequence) -> None:
    truth = sequence.gt_heightmap
    print(f"\n2. sensor depth, synthetic floor 640x480 with noise ({len(sequence.frames)} frames) vs ground truth")
    smooth = smooth_mask_from_heights(truth)
    runs, kalman_grid = fuse_sensor(sequence.frames, lambda: hf.HeightMap(tuple(truth.origin), truth.cell_size,
                                                                          truth.shape), sequence.sigmas)
    print(f"{'setting':>23} {'ms mean':>8} {'Kalman ms':>9} {'ratio':>6} {'smooth RMSE mm':>14} {'median mm':>9} "
          f"{'complete':>8} {'1 sigma':>7}")
    for name, run in runs.items():
        m = evaluate(run.grid, truth, smooth)
        print(f"{name:>23} {run.mean_ms:8.1f} {np.mean(run.kalman_ms):9.1f} {run.ratio:6.2f} {m['smooth_rmse'] * 1e3:14.2f} "
              f"{m['median'] * 1e3:9.2f} {m['completeness']:8.3f} {m['calib_1sigma']:7.2f}")
    m = evaluate(kalman_grid, truth, smooth)
    print(f"{'Kalman':>23} {'':>8} {'':>9} {'':>6} {m['smooth_rmse'] * 1e3:14.2f} {m['median'] * 1e3:9.2f} "
          f"{m['completeness']:8.3f} {m['calib_1sigma']:7.2f}")


def map_sizes(sequence, sizes: list[int]) -> dict[int, float]:
    print("\n3. map size, the same view: synthetic floor 640x480, 2 cm cells, maps centred on the scene "
          "(default settings; each frame fused into every map in turn, so that all see the same load; the "
          "first frame, which builds each map's mesh, is not timed)")
    x0, x1, y0, y1 = sequence.gt_heightmap.extent
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    grids = {n: hf.HeightMap(tuple(centre - (n - 1) * 0.01), 0.02, (n, n)) for n in sizes}
    renderers = {n: hf.make_renderer("gl") for n in sizes}  # a renderer keeps the mesh of one map shape
    fusers = {n: hf.HeightMapFuser(grid, renderers[n]) for n, grid in grids.items()}
    times = {n: [] for n in sizes}
    timers = {n: StageTimer() for n in sizes}
    try:
        for frame, sigma in zip(sequence.frames, sequence.sigmas):
            for n, fuser in fusers.items():
                stats = None

                def fuse() -> None:
                    nonlocal stats
                    stats = fuser.fuse(frame.camera, frame.T_wc, frame.depth, frame.image, sigma)

                elapsed = timed(fuse)
                if frame is not sequence.frames[0]:
                    times[n].append(elapsed)
                    for stage, value in stats.ms.items():
                        timers[n].add(stage, value)
    finally:
        for n, fuser in fusers.items():
            fuser.release()
            renderers[n].release()
    print(f"{'map':>10} {'ms mean':>8} {'median':>7}   by stage")
    for n in sizes:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in timers[n].mean_ms(frames=len(times[n])).items())
        print(f"{n:>5}^2    {np.mean(times[n]):8.1f} {statistics.median(times[n]):7.1f}   {stages}")
    return {n: float(np.mean(t)) for n, t in times.items()}


def monocular(frames_limit: int, synthetic) -> tuple[float, float]:
    """(fused frames/s, frames/s through the pipeline) of the end-to-end replay; prints the table."""
    print("\n4. monocular (plane-sweep stereo on images and poses), real 640x480 frames")
    # Warm-up: torch's first calls (on a GPU: CUDA's start, the graphs' capture) are not the replay's cost.
    hf.replay(REAL_SAMPLE, depth="mvs", max_frames=8, progress=False)
    for ahead in (True, False):  # the default (ahead) first: it is what the goal is scored on
        run = hf.replay(REAL_SAMPLE, depth="mvs", max_frames=frames_limit, progress=False, stereo_ahead=ahead)
        processed = run.frames_used + sum(run.skipped.values())
        print(f"   replay end to end, stereo {'ahead on a thread (the default)' if ahead else 'in turn'}: "
              f"{run.frames_used} of {processed} frames "
              f"fused in {run.seconds:.1f} s: {run.fps:.2f} fused frames/s ({processed / run.seconds:.2f} frames/s "
              f"through the pipeline); skipped {dict(run.skipped)}")
        print("   ms per fused frame: " + ", ".join(f"{k} {v:.1f}" for k, v in run.ms_per_frame.items()))
        if ahead:
            result = run
    sequence = hf.datasets.open(REAL_SAMPLE, undistort=True, max_frames=frames_limit)
    fuse_frames, held_out = split_heldout(list(sequence), HELD_OUT_EVERY)
    print(f"{'stereo':>24} {'fused':>6} {'ms/frame':>8} {'stereo ms':>9} {'median |dh| mm':>14} {'coverage':>8}"
          f" {'common: median mm':>17}")
    rows = []
    for name, stereo in (("320x240, predicted range", StereoConfig(predict_range=True)),
                         ("320x240, full range", StereoConfig(predict_range=False)),
                         ("320x240, single level", StereoConfig(coarse_to_fine=False))):
        grid = grid_for_sequence(sequence)
        fused, seconds, timer = mono_fuse(fuse_frames, grid, stereo)
        rows.append((name, grid, fused, seconds, timer))
    # The maps cover different vertices; scored also on those all of them observe, like is met with like.
    common = np.logical_and.reduce([grid.observed for _, grid, *_ in rows])
    for name, grid, fused, seconds, timer in rows:
        score = score_heldout(grid, held_out)
        observed = grid.observed.copy()
        grid.observed &= common
        shared = score_heldout(grid, held_out)
        grid.observed[:] = observed
        print(f"{name:>24} {fused:>6} {seconds * 1e3 / len(fuse_frames):8.1f} "
              f"{timer.total_ms().get('stereo', 0.0) / len(fuse_frames):9.1f} {score['median'] * 1e3:14.2f} "
              f"{score['coverage']:8.3f} {shared['median'] * 1e3:17.2f}")
    truth = synthetic.gt_heightmap
    grid = hf.HeightMap(tuple(truth.origin), truth.cell_size, truth.shape)
    fused, seconds, _ = mono_fuse(synthetic.frames, grid, StereoConfig())
    m = evaluate(grid, truth, smooth_mask_from_heights(truth))
    print(f"   synthetic floor 640x480: {fused}/{len(synthetic.frames)} frames fused, {len(synthetic.frames) / seconds:.2f} "
          f"frames/s; smooth RMSE {m['smooth_rmse'] * 1e3:.2f} mm, median {m['median'] * 1e3:.2f} mm, completeness "
          f"{m['completeness']:.3f}")
    return result.fps, (result.frames_used + sum(result.skipped.values())) / result.seconds


def mono_fuse(frames, grid: hf.HeightMap, stereo: StereoConfig) -> tuple[int, float, StageTimer]:
    """(frames fused, seconds, stage timer) of monocular fusion of ``frames`` into ``grid``."""
    renderer = hf.make_renderer("gl")
    fuser = hf.HeightMapFuser(grid, renderer, fusion_config(stereo=True))
    timer = StageTimer()
    pipeline = FramePipeline(fuser, "mvs", stereo, timer=timer)
    start = time.perf_counter()
    try:
        fused = sum(isinstance(pipeline.process(frame), FusedFrame) for frame in frames)
    finally:
        fuser.release()
        renderer.release()
    return fused, time.perf_counter() - start, timer


def goals(real: dict, sizes: dict[int, float], mono_fps: tuple[float, float]) -> None:
    print("\n5. goals (default settings)")
    rows = [
        (f"sensor 640x480 real: fusion ms/frame <= {GOAL_KALMAN_RATIO:g}x the Kalman map's",
         f"{real['ms']:.1f} vs {real['kalman_ms']:.1f} ms: {real['ratio']:.2f}x", real["ratio"] <= GOAL_KALMAN_RATIO),
        (f"   ... with held-out median |dh| <= {GOAL_ACCURACY_RATIO:g}x full resolution's",
         f"{real['accuracy']:.3f}x", real["accuracy"] <= GOAL_ACCURACY_RATIO),
    ]
    if 1024 in sizes and 256 in sizes:
        ratio = sizes[1024] / sizes[256]
        rows.append((f"1024^2 map <= {GOAL_SIZE_RATIO:g}x 256^2 (same view)", f"{ratio:.2f}x", ratio <= GOAL_SIZE_RATIO))
    fused, through = mono_fps
    rows.append((f"monocular replay >= {GOAL_MONO_FPS:g} fused frames/s", f"{fused:.2f} (all frames: {through:.2f})",
                 fused >= GOAL_MONO_FPS))
    renderer = hf.render.context.get_context().info["GL_RENDERER"]
    if "llvmpipe" in renderer.lower() or "softpipe" in renderer.lower():
        rows.append(("GPU goals", f"not measured: no GPU here ({renderer})", None))
    else:
        sensor_fps = 1e3 / real["ms"]
        rows.append((f"GPU: sensor fusion >= {GOAL_GPU_SENSOR_FPS:g} frames/s at 640x480", f"{sensor_fps:.1f}",
                     sensor_fps >= GOAL_GPU_SENSOR_FPS))
        rows.append((f"GPU: monocular replay >= {GOAL_GPU_MONO_FPS:g} fused frames/s", f"{fused:.2f}",
                     fused >= GOAL_GPU_MONO_FPS))
    for goal, value, met in rows:
        verdict = "n/a" if met is None else ("met" if met else "NOT met")
        print(f"   {goal:<62} {value:>28}   {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=180, help="real frames to read (default all 180)")
    parser.add_argument("--synthetic-frames", type=int, default=40)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    args = parser.parse_args()
    print(f"OpenGL: {hf.render.context.describe()}; load average at start {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores; stereo on {resolve_device(StereoConfig().device)}")
    real = sensor_real(args.frames)
    floor = synthetic_floor(args.synthetic_frames)
    sensor_synthetic(floor)
    sizes = map_sizes(floor, args.sizes)
    mono_fps = monocular(args.frames, floor)
    goals(real, sizes, mono_fps)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
