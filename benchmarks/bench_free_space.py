"""Free-space labels: obstacle precision / recall on the floor scene, and ms per call.

    python benchmarks/bench_free_space.py [--repeats 50]

1. Precision and recall of the OBSTACLE label of ``heightfusion.navigation.free_space`` (defaults:
   max step 5 cm, max slope 20 degrees, robot radius 10 cm) against obstacles derived from the floor
   scene's boxes and ramps (:mod:`heightfusion.synthetic.obstacles`), on the scene's
   ground-truth height map and on the map fused by ``replay`` of the bundled sample (the floor scene,
   60 frames). On the fused map also with a 5 mm tolerance on the step height: steps within it of
   max step (the 5 cm box) count for neither score, since fused heights are a few mm off.
   Recall is over vertices not labelled unknown; "as unknown" / "as free": shares of the true obstacles
   labelled unknown / free (the unsafe miss). Rows with inflate_unknown=False label free vertices whose
   robot disc reaches unseen ground free instead of unknown.
2. ms per ``free_space`` call on the floor scene sampled at 128 x 128 and 256 x 256 vertices (2 mm height
   noise), next to the 33 ms of a frame at 30 frames/s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import heightfusion as hf
from heightfusion import navigation as nav
from heightfusion.replay import replay
from heightfusion.synthetic import ground_truth_heightmap, make_scene
from heightfusion.synthetic.obstacles import analytic_obstacles, obstacle_scores

STEP_TOLERANCE = 0.005


def accuracy_table() -> None:
    print("1. obstacle label vs the floor scene's analytic obstacles (step 5 cm, slope 20 deg, radius 10 cm)")
    print(f"{'map':<58} {'precision':>9} {'recall':>7} {'as unknown':>10} {'as free':>8}  labels")
    scene = make_scene("floor")
    slope = nav.DEFAULT_MAX_SLOPE

    def truth(grid, max_step):
        return analytic_obstacles(scene, grid, max_step, slope, nav.DEFAULT_ROBOT_RADIUS)

    def row(name, labels, sure, possible=None):
        s = obstacle_scores(labels, sure, possible)
        print(f"{name:<58} {s['precision']:>9.3f} {s['recall']:>7.3f} {s['as_unknown']:>10.3f} {s['as_free']:>8.3f}  "
              f"{nav.label_counts(labels)}")

    gt = ground_truth_heightmap(scene)
    gt.observed[:] = True
    row("ground truth (150 x 150, 2 cm)", nav.free_space(gt), truth(gt, nav.DEFAULT_MAX_STEP))

    fused = replay(hf.datasets.sample_path(), progress=False).grid
    sure = truth(fused, nav.DEFAULT_MAX_STEP + STEP_TOLERANCE)
    possible = truth(fused, nav.DEFAULT_MAX_STEP - STEP_TOLERANCE)
    tolerance = f"step tolerance {STEP_TOLERANCE * 1e3:g} mm"
    for inflate_unknown in (True, False):
        labels = nav.free_space(fused, inflate_unknown=inflate_unknown)
        suffix = "" if inflate_unknown else ", inflate_unknown=False"
        row("fused sample" + suffix, labels, truth(fused, nav.DEFAULT_MAX_STEP))
        row(f"fused sample, {tolerance}{suffix}", labels, sure, possible)


def speed_table(repeats: int) -> None:
    print("\n2. ms per free_space call (median), floor scene with 2 mm height noise")
    print(f"{'map':>9} {'ms':>6} {'share of a 33 ms frame':>23}")
    scene = make_scene("floor")
    rng = np.random.default_rng(0)
    for n in (128, 256):
        grid = hf.HeightMap((-1.5, -1.5), 3.0 / (n - 1), (n, n))
        xy = grid.vertex_xy()
        grid.heights[:] = scene.height(xy[..., 0], xy[..., 1]) + rng.normal(0, 0.002, grid.shape)
        grid.observed[:] = True
        nav.free_space(grid)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            nav.free_space(grid)
            samples.append((time.perf_counter() - t0) * 1e3)
        ms = statistics.median(samples)
        print(f"{n:>4}x{n:<4} {ms:>6.2f} {ms / (1e3 / 30):>22.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per map size")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    accuracy_table()
    speed_table(args.repeats)


if __name__ == "__main__":
    main()
