"""The OpenGL rasterizer: one pass into five render targets, read back as the Fragments' arrays.

The vertex stage only places vertices (no varyings: on a software rasterizer such as llvmpipe the
per-triangle setup of interpolants costs more than recomputing the hit per pixel). The fragment
stage finds the visible triangle from gl_PrimitiveID and intersects the pixel's ray with its plane
(shaders/triangle_hit.glsl), then writes depth, barycentric weights, d depth / d h, vertex ids,
colour and normal. The CPU side only takes views of the arrays read back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..camera import PinholeCamera
from ..heightmap import HeightMap
from ..poses import invert_pose
from . import context
from .base import Renderer, check_inputs, empty_fragments
from .fragments import Fragments
from .glsl import load_shader
from .projection import camera_from_map, clip_from_camera, depth_range

_MAX_TRIANGLES = 1 << 30  # gl_PrimitiveID and the id target are int32
# (dtype, components) of the full pass's render targets, in shaders/fragments.frag's order.
_TARGETS = (("f4", 4), ("f4", 4), ("i4", 4), ("f4", 4), ("f4", 4))
_SHADERS = {
    "full": ("heightmap.vert", "fragments.frag"),
    "depth": ("heightmap.vert", "depth.frag"),
    "clear": ("fullscreen.vert", "clear_fragments.frag"),
}


@dataclass
class _Mesh:
    """GPU buffers of one grid shape: heights and colours are re-uploaded, indices are fixed."""

    shape: tuple[int, int]
    heights: object
    colors: object
    indices: object
    vao_full: object
    vao_depth: object

    def release(self) -> None:
        for res in (self.vao_full, self.vao_depth, self.indices, self.heights, self.colors):
            res.release()


@dataclass
class _Targets:
    """Framebuffers of one image size."""

    size: tuple[int, int]
    full: object
    depth: object
    clear_vao: object
    buffers: list

    def release(self) -> None:
        for res in (self.full, self.depth, self.clear_vao, *self.buffers):
            res.release()


class GLRenderer(Renderer):
    """Rasterizes the height-map mesh with moderngl and the GLSL in ``shaders/``.

    Fills every :class:`Fragments` field. Renders the ideal pinhole image (no lens distortion).

    Args:
        ctx: a moderngl context; by default the shared one from :mod:`heightfusion.render.context`
            (headless EGL unless an app called ``use_context``), created on the first render.
    """

    name = "gl"

    def __init__(self, ctx=None) -> None:
        self._ctx = ctx
        self._programs: dict[str, object] = {}
        self._mesh: _Mesh | None = None
        self._targets: _Targets | None = None

    @property
    def ctx(self):
        if self._ctx is None:
            self._ctx = context.get_context()
        return self._ctx

    # --- public API -----------------------------------------------------------------------------
    def render(self, grid: HeightMap, cam: PinholeCamera, T_wc: np.ndarray) -> Fragments:
        T_wc = check_inputs(grid, cam, T_wc)
        if not self._draw(grid, cam, T_wc, full=True):
            return empty_fragments(cam)
        H, W = cam.shape
        arrays = [np.empty((H, W, n), dtype=dtype) for dtype, n in _TARGETS]
        for attachment, (out, (dtype, n)) in enumerate(zip(arrays, _TARGETS)):
            self._targets.full.read_into(out, components=n, attachment=attachment, dtype=dtype)  # type: ignore[union-attr]
        depth_bary, grad, ids, color, normal = arrays
        return Fragments(
            depth=depth_bary[..., 0],
            triangle_ids=ids[..., 3],
            vertex_ids=ids[..., :3],
            barycentric=depth_bary[..., 1:],
            depth_grad=grad[..., :3],
            color=color[..., :3],
            normal=normal[..., :3],
        )

    def render_depth(self, grid: HeightMap, cam: PinholeCamera, T_wc: np.ndarray) -> np.ndarray:
        T_wc = check_inputs(grid, cam, T_wc)
        depth = np.empty(cam.shape, dtype=np.float32)
        if not self._draw(grid, cam, T_wc, full=False):
            depth.fill(np.nan)
            return depth
        self._targets.depth.read_into(depth, components=1, dtype="f4")  # type: ignore[union-attr]
        return depth

    def release(self) -> None:
        for res in (self._mesh, self._targets, *self._programs.values()):
            if res is not None:
                res.release()
        self._mesh, self._targets, self._programs = None, None, {}

    # --- internals ------------------------------------------------------------------------------
    def _draw(self, grid: HeightMap, cam: PinholeCamera, T_wc: np.ndarray, full: bool) -> bool:
        """Draw into the full or depth-only framebuffer; False if the map is entirely behind the camera."""
        import moderngl

        ranges = depth_range(grid, T_wc)
        if ranges is None:
            return False
        near, far = ranges
        mesh = self._mesh_for(grid)
        targets = self._targets_for(cam)
        mesh.heights.write(np.ascontiguousarray(grid.heights, dtype=np.float32))
        mesh.heights.bind_to_storage_buffer(0)
        if full:
            mesh.colors.write(np.ascontiguousarray(grid.colors, dtype=np.float32))
            mesh.colors.bind_to_storage_buffer(1)

        cam_from_map = camera_from_map(grid, T_wc)
        map_from_cam = invert_pose(cam_from_map)
        program = self._program("full" if full else "depth")
        program["nx"].value = grid.nx
        program["cell_size"].value = grid.cell_size
        program["clip_from_map"].write((clip_from_camera(cam, near, far) @ cam_from_map).T.astype("f4").tobytes())
        program["cam_center"].value = tuple(map_from_cam[:3, 3])
        program["map_from_cam"].write(map_from_cam[:3, :3].T.astype("f4").tobytes())
        program["pixel_to_ray"].value = (1.0 / cam.fx, 1.0 / cam.fy, cam.cx, cam.cy)
        program["depth_scale"].value = 1.0 / far

        ctx = self.ctx
        ctx.enable_only(moderngl.DEPTH_TEST)
        if full:
            targets.full.use()
            # Reset to "no surface" with a draw: glClear leaves integer targets undefined.
            ctx.depth_func = "1"
            targets.clear_vao.render(moderngl.TRIANGLES, vertices=3)
            ctx.depth_func = "<"
            mesh.vao_full.render(moderngl.TRIANGLES)
        else:
            targets.depth.use()
            targets.depth.clear(np.nan, depth=1.0)
            mesh.vao_depth.render(moderngl.TRIANGLES)
        return True

    def _program(self, kind: str):
        if kind not in self._programs:
            vert, frag = _SHADERS[kind]
            self._programs[kind] = self.ctx.program(vertex_shader=load_shader(vert), fragment_shader=load_shader(frag))
        return self._programs[kind]

    def _mesh_for(self, grid: HeightMap) -> _Mesh:
        if self._mesh is not None and self._mesh.shape == grid.shape:
            return self._mesh
        if grid.num_triangles >= _MAX_TRIANGLES:
            raise ValueError(f"HeightMap of shape {grid.shape} is too large for the GL backend")
        if self._mesh is not None:
            self._mesh.release()
        ctx = self.ctx
        n = grid.num_vertices
        heights = ctx.buffer(reserve=4 * n)
        colors = ctx.buffer(reserve=12 * n)
        indices = ctx.buffer(grid.triangles().tobytes())
        vaos = [
            ctx.vertex_array(self._program(kind), [], index_buffer=indices, index_element_size=4)
            for kind in ("full", "depth")
        ]
        self._mesh = _Mesh(grid.shape, heights, colors, indices, *vaos)
        return self._mesh

    def _targets_for(self, cam: PinholeCamera) -> _Targets:
        size = (cam.width, cam.height)
        if self._targets is not None and self._targets.size == size:
            return self._targets
        if self._targets is not None:
            self._targets.release()
        ctx = self.ctx
        color = [ctx.renderbuffer(size, components=n, dtype=dtype) for dtype, n in _TARGETS]
        depth_color = ctx.renderbuffer(size, components=1, dtype="f4")
        depth_buffers = [ctx.depth_renderbuffer(size) for _ in range(2)]
        full = ctx.framebuffer(color_attachments=color, depth_attachment=depth_buffers[0])
        depth = ctx.framebuffer(color_attachments=[depth_color], depth_attachment=depth_buffers[1])
        clear_vao = ctx.vertex_array(self._program("clear"), [])
        self._targets = _Targets(size, full, depth, clear_vao, [*color, depth_color, *depth_buffers])
        return self._targets
