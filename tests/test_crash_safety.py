"""Saved files survive crashes: a process killed mid-save leaves the previous file whole, and a map reloads exactly.

The kill test runs writer processes that save a height map (``save_heightmap``) and a JSON file
(``atomic_write``) in a loop and kills them with SIGKILL at random moments. After every kill the files
must hold one complete version written earlier, and no temporary file may look like either of them.
It prints how many kills it ran and how many landed in the middle of a write (a temporary file left).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.atomic import atomic_write

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")

KILLS = 12
# Each writer saves for a random time in this range (seconds) before it is killed.
KILL_DELAY = (0.02, 0.4)
MAP_SHAPE = (160, 160)  # a map that takes a few milliseconds to compress and write

# The writer server imports heightfusion once (a second or more), then for each line "<first version>"
# on stdin forks a writer, prints its pid, and prints "reaped" once the writer has been killed. A writer
# saves versions first, first + 1, ... of a map and a JSON file, each version's every value equal to the
# version number, so that a mix of two versions or a truncated file cannot pass for a whole one.
WRITER_SERVER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import heightfusion as hf
    from heightfusion.atomic import atomic_write

    def write_forever(folder, version, shape):
        noise = np.random.default_rng(version).random(shape, dtype=np.float32)  # a write takes a while
        while True:
            grid = hf.HeightMap((0.0, 0.0), 0.01, shape, initial_height=float(version), prior_sigma=1.0 / version)
            grid.heights[:] = version
            grid.information[:] = version + 0.5 * noise  # noise < 1: the floor is the version
            hf.save_heightmap(folder + "/map.npz", grid)
            with atomic_write(folder + "/state.json") as f:
                f.write(json.dumps({"version": version, "padding": [version] * 20000}).encode())
            version += 1

    folder, shape = sys.argv[1], (int(sys.argv[2]), int(sys.argv[3]))
    print("ready", flush=True)
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            write_forever(folder, int(line), shape)
        print(pid, flush=True)
        os.waitpid(pid, 0)
        print("reaped", flush=True)
    """
)


def saved_map_version(path: Path) -> int:
    """The version held by the map at ``path``, checking that it is one whole version."""
    grid = hf.load_heightmap(path)
    version = int(grid.heights[0, 0])
    assert (grid.heights == version).all() and grid.prior_height == version
    assert (np.floor(grid.information) == version).all()
    return version


def saved_json_version(path: Path) -> int:
    """The version held by the JSON file at ``path``, checking that it is one whole version."""
    state = json.loads(path.read_text())
    assert state["padding"] == [state["version"]] * 20000
    return state["version"]


def temporary_files(folder: Path) -> list[str]:
    """Names in ``folder`` other than the two saved files; each must be an atomic_write temporary."""
    others = sorted(p.name for p in folder.iterdir() if p.name not in ("map.npz", "state.json"))
    for name in others:
        assert name.startswith((".map.npz.", ".state.json.")) and name.endswith(".tmp"), name
    return others


def test_sigkill_mid_save_leaves_the_previous_files_whole(tmp_path):
    rng = random.Random()
    first = hf.HeightMap((0.0, 0.0), 0.01, MAP_SHAPE)
    first.heights[:], first.information[:] = 0, 0.25  # version 0, as saved_map_version reads it
    hf.save_heightmap(tmp_path / "map.npz", first)
    with atomic_write(tmp_path / "state.json") as f:
        f.write(json.dumps({"version": 0, "padding": [0] * 20000}).encode())
    server = subprocess.Popen([sys.executable, "-c", WRITER_SERVER, str(tmp_path), *map(str, MAP_SHAPE)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    versions, mid_write, start = [0, 0], 0, time.perf_counter()
    try:
        assert server.stdout.readline().strip() == "ready"
        for kill in range(KILLS):
            # Each writer's versions start beyond any the one before can have reached.
            server.stdin.write(f"{10_000 * (kill + 1)}\n")
            server.stdin.flush()
            writer = int(server.stdout.readline())
            time.sleep(rng.uniform(*KILL_DELAY))
            os.kill(writer, signal.SIGKILL)
            assert server.stdout.readline().strip() == "reaped"
            leftovers = temporary_files(tmp_path)
            mid_write += bool(leftovers)
            map_version = saved_map_version(tmp_path / "map.npz")
            json_version = saved_json_version(tmp_path / "state.json")
            assert map_version >= versions[0] and json_version >= versions[1]  # never older than before
            versions = [map_version, json_version]
            # Lookups by extension never take a temporary file for the map.
            assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["map.npz"]
            for name in leftovers:
                (tmp_path / name).unlink()
    finally:
        server.kill()
        server.wait()
    elapsed = time.perf_counter() - start
    print(f"\ncrash safety: {KILLS} SIGKILLs, {mid_write} mid-write (temporary file left), {elapsed:.1f} s")
    assert versions[0] > 0  # the writers did save


# ----------------------------------------------------------------------------- save and reload


def fused_heights(grid: hf.HeightMap) -> np.ndarray:
    """The heights after fusing one flat depth image (a floor at z = 0.1 m seen from 1 m above)."""
    camera = hf.PinholeCamera(16, 12, 12.0, 12.0, 7.5, 5.5)
    T_wc = hf.look_at([0.35, 0.35, 1.0], [0.35, 0.35, 0.0], up=(0.0, 1.0, 0.0))
    fuser = hf.HeightMapFuser(grid, hf.make_renderer("raymarch"), hf.FusionConfig())
    try:
        fuser.fuse(camera, T_wc, np.full(camera.shape, 0.9, np.float32))
    finally:
        fuser.release()
    return grid.heights.copy()


def test_reloaded_map_keeps_its_prior_and_fuses_as_the_saved_one(tmp_path):
    grid = hf.HeightMap((0.0, 0.0), 0.1, (8, 8), initial_height=0.3, prior_sigma=0.5)
    path = tmp_path / "map.npz"
    hf.save_heightmap(path, grid)
    back = hf.load_heightmap(path)
    assert (back.prior_height, back.prior_information) == (grid.prior_height, grid.prior_information) == (0.3, 4.0)
    np.testing.assert_array_equal(fused_heights(back), fused_heights(grid))


def test_map_saved_without_a_prior_loads_with_the_default_one(tmp_path):
    """Files written before the prior was saved still load, with the constructor's default prior."""
    path = tmp_path / "old.npz"
    np.savez_compressed(path, heights=np.ones((3, 4), np.float32), information=np.full((3, 4), 2.0, np.float32),
                        colors=np.zeros((3, 4, 3), np.float32), observed=np.ones((3, 4), bool),
                        origin=np.array([1.0, 2.0]), cell_size=np.float64(0.5))
    grid = hf.load_heightmap(path)
    default = hf.HeightMap((0.0, 0.0), 1.0, (2, 2))
    assert (grid.prior_height, grid.prior_information) == (default.prior_height, default.prior_information)
    assert grid.heights.tolist() == [[1.0] * 4] * 3 and grid.cell_size == 0.5 and grid.observed.all()


def test_garbled_map_file_is_a_value_error_naming_it(tmp_path):
    path = tmp_path / "map.npz"
    hf.save_heightmap(path, hf.HeightMap((0.0, 0.0), 0.1, (3, 3)))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the compressed arrays: the zip directory still reads
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="map.npz"):
        hf.load_heightmap(path)
    path.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(ValueError, match="map.npz"):
        hf.load_heightmap(path)


def test_save_leaves_no_temporary_file_and_a_normal_file_mode(tmp_path):
    path = tmp_path / "map.npz"
    hf.save_heightmap(path, hf.HeightMap((0.0, 0.0), 0.1, (3, 3)))
    assert [p.name for p in tmp_path.iterdir()] == ["map.npz"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes a file, not mkstemp's 0600


def test_a_map_load_would_refuse_is_not_saved(tmp_path):
    path = tmp_path / "map.npz"
    grid = hf.HeightMap((0.0, 0.0), 0.1, (3, 3))
    hf.save_heightmap(path, grid)
    before = path.read_bytes()
    grid.heights[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"map\.npz.*'heights' holds NaN"):
        hf.save_heightmap(path, grid)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["map.npz"]
