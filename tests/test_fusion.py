"""Fusion: the normal equations against direct assembly, the solvers against dense algebra, and the
fused map against synthetic ground truth."""

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import bumpy_grid

import heightfusion as hf
from heightfusion.fusion import FusionConfig, HeightMapFuser
from heightfusion.metrics import evaluate
from heightfusion.fusion.normal_equations import SmoothnessPrior, accumulate, solve
from heightfusion.synthetic import generate

CAM = hf.PinholeCamera(64, 48, 50.0, 52.0, 31.5, 23.5)


@pytest.fixture(scope="module")
def frame_system(gl_renderer):
    """A frame of a bumpy map seen against measurements of another bumpy map."""
    grid = bumpy_grid(shape=(10, 12), amplitude=0.05)
    truth = bumpy_grid(shape=(10, 12), amplitude=0.05, seed=7)
    T = hf.look_at([-0.3, 0.3, 0.9], [0.9, 0.35, 0.0])
    depth = gl_renderer.render_depth(truth, CAM, T).copy()
    sigma = np.full(CAM.shape, 0.01, np.float32)
    frag = gl_renderer.render(grid, CAM, T)
    ray_norm = np.linalg.norm(CAM.pixel_rays(), axis=-1)
    system = accumulate(frag, depth, sigma, grid.shape, ray_norm, 0.0, np.inf, np.inf)
    return grid, frag, depth, sigma, system


def _dense_system(grid, frag, depth, sigma):
    """sum over pixels of J J^T / sigma^2 and J r / sigma^2, assembled pixel by pixel."""
    n = grid.num_vertices
    A = np.zeros((n, n))
    g = np.zeros(n)
    for y, x in zip(*np.nonzero(np.isfinite(frag.depth) & np.isfinite(depth))):
        ids, J = frag.vertex_ids[y, x], frag.depth_grad[y, x].astype(np.float64)
        w = 1.0 / float(sigma[y, x]) ** 2
        A[np.ix_(ids, ids)] += w * np.outer(J, J)
        g[ids] += w * J * (float(depth[y, x]) - float(frag.depth[y, x]))
    return A, g


def _stencil_matrix(system, grid):
    n = grid.num_vertices
    nx = grid.nx
    M = sp.lil_matrix((n, n))
    for v in range(n):
        i, j = divmod(v, nx)
        M[v, v] = system.diagonal[i, j]
        for edges, di, dj in ((system.right, 0, 1), (system.down, 1, 0), (system.diag, 1, 1)):
            if i + di < grid.ny and j + dj < nx and edges[i, j] != 0:
                u = (i + di) * nx + j + dj
                M[v, u] = M[u, v] = edges[i, j]
    return M.toarray()


def test_accumulate_matches_pixel_by_pixel_assembly(frame_system):
    grid, frag, depth, sigma, system = frame_system
    A, g = _dense_system(grid, frag, depth, sigma)
    assert system.pixels_used > 100
    np.testing.assert_allclose(_stencil_matrix(system, grid), A, rtol=1e-9, atol=1e-6 * np.abs(A).max())
    np.testing.assert_allclose(system.g.reshape(-1), g, rtol=1e-9, atol=1e-6 * np.abs(g).max())


def test_general_vertex_pairs_give_the_triangle_sums(frame_system):
    """Fragments without triangle ids (the points backend) take the general pair sort: same sums."""
    grid, frag, depth, sigma, system = frame_system
    ray_norm = np.linalg.norm(CAM.pixel_rays(), axis=-1)
    general = accumulate(replace(frag, triangle_ids=None), depth, sigma, grid.shape, ray_norm, 0.0, np.inf, np.inf)
    for name in ("diagonal", "g", "right", "down", "diag"):
        np.testing.assert_allclose(getattr(general, name), getattr(system, name), rtol=1e-12, atol=1e-12)
    assert general.lumped is None  # every pair of a triangle is a mesh edge


def test_coupled_solve_is_the_dense_solution(frame_system):
    grid, _, _, _, system = frame_system
    prior = np.full(grid.shape, 3.0)
    rhs = system.g + 0.1
    smooth = SmoothnessPrior.robust(grid.heights, sigma=0.02)  # bumpy: some edges reweighted
    delta = solve(system, prior, rhs, "coupled", damping=0.25, smoothness=smooth)
    # Dense: Lambda + (1 + damping) diag(A) + offdiag(A) + the prior's Hessian, column by column.
    M = _stencil_matrix(system, grid)
    M += np.diag(prior.reshape(-1) + 0.25 * system.diagonal.reshape(-1))
    M += np.array([smooth.gradient(e.reshape(grid.shape)).reshape(-1) for e in np.eye(grid.num_vertices)]).T
    np.testing.assert_allclose(delta.reshape(-1), np.linalg.solve(M, rhs.reshape(-1)), rtol=1e-6, atol=1e-9)


def test_diagonal_step_never_overshoots(frame_system):
    """The lumped diagonal majorises the system: the step decreases the quadratic model."""
    grid, _, _, _, system = frame_system
    prior = np.ones(grid.shape)
    M = _stencil_matrix(system, grid) + np.eye(grid.num_vertices)
    b = system.g.reshape(-1)
    step = solve(system, prior, system.g, "diagonal").reshape(-1)
    model = lambda x: 0.5 * x @ M @ x - b @ x  # noqa: E731
    # Along the step the model keeps falling up to the full step: no overshoot.
    assert model(step) < model(0.5 * step) < 0
    assert np.abs(step).max() <= np.abs(np.linalg.solve(M, b)).max()


def test_smoothness_prior_is_a_laplacian_that_spares_steps():
    h = np.zeros((3, 4))
    h[1, 1] = 0.01  # a bump within the prior's spread: quadratic, weight 1 / sigma^2 on every edge
    prior = SmoothnessPrior.robust(h, sigma=0.1)
    g = prior.gradient(h)
    assert g[1, 1] == pytest.approx(0.01 * 6 / 0.1**2)  # six mesh edges at an inner vertex
    assert g[1, 2] == pytest.approx(-1.0) and g[2, 2] == pytest.approx(-1.0) and g[2, 1] == pytest.approx(-1.0)
    assert g[2, 0] == 0.0  # not a mesh neighbour (the diagonal runs (i, j) -> (i+1, j+1))
    assert g.sum() == pytest.approx(0.0)
    # A step much larger than sigma keeps a bounded pull (Huber): a 1 m box edge pulls no harder
    # than a huber_k * sigma (0.2 m) one.
    step = np.zeros((2, 2))
    step[:, 1] = 1.0
    small = np.zeros((2, 2))
    small[:, 1] = 0.2
    pull = abs(SmoothnessPrior.robust(step, sigma=0.1).gradient(step)[0, 0])
    assert pull == pytest.approx(abs(SmoothnessPrior.robust(small, sigma=0.1).gradient(small)[0, 0]))


@pytest.fixture(scope="module")
def steps_exact():
    return generate("steps", frames=16, width=160, height=120)


@pytest.fixture(scope="module")
def steps_noisy():
    return generate("steps", frames=20, width=160, height=120, noise=True, seed=3)


def _fuse(seq, solver="diagonal", frames=None, grid=None, accumulate="auto", rasterize_every_render=False):
    gt = seq.gt_heightmap
    grid = grid or hf.HeightMap(gt.origin, gt.cell_size, gt.shape)
    config = FusionConfig(solver=solver, accumulate=accumulate, rasterize_every_render=rasterize_every_render)
    fuser = HeightMapFuser(grid, hf.make_renderer("gl"), config)
    stats = [fuser.fuse(f.camera, f.T_wc, f.depth, f.image, sigma=s) for f, s in list(zip(seq.frames, seq.sigmas))[:frames]]
    return grid, stats


def _smooth(seq):
    xy = seq.gt_heightmap.vertex_xy()
    return seq.scene.smooth_mask(xy[..., 0], xy[..., 1])


@pytest.mark.parametrize("solver, accumulate", [("diagonal", "gl"), ("coupled", "gl"), ("diagonal", "cpu")])
def test_exact_depth_converges_to_ground_truth(steps_exact, solver, accumulate):
    grid, stats = _fuse(steps_exact, solver, accumulate=accumulate)
    metrics = evaluate(grid, steps_exact.gt_heightmap, _smooth(steps_exact))
    assert metrics["smooth_rmse"] < 3e-3, metrics
    assert metrics["completeness"] > 0.9, metrics
    assert all(s.pixels_used > 0 for s in stats)
    # GL sums: the first render rasterizes, the later ones re-intersect near what it saw.
    stages = {"render+accumulate", "refresh+accumulate"} if accumulate == "gl" else {"render", "accumulate"}
    assert set(stats[-1].ms) == {"seed", "solve", "update"} | stages
    # Colours: the fused orthophoto matches the scene's texture where observed.
    seen = grid.observed & steps_exact.gt_heightmap.observed & _smooth(steps_exact)
    assert np.median(np.abs(grid.colors[seen] - steps_exact.gt_heightmap.colors[seen])) < 0.05


def test_cpu_and_gl_accumulation_fuse_the_same_map(steps_noisy):
    cpu, _ = _fuse(steps_noisy, frames=6, accumulate="cpu")
    gl, _ = _fuse(steps_noisy, frames=6, accumulate="gl", rasterize_every_render=True)  # as the CPU's sums do
    np.testing.assert_array_equal(cpu.observed, gl.observed)
    np.testing.assert_allclose(gl.heights, cpu.heights, atol=2e-5)
    # float32 atomic sums against float64 bincount: equal up to rounding (weakly seen vertices: ~1 1/m^2).
    np.testing.assert_allclose(gl.information, cpu.information, rtol=1e-3, atol=1.0)


def test_noisy_depth_error_shrinks_and_sigma_is_honest(steps_noisy):
    gt = steps_noisy.gt_heightmap
    smooth = _smooth(steps_noisy)
    early, _ = _fuse(steps_noisy, frames=4)
    late, _ = _fuse(steps_noisy)
    common = early.observed & late.observed & gt.observed & smooth
    err_early = np.sqrt(np.mean((early.heights - gt.heights)[common] ** 2))
    err_late = np.sqrt(np.mean((late.heights - gt.heights)[common] ** 2))
    assert err_late < err_early
    metrics = evaluate(late, gt, smooth)
    assert 0.55 <= metrics["calib_1sigma"] <= 0.80, metrics
    assert metrics["smooth_rmse"] < 2e-3, metrics


def test_bad_frames_are_rejected_or_cleaned(gl_renderer):
    grid = bumpy_grid()
    fuser = HeightMapFuser(grid, gl_renderer)
    T = hf.look_at([-0.5, 0.4, 0.8], [0.9, 0.35, 0.0])
    depth = gl_renderer.render_depth(grid, CAM, T).copy()
    with pytest.raises(ValueError, match="depth has shape"):
        fuser.fuse(CAM, T, depth[:10])
    with pytest.raises(ValueError, match="image has shape"):
        fuser.fuse(CAM, T, depth, image=np.zeros((48, 64), np.uint8))
    with pytest.raises(ValueError, match="sigma must be positive"):
        fuser.fuse(CAM, T, depth, sigma=np.zeros_like(depth))
    with pytest.raises(ValueError, match="rigid"):
        fuser.fuse(CAM, np.diag([1.0, 1.0, -1.0, 1.0]), depth)
    # NaN, zero and negative depth are "no value": counted out, never NaN in the map.
    depth[:10] = np.nan
    depth[10:20] = -1.0
    depth[20:22] = 0.0
    stats = fuser.fuse(CAM, T, depth)
    assert stats.pixels_measured == int(np.isfinite(depth).sum() - (depth[np.isfinite(depth)] <= 0).sum())
    assert np.isfinite(grid.heights).all() and np.isfinite(grid.information).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(iterations=0), "iterations"),
        (dict(solver="cg"), "solver"),
        (dict(max_incidence_deg=95), "max_incidence"),
        (dict(forgetting=1.0), "forgetting"),
        (dict(gate_k=0), "gate_k"),
        (dict(damping=-1), "damping"),
        (dict(accumulate="gpu"), "accumulate"),
    ],
)
def test_config_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FusionConfig(**kwargs)


def test_forgetting_lowers_information(gl_renderer):
    grid = bumpy_grid()
    grid.information[:] = 1e4
    fuser = HeightMapFuser(grid, gl_renderer, FusionConfig(forgetting=0.5))
    T = hf.look_at([-0.5, 0.4, 0.8], [-2.0, 0.4, 0.8])  # sees nothing of the map
    fuser.fuse(CAM, T, np.full(CAM.shape, np.nan, np.float32))
    assert np.allclose(grid.information, 5e3)


def test_a_known_vertex_moves_at_most_the_gate_in_sigmas_per_iteration(gl_renderer, monkeypatch):
    """The trust region: whatever step the solve proposes, a vertex moves at most gate_k times the spread of
    the map against the frame per Gauss-Newton iteration (here the map's sigma before the frame: the frame's
    own, 10 um a pixel, is negligible), and never more than max_update."""
    grid = bumpy_grid(shape=(10, 12), amplitude=0.05)
    sigmas = (0.002, 0.01, 0.1)  # three bands of columns known to 2 mm, 1 cm and 10 cm
    for band, sigma in enumerate(sigmas):
        grid.information[:, 4 * band:4 * band + 4] = 1.0 / sigma**2
    before = grid.heights.copy()
    T = hf.look_at([-0.3, 0.3, 0.9], [0.9, 0.35, 0.0])
    depth = gl_renderer.render_depth(grid, CAM, T) - 0.001  # measurements 1 mm above the surface
    monkeypatch.setattr("heightfusion.fusion.fuser.solve", lambda *args: np.ones(args[2].shape))  # a 1 m step
    fuser = HeightMapFuser(grid, gl_renderer, FusionConfig(iterations=2, gate_k=5.0, max_update=0.1))
    fuser.fuse(CAM, T, depth, sigma=np.full(CAM.shape, 1e-5, np.float32))
    moved = np.abs(grid.heights - before)
    for band, limit in enumerate((5 * 0.002, 5 * 0.01, 0.1)):
        np.testing.assert_allclose(moved[:, 4 * band:4 * band + 4].max(), 2 * limit, rtol=1e-4)
