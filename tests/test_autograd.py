"""heightfusion.autograd: backward passes against finite differences of the forward renders."""

import numpy as np
import pytest
import torch
from conftest import bumpy_grid

import heightfusion as hf
from heightfusion.autograd import render_depth, render_image

CAM = hf.PinholeCamera(48, 36, 40.0, 40.0, 23.5, 17.5)
POSES = np.stack([hf.look_at([-0.4, 0.3, 0.8], [0.9, 0.35, 0.0]), hf.look_at([1.9, 0.9, 0.7], [0.8, 0.3, 0.02])])


def _loss_fd(loss, x: torch.Tensor, index: tuple, eps: float) -> float:
    plus, minus = x.clone(), x.clone()
    plus[index] += eps
    minus[index] -= eps
    return (loss(plus) - loss(minus)).item() / (2 * eps)


@pytest.fixture(scope="module")
def scene(gl_renderer):
    grid = bumpy_grid(shape=(8, 9), cell_size=0.15, amplitude=0.05, seed=4)
    heights = torch.tensor(grid.heights, dtype=torch.float64)
    colors = torch.tensor(grid.colors, dtype=torch.float64)
    return grid, heights, colors


def test_depth_gradient_matches_finite_differences(scene, gl_renderer):
    grid, heights, _ = scene
    weights = torch.rand(2, *CAM.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(h):
        d = render_depth(h, grid, CAM, POSES, backend=gl_renderer)
        return torch.nansum(d * weights)

    h = heights.clone().requires_grad_(True)
    loss(h).backward()
    assert h.grad.abs().sum() > 0
    # Finite differences of a piecewise-smooth function: compare on a few vertices the views see.
    for index in [(3, 4), (4, 5), (2, 3), (5, 2)]:
        fd = _loss_fd(loss, heights, index, 1e-4)
        assert h.grad[index].item() == pytest.approx(fd, rel=2e-2, abs=0.5)


def test_image_gradients_match_finite_differences(scene, gl_renderer):
    grid, heights, colors = scene
    weights = torch.rand(2, *CAM.shape, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def loss(h, c):
        return torch.nansum(render_image(h, c, grid, CAM, POSES, backend=gl_renderer) * weights)

    h = heights.clone().requires_grad_(True)
    c = colors.clone().requires_grad_(True)
    loss(h, c).backward()
    for index in [(3, 4, 0), (4, 5, 2)]:
        fd = _loss_fd(lambda x: loss(heights, x), colors, index, 1e-3)
        assert c.grad[index].item() == pytest.approx(fd, rel=1e-3, abs=1e-3)
    for index in [(3, 4), (4, 5)]:
        fd = _loss_fd(lambda x: loss(x, colors), heights, index, 1e-4)
        assert h.grad[index].item() == pytest.approx(fd, rel=5e-2, abs=0.5)


def test_single_view_shapes_and_bad_input(scene, gl_renderer):
    grid, heights, colors = scene
    assert render_depth(heights, grid, CAM, POSES[0], backend=gl_renderer).shape == CAM.shape
    assert render_image(heights, colors, grid, CAM, POSES, backend=gl_renderer).shape == (2, *CAM.shape, 3)
    with pytest.raises(ValueError, match="T_wc must have shape"):
        render_depth(heights, grid, CAM, np.eye(3), backend=gl_renderer)
    with pytest.raises(ValueError, match="heights has shape"):
        render_depth(heights[:-1], grid, CAM, POSES, backend=gl_renderer)
    with pytest.raises(ValueError, match="shade_maps"):
        render_image(heights, colors, grid, CAM, POSES, backend="shaded")


def test_fit_heights_to_depth_images(gl_renderer):
    """A torch optimiser recovers a bumpy map from two depth images, starting flat."""
    truth = bumpy_grid(shape=(8, 9), cell_size=0.15, amplitude=0.05, seed=4)
    target = render_depth(torch.tensor(truth.heights, dtype=torch.float64), truth, CAM, POSES, backend=gl_renderer)
    h = torch.zeros(truth.shape, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([h], lr=0.01)
    for _ in range(150):
        optimiser.zero_grad()
        diff = render_depth(h, truth, CAM, POSES, backend=gl_renderer) - target
        torch.nansum(diff**2).backward()
        optimiser.step()
    seen = np.zeros(truth.num_vertices, dtype=bool)
    for T in POSES:
        ids = gl_renderer.render(truth, CAM, T).vertex_ids
        seen[ids[ids >= 0]] = True
    err = (h.detach().numpy() - truth.heights).reshape(-1)[seen]
    print(f"fit: median |error| {np.median(np.abs(err)) * 1e3:.2f} mm over {seen.sum()} vertices")
    assert np.median(np.abs(err)) < 1e-3


def test_gradcheck_through_the_double_precision_ray_marcher():
    grid = bumpy_grid(shape=(5, 6), cell_size=0.2, amplitude=0.05, seed=2)
    cam = hf.PinholeCamera(16, 12, 14.0, 14.0, 7.5, 5.5)
    poses = np.stack([hf.look_at([-0.3, 0.2, 0.8], [0.6, 0.35, 0.0]), hf.look_at([1.3, 0.9, 0.7], [0.5, 0.4, 0.0])])
    renderer = hf.make_renderer("raymarch", dtype="float64")
    heights = torch.tensor(grid.heights, dtype=torch.float64, requires_grad=True)
    colors = torch.tensor(grid.colors, dtype=torch.float64, requires_grad=True)
    # NaN (sky) pixels have no gradient: compare on a fixed weighting of the finite ones.
    depth = lambda h: torch.nan_to_num(render_depth(h, grid, cam, poses, backend=renderer))  # noqa: E731
    image = lambda h, c: torch.nan_to_num(render_image(h, c, grid, cam, poses, backend=renderer))  # noqa: E731
    assert torch.autograd.gradcheck(depth, (heights,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradcheck(image, (heights, colors), eps=1e-6, atol=1e-5)


def test_points_backend_scatters_its_partial_slots(scene):
    """Points fragments have -1 in unused slots: the backward pass skips them (pixel-loop reference)."""
    grid, heights, colors = scene
    renderer = hf.make_renderer("points")
    T = POSES[0]
    weights = torch.rand(*CAM.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    h = heights.clone().requires_grad_(True)
    torch.nansum(render_depth(h, grid, CAM, T, backend=renderer) * weights).backward()
    frag = renderer.render(grid, CAM, T)
    assert (frag.vertex_ids[frag.mask] == -1).any()  # the case under test occurs
    expected = np.zeros(grid.num_vertices)
    for v, u in zip(*np.nonzero(frag.mask)):
        for slot in range(3):
            if frag.vertex_ids[v, u, slot] >= 0:
                expected[frag.vertex_ids[v, u, slot]] += weights[v, u].item() * frag.depth_grad[v, u, slot]
    np.testing.assert_allclose(h.grad.numpy().reshape(-1), expected, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="'points' backend blends discs"):
        render_image(heights, colors, grid, CAM, T, backend=renderer)
