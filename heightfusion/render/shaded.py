"""The "shaded" backend: the height map's surface lit by a microfacet BRDF, one shaded colour per pixel.

Two stages. An inner renderer (GL by default; any backend name or instance) gives the geometry
:class:`Fragments`. From them, :meth:`ShadedRenderer.surface_maps` builds per-pixel maps
(:class:`SurfaceMaps`):

- albedo: ``Fragments.color``, the vertex colours interpolated (taken as linear diffuse albedo);
- normal: ``Fragments.normal``, the visible triangle's normal, turned towards the camera. Facet
  normals rather than smoothed vertex normals: they belong to the same triangulated surface the
  depth and ``depth_grad`` describe, and a pixel then depends on its own triangle's three heights
  only, as its depth does (smoothed normals would reach the neighbours' heights);
- roughness, specular: per-vertex maps the renderer holds (:attr:`ShadedRenderer.roughness`,
  :attr:`ShadedRenderer.specular`), interpolated with the barycentric weights, or constants;
- view direction and surface point: from the pixel's ray and depth.

A full-screen pass (``shaders/shade.frag``, the BRDF in ``shaders/brdf.glsl``) then shades the
maps uploaded as textures (:class:`GLShadingPass`); :func:`shade_maps` does the same in torch
(:func:`heightfusion.render.brdf.shade`), differentiable with respect to every map, for a
photometric (rendered-image) loss. ``ShadedRenderer(shading="torch")`` renders through that path,
which needs no OpenGL when the inner backend needs none.

Positions are taken relative to the camera centre (``SurfaceMaps.origin``), and point lights moved
into that frame, so that float32 keeps millimetres on a map far from the world origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..camera import PinholeCamera
from ..heightmap import HeightMap
from ..poses import validate_pose
from . import context
from .base import Renderer
from .brdf import MIN_LIGHT_DISTANCE, MIN_ROUGHNESS, Light, shade
from .fragments import Fragments
from .glsl import load_shader

__all__ = ["GLShadingPass", "ShadedRenderer", "SurfaceMaps", "shade_maps"]

_SHADINGS = ("gl", "torch")


@dataclass
class SurfaceMaps:
    """Per-pixel inputs of the shading: (H, W, C) float32 arrays, NaN where the pixel sees no surface.

    Attributes:
        albedo: (H, W, 3) diffuse albedo in [0, 1].
        normal: (H, W, 3) unit surface normal, world frame, on the camera's side of the surface.
        roughness: (H, W) perceptual roughness in [0, 1].
        specular: (H, W, 3) specular colour F0 in [0, 1].
        view_dir: (H, W, 3) unit direction from the surface point to the camera, world frame.
        position: (H, W, 3) surface point minus ``origin``, metres (world axes).
        origin: (3,) float64 world point ``position`` is relative to (the camera centre).
    """

    albedo: np.ndarray
    normal: np.ndarray
    roughness: np.ndarray
    specular: np.ndarray
    view_dir: np.ndarray
    position: np.ndarray
    origin: np.ndarray

    #: The per-pixel fields, as :func:`heightfusion.render.brdf.shade` names its arguments.
    MAPS = ("albedo", "normal", "roughness", "specular", "view_dir", "position")

    @property
    def shape(self) -> tuple[int, int]:
        return self.roughness.shape  # type: ignore[return-value]

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: pixels that see the surface."""
        return np.isfinite(self.position).all(axis=-1)

    def lights_in_frame(self, lights: Sequence[Light]) -> list[Light]:
        """``lights`` (world frame) moved into the frame of ``position``."""
        return [light.translated(-self.origin) for light in lights]

    def to_torch(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The per-pixel maps as tensors, keyed as :func:`heightfusion.render.brdf.shade`'s arguments."""
        return {name: torch.from_numpy(np.asarray(getattr(self, name))).to(dtype) for name in self.MAPS}


def shade_maps(
    maps: SurfaceMaps, lights: Sequence[Light], min_roughness: float = MIN_ROUGHNESS, **overrides: torch.Tensor
) -> torch.Tensor:
    """(H, W, 3) radiance image of ``maps`` under world-frame ``lights``, in torch; NaN where empty.

    ``overrides`` replace maps by (H, W, C) tensors (e.g. ``albedo=parameter``), and gradients flow
    to them. Only the pixels that see the surface are shaded, so the NaNs of empty pixels never
    reach a gradient. The result has the overrides' dtype (float32 without any).
    """
    unknown = set(overrides) - set(SurfaceMaps.MAPS)
    if unknown:
        raise ValueError(f"unknown maps {sorted(unknown)}; SurfaceMaps has {SurfaceMaps.MAPS}")
    dtype = next(iter(overrides.values())).dtype if overrides else torch.float32
    mask = torch.from_numpy(maps.mask)
    inputs = {**maps.to_torch(dtype), **overrides}
    rgb = shade(
        **{name: value[mask] for name, value in inputs.items()},
        lights=maps.lights_in_frame(lights),
        min_roughness=min_roughness,
    )
    out = rgb.new_full((*maps.shape, 3), float("nan"))
    out[mask] = rgb
    return out


class GLShadingPass(context.UsesContext):
    """Shades :class:`SurfaceMaps` with ``shaders/shade.frag``: textures in, one full-screen draw, RGB out.

    Like the GL renderer, each public method first makes the pass's context current (GL calls go to
    whichever context is current on the thread, and the inner renderer may use another one).

    Args:
        ctx: a moderngl context; by default the shared one of :mod:`heightfusion.render.context`,
            created on the first use.
    """

    def __init__(self, ctx=None) -> None:
        self._ctx = ctx
        self._program = None
        self._vao = None
        self._lights = None
        self._size: tuple[int, int] | None = None
        self._textures: dict[str, object] = {}
        self._target = None
        self._fbo = None



    def shade(self, maps: SurfaceMaps, lights: Sequence[Light], min_roughness: float = MIN_ROUGHNESS) -> np.ndarray:
        """(H, W, 3) float32 radiance of ``maps`` under world-frame ``lights``; NaN where empty."""
        import moderngl

        self.activate()
        self._prepare(maps.shape[::-1])
        program = self._program
        for unit, name in enumerate(SurfaceMaps.MAPS):
            texture = self._textures[name]
            texture.write(np.ascontiguousarray(getattr(maps, name), dtype=np.float32))
            texture.use(location=unit)
            program[f"{name}_map"].value = unit
        packed = _pack_lights(maps.lights_in_frame(lights))
        if self._lights.size < packed.nbytes:
            self._lights.orphan(packed.nbytes)
        self._lights.write(packed)
        self._lights.bind_to_storage_buffer(0)
        program["num_lights"].value = len(lights)
        program["min_roughness"].value = min_roughness
        program["min_light_distance"].value = MIN_LIGHT_DISTANCE

        self._fbo.use()
        self.ctx.enable_only(moderngl.NOTHING)
        self._vao.render(moderngl.TRIANGLES, vertices=3)
        H, W = maps.shape
        rgb = np.frombuffer(self._fbo.read(components=3, dtype="f4"), dtype=np.float32).reshape(H, W, 3).copy()
        rgb[~maps.mask] = np.nan
        return rgb

    def release(self) -> None:
        """Free the GPU resources; the pass recreates them if used again."""
        if self._program is None:
            return  # nothing created (and no context to create just to release nothing)
        self.activate()
        for res in (self._fbo, self._target, *self._textures.values(), self._lights, self._vao, self._program):
            if res is not None:
                res.release()
        self._program = self._vao = self._lights = self._target = self._fbo = None
        self._textures, self._size = {}, None

    def _prepare(self, size: tuple[int, int]) -> None:
        """Create the program once and the textures and target for an image of ``size`` (W, H)."""
        import moderngl

        ctx = self.ctx
        if self._program is None:
            self._program = ctx.program(
                vertex_shader=load_shader("fullscreen.vert"), fragment_shader=load_shader("shade.frag")
            )
            self._vao = ctx.vertex_array(self._program, [])
            self._lights = ctx.buffer(reserve=_pack_lights([]).nbytes)
        if self._size == size:
            return
        for res in (self._fbo, self._target, *self._textures.values()):
            if res is not None:
                res.release()
        self._textures = {}
        for name in SurfaceMaps.MAPS:
            texture = ctx.texture(size, 1 if name == "roughness" else 3, dtype="f4")
            # texelFetch reads exact texels, but a texture whose filter wants mipmaps it lacks is
            # incomplete and reads as zero.
            texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
            self._textures[name] = texture
        self._target = ctx.renderbuffer(size, components=4, dtype="f4")
        self._fbo = ctx.framebuffer(color_attachments=[self._target])
        self._size = size


def _pack_lights(lights: Sequence[Light]) -> np.ndarray:
    """The ``Lights`` storage buffer of shaders/shade.frag: per light (vector, is_point), (strength, 0).

    At least one (zero) light, because a buffer cannot be empty.
    """
    packed = np.zeros((max(len(lights), 1), 2, 4), dtype=np.float32)
    for row, light in zip(packed, lights):
        row[0] = (*light.vector, float(light.kind == "point"))
        row[1, :3] = light.strength
    return packed


class ShadedRenderer(Renderer):
    """The map's surface under a microfacet BRDF and a set of lights; ``Fragments.color`` is the shaded RGB.

    Every other :class:`Fragments` field is the inner renderer's, unchanged (so a field the inner
    backend leaves None is None here too). ``color`` is linear radiance, not clipped: highlights and
    strong lights exceed 1. Material maps are per vertex, like the map's colours, so they stay
    attached to the surface from any pose.

    Args:
        lights: world-frame lights; default one directional light from straight above (intensity
            pi: a white, level, Lambertian surface renders 1.0).
        inner: the backend that renders the geometry, by name or instance (an instance is not
            released by :meth:`release`).
        roughness: perceptual roughness, a constant or an (ny, nx) per-vertex map, in [0, 1].
        specular: specular colour F0, a constant, an RGB triple or an (ny, nx) or (ny, nx, 3) per-vertex
            map, in [0, 1].
        shading: ``"gl"`` (``shaders/shade.frag``) or ``"torch"`` (:func:`shade_maps`, no OpenGL).
        min_roughness: lower clamp of the roughness.
        ctx: moderngl context of the GL shading pass (default: the shared one).
    """

    name = "shaded"

    @property
    def capabilities(self) -> Capabilities:
        """The inner backend's geometry; the colour is shaded, not interpolated; no fragment textures of its own."""
        return replace(self.inner.capabilities, gl_fragments=False, vertex_color=False)

    def __init__(
        self,
        lights: Sequence[Light] | None = None,
        inner: str | Renderer = "gl",
        roughness: float | np.ndarray = 0.5,
        specular: float | Sequence[float] | np.ndarray = 0.04,
        shading: str = "gl",
        min_roughness: float = MIN_ROUGHNESS,
        ctx=None,
    ) -> None:
        from . import make_renderer

        if shading not in _SHADINGS:
            raise ValueError(f"shading must be one of {_SHADINGS}, got {shading!r}")
        self.lights: tuple[Light, ...] = tuple(lights) if lights is not None else (Light.directional((0.0, 0.0, 1.0)),)
        inner_renderer = make_renderer(inner) if isinstance(inner, str) else inner
        if not inner_renderer.capabilities.mesh_triangles:
            if isinstance(inner, str):
                inner_renderer.release()
            raise ValueError(
                f"the shaded backend needs a mesh backend for its geometry (facet normals from triangle vertices); "
                f"got {inner_renderer.name!r}: use 'gl', 'raymarch' or 'raymarch-gl'"
            )
        self.inner = inner_renderer
        self._owns_inner = isinstance(inner, str)
        self.roughness = roughness
        self.specular = specular
        self.shading = shading
        self.min_roughness = float(min_roughness)
        #: The GLSL shading pass (its GL resources are created on first use only).
        self.gl_pass = GLShadingPass(ctx)

    def render(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> Fragments:
        frag = self.inner.render(grid, camera, T_wc)
        maps = self.surface_maps(frag, grid, camera, T_wc)
        if self.shading == "gl":
            rgb = self.gl_pass.shade(maps, self.lights, self.min_roughness)
        else:
            with torch.no_grad():
                rgb = shade_maps(maps, self.lights, self.min_roughness).numpy()
        return replace(frag, color=rgb)

    def render_depth(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> np.ndarray:
        return self.inner.render_depth(grid, camera, T_wc)

    def surface_maps(self, frag: Fragments, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> SurfaceMaps:
        """The per-pixel shading inputs of ``frag``, rendered from ``grid`` by ``camera`` at ``T_wc``.

        Fills in from the grid what the inner backend leaves None: the albedo from ``grid.colors``
        and the facet normals from ``grid.heights`` (both need ``vertex_ids``), as the per-vertex
        material maps do.
        """
        T_wc = validate_pose(T_wc, "T_wc")
        if frag.shape != camera.shape:
            raise ValueError(f"fragments of shape {frag.shape} do not match the camera's {camera.shape}")
        mask = frag.mask
        rays = camera.pixel_rays() @ T_wc[:3, :3].T  # world axes, camera-z component 1
        view_dir = -rays / np.linalg.norm(rays, axis=-1, keepdims=True)
        if frag.normal is not None:
            normal = frag.normal.astype(np.float64)
        else:
            normal = _facet_normals(grid, _require(frag.vertex_ids, "vertex_ids", "normals"))
        # Two-sided: a camera under the map sees the underside, lit from below.
        normal = np.where((normal * view_dir).sum(-1, keepdims=True) < 0, -normal, normal)
        albedo = frag.color if frag.color is not None else _interpolate(grid.colors.reshape(-1, 3), frag)
        roughness = _per_pixel(_vertex_map(self.roughness, grid.shape, 1, "roughness"), frag)[..., 0]
        specular = _per_pixel(_vertex_map(self.specular, grid.shape, 3, "specular"), frag)
        empty = ~mask
        arrays = {
            "albedo": albedo,
            "normal": normal,
            "roughness": roughness,
            "specular": specular,
            "view_dir": view_dir,
            "position": frag.depth[..., None] * rays,
        }
        for name, value in arrays.items():
            value = np.array(value, dtype=np.float32)
            value[empty] = np.nan
            arrays[name] = value
        return SurfaceMaps(**arrays, origin=T_wc[:3, 3].copy())

    def release(self) -> None:
        self.gl_pass.release()
        if self._owns_inner:
            self.inner.release()


def _require(array: np.ndarray | None, field: str, purpose: str) -> np.ndarray:
    if array is None:
        raise ValueError(f"the inner renderer leaves Fragments.{field} None, which the {purpose} need")
    return array


def _vertex_map(value, grid_shape: tuple[int, int], channels: int, name: str) -> np.ndarray:
    """A material value as (channels,) for a constant or (num_vertices, channels) for a per-vertex map."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0 or array.shape == (channels,):
        array = np.broadcast_to(array, (channels,))
    elif array.shape[:2] == grid_shape and array.shape[2:] in ((), (1,), (channels,)):
        # A one-channel map of a three-channel material (grey specular) applies to every channel.
        array = np.broadcast_to(array.reshape(*grid_shape, -1), (*grid_shape, channels)).reshape(-1, channels)
    else:
        raise ValueError(
            f"{name} must be a constant{' or an RGB triple' if channels == 3 else ''} or a per-vertex map of shape "
            f"{grid_shape}{f' or {grid_shape + (channels,)}' if channels > 1 else ''}, got shape {array.shape}"
        )
    if not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
        raise ValueError(f"{name} values must lie in [0, 1]")
    return array


def _per_pixel(values: np.ndarray, frag: Fragments) -> np.ndarray:
    """(H, W, C) map of a constant (C,) or of per-vertex values (num_vertices, C)."""
    if values.ndim == 1:
        return np.broadcast_to(values, (*frag.shape, values.shape[0]))
    return _interpolate(values, frag)


def _interpolate(values: np.ndarray, frag: Fragments) -> np.ndarray:
    """(H, W, C) barycentric interpolation of per-vertex ``values`` (num_vertices, C) over the fragments."""
    ids = _require(frag.vertex_ids, "vertex_ids", "per-vertex maps")
    weights = _require(frag.barycentric, "barycentric", "per-vertex maps")
    # Empty pixels have id -1, which indexes the last vertex: harmless, they are set to NaN afterwards.
    return np.einsum("hwk,hwkc->hwc", weights, values[ids])


def _facet_normals(grid: HeightMap, vertex_ids: np.ndarray) -> np.ndarray:
    """(H, W, 3) upward unit normals of the triangles whose vertices are ``vertex_ids`` (H, W, 3)."""
    p = grid.vertices()[vertex_ids]
    # Both triangles of a cell run counter-clockwise seen from above, so the cross product points up.
    n = np.cross(p[..., 1, :] - p[..., 0, :], p[..., 2, :] - p[..., 0, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        return n / np.linalg.norm(n, axis=-1, keepdims=True)
