"""ms per render, depth only vs full Fragments (with read-back), at two sizes; prints ratios.

    python benchmarks/bench_render.py [--backend gl] [--repeats 30]

Scene: rolling terrain with two boxes on a 2.56 m square map, seen by a camera 0.8 m above the
ground, 1.3 m from the map's edge, looking at its centre (the whole map in view, as in fusion).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import heightfusion as hf


def make_scene(n: int) -> hf.HeightMap:
    grid = hf.HeightMap(origin=(0.0, 0.0), cell_size=2.56 / (n - 1), shape=(n, n))
    xy = grid.vertex_xy()
    x, y = xy[..., 0], xy[..., 1]
    h = 0.05 * np.sin(2.5 * x) * np.cos(1.7 * y) + 0.02 * np.sin(7 * x + 3 * y)
    h = np.where((np.abs(x - 1.0) < 0.2) & (np.abs(y - 1.5) < 0.3), 0.25, h)
    h = np.where(np.hypot(x - 1.8, y - 0.8) < 0.25, 0.15, h)
    grid.heights[:] = h
    grid.colors[:] = np.stack([0.5 + 0.4 * np.sin(9 * x), 0.5 + 0.4 * np.cos(11 * y), 0.5 + 0.2 * np.sin(5 * (x + y))], -1)
    return grid


def time_ms(fns: dict, repeats: int) -> dict:
    """Median ms per call of each function, calls interleaved so that machine noise hits all alike."""
    samples: dict = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up: compile shaders, allocate buffers
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(s) for name, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="gl", choices=hf.BACKENDS)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    renderer = hf.make_renderer(args.backend)
    T_wc = hf.look_at(eye=(-1.3, 1.28, 0.8), target=(1.28, 1.28, 0.0))
    print(f"backend {args.backend}; {hf.render.context.describe() if args.backend == 'gl' else ''}")
    print(f"{'image':>9} {'map':>8} {'depth ms':>9} {'full ms':>9} {'full/depth':>10} {'covered':>8}")
    for (width, height), n in (((320, 240), 128), ((640, 480), 256)):
        cam = hf.PinholeCamera(width, height, 0.8 * width, 0.8 * width, (width - 1) / 2, (height - 1) / 2)
        grid = make_scene(n)
        ms = time_ms(
            {"depth": lambda: renderer.render_depth(grid, cam, T_wc), "full": lambda: renderer.render(grid, cam, T_wc)},
            args.repeats,
        )
        depth_ms, full_ms = ms["depth"], ms["full"]
        covered = float(np.isfinite(renderer.render_depth(grid, cam, T_wc)).mean())
        print(f"{width}x{height:<4} {n:>4}^2 {depth_ms:9.2f} {full_ms:9.2f} {full_ms / depth_ms:10.2f} {covered:8.2f}")


if __name__ == "__main__":
    main()
