"""A long drive fused with tiles: memory and time stay flat, the map covers the drive, halves merge (issue 15).

    xvfb-run -a python benchmarks/bench_long_drive.py [--frames 5500] [--merge-frames 1200]

1. Long drive: a robot camera (0.7 m above rolling terrain, pitched 30 degrees down, 160x120, Kinect-like
   sensor depth to 4 m) drives 26 m along a gentle slalom over a 32 m terrain (:class:`TerrainScene`). Frames
   are made on the fly: the scene's exact heights on a 4 cm grid (colour: shaded checker) drawn by a
   second GL renderer, noise added (the ray caster of ``heightfusion.synthetic`` takes 0.4 s per frame
   on a scene this large: hours for the drive). Fusion runs on a :class:`~heightfusion.tiles.TileWindow`
   (4 x 4 tiles of 64 vertices, 4 cm cells: 2.56 m tiles, a 10.24 m window, as the default 128-vertex
   tiles of 2 cm cells; at 2 cm the GL backend on llvmpipe spends 4x longer per frame drawing the
   triangles within 4 m, which would make the drive an hour on this machine) over a tiled map in a
   scratch folder. Printed:
   ms per frame (window following + fusion; frame making excluded), wall-clock and CPU (this process,
   all threads: less moved by the other work of a shared machine), and resident memory around frame 500
   (frames 250-749; memory at frame 500) and after frame 5,000 (frames 5000 to the end; memory at the
   end), their ratios (goal <= 1.1), window moves, tiles on disk, and coverage: the share of the
   camera's ground track (after its first 2 m, which the forward-looking camera never sees) whose
   vertex the final tiled map has observed.
2. Merge check: the first ``--merge-frames`` frames fused whole into one tiled map, and as two halves
   into two others, merged (:func:`heightfusion.tiles.merge_tiled`): median |dh| on the vertices both
   halves observed (goal <= 1 mm).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

import heightfusion as hf
from heightfusion.synthetic.scenes import TerrainScene, shade
from heightfusion.synthetic.sequence import default_camera
from heightfusion.tiles import TiledMap, TileWindow, merge_tiled

HALF_SIZE = 16.0  # the terrain spans +-16 m
DRIVE = (-13.0, 13.0)  # x range of the drive, metres
CAMERA_HEIGHT = 0.7
PITCH_DEG = 30.0
SLALOM = (1.0, 8.0)  # amplitude, wavelength (m)


def truth_map(scene: TerrainScene) -> hf.HeightMap:
    """The scene's heights on its 4 cm grid, coloured by a shaded 0.5 m checker (cheap, and texture to see)."""
    grid = scene.grid.make_heightmap()
    xy = grid.vertex_xy()
    x, y = xy[..., 0], xy[..., 1]
    grid.heights = scene.height(x, y).astype(np.float32)
    checker = ((np.floor(x / 0.5) + np.floor(y / 0.5)) % 2)[..., None] * np.array([0.35, 0.25, 0.1]) + 0.35
    grid.colors = (checker * shade(scene.normal(x, y))[..., None]).astype(np.float32)
    grid.information[:] = 1e6
    return grid


def drive_poses(scene: TerrainScene, frames: int) -> np.ndarray:
    """(frames, 4, 4) ``T_wc`` along the slalom, heading along the path."""
    x = np.linspace(*DRIVE, frames)
    amplitude, wavelength = SLALOM
    y = amplitude * np.sin(2 * np.pi * x / wavelength)
    heading = np.arctan(amplitude * 2 * np.pi / wavelength * np.cos(2 * np.pi * x / wavelength))
    z = scene.height(x, y) + CAMERA_HEIGHT
    pitch = math.radians(PITCH_DEG)
    poses = []
    for xi, yi, zi, h in zip(x, y, z, heading):
        forward = np.array([math.cos(h) * math.cos(pitch), math.sin(h) * math.cos(pitch), -math.sin(pitch)])
        eye = np.array([xi, yi, zi])
        poses.append(hf.look_at(eye, eye + forward))
    return np.stack(poses)


class Frames:
    """Sensor frames along ``poses`` drawn from ``truth`` (depth with Kinect-like noise, colour, sigma)."""

    def __init__(self, truth: hf.HeightMap, camera: hf.PinholeCamera, max_depth: float, seed: int = 0) -> None:
        self.truth, self.camera, self.max_depth = truth, camera, max_depth
        self.renderer = hf.make_renderer("gl")
        self.noise = hf.SensorNoise()
        self.rng = np.random.default_rng(seed)

    def frame(self, T_wc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        frag = self.renderer.render(self.truth, self.camera, T_wc)
        depth = np.where(frag.depth <= self.max_depth, frag.depth, np.nan)  # the sensor's range
        sigma = self.noise.sigma(depth)
        depth = (depth + sigma * self.rng.standard_normal(depth.shape)).astype(np.float32)
        image = np.clip(np.nan_to_num(frag.color) * 255, 0, 255).astype(np.uint8)
        return depth, image, np.nan_to_num(sigma, nan=1.0)

    def release(self) -> None:
        self.renderer.release()


def fuse_drive(frames: Frames, poses: np.ndarray, folder: Path, args, probe=None) -> TileWindow:
    """Fuse ``poses``' frames into a new tiled map in ``folder``; ``probe(k, ms, cpu_ms)`` after each frame k."""
    like = hf.HeightMap((0.0, 0.0), args.cell_size, (2, 2))
    window = TileWindow(TiledMap.create(folder, like, args.tile_size), tuple(poses[0][:2, 3]))
    renderer = hf.make_renderer("gl")
    fuser = hf.HeightMapFuser(window.grid, renderer, hf.FusionConfig())
    try:
        for k, T_wc in enumerate(poses):
            depth, image, sigma = frames.frame(T_wc)
            start, cpu = time.perf_counter(), time.process_time()
            window.follow(T_wc)
            fuser.fuse(frames.camera, T_wc, depth, image, sigma)
            if probe is not None:
                probe(k, (time.perf_counter() - start) * 1e3, (time.process_time() - cpu) * 1e3)
    finally:
        fuser.release()
        renderer.release()
    window.save()
    return window


def coverage(tiled: TiledMap, poses: np.ndarray) -> float:
    """Share of the camera's ground track (after its first 2 m) on vertices the tiled map observed."""
    track = poses[:, :2, 3]
    travelled = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(track, axis=0), axis=1))])
    track = track[travelled > 2.0]
    whole = tiled.whole()
    cols, rows = np.rint((track - whole.origin) / whole.cell_size).astype(int).T
    inside = (rows >= 0) & (rows < whole.ny) & (cols >= 0) & (cols < whole.nx)
    seen = np.zeros(len(track), dtype=bool)
    seen[inside] = whole.observed[rows[inside], cols[inside]]
    return float(seen.mean())


def long_drive(args, scene: TerrainScene, frames: Frames, scratch: Path) -> None:
    poses = drive_poses(scene, args.frames)
    ms, cpu_ms = np.zeros(len(poses)), np.zeros(len(poses))
    rss = {}
    process = psutil.Process()

    def probe(k: int, elapsed: float, cpu: float) -> None:
        ms[k], cpu_ms[k] = elapsed, cpu
        if k in (500, len(poses) - 1):
            rss[k] = process.memory_info().rss / 2**20
        if k % 500 == 0:
            print(f"  frame {k}: {elapsed:.1f} ms ({cpu:.1f} CPU), RSS {process.memory_info().rss / 2**20:.0f} MiB", flush=True)

    start = time.perf_counter()
    window = fuse_drive(frames, poses, scratch / "drive.zarr", args, probe)
    seconds = time.perf_counter() - start
    early, late = ms[250:750], ms[args.late_from:]
    early_cpu, late_cpu = cpu_ms[250:750], cpu_ms[args.late_from:]
    length = float(np.linalg.norm(np.diff(poses[:, :2, 3], axis=0), axis=1).sum())
    tiles = window.tiled.tiles()
    size_mib = sum(f.stat().st_size for f in (scratch / "drive.zarr").rglob("*") if f.is_file()) / 2**20
    print(f"\n1. Long drive: {len(poses)} frames, {length:.1f} m, {seconds:.0f} s in all (frame making included); "
          f"window {window.grid.shape[1]} x {window.grid.shape[0]} vertices, {window.moves} moves; "
          f"{len(tiles)} tiles on disk ({size_mib:.1f} MiB)")
    print(f"| | around frame 500 | after frame {args.late_from} | ratio |\n| --- | --- | --- | --- |")
    print(f"| ms per frame, mean | {early.mean():.1f} | {late.mean():.1f} | {late.mean() / early.mean():.2f} |")
    print(f"| ms per frame, median | {np.median(early):.1f} | {np.median(late):.1f} | {np.median(late) / np.median(early):.2f} |")
    print(f"| CPU ms per frame, mean | {early_cpu.mean():.1f} | {late_cpu.mean():.1f} | {late_cpu.mean() / early_cpu.mean():.2f} |")
    print(f"| CPU ms per frame, median | {np.median(early_cpu):.1f} | {np.median(late_cpu):.1f} | "
          f"{np.median(late_cpu) / np.median(early_cpu):.2f} |")
    print(f"| resident memory, MiB | {rss[500]:.0f} | {rss[len(poses) - 1]:.0f} | {rss[len(poses) - 1] / rss[500]:.3f} |")
    print(f"slowest frame {ms.max():.0f} ms (a move: tiles written and read); coverage of the drive's ground track: "
          f"{coverage(window.tiled, poses):.3f}; load average at the end {psutil.getloadavg()}")


def merge_check(args, scene: TerrainScene, frames: Frames, scratch: Path) -> None:
    poses = drive_poses(scene, args.frames)[: args.merge_frames]
    half = len(poses) // 2
    whole = fuse_drive(frames, poses, scratch / "whole.zarr", args).tiled
    first = fuse_drive(frames, poses[:half], scratch / "half0.zarr", args).tiled
    second = fuse_drive(frames, poses[half:], scratch / "half1.zarr", args).tiled
    merged = merge_tiled([first, second], scratch / "merged.zarr")
    reference = whole.whole()
    on_grid = [m.region(tuple(reference.origin), reference.shape) for m in (merged, first, second)]
    overlap = on_grid[1].observed & on_grid[2].observed
    difference = np.abs(on_grid[0].heights - reference.heights)[overlap]
    both = on_grid[0].observed & reference.observed
    print(f"\n2. Merge check: frames 0-{half - 1} and {half}-{len(poses) - 1} of the drive, each with tiles, merged, "
          f"against all {len(poses)} fused in one run: median |dh| {np.median(difference) * 1e3:.3f} mm on the "
          f"{int(overlap.sum())} vertices both halves observed (goal <= 1 mm); over all {int(both.sum())} vertices "
          f"both maps observed: median {np.median(np.abs(on_grid[0].heights - reference.heights)[both]) * 1e3:.3f} mm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5500, help="frames of the drive (timed after frame 5000)")
    parser.add_argument("--late-from", type=int, default=5000, help="first frame of the late timing")
    parser.add_argument("--merge-frames", type=int, default=1200, help="frames of the merge check")
    parser.add_argument("--cell-size", type=float, default=0.04, help="metres (default 0.04)")
    parser.add_argument("--tile-size", type=int, default=64, help="vertices per tile side (default 64)")
    parser.add_argument("--max-depth", type=float, default=4.0, help="the sensor's range, metres (default 4)")
    parser.add_argument("--skip-drive", action="store_true", help="only the merge check")
    args = parser.parse_args()
    scene = TerrainScene(half_size=HALF_SIZE)
    frames = Frames(truth_map(scene), default_camera(160, 120), args.max_depth)
    print(f"load average {psutil.getloadavg()}, {psutil.cpu_count()} CPUs")
    try:
        with tempfile.TemporaryDirectory() as scratch:
            if not args.skip_drive:
                long_drive(args, scene, frames, Path(scratch))
            merge_check(args, scene, frames, Path(scratch))
    finally:
        frames.release()


if __name__ == "__main__":
    main()
