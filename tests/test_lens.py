"""Lens distortion removed where data is read: exact on surfaces, no blending across depth edges, and a
synthetic floor rendered through freiburg1's lens fuses like the same floor seen by an ideal camera."""

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.datasets.tum import TUM_CAMERAS
from heightfusion.lens import EDGE_RATIO, undistortion_for
from heightfusion.synthetic import generate

FREIBURG1 = TUM_CAMERAS[1].distortion


def test_lens_rays_invert_the_lens_model():
    import cv2

    camera = hf.PinholeCamera(160, 120, 130.0, 129.0, 80.2, 62.1, FREIBURG1)
    rays = camera.lens_rays()
    projected, _ = cv2.projectPoints(rays.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), camera.K, np.asarray(FREIBURG1))
    u, v = np.meshgrid(np.arange(160), np.arange(120))
    assert np.abs(projected.reshape(120, 160, 2) - np.stack([u, v], -1)).max() < 1e-6
    np.testing.assert_array_equal(hf.PinholeCamera(16, 12, 10.0, 10.0, 7.5, 5.5).lens_rays()[..., 2], 1.0)


@pytest.fixture(scope="module")
def floor_pair():
    """The same poses of the floor scene through freiburg1's lens and through an ideal one (exact depth)."""
    return generate("floor", frames=4, width=160, height=120, distortion=FREIBURG1), generate("floor", frames=4, width=160, height=120)


def test_undistorted_depth_is_the_ideal_cameras_depth(floor_pair):
    lens, ideal = floor_pair
    undistort = undistortion_for(lens.camera)
    errors, missing = [], []
    for a, b in zip(lens.frames, ideal.frames):
        z = undistort.depth(a.depth)
        both = np.isfinite(z) & np.isfinite(b.depth)
        errors.append(np.abs(z - b.depth)[both] / b.depth[both])
        missing.append((np.isnan(z) & np.isfinite(b.depth)).mean())
    errors = np.concatenate(errors)
    assert np.median(errors) < 1e-5  # interpolated inverse depth is exact on the scene's planes
    assert np.mean(errors < 1e-3) > 0.97  # the rest: nearest pixel at edges (many at 160 x 120)
    assert max(missing) < 0.05  # only where the lens image does not reach the ideal image's corners


def test_depth_is_never_blended_across_an_edge():
    camera = hf.PinholeCamera(80, 60, 60.0, 60.0, 39.5, 29.5, FREIBURG1)
    depth = np.full(camera.shape, 1.0, np.float32)
    depth[:, 40:] = 2.0  # a depth edge
    out = undistortion_for(camera).depth(depth)
    values = out[np.isfinite(out)]
    assert np.all((np.abs(values - 1.0) < 1.0 * EDGE_RATIO) | (np.abs(values - 2.0) < 2.0 * EDGE_RATIO))


def test_a_distorted_floor_fuses_like_an_ideal_one(tmp_path, floor_pair):
    """replay of a sequence written with freiburg1's distortion (declared in camera.yaml) against the same
    sequence from an ideal camera: was 17.7x the error before distortion was handled."""
    from heightfusion.synthetic import write_tum

    lens, ideal = floor_pair
    rmse = {}
    for name, seq in (("lens", lens), ("ideal", ideal)):
        result = hf.replay(write_tum(seq, tmp_path / name), progress=False)
        rmse[name] = result.evaluation["smooth_rmse"]
        assert result.frames_used == len(seq)
    assert rmse["lens"] < 1.5 * rmse["ideal"] + 1e-3, rmse
