"""Drawing a height map (and camera frustums) in 3D into a window's viewport.

The map is a shaded mesh whose vertex colours show one of :data:`MODES`, coloured as in the PNG pictures
of :mod:`heightfusion.visualize`. Everything is drawn in the map-local frame (world minus the map's
(origin, 0)), so that float32 on the GPU keeps millimetres on maps far from the world origin.
"""

from __future__ import annotations

import numpy as np

from .. import visualize
from ..camera import PinholeCamera
from ..heightmap import HeightMap
from ..render.glsl import load_shader
from ..render.projection import camera_from_map, clip_from_camera, depth_range
from .layout import Rect

#: View modes: vertex colours, height colour map, uncertainty (sigma) colour map.
MODES = ("color", "height", "uncertainty")
#: Towards the light, for the Lambert shading of the mesh (map-local = world directions).
LIGHT_DIRECTION = np.array([0.35, -0.45, 0.82]) / np.linalg.norm([0.35, -0.45, 0.82])
#: Clear colour of a 3D view (RGBA).
BACKGROUND = (0.07, 0.08, 0.1, 1.0)
_FLIP_Y = np.diag([1.0, -1.0, 1.0, 1.0])  # OpenCV rows run down, the screen's y up


def display_clip_from_map(grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray, near: float, far: float) -> np.ndarray:
    """4x4 float32 from the map-local frame to clip space of a viewport showing ``camera``'s image upright."""
    return (_FLIP_Y @ clip_from_camera(camera, near, far) @ camera_from_map(grid, T_wc)).astype(np.float32)


def view_depth_range(grid: HeightMap, T_wc: np.ndarray) -> tuple[float, float]:
    """(near, far) for viewing the map from ``T_wc`` with a standard depth buffer.

    ``far`` encloses the map's bounding box (:func:`heightfusion.render.projection.depth_range`); the
    near plane sits at 1e-4 of it, not the renderer's 1e-6, since this depth is hyperbolic.
    """
    enclosing = depth_range(grid, T_wc)
    far = enclosing[1] if enclosing is not None else 1e-2  # the map behind the view: nothing to draw
    return max(far * 1e-4, 1e-3), far


def observed_cell_triangles(triangles: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """The rows of ``triangles`` (a (ny, nx) map's :meth:`~heightfusion.heightmap.HeightMap.triangles`) of the
    cells with an observed corner: all that can show when unobserved surface is hidden.

    Drawing the others only to discard every fragment cost llvmpipe most of a view's time on a map
    seen in part (a third observed: 12 against 5 ms a 426x320 view).
    """
    corner = observed[:-1, :-1] | observed[1:, :-1] | observed[:-1, 1:] | observed[1:, 1:]
    cells = triangles.reshape(corner.size, 2, 3)
    return cells[corner.reshape(-1)].reshape(-1, 3)


class MapView:
    """The GPU mesh of one height map, redrawn from any viewpoint into a viewport.

    Args:
        ctx: the moderngl context (the window's).
    """

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.program = ctx.program(vertex_shader=load_shader("map_view.vert"), fragment_shader=load_shader("map_view.frag"))
        self.program["light_direction"].value = tuple(LIGHT_DIRECTION)
        self._shape: tuple[int, int] | None = None
        self._buffers: list = []
        self._vao = self._shown_vao = None
        self._shown_count = 0  # how many indices _shown_indices holds: the cells that can show
        self.grid: HeightMap | None = None

    def update(self, grid: HeightMap, mode: str = "color") -> None:
        """Upload ``grid``'s heights and its colours in view ``mode`` (one of :data:`MODES`)."""
        if grid.shape != self._shape:
            self._allocate(grid.shape)
        self.grid = grid
        self._heights.write(np.ascontiguousarray(grid.heights, dtype=np.float32))
        self._colors.write(np.ascontiguousarray(visualize.vertex_colors(grid, mode), dtype=np.float32) / 255.0)
        self._observed.write(grid.observed.astype(np.float32))
        shown = observed_cell_triangles(self._triangles, grid.observed)
        if shown.size:
            self._shown_indices.write(shown)
        self._shown_count = shown.size
        self.program["cell_size"].value = grid.cell_size
        self.program["nx"].value = grid.nx

    def _allocate(self, shape: tuple[int, int]) -> None:
        self._release()
        ny, nx = shape
        n = ny * nx
        self._heights = self.ctx.buffer(reserve=4 * n)
        self._colors = self.ctx.buffer(reserve=12 * n)
        self._observed = self.ctx.buffer(reserve=4 * n)
        self._triangles = HeightMap((0.0, 0.0), 1.0, shape).triangles().astype(np.int32)
        indices = self.ctx.buffer(self._triangles.tobytes())
        self._shown_indices = self.ctx.buffer(reserve=self._triangles.nbytes)
        self._buffers = [self._heights, self._colors, self._observed, indices, self._shown_indices]
        attributes = [(self._heights, "f4", "height"), (self._colors, "3f4", "color"), (self._observed, "f4", "observed")]
        self._vao = self.ctx.vertex_array(self.program, attributes, index_buffer=indices, index_element_size=4)
        self._shown_vao = self.ctx.vertex_array(self.program, attributes, index_buffer=self._shown_indices,
                                                index_element_size=4)
        self._shape = shape

    def draw(self, rect: Rect, cam_pose: np.ndarray, camera: PinholeCamera | None = None, hide_unobserved: bool = True) -> np.ndarray:
        """Draw the map seen from ``cam_pose`` (``T_wc``) into ``rect`` of the bound framebuffer.

        ``camera`` defaults to a camera filling ``rect``; a frame's own camera shows exactly its view
        (``rect`` should then have the camera's aspect). Returns the clip-from-map matrix used.
        """
        import moderngl

        if self.grid is None:
            raise RuntimeError("MapView.draw before update()")
        if camera is None:
            f = 0.5 * rect.height / np.tan(np.radians(25.0))
            camera = PinholeCamera(rect.width, rect.height, f, f, (rect.width - 1) / 2, (rect.height - 1) / 2)
        clip = display_clip_from_map(self.grid, camera, cam_pose, *view_depth_range(self.grid, cam_pose))
        self.program["clip_from_map"].write(clip.T.copy())
        self.program["hide_unobserved"].value = hide_unobserved
        self.ctx.viewport = rect.viewport
        self.ctx.scissor = rect.viewport
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.ctx.clear(*BACKGROUND, depth=1.0, viewport=rect.viewport)
        if hide_unobserved:
            if self._shown_count:
                self._shown_vao.render(moderngl.TRIANGLES, vertices=self._shown_count)
        else:
            self._vao.render(moderngl.TRIANGLES)
        self.ctx.disable(moderngl.DEPTH_TEST)
        self.ctx.scissor = None
        return clip

    def _release(self) -> None:
        for vao in (self._vao, self._shown_vao):
            if vao is not None:
                vao.release()
        for buffer in self._buffers:
            buffer.release()
        self._buffers, self._vao, self._shown_vao, self._shape = [], None, None, None

    def release(self) -> None:
        self._release()
        self.program.release()


class LineSet:
    """Coloured line segments (a camera frustum, a trajectory) drawn over a map view."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.program = ctx.program(vertex_shader=load_shader("lines.vert"), fragment_shader=load_shader("lines.frag"))

    def draw(self, clip_from_map: np.ndarray, segments: np.ndarray, colors: np.ndarray) -> None:
        """Draw (N, 2, 3) map-local segment end points with (N, 3) RGB colours in [0, 1]."""
        import moderngl

        if len(segments) == 0:
            return
        colors = np.repeat(np.asarray(colors, dtype=np.float32)[:, None], 2, axis=1)
        data = np.concatenate([np.asarray(segments, dtype=np.float32), colors], axis=2).reshape(-1, 6)
        buffer = self.ctx.buffer(data.tobytes())
        vao = self.ctx.vertex_array(self.program, [(buffer, "3f4 3f4", "position", "color")])
        self.program["clip_from_map"].write(np.asarray(clip_from_map, dtype=np.float32).T.copy())
        self.ctx.enable(moderngl.DEPTH_TEST)
        vao.render(moderngl.LINES)
        self.ctx.disable(moderngl.DEPTH_TEST)
        vao.release()
        buffer.release()

    def release(self) -> None:
        self.program.release()


def frustum_segments(grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray, depth: float) -> np.ndarray:
    """(8, 2, 3) map-local segments of a camera's frustum drawn to ``depth`` metres."""
    W, H = camera.width - 1, camera.height - 1
    corners_px = np.array([[0, 0], [W, 0], [W, H], [0, H]], dtype=np.float64)
    far = camera.unproject(corners_px, depth) @ T_wc[:3, :3].T + T_wc[:3, 3]
    centre = T_wc[:3, 3]
    offset = np.array([grid.origin[0], grid.origin[1], 0.0])
    segments = [(centre, far[k]) for k in range(4)] + [(far[k], far[(k + 1) % 4]) for k in range(4)]
    return np.array(segments) - offset
