"""A pose's uncertainty in fusion: the height error it causes (against finite differences of the exact
geometry), the map's systematic sigma (against its definition: the information-weighted mean), and the error
of the motion between two uncertain poses (against sampled errors)."""

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.fusion.pose_uncertainty import depth_height_sigma, pose_height_sigma, relative_pose_covariance
from heightfusion.tracking.se3 import exp_se3, log_se3


def random_covariance(seed: int) -> np.ndarray:
    A = np.random.default_rng(seed).normal(size=(6, 6)) * 1e-3
    return A @ A.T


def test_pose_height_sigma_is_the_height_derivative_of_the_pose():
    """A point measured in the camera frame and placed in the world at a pose off by the twist xi
    (T_cw <- exp(xi) T_cw): the finite-difference change of its height per twist component, propagated."""
    T_wc = hf.look_at((0.3, -1.0, 1.2), (0.0, 0.2, 0.0))
    T_cw = np.linalg.inv(T_wc)
    points = np.random.default_rng(1).uniform([-0.5, -0.5, -0.1], [0.5, 0.8, 0.3], size=(20, 3))
    in_camera = points @ T_cw[:3, :3].T + T_cw[:3, 3]
    eps = 1e-6
    columns = []
    for k in range(6):
        step = np.zeros(6)
        step[k] = eps
        placed = np.linalg.inv(exp_se3(step) @ T_cw)
        columns.append(((in_camera @ placed[:3, :3].T + placed[:3, 3])[:, 2] - points[:, 2]) / eps)
    J = np.stack(columns, axis=-1)
    covariance = random_covariance(0)
    expected = np.sqrt(np.einsum("ni,ij,nj->n", J, covariance, J))
    np.testing.assert_allclose(pose_height_sigma(T_wc, points, covariance), expected, rtol=1e-4)


def test_systematic_sigma_is_the_information_weighted_mean_of_the_frames():
    camera = hf.PinholeCamera(48, 36, 40.0, 40.0, 23.5, 17.5)
    T_wc = hf.look_at((0.0, -0.4, 1.0), (0.0, 0.1, 0.0))
    renderer = hf.make_renderer("raymarch")
    floor = hf.HeightMap((-0.6, -0.6), 0.05, (25, 25), initial_height=0.05)
    depth = renderer.render_depth(floor, camera, T_wc)
    grid = hf.HeightMap((-0.6, -0.6), 0.05, (25, 25))
    fuser = hf.HeightMapFuser(grid, renderer, hf.FusionConfig(sigma_floor=1e-6))
    covariance = random_covariance(2)

    fuser.fuse(camera, T_wc, depth, pose_covariance=covariance)
    seen = grid.information > grid.prior_information
    assert seen.sum() > 50
    rows, cols = np.nonzero(seen)
    points = np.stack([grid.origin[0] + cols * grid.cell_size, grid.origin[1] + rows * grid.cell_size,
                       grid.heights[seen]], axis=-1)
    first = pose_height_sigma(T_wc, points, covariance)  # one frame: its own
    np.testing.assert_allclose(grid.systematic_sigma[seen], first, rtol=1e-5)
    assert not grid.systematic_sigma[~seen].any()
    evidence_1 = grid.information[seen] - grid.prior_information
    assert (grid.sigma[seen] > first).all()  # the frame's information adds to it

    fuser.fuse(camera, T_wc, depth)  # an exact pose: weighs in with no systematic error
    evidence_2 = grid.information[seen] - grid.prior_information
    assert (evidence_2 > evidence_1).all()
    np.testing.assert_allclose(grid.systematic_sigma[seen], first * evidence_1 / evidence_2, rtol=1e-4)


def test_a_tracked_frame_takes_on_the_error_of_the_map_it_saw():
    """A second tracked frame: its heights share the map's error where it saw mapped vertices (their
    evidence-weighted mean sigma), and its pose's own error is new; a vertex's systematic sigma is the
    evidence-weighted mean of the shared parts and the frame's share of its own, in quadrature."""
    camera = hf.PinholeCamera(48, 36, 40.0, 40.0, 23.5, 17.5)
    renderer = hf.make_renderer("raymarch")
    floor = hf.HeightMap((-0.6, -0.6), 0.05, (25, 25), initial_height=0.05)
    first_pose, second_pose = hf.look_at((0.0, -0.4, 1.0), (0.0, 0.1, 0.0)), hf.look_at((0.2, -0.3, 1.0), (0.2, 0.2, 0.0))
    grid = hf.HeightMap((-0.6, -0.6), 0.05, (25, 25))
    fuser = hf.HeightMapFuser(grid, renderer, hf.FusionConfig(sigma_floor=1e-6))
    fuser.fuse(camera, first_pose, renderer.render_depth(floor, camera, first_pose), pose_covariance=random_covariance(3))
    before, evidence_1 = grid.systematic_sigma.copy(), grid.information - grid.prior_information
    covariance = random_covariance(4)
    fuser.fuse(camera, second_pose, renderer.render_depth(floor, camera, second_pose), pose_covariance=covariance)
    added = grid.information - grid.prior_information - evidence_1
    both = (evidence_1 > 0) & (added > 0)
    assert both.sum() > 100 and ((added > 0) & ~both).sum() > 10  # it saw mapped and new vertices
    inherited = (evidence_1 * before)[both].sum() / evidence_1[both].sum()
    rows, cols = np.nonzero(added > 0)
    points = np.stack([grid.origin[0] + cols * grid.cell_size, grid.origin[1] + rows * grid.cell_size,
                       grid.heights[rows, cols]], axis=-1)
    own = pose_height_sigma(second_pose, points, covariance)
    e1, a = evidence_1[rows, cols], added[rows, cols]
    expected = np.hypot((e1 * before[rows, cols] + a * inherited) / (e1 + a), a * own / (e1 + a))
    np.testing.assert_allclose(grid.systematic_sigma[rows, cols], expected, rtol=1e-4)
    new = (added > 0) & (evidence_1 == 0)  # first seen now: the map's error it came from and its own
    np.testing.assert_allclose(grid.systematic_sigma[new], np.hypot(inherited, own[new[rows, cols]]), rtol=1e-4)


def test_returning_to_the_map_does_not_grow_its_systematic_sigma():
    """Tracked frames aligned again and again to what the map holds share its error; their own errors are
    independent and average away, so the sigma settles (the limit of 1 + sum 1/n^2 is 1.28 times the first
    frame's), where a mean of the frames' total sigmas grew without bound (1.9 times after 30 frames)."""
    camera = hf.PinholeCamera(48, 36, 40.0, 40.0, 23.5, 17.5)
    renderer = hf.make_renderer("raymarch")
    T_wc = hf.look_at((0.0, -0.4, 1.0), (0.0, 0.1, 0.0))
    depth = renderer.render_depth(hf.HeightMap((-0.6, -0.6), 0.05, (25, 25), initial_height=0.05), camera, T_wc)
    grid = hf.HeightMap((-0.6, -0.6), 0.05, (25, 25))
    fuser = hf.HeightMapFuser(grid, renderer, hf.FusionConfig(sigma_floor=1e-6))
    covariance = random_covariance(5)
    fuser.fuse(camera, T_wc, depth, pose_covariance=covariance)
    seen = grid.information > grid.prior_information
    first = grid.systematic_sigma[seen].copy()
    for _ in range(29):
        fuser.fuse(camera, T_wc, depth, pose_covariance=covariance)
    ratio = grid.systematic_sigma[seen] / first
    assert np.median(ratio) < 1.35 and (ratio >= 0.99).all()


def test_a_bad_pose_covariance_is_a_frame_error():
    camera = hf.PinholeCamera(16, 12, 12.0, 12.0, 7.5, 5.5)
    fuser = hf.HeightMapFuser(hf.HeightMap((-0.5, -0.5), 0.1, (11, 11)), hf.make_renderer("raymarch"))
    depth = np.ones(camera.shape, np.float32)
    for bad in (np.eye(3), np.full((6, 6), np.nan)):
        with pytest.raises(hf.fusion.FrameError, match="pose_covariance must be a finite 6x6 matrix"):
            fuser.fuse(camera, hf.look_at((0.0, 0.0, 1.0), (0.0, 0.01, 0.0)), depth, pose_covariance=bad)


def test_relative_pose_covariance_is_that_of_sampled_pose_errors():
    """Both poses off by independent sampled twists (T_cw <- exp(xi) T_cw): the error of the motion reference ->
    source, as a left twist on it, has the covariance the formula gives."""
    T_r = hf.look_at((0.3, -1.0, 1.2), (0.0, 0.2, 0.0))
    T_s = hf.look_at((0.5, -0.9, 1.1), (0.1, 0.2, 0.0))
    T_sr = np.linalg.inv(T_s) @ T_r
    ref_covariance, src_covariance = random_covariance(2) * 1e-2, random_covariance(3) * 1e-2
    rng = np.random.default_rng(4)
    count = 20000
    xi_r = rng.multivariate_normal(np.zeros(6), ref_covariance, count)
    xi_s = rng.multivariate_normal(np.zeros(6), src_covariance, count)
    errors = np.stack([log_se3(exp_se3(s) @ np.linalg.inv(T_s) @ T_r @ exp_se3(-r) @ np.linalg.inv(T_sr))
                       for r, s in zip(xi_r, xi_s)])
    expected = relative_pose_covariance(T_sr, ref_covariance, src_covariance)
    np.testing.assert_allclose(np.cov(errors.T), expected, atol=0.03 * np.abs(expected).max())
    np.testing.assert_allclose(relative_pose_covariance(T_sr, None, src_covariance), src_covariance)
    assert relative_pose_covariance(T_sr, None, None) is None


def test_given_poses_share_their_error_and_stereo_pose_errors_average_away():
    """The same view fused again and again at a given pose with its covariance (aligned_to_map=False): the pose's
    height error is shared by the frames (it stays the first frame's); a depth error from stereo's relative poses
    (pose_sigma) is each frame's own and averages away (1/sqrt(n) with equal shares)."""
    camera = hf.PinholeCamera(48, 36, 40.0, 40.0, 23.5, 17.5)
    renderer = hf.make_renderer("raymarch")
    T_wc = hf.look_at((0.0, -0.4, 1.0), (0.0, 0.1, 0.0))
    depth = renderer.render_depth(hf.HeightMap((-0.6, -0.6), 0.05, (25, 25), initial_height=0.05), camera, T_wc)
    pose_sigma = np.where(np.isfinite(depth), 0.05 * depth, np.nan).astype(np.float32)
    for options, expected in [({"pose_covariance": random_covariance(6), "aligned_to_map": False}, 1.0),
                              ({"pose_sigma": pose_sigma}, 1 / 3)]:
        grid = hf.HeightMap((-0.6, -0.6), 0.05, (25, 25))
        fuser = hf.HeightMapFuser(grid, renderer, hf.FusionConfig(sigma_floor=1e-6))
        fuser.fuse(camera, T_wc, depth, **options)
        seen = grid.information > grid.prior_information
        first = grid.systematic_sigma[seen].copy()
        for _ in range(8):
            fuser.fuse(camera, T_wc, depth, **options)
        ratio = grid.systematic_sigma[seen] / first  # so where the frames' shares stayed equal (not at the edges)
        assert abs(np.median(ratio) - expected) < 0.005 and np.percentile(np.abs(ratio - expected), 90) < 0.05 * expected


def test_depth_height_sigma_is_the_height_change_of_a_depth_change():
    """A pixel's depth off by dz moves its point along the pixel's ray: its height changes by the ray's world z
    per unit of depth (finite difference through the camera's unprojection)."""
    camera = hf.PinholeCamera(48, 36, 40.0, 40.0, 23.5, 17.5)
    T_wc = hf.look_at((0.0, -0.4, 1.0), (0.0, 0.1, 0.0))
    rng = np.random.default_rng(7)
    pixels = np.stack([rng.integers(0, 48, 30), rng.integers(0, 36, 30)], axis=-1).astype(np.float64)
    depth = rng.uniform(0.8, 1.5, 30)
    sigma_image = np.full(camera.shape, np.nan)
    sigma_image[pixels[:, 1].astype(int), pixels[:, 0].astype(int)] = rng.uniform(0.01, 0.1, 30)

    def world(z):
        X = camera.unproject(pixels, z)
        return X @ T_wc[:3, :3].T + T_wc[:3, 3]

    points = world(depth)
    dz = 1e-4
    slope = (world(depth + dz)[:, 2] - points[:, 2]) / dz
    expected = sigma_image[pixels[:, 1].astype(int), pixels[:, 0].astype(int)] * np.abs(slope)
    np.testing.assert_allclose(depth_height_sigma(camera, T_wc, points, sigma_image), expected, rtol=1e-6)
    behind = points + 10 * (T_wc[:3, 3] - points)  # a point behind the camera: the image's median sigma
    median = np.nanmedian(sigma_image)
    assert np.all(np.isfinite(depth_height_sigma(camera, T_wc, behind[:1], sigma_image)))
    assert depth_height_sigma(camera, T_wc, behind[:1], sigma_image)[0] <= median * 10


def test_stereo_pose_sigma_goes_into_the_systematic_sigma():
    """Depth with a pose sigma (as stereo gives it) at an exact pose: the weights and heights are those without
    it, and the vertices' systematic sigma is the height error it causes (one frame: all its own)."""
    camera = hf.PinholeCamera(48, 36, 40.0, 40.0, 23.5, 17.5)
    renderer = hf.make_renderer("raymarch")
    T_wc = hf.look_at((0.0, -0.4, 1.0), (0.0, 0.1, 0.0))
    depth = renderer.render_depth(hf.HeightMap((-0.6, -0.6), 0.05, (25, 25), initial_height=0.05), camera, T_wc)
    plain, shared = (hf.HeightMap((-0.6, -0.6), 0.05, (25, 25)) for _ in range(2))
    hf.HeightMapFuser(plain, renderer).fuse(camera, T_wc, depth)
    pose_sigma = np.where(np.isfinite(depth), 0.05 * depth, np.nan).astype(np.float32)
    hf.HeightMapFuser(shared, renderer).fuse(camera, T_wc, depth, pose_sigma=pose_sigma)
    np.testing.assert_array_equal(shared.heights, plain.heights)
    np.testing.assert_array_equal(shared.information, plain.information)
    seen = shared.information > shared.prior_information
    rows, cols = np.nonzero(seen)
    points = np.stack([shared.origin[0] + cols * shared.cell_size, shared.origin[1] + rows * shared.cell_size,
                       shared.heights[seen]], axis=-1)
    np.testing.assert_allclose(shared.systematic_sigma[seen], depth_height_sigma(camera, T_wc, points, pose_sigma),
                               rtol=1e-5)
    assert np.median(shared.systematic_sigma[seen]) > 0.02
    with pytest.raises(hf.fusion.FrameError, match="pose_sigma has shape"):
        hf.HeightMapFuser(shared, renderer).fuse(camera, T_wc, depth, pose_sigma=pose_sigma[:5])


def test_depth_with_a_pose_sigma_keeps_its_weights_under_a_pose_covariance():
    """Sensor depth at an uncertain pose weighs less (the pose's depth sigma widens its weights); depth that carries
    its own pose sigma (stereo's) keeps its weights, and the pose's error goes into the systematic sigma alone."""
    camera = hf.PinholeCamera(48, 36, 40.0, 40.0, 23.5, 17.5)
    renderer = hf.make_renderer("raymarch")
    T_wc = hf.look_at((0.0, -0.4, 1.0), (0.0, 0.1, 0.0))
    depth = renderer.render_depth(hf.HeightMap((-0.6, -0.6), 0.05, (25, 25), initial_height=0.05), camera, T_wc)
    pose_sigma = np.where(np.isfinite(depth), 0.05 * depth, np.nan).astype(np.float32)
    covariance = random_covariance(8)
    grids = [hf.HeightMap((-0.6, -0.6), 0.05, (25, 25)) for _ in range(3)]
    hf.HeightMapFuser(grids[0], renderer).fuse(camera, T_wc, depth, pose_sigma=pose_sigma)
    hf.HeightMapFuser(grids[1], renderer).fuse(camera, T_wc, depth, pose_sigma=pose_sigma, pose_covariance=covariance,
                                               aligned_to_map=False)
    hf.HeightMapFuser(grids[2], renderer).fuse(camera, T_wc, depth, pose_covariance=covariance, aligned_to_map=False)
    np.testing.assert_array_equal(grids[1].information, grids[0].information)
    seen = grids[0].information > grids[0].prior_information
    assert np.median(grids[2].information[seen] / grids[0].information[seen]) < 0.5
    assert (grids[1].systematic_sigma[seen] > grids[0].systematic_sigma[seen]).all()
