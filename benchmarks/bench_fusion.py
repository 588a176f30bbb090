"""Fusion speed and accuracy, printed as one table per part.

    python benchmarks/bench_fusion.py [--repeats 20] [--frames 40] [--skip-accuracy]

1. One fusion step (render + accumulate + solve, one Gauss-Newton iteration) at 320x240 with a
   128x128 map and at 640x480 with 256x256, in Hz, next to a depth-only render measured in the same
   run (the baseline), and a whole ``fuse`` call with the default settings.
2. ``heightfusion replay`` of the bundled sample end to end (reading frames included), frames/s.
3. Accuracy with Kinect-like depth noise, 40 frames at 320x240: the floor scene (robot camera,
   2 cm cells) and rolling terrain (drone, 4 cm cells): RMSE on smooth areas, completeness and
   calibration, for both solvers.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

import heightfusion as hf
from heightfusion.fusion import FusionConfig, HeightMapFuser
from heightfusion.metrics import evaluate
from heightfusion.fusion.normal_equations import SmoothnessPrior, accumulate, solve
from heightfusion.replay import replay
from heightfusion.synthetic import generate


def median_ms(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def step_table(repeats: int) -> None:
    print("1. one fusion step (render + accumulate + solve), floor scene, first frame of the sequence")
    print(f"{'image':>9} {'map':>8} {'depth render ms':>16} {'step ms':>8} {'step Hz':>8} {'step/depth':>10} {'fuse() ms':>10}")
    renderer = hf.make_renderer("gl")
    for (width, height), n in (((320, 240), 128), ((640, 480), 256)):
        seq = generate("floor", frames=2, width=width, height=height, noise=True)
        frame, sigma = seq.frames[1], seq.sigmas[1]
        cam, T = frame.camera, frame.T_wc
        grid = hf.HeightMap((-1.5, -1.5), 3.0 / (n - 1), (n, n))
        cfg = FusionConfig()
        ray_norm = np.linalg.norm(cam.pixel_rays(), axis=-1).astype(np.float32)
        cos_min = math.cos(math.radians(cfg.max_incidence_deg))
        information = grid.information.astype(np.float64)

        def step() -> None:
            frag = renderer.render(grid, cam, T)
            system = accumulate(frag, frame.depth, sigma, grid.shape, ray_norm, cos_min, cfg.huber_k, cfg.gate_k, information)
            smooth = SmoothnessPrior.robust(grid.heights, cfg.smoothness_slope * grid.cell_size)
            solve(system, information, system.g - smooth.gradient(grid.heights), cfg.solver, cfg.damping, smooth)

        def fuse() -> None:
            HeightMapFuser(grid.copy(), renderer, cfg).fuse(cam, T, frame.depth, frame.image, sigma)

        depth_ms = median_ms(lambda: renderer.render_depth(grid, cam, T), repeats)
        step_ms = median_ms(step, repeats)
        fuse_ms = median_ms(fuse, max(3, repeats // 4))
        print(f"{width}x{height:<4} {n:>4}^2 {depth_ms:16.2f} {step_ms:8.2f} {1e3 / step_ms:8.1f} {step_ms / depth_ms:10.2f} {fuse_ms:10.2f}")


def replay_table() -> None:
    print("\n2. replay of the bundled sample (sensor depth), end to end")
    result = replay(progress=False)
    e = result.evaluation
    print(f"   {result.frames_used} frames in {result.seconds:.2f} s: {result.fps:.1f} frames/s; "
          f"ms per frame: " + ", ".join(f"{k} {v:.1f}" for k, v in result.ms_per_frame.items()))
    print(f"   smooth RMSE {e['smooth_rmse'] * 1e3:.2f} mm, RMSE {e['rmse'] * 1e3:.2f} mm, median {e['median'] * 1e3:.2f} mm, "
          f"completeness {e['completeness']:.3f}, within 1/2 sigma {e['calib_1sigma']:.2f}/{e['calib_2sigma']:.2f}")


def accuracy_table(frames: int) -> None:
    print(f"\n3. accuracy, Kinect-like noise, {frames} frames at 320x240")
    print(f"{'scene':>8} {'solver':>9} {'smooth RMSE mm':>15} {'RMSE mm':>8} {'median mm':>10} {'complete':>9} {'1 sigma':>8} {'fps':>6}")
    renderer = hf.make_renderer("gl")
    for scene in ("floor", "terrain"):
        seq = generate(scene, frames=frames, noise=True, seed=1)
        gt = seq.gt_heightmap
        xy = gt.vertex_xy()
        smooth = seq.scene.smooth_mask(xy[..., 0], xy[..., 1])
        for solver in ("diagonal", "coupled"):
            grid = hf.HeightMap(tuple(gt.origin), gt.cell_size, gt.shape)
            fuser = HeightMapFuser(grid, renderer, FusionConfig(solver=solver))
            t0 = time.perf_counter()
            for frame, sigma in zip(seq.frames, seq.sigmas):
                fuser.fuse(frame.camera, frame.T_wc, frame.depth, frame.image, sigma)
            fps = len(seq.frames) / (time.perf_counter() - t0)
            m = evaluate(grid, gt, smooth)
            print(f"{scene:>8} {solver:>9} {m['smooth_rmse'] * 1e3:15.2f} {m['rmse'] * 1e3:8.2f} {m['median'] * 1e3:10.2f} "
                  f"{m['completeness']:9.3f} {m['calib_1sigma']:8.2f} {fps:6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    print(f"OpenGL: {hf.render.context.describe()}\n")
    step_table(args.repeats)
    replay_table()
    if not args.skip_accuracy:
        accuracy_table(args.frames)


if __name__ == "__main__":
    main()
