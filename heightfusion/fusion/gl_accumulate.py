"""The normal equations of a depth frame summed on the GPU, next to the rendered fragments.

:func:`heightfusion.fusion.normal_equations.accumulate` reads the full fragments back and sums per vertex
with ``np.bincount``; :class:`GLAccumulator` gives the same :class:`NormalEquations` without that
read-back: the renderer draws what the sums need of the fragments into two textures
(:meth:`GLRenderer.draw_fusion_fragments`), one compute dispatch
(``shaders/accumulate.glsl``) applies the same per-pixel rules and adds each pixel's terms atomically
into per-vertex sums, and only those sums (6 floats per vertex, 9 with colours) and per-row pixel
counts come back. The sums cover only the window of vertices the renderer drew
(:attr:`GLRenderer.drawn_window`, which holds every vertex a pixel can see): clearing, uploading the
map's information and reading back follow what the camera sees, not the map's size. On a GPU this saves the read-back and the CPU's pass over every pixel; even on
Mesa's llvmpipe (2 cores) it is faster: the compute pass runs multi-threaded and vectorised, and
the fragment targets are never copied out (replay of the bundled sample: 28 frames/s against
16 with the CPU sums, benchmarks/bench_fusion.py).

Float atomics. Core GL 4.3 has integer atomics only. Where the context offers
``GL_NV_shader_atomic_float`` (NVIDIA drivers, Mesa llvmpipe) the sums use its float ``atomicAdd``;
elsewhere a compare-and-swap loop on the float's bits (``shaders/float_add_cas.glsl``), which any
GL 4.3 driver runs. Fixed-point int64 sums were rejected: one frame's terms span many decades
(w = 1/sigma^2 from 1e2 to 1e8, J from 0 to large near grazing view), so no fixed scale keeps both
their range and their precision, and 64-bit atomics are not core GL.

Precision. The sums are float32, added in whatever order the GPU runs the pixels, against float64 on
the CPU: a vertex under N pixels gets a relative error of about sqrt(N) * 6e-8 (N * 6e-8 at worst,
1e-4 at 1700 pixels on one vertex) of the sum of its terms' magnitudes. In the Gauss-Newton step
g / A that is that share of the residuals, far below the float32 heights the map stores. Per-pixel
values are float32 as in the fragments themselves, so a pixel whose cosine of incidence or
residual-to-sigma ratio lies within float32 rounding of ``cos_min`` or ``gate_k`` may fall on the
other side than on the CPU (the counts then differ by that pixel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..camera import PinholeCamera
from ..heightmap import HeightMap
from ..render.gl import GLRenderer
from ..render.glsl import load_shader, set_uniforms
from ..render.projection import MapWindow
from .normal_equations import NormalEquations

_GROUP = 16  # local_size_x and local_size_y of shaders/accumulate.glsl
# Planes of the Sums buffer (shaders/accumulate.glsl), one float per window vertex each: the
# NormalEquations arrays, the sum of |r|, then the three colour sums.
_SYSTEM = ("diagonal", "g", "right", "down", "diag")
_ABS_RESIDUAL = len(_SYSTEM)
_PLANES = _ABS_RESIDUAL + 1
_PLANES_WITH_COLORS = _PLANES + 3
_NATIVE_FLOAT_ATOMICS = "GL_NV_shader_atomic_float"


@dataclass
class _Buffers:
    """Storage buffers of one image size (W, H), with room for the sums of ``vertices`` window vertices."""

    image_size: tuple[int, int]
    vertices: int
    depth: object
    sigma: object
    ray_norm: object
    colors: object
    information: object
    sums: object
    counters: object
    sums_host: np.ndarray  # read-back target of ``sums``, reused

    def release(self) -> None:
        for res in (self.depth, self.sigma, self.ray_norm, self.colors, self.information, self.sums, self.counters):
            res.release()


class GLAccumulator:
    """Sums a frame's normal equations on the GPU from fragments drawn by ``renderer``.

    Args:
        renderer: the GL renderer whose context and fragment textures are used.
        native_float_atomics: use ``GL_NV_shader_atomic_float``; None: where the context has it.
            False forces the portable compare-and-swap loop.
    """

    def __init__(self, renderer: GLRenderer, native_float_atomics: bool | None = None) -> None:
        self.renderer = renderer
        self._native = native_float_atomics
        self._compiled = None
        self._buffers: _Buffers | None = None

    def accumulate(
        self,
        grid: HeightMap,
        camera: PinholeCamera,
        T_wc: np.ndarray,
        depth: np.ndarray,
        sigma: np.ndarray,
        ray_norm: np.ndarray,
        cos_min: float,
        huber_k: float,
        gate_k: float,
        information: np.ndarray | None = None,
        colors: np.ndarray | None = None,
        max_depth: float = math.inf,
    ) -> NormalEquations:
        """Render ``grid`` from ``T_wc`` and sum the frame's normal equations on the GPU.

        Same arguments and result as :func:`heightfusion.fusion.normal_equations.accumulate`, with the
        rendering done here (grid, camera, T_wc instead of Fragments). Arrays are taken as float32.
        """
        system = self.accumulate_window(grid, camera, T_wc, depth, sigma, ray_norm, cos_min, huber_k, gate_k,
                                        information, colors, max_depth)
        return system.on_grid(grid.shape)

    def accumulate_window(
        self,
        grid: HeightMap,
        camera: PinholeCamera,
        T_wc: np.ndarray,
        depth: np.ndarray,
        sigma: np.ndarray,
        ray_norm: np.ndarray,
        cos_min: float,
        huber_k: float,
        gate_k: float,
        information: np.ndarray | None = None,
        colors: np.ndarray | None = None,
        max_depth: float = math.inf,
        refresh: bool = False,
    ) -> NormalEquations:
        """:meth:`accumulate` with the sums on the window of the tiles drawn (``NormalEquations.window``).

        ``refresh``: the fragments come from :meth:`GLRenderer.refresh_fusion_fragments` (the last
        draw's visibility, re-intersected at the current heights) rather than from a new draw.
        """
        _check_shapes(grid, camera, depth, sigma, ray_norm, information, colors)
        self.renderer.activate()
        draw = self.renderer.refresh_fusion_fragments if refresh else self.renderer.draw_fusion_fragments
        if not draw(grid, camera, T_wc, max_depth) or self.renderer.drawn_window is None:
            return _nothing_seen(depth, colors is not None)
        window = self.renderer.drawn_window
        buffers = self._buffers_for(camera, window.size)
        for buffer, array in ((buffers.depth, depth), (buffers.sigma, sigma), (buffers.ray_norm, ray_norm)):
            buffer.write(np.ascontiguousarray(array, dtype=np.float32))
        if information is not None:
            buffers.information.write(np.ascontiguousarray(information[window.slices], dtype=np.float32))
        if colors is not None:
            buffers.colors.write(np.ascontiguousarray(colors, dtype=np.float32))
        planes = _PLANES_WITH_COLORS if colors is not None else _PLANES
        buffers.sums.clear(size=4 * planes * window.size)
        buffers.counters.clear()
        self._dispatch(buffers, camera, grid, window, cos_min, huber_k, gate_k, information is not None, colors is not None)
        return self._read_back(buffers, window, planes)

    def release(self) -> None:
        """Free the GPU buffers and program (the renderer stays usable)."""
        self.renderer.activate()
        for res in (self._buffers, self._compiled):
            if res is not None:
                res.release()
        self._buffers, self._compiled = None, None

    # --- internals ------------------------------------------------------------------------------
    def _dispatch(
        self,
        buffers: _Buffers,
        camera: PinholeCamera,
        grid: HeightMap,
        window: MapWindow,
        cos_min: float,
        huber_k: float,
        gate_k: float,
        use_information: bool,
        use_colors: bool,
    ) -> None:
        import moderngl

        program = self._program()
        for unit, texture in enumerate(self.renderer.fusion_textures):  # image units 0, 1 of the shader
            texture.bind_to_image(unit, read=True, write=False)
        bound = (buffers.sums, buffers.depth, buffers.sigma, buffers.ray_norm, buffers.colors, buffers.information)
        for binding, buffer in enumerate((*bound, buffers.counters)):
            buffer.bind_to_storage_buffer(binding)
        uniforms = {
            "image_size": (camera.width, camera.height),
            "nx": grid.nx,
            "window_origin": (window.col0, window.row0),
            "window_columns": window.shape[1],
            "window_vertices": window.size,
            "cos_min": cos_min,
            "huber_k": huber_k,
            "gate_k": gate_k,
            "use_information": use_information,
            "use_colors": use_colors,
        }
        set_uniforms(program, uniforms)
        program.run(group_x=-(-camera.width // _GROUP), group_y=-(-camera.height // _GROUP))
        self.renderer.ctx.memory_barrier(moderngl.BUFFER_UPDATE_BARRIER_BIT)

    def _read_back(self, buffers: _Buffers, window: MapWindow, planes: int) -> NormalEquations:
        """The first ``planes`` sums as float64 arrays of the window, and the pixel counts."""
        sums = buffers.sums_host[: planes * window.size]
        buffers.sums.read_into(sums, size=sums.nbytes)
        sums = sums.reshape((planes, *window.shape)).astype(np.float64)
        counts = np.frombuffer(buffers.counters.read(), dtype=np.uint32).reshape(-1, 4).sum(axis=0, dtype=np.int64)
        used, unseen, grazing, gated = (int(c) for c in counts)
        return NormalEquations(
            **dict(zip(_SYSTEM, sums)),
            color_sums=np.moveaxis(sums[_PLANES:], 0, -1) if planes > _PLANES else None,
            pixels_used=used,
            pixels_unseen=unseen,
            pixels_grazing=grazing,
            pixels_gated=gated,
            mean_abs_residual=float(sums[_ABS_RESIDUAL].sum(dtype=np.float64)) / used if used else float("nan"),
            window=window,
        )

    def _program(self):
        """The compute program, compiled on first use, with native float atomics where available."""
        if self._compiled is None:
            ctx = self.renderer.ctx
            native = _NATIVE_FLOAT_ATOMICS in ctx.extensions if self._native is None else self._native
            source = load_shader("accumulate_float_atomics.comp" if native else "accumulate.comp")
            self._compiled = ctx.compute_shader(source)
        return self._compiled

    def _buffers_for(self, camera: PinholeCamera, window_vertices: int) -> _Buffers:
        """Buffers for images of ``camera``'s size with room for the sums of ``window_vertices`` vertices."""
        size = (camera.width, camera.height)
        if self._buffers is not None and self._buffers.image_size == size and self._buffers.vertices >= window_vertices:
            return self._buffers
        if _PLANES_WITH_COLORS * window_vertices >= 1 << 32:  # uint indices in the shader
            raise ValueError(f"a window of {window_vertices} vertices is too large for GL accumulation")
        # Room for twice the window: the windows of a moving view then rarely reallocate.
        n = min(2 * window_vertices, ((1 << 32) - 1) // _PLANES_WITH_COLORS)
        if self._buffers is not None:
            self._buffers.release()
        ctx = self.renderer.ctx
        pixels = camera.width * camera.height
        sums_host = np.empty(_PLANES_WITH_COLORS * n, dtype=np.float32)
        self._buffers = _Buffers(
            size,
            n,
            depth=ctx.buffer(reserve=4 * pixels),
            sigma=ctx.buffer(reserve=4 * pixels),
            ray_norm=ctx.buffer(reserve=4 * pixels),
            colors=ctx.buffer(reserve=12 * pixels),
            information=ctx.buffer(reserve=4 * n),
            sums=ctx.buffer(reserve=sums_host.nbytes),
            counters=ctx.buffer(reserve=16 * camera.height),
            sums_host=sums_host,
        )
        return self._buffers


def _check_shapes(
    grid: HeightMap,
    camera: PinholeCamera,
    depth: np.ndarray,
    sigma: np.ndarray,
    ray_norm: np.ndarray,
    information: np.ndarray | None,
    colors: np.ndarray | None,
) -> None:
    """ValueError naming the first array whose shape does not fit the camera or the grid."""
    expected = {"depth": (depth, camera.shape), "sigma": (sigma, camera.shape), "ray_norm": (ray_norm, camera.shape)}
    if colors is not None:
        expected["colors"] = (colors, camera.shape + (3,))
    if information is not None:
        expected["information"] = (information, grid.shape)
    for name, (array, shape) in expected.items():
        if np.shape(array) != shape:
            raise ValueError(f"{name} has shape {np.shape(array)}, expected {shape}")


def _nothing_seen(depth: np.ndarray, with_colors: bool) -> NormalEquations:
    """The normal equations of a frame that sees none of the map (on an empty window): every measured pixel
    is unseen."""
    shape = (0, 0)
    return NormalEquations(
        **{name: np.zeros(shape) for name in _SYSTEM},
        color_sums=np.zeros(shape + (3,)) if with_colors else None,
        pixels_used=0,
        pixels_unseen=int(np.isfinite(depth).sum()),
        pixels_grazing=0,
        pixels_gated=0,
        mean_abs_residual=float("nan"),
        window=MapWindow(0, 0, 0, 0),
    )
