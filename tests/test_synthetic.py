"""Synthetic sequence generator: exact ray casting, scenes, trajectories, noise, the TUM writer and the CLI."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

import heightfusion as hf
from heightfusion.depth import SensorNoise
from heightfusion.cli import main as cli_main
from heightfusion.datasets.camera_yaml import load_camera_yaml
from heightfusion.synthetic import (
    DEPTH_SCALE,
    BlockScene,
    Box,
    cast_rays,
    default_camera,
    drone_lawnmower,
    generate,
    make_scene,
    raycast,
    robot_loop,
    write_tum,
)

SMALL = dict(width=64, height=48)


@pytest.fixture(scope="module")
def floor():
    return make_scene("floor")  # module scope: its textures are built once


@pytest.fixture(scope="module")
def terrain():
    return make_scene("terrain")


@pytest.fixture(scope="module")
def floor_seq(floor):
    return generate(floor, frames=6, **SMALL)


def _box(scene, height):
    return next(b for b in scene.boxes if b.height == height)


# --- ray casting against closed forms --------------------------------------------------------------
def test_flat_floor_depth_is_exact():
    scene = make_scene("flat")
    cam = default_camera(**SMALL)
    T_wc = hf.look_at([0.1, -0.3, 0.45], [0.5, 0.6, 0.0])
    hits = raycast(scene, cam, T_wc)
    exact = -T_wc[2, 3] / hits.directions[..., 2]  # z-depth of the plane z = 0: -c_z / d_z
    x, y = hits.points[..., 0], hits.points[..., 1]
    inside = (exact > 0) & (np.abs(T_wc[0, 3] + exact * hits.directions[..., 0]) < 1.49)
    inside &= np.abs(T_wc[1, 3] + exact * hits.directions[..., 1]) < 1.49
    assert inside.mean() > 0.3 and (~inside).any()  # some sky too
    np.testing.assert_allclose(hits.depth[inside], exact[inside], rtol=1e-6)
    assert np.isnan(hits.depth[~inside & (exact < 0)]).all()
    t = cast_rays(scene, T_wc[:3, 3], hits.directions.reshape(-1, 3)).reshape(cam.shape)
    np.testing.assert_allclose(t[inside], exact[inside], rtol=0, atol=1e-12)  # the secant step is exact on planes
    np.testing.assert_allclose(hits.points[inside][:, 2], 0.0, atol=1e-12)
    assert np.isfinite(x[inside]).all() and np.isfinite(y[inside]).all()
    # Axis-parallel directions (zero components) too.
    axis = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, -0.5], [-0.5, 0.0, -0.25]])
    np.testing.assert_allclose(cast_rays(scene, [0.2, -0.1, 0.5], axis), [0.5, 1.0, 2.0], atol=1e-12)


def test_box_top_hit(floor):
    box = _box(floor, 0.20)
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    origin = np.array([cx - 0.3, cy - 0.2, 0.6])
    targets = np.array([[cx, cy, box.height], [cx + 0.05, cy - 0.07, box.height], [cx - 0.08, cy + 0.07, box.height]])
    d = targets - origin
    t = cast_rays(floor, origin, d)
    np.testing.assert_allclose(t, (origin[2] - box.height) / -d[:, 2], rtol=0, atol=1e-12)


def test_vertical_wall_hit_lands_on_the_wall(floor):
    box = _box(floor, 0.20)
    origin = np.array([box.x0 - 0.5, (box.y0 + box.y1) / 2, 0.12])
    d = np.array([[1.0, 0.0, 0.0], [1.0, 0.1, -0.1], [1.0, -0.12, 0.1], [1.0, 0.05, -0.2]])
    t = cast_rays(floor, origin, d)
    p = origin + t[:, None] * d
    np.testing.assert_allclose(p[:, 0], box.x0, atol=1e-6)  # on the wall x = x0 ...
    assert ((p[:, 2] > 0) & (p[:, 2] < box.height)).all()  # ... between floor and top
    np.testing.assert_allclose(t, (box.x0 - origin[0]) / d[:, 0], atol=1e-6)
    n = floor.normal(p[:, 0], p[:, 1])
    np.testing.assert_allclose(n, np.tile([-1.0, 0.0, 0.0], (len(p), 1)), atol=1e-2)  # horizontal, facing -x


def test_ramp_hit_and_misses():
    scene = make_scene("ramp")
    ramp = scene.ramps[0]
    slope = ramp.height / (ramp.x1 - ramp.x0)
    origin = np.array([ramp.x0 - 0.4, (ramp.y0 + ramp.y1) / 2, 0.5])
    d = np.array([[1.0, 0.02, -0.6], [1.0, -0.05, -0.5], [0.0, 0.0, 1.0], [-1.0, 0.0, -0.01]])
    t = cast_rays(scene, origin, d)
    # Plane z = slope * (x - x0): o_z + t d_z = slope (o_x + t d_x - x0).
    exact = (slope * (origin[0] - ramp.x0) - origin[2]) / (d[:2, 2] - slope * d[:2, 0])
    np.testing.assert_allclose(t[:2], exact, atol=1e-12)
    assert math.degrees(math.atan(slope)) == pytest.approx(15, abs=1)
    assert np.isnan(t[2:]).all()  # up into the sky; out of the extent before reaching the floor


def test_terrain_hit_is_the_first_crossing(terrain):
    cam = default_camera(**SMALL)
    T_wc = drone_lawnmower(5)[2]
    hits = raycast(terrain, cam, T_wc)
    assert hits.hit.all()
    p = hits.points.reshape(-1, 3)
    np.testing.assert_allclose(p[:, 2], terrain.height(p[:, 0], p[:, 1]), atol=1e-6)
    # Densely sampled, every ray stays above the surface before its hit.
    d = hits.directions.reshape(-1, 3)
    t = hits.depth.reshape(-1).astype(np.float64)
    s = np.linspace(0.0, 1.0, 400)[None, :-1] * (t[:, None] - 2e-6)
    q = T_wc[:3, 3] + s[..., None] * d[:, None, :]
    assert (q[..., 2] - terrain.height(q[..., 0], q[..., 1]) > 0).all()


def test_box_table_matches_the_box_list(floor):
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-1.5, 1.5, (2, 20000))
    direct = np.zeros_like(x)
    for b in floor.boxes:
        inside = (x >= b.x0) & (x < b.x1) & (y >= b.y0) & (y < b.y1)
        direct = np.maximum(direct, np.where(inside, b.height, 0.0))
    for r in floor.ramps:
        direct = np.maximum(direct, r.height_at(x, y))
    np.testing.assert_array_equal(floor.height(x, y), direct)
    tiles = floor.height_bounds  # upper bounds per tile, used to skip empty space
    i, j = (np.floor((v + 1.5) / floor.tile_size).astype(int) for v in (y, x))
    assert (direct <= tiles[i, j]).all() and (tiles[i, j] == direct).mean() > 0.8


def test_block_edges_must_be_on_the_lattice():
    with pytest.raises(ValueError, match="lattice"):
        BlockScene("bad", (Box(0.0, 0.105, 0.0, 0.1, 0.1),))


# --- scenes --------------------------------------------------------------------------------------
def test_scene_grids_and_extents(floor, terrain):
    assert floor.grid.cell_size == 0.02 and floor.grid.shape == (150, 150)
    assert floor.extent == (-1.5, 1.5, -1.5, 1.5)
    heights = sorted({b.height for b in floor.boxes})
    assert heights[0] <= 0.05 and heights[-1] > 0.1
    assert terrain.grid.cell_size == 0.04 and terrain.extent == (-4.0, 4.0, -4.0, 4.0)
    xy = terrain.grid.make_heightmap().vertex_xy()
    h = terrain.height(xy[..., 0], xy[..., 1])
    assert 0.3 <= np.ptp(h) / 2 <= 0.5
    with pytest.raises(ValueError, match="valid scenes: floor"):
        make_scene("moon")


def test_smooth_mask(floor, terrain):
    box = _box(floor, 0.20)
    cell = floor.grid.cell_size
    cy = (box.y0 + box.y1) / 2
    x = np.array([box.x0 - 1.6 * cell, box.x0 - 1.4 * cell, box.x0, box.x0 + 1.4 * cell, box.x0 + 1.6 * cell])
    np.testing.assert_array_equal(floor.smooth_mask(x, np.full_like(x, cy)), [True, False, False, False, True])
    assert floor.smooth_mask(0.75, -0.75)  # bare floor
    assert terrain.smooth_mask(np.zeros((3, 4)), 0.0).all()


def test_texture_is_rich_and_filtered(floor):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1.4, 1.4, (2, 5000))
    sharp = floor.colour(x, y, floor.height(x, y))
    assert sharp.shape == (5000, 3) and sharp.dtype == np.float32
    assert 0 <= sharp.min() and sharp.max() <= 1 and sharp.std(axis=0).min() > 0.08
    # Neighbouring texels differ (fine detail), and pre-filtering to a coarse footprint smooths.
    dx = floor.colour(x + 0.004, y, floor.height(x + 0.004, y)) - sharp
    blurred = floor.colour(x, y, floor.height(x, y), footprint=0.05)
    assert np.abs(dx).mean() > 0.01
    assert blurred.std(axis=0).mean() < sharp.std(axis=0).mean()
    # A wall is textured along its height too (triplanar), not streaked.
    box = _box(floor, 0.20)
    z = np.linspace(0.01, 0.19, 50)
    wall = floor.colour(np.full_like(z, box.x0), np.full_like(z, 0.45), z)
    assert wall.std(axis=0).mean() > 0.02



def test_texture_levels_line_up_so_a_point_keeps_its_colour_at_every_distance():
    """A linear ramp survives cv2.pyrDown's symmetric filter, so every mip level must give the value of
    level 0 at the same point. Levels misplaced by (2^L - 1) / 2 texels (the old lookup) shifted the
    texture with the viewing distance, and biased motion stereo by +0.5 % of depth."""
    from heightfusion.synthetic.scenes import Texture

    texture = Texture((0.0, 2.56), (0.0, 2.56), texel=0.005, patch=0.05, seed=0)
    rows, cols = texture.levels[0].shape[:2]
    ramp = np.broadcast_to((0.3 * np.arange(cols, dtype=np.float32) + 0.1 * np.arange(rows)[:, None])[..., None],
                           (rows, cols, 3)).copy()
    texture.levels = [ramp]
    while min(texture.levels[-1].shape[:2]) >= 16:
        texture.levels.append(cv2.pyrDown(texture.levels[-1]))
    u, v = np.meshgrid(np.linspace(0.8, 1.7, 40), np.linspace(0.8, 1.7, 40))  # away from the borders
    fine = texture.sample(u, v, texture.texel)
    for level in (1, 2, 3, 4):
        coarse = texture.sample(u, v, texture.texel * 2**level)
        # cv2.remap's bilinear weights are in 1/32 steps: 1/32 of a level-L texel moves the ramp by 0.4 * 2^L / 32.
        # The old shift moved it by 0.2 * (2^L - 1), five times that bound.
        assert np.abs(coarse - fine).max() < 0.04 * 2**level, level

# --- trajectories --------------------------------------------------------------------------------
def test_trajectories():
    robot = robot_loop(12)
    assert robot.shape == (12, 4, 4)
    for T in robot:
        hf.validate_pose(T)
    np.testing.assert_allclose(robot[:, 2, 3], 0.45)
    pitch = np.degrees(np.arcsin(-robot[:, 2, 2]))  # optical axis below the horizon
    np.testing.assert_allclose(pitch, 30.0, atol=1e-9)
    drone = drone_lawnmower(10)
    np.testing.assert_allclose(drone[:, 2, 3], 2.0)
    tilt = np.degrees(np.arccos(-drone[:, 2, 2]))  # from straight down
    np.testing.assert_allclose(tilt, 30.0, atol=1e-9)
    steps = np.linalg.norm(np.diff(drone[:, :2, 3], axis=0), axis=1)
    assert steps.max() < 1.5 * steps.mean()  # evenly spaced along the path


# --- sequences -----------------------------------------------------------------------------------
def test_generate_frames(floor_seq):
    assert len(floor_seq) == 6
    for i, frame in enumerate(floor_seq):
        assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
        assert frame.depth.shape == (48, 64) and frame.depth.dtype == np.float32
        assert frame.index == i and frame.timestamp == pytest.approx(i / 30.0)
        assert frame.camera == floor_seq.camera and frame.camera.fx == pytest.approx(0.8 * 64)
        assert np.isfinite(frame.depth).mean() > 0.4
        assert frame.image.std() > 10
    sky = ~np.isfinite(floor_seq[0].depth)
    np.testing.assert_array_equal(np.isnan(floor_seq.sigmas[0]), sky)


def test_gt_heightmap(floor_seq, floor):
    gt = floor_seq.gt_heightmap
    assert gt.shape == floor.grid.shape and gt.cell_size == floor.grid.cell_size
    xy = gt.vertex_xy()
    np.testing.assert_array_equal(gt.heights, floor.height(xy[..., 0], xy[..., 1]).astype(np.float32))
    assert (gt.information >= 1e5).all()
    assert gt.colors.min() >= 0 and gt.colors.max() <= 1 and gt.colors.std() > 0.05


def test_observed_mask(floor):
    cam = default_camera(**SMALL)
    T_wc = robot_loop(8)[0]
    seq = generate(floor, poses=T_wc[None], **SMALL)
    gt = seq.gt_heightmap
    assert 0.02 < gt.observed.mean() < 0.5
    # Every hit's triangle is observed ...
    hits = raycast(floor, cam, T_wc)
    p = hits.points[hits.hit]
    rc = np.floor(gt.world_to_grid(p[:, :2])).astype(int)
    ok = (rc >= 0).all(1) & (rc[:, 0] < gt.ny - 1) & (rc[:, 1] < gt.nx - 1)
    assert gt.observed[rc[ok, 0], rc[ok, 1]].all()
    # ... and observed vertices lie in front of the camera, inside the image up to a cell's margin.
    v = gt.vertices()[gt.observed.ravel()]
    v_cam = (v - T_wc[:3, 3]) @ T_wc[:3, :3]
    assert (v_cam[:, 2] > 0).all()
    uv = cam.project(v_cam)
    margin = cam.fx * 2 * gt.cell_size / v_cam[:, 2]
    assert ((uv[:, 0] > -1 - margin) & (uv[:, 0] < cam.width + margin)).all()
    assert ((uv[:, 1] > -1 - margin) & (uv[:, 1] < cam.height + margin)).all()
    # A longer sequence sees most of the floor.
    assert generate(floor, frames=16, width=96, height=72).gt_heightmap.observed.mean() > 0.85


def test_noise_statistics(floor):
    clean = generate(floor, frames=3, **SMALL)
    noisy = generate(floor, frames=3, noise=True, seed=7, **SMALL)
    again = generate(floor, frames=3, noise=True, seed=7, **SMALL)
    z = np.concatenate([f.depth.ravel() for f in clean])
    zn = np.concatenate([f.depth.ravel() for f in noisy])
    sigma = np.concatenate([s.ravel() for s in noisy.sigmas])
    ok = np.isfinite(z)
    np.testing.assert_allclose(sigma[ok], 0.0012 + 0.0019 * (z[ok] - 0.4) ** 2, rtol=1e-5)
    np.testing.assert_allclose(SensorNoise().sigma(np.array([0.4, 2.4])), [0.0012, 0.0012 + 0.0019 * 4], rtol=1e-6)
    r = (zn[ok] - z[ok]) / sigma[ok]
    assert abs(r.mean()) < 0.05 and r.std() == pytest.approx(1.0, abs=0.05)
    np.testing.assert_array_equal(noisy[1].depth, again[1].depth)  # seeded
    np.testing.assert_array_equal(noisy[1].image, clean[1].image)  # noise is in the depth only


def test_generate_rejects_bad_values(floor):
    for kwargs, match in [
        (dict(frames=0), "frames"),
        (dict(width=4), "width"),
        (dict(height=2.5), "height"),
        (dict(fps=0.0), "fps"),
        (dict(scene="moon"), "valid scenes"),
        (dict(poses=np.eye(4)), "poses"),
    ]:
        with pytest.raises(ValueError, match=match):
            generate(**{"scene": floor, **kwargs})


# --- writing -------------------------------------------------------------------------------------
def _read_list(path):
    return [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]


def test_write_tum_round_trip(floor_seq, tmp_path):
    out = write_tum(floor_seq, tmp_path / "seq")
    rgb, depth, gt = (_read_list(out / name) for name in ("rgb.txt", "depth.txt", "groundtruth.txt"))
    assert len(rgb) == len(depth) == len(gt) == len(floor_seq)
    for frame, (t_rgb, f_rgb), (t_depth, f_depth), line in zip(floor_seq, rgb, depth, gt):
        assert float(t_rgb) == float(t_depth) == float(line[0]) == pytest.approx(frame.timestamp, abs=1e-6)
        image = cv2.imread(str(out / f_rgb), cv2.IMREAD_UNCHANGED)[..., ::-1]
        np.testing.assert_array_equal(image, frame.image)
        raw = cv2.imread(str(out / f_depth), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint16
        valid = np.isfinite(frame.depth)
        np.testing.assert_array_equal(raw > 0, valid)
        np.testing.assert_allclose(raw[valid] / DEPTH_SCALE, frame.depth[valid], atol=0.5 / DEPTH_SCALE + 1e-6)
        np.testing.assert_allclose(hf.pose_from_tum(*map(float, line[1:])), frame.T_wc, atol=1e-8)
    cam, scale = load_camera_yaml(out / "camera.yaml")
    assert cam == floor_seq.camera and scale == DEPTH_SCALE
    loaded = hf.load_heightmap(out / "gt_heightmap.npz")
    for key in ("heights", "information", "colors", "observed"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(floor_seq.gt_heightmap, key))
    np.testing.assert_array_equal(loaded.origin, floor_seq.gt_heightmap.origin)


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "t"
    assert cli_main(["synth", str(out), "--scene", "terrain", "--frames", "2", "--width", "32", "--height", "24", "--noise"]) == 0
    assert len(_read_list(out / "rgb.txt")) == 2 and (out / "gt_heightmap.npz").exists()
    assert "2 frames of scene 'terrain'" in capsys.readouterr().out
    assert cli_main(["synth", str(tmp_path / "u"), "--frames", "-3"]) == 2
    assert "frames must be an integer >= 1" in capsys.readouterr().err
    assert cli_main(["synth", str(tmp_path / "v"), "--scene", "moon"]) == 2
    assert "valid scenes" in capsys.readouterr().err
