"""Baselines: the Kalman elevation map (sensor model, gate, higher-point rule, variance bounds) and the
Open3D TSDF height map, against synthetic ground truth."""

import sys

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.baselines import (
    BaselineUnavailable,
    KalmanConfig,
    KalmanElevationMap,
    TSDFConfig,
    TSDFHeightMap,
)
from heightfusion.depth.sensor import SensorNoise
from heightfusion.metrics import evaluate
from heightfusion.synthetic import generate
from heightfusion.visualize import color_png, height_png, uncertainty_png

# A camera 1 m above the floor looking straight down: camera x = world x, camera y = world -y.
CAM = hf.PinholeCamera(64, 48, 100.0, 100.0, 32.0, 24.0)  # 1 cm pixels on the floor: every cell seen
DOWN = np.diag([1.0, -1.0, -1.0, 1.0])
DOWN[:3, 3] = (0.2, 0.2, 1.0)
CENTRE = (24, 32)  # pixel (row, col) on the optical axis: world (0.2, 0.2), vertex (10, 10)


def small_grid() -> hf.HeightMap:
    return hf.HeightMap((0.0, 0.0), 0.02, (21, 21))


def flat_depth(height: float, cam: hf.PinholeCamera = CAM) -> np.ndarray:
    """Depth of the plane z = ``height`` seen by the camera at ``DOWN``."""
    return np.full(cam.shape, DOWN[2, 3] - height, dtype=np.float32)


def one_point(height: float) -> np.ndarray:
    """Depth with one pixel (at ``CENTRE``) on the plane z = ``height``, no value elsewhere."""
    depth = np.full(CAM.shape, np.nan, dtype=np.float32)
    depth[CENTRE] = DOWN[2, 3] - height
    return depth


@pytest.fixture(scope="module")
def floor_sequence():
    return generate("floor", frames=20, width=160, height=120, noise=True)


def converged_flat(config: KalmanConfig | None = None) -> tuple[hf.HeightMap, KalmanElevationMap]:
    grid = small_grid()
    kalman = KalmanElevationMap(grid, config)
    for k in range(5):
        kalman.fuse(CAM, DOWN, flat_depth(0.0), timestamp=0.1 * k)
    return grid, kalman


# --- Kalman: accuracy ------------------------------------------------------------------------------
def test_kalman_converges_to_ground_truth_on_flat_areas(floor_sequence):
    grid = floor_sequence.scene.grid.make_heightmap()
    kalman = KalmanElevationMap(grid)
    for frame in floor_sequence:
        stats = kalman.fuse(frame.camera, frame.T_wc, frame.depth, frame.image)
    assert stats.points > 1000 and stats.fused > 0.8 * stats.points
    result = evaluate(grid, floor_sequence.gt_heightmap)
    assert result["completeness"] > 0.9
    assert result["smooth_median"] < 0.002
    assert abs(result["smooth_bias"]) < 0.001
    assert result["smooth_within_1cm"] > 0.99


def test_kalman_map_saves_loads_and_draws(floor_sequence, tmp_path):
    grid = floor_sequence.scene.grid.make_heightmap()
    kalman = KalmanElevationMap(grid)
    for frame in floor_sequence.frames[:5]:
        kalman.fuse(frame.camera, frame.T_wc, frame.depth, frame.image)
    hf.save_heightmap(tmp_path / "heightmap.npz", grid)
    loaded = hf.load_heightmap(tmp_path / "heightmap.npz")
    for name in ("heights", "information", "colors", "observed"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(grid, name))
    assert np.isfinite(loaded.information).all() and (loaded.information > 0).all()
    for writer in (height_png, color_png, uncertainty_png):
        assert writer(tmp_path / f"{writer.__name__}.png", loaded).ndim == 3
    # Observed cells took the colours of the image, not the grid's mid-grey default.
    assert np.abs(loaded.colors[loaded.observed] - 0.5).max() > 0.1


# --- Kalman: sensor model --------------------------------------------------------------------------
def test_height_variance_is_the_depth_sigma_along_the_ray():
    # Straight down: the ray of the centre pixel is vertical and the camera's x, y axes horizontal,
    # so the height variance of a first measurement is the depth variance.
    grid = small_grid()
    kalman = KalmanElevationMap(grid)
    kalman.fuse(CAM, DOWN, one_point(0.0), sigma=np.full(CAM.shape, 0.01, np.float32))
    assert grid.observed.sum() == 1 and grid.observed[10, 10]
    assert grid.information[10, 10] == pytest.approx(1 / 0.01**2, rel=1e-4)
    # Tilted 60 degrees from vertical, without lateral noise: sigma_h = sigma_d * |world z of the ray|.
    tilt = np.radians(60.0)
    T = hf.look_at([0.2 - np.tan(tilt), 0.2, 1.0], [0.2, 0.2, 0.0])
    rays = CAM.pixel_rays() @ T[:3, :3].T
    depth = (0.0 - T[2, 3]) / rays[..., 2]  # z-depth of the plane z = 0 along every ray
    grid = small_grid()
    kalman = KalmanElevationMap(grid, KalmanConfig(lateral_factor=0.0, min_variance=1e-12))
    kalman.fuse(CAM, T, depth.astype(np.float32), sigma=np.full(CAM.shape, 0.01, np.float32))
    row, col = CENTRE
    x, y, _ = T[:3, 3] + depth[row, col] * rays[row, col]
    i, j = round(y / grid.cell_size), round(x / grid.cell_size)
    in_cell = np.rint((T[1, 3] + depth[..., None] * rays)[..., 1] / 0.02) == i
    in_cell &= np.rint((T[0, 3] + depth[..., None] * rays)[..., 0] / 0.02) == j
    var = (0.01 * rays[in_cell][:, 2]) ** 2
    expected = len(var) / np.sum(1 / var)  # one measurement per frame: the variance of one point
    assert grid.information[i, j] == pytest.approx(1 / expected, rel=1e-3)


def test_default_sigma_is_the_sensor_noise_model():
    grid = small_grid()
    KalmanElevationMap(grid, KalmanConfig(min_variance=1e-12)).fuse(CAM, DOWN, one_point(0.0))
    sigma = float(SensorNoise().sigma(np.float32(1.0)))
    assert grid.information[10, 10] == pytest.approx(1 / sigma**2, rel=1e-3)


# --- Kalman: gate and the higher-point rule --------------------------------------------------------
def test_point_below_the_gate_of_a_recent_cell_is_ignored():
    grid, kalman = converged_flat()
    before = grid.heights.copy(), grid.information.copy()
    stats = kalman.fuse(CAM, DOWN, one_point(-0.05), timestamp=0.5)
    assert stats.ignored_lower == 1 and stats.fused == 0
    np.testing.assert_array_equal(grid.heights, before[0])
    np.testing.assert_array_equal(grid.information, before[1])


def test_point_above_the_gate_of_a_recent_cell_resets_it():
    grid, kalman = converged_flat()
    stats = kalman.fuse(CAM, DOWN, one_point(0.05), timestamp=0.5)
    assert stats.higher_resets == 1
    assert grid.heights[10, 10] == pytest.approx(0.05, abs=1e-6)
    assert np.abs(np.delete(grid.heights.ravel(), 10 * 21 + 10)).max() < 1e-6  # the others stay


def test_higher_surface_in_a_cell_wins_over_its_inliers():
    """Half a cell on the floor, half on a box top: within one frame the cell takes the box top."""
    cam = hf.PinholeCamera(320, 240, 400.0, 400.0, 159.5, 119.5)
    grid, kalman = converged_flat()
    depth = flat_depth(0.0, cam)
    x = DOWN[0, 3] + (np.arange(cam.width) - cam.cx) / cam.fx * depth[0]
    depth[:, x > 0.2] = DOWN[2, 3] - 0.1  # a box 10 cm tall from x = 0.2 (vertex column 10) on
    kalman.fuse(cam, DOWN, depth, timestamp=0.5)
    assert grid.heights[10, 10] == pytest.approx(0.1, abs=1e-6)
    assert grid.heights[10, 9] == pytest.approx(0.0, abs=1e-6)


def test_stale_cell_takes_multi_height_noise_instead():
    grid, kalman = converged_flat()
    information = float(grid.information[10, 10])
    stats = kalman.fuse(CAM, DOWN, one_point(0.05), timestamp=5.0)  # > scanning_duration later
    assert stats.multi_height == 1 and stats.higher_resets == 0
    assert grid.heights[10, 10] == pytest.approx(0.0, abs=1e-6)
    expected = 1 / (1 / information + KalmanConfig().multi_height_noise)
    assert grid.information[10, 10] == pytest.approx(expected, rel=1e-4)


def test_lowered_surface_is_taken_up_after_a_few_frames():
    """Stale cells gather multi-height noise until the gate lets the new, lower surface in."""
    cam = hf.PinholeCamera(160, 120, 200.0, 200.0, 79.5, 59.5)
    grid, kalman = converged_flat()
    for k in range(8):
        kalman.fuse(cam, DOWN, flat_depth(-0.05, cam), timestamp=5.0 + 0.1 * k)
    assert grid.observed.all()
    # Border vertices own fewer pixels, so they gather the noise more slowly: check the interior.
    np.testing.assert_allclose(grid.heights[1:-1, 1:-1], -0.05, atol=1e-3)


# --- Kalman: variance bounds -----------------------------------------------------------------------
def test_variance_is_clamped_at_min_variance():
    grid, _ = converged_flat()
    seen = grid.observed
    np.testing.assert_allclose(grid.information[seen], 1 / KalmanConfig().min_variance, rtol=1e-6)
    grid, _ = converged_flat(KalmanConfig(min_variance=1e-8))
    assert (grid.information[grid.observed] > 1 / KalmanConfig().min_variance).all()


def test_cell_past_max_variance_is_forgotten_then_restarts():
    cam = hf.PinholeCamera(160, 120, 200.0, 200.0, 79.5, 59.5)
    config = KalmanConfig(max_variance=0.005**2)
    grid, kalman = converged_flat(config)
    stats = kalman.fuse(cam, DOWN, flat_depth(-0.05, cam), timestamp=5.0)
    assert stats.forgotten == grid.num_vertices
    assert not grid.observed.any()
    np.testing.assert_allclose(grid.information[~grid.observed], grid.prior_information)
    stats = kalman.fuse(cam, DOWN, flat_depth(-0.05, cam), timestamp=5.1)
    assert stats.new_cells == grid.num_vertices
    np.testing.assert_allclose(grid.heights[grid.observed], -0.05, atol=1e-6)


def test_kalman_config_rejects_bad_values():
    with pytest.raises(ValueError, match="max_variance"):
        KalmanConfig(min_variance=0.01, max_variance=0.001)
    with pytest.raises(ValueError, match="mahalanobis_threshold"):
        KalmanConfig(mahalanobis_threshold=0.0)
    with pytest.raises(ValueError, match="shape"):
        KalmanElevationMap(small_grid()).fuse(CAM, DOWN, np.zeros((5, 5), np.float32))


# --- TSDF ------------------------------------------------------------------------------------------
def test_tsdf_height_map_is_within_a_centimetre_on_flat_areas(floor_sequence):
    pytest.importorskip("open3d", reason="Open3D not installed (pip install -e '.[baselines]')")
    grid = floor_sequence.scene.grid.make_heightmap()
    tsdf = TSDFHeightMap(grid, TSDFConfig(weight_threshold=1.0))  # 20 frames see most voxels once or twice
    for frame in floor_sequence:
        stats = tsdf.fuse(frame.camera, frame.T_wc, frame.depth, frame.image)
    assert stats.blocks > 0
    assert tsdf.height_map() is grid
    result = evaluate(grid, floor_sequence.gt_heightmap)
    assert result["completeness"] > 0.7
    assert result["smooth_median"] < 0.005
    assert result["smooth_within_1cm"] > 0.97
    np.testing.assert_allclose(grid.information[grid.observed], 1 / 0.005**2)


def test_tsdf_without_open3d_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "open3d", None)  # makes `import open3d` raise ImportError
    with pytest.raises(BaselineUnavailable, match=r"pip install -e \"\.\[baselines\]\""):
        TSDFHeightMap(small_grid())


def test_tsdf_height_map_of_an_empty_volume_is_unobserved():
    pytest.importorskip("open3d")
    from heightfusion.baselines import TSDFHeightMap

    grid = hf.HeightMap((0.0, 0.0), 0.05, (8, 8))
    assert not TSDFHeightMap(grid).height_map().observed.any()  # was an Open3D RuntimeError
