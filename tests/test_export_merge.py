"""Maps in the formats others read (GeoTIFF/COG read back with rasterio, grid_map's layout), and maps of
two halves of a sequence merged in information form against the whole run."""

import numpy as np
import pytest
import yaml

import heightfusion as hf
from heightfusion.cli import main
from heightfusion.export import export_geotiff, export_gridmap, gridmap_layer, gridmap_message, unpack_rgb
from heightfusion.merge import merge_maps


def _map() -> hf.HeightMap:
    grid = hf.HeightMap((1.0, -2.0), 0.05, (7, 9))
    xy = grid.vertex_xy()
    grid.heights[:] = 0.3 * xy[..., 0] - 0.2 * xy[..., 1]  # distinct in x and y: a flip or transpose shows
    grid.information[:] = 1e4
    grid.observed[:] = True
    grid.observed[0, 0] = False
    grid.colors[:] = np.random.default_rng(0).random(grid.shape + (3,))
    grid.systematic_sigma[3, 4] = 0.02  # a sigma of sqrt(1 + 4) cm there
    return grid


@pytest.mark.parametrize("cog", [False, True])
def test_geotiff_gives_each_vertex_height_at_its_coordinates(tmp_path, cog):
    rasterio = pytest.importorskip("rasterio")
    grid = _map()
    path = tmp_path / "map.tif"
    export_geotiff(path, grid, cog=cog)
    with rasterio.open(path) as src:
        assert src.count == 3 and src.descriptions == ("height", "sigma", "observed")
        assert "heightfusion" in src.crs.to_wkt()
        bands = src.read()
        xy = grid.vertex_xy()
        for i in range(grid.ny):
            for j in range(grid.nx):
                row, col = src.index(xy[i, j, 0], xy[i, j, 1])
                if grid.observed[i, j]:
                    assert bands[0, row, col] == pytest.approx(grid.heights[i, j], abs=1e-6)
                    assert bands[1, row, col] == pytest.approx(0.01 * (5**0.5 if (i, j) == (3, 4) else 1), rel=1e-6)
                else:
                    assert np.isnan(bands[0, row, col]) and bands[2, row, col] == 0
        if cog:
            assert src.profile["tiled"]
    assert not [p for p in tmp_path.iterdir() if p.name != "map.tif"]  # no temporary files left


def test_gridmap_message_has_grid_maps_layout(tmp_path):
    grid = _map()
    message = gridmap_message(grid)
    info = message["info"]
    assert info["resolution"] == 0.05 and info["length_x"] == pytest.approx(9 * 0.05) and info["length_y"] == pytest.approx(7 * 0.05)
    assert info["pose"]["position"]["x"] == pytest.approx(1.0 + 8 * 0.05 / 2)
    dims = message["data"][0]["layout"]["dim"]
    assert [d["label"] for d in dims] == ["column_index", "row_index"] and dims[1]["size"] == 9
    elevation = message["data"][0]["data"]
    # grid_map's cell (0, 0) is the map's corner of largest x and y; rows run along -x, columns along -y.
    assert elevation[0] == pytest.approx(grid.heights[-1, -1]) and elevation[1] == pytest.approx(grid.heights[-1, -2])
    assert elevation[9] == pytest.approx(grid.heights[-2, -1])
    path = tmp_path / "map.yaml"
    export_gridmap(path, grid)
    loaded = yaml.safe_load(path.read_text())
    np.testing.assert_allclose(gridmap_layer(loaded, "elevation")[grid.observed], grid.heights[grid.observed], rtol=1e-6)
    assert np.isnan(gridmap_layer(loaded, "elevation")[0, 0])
    variance = gridmap_layer(loaded, "variance")  # 1 / information and the systematic sigma squared
    assert variance[3, 4] == pytest.approx(5e-4, rel=1e-6)
    variance[3, 4] = 1e-4
    np.testing.assert_allclose(variance[grid.observed], 1e-4, rtol=1e-6)
    np.testing.assert_array_equal(unpack_rgb(gridmap_layer(loaded, "color")), np.rint(grid.colors * 255).astype(np.uint8))


def test_export_command_writes_every_format(tmp_path, capsys):
    pytest.importorskip("rasterio")
    hf.save_heightmap(tmp_path / "map.npz", _map())
    files = [tmp_path / name for name in ("m.tif", "c.tif", "m.ply", "m.yaml")]
    args = ["export", str(tmp_path / "map.npz"), "--geotiff", str(files[0]), "--cog", str(files[1]),
            "--ply", str(files[2]), "--gridmap", str(files[3])]
    assert main(args) == 0
    assert all(f.is_file() for f in files)
    assert main(["export", str(tmp_path / "map.npz")]) == 2
    assert "nothing to write" in capsys.readouterr().err


def _fuse(frames, grid_like):
    grid = hf.HeightMap(tuple(grid_like.origin), grid_like.cell_size, grid_like.shape)
    renderer = hf.make_renderer("gl")
    fuser = hf.HeightMapFuser(grid, renderer)
    for frame in frames:
        fuser.fuse(frame.camera, frame.T_wc, frame.depth, frame.image)
    fuser.release()
    return grid


def test_two_halves_merged_match_the_whole_run(tmp_path, capsys):
    sequence = hf.datasets.open(hf.datasets.sample_path())
    frames = list(sequence)
    truth = sequence.gt_heightmap
    whole = _fuse(frames, truth)
    halves = [_fuse(frames[:30], truth), _fuse(frames[30:], truth)]
    merged = merge_maps(halves)
    assert merged.shape == whole.shape
    overlap = halves[0].observed & halves[1].observed
    assert overlap.sum() > 1000
    difference = np.abs(merged.heights - whole.heights)[overlap]
    assert np.median(difference) < 0.001  # the goal: 1 mm median on the overlap
    np.testing.assert_allclose(merged.information[overlap], np.minimum(
        halves[0].information + halves[1].information - merged.prior_information, np.inf)[overlap], rtol=1e-5)
    for k, half in enumerate(halves):
        hf.save_heightmap(tmp_path / f"h{k}.npz", half)
    assert main(["merge", str(tmp_path / "h0.npz"), str(tmp_path / "h1.npz"), "--out", str(tmp_path / "m.npz")]) == 0
    np.testing.assert_allclose(hf.load_heightmap(tmp_path / "m.npz").heights, merged.heights)


def test_maps_of_other_lattices_are_refused():
    a = hf.HeightMap((0.0, 0.0), 0.05, (4, 4))
    with pytest.raises(ValueError, match="cells"):
        merge_maps([a, hf.HeightMap((0.0, 0.0), 0.04, (4, 4))])
    with pytest.raises(ValueError, match="lattice"):
        merge_maps([a, hf.HeightMap((0.01, 0.0), 0.05, (4, 4))])
    union = merge_maps([a, hf.HeightMap((0.1, -0.05), 0.05, (4, 4))])
    assert union.shape == (5, 6) and tuple(union.origin) == (0.0, -0.05)
