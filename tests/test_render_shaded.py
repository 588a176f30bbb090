"""The "shaded" backend and its microfacet BRDF: torch against GLSL, a textbook formula and finite
differences; energy bounds and degenerate angles; the renderer's Fragments; the SVBRDF example."""

import math

import numpy as np
import pytest
import torch
from conftest import bumpy_grid, load_example
from reference import ray_directions

import heightfusion as hf
from heightfusion.render.base import Capabilities, Renderer
from heightfusion.render.brdf import MIN_ROUGHNESS, Light, brdf_cos, ggx_distribution, shade
from heightfusion.render.fragments import Fragments
from heightfusion.render.shaded import GLShadingPass, SurfaceMaps, shade_maps

CAM = hf.PinholeCamera(64, 48, 50.0, 52.0, 31.5, 23.5)
T_VIEW = hf.look_at([-0.5, 0.4, 0.8], [0.9, 0.35, 0.0])
LIGHTS = (
    Light.directional((0.3, -0.2, 1.0), color=(1.0, 0.9, 0.8)),
    Light.directional((-1.0, 0.5, 0.4), color=(0.2, 0.3, 1.0), intensity=2.0),
    Light.point((0.8, 0.3, 0.9), intensity=2.0),
    Light.point((1.4, 0.9, 0.4), color=(0.5, 1.0, 0.2), intensity=1.0),
)


@pytest.fixture(scope="module")
def gl_pass():
    shading = GLShadingPass()
    yield shading
    shading.release()


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def random_maps(rng, shape=(24, 32), origin=(0.0, 0.0, 0.0)) -> SurfaceMaps:
    """Random per-pixel maps: tilted normals and views of any length, roughness below the clamp too."""
    H, W = shape
    tilt = np.array([0.6, 0.6, 0.0])
    return SurfaceMaps(
        albedo=rng.random((H, W, 3)).astype(np.float32),
        normal=((rng.normal(size=(H, W, 3)) * tilt + [0, 0, 1]) * rng.uniform(0.5, 2, (H, W, 1))).astype(np.float32),
        roughness=rng.uniform(0.0, 1.0, (H, W)).astype(np.float32),
        specular=rng.random((H, W, 3)).astype(np.float32),
        view_dir=((rng.normal(size=(H, W, 3)) * tilt + [0, 0, 1]) * rng.uniform(0.5, 2, (H, W, 1))).astype(np.float32),
        position=(rng.normal(size=(H, W, 3)) * 0.3).astype(np.float32),
        origin=np.asarray(origin, dtype=np.float64),
    )


def shade_float64(maps: SurfaceMaps, lights) -> np.ndarray:
    """The torch BRDF in float64 over every pixel of ``maps``."""
    return shade(**maps.to_torch(torch.float64), lights=maps.lights_in_frame(lights)).numpy()


# --- the BRDF ------------------------------------------------------------------------------------
def test_glsl_matches_torch_on_random_maps(gl_pass):
    rng = np.random.default_rng(1)
    origin = np.array([1000.0, -2000.0, 3.0])  # point lights and positions far from the world origin
    lights = [light.translated(origin) for light in LIGHTS]
    maps = random_maps(rng, origin=origin)
    maps.position[3, 4] = maps.position[10, :5] = np.nan  # empty pixels
    rgb = gl_pass.shade(maps, lights)
    mask = maps.mask
    assert np.isnan(rgb[~mask]).all() and np.isfinite(rgb[mask]).all()
    expected = shade_float64(maps, lights)
    np.testing.assert_allclose(rgb[mask], expected[mask], rtol=1e-4, atol=1e-6)
    assert expected[mask].max() > 2.0, "some pixels should catch a highlight"
    # No lights: black.
    np.testing.assert_array_equal(gl_pass.shade(maps, [])[mask], 0.0)


def test_brdf_matches_textbook_formula():
    """The rewritten terms (|n x h|^2, cancelled cosines) against the usual Cook-Torrance form."""
    rng = np.random.default_rng(2)
    n = _unit(rng.normal(size=(200, 3)) * [0.3, 0.3, 0] + [0, 0, 1])
    v = _unit(rng.normal(size=(200, 3)) * [0.5, 0.5, 0] + [0, 0, 1])
    l = _unit(rng.normal(size=(200, 3)) * [0.5, 0.5, 0] + [0, 0, 1])
    keep = ((n * v).sum(-1) > 0.05) & ((n * l).sum(-1) > 0.05)
    n, v, l = n[keep], v[keep], l[keep]
    albedo, f0 = rng.random((len(n), 3)), rng.random((len(n), 3))
    rough = rng.uniform(0.1, 1.0, len(n))
    a = rough[:, None] ** 2
    h = _unit(l + v)
    nl, nv, nh, vh = ((x * y).sum(-1, keepdims=True) for x, y in ((n, l), (n, v), (n, h), (v, h)))
    D = a**2 / (np.pi * (nh**2 * (a**2 - 1) + 1) ** 2)
    k = a / 2
    G = nl / (nl * (1 - k) + k) * nv / (nv * (1 - k) + k)
    F = f0 + (1 - f0) * (1 - vh) ** 5
    expected = (albedo / np.pi + D * G * F / (4 * nl * nv)) * nl
    t = lambda x: torch.from_numpy(x)  # noqa: E731
    got = brdf_cos(t(albedo), t(n), t(rough), t(f0), t(v), t(l)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_shade_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    N = 6
    tensor = lambda x: torch.tensor(x, dtype=torch.float64, requires_grad=True)  # noqa: E731
    albedo = tensor(rng.uniform(0.1, 0.9, (N, 3)))
    normal = tensor(rng.normal(size=(N, 3)) * [0.3, 0.3, 0] + [0, 0, 1.2])
    roughness = tensor(rng.uniform(0.2, 0.9, N))
    specular = tensor(rng.uniform(0.02, 0.9, (N, 3)))
    view_dir = tensor(rng.normal(size=(N, 3)) * [0.3, 0.3, 0] + [0, 0, 1])
    position = tensor(rng.normal(size=(N, 3)) * 0.2)
    lights = [Light.directional((0.2, 0.1, 1.0)), Light.point((0.3, -0.2, 1.0), color=(1.0, 0.5, 0.2))]

    def f(albedo, normal, roughness, specular, view_dir, position):
        return shade(albedo, normal, roughness, specular, view_dir, lights, position)

    assert torch.autograd.gradcheck(f, (albedo, normal, roughness, specular, view_dir, position), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("roughness", [MIN_ROUGHNESS, 0.1, 0.3, 0.7, 1.0])
def test_ggx_distribution_is_normalised(roughness):
    """The projected microfacet area integrates to one: int D(h) (n.h) dw_h = 1."""
    n = 400_000
    theta = (torch.arange(n, dtype=torch.float64) + 0.5) * (math.pi / 2 / n)
    alpha = torch.tensor(roughness**2, dtype=torch.float64)
    D = ggx_distribution(theta.cos(), theta.sin().square(), alpha)
    integral = (D * theta.cos() * theta.sin()).sum() * 2 * math.pi * (math.pi / 2 / n)
    assert abs(integral.item() - 1.0) < 1e-4


def directional_albedo(roughness: float, view_angle: float, albedo: float, f0: float, n_theta=200, n_phi=400) -> float:
    """int f(l, v) (n.l) dw_l over the hemisphere: what a white furnace (uniform light 1) shows."""
    theta = (torch.arange(n_theta, dtype=torch.float64) + 0.5) * (math.pi / 2 / n_theta)
    phi = (torch.arange(n_phi, dtype=torch.float64) + 0.5) * (2 * math.pi / n_phi)
    T, P = torch.meshgrid(theta, phi, indexing="ij")
    l = torch.stack([T.sin() * P.cos(), T.sin() * P.sin(), T.cos()], dim=-1)
    d_omega = T.sin() * (math.pi / 2 / n_theta) * (2 * math.pi / n_phi)
    v = torch.tensor([math.sin(view_angle), 0.0, math.cos(view_angle)], dtype=torch.float64).expand_as(l)
    n = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(l)
    f = brdf_cos(torch.full_like(l, albedo), n, torch.full(T.shape, roughness, dtype=torch.float64),
                 torch.full_like(l, f0), v, l)
    return float((f[..., 0] * d_omega).sum())


@pytest.mark.parametrize("view_angle", [0.0, 0.5, 1.0, 1.4, 1.55])
def test_white_furnace_bounds(view_angle):
    # The Lambertian lobe alone (the BRDF is linear in the albedo) reflects all the light.
    lambert = directional_albedo(0.5, view_angle, 1.0, 0.0) - directional_albedo(0.5, view_angle, 0.0, 0.0)
    assert abs(lambert - 1.0) < 1e-3
    # A perfect mirror-coloured (F0 = 1) microfacet lobe never creates energy; single scattering
    # loses some, more for rough surfaces; a smooth one seen from the front keeps nearly all.
    for roughness in (0.2, 0.35, 0.5, 0.75, 1.0):
        reflected = directional_albedo(roughness, view_angle, 0.0, 1.0)
        assert 0.25 < reflected < 1.0 + 2e-3, (roughness, reflected)
    if view_angle <= 0.5:
        assert directional_albedo(0.2, view_angle, 0.0, 1.0) > 0.98


def test_degenerate_angles_stay_finite():
    """Normal and grazing incidence and view, a light exactly opposite the view, roughness 0, a point
    light on the surface: finite radiance and finite gradients everywhere."""
    z, x = [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]
    cases = [  # (view, light direction)
        (z, z),  # normal incidence, normal view
        (x, z),  # grazing view
        (z, x),  # grazing light
        (x, [-1.0, 0.0, 0.0]),  # both grazing, l = -v: zero half vector
        (z, [0.0, 0.0, -1.0]),  # light below, l = -v
    ]
    for roughness in (0.0, -1.0, MIN_ROUGHNESS, 1.0):
        for view, light in cases:
            inputs = [torch.tensor(a, dtype=torch.float64, requires_grad=True)
                      for a in ([0.5, 0.5, 0.5], z, roughness, [0.04] * 3, view)]
            rgb = shade(*inputs, lights=[Light.directional(light)])
            assert torch.isfinite(rgb).all(), (roughness, view, light)
            rgb.sum().backward()
            assert all(torch.isfinite(t.grad).all() for t in inputs), (roughness, view, light)
    # A point light on the surface point itself.
    position = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    rgb = shade(torch.full((3,), 0.5, dtype=torch.float64), torch.tensor(z, dtype=torch.float64),
                torch.tensor(0.5, dtype=torch.float64), torch.full((3,), 0.04, dtype=torch.float64),
                torch.tensor(z, dtype=torch.float64), [Light.point((0.0, 0.0, 0.0))], position)
    rgb.sum().backward()
    assert torch.isfinite(rgb).all() and torch.isfinite(position.grad).all()


def test_roughness_is_clamped_away_from_zero():
    rng = np.random.default_rng(4)
    maps = {k: v.double() for k, v in random_maps(rng, (4, 5)).to_torch().items()}
    lights = [Light.directional((0.1, 0.2, 1.0)), Light.point((0.2, 0.0, 0.5))]
    at_min = shade(**{**maps, "roughness": torch.full((4, 5), MIN_ROUGHNESS, dtype=torch.float64)}, lights=lights)
    below = torch.full((4, 5), 0.0, dtype=torch.float64, requires_grad=True)
    rgb = shade(**{**maps, "roughness": below}, lights=lights)
    torch.testing.assert_close(rgb, at_min)
    rgb.sum().backward()
    assert (below.grad == 0).all()
    # A custom clamp is honoured.
    coarse = shade(**{**maps, "roughness": below.detach()}, lights=lights, min_roughness=0.3)
    at_coarse = torch.full((4, 5), 0.3, dtype=torch.float64)
    torch.testing.assert_close(coarse, shade(**{**maps, "roughness": at_coarse}, lights=lights))


def test_light_units_and_superposition():
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    white, up, no_specular = t([1.0, 1.0, 1.0]), t([0.0, 0.0, 1.0]), t([0.0, 0.0, 0.0])
    surface = dict(albedo=white, normal=up, roughness=t(0.5), specular=no_specular, view_dir=up, position=t([0.0] * 3))
    # A white Lambertian surface facing a default light (1 m away for a point light) renders 1.0
    # (F0 = 0 seen along the normal has no specular reflection: F = 0 at v.h = 1).
    torch.testing.assert_close(shade(**surface, lights=[Light.directional((0, 0, 1))]), white)
    torch.testing.assert_close(shade(**surface, lights=[Light.point((0, 0, 1))]), white)
    # Inverse square fall-off, intensity and colour scale linearly, lights add up.
    torch.testing.assert_close(shade(**surface, lights=[Light.point((0, 0, 2))]), white / 4)
    a, b = Light.point((0.3, 0.1, 0.8), color=(1.0, 0.5, 0.0), intensity=2.0), Light.directional((1.0, 0.0, 1.0))
    both = shade(**surface, lights=[a]) + shade(**surface, lights=[b])
    torch.testing.assert_close(shade(**surface, lights=[a, b]), both)
    half = Light.point(a.vector, color=a.color, intensity=1.0)
    torch.testing.assert_close(shade(**surface, lights=[a]), 2 * shade(**surface, lights=[half]))


def test_light_validation():
    with pytest.raises(ValueError, match="kind"):
        Light("spot", (0, 0, 1))
    with pytest.raises(ValueError, match="non-zero direction"):
        Light.directional((0, 0, 0))
    with pytest.raises(ValueError, match="non-negative"):
        Light.point((0, 0, 1), color=(1, -1, 1))
    with pytest.raises(ValueError, match="intensity"):
        Light.point((0, 0, 1), intensity=float("nan"))
    with pytest.raises(ValueError, match="three finite"):
        Light.point((0, 0))
    assert Light.directional((0, 0, 2)).vector == (0.0, 0.0, 1.0)
    ones = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="surface position"):
        shade(ones, ones, ones[0], ones, ones, [Light.point((0, 0, 1))])


# --- the renderer --------------------------------------------------------------------------------
def _copy(frag: Fragments) -> Fragments:
    return Fragments(**{k: (None if v is None else np.array(v)) for k, v in frag.__dict__.items()})


def test_fragments_are_the_inner_geometry_with_shaded_colour(gl_renderer):
    grid = bumpy_grid()
    rng = np.random.default_rng(5)
    roughness = rng.uniform(0.1, 0.9, grid.shape)
    specular = rng.uniform(0.0, 0.5, grid.shape + (3,))
    renderer = hf.make_renderer("shaded", lights=LIGHTS, roughness=roughness, specular=specular)
    try:
        frag = renderer.render(grid, CAM, T_VIEW)
        geometry = _copy(gl_renderer.render(grid, CAM, T_VIEW))
        for field in ("depth", "triangle_ids", "vertex_ids", "barycentric", "depth_grad", "normal"):
            np.testing.assert_array_equal(getattr(frag, field), getattr(geometry, field), err_msg=field)
        mask = geometry.mask
        assert 0.2 < mask.mean() < 0.9  # surface and empty pixels

        maps = renderer.surface_maps(geometry, grid, CAM, T_VIEW)
        # The maps, checked against the geometry directly.
        c, d = ray_directions(CAM, T_VIEW)
        np.testing.assert_allclose(maps.origin, c)
        np.testing.assert_allclose(maps.view_dir[mask], -_unit(d)[mask], atol=1e-6)
        np.testing.assert_allclose(maps.position[mask], (geometry.depth[..., None] * d)[mask], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(maps.albedo[mask], geometry.color[mask])
        np.testing.assert_array_equal(maps.normal[mask], geometry.normal[mask])  # camera above: upper side
        ids, b = geometry.vertex_ids[mask], geometry.barycentric[mask]
        np.testing.assert_allclose(maps.roughness[mask], (roughness.reshape(-1)[ids] * b).sum(-1), atol=1e-6)
        np.testing.assert_allclose(maps.specular[mask], (specular.reshape(-1, 3)[ids] * b[..., None]).sum(1), atol=1e-6)
        assert all(np.isnan(getattr(maps, name)[~mask]).all() for name in SurfaceMaps.MAPS)

        # The colour is the shading of those maps; NaN where there is no surface.
        expected = shade_float64(maps, LIGHTS)
        np.testing.assert_allclose(frag.color[mask], expected[mask], rtol=1e-4, atol=1e-6)
        assert np.isnan(frag.color[~mask]).all()
        np.testing.assert_array_equal(renderer.render_depth(grid, CAM, T_VIEW), geometry.depth)
    finally:
        renderer.release()


def test_torch_shading_path_matches_gl():
    grid = bumpy_grid(seed=6)
    grey_specular = np.random.default_rng(6).uniform(0.0, 1.0, grid.shape)  # one channel for all three
    kwargs = dict(lights=LIGHTS, roughness=0.3, specular=grey_specular)
    gl, torch_path = hf.make_renderer("shaded", **kwargs), hf.make_renderer("shaded", shading="torch", **kwargs)
    try:
        a, b = gl.render(grid, CAM, T_VIEW).color, torch_path.render(grid, CAM, T_VIEW).color
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        m = np.isfinite(a)
        np.testing.assert_allclose(a[m], b[m], rtol=1e-4, atol=1e-6)
    finally:
        gl.release()
        torch_path.release()


def test_shade_maps_gradients_reach_overrides_without_nans(gl_renderer):
    """Per-pixel maps as parameters: the empty pixels' NaNs never reach a gradient."""
    grid = bumpy_grid()
    renderer = hf.make_renderer("shaded", inner=gl_renderer, lights=LIGHTS)
    frag = _copy(gl_renderer.render(grid, CAM, hf.look_at([0.35, -0.15, 0.3], [1.5, 0.7, 0.25])))  # horizon
    maps = renderer.surface_maps(frag, grid, CAM, hf.look_at([0.35, -0.15, 0.3], [1.5, 0.7, 0.25]))
    assert 0.1 < maps.mask.mean() < 0.9
    albedo = torch.full((*CAM.shape, 3), 0.5, dtype=torch.float64, requires_grad=True)
    roughness = torch.full(CAM.shape, 0.4, dtype=torch.float64, requires_grad=True)
    rgb = shade_maps(maps, LIGHTS, albedo=albedo, roughness=roughness)
    assert rgb.dtype == torch.float64 and torch.isnan(rgb[torch.from_numpy(~maps.mask)]).all()
    rgb.nan_to_num().sum().backward()
    for grad in (albedo.grad, roughness.grad):
        assert torch.isfinite(grad).all()
        assert (grad[torch.from_numpy(~maps.mask)] == 0).all()
    assert (albedo.grad[torch.from_numpy(maps.mask)] > 0).all()
    with pytest.raises(ValueError, match="unknown maps"):
        shade_maps(maps, LIGHTS, colour=albedo)


def test_level_white_surface_under_default_light_renders_one():
    grid = hf.HeightMap((-1.0, -1.0), 0.25, (9, 9))
    grid.colors[:] = 1.0
    renderer = hf.make_renderer("shaded", specular=0.0)
    try:
        frag = renderer.render(grid, CAM, hf.look_at([0.0, 0.0, 1.0], [0.0, 0.0, 0.0], up=(0.0, 1.0, 0.0)))
        assert frag.mask.all()
        np.testing.assert_allclose(frag.color, 1.0, atol=1e-4)
    finally:
        renderer.release()


def test_underside_is_lit_from_below(gl_renderer):
    grid = bumpy_grid()
    T = hf.look_at([0.9, 0.35, -0.5], [0.85, 0.4, 0.3])  # under the map, looking up
    from_above = hf.make_renderer("shaded", inner=gl_renderer, lights=[Light.directional((0, 0, 1))])
    from_below = hf.make_renderer("shaded", inner=gl_renderer, lights=[Light.directional((0, 0, -1))])
    try:
        dark, lit = from_above.render(grid, CAM, T), from_below.render(grid, CAM, T)
        m = dark.mask
        assert m.mean() > 0.9
        np.testing.assert_array_equal(dark.color[m], 0.0)
        assert (lit.color[m] > 0).all()
    finally:
        from_above.release()
        from_below.release()


class _GeometryOnly(Renderer):
    """A backend that leaves colour and normal to the caller (None), as a backend may."""

    name = "geometry-only"
    capabilities = Capabilities(mesh_triangles=True, gl_fragments=False, vertex_color=False, double_precision=False)

    def __init__(self, inner: Renderer) -> None:
        self.inner = inner

    def render(self, grid, cam, T_wc) -> Fragments:
        frag = _copy(self.inner.render(grid, cam, T_wc))
        frag.color = frag.normal = None
        return frag

    def render_depth(self, grid, cam, T_wc) -> np.ndarray:
        return self.inner.render_depth(grid, cam, T_wc)


def test_missing_colour_and_normal_come_from_the_grid(gl_renderer):
    grid = bumpy_grid()
    kwargs = dict(lights=LIGHTS, specular=(0.9, 0.6, 0.1))
    full = hf.make_renderer("shaded", inner=gl_renderer, **kwargs)
    partial = hf.make_renderer("shaded", inner=_GeometryOnly(gl_renderer), **kwargs)
    try:
        a, b = full.render(grid, CAM, T_VIEW), partial.render(grid, CAM, T_VIEW)
        assert b.normal is None
        m = a.mask
        np.testing.assert_allclose(b.color[m], a.color[m], rtol=1e-3, atol=1e-4)
        frag = partial.inner.render(grid, CAM, T_VIEW)
        frag.vertex_ids = None
        with pytest.raises(ValueError, match="vertex_ids"):
            partial.surface_maps(frag, grid, CAM, T_VIEW)
    finally:
        full.release()
        partial.release()


def test_shading_pass_on_its_own_context(gl_renderer):
    """Inner renderer and shading pass on different contexts: each makes its own current."""
    import moderngl

    grid = bumpy_grid()
    shared = hf.make_renderer("shaded", inner=gl_renderer, lights=LIGHTS)
    expected = shared.render(grid, CAM, T_VIEW).color
    own = moderngl.create_context(standalone=True, backend="egl")
    separate = hf.make_renderer("shaded", inner=gl_renderer, lights=LIGHTS, ctx=own)
    try:
        maps = separate.surface_maps(_copy(gl_renderer.render(grid, CAM, T_VIEW)), grid, CAM, T_VIEW)
        own.__enter__()  # as an app's window context would be: the pass's GL objects are made there
        np.testing.assert_array_equal(separate.gl_pass.shade(maps, LIGHTS), expected)
        for _ in range(2):  # the inner renderer makes the shared context current before each pass
            np.testing.assert_array_equal(separate.render(grid, CAM, T_VIEW).color, expected)
            np.testing.assert_array_equal(shared.render(grid, CAM, T_VIEW).color, expected)
    finally:
        separate.release()
        shared.release()
        own.release()


def test_map_out_of_view_has_no_colour(gl_renderer):
    renderer = hf.make_renderer("shaded", inner=gl_renderer, lights=LIGHTS)
    grid = bumpy_grid()
    for eye, target in (([-0.5, 0.4, 0.8], [-2.0, 0.4, 0.8]), ([-0.5, 0.4, 0.3], [-1.5, 0.4, 0.3])):  # away, behind
        frag = renderer.render(grid, CAM, hf.look_at(eye, target))
        assert not frag.mask.any() and np.isnan(frag.color).all()


def test_bad_arguments_are_named(gl_renderer):
    grid = bumpy_grid()
    assert "shaded" in hf.BACKENDS
    with pytest.raises(ValueError, match="shading"):
        hf.make_renderer("shaded", shading="vulkan")
    with pytest.raises(ValueError, match=r"roughness .*\(12, 16\)"):
        hf.make_renderer("shaded", inner=gl_renderer, roughness=np.full((3, 3), 0.5)).render(grid, CAM, T_VIEW)
    with pytest.raises(ValueError, match=r"specular values must lie in \[0, 1\]"):
        hf.make_renderer("shaded", inner=gl_renderer, specular=1.5).render(grid, CAM, T_VIEW)
    with pytest.raises(ValueError, match="do not match the camera"):
        renderer = hf.make_renderer("shaded", inner=gl_renderer)
        renderer.surface_maps(gl_renderer.render(grid, CAM, T_VIEW), grid, CAM.scaled(0.5), T_VIEW)
    with pytest.raises(ValueError, match="needs a mesh backend.*'points'"):
        hf.make_renderer("shaded", inner="points")


# --- the example ---------------------------------------------------------------------------------
def test_svbrdf_example_loop_reduces_the_loss(monkeypatch):
    example = load_example("fit_svbrdf", monkeypatch)
    scene = example.make_scene(size=12, light_grid=3)
    before = example.errors(scene, example.Material(scene.maps.shape))
    material, losses = example.fit(scene, steps=30)
    after = example.errors(scene, material)
    assert losses[-1] < 0.2 * losses[0]
    assert after["albedo_rmse"] < 0.5 * before["albedo_rmse"]
