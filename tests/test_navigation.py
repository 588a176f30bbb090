"""Free space: labelling rules on small maps, the picture, and the floor scene against its analytic obstacles."""

import math

import cv2
import numpy as np
import pytest

import heightfusion as hf
from heightfusion import navigation as nav
from heightfusion import visualize as vz
from heightfusion.navigation import FREE, OBSTACLE, UNKNOWN, FreeSpaceSettings, free_space
from heightfusion.replay import replay
from heightfusion.synthetic import (
    generate,
    ground_truth_heightmap,
    make_scene,
    write_tum,
)
from heightfusion.synthetic.obstacles import analytic_obstacles, obstacle_scores, rectangle_distance

CELL = 0.02


def flat_grid(shape=(40, 40)) -> hf.HeightMap:
    """A flat, fully observed floor at z = 0; vertex (i, j) at (j, i) * 2 cm."""
    grid = hf.HeightMap((0.0, 0.0), CELL, shape)
    grid.observed[:] = True
    return grid


# --- rules on small maps ------------------------------------------------------------------------------
def test_flat_floor_is_free_even_with_height_noise():
    grid = flat_grid()
    assert (free_space(grid) == FREE).all()
    grid.heights[:] = np.random.default_rng(0).normal(0.0, 0.003, grid.shape)
    # Single differences of this noise are steeper than 20 degrees here and there; the median is not.
    assert np.degrees(np.arctan(np.abs(np.diff(grid.heights, axis=1)) / CELL)).max() > 20
    labels = free_space(grid)
    assert labels.dtype == np.int8 and labels.shape == grid.shape
    assert (labels == FREE).all()


@pytest.mark.parametrize("radius", [0.06, 0.1, 0.14])
def test_box_taller_than_max_step_is_an_obstacle_ringed_by_robot_radius(radius):
    grid = flat_grid()
    grid.heights[15:25, 12:20] = 0.08  # edges half a cell outside the box's outer vertices
    labels = free_space(grid, max_step=0.05, robot_radius=radius)
    x0, x1, y0, y1 = 12 * CELL - CELL / 2, 19 * CELL + CELL / 2, 15 * CELL - CELL / 2, 24 * CELL + CELL / 2
    xy = grid.vertex_xy()
    inside = np.min([xy[..., 0] - x0, x1 - xy[..., 0], xy[..., 1] - y0, y1 - xy[..., 1]], axis=0)
    distance = np.where(inside > 0, inside, rectangle_distance(grid, x0, x1, y0, y1))  # to the box's edges
    expected = distance < radius
    assert set(np.unique(labels)) == {FREE, OBSTACLE}
    # Along the axes the ring is exact; at the corners the grid's distances differ by under a cell.
    np.testing.assert_array_equal(labels[20] == OBSTACLE, expected[20])
    np.testing.assert_array_equal(labels[:, 16] == OBSTACLE, expected[:, 16])
    assert ((labels == OBSTACLE) != expected).sum() <= 8
    assert (labels[distance >= radius + CELL] == FREE).all()


def test_steps_up_to_max_step_are_free_and_higher_ones_are_not():
    grid = flat_grid((40, 60))
    for k in range(3):  # a staircase of 4 cm steps with 6-vertex treads, rising along +x
        grid.heights[:, 20 + 6 * k :] = 0.04 * (k + 1)
    assert (free_space(grid, max_step=0.05) == FREE).all()
    assert (free_space(grid, max_step=0.04) == FREE).all()  # a step of exactly max_step is climbable
    labels = free_space(grid, max_step=0.035, robot_radius=0.0)
    np.testing.assert_array_equal(np.flatnonzero((labels == OBSTACLE).all(axis=0)), [19, 20, 25, 26, 31, 32])


@pytest.mark.parametrize(("slope_deg", "label"), [(15, FREE), (25, OBSTACLE)])
def test_ramp_is_free_below_max_slope_and_an_obstacle_above(slope_deg, label):
    grid = flat_grid((40, 60))
    x = grid.vertex_xy()[..., 0]
    rng = np.random.default_rng(1)
    grid.heights[:] = np.clip(x - 0.3, 0, None) * math.tan(math.radians(slope_deg)) + rng.normal(0, 0.002, grid.shape)
    labels = free_space(grid, max_slope=math.radians(20), robot_radius=0.1)
    assert (labels[:, 40:] == label).all()  # on the ramp
    assert (labels[:, :5] == FREE).all()  # flat floor, far from it


def test_unknown_vertices_are_unknown_unless_near_an_obstacle():
    grid = flat_grid()
    grid.observed[:, 30:] = False
    grid.heights[:, 30:] = 1.0  # unobserved: the prior's height means nothing
    grid.heights[10:14, 24:28] = 0.2  # a box 2 vertices from the unobserved half
    labels = free_space(grid, robot_radius=0.1)
    assert (labels[:, :18] == FREE).all()
    assert (labels[30:, 30:] == UNKNOWN).all()
    assert (labels[10:14, 30:32] == OBSTACLE).all()  # unseen, but a robot centred there hits the box
    # Free only where the robot's disc is all seen: 4 vertices (9 cm) short of the unobserved half.
    assert (labels[20:, 26:30] == UNKNOWN).all() and (labels[20:, :26] == FREE).all()
    labels = free_space(grid, robot_radius=0.1, inflate_unknown=False)
    assert (labels[20:, :30] == FREE).all() and (labels[:, 30:][labels[:, 30:] != OBSTACLE] == UNKNOWN).all()
    assert (labels[:, 29][labels[:, 29] != OBSTACLE] == FREE).all()  # no step to the unobserved heights

    grid.observed[:] = True
    grid.information[:] = 1.0 / 0.002**2
    grid.heights[:, 30:] = 0.0
    grid.heights[5, 5] = np.nan
    grid.information[30:, :] = 1.0 / 0.05**2  # sigma 5 cm
    labels = free_space(grid, max_sigma=0.01, inflate_unknown=False)
    assert labels[5, 5] == UNKNOWN and (labels[32:, :20] == UNKNOWN).all() and (labels[20:30, :20] == FREE).all()
    assert (free_space(grid, max_sigma=0.1, inflate_unknown=False)[30:, :20] == FREE).all()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_step": 0.0}, "max_step"),
        ({"max_step": float("nan")}, "max_step"),
        ({"max_slope": 20.0}, "max_slope"),
        ({"max_slope": -0.1}, "max_slope"),
        ({"robot_radius": -0.01}, "robot_radius"),
        ({"robot_radius": "0.1"}, "robot_radius"),
        ({"max_sigma": 0.0}, "max_sigma"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name) as info:
        free_space(flat_grid((4, 4)), **kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


def test_degrees_for_max_slope_get_a_hint():
    with pytest.raises(ValueError, match="radians"):
        free_space(flat_grid((4, 4)), max_slope=20)


def test_label_counts_and_tiny_maps():
    grid = flat_grid((2, 2))
    grid.observed[0, 0] = False
    assert nav.label_counts(free_space(grid, inflate_unknown=False)) == {"free": 3, "obstacle": 0, "unknown": 1}
    assert nav.label_counts(free_space(grid)) == {"free": 0, "obstacle": 0, "unknown": 4}  # all within 10 cm


# --- picture ------------------------------------------------------------------------------------------
def test_free_space_picture_is_north_up_with_a_legend(tmp_path):
    grid = flat_grid((20, 30))
    grid.heights[-4:, :4] = 0.2  # north-west corner: a box
    grid.observed[0, -1] = False  # south-east corner
    path = tmp_path / "free.png"
    img = vz.free_space_png(path, grid, FreeSpaceSettings(robot_radius=0.1))
    np.testing.assert_array_equal(cv2.imread(str(path))[..., ::-1], img)
    assert img.dtype == np.uint8 and img.ndim == 3
    s = vz.map_scale(grid.shape)
    assert img[0, 0].tolist() == list(vz.FREE_SPACE_RGB[OBSTACLE])  # top-left pixel: the north-west box
    assert img[grid.ny * s - 1, grid.nx * s - 1].tolist() == list(vz.NO_DATA_RGB)
    assert tuple(img[vz.vertex_pixel(grid.shape, 5, 15)]) == vz.FREE_SPACE_RGB[FREE]
    legend = img[:, grid.nx * s :]
    colours = {tuple(c) for c in legend.reshape(-1, 3).tolist()}
    assert set(vz.FREE_SPACE_RGB.values()) <= colours
    assert (legend.max(axis=2) < 60).sum() > 100  # text
    assert [p.name for p in tmp_path.iterdir()] == ["free.png"]
    with pytest.raises(ValueError, match="labels"):
        vz.render_free_space(np.full((3, 3), 7, dtype=np.int8))


# --- the floor scene ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def floor_scene():
    return make_scene("floor")


@pytest.mark.parametrize("slope_deg", [20, 10])
def test_floor_scene_truth_map_matches_the_analytic_obstacles(floor_scene, slope_deg):
    grid = ground_truth_heightmap(floor_scene)
    grid.observed[:] = True
    slope = math.radians(slope_deg)
    labels = free_space(grid, max_step=0.05, max_slope=slope, robot_radius=0.1)
    truth = analytic_obstacles(floor_scene, grid, 0.05, slope, 0.1)
    scores = obstacle_scores(labels, truth)
    print(f"floor truth map, max slope {slope_deg} deg: {scores}")
    assert scores["precision"] >= 0.9 and scores["recall"] >= 0.9

    def label_at(x, y):
        i, j = np.round(grid.world_to_grid(np.array([x, y]))).astype(int)
        return labels[i, j]

    assert label_at(-1.27, -1.23) == (FREE if slope_deg == 20 else OBSTACLE)  # middle of the 15 degree ramp
    assert label_at(1.05, -1.21) == OBSTACLE  # 25 cm box, 5 cm inside its edge
    assert label_at(1.15, -1.21) == FREE  # its top, 15 cm from the edges: the robot would fit (labels are local)
    assert label_at(1.19, 1.03) == FREE  # first 4 cm step, away from the staircase's higher sides
    assert label_at(-1.19, 1.13) == FREE  # a 5 cm box: climbable


def test_floor_scene_fused_map(floor_scene, tmp_path):
    folder = write_tum(generate("floor", frames=30, width=160, height=120, noise=True), tmp_path / "floor")
    grid = replay(folder, progress=False).grid
    labels = free_space(grid)
    tol = 0.005  # fused heights are a few mm off: steps within tol of max_step may go either way
    sure = analytic_obstacles(floor_scene, grid, 0.05 + tol, math.radians(20), 0.1)
    possible = analytic_obstacles(floor_scene, grid, 0.05 - tol, math.radians(20), 0.1)
    scores = obstacle_scores(labels, sure, possible)
    print(f"floor fused map (30 frames 160x120): {scores}, labels {nav.label_counts(labels)}")
    assert scores["precision"] >= 0.85 and scores["recall"] >= 0.9 and scores["as_free"] <= 0.05
