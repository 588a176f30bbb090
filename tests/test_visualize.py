"""Pictures: valid PNGs written atomically, orientation, no-data grey, colour scales and bars."""

import cv2
import numpy as np
import pytest

import heightfusion as hf
from heightfusion import visualize as vz

GREY = vz.NO_DATA_RGB


def ramp_grid(shape=(20, 30)):
    grid = hf.HeightMap((0.0, 0.0), 0.05, shape)
    grid.heights[:] = np.arange(shape[1]) * 0.01  # rises to the east
    grid.observed[:] = True
    grid.observed[0, 0] = False  # south-west corner
    return grid


def read_rgb(path):
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, f"{path} is not a readable image"
    return bgr[..., ::-1]


def pixel(img, shape, i, j):
    return tuple(int(c) for c in img[vz.vertex_pixel(shape, i, j)])


def test_height_png_is_valid_oriented_and_has_a_bar(tmp_path):
    grid = ramp_grid()
    grid.heights[-1, 0] = 0.5  # north-west corner, the highest vertex
    path = tmp_path / "height.png"
    img = vz.height_png(path, grid)
    np.testing.assert_array_equal(read_rgb(path), img)
    s = vz.map_scale(grid.shape)
    assert max(grid.ny, grid.nx) * s >= 400 and img.shape[0] >= grid.ny * s
    map_w = grid.nx * s
    assert img.shape[1] > map_w + 40  # room for the bar and its labels

    assert pixel(img, grid.shape, 0, 0) == GREY
    assert pixel(img, grid.shape, 5, 2) != pixel(img, grid.shape, 5, 25)
    lut = vz._lut(vz.HEIGHT_CMAP)
    assert img[0, 0].tolist() == lut[255].tolist()  # north up, west left: the top-left pixel is the peak
    assert img[grid.ny * s - 1, 1 * s].tolist() != lut[255].tolist()

    bar = img[:, map_w:]
    colours = {tuple(c) for c in bar.reshape(-1, 3)}
    assert tuple(lut[255]) in colours and tuple(lut[0]) in colours
    assert (bar.max(axis=2) < 60).sum() > 100  # dark pixels: frame, ticks, labels
    assert [p.name for p in tmp_path.iterdir()] == ["height.png"]  # no temp files left


def test_height_range_and_mask_are_respected():
    grid = ramp_grid()
    mask = np.ones(grid.shape, bool)
    mask[:, :10] = False
    img = vz.render_height(grid, vmin=0.0, vmax=0.1, mask=mask)
    lut = vz._lut(vz.HEIGHT_CMAP)
    assert pixel(img, grid.shape, 0, 0) == GREY  # masked out although unobserved anyway
    assert pixel(img, grid.shape, 5, 5) == GREY  # observed but masked out
    assert pixel(img, grid.shape, 5, 20) == tuple(lut[255])  # 0.2 m clipped at vmax
    with pytest.raises(ValueError, match="mask has shape"):
        vz.render_height(grid, mask=np.ones((2, 2), bool))


def test_flat_and_empty_maps_render():
    grid = hf.HeightMap((0.0, 0.0), 0.1, (4, 4))
    empty = vz.render_height(grid)
    s = vz.map_scale(grid.shape)
    assert (empty[: 4 * s, : 4 * s] == GREY).all()
    grid.observed[:] = True
    flat = vz.render_height(grid)
    assert flat.shape[0] == empty.shape[0] and (flat[: 4 * s, : 4 * s] != GREY).all()


def test_color_png_reproduces_colours(tmp_path):
    grid = ramp_grid()
    grid.colors[:] = 0.0
    grid.colors[3, 7] = (1.0, 0.0, 0.0)
    img = vz.color_png(tmp_path / "color.png", grid)
    assert img.shape == (grid.ny * vz.map_scale(grid.shape), grid.nx * vz.map_scale(grid.shape), 3)
    assert pixel(img, grid.shape, 3, 7) == (255, 0, 0)
    assert pixel(img, grid.shape, 3, 8) == (0, 0, 0)
    assert pixel(img, grid.shape, 0, 0) == GREY
    np.testing.assert_array_equal(read_rgb(tmp_path / "color.png"), img)


@pytest.mark.parametrize("log", [True, False])
def test_uncertainty_png(tmp_path, log):
    grid = ramp_grid()
    grid.information[:] = 1 / 0.002**2
    grid.information[:, 15:] = 1 / 0.05**2
    grid.information[10, 10] = 0.0  # no finite sigma
    img = vz.uncertainty_png(tmp_path / "sigma.png", grid, log=log)
    lut = vz._lut(vz.SIGMA_CMAP)
    assert pixel(img, grid.shape, 5, 5) == tuple(lut[0])  # smallest sigma
    assert pixel(img, grid.shape, 5, 20) == tuple(lut[255])  # largest sigma
    assert pixel(img, grid.shape, 10, 10) == GREY
    assert read_rgb(tmp_path / "sigma.png").shape == img.shape


def test_error_png_signs_and_grid_check(tmp_path):
    truth = ramp_grid()
    estimate = truth.copy()
    estimate.heights[4, 4] += 0.015  # too high: red
    estimate.heights[6, 6] -= 0.015  # too low: blue
    estimate.observed[8, 8] = False
    img = vz.error_png(tmp_path / "error.png", estimate, truth, limit=0.02)
    r, g, b = pixel(img, truth.shape, 4, 4)
    assert r > b + 50
    r, g, b = pixel(img, truth.shape, 6, 6)
    assert b > r + 50
    assert pixel(img, truth.shape, 8, 8) == GREY and pixel(img, truth.shape, 0, 0) == GREY
    assert min(pixel(img, truth.shape, 2, 2)) > 200  # zero error: near white
    with pytest.raises(ValueError, match="shape"):
        vz.render_error(hf.HeightMap((0.0, 0.0), 0.05, (5, 5)), truth)


def test_depth_png_keeps_image_orientation_and_blacks_out_nan(tmp_path):
    depth = np.tile(np.linspace(0.5, 3.0, 64, dtype=np.float32), (48, 1))
    depth[:8, :8] = np.nan
    img = vz.depth_png(tmp_path / "depth.png", depth)
    s = vz.map_scale(depth.shape)
    assert img.shape[0] >= 48 * s and img.shape[1] > 64 * s
    assert img[0, 0].tolist() == [0, 0, 0]
    assert img[47 * s, 0].tolist() != [0, 0, 0]
    assert img[30 * s, 63 * s].tolist() == vz._lut(vz.DEPTH_CMAP)[255].tolist()


def test_write_png_rejects_bad_arrays_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        vz.write_png(tmp_path / "bad.png", np.zeros((4, 4, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_vertex_colors_match_the_map_pictures():
    """The 3D views colour each vertex as the PNG pictures do, in grid order (no flip, no upscaling)."""
    grid = ramp_grid()
    grid.information[:] = 1.0 / np.linspace(1e-3, 4e-3, grid.nx)[None, :] ** 2
    grid.colors[:] = [0.2, 0.4, 0.6]
    for mode, picture in (("height", vz.render_height(grid)), ("uncertainty", vz.render_uncertainty(grid)),
                          ("color", vz.render_color(grid))):
        rgb = vz.vertex_colors(grid, mode)
        assert rgb.shape == grid.shape + (3,) and rgb.dtype == np.uint8
        assert tuple(rgb[0, 0]) == GREY  # unobserved
        for i, j in ((3, 2), (10, 29), (19, 15)):
            assert tuple(int(c) for c in rgb[i, j]) == pixel(picture, grid.shape, i, j)
    assert vz.vertex_colorbar(grid, "color") is None
    bar = vz.vertex_colorbar(grid, "height", height=200)
    assert bar.shape[0] == 200 and bar.shape[2] == 3
    with pytest.raises(ValueError, match="unknown view mode 'shiny'"):
        vz.vertex_colors(grid, "shiny")
