"""heightfusion.autograd.fuse_depth: gradients against finite differences, the forward against HeightMapFuser.

The scene: a 6 x 6 vertex map (1 m square, 20 cm cells) of gentle waves, seen by 16 x 12 cameras from
about a metre; the depth images are the ray marcher's renders of it plus 2 mm of noise. gradcheck runs
in float64 through the double-precision ray marcher, whose visible triangles do not change under its
1e-6 m perturbations.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import load_example

import heightfusion as hf
from heightfusion.autograd import fuse_depth, render_depth, solve_grid, visible_triangles

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CAM = hf.PinholeCamera(16, 12, 16.0, 16.0, 7.5, 5.5)
POSES = np.stack([
    hf.look_at([0.35, 0.1, 1.0], [0.5, 0.5, 0.1]),
    hf.look_at([0.7, 0.95, 0.9], [0.5, 0.45, 0.1]),
    hf.look_at([0.9, 0.3, 0.9], [0.45, 0.5, 0.1]),  # held out where a test renders the fused map
])
# Information outputs are ~1e5 1/m^2: scaled to order 1 so that gradcheck's absolute tolerance means the same.
INFO_SCALE = 1e-6


@pytest.fixture(scope="module")
def raymarch64():
    return hf.make_renderer("raymarch", dtype=torch.float64)


@pytest.fixture(scope="module")
def scene(raymarch64):
    """(empty grid, truth, (3, 12, 16) float64 noisy depth of the three poses)."""
    truth = hf.HeightMap((0.0, 0.0), 0.2, (6, 6))
    xy = truth.vertex_xy()
    truth.heights[:] = 0.1 + 0.05 * np.sin(3 * xy[..., 0]) * np.cos(2 * xy[..., 1])
    depth = render_depth(torch.tensor(truth.heights, dtype=torch.float64), truth, CAM, POSES, backend=raymarch64)
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(depth.shape))
    return hf.HeightMap((0.0, 0.0), 0.2, (6, 6)), truth, depth + 0.002 * noise


def _prior(grid: hf.HeightMap) -> tuple[torch.Tensor, torch.Tensor]:
    """A prior map where half the vertices already have evidence (so seeding and the prior both act).

    The others are below the grid's prior information, not at it: a vertex at it is seeded and one a
    1e-6 perturbation above is not (a jump that gradcheck would find).
    """
    heights = torch.full(grid.shape, 0.09, dtype=torch.float64)
    information = torch.full(grid.shape, 0.5 * grid.prior_information, dtype=torch.float64)
    information[:, :3] = 4e4  # sigma 5 mm
    return heights, information


def test_gradcheck_fusion_layer(scene, raymarch64):
    """Full gradcheck in depth, prior heights and prior information, one frame, the diagonal solver
    (default settings: Huber weights, gating, seeding and the smoothness prior all active)."""
    grid, _, depth = scene
    config = hf.FusionConfig()

    def fuse(d, h, lam):
        heights, information = fuse_depth(grid, CAM, POSES[0], d, heights=h, information=lam, config=config,
                                          backend=raymarch64)
        return heights, information * INFO_SCALE

    inputs = [t.clone().requires_grad_() for t in (depth[0], *_prior(grid))]
    assert torch.autograd.gradcheck(fuse, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradcheck_coupled_solver_two_frames_and_sigmas(scene, raymarch64):
    """Two frames in sequence, the coupled sparse solve, explicit sigmas (gradcheck's fast mode: random
    projections of the Jacobian, which the full mode above checks entry by entry)."""
    grid, _, depth = scene
    config = hf.FusionConfig(solver="coupled")
    sigmas = torch.full_like(depth[:2], 0.003)

    def fuse(d, s):
        heights, information = fuse_depth(grid, CAM, POSES[:2], d, s, config=config, backend=raymarch64)
        return heights, information * INFO_SCALE

    inputs = [depth[:2].clone().requires_grad_(), sigmas.requires_grad_()]
    assert torch.autograd.gradcheck(fuse, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_gradcheck_fuse_then_render_held_out_view(scene, raymarch64):
    """The chain of the training example: fuse two frames, render the third pose with render_depth."""
    grid, _, depth = scene

    def held_out(d):
        heights, _ = fuse_depth(grid, CAM, POSES[:2], d, backend=raymarch64)
        return torch.nan_to_num(render_depth(heights, grid, CAM, POSES[2], backend=raymarch64))

    assert torch.autograd.gradcheck(held_out, (depth[:2].clone().requires_grad_(),), eps=1e-6, atol=1e-6,
                                    rtol=1e-4, fast_mode=True)


def test_gradcheck_solve_grid():
    rng = np.random.default_rng(3)
    edges = [torch.tensor(rng.uniform(-1, 0, (4, 5)), requires_grad=True) for _ in range(3)]
    diagonal = torch.tensor(rng.uniform(8, 10, (4, 5)), requires_grad=True)
    rhs = torch.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    assert torch.autograd.gradcheck(solve_grid, (diagonal, *edges, rhs))
    # Against a dense solve of the same stencil.
    x = solve_grid(diagonal, *edges, rhs).detach().numpy().reshape(-1)
    M = np.diag(diagonal.detach().numpy().reshape(-1))
    for e, (di, dj) in zip(edges, ((0, 1), (1, 0), (1, 1))):
        for i in range(4 - di):
            for j in range(5 - dj):
                a, b = i * 5 + j, (i + di) * 5 + j + dj
                M[a, b] = M[b, a] = e[i, j].item()
    np.testing.assert_allclose(M @ x, rhs.detach().numpy().reshape(-1), atol=1e-12)


@pytest.mark.parametrize("solver", ["diagonal", "coupled"])
def test_forward_matches_height_map_fuser(scene, raymarch64, solver):
    """Same frames, config and backend as HeightMapFuser.fuse (float64 ray marcher): heights within
    1e-6 m (the fuser stores them in float32, ~1e-8 m here), information within 1e-5 relative."""
    grid, _, depth = scene
    config = hf.FusionConfig(solver=solver)
    fused = grid.copy()
    fuser = hf.HeightMapFuser(fused, raymarch64, config)
    for d, T in zip(depth[:2].numpy(), POSES[:2]):
        fuser.fuse(CAM, T, d.astype(np.float32))
    heights, information = fuse_depth(grid, CAM, POSES[:2], depth[:2].float().double(), config=config,
                                      backend=raymarch64)
    np.testing.assert_allclose(heights.numpy(), fused.heights, atol=1e-6)
    np.testing.assert_allclose(information.numpy(), fused.information, rtol=1e-5)


@pytest.mark.parametrize("backend", ["gl", "raymarch"])
def test_float32_forward_matches_height_map_fuser_on_a_synthetic_sequence(backend):
    """Four 80 x 60 Kinect-like frames of the floor scene into a 76 x 76 map, float32, each backend as
    the fuser uses it (GL: its float32 GPU sums). Summation order and float32 rounding differ, and a
    pixel on a gate's edge may fall the other way: 99 % of the heights agree within 1e-5 m and all
    within 1 mm, 99 % of the information within 1e-3 relative."""
    from heightfusion.synthetic import generate

    seq = generate("floor", frames=40, width=80, height=60, noise=True)
    frames, sigmas = seq.frames[:4], np.stack(seq.sigmas[:4])
    grid = hf.HeightMap((-1.5, -1.5), 0.04, (76, 76))
    renderer = hf.make_renderer(backend)
    try:
        fused = grid.copy()
        fuser = hf.HeightMapFuser(fused, renderer, hf.FusionConfig(rasterize_every_render=True))  # as fuse_depth
        for frame, sigma in zip(frames, sigmas):
            fuser.fuse(frame.camera, frame.T_wc, frame.depth, None, sigma)
        fuser.release()
        depth = torch.from_numpy(np.stack([f.depth for f in frames]))
        heights, information = fuse_depth(grid, seq.camera, seq.poses[:4], depth, torch.from_numpy(sigmas),
                                          backend=renderer)
    finally:
        renderer.release()
    assert heights.dtype == information.dtype == torch.float32
    dh = np.abs(heights.numpy() - fused.heights)
    di = np.abs(information.numpy() / fused.information - 1)
    assert fused.observed.sum() > 500
    print(f"{backend}: |dh| p99 {np.percentile(dh, 99):.1e} max {dh.max():.1e} m; "
          f"information p99 {np.percentile(di, 99):.1e}")
    assert np.percentile(dh, 99) < 1e-5 and dh.max() < 1e-3
    assert np.percentile(di, 99) < 1e-3


def test_finite_differences_of_the_numpy_fuser_match_the_gradient(scene, raymarch64):
    """Central differences of HeightMapFuser (a random direction in the depth of two frames, 0.1 mm per
    pixel) against the torch layer's gradient of a random weighting of the fused heights and information.

    Finite differences need a step over which nothing jumps: plain least squares and no outlier gate
    here (the gate's weight drops to 0 at gate_k sigmas, the Huber weight bends at huber_k: steps of
    0.1 mm cross both), and the test checks that the fuser's pixel counts and the fused maps' visible
    triangles are the same at both ends. The fuser stores heights in float32, hence 0.1 mm steps.
    """
    grid, _, depth = scene
    config = hf.FusionConfig(huber_k=math.inf, gate_k=1e3, smoothness_slope=math.inf)
    rng = np.random.default_rng(5)
    direction = rng.standard_normal(depth[:2].shape)
    weights_h, weights_i = rng.standard_normal(grid.shape), rng.standard_normal(grid.shape) * INFO_SCALE
    eps = 1e-4

    def numpy_fuser(d: np.ndarray) -> tuple[float, hf.HeightMap, list]:
        fused = grid.copy()
        fuser = hf.HeightMapFuser(fused, raymarch64, config)
        stats = [fuser.fuse(CAM, T, image.astype(np.float32)) for image, T in zip(d, POSES[:2])]
        loss = (weights_h * fused.heights.astype(np.float64)).sum() + (weights_i * fused.information).sum()
        return loss, fused, [(s.pixels_used, s.pixels_grazing, s.pixels_unseen) for s in stats]

    base = depth[:2].numpy()
    plus, fused_plus, stats_plus = numpy_fuser(base + eps * direction)
    minus, fused_minus, stats_minus = numpy_fuser(base - eps * direction)
    assert stats_plus == stats_minus
    for T in POSES:
        ids_plus = raymarch64.render(fused_plus, CAM, T).triangle_ids
        np.testing.assert_array_equal(ids_plus, raymarch64.render(fused_minus, CAM, T).triangle_ids)
    numeric = (plus - minus) / (2 * eps)

    d = depth[:2].clone().requires_grad_()
    heights, information = fuse_depth(grid, CAM, POSES[:2], d, config=config, backend=raymarch64)
    ((heights * torch.from_numpy(weights_h)).sum() + (information * torch.from_numpy(weights_i)).sum()).backward()
    analytic = (d.grad.numpy() * direction).sum()
    print(f"directional derivative: finite differences {numeric:.6f}, autograd {analytic:.6f}")
    assert analytic == pytest.approx(numeric, rel=2e-3)


def test_gl_float32_gradient_matches_the_double_precision_reference(scene, gl_renderer, raymarch64):
    """The fast path (GL visibility, float32 arithmetic) against the reference (ray marcher, float64)."""
    grid, _, depth = scene
    weights = torch.from_numpy(np.random.default_rng(6).standard_normal(grid.shape))
    grads = []
    for backend, dtype in ((gl_renderer, torch.float32), (raymarch64, torch.float64)):
        d = depth[:2].to(dtype).requires_grad_()
        heights, _ = fuse_depth(grid, CAM, POSES[:2], d, backend=backend)
        (heights * weights.to(dtype)).sum().backward()
        grads.append(d.grad.double())
    scale = grads[1].abs().max().item()
    np.testing.assert_allclose(grads[0].numpy(), grads[1].numpy(), atol=1e-3 * scale)


def test_invalid_pixels_get_zero_gradient(scene, raymarch64):
    """NaN, 0 and negative depths are no value: the gradient there is 0, never NaN."""
    grid, _, depth = scene
    d = depth[0].clone()
    d[0, :4] = float("nan")
    d[1, :2] = 0.0
    d[2, 0] = -1.0
    d.requires_grad_()
    heights, information = fuse_depth(grid, CAM, POSES[0], d, backend=raymarch64)
    (heights.sum() + information.sum() * INFO_SCALE).backward()
    assert torch.isfinite(d.grad).all()
    assert (d.grad[0, :4] == 0).all() and (d.grad[1, :2] == 0).all() and d.grad[2, 0] == 0
    assert (d.grad != 0).sum() > 100


def test_visible_triangles_are_the_renderers(scene, raymarch64):
    grid, truth, _ = scene
    heights = torch.tensor(truth.heights, dtype=torch.float64)
    tri = visible_triangles(heights, grid, CAM, POSES[0], raymarch64)
    np.testing.assert_array_equal(tri.numpy(), raymarch64.render(truth, CAM, POSES[0]).triangle_ids)


def test_shapes_and_bad_input(scene, raymarch64):
    grid, _, depth = scene
    heights, information = fuse_depth(grid, CAM, POSES[0], depth[0], backend=raymarch64)
    assert heights.shape == information.shape == grid.shape and heights.dtype == torch.float64
    with pytest.raises(ValueError, match="depths must have shape"):
        fuse_depth(grid, CAM, POSES[:2], depth, backend=raymarch64)
    with pytest.raises(ValueError, match="T_wc must have shape"):
        fuse_depth(grid, CAM, np.eye(3), depth[0], backend=raymarch64)
    with pytest.raises(ValueError, match="sigmas has shape"):
        fuse_depth(grid, CAM, POSES[:2], depth[:2], depth[0], backend=raymarch64)
    with pytest.raises(ValueError, match="sigmas must be positive"):
        fuse_depth(grid, CAM, POSES[0], depth[0], torch.zeros_like(depth[0]), backend=raymarch64)
    with pytest.raises(ValueError, match="heights has shape"):
        fuse_depth(grid, CAM, POSES[0], depth[0], heights=torch.zeros(3, 3), backend=raymarch64)
    with pytest.raises(ValueError, match="no mesh triangles"):
        fuse_depth(grid, CAM, POSES[0], depth[0], backend="points")


# --- apps/examples/train_depth_refiner.py: the refiner's building blocks --------------------------------
def test_refiner_fits_are_exact_on_their_surfaces_at_borders_and_holes(monkeypatch):
    """The local fits reproduce a plane's (degree 1) and a quadric's (degree 2) inverse depth at every
    valid pixel, one-sided windows (image borders, a hole, scattered and whole missing rows) included,
    where a plain mean is off."""
    example = load_example("train_depth_refiner", monkeypatch)
    v, u = torch.meshgrid(torch.arange(30, dtype=torch.float64), torch.arange(40, dtype=torch.float64), indexing="ij")
    plane = 0.8 + 0.01 * u - 0.02 * v
    surfaces = {1: plane, 2: plane + 1e-4 * u * u - 2e-4 * u * v + 3e-4 * v * v}
    mask = torch.ones(1, 1, 30, 40, dtype=torch.float64)
    mask[..., 10:18, 12:25] = 0
    mask[..., ::7, ::5] = 0
    mask[..., :3, :] = 0
    valid = mask.bool()
    for degree, surface in surfaces.items():
        inverse_depth = surface[None, None]
        for size in (3, 5, 9, 15):
            fit = example._local_fit(inverse_depth, mask, size, degree)
            # the ridge (1e-4 of the slope and curvature terms) shifts one-sided fits by up to 4e-5 (planes)
            # and 4e-4 (the 15x15 quadric) of inverse depth here: 0.04-0.4 mm at 1 m, under a sensor's noise
            assert torch.allclose(fit[valid], inverse_depth[valid], atol=1e-4 if degree == 1 else 5e-4), (degree, size)
            box = F.avg_pool2d(inverse_depth * mask, size, 1, size // 2) / F.avg_pool2d(mask, size, 1, size // 2)
            assert (box[valid] - inverse_depth[valid]).abs().max() > 1e-3


def test_untrained_refiner_returns_the_depth_and_keeps_holes(monkeypatch):
    example = load_example("train_depth_refiner", monkeypatch)
    depth = 1.0 + 0.1 * torch.rand(2, 12, 16)
    depth[0, 3:5, 4:9] = math.nan
    refined = example.DepthRefiner()(depth, torch.full_like(depth, 0.002))
    assert torch.equal(torch.isnan(refined), torch.isnan(depth))
    torch.testing.assert_close(refined[~torch.isnan(depth)], depth[~torch.isnan(depth)])


def test_refiner_trains_on_its_input_depth_against_sensor_targets_and_a_trained_one_is_reused(monkeypatch, tmp_path):
    """``run`` trains on windows with ``source``'s depth by default, whose loss targets are the sensor's depth
    (for stereo windows not their input: stereo's errors are shared by the frames the loss compares), and
    given an earlier result evaluates that refiner without building training windows or training again."""
    example = load_example("train_depth_refiner", monkeypatch)
    monkeypatch.setattr(example, "TRAIN", (("ramp", lambda: hf.synthetic.robot_loop(120), (45,)),))
    monkeypatch.setattr(example, "HELD_OUT", (("ramp", lambda: hf.synthetic.robot_loop(120), (60,)),))
    built = {}
    make_windows = example.make_windows

    def recording(split, seed, source="sensor", oracle=False):
        windows = make_windows(split, seed, source, oracle)
        built["train" if split is example.TRAIN else "held out", source] = windows
        return windows

    monkeypatch.setattr(example, "make_windows", recording)
    first = example.run(steps=2, out=tmp_path / "stereo", source="stereo")
    assert list(built) == [("held out", "stereo"), ("train", "stereo")]
    assert first["train_source"] == "stereo" and first["table"]["all"]["windows"] == 1
    (stereo,) = built["train", "stereo"]
    sensor = make_windows(example.TRAIN, 1000, "sensor")[0]  # the same frames and noise seed with sensor depth
    torch.testing.assert_close(stereo.target, sensor.depth, equal_nan=True)
    torch.testing.assert_close(stereo.target_sigma, sensor.sigma)
    assert sensor.target is sensor.depth
    both = torch.isfinite(stereo.depth) & torch.isfinite(stereo.target)
    assert both.float().mean() > 0.5 and (stereo.depth - stereo.target)[both].abs().median() > 1e-3
    built.clear()
    again = example.run(steps=2, out=tmp_path / "sensor", source="sensor", train_source="stereo", trained=first)
    assert list(built) == [("held out", "sensor")]
    assert again["refiner"][0] is first["refiner"][0] and again["train_seconds"] == first["train_seconds"]
