"""The "points" backend (oriented discs, splatted and blended): its derivatives against finite differences,
its depth against the GL rasterizer, its fragments' bookkeeping, and fusion through it."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import assert_rejects_bad_input, bumpy_grid
from reference import ray_directions

import heightfusion as hf
from heightfusion.fusion import FusionConfig, HeightMapFuser
from heightfusion.metrics import evaluate
from heightfusion.fusion.normal_equations import accumulate
from heightfusion.render.points import PointsRenderer, surfel_slopes
from heightfusion.synthetic import generate

CAM = hf.PinholeCamera(64, 48, 50.0, 52.0, 31.5, 23.5)
FLOATS = ("depth", "barycentric", "depth_grad", "color", "normal")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smooth_grid() -> hf.HeightMap:
    """Gentle hills, 5 cm cells: the discs are close to the surface's tangent planes."""
    grid = hf.HeightMap((0.0, 0.0), 0.05, (40, 48))
    xy = grid.vertex_xy()
    x, y = xy[..., 0], xy[..., 1]
    grid.heights[:] = 0.08 * np.sin(3 * x) * np.cos(4 * y) + 0.03 * np.sin(7 * x + 2 * y)
    grid.colors[:] = np.random.default_rng(0).random(grid.shape + (3,))
    return grid


def assert_well_formed(frag: hf.Fragments, grid: hf.HeightMap) -> None:
    """Ids, weights, colours and normals as the docstring promises; empty pixels marked."""
    assert frag.triangle_ids is None
    m = frag.mask
    ids, b, J = frag.vertex_ids[m], frag.barycentric[m], frag.depth_grad[m]
    used = ids >= 0
    assert ((ids >= -1) & (ids < grid.num_vertices)).all()
    assert used[:, 0].all() and (used[:, 1:] <= used[:, :-1]).all()  # used slots first
    assert (b[~used] == 0).all() and (J[~used] == 0).all()
    assert (b[used] > 0).all() and (np.diff(b, axis=1) <= 1e-6).all()  # strongest first
    np.testing.assert_allclose(b.sum(axis=1), 1.0, atol=1e-5)
    for row in ids:  # a vertex blends at most once per pixel
        assert len(set(row[row >= 0])) == (row >= 0).sum()
    colors = grid.colors.reshape(-1, 3)[np.maximum(ids, 0)]
    np.testing.assert_allclose(frag.color[m], (b[..., None] * colors).sum(axis=1), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(frag.normal[m], axis=-1), 1.0, atol=1e-5)
    empty = ~m
    assert (frag.vertex_ids[empty] == -1).all()
    for name in FLOATS[1:]:
        assert np.isnan(getattr(frag, name)[empty]).all(), name


@pytest.mark.parametrize(
    "eye, target",
    [
        ([-0.3, 0.3, 0.9], [0.9, 0.35, 0.0]),  # oblique
        ([-1.5, 0.3, 0.16], [0.9, 0.4, 0.02]),  # grazing
        ([0.9, 0.35, -0.4], [0.8, 0.4, 0.2]),  # below: the underside
    ],
    ids=["oblique", "grazing", "below"],
)
def test_depth_grad_matches_finite_differences(eye, target):
    """Central differences in double precision along random height directions, the slopes held fixed
    (the model's convention), on pixels whose contributors stay the same."""
    grid = bumpy_grid(shape=(8, 9), cell_size=0.15, amplitude=0.08, seed=3)
    T = hf.look_at(eye, target)
    renderer = hf.make_renderer("points", dtype=torch.float64, depth_tolerance=1.0)  # blends more on a rough map
    slopes = surfel_slopes(grid.heights)
    frag = renderer.render(grid, CAM, T, slopes=slopes)
    assert frag.depth.dtype == np.float64
    assert frag.mask.sum() > 40
    assert (frag.vertex_ids[frag.mask][:, 1] >= 0).sum() > 10  # pixels that blend several discs
    rng = np.random.default_rng(1)
    eps = 1e-7
    for _ in range(3):
        direction = rng.standard_normal(grid.shape)
        plus, minus = grid.copy(), grid.copy()
        plus.heights = grid.heights.astype(np.float64) + eps * direction
        minus.heights = grid.heights.astype(np.float64) - eps * direction
        f_plus, f_minus = renderer.render(plus, CAM, T, slopes=slopes), renderer.render(minus, CAM, T, slopes=slopes)
        same = frag.mask & (f_plus.vertex_ids == frag.vertex_ids).all(-1) & (f_minus.vertex_ids == frag.vertex_ids).all(-1)
        assert same.sum() > 0.95 * frag.mask.sum()
        fd = (f_plus.depth - f_minus.depth) / (2 * eps)
        along = direction.reshape(-1)[np.maximum(frag.vertex_ids, 0)]
        analytic = (frag.depth_grad * np.where(frag.vertex_ids >= 0, along, 0.0)).sum(-1)
        err = np.abs(fd - analytic)[same] / np.maximum(1.0, np.abs(analytic[same]))
        assert err.max() < 1e-5, err.max()
    # Raising the surface brings it nearer to a camera above it and moves it away from one below (but
    # where the contributors' depths differ, the weights' shift can outweigh that: ~2 % of the pixels).
    J_sum = frag.depth_grad[frag.mask].sum(-1)
    assert (np.sign(J_sum) == (1 if eye[2] < 0 else -1)).mean() > 0.95


def test_blend_weights_move_with_the_heights():
    """The weight term of depth_grad matters: dropping it (d depth / d h_k = beta_k / den_k alone)
    disagrees with finite differences where the contributors' depths differ."""
    grid = bumpy_grid(shape=(8, 9), cell_size=0.15, amplitude=0.08, seed=3)
    T = hf.look_at([-0.3, 0.3, 0.9], [0.9, 0.35, 0.0])
    renderer = PointsRenderer(dtype=torch.float64, depth_tolerance=1.0)
    slopes = surfel_slopes(grid.heights)
    frag = renderer.render(grid, CAM, T, slopes=slopes)
    y, x = np.argwhere(frag.mask & (frag.vertex_ids[..., 1] >= 0))[0]
    k = frag.vertex_ids[y, x, 0]
    eps = 1e-7
    depths = []
    for sign in (1, -1):
        moved = grid.copy()
        moved.heights = grid.heights.astype(np.float64)
        moved.heights.flat[k] += sign * eps
        depths.append(renderer.render(moved, CAM, T, slopes=slopes).depth[y, x])
    assert (depths[0] - depths[1]) / (2 * eps) == pytest.approx(frag.depth_grad[y, x, 0], rel=1e-5)
    # The hit point's offset: the other contributor's depth differs from the blend, so the term is nonzero.
    with_weights = frag.depth_grad[frag.mask & (frag.vertex_ids[..., 1] >= 0)]
    assert np.abs(with_weights).max() > 0


def test_depth_matches_gl_on_a_smooth_map(gl_renderer):
    """Discs are tangent planes: on gentle hills the blended depth is the mesh's to within the
    curvature's effect over a cell (median relative error 4e-4, 99th percentile 2.4e-3 measured)."""
    grid = smooth_grid()
    cam = hf.PinholeCamera(160, 120, 130.0, 130.0, 79.5, 59.5)
    views = [
        hf.look_at([-0.5, 1.0, 0.9], [1.2, 1.0, 0.0]),
        hf.look_at([1.2, 1.0, 1.5], [1.2, 1.0, 0.0], up=(0.0, 1.0, 0.0)),  # straight down
    ]
    for T in views:
        frag = hf.make_renderer("points").render(grid, cam, T)
        gl = gl_renderer.render(grid, cam, T)
        assert (frag.mask != gl.mask).mean() < 0.005  # the discs stop at the map's edge, like the mesh
        both = frag.mask & gl.mask
        assert both.mean() > 0.5
        err = np.abs(frag.depth - gl.depth)[both] / gl.depth[both]
        assert np.median(err) < 1e-3 and np.percentile(err, 99) < 5e-3, (np.median(err), np.percentile(err, 99))
        angle = np.degrees(np.arccos(np.clip((frag.normal * gl.normal).sum(-1)[both], -1, 1)))
        assert np.median(angle) < 3.0
        assert_well_formed(frag, grid)


def test_hits_lie_on_the_contributing_discs():
    """Each contributor's disc passes under the pixel: the blended hit is within a radius (plus the
    depth tolerance's slide along the ray) of each contributing vertex, in XY."""
    grid = smooth_grid()
    T = hf.look_at([-0.5, 1.0, 0.9], [1.2, 1.0, 0.0])
    renderer = PointsRenderer()
    frag = renderer.render(grid, CAM, T)
    c, d = ray_directions(CAM, T)
    m = frag.mask
    hit = c + frag.depth[m][:, None] * d[m]
    ids = frag.vertex_ids[m]
    xy = grid.vertex_xy().reshape(-1, 2)[np.maximum(ids, 0)]
    dist = np.linalg.norm(xy - hit[:, None, :2], axis=-1) / grid.cell_size
    slide = renderer.depth_tolerance * np.linalg.norm(d[m][:, :2], axis=-1) + 1e-3
    assert (dist[ids >= 0] <= np.broadcast_to((renderer.radius + slide)[:, None], ids.shape)[ids >= 0]).all()
    np.testing.assert_array_equal(renderer.render_depth(grid, CAM, T), frag.depth)
    assert_well_formed(frag, grid)


def test_map_edges_and_flat_map_from_above():
    """Looking straight down at a flat map with rays through grid lines: depth is exact inside the map's
    extent, NaN outside (discs end at the map's edge), one disc or more everywhere inside (no holes)."""
    grid = hf.HeightMap((-0.35, 0.25), 0.1, (16, 12), initial_height=0.3)
    x0, y0 = grid.origin
    cam = hf.PinholeCamera(32, 40, 20.0, 20.0, 16.0, 20.0)
    T = hf.look_at([x0 + 0.6, y0 + 0.8, 1.3], [x0 + 0.6, y0 + 0.8, 0.0], up=(0.0, -1.0, 0.0))
    frag = PointsRenderer().render(grid, cam, T)
    c, d = ray_directions(cam, T)
    xy = c[:2] + 1.0 * d[..., :2]
    x1, x2, y1, y2 = grid.extent
    inside = (xy[..., 0] >= x1 - 1e-9) & (xy[..., 0] <= x2 + 1e-9) & (xy[..., 1] >= y1 - 1e-9) & (xy[..., 1] <= y2 + 1e-9)
    strictly = (xy[..., 0] > x1 + 1e-6) & (xy[..., 0] < x2 - 1e-6) & (xy[..., 1] > y1 + 1e-6) & (xy[..., 1] < y2 - 1e-6)
    assert strictly.mean() > 0.4
    assert frag.mask[strictly].all() and not frag.mask[~inside].any()
    np.testing.assert_allclose(frag.depth[frag.mask], 1.0, rtol=1e-6)
    np.testing.assert_allclose(frag.depth_grad[frag.mask].sum(-1), -1.0, rtol=1e-5)  # flat: the weights stay put
    np.testing.assert_allclose(frag.normal[frag.mask], np.broadcast_to([0.0, 0.0, 1.0], (frag.mask.sum(), 3)), atol=1e-6)


def test_empty_views_and_points_behind_the_camera():
    grid = bumpy_grid()
    renderer = PointsRenderer()
    for T in (
        hf.look_at([-0.5, 0.4, 0.8], [-2.0, 0.4, 0.8]),  # looking away: the whole map behind the camera
        hf.look_at([-0.5, 0.4, 3.0], [-0.5, 0.4, 4.0], up=(0.0, 1.0, 0.0)),  # looking up from above it
    ):
        frag = renderer.render(grid, CAM, T)
        assert not frag.mask.any()
        assert frag.triangle_ids is None and (frag.vertex_ids == -1).all()
        for name in FLOATS:
            assert np.isnan(getattr(frag, name)).all(), name
        assert np.isnan(renderer.render_depth(grid, CAM, T)).all()
    # Camera above the map's middle, looking along it: half the discs are behind the camera.
    frag = renderer.render(grid, CAM, hf.look_at([1.0, 0.4, 0.3], [2.0, 0.4, 0.2]))
    assert frag.mask.any() and not frag.mask[0].any()
    assert_well_formed(frag, grid)


def test_camera_under_the_surface_sees_the_underside():
    box = hf.HeightMap((0.0, 0.0), 0.05, (24, 24))
    box.heights[6:18, 6:18] = 0.5
    T = hf.look_at([0.6, 0.6, 0.25], [0.9, 0.65, 0.2])  # inside the box, at half its height
    frag = PointsRenderer(radius=1.2).render(box, CAM, T)
    assert frag.mask.all() and np.nanmax(frag.depth) < 0.5  # the box's walls, from inside
    # Smaller discs reach R / 2 of a one-cell step each: a slit at mid-height, where this camera looks.
    slit = PointsRenderer(radius=0.8).render(box, CAM, T)
    assert 0.4 < slit.mask.mean() < 0.9 and np.nanmax(slit.depth) < 0.5
    frag = PointsRenderer().render(bumpy_grid(), CAM, hf.look_at([0.9, 0.35, -0.5], [0.85, 0.4, 0.3]))
    assert frag.mask.mean() > 0.9 and (frag.depth_grad[frag.mask].sum(-1) > 0).mean() > 0.99


def test_precision_and_options():
    grid, T = smooth_grid(), hf.look_at([-0.5, 1.0, 0.9], [1.2, 1.0, 0.0])
    f64 = hf.make_renderer("points", dtype="float64").render(grid, CAM, T)
    f32 = hf.make_renderer("points").render(grid, CAM, T)
    assert all(getattr(f64, name).dtype == np.float64 for name in FLOATS)
    assert all(getattr(f32, name).dtype == np.float32 for name in FLOATS)
    assert f32.vertex_ids.dtype == np.int32
    both = f32.mask & f64.mask
    assert (f32.mask != f64.mask).mean() < 0.002
    assert np.abs(f32.depth - f64.depth)[both].max() < 1e-4
    # Without tolerance only the front-most disc (and exact ties) blends.
    single = PointsRenderer(depth_tolerance=0).render(grid, CAM, T)
    assert (single.vertex_ids[single.mask][:, 1] >= 0).mean() < 0.01
    empty = hf.make_renderer("points", dtype=np.float64).render(grid, CAM, hf.look_at([0, 0, 1], [0, 0, 2], up=(0, 1, 0)))
    assert empty.depth.dtype == np.float64 and not empty.mask.any()


def test_bad_input_is_named():
    grid, T = smooth_grid(), hf.look_at([-0.5, 1.0, 0.9], [1.2, 1.0, 0.0])
    renderer = PointsRenderer()
    assert_rejects_bad_input(renderer, grid, CAM, T)
    with pytest.raises(ValueError, match=r"slopes has shape \(40, 48\)"):
        renderer.render(grid, CAM, T, slopes=np.zeros(grid.shape))
    with pytest.raises(ValueError, match="slopes has 1 NaN"):
        slopes = surfel_slopes(grid.heights)
        slopes[0, 0, 1] = np.nan
        renderer.render(grid, CAM, T, slopes=slopes)
    for kwargs, match in (
        ({"radius": 0.5}, "radius must be .* above sqrt"),
        ({"radius": float("nan")}, "radius"),
        ({"depth_tolerance": -1}, "depth_tolerance"),
        ({"dtype": torch.float16}, "PointsRenderer dtype must be float32 or float64"),
    ):
        with pytest.raises(ValueError, match=match):
            hf.make_renderer("points", **kwargs)


def test_normal_equations_bound_the_couplings_the_stencil_cannot_hold():
    """Points fragments blend vertex pairs that are no mesh edge (across a cell's other diagonal): the
    accumulated system keeps A's diagonal and g exactly, and stencil + lumped majorises A."""
    grid = smooth_grid()
    truth = smooth_grid()
    truth.heights += 0.01 * np.random.default_rng(2).standard_normal(grid.shape).astype(np.float32)
    T = hf.look_at([-0.5, 1.0, 0.9], [1.2, 1.0, 0.0])
    renderer = PointsRenderer(dtype=torch.float64)
    depth = renderer.render_depth(truth, CAM, T).astype(np.float32)
    frag = renderer.render(grid, CAM, T)
    sigma = np.full(CAM.shape, 0.01, np.float32)
    ray_norm = np.linalg.norm(CAM.pixel_rays(), axis=-1)
    system = accumulate(frag, depth, sigma, grid.shape, ray_norm, 0.0, np.inf, np.inf)
    n, nx = grid.num_vertices, grid.nx
    A, g = np.zeros((n, n)), np.zeros(n)
    for y, x in zip(*np.nonzero(frag.mask & np.isfinite(depth))):
        ids = frag.vertex_ids[y, x]
        J = frag.depth_grad[y, x][ids >= 0]
        ids = ids[ids >= 0]
        A[np.ix_(ids, ids)] += np.outer(J, J) / 0.01**2
        g[ids] += J * (float(depth[y, x]) - frag.depth[y, x]) / 0.01**2
    assert system.lumped is not None and system.lumped.max() > 0
    np.testing.assert_allclose(system.diagonal.reshape(-1), np.diag(A), rtol=1e-6, atol=1e-6 * np.abs(A).max())
    np.testing.assert_allclose(system.g.reshape(-1), g, rtol=1e-6, atol=1e-6 * np.abs(g).max())
    M = sp.diags(system.diagonal.reshape(-1) + system.lumped.reshape(-1)).toarray()
    for edges, offset in ((system.right, 1), (system.down, nx), (system.diag, nx + 1)):
        for v in np.flatnonzero(edges):
            M[v, v + offset] = M[v + offset, v] = edges.flat[v]
            assert A[v, v + offset] == pytest.approx(edges.flat[v], rel=1e-6)
    assert np.linalg.eigvalsh(M - A).min() > -1e-6 * np.abs(A).max()


def test_fusion_converges_through_points():
    seq = generate("steps", frames=16, width=160, height=120)
    gt = seq.gt_heightmap
    grid = hf.HeightMap(gt.origin, gt.cell_size, gt.shape)
    fuser = HeightMapFuser(grid, hf.make_renderer("points"), FusionConfig())
    stats = [fuser.fuse(f.camera, f.T_wc, f.depth, f.image, sigma=s) for f, s in zip(seq.frames, seq.sigmas)]
    assert all(s.pixels_used > 0 for s in stats)
    xy = gt.vertex_xy()
    smooth = seq.scene.smooth_mask(xy[..., 0], xy[..., 1])
    metrics = evaluate(grid, gt, smooth)
    assert metrics["smooth_rmse"] < 1e-3, metrics  # 0.3 mm measured (GL: 0.4 mm)
    assert metrics["completeness"] > 0.95, metrics
    seen = grid.observed & gt.observed & smooth
    assert np.median(np.abs(grid.colors[seen] - gt.colors[seen])) < 0.05
