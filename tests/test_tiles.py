"""Tiled maps and the window that follows the camera (heightfusion.tiles)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("zarr")

import heightfusion as hf
from heightfusion.cli import main
from heightfusion.merge import Evidence, merge_maps
from heightfusion.tiles import TiledMap, TileWindow, load_map, merge_tiled


def _random_map(origin, shape, seed=0) -> hf.HeightMap:
    rng = np.random.default_rng(seed)
    grid = hf.HeightMap(origin, 0.05, shape)
    seen = rng.random(shape) < 0.7
    grid.information[seen] = rng.uniform(10, 1e4, seen.sum())
    grid.heights[seen] = rng.uniform(-0.2, 0.3, seen.sum())
    grid.colors[seen] = rng.random((seen.sum(), 3))
    grid.observed[:] = seen & (grid.information > 100)
    grid.systematic_sigma[seen] = rng.uniform(0.0, 0.01, seen.sum())
    return grid


def test_tiles_round_trip_a_map_across_tile_borders(tmp_path):
    grid = _random_map((0.35, -0.4), (37, 41))  # rows -8..28 and columns 7..47 of the lattice
    tiled = TiledMap.create(tmp_path / "map", hf.HeightMap((0.0, 0.0), 0.05, (2, 2)), tile_size=16)
    tiled.add(grid)
    again = TiledMap.open(tmp_path / "map")
    assert (again.cell_size, again.tile_size, again.up) == (0.05, 16, "z")
    assert len(again.tiles()) == 3 * 3  # of 16-vertex tiles
    back = again.region(tuple(grid.origin), grid.shape)
    np.testing.assert_allclose(back.heights, grid.heights, atol=1e-5)
    np.testing.assert_allclose(back.information, grid.information, rtol=1e-6)
    seen = grid.information > grid.prior_information
    np.testing.assert_allclose(back.colors[seen], grid.colors[seen], atol=1e-5)
    assert (back.observed == grid.observed).all()
    np.testing.assert_allclose(back.systematic_sigma, grid.systematic_sigma, atol=1e-7)
    x0, x1, y0, y1 = again.extent
    assert x0 <= grid.extent[0] and x1 >= grid.extent[1] and y0 <= grid.extent[2] and y1 >= grid.extent[3]
    whole = load_map(tmp_path / "map")  # what export reads: the tiles' bounding box
    assert whole.shape == (48, 48) and int(whole.observed.sum()) == int(grid.observed.sum())
    with pytest.raises(ValueError, match="lattice"):
        tiled.add(hf.HeightMap((0.01, 0.0), 0.05, (4, 4)))
    with pytest.raises(ValueError, match="not a tiled map"):
        TiledMap.open(tmp_path)


def test_merging_tiled_maps_sums_their_evidence(tmp_path):
    a, b = _random_map((0.0, 0.0), (30, 30), seed=1), _random_map((0.5, 0.25), (30, 30), seed=2)
    for name, grid in (("a", a), ("b", b)):
        TiledMap.create(tmp_path / name, grid, tile_size=16).add(grid)
    merged = merge_tiled([TiledMap.open(tmp_path / "a"), TiledMap.open(tmp_path / "b")], tmp_path / "m")
    expected = merge_maps([a, b])
    got = merged.region(tuple(expected.origin), expected.shape)
    np.testing.assert_allclose(got.heights, expected.heights, atol=1e-5)
    np.testing.assert_allclose(got.information, expected.information, rtol=1e-5)
    assert (got.observed == expected.observed).all()
    np.testing.assert_allclose(got.systematic_sigma, expected.systematic_sigma, atol=1e-7)
    with pytest.raises(ValueError, match="exists"):
        merge_tiled([merged], tmp_path / "m")
    # merge_maps: the systematic sigma is the evidence-weighted mean of the maps'
    offset = (slice(5, 30), slice(10, 30))  # b's vertices (0..24, 0..19) on a's grid
    both = (a.information[offset] > a.prior_information) & (b.information[:25, :20] > b.prior_information)
    ea, eb = a.information[offset][both] - a.prior_information, b.information[:25, :20][both] - b.prior_information
    mean = (ea * a.systematic_sigma[offset][both] + eb * b.systematic_sigma[:25, :20][both]) / (ea + eb)
    np.testing.assert_allclose(expected.systematic_sigma[offset][both], mean, rtol=1e-5)


def test_tiled_maps_from_before_the_systematic_channel_still_open(tmp_path, monkeypatch):
    import heightfusion.tiles as tiles

    grid = _random_map((0.0, 0.0), (20, 20))
    with monkeypatch.context() as patch:
        patch.setattr(tiles, "CHANNELS", tiles.CHANNELS[:6])  # create it as an older version did
        TiledMap.create(tmp_path / "old", grid, tile_size=16)
    old = TiledMap.open(tmp_path / "old")
    assert old.channels == tiles.CHANNELS[:6]
    old.add(grid)
    back = TiledMap.open(tmp_path / "old").region(tuple(grid.origin), grid.shape)
    np.testing.assert_allclose(back.heights, grid.heights, atol=1e-5)
    assert not back.systematic_sigma.any()  # not kept there


# --- fusion ---------------------------------------------------------------------------------------
CELL = 0.04
CAMERA = hf.PinholeCamera(64, 48, 51.2, 51.2, 31.5, 23.5)


def _truth() -> hf.HeightMap:
    """Gentle waves with two boxes over 8 m x 4 m."""
    truth = hf.HeightMap((-1.0, -2.0), 0.02, (201, 401))
    xy = truth.vertex_xy()
    x, y = xy[..., 0], xy[..., 1]
    truth.heights[:] = 0.04 * np.sin(2.1 * x) * np.cos(1.3 * y)
    truth.heights[(np.abs(x - 2.0) < 0.2) & (np.abs(y - 0.3) < 0.2)] = 0.15
    truth.heights[(np.abs(x - 4.5) < 0.3) & (np.abs(y + 0.2) < 0.15)] = 0.1
    truth.colors[:] = (0.3 + 0.4 * ((np.floor(x / 0.2) + np.floor(y / 0.2)) % 2))[..., None]
    return truth


def _drive(frames: int = 36):
    """(T_wc, depth, image) of a camera driving 4.2 m along +x, looking 30 degrees down (depth to 1.5 m)."""
    truth, renderer = _truth(), hf.make_renderer("gl")
    out = []
    for x in np.linspace(0.0, 4.2, frames):
        eye = np.array([x, 0.1 * math.sin(x), 0.5])
        T_wc = hf.look_at(eye, eye + np.array([math.cos(math.radians(30)), 0.0, -math.sin(math.radians(30))]))
        frag = renderer.render(truth, CAMERA, T_wc)
        depth = np.where(frag.depth < 1.5, frag.depth, np.nan).astype(np.float32)
        out.append((T_wc, depth, (np.nan_to_num(frag.color) * 255).astype(np.uint8)))
    renderer.release()
    return out


@pytest.fixture(scope="module")
def drive():
    return _drive()


def _fuse(grid: hf.HeightMap, frames, window: TileWindow | None = None) -> None:
    renderer = hf.make_renderer("gl")
    # Every render rasterized: a refresh's walk is bounded by the tiles drawn, and the two maps' tile
    # grids differ (0.5 % of the vertices then move by over 0.1 mm, 3 of 5,349 change "observed").
    fuser = hf.HeightMapFuser(grid, renderer, hf.FusionConfig(rasterize_every_render=True))
    for T_wc, depth, image in frames:
        if window is not None:
            window.follow(T_wc)
        fuser.fuse(CAMERA, T_wc, depth, image)
    fuser.release()
    renderer.release()


def _static() -> hf.HeightMap:
    return hf.HeightMap((-0.6, -1.6), CELL, (81, 161))  # the whole drive's view


def test_a_scrolling_window_fuses_as_one_big_grid(tmp_path, drive):
    static = _static()
    _fuse(static, drive)
    # 0.64 m tiles, a 3.84 m window: larger than what the camera sees (1.5 m deep) from its middle half.
    tiled = TiledMap.create(tmp_path / "tiles", static, tile_size=16)
    window = TileWindow(tiled, centre=(0.0, 0.0), tiles=6)
    _fuse(window.grid, drive, window)
    window.save()
    assert window.moves >= 3 and window.grid.shape == (96, 96)
    scrolled = tiled.region(tuple(static.origin), static.shape)
    assert (scrolled.observed == static.observed).all()
    seen = static.observed
    # GL's float atomics sum in any order: not bit-exact. Now and then the order flips one pixel's outlier
    # gate and moves a vertex by up to half a millimetre (1 run in 6: 5.2e-4 m, else 6.4e-5 m at most).
    dh = np.abs(scrolled.heights - static.heights)[seen]
    assert np.percentile(dh, 99) < 1e-5 and (dh > 1e-4).mean() < 1e-3 and dh.max() < 2e-3
    ratio = scrolled.information[seen] / static.information[seen]  # the evidence kept, move after move
    assert np.percentile(np.abs(ratio - 1), 99) < 1e-3


def test_halves_with_tiles_merged_match_the_whole_run(tmp_path, drive):
    whole = _static()
    _fuse(whole, drive)
    half = len(drive) // 2
    maps = []
    for k, part in enumerate((drive[:half], drive[half:])):
        window = TileWindow(TiledMap.create(tmp_path / f"h{k}", whole, tile_size=16), centre=(0.0, 0.0))
        _fuse(window.grid, part, window)
        window.save()
        maps.append(window.tiled)
    merged = merge_tiled(maps, tmp_path / "merged").region(tuple(whole.origin), whole.shape)
    halves = [m.region(tuple(whole.origin), whole.shape) for m in maps]
    overlap = halves[0].observed & halves[1].observed
    assert overlap.sum() > 100
    assert np.median(np.abs(merged.heights - whole.heights)[overlap]) < 0.001  # the goal: 1 mm on the overlap


# --- atomic tiles -----------------------------------------------------------------------------------
_CRASH = """
import os, sys, numpy as np
import heightfusion.tiles as tiles
from heightfusion.merge import Evidence

def dying_write(path, data):  # the process is killed half way through writing the tile's file
    with tiles.atomic_write(path) as f:
        f.write(bytes(memoryview(data).cast("B")[: len(memoryview(data).cast("B")) // 2]))
        f.flush()
        os._exit(3)

tiles._write_file = dying_write
tiled = tiles.TiledMap.open(sys.argv[1])
evidence = Evidence.zeros((16, 16))
evidence.evidence[:] = 5.0
evidence.height[:] = 5.0 * 0.7
tiled.write_tile((8192, 8192), evidence)
"""


def test_a_crash_mid_write_leaves_the_previous_tile(tmp_path):
    grid = hf.HeightMap((0.0, 0.0), 0.05, (16, 16))
    grid.information[:] = 11.0
    grid.heights[:] = 0.25
    tiled = TiledMap.create(tmp_path / "map", grid, tile_size=16)
    tiled.add(grid)
    assert tiled.tiles() == [(8192, 8192)]
    crashed = subprocess.run([sys.executable, "-c", _CRASH, str(tmp_path / "map")], capture_output=True, text=True)
    assert crashed.returncode == 3, crashed.stderr
    assert any(p.name.endswith(".tmp") for p in (tmp_path / "map").rglob("*"))  # the half-written file was left
    back = TiledMap.open(tmp_path / "map")
    assert back.tiles() == [(8192, 8192)]
    np.testing.assert_allclose(back.region((0.0, 0.0), (16, 16)).heights, 0.25, atol=1e-6)


# --- commands ---------------------------------------------------------------------------------------
def test_replay_with_tiles_then_export_and_merge(tmp_path, capsys):
    rasterio = pytest.importorskip("rasterio")
    tiles, out = tmp_path / "tiles", tmp_path / "out"
    assert main(["replay", "--max-frames", "4", "--tiles", str(tiles), "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation"]["completeness"] > 0.05  # scored on the truth's grid of the tiled map
    first = load_map(tiles)
    assert metrics["map"]["shape"] == list(first.shape) and first.observed.sum() > 1000
    # A second run extends the same map: more evidence where both looked.
    assert main(["replay", "--max-frames", "2", "--tiles", str(tiles), "--out", str(out), "--quiet"]) == 0
    second = load_map(tiles)
    assert second.information.sum() > first.information.sum()
    tif = tmp_path / "map.tif"
    assert main(["export", str(tiles), "--geotiff", str(tif), "--ply", str(tmp_path / "map.ply")]) == 0
    with rasterio.open(tif) as src:
        height = src.read(1)[::-1]  # north-up rows back to the map's
    np.testing.assert_allclose(height[second.observed], second.heights[second.observed])
    assert main(["merge", str(tiles), str(tiles), "--out", str(tmp_path / "twice")]) == 0
    twice = load_map(tmp_path / "twice")
    seen = second.observed
    np.testing.assert_allclose(Evidence.of(twice).evidence[seen], 2 * Evidence.of(second).evidence[seen], rtol=1e-5)
    assert main(["replay", "--max-frames", "1", "--tiles", str(tiles), "--shape", "10", "10", "--out", str(out)]) == 2
    assert "--shape" in capsys.readouterr().err


def test_live_with_tiles_saves_the_tiled_map(tmp_path):
    tiles, out = tmp_path / "tiles", tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "heightfusion", "live", "--max-frames", "4", "--every-frame", "--hidden",
                           "--size", "640", "360", "--tiles", str(tiles), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"]["used"] == 4 and metrics["evaluation"]["completeness"] > 0.05
    assert TiledMap.open(tiles).tiles() and hf.load_heightmap(out / "heightmap.npz").shape == load_map(tiles).shape
