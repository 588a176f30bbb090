"""The "raymarch-gl" backend: the ray marcher of :mod:`.raymarch` as one full-screen GLSL pass.

``shaders/raymarch.frag`` walks each pixel's ray over the grid's cells as the torch version does (the
same grid frame, box, column walk, exact triangle tests and in-triangle slack, from the helpers of
:mod:`.raymarch`), in float32, stopping at the first column with a hit; the torch version's culling
by height ranges, which pays off only for batches of rays, is left out. It writes the same five render
targets as the GL rasterizer's full pass. Heights and colours go up as storage buffers on every render;
no mesh is built, so the cost is per pixel and per cell walked rather than per triangle.
"""

from __future__ import annotations

import numpy as np

from ..camera import PinholeCamera
from ..heightmap import HeightMap
from . import context
from .base import Capabilities, Renderer, check_inputs
from .fragments import Fragments
from .gl import TARGETS, fragments_from_targets
from .glsl import load_shader, set_uniforms
from .raymarch import TINY, edge_slack, grid_frame, march_box

class RaymarchGLRenderer(context.UsesContext, Renderer):
    """Ray marches the height map in a GLSL fragment shader (float32).

    Fills every :class:`Fragments` field with the conventions of the GL rasterizer and of
    :class:`heightfusion.render.raymarch.RaymarchRenderer`. Needs OpenGL 4.3 (raises
    :class:`heightfusion.GLUnavailableError` on the first render without it). Each public method first
    makes the renderer's context current; it stays current afterwards.

    Args:
        ctx: a moderngl context; by default the shared one from :mod:`heightfusion.render.context`,
            created on the first render.
    """

    name = "raymarch-gl"
    capabilities = Capabilities(mesh_triangles=True, gl_fragments=False, vertex_color=True, double_precision=False)

    def __init__(self, ctx=None) -> None:
        self._ctx = ctx
        self._program = None
        self._vao = None
        self._buffers: dict[str, object] = {}  # "heights", "colors": storage buffers of the current grid size
        self._fbo = None
        self._targets: list = []



    def render(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> Fragments:
        self._draw(grid, camera, T_wc)
        H, W = camera.shape
        targets = [np.empty((H, W, n), dtype=dtype) for dtype, n in TARGETS]
        for attachment, ((dtype, n), out) in enumerate(zip(TARGETS, targets)):
            self._fbo.read_into(out, components=n, attachment=attachment, dtype=dtype)
        return fragments_from_targets(*targets)

    def render_depth(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> np.ndarray:
        self._draw(grid, camera, T_wc)
        depth = np.empty(camera.shape, dtype=np.float32)
        self._fbo.read_into(depth, components=1, attachment=0, dtype="f4")
        return depth

    def release(self) -> None:
        if self._ctx is None:
            return
        self.activate()
        for res in (self._fbo, *self._targets, *self._buffers.values(), self._vao, self._program):
            if res is not None:
                res.release()
        self._program = self._vao = self._fbo = None
        self._buffers, self._targets = {}, []

    def _draw(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> None:
        """Upload the grid and run the full-screen pass into the framebuffer of the camera's size."""
        import moderngl

        T_wc = check_inputs(grid, camera, T_wc)
        self.activate()
        self._prepare(grid, camera)
        centre, matrix = grid_frame(grid, T_wc)
        lo, hi = march_box(grid)
        uniforms = {
            "grid_from_cam": matrix.T.astype("f4").tobytes(),  # GLSL matrices are column-major
            "cam_grid": tuple(centre),
            "pixel_to_ray": (1.0 / camera.fx, 1.0 / camera.fy, camera.cx, camera.cy),
            "box_lo": tuple(lo),
            "box_hi": tuple(hi),
            "slack": edge_slack(float(np.finfo(np.float32).eps)),
            "tiny": TINY,
            "cell_size": grid.cell_size,
            "nx": grid.nx,
            "ny": grid.ny,
        }
        set_uniforms(self._program, uniforms)
        self._buffers["heights"].write(np.ascontiguousarray(grid.heights, dtype=np.float32))
        self._buffers["colors"].write(np.ascontiguousarray(grid.colors, dtype=np.float32))
        self._buffers["heights"].bind_to_storage_buffer(0)
        self._buffers["colors"].bind_to_storage_buffer(1)
        self.ctx.enable_only(moderngl.NOTHING)
        self._fbo.use()
        self._vao.render(moderngl.TRIANGLES, vertices=3)

    def _prepare(self, grid: HeightMap, camera: PinholeCamera) -> None:
        """Create the program once, the storage buffers per grid size and the targets per image size."""
        ctx = self.ctx
        if self._program is None:
            self._program = ctx.program(
                vertex_shader=load_shader("fullscreen.vert"), fragment_shader=load_shader("raymarch.frag")
            )
            self._vao = ctx.vertex_array(self._program, [])
        n = grid.num_vertices
        if self._buffers.get("heights") is None or self._buffers["heights"].size != 4 * n:
            for buffer in self._buffers.values():
                buffer.release()
            self._buffers = {"heights": ctx.buffer(reserve=4 * n), "colors": ctx.buffer(reserve=12 * n)}
        size = (camera.width, camera.height)
        if self._fbo is None or self._fbo.size != size:
            for res in (self._fbo, *self._targets):
                if res is not None:
                    res.release()
            self._targets = [ctx.renderbuffer(size, components=n, dtype=dtype) for dtype, n in TARGETS]
            self._fbo = ctx.framebuffer(color_attachments=self._targets)
