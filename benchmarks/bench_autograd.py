"""Differentiable fusion (issue 16): gradchecks, fuse_depth's cost against HeightMapFuser, and the depth refiner.

    python benchmarks/bench_autograd.py [--steps 300] [--repeats 25] [--out out/depth_refiner] [--skip-training]
                                        [--depth sensor stereo]

1. ``torch.autograd.gradcheck`` in float64 through the double-precision ray marcher, on a 6x6 vertex map
   and 16x12 images: the fusion layer alone (every Jacobian entry, in depth, prior heights and prior
   information), two frames through the coupled solver (fast mode), and the chain fuse -> render_depth
   at a frame that was not fused (fast mode).
2. Cost of one frame at 320x240 into a 128x128 map on the GL backend: ``HeightMapFuser.fuse`` against
   ``fuse_depth``'s forward (its inputs requiring gradients) and its backward, as medians of wall-clock
   and of process CPU time (the CPU time is steadier on a shared machine), at the fuser's default
   pyramid level ("auto": 80x60 here) and at full resolution (level 0).
3. The depth refiner of ``apps/examples/train_depth_refiner.py``, one per input depth (``--depth``): trained on
   windows with that depth (the loss's targets are always a sensor's depth at frames not fused), then the
   held-out table: Kinect-like sensor noise, and monocular motion-stereo depth. For comparison, the
   sensor-trained refiner on the stereo windows too.
4. The goals, met or not.

Times are of the machine this runs on: a shared 2-core CPU with Mesa's llvmpipe is slow and noisy.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import heightfusion as hf
from heightfusion.autograd import fuse_depth, render_depth
from heightfusion.sizing import grid_for_sequence
from heightfusion.synthetic import generate
from heightfusion.up_axis import UpAligned, default_up, up_rotation
from real_sample import REAL_SAMPLE

FORWARD_GOAL = 1.5  # fuse_depth's forward over HeightMapFuser.fuse, at most
BACKWARD_GOAL = 3.0  # fuse_depth's backward over its forward, at most
REFINER_GOAL = 0.30  # held-out fused-map RMSE reduction by the refiner, at least
SOURCE_NAMES = {"sensor": "Kinect-like noise", "stereo": "monocular motion stereo"}


def gradchecks() -> dict[str, bool]:
    """The three gradchecks of part 1 (as tests/test_fuse_depth.py), name -> passed."""
    renderer = hf.make_renderer("raymarch", dtype=torch.float64)
    camera = hf.PinholeCamera(16, 12, 16.0, 16.0, 7.5, 5.5)
    poses = np.stack([hf.look_at([0.35, 0.1, 1.0], [0.5, 0.5, 0.1]), hf.look_at([0.7, 0.95, 0.9], [0.5, 0.45, 0.1]),
                      hf.look_at([0.9, 0.3, 0.9], [0.45, 0.5, 0.1])])
    truth = hf.HeightMap((0.0, 0.0), 0.2, (6, 6))
    xy = truth.vertex_xy()
    truth.heights[:] = 0.1 + 0.05 * np.sin(3 * xy[..., 0]) * np.cos(2 * xy[..., 1])
    depth = render_depth(torch.tensor(truth.heights, dtype=torch.float64), truth, camera, poses, backend=renderer)
    depth = depth + 0.002 * torch.from_numpy(np.random.default_rng(0).standard_normal(depth.shape))
    grid = hf.HeightMap((0.0, 0.0), 0.2, (6, 6))
    prior_heights = torch.full(grid.shape, 0.09, dtype=torch.float64)
    prior_information = torch.full(grid.shape, 0.5 * grid.prior_information, dtype=torch.float64)
    prior_information[:, :3] = 4e4
    scale = 1e-6  # information ~1e5: to order 1 for gradcheck's absolute tolerance

    def layer(d, h, lam):
        heights, information = fuse_depth(grid, camera, poses[0], d, heights=h, information=lam, backend=renderer)
        return heights, information * scale

    def coupled(d):
        heights, information = fuse_depth(grid, camera, poses[:2], d, config=hf.FusionConfig(solver="coupled"),
                                          backend=renderer)
        return heights, information * scale

    def chain(d):
        heights, _ = fuse_depth(grid, camera, poses[:2], d, backend=renderer)
        return torch.nan_to_num(render_depth(heights, grid, camera, poses[2], backend=renderer))

    checks = {
        "fusion layer, 1 frame, full Jacobian (depth, prior heights, prior information)":
            (layer, (depth[0], prior_heights, prior_information), False),
        "2 frames, coupled solver (fast mode)": (coupled, (depth[:2],), True),
        "fuse 2 frames -> render_depth at the third (fast mode)": (chain, (depth[:2],), True),
    }
    results = {}
    for name, (fn, inputs, fast) in checks.items():
        started = time.perf_counter()
        inputs = tuple(x.clone().requires_grad_() for x in inputs)
        try:
            results[name] = torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=fast)
        except torch.autograd.gradcheck.GradcheckError as exc:
            print(f"   {name}: {str(exc).splitlines()[0]}")
            results[name] = False
        print(f"   {'passed' if results[name] else 'FAILED'}  {name}  ({time.perf_counter() - started:.0f} s)")
    return results


def synthetic_frame():
    """(frame, sigma, grid): the floor scene's second frame at 320x240 (Kinect-like noise), a 128x128 map."""
    seq = generate("floor", frames=2, width=320, height=240, noise=True)
    return seq.frames[1], seq.sigmas[1], hf.HeightMap((-1.5, -1.5), 3.0 / 127, (128, 128))


def real_frame():
    """(frame, sigma, grid): the real TUM frame 30 of ``REAL_SAMPLE`` at 640x480 (undistorted, Z up as replay
    takes it), its sensor sigma, and the map ``replay`` would make for its first 30 frames; None if absent."""
    if not REAL_SAMPLE.is_dir():
        return None
    sequence = hf.datasets.open(REAL_SAMPLE, max_frames=31, undistort=True)
    sequence = UpAligned(sequence, up_rotation(default_up(sequence.format), sequence))
    frame = list(sequence)[-1]
    return frame, hf.FusionConfig().noise.sigma(frame.depth).astype(np.float32), grid_for_sequence(sequence)


def timings(repeats: int, pyramid_level: int | str, scene) -> dict[str, float]:
    """Median ms (wall and CPU) of HeightMapFuser.fuse, fuse_depth's forward and its backward, one frame of
    ``scene`` ((frame, sigma, grid)), GL backend; the stages are interleaved so load hits them alike. The
    fuser runs as fuse_depth does, finding the visible triangles at every render ("fuser":
    ``rasterize_every_render=True``), and with its default, rasterizing once per frame ("fuser_once").
    Also the largest and the 99th-percentile height difference between fuse_depth's and the first
    fuser's heights over the vertices the frame observed (metres)."""
    frame, sigma, grid = scene
    config = hf.FusionConfig(pyramid_level=pyramid_level, rasterize_every_render=True)
    renderer = hf.make_renderer("gl")
    fuser = hf.HeightMapFuser(grid.copy(), renderer, config)
    fuser_once = hf.HeightMapFuser(grid.copy(), renderer, hf.FusionConfig(pyramid_level=pyramid_level))
    depth, sigma_t = torch.from_numpy(frame.depth), torch.from_numpy(sigma)
    state = {}

    def fuse() -> None:
        fuser.grid = grid.copy()
        fuser.fuse(frame.camera, frame.T_wc, frame.depth, None, sigma)

    def fuse_once() -> None:
        fuser_once.grid = grid.copy()
        fuser_once.fuse(frame.camera, frame.T_wc, frame.depth, None, sigma)

    def forward() -> None:
        state["depth"] = depth.clone().requires_grad_()
        state["out"] = fuse_depth(grid, frame.camera, frame.T_wc, state["depth"], sigma_t, config=config, backend=renderer)

    def backward() -> None:
        heights, information = state["out"]
        (heights.sum() + 1e-6 * information.sum()).backward()

    stages = {"fuser": fuse, "fuser_once": fuse_once, "forward": forward, "backward": backward}
    wall, cpu = {k: [] for k in stages}, {k: [] for k in stages}
    try:
        for index in range(repeats + 3):
            for name, fn in stages.items():
                w, c = time.perf_counter(), time.process_time()
                fn()
                if index >= 3:  # warm-up: shader compilation, buffers, caches
                    wall[name].append((time.perf_counter() - w) * 1e3)
                    cpu[name].append((time.process_time() - c) * 1e3)
        fuser.grid = grid.copy()
        level = fuser.fuse(frame.camera, frame.T_wc, frame.depth, None, sigma).level
        forward()
        dh = np.abs(state["out"][0].detach().numpy() - fuser.grid.heights)[fuser.grid.observed]
    finally:
        fuser.release()
        fuser_once.release()
        renderer.release()
    result = {f"{k}_wall": statistics.median(v) for k, v in wall.items()}
    result.update({f"{k}_cpu": statistics.median(v) for k, v in cpu.items()})
    result["level"], result["max_dh"], result["p99_dh"] = level, float(dh.max()), float(np.percentile(dh, 99))
    return result


def load_example():
    """apps/examples/train_depth_refiner.py as a module (the examples are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "apps" / "examples" / "train_depth_refiner.py"
    spec = importlib.util.spec_from_file_location("train_depth_refiner", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps of the depth refiner")
    parser.add_argument("--repeats", type=int, default=25, help="timed runs of each stage")
    parser.add_argument("--out", default="out/depth_refiner", help="where the example writes its curve and table")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--depth", nargs="+", default=list(SOURCE_NAMES), choices=list(SOURCE_NAMES),
                        help="the refiner's input depth: one refiner is trained per source")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small tensors: a second thread only waits on a busy machine

    print("1. gradcheck, float64, ray marcher, 6x6 vertices, 16x12 images")
    checks = gradchecks()

    print("\n2. one frame, GL backend: median ms (wall / CPU); height difference fuse_depth - fuser over the observed vertices, largest / 99th percentile")
    print("   fuser: HeightMapFuser.fuse finding the visible triangles at every render, as fuse_depth does; "
          "fuser once: its default, rasterizing once per frame")
    print(f"{'frame':>30} {'pyramid level':>14} {'fuser':>13} {'fuser once':>13} {'fuse_depth fwd':>15} {'backward':>13} "
          f"{'fwd/fuser':>10} {'fwd/once':>9} {'bwd/fwd':>8} {'|dh| m: max / p99':>18}")
    times = {}
    scenes = {"synthetic 320x240, 128^2": synthetic_frame(), "real TUM 640x480": real_frame()}
    for scene_name, scene in scenes.items():
        if scene is None:
            print(f"{scene_name:>30}  (no {REAL_SAMPLE})")
            continue
        for level in ("auto", 0):
            t = times[scene_name, level] = timings(args.repeats, level, scene)
            label = f"{level} ({t['level']})" if level == "auto" else str(level)
            print(f"{scene_name:>30} {label:>14} {t['fuser_wall']:6.1f}/{t['fuser_cpu']:5.1f} "
                  f"{t['fuser_once_wall']:6.1f}/{t['fuser_once_cpu']:5.1f} "
                  f"{t['forward_wall']:7.1f}/{t['forward_cpu']:6.1f} {t['backward_wall']:6.1f}/{t['backward_cpu']:5.1f} "
                  f"{t['forward_wall'] / t['fuser_wall']:4.2f}/{t['forward_cpu'] / t['fuser_cpu']:4.2f} "
                  f"{t['forward_cpu'] / t['fuser_once_cpu']:9.2f} "
                  f"{t['backward_wall'] / t['forward_wall']:3.2f}/{t['backward_cpu'] / t['forward_cpu']:3.2f} "
                  f"{t['max_dh']:8.1e} / {t['p99_dh']:7.1e}")

    refiners = {}
    if not args.skip_training:
        example = load_example()
        for source in args.depth:
            print(f"\n3. depth refiner trained on {source} depth (sensor targets), held out with {source} depth "
                  f"({args.steps} steps; apps/examples/train_depth_refiner.py --depth {source})")
            refiner = refiners[source] = example.run(steps=args.steps, out=Path(args.out) / source, source=source)
            print(f"   data {refiner['data_seconds']:.0f} s, training {refiner['train_seconds']:.0f} s; "
                  f"curve {refiner['curve_png']}")
            print(refiner["text"])
        if {"sensor", "stereo"} <= set(refiners):
            print("\n   for comparison, the refiner trained on sensor depth, held out with stereo depth "
                  "(--depth stereo --train-depth sensor)")
            crossed = example.run(steps=args.steps, out=Path(args.out) / "stereo_by_sensor_refiner", source="stereo",
                                  train_source="sensor", trained=refiners["sensor"])
            print(crossed["text"])

    print("\n4. issue 16 goals")
    t, t0 = times["synthetic 320x240, 128^2", "auto"], times["synthetic 320x240, 128^2", 0]
    goals = [
        ("gradcheck passes (fusion layer, coupled solver, fuse -> render_depth)", all(checks.values()),
         f"{sum(checks.values())}/{len(checks)} passed"),
        (f"forward of fuse_depth (GL) <= {FORWARD_GOAL} x HeightMapFuser.fuse, 320x240, 128^2",
         t["forward_cpu"] / t["fuser_cpu"] <= FORWARD_GOAL,
         f"{t['forward_cpu'] / t['fuser_cpu']:.2f} x CPU time, {t['forward_wall'] / t['fuser_wall']:.2f} x wall at the "
         f"default pyramid level {t['level']}; {t0['forward_cpu'] / t0['fuser_cpu']:.2f} x CPU at level 0 (the fuser "
         f"finding visibility at every render, as fuse_depth does; against its default, rasterizing once: "
         f"{t['forward_cpu'] / t['fuser_once_cpu']:.2f} x)"),
        (f"backward <= {BACKWARD_GOAL} x forward", t["backward_cpu"] / t["forward_cpu"] <= BACKWARD_GOAL,
         f"{t['backward_cpu'] / t['forward_cpu']:.2f} x (level {t['level']}), "
         f"{t0['backward_cpu'] / t0['forward_cpu']:.2f} x (level 0)"),
    ]
    for source, refiner in refiners.items():
        table = refiner["table"]
        per_scene = ", ".join(f"{scene} {-100 * e['rmse_reduction']:+.0f}% (a perfect refiner: "
                              f"{-100 * e['oracle_reduction']:+.0f}%)" for scene, e in table.items() if scene != "all")
        goals.append((f"refiner lowers the held-out fused-map RMSE by >= {100 * REFINER_GOAL:.0f}% ({SOURCE_NAMES[source]})",
                      table["all"]["rmse_reduction"] >= REFINER_GOAL,
                      f"all windows pooled {-100 * table['all']['rmse_reduction']:+.1f}%; {per_scene}"))
    for goal, met, detail in goals:
        print(f"- [{'met' if met else 'NOT met'}] {goal}: {detail}")


if __name__ == "__main__":
    main()
