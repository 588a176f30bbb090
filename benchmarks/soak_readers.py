"""Soak test of the dataset readers and map files: memory and open files over long runs (issue 14). Not a test.

    python benchmarks/soak_readers.py               # 2,000 rounds (a few minutes)
    python benchmarks/soak_readers.py --rounds 200  # quick

Each round opens and reads, as a long replay or a live session that reopens its inputs would:
the bundled TUM sample (its first frames, leaving the iteration early), a video (leaving it after one
frame, so that its capture is released by the generator's close, not by the end of the video), a
garbled TUM folder (every frame skipped and counted), ``camera.yaml``, and a height map saved
(atomically) and loaded again.

Every tenth of the rounds a row gives the resident memory (VmRSS of /proc/self/status), the open file
descriptors (/proc/self/fd) and the leftover temporary files. Goal: resident memory grows by at most
5 % from the first row (after a tenth of the rounds warmed the caches) to the last, the descriptors
are the same in every row, and no temporary file is left.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

import heightfusion as hf
from heightfusion.datasets.camera_yaml import load_camera_yaml, save_camera_yaml

RSS_GROWTH_GOAL = 0.05
CAMERA = hf.PinholeCamera(32, 24, 30.0, 30.0, 15.5, 11.5)


def resident_mib() -> float:
    """Resident memory of this process, MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def make_inputs(folder: Path) -> dict[str, Path]:
    """A video folder with a camera file and trajectory, a garbled TUM folder, and a map path."""
    video_folder = folder / "video"
    video_folder.mkdir()
    writer = cv2.VideoWriter(str(video_folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, CAMERA.shape[::-1])
    for i in range(5):
        writer.write(np.full(CAMERA.shape + (3,), 40 * i, np.uint8))
    writer.release()
    save_camera_yaml(video_folder / "camera.yaml", CAMERA)
    (video_folder / "trajectory.txt").write_text("".join(f"{i / 10:.1f} {i} 0 1 0 0 0 1\n" for i in range(5)))
    garbled = folder / "garbled_fr1"
    (garbled / "rgb").mkdir(parents=True)
    (garbled / "rgb.txt").write_bytes(b"0.0 rgb/0.png\n0.1 rgb/missing.png\nnan x\n\xff\xfe\n0.2 /dev/zero\n")
    (garbled / "rgb" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return {"video": video_folder, "garbled": garbled, "map": folder / "maps" / "map.npz"}


def one_round(inputs: dict[str, Path], grid: hf.HeightMap) -> None:
    """Open and read every input once (see the module docstring)."""
    for _ in itertools.islice(hf.datasets.open(hf.datasets.sample_path()), 5):
        pass
    for _ in hf.datasets.open(inputs["video"]):
        break
    garbled = hf.datasets.open(inputs["garbled"])
    assert not list(garbled) and sum(garbled.skipped.values()) > 0
    load_camera_yaml(inputs["video"] / "camera.yaml")
    hf.save_heightmap(inputs["map"], grid)
    hf.load_heightmap(inputs["map"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    grid = hf.HeightMap((0.0, 0.0), 0.02, (200, 200), initial_height=0.1, prior_sigma=0.5)
    grid.heights[:] = np.random.default_rng(0).random(grid.shape, dtype=np.float32)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp))
        for n in range(1, args.rounds + 1):
            one_round(inputs, grid)
            if n % max(1, args.rounds // 10) == 0:
                leftovers = [p.name for p in inputs["map"].parent.iterdir() if p.name != "map.npz"]
                rows.append((n, resident_mib(), open_descriptors(), len(leftovers)))
                print(f"{n:7d} rounds  {rows[-1][1]:8.1f} MiB  {rows[-1][2]:4d} fds  {rows[-1][3]} temporary files  "
                      f"{time.perf_counter() - start:6.1f} s", flush=True)
    growth = rows[-1][1] / rows[0][1] - 1
    flat = growth <= RSS_GROWTH_GOAL and len({r[2] for r in rows}) == 1 and not any(r[3] for r in rows)
    print(f"resident memory {rows[0][1]:.1f} -> {rows[-1][1]:.1f} MiB ({growth:+.1%}, goal <= {RSS_GROWTH_GOAL:.0%}); "
          f"descriptors {rows[0][2]} -> {rows[-1][2]}: {'flat' if flat else 'GROWING'}")


if __name__ == "__main__":
    main()
