"""Held-out protocol: the split, the upward-facing filter and the score on cases with a known answer."""

import math

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.heldout import map_heights, score_heldout, split_heldout, upward_points

CAM = hf.PinholeCamera(80, 60, 64.0, 64.0, 39.5, 29.5)
# Pixels with a normal: the 7-pixel window and the central differences 3 pixels away lose a 6-pixel rim.
INNER = (CAM.width - 12) * (CAM.height - 12)


def plane_frame(T_wc: np.ndarray, normal, point, index: int = 0) -> hf.Frame:
    """A frame whose depth sees the plane through ``point`` with ``normal`` (NaN where it does not)."""
    rays = CAM.pixel_rays() @ T_wc[:3, :3].T
    normal, point = np.asarray(normal, float), np.asarray(point, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = ((point - T_wc[:3, 3]) @ normal) / (rays @ normal)
    depth[~(depth > 0)] = np.nan
    return hf.Frame(index / 30, None, depth.astype(np.float32), T_wc, CAM, index)


def looking_down(height: float = 2.0) -> np.ndarray:
    T = np.diag([1.0, -1.0, -1.0, 1.0])  # camera x = world x, y = -y, z = -z
    T[2, 3] = height
    return T


def flat_map(height: float) -> hf.HeightMap:
    grid = hf.HeightMap((-1.0, -1.0), 0.05, (41, 41))
    grid.heights[:] = height
    grid.observed[:] = True
    return grid


def test_split_holds_out_every_nth_frame():
    frames = [plane_frame(looking_down(), (0, 0, 1), (0, 0, 0.8), k) for k in range(12)]
    fuse, held = split_heldout(frames, every=5)
    assert [f.index for f in held] == [4, 9]
    assert [f.index for f in fuse] == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11]
    with pytest.raises(ValueError, match="every"):
        split_heldout(frames, every=1)


def test_the_offsets_together_hold_out_each_frame_once():
    frames = [plane_frame(looking_down(), (0, 0, 1), (0, 0, 0.8), k) for k in range(12)]
    held = [[f.index for f in split_heldout(frames, every=5, offset=k)[1]] for k in range(5)]
    assert held == [[0, 5, 10], [1, 6, 11], [2, 7], [3, 8], [4, 9]]
    assert sorted(sum(held, [])) == list(range(12))
    for offset in (5, -1, 1.0):
        with pytest.raises(ValueError, match="offset"):
            split_heldout(frames, every=5, offset=offset)


def test_flat_map_one_centimetre_below_the_points():
    frame = plane_frame(looking_down(), (0, 0, 1), (0, 0, 0.81))
    result = score_heldout(flat_map(0.8), [frame, frame])
    assert result["points"] == 2 * INNER
    assert result["coverage"] == 1.0 and result["count"] == result["points"]
    assert result["median"] == pytest.approx(0.01, abs=1e-5)
    assert result["bias"] == pytest.approx(-0.01, abs=1e-5)
    assert result["within_2cm"] == 1.0 and result["within_5cm"] == 1.0


def test_calibration_weighs_the_error_against_map_and_point_sigmas():
    """Points 1 cm above the map, seen from 1.19 m: the Kinect model's sigma there is 2.4 mm."""
    frame = plane_frame(looking_down(2.0), (0, 0, 1), (0, 0, 0.81))
    point_sigma = hf.SensorNoise().sigma(1.19)
    grid = flat_map(0.8)
    grid.information[:] = 1 / 0.0095**2  # hypot(9.5, 2.4) = 9.8 mm < 1 cm: outside 1 sigma, inside 2
    result = score_heldout(grid, [frame])
    assert (result["calib_1sigma"], result["calib_2sigma"]) == (0.0, 1.0)
    grid.systematic_sigma[:] = math.sqrt(0.0101**2 - 0.0095**2 - point_sigma**2)  # the spread: 1.01 cm
    assert score_heldout(grid, [frame])["calib_1sigma"] == 1.0
    assert score_heldout(grid, [frame], noise=hf.SensorNoise(base=1e-6, quadratic=0.0))["calib_1sigma"] == 0.0


def test_unobserved_vertices_lower_the_coverage():
    frame = plane_frame(looking_down(), (0, 0, 1), (0, 0, 0.81))
    grid = flat_map(0.8)
    grid.observed[:, : grid.nx // 2] = False  # x < 0 unknown
    result = score_heldout(grid, [frame])
    assert result["coverage"] == pytest.approx(0.5)  # the left half of the view
    assert result["median"] == pytest.approx(0.01, abs=1e-5)
    grid.observed[:] = False
    result = score_heldout(grid, [frame])
    assert result["coverage"] == 0.0 and result["count"] == 0 and math.isnan(result["median"])


def test_only_upward_facing_surfaces_are_scored():
    T = hf.look_at([-1.0, 0.0, 2.0], [0.0, 0.0, 0.8])  # an oblique view
    assert len(upward_points(plane_frame(T, (0, 0, 1), (0, 0, 0.8)))[0]) == INNER
    tilted = (math.sin(math.radians(20)), 0.0, math.cos(math.radians(20)))
    assert len(upward_points(plane_frame(T, tilted, (0, 0, 0.8)))[0]) == INNER
    steep = (math.sin(math.radians(45)), 0.0, math.cos(math.radians(45)))
    assert len(upward_points(plane_frame(T, steep, (0, 0, 0.8)))[0]) == 0
    assert len(upward_points(plane_frame(T, steep, (0, 0, 0.8)), max_tilt_deg=50)[0]) > 0


def test_map_heights_are_bilinear_inside_observed_cells():
    grid = hf.HeightMap((0.0, 0.0), 1.0, (2, 2))
    grid.heights[:] = [[0.0, 1.0], [2.0, 4.0]]
    grid.observed[:] = True
    h = map_heights(grid, np.array([[0.5, 0.5], [0.25, 0.0], [1.5, 0.5]]))
    np.testing.assert_allclose(h[:2], [1.75, 0.25])
    assert np.isnan(h[2])  # outside the grid
    grid.observed[1, 1] = False
    assert np.isnan(map_heights(grid, np.array([[0.1, 0.1]]))).all()
