"""The OpenGL rasterizer: one pass into five render targets, read back as the Fragments' arrays.

Per render: the tiles of the mesh inside the view frustum are chosen on the CPU
(:func:`~heightfusion.render.projection.visible_tiles`); the heights (and colours) of the rows they
span are uploaded, and one multi-draw rasterizes them. The index buffer holds the
triangles tile by tile, so that a run of kept tiles is one range of it; drawing only those gives
the fragments of drawing the whole mesh (the same triangles reach the image, in the same order), at
a cost that follows what the camera sees rather than the map's size. The vertex stage hands
per-triangle planes to the fragment stage as flat varyings; the fragment stage intersects the pixel's
ray with the visible triangle's plane (shaders/triangle_hit.glsl) and writes depth, barycentric
weights, d depth / d h, vertex ids, colour and normal. The CPU side only takes views of the arrays
read back. The targets are textures rather than renderbuffers (same speed), so that a compute pass
can also read them where they are: fusion (:mod:`heightfusion.fusion.gl_accumulate`) draws a leaner
pass for that (:meth:`GLRenderer.draw_fusion_fragments`), what its sums read in two targets rather
than five (at 640x480 a fifth less time per draw, and 160x120 a sixth). Choices are made for llvmpipe (Mesa's CPU rasterizer),
whose vertex stage and triangle set-up run on one thread: few varying slots, attributes rather than
buffer reads in the vertex stage.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np

from ..camera import PinholeCamera
from ..heightmap import GRAY_WEIGHTS, HeightMap
from ..poses import invert_pose
from . import context
from .base import Capabilities, Renderer, check_inputs, empty_fragments
from .fragments import Fragments
from .glsl import load_shader, set_uniforms
from .projection import (
    CULL_TILE,
    MapWindow,
    camera_from_map,
    clip_from_camera,
    depth_range,
    tile_counts,
    tile_window,
    visible_tiles,
)

_MAX_TRIANGLES = 1 << 30  # gl_PrimitiveID and the id target are int32
# (dtype, components) of the full pass's render targets, in shaders/fragments.frag's order.
TARGETS = (("f4", 4), ("f4", 4), ("i4", 4), ("f4", 4), ("f4", 4))
# ... and of the fusion pass's, in shaders/fusion_fragments.frag's order.
FUSION_TARGETS = (("f4", 4), ("i4", 4))
# ... and of the triangle-id pass's (shaders/triangle_ids.frag).
TRIANGLE_ID_TARGETS = (("i4", 1),)
# Passes that draw into textures: kind -> (fragment shader, the shader of its clearing draw, targets).
_TEXTURE_PASSES = {
    "full": ("fragments.frag", "clear_fragments.frag", TARGETS),
    "fusion": ("fusion_fragments.frag", "clear_fusion.frag", FUSION_TARGETS),
    "ids": ("triangle_ids.frag", "clear_triangle_ids.frag", TRIANGLE_ID_TARGETS),
    "depth_gray": ("depth_gray.frag", "clear_depth_gray.frag", (("f4", 2),)),
}
_DEPTH_SHADER = "depth.frag"  # the depth-only pass, into a renderbuffer
_COMMAND = 5  # uint32 fields of a DrawElementsIndirectCommand: count, instances, first index, base vertex, base instance
#: Share of an image's pixels whose walk in :meth:`GLRenderer.refresh_fusion_fragments` may end below the
#: surface (it rose further than the walk follows) before it rasterizes instead. Measured: 0 % median and
#: 0.03 % at the 90th percentile on real TUM fr1/rpy frames (100) and the synthetic floor (40, 160x120).
REFRESH_MAX_LOST = 0.0025
_REFRESH_GROUP = 16  # local_size_x and local_size_y of shaders/refresh_fusion_fragments.comp
_ALL_ONES_NAN = float(np.array(0xFFFFFFFF, dtype=np.uint32).view(np.float32))  # int32 -1 as float bits


def _target_texture(ctx, size: tuple[int, int], dtype: str, components: int):
    """A render target that compute shaders can also read (image load); never filtered."""
    import moderngl

    texture = ctx.texture(size, components, dtype=dtype)
    # An integer texture with LINEAR filtering is incomplete, and image loads from it return zero.
    texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
    return texture


def _clear_writes_bits(ctx) -> bool:
    """Whether glClear of float and int32 targets with the all-ones NaN gives NaN and -1."""
    float_target = _target_texture(ctx, (1, 1), "f4", 4)
    int_target = _target_texture(ctx, (1, 1), "i4", 4)
    fbo = ctx.framebuffer(color_attachments=[float_target, int_target])
    try:
        fbo.use()
        fbo.clear(*(_ALL_ONES_NAN,) * 4)
        floats = np.frombuffer(fbo.read(components=4, attachment=0, dtype="f4"), dtype=np.float32)
        ints = np.frombuffer(fbo.read(components=4, attachment=1, dtype="i4"), dtype=np.int32)
        return bool(np.isnan(floats).all() and (ints == -1).all())
    finally:
        for res in (fbo, float_target, int_target):
            res.release()


def _map_local_xy(grid: HeightMap) -> bytes:
    """Vertex positions minus the origin (metres, float32): they depend on the cell size only."""
    return (grid.vertex_xy() - grid.origin).astype(np.float32).tobytes()


def _tile_order(grid: HeightMap) -> tuple[np.ndarray, np.ndarray]:
    """(triangles, offsets): the triangles of ``grid`` tile by tile (tiles row by row, within a tile its cells
    row by row, each cell's two triangles in id order), and where each tile's indices start (one entry per
    tile in that order, plus the total): a run of tiles in that order is one range of the index buffer."""
    ty, tx = tile_counts(grid.shape, CULL_TILE)
    cells = np.full((ty * CULL_TILE, tx * CULL_TILE), -1, dtype=np.int64)
    cells[: grid.ny - 1, : grid.nx - 1] = np.arange((grid.ny - 1) * (grid.nx - 1)).reshape(grid.ny - 1, grid.nx - 1)
    by_tile = cells.reshape(ty, CULL_TILE, tx, CULL_TILE).transpose(0, 2, 1, 3).reshape(ty * tx, -1)
    per_tile = (by_tile >= 0).sum(axis=1)
    order = by_tile[by_tile >= 0]  # cell ids, row-major within each tile
    triangles = grid.triangles().reshape(-1, 2, 3)[order].reshape(-1, 3)
    offsets = np.concatenate([[0], np.cumsum(6 * per_tile)])  # 6 indices per cell
    return triangles, offsets


def _draw_commands(visible: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(n, 5) uint32 indirect draw commands, one per run of consecutive visible tiles (flat tile order)."""
    edges = np.diff(np.concatenate([[0], visible.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    commands = np.zeros((len(starts), _COMMAND), dtype=np.uint32)
    commands[:, 0] = offsets[stops] - offsets[starts]
    commands[:, 1] = 1
    commands[:, 2] = offsets[starts]
    return commands


@dataclass
class _Mesh:
    """GPU buffers of one grid shape: heights and colours are re-uploaded, positions follow ``cell_size``
    (metres), indices are fixed (tile order, :func:`_tile_order`; ``tile_offsets`` on the host), and
    ``commands`` holds the draw's indirect commands (room for one per tile); ``vaos`` one vertex array per
    pass kind (the texture passes' and "depth"); ``gray`` the grey values the "depth_gray" pass reads."""

    shape: tuple[int, int]
    cell_size: float
    xy: object
    heights: object
    colors: object
    gray: object
    indices: object
    commands: object
    tile_offsets: np.ndarray
    vaos: dict

    def release(self) -> None:
        for res in (*self.vaos.values(), self.indices, self.commands, self.xy, self.heights, self.colors, self.gray):
            res.release()


@dataclass
class _TexturePass:
    """The framebuffer of a pass that draws into textures (in its targets' order), and its clearing draw."""

    framebuffer: object
    textures: tuple
    depth_buffer: object
    clear_vao: object

    def release(self) -> None:
        for res in (self.framebuffer, self.clear_vao, self.depth_buffer, *self.textures):
            res.release()


@dataclass
class _Targets:
    """Framebuffers of one image size: ``passes`` by kind, and the depth-only pass's with its renderbuffers."""

    size: tuple[int, int]
    passes: dict
    depth: object
    buffers: list

    def release(self) -> None:
        for res in (*self.passes.values(), self.depth, *self.buffers):
            res.release()


class _ReadbackPool:
    """Hands out the previous read-back buffer again once no array handed out from it is alive.

    Fresh pages cost a page fault each (glibc gives freed multi-MiB blocks back to the system): reading
    full 640x480 fragments into new memory took 8 ms longer. Each ``take`` wraps the buffer in a new
    array whose base is a memoryview, where numpy stops collapsing the bases of views: every view of
    the result then keeps that array alive, and a weak reference to it tells when the caller has
    dropped them all (no reference counts read; where an object outlives its last use, a fresh buffer
    is taken).
    """

    def __init__(self) -> None:
        self._buffer: np.ndarray | None = None
        self._lease: weakref.ref | None = None  # the array last handed out

    def take(self, nbytes: int) -> np.ndarray:
        """A writable (nbytes,) uint8 array that shares no memory with a live earlier result."""
        held = self._lease is not None and self._lease() is not None
        if self._buffer is None or self._buffer.nbytes != nbytes or held:
            self._buffer = np.empty(nbytes, dtype=np.uint8)
        lease = np.frombuffer(memoryview(self._buffer), dtype=np.uint8)
        self._lease = weakref.ref(lease)
        return lease


def _draw_key(grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray, max_depth: float) -> tuple:
    """What a fusion draw drew: the grid (shape, cell size, origin), camera, pose and depth cut."""
    return (grid.shape, grid.cell_size, tuple(grid.origin), camera, T_wc.tobytes(), max_depth)


def _ray_uniforms(grid: HeightMap, camera: PinholeCamera, cam_from_map: np.ndarray) -> dict:
    """What the shaders that intersect pixel rays with the mesh share (shaders/triangle_hit.glsl, the refresh):
    the camera's rotation and centre in the map-local frame, its pixel-to-ray mapping, and the grid."""
    map_from_cam = invert_pose(cam_from_map)
    return {
        "map_from_cam": map_from_cam[:3, :3].T.astype("f4").tobytes(),
        "cam_center": tuple(map_from_cam[:3, 3]),
        "pixel_to_ray": (1.0 / camera.fx, 1.0 / camera.fy, camera.cx, camera.cy),
        "cell_size": grid.cell_size,
        "nx": grid.nx,
    }


def _provoking_last(triangles: np.ndarray) -> np.ndarray:
    """The triangles, each rotated so that its cell's first vertex v comes last.

    The last vertex is GL's provoking vertex, whose flat varyings the whole triangle sees;
    shaders/heightmap.vert relies on it being the cell's vertex (i, j) for both of the cell's triangles.
    """
    return np.ascontiguousarray(np.roll(triangles, -1, axis=1))


def fragments_from_targets(
    depth_bary: np.ndarray, grad: np.ndarray, ids: np.ndarray, color: np.ndarray, normal: np.ndarray
) -> Fragments:
    """Fragments as views of the five (H, W, 4) targets of shaders/fragments.frag (and raymarch.frag)."""
    return Fragments(
        depth=depth_bary[..., 0],
        triangle_ids=ids[..., 3],
        vertex_ids=ids[..., :3],
        barycentric=depth_bary[..., 1:],
        depth_grad=grad[..., :3],
        color=color[..., :3],
        normal=normal[..., :3],
    )


class GLRenderer(context.UsesContext, Renderer):
    """Rasterizes the height-map mesh with moderngl and the GLSL in ``shaders/``.

    Fills every :class:`Fragments` field. Renders the ideal pinhole image (no lens distortion).
    Each public method first makes the renderer's context current (:class:`~.context.UsesContext`).

    Args:
        ctx: a moderngl context; by default the shared one from :mod:`heightfusion.render.context`
            (headless EGL unless an app called ``use_context``), created on the first render.
        cull: draw only the tiles of the mesh inside the view frustum (the same fragments, module
            docstring); False draws every tile (for tests and benchmarks that compare the two).
    """

    name = "gl"
    capabilities = Capabilities(mesh_triangles=True, gl_fragments=True, vertex_color=True, double_precision=False)

    def __init__(self, ctx=None, cull: bool = True) -> None:
        self._ctx = ctx
        self.cull = cull
        self._drawn: MapWindow | None = None
        self._fusion_draw: tuple | None = None  # what the fusion targets were last drawn of (_draw_key)
        self._lost = None  # the refresh's count of walks that ended below the surface
        self._programs: dict[str, object] = {}
        self._mesh: _Mesh | None = None
        self._targets: _Targets | None = None
        self._bitwise_clear: bool | None = None
        self._full_pool = _ReadbackPool()
        self._depth_pool = _ReadbackPool()
        self._ids_pool = _ReadbackPool()
        self._depth_gray_pool = _ReadbackPool()

    # --- public API -----------------------------------------------------------------------------
    def render(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> Fragments:
        self.activate()
        if not self.draw_fragments(grid, camera, T_wc):
            return empty_fragments(camera)
        H, W = camera.shape
        target_bytes = H * W * 16  # every target holds 4 channels of 4 bytes
        buffer = self._full_pool.take(target_bytes * len(TARGETS))
        arrays = []
        for attachment, (dtype, n) in enumerate(TARGETS):
            out = buffer[attachment * target_bytes : (attachment + 1) * target_bytes].view(dtype).reshape(H, W, n)
            self._targets.passes["full"].framebuffer.read_into(  # type: ignore[union-attr]
                out, components=n, attachment=attachment, dtype=dtype)
            arrays.append(out)
        return fragments_from_targets(*arrays)

    def render_depth(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> np.ndarray:
        self.activate()
        T_wc = check_inputs(grid, camera, T_wc)
        depth = self._depth_pool.take(4 * camera.width * camera.height).view(np.float32).reshape(camera.shape)
        if not self._draw(grid, camera, T_wc, "depth", math.inf):
            depth.fill(np.nan)
            return depth
        self._targets.depth.read_into(depth, components=1, dtype="f4")  # type: ignore[union-attr]
        return depth

    def render_depth_gray(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`Renderer.render_depth_gray` drawn by a pass of its own (shaders/depth_gray.frag): one
        two-float target read back, where the default reads the depth and finds each pixel's triangle and
        its vertices on the CPU."""
        self.activate()
        T_wc = check_inputs(grid, camera, T_wc)
        values = self._depth_gray_pool.take(8 * camera.width * camera.height).view(np.float32)
        values = values.reshape(camera.height, camera.width, 2)
        if not self._draw(grid, camera, T_wc, "depth_gray", math.inf):
            values.fill(np.nan)
        else:
            self._targets.passes["depth_gray"].framebuffer.read_into(  # type: ignore[union-attr]
                values, components=2, dtype="f4")
        return values[..., 0], values[..., 1]

    def triangle_ids(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray,
                     max_depth: float = math.inf) -> np.ndarray:
        """(H, W) int64 id of the triangle each pixel sees (-1: none), surface deeper than ``max_depth``
        left out as in :meth:`draw_fragments`.

        Drawn by a pass of its own (shaders/triangle_ids.frag) into one int32 target: a sixteenth of the
        bytes the full pass writes and reads back per pixel.
        """
        self.activate()
        T_wc = check_inputs(grid, camera, T_wc)
        if not self._draw(grid, camera, T_wc, "ids", max_depth):
            return np.full(camera.shape, -1, dtype=np.int64)
        ids = self._ids_pool.take(4 * camera.width * camera.height).view(np.int32).reshape(camera.shape)
        self._targets.passes["ids"].framebuffer.read_into(ids, components=1, dtype="i4")  # type: ignore[union-attr]
        return ids.astype(np.int64)

    def draw_fragments(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray,
                       max_depth: float = math.inf) -> bool:
        """Draw the full fragments into :attr:`fragment_textures` without reading them back.

        Surface deeper than ``max_depth`` (z-depth, metres) is left out, as if it were not there: a pixel
        shows the nearest surface if that lies within ``max_depth``, else nothing; tiles beyond it are
        not drawn at all. Returns False, drawing nothing, when the map is entirely behind the camera
        (then the textures hold whatever an earlier draw left).
        """
        self.activate()
        T_wc = check_inputs(grid, camera, T_wc)
        return self._draw(grid, camera, T_wc, "full", max_depth)

    def draw_fusion_fragments(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray,
                              max_depth: float = math.inf) -> bool:
        """:meth:`draw_fragments` of what fusion's sums read, into :attr:`fusion_textures`, of the surface's
        upward faces alone.

        From a camera above the surface a ray's first hit is where it passes from above the surface to
        below it, on a triangle whose upward side faces the camera, so back faces are culled: the same
        fragments, and llvmpipe, which sets up every triangle on one thread, has about an eighth fewer to
        set up on real scenes (the backs of slopes facing away; TUM fr1). (Upward faces wind counter-clockwise
        seen from above, and clockwise in GL's window coordinates, whose y runs with the image rows:
        render/projection.py.) A camera below the surface at its own position (inside the ground) sees
        none of the undersides that :meth:`draw_fragments` shows it.
        """
        self.activate()
        T_wc = check_inputs(grid, camera, T_wc)
        return self._draw(grid, camera, T_wc, "fusion", max_depth)

    def refresh_fusion_fragments(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray,
                                 max_depth: float = math.inf, max_lost: float = REFRESH_MAX_LOST) -> bool:
        """:meth:`draw_fusion_fragments` again after ``grid``'s heights moved a little, without rasterizing.

        A compute pass (shaders/refresh_fusion_fragments.comp) walks each pixel's ray over the triangles
        along its path, from the one it saw at the last fusion draw to where it crosses the surface from
        above (over a ridge it now clears, on to what lies behind). Where the heights moved by little this
        gives the rasterizer's fragments at a cost per pixel, not per triangle (at 160x120 about 1.5 ms
        against 10-15 ms for tens of thousands of triangles on llvmpipe). It cannot see a
        surface that rose in front of a ray away from its crossing; a pixel whose walk leaves the drawn
        window or goes on too long becomes "no surface". Draws in full (:meth:`draw_fusion_fragments`) when the
        last draw was not a fusion draw of this grid shape, camera and pose, and when the walks of more
        than ``max_lost`` of the image's pixels ended below the surface (it rose further than they follow).
        """
        self.activate()
        T_wc = check_inputs(grid, camera, T_wc)
        if self._fusion_draw != _draw_key(grid, camera, T_wc, max_depth):
            return self._draw(grid, camera, T_wc, "fusion", max_depth)
        if self._drawn is None:
            return True
        import moderngl

        self._upload(self._mesh, grid, self._drawn, "refresh")
        program = self._program("refresh")
        for unit, texture in enumerate(self._targets.passes["fusion"].textures):  # type: ignore[union-attr]
            texture.bind_to_image(unit, read=True, write=True)
        self._mesh.heights.bind_to_storage_buffer(0)  # type: ignore[union-attr]
        if self._lost is None:
            self._lost = self.ctx.buffer(reserve=4)
        self._lost.clear()
        self._lost.bind_to_storage_buffer(1)
        window = self._drawn
        set_uniforms(program, {
            **_ray_uniforms(grid, camera, camera_from_map(grid, T_wc)),
            "image_size": (camera.width, camera.height),
            "cells": (window.col0, window.row0, window.col1 - 1, window.row1 - 1),
            "max_depth": max_depth,
        })
        program.run(group_x=-(-camera.width // _REFRESH_GROUP), group_y=-(-camera.height // _REFRESH_GROUP))
        self.ctx.memory_barrier(moderngl.SHADER_IMAGE_ACCESS_BARRIER_BIT | moderngl.BUFFER_UPDATE_BARRIER_BIT)
        lost = int(np.frombuffer(self._lost.read(), dtype=np.uint32)[0])
        if lost > max_lost * camera.width * camera.height:
            return self._draw(grid, camera, T_wc, "fusion", max_depth)
        return True

    @property
    def drawn_window(self) -> MapWindow | None:
        """The vertices of the tiles the last draw drew (every fragment's vertices lie inside it); None when
        it drew none."""
        return self._drawn

    @property
    def fragment_textures(self) -> tuple:
        """The full pass's five (W, H) textures, as in shaders/fragments.frag: (depth, b0, b1, b2),
        (d depth / d h0..h2, den), (vertex ids v0..v2, triangle id) int32, (r, g, b, 1), (normal, 0).

        Texel (u, v) is pixel (u, v) of the camera (OpenCV order). Valid after :meth:`draw_fragments`
        returned True, until the next draw.
        """
        return self._textures("full")

    @property
    def fusion_textures(self) -> tuple:
        """The fusion pass's two (W, H) textures, as in shaders/fusion_fragments.frag: (depth, d depth / d h0..h2)
        and (vertex ids v0..v2, the world normal's z as float bits) int32; valid as :attr:`fragment_textures`
        are, after :meth:`draw_fusion_fragments`."""
        return self._textures("fusion")

    def _textures(self, kind: str) -> tuple:
        if self._targets is None:
            raise RuntimeError("no fragments drawn yet: draw them first")
        return self._targets.passes[kind].textures

    def release(self) -> None:
        if self._ctx is None:
            return
        self.activate()
        for res in (self._mesh, self._targets, self._lost, *self._programs.values()):
            if res is not None:
                res.release()
        self._mesh, self._targets, self._lost, self._programs = None, None, None, {}

    # --- internals ------------------------------------------------------------------------------
    def _draw(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray, kind: str, max_depth: float) -> bool:
        """Draw the pass ``kind`` ("full", "fusion", "ids", "depth_gray", "depth"); False if the map is entirely behind the camera."""
        import moderngl

        self._drawn = None
        self._fusion_draw = _draw_key(grid, camera, T_wc, max_depth) if kind == "fusion" else None
        height_range = (float(grid.heights.min()), float(grid.heights.max()))
        ranges = depth_range(grid, T_wc, height_range)
        if ranges is None:
            return False
        near, far = ranges
        mesh = self._mesh_for(grid)
        targets = self._targets_for(camera)
        ty, tx = tile_counts(grid.shape)
        if self.cull:
            visible = visible_tiles(grid, camera, T_wc, height_range, max_depth)
        else:
            visible = np.ones((ty, tx), dtype=bool)
        commands = _draw_commands(visible.reshape(-1), mesh.tile_offsets)
        if len(commands):
            self._drawn = tile_window(MapWindow.of_mask(visible).slices, grid.shape)
            mesh.commands.write(commands)
            self._upload(mesh, grid, self._drawn, kind)
        if kind == "full":
            mesh.colors.bind_to_storage_buffer(2)  # fragments.frag reads the hit's vertex colours
        elif kind == "depth_gray":
            mesh.gray.bind_to_storage_buffer(2)

        cam_from_map = camera_from_map(grid, T_wc)
        program = self._program(kind)
        uniforms = {
            **_ray_uniforms(grid, camera, cam_from_map),
            # No far plane: float32 rounding clipped vertices up to ~0.1 m in front of one just behind
            # the map. Clip z - w is then -2 near at every depth; the depth test uses z / far.
            "clip_from_map": (clip_from_camera(camera, near, np.inf) @ cam_from_map).T.astype("f4").tobytes(),
            "depth_scale": 1.0 / far,
            "max_depth": max_depth,
        }
        set_uniforms(program, uniforms)

        self.ctx.enable_only(moderngl.DEPTH_TEST)
        if kind == "depth":
            targets.depth.use()
            targets.depth.clear(np.nan, depth=1.0)
        else:
            self._clear_fragments(targets.passes[kind])
        if len(commands):
            cull = kind == "fusion"
            if cull:  # see draw_fusion_fragments; the context's state is left as found
                self.ctx.front_face = "cw"
                self.ctx.enable(moderngl.CULL_FACE)
            mesh.vaos[kind].render_indirect(mesh.commands, moderngl.TRIANGLES, count=len(commands))
            if cull:
                self.ctx.disable(moderngl.CULL_FACE)
                self.ctx.front_face = "ccw"
        return True

    def _upload(self, mesh: _Mesh, grid: HeightMap, window: MapWindow, kind: str) -> None:
        """Upload the heights of the rows of ``window`` (every drawn cell lies in it) and what pass ``kind``
        reads of them: the colours ("full"), the grey values, negative where unobserved ("depth_gray")."""
        rows = slice(window.row0, window.row1)
        offset = window.row0 * grid.nx  # the rows of a C-order (ny, nx) array are one range of it
        mesh.heights.write(np.ascontiguousarray(grid.heights[rows], dtype=np.float32), offset=4 * offset)
        if kind == "full":
            mesh.colors.write(np.ascontiguousarray(grid.colors[rows], dtype=np.float32), offset=12 * offset)
        elif kind == "depth_gray":
            gray = np.where(grid.observed[rows], grid.colors[rows] @ GRAY_WEIGHTS, np.float32(-1.0))
            mesh.gray.write(np.ascontiguousarray(gray, dtype=np.float32), offset=4 * offset)

    def _clear_fragments(self, targets: _TexturePass) -> None:
        """Reset every target to "no surface": NaN floats, -1 ids, far depth.

        glClear with the all-ones bit pattern (a NaN) does it in one call where the driver writes the
        clear value's bits into integer targets (Mesa does); the GL spec leaves integer targets
        undefined under glClear, so a probe decides once, and a full-screen draw is the fallback.
        """
        import moderngl

        if self._bitwise_clear is None:
            self._bitwise_clear = _clear_writes_bits(self.ctx)
        targets.framebuffer.use()
        if self._bitwise_clear:
            targets.framebuffer.clear(*(_ALL_ONES_NAN,) * 4, depth=1.0)
        else:
            self.ctx.depth_func = "1"
            targets.clear_vao.render(moderngl.TRIANGLES, vertices=3)
            self.ctx.depth_func = "<"

    def _program(self, kind: str):
        """The program of a pass ("full", "fusion", "ids", "depth_gray", "depth"), of a texture pass's clearing
        draw ("clear_" and the pass), or the compute program of :meth:`refresh_fusion_fragments` ("refresh")."""
        if kind in self._programs:
            return self._programs[kind]
        if kind == "refresh":
            self._programs[kind] = self.ctx.compute_shader(load_shader("refresh_fusion_fragments.comp"))
            return self._programs[kind]
        if kind.startswith("clear_"):
            vert, frag = "fullscreen.vert", _TEXTURE_PASSES[kind.removeprefix("clear_")][1]
        else:
            vert, frag = "heightmap.vert", _TEXTURE_PASSES[kind][0] if kind in _TEXTURE_PASSES else _DEPTH_SHADER
        self._programs[kind] = self.ctx.program(vertex_shader=load_shader(vert), fragment_shader=load_shader(frag))
        return self._programs[kind]

    def _mesh_for(self, grid: HeightMap) -> _Mesh:
        if self._mesh is not None and self._mesh.shape == grid.shape:
            if self._mesh.cell_size != grid.cell_size:  # same indices, other positions
                self._mesh.xy.write(_map_local_xy(grid))
                self._mesh.cell_size = grid.cell_size
            return self._mesh
        if grid.num_triangles >= _MAX_TRIANGLES:
            raise ValueError(f"HeightMap of shape {grid.shape} is too large for the GL backend")
        if self._mesh is not None:
            self._mesh.release()
        ctx = self.ctx
        n = grid.num_vertices
        xy = ctx.buffer(_map_local_xy(grid))
        # nx + 1 floats of padding: the last vertices' neighbour attributes read past the grid (unused).
        heights = ctx.buffer(reserve=4 * (n + grid.nx + 1))
        colors = ctx.buffer(reserve=12 * n)
        gray = ctx.buffer(reserve=4 * n)
        triangles, tile_offsets = _tile_order(grid)
        indices = ctx.buffer(_provoking_last(triangles).tobytes())
        commands = ctx.buffer(reserve=4 * _COMMAND * len(tile_offsets))
        geometry = [(xy, "2f", "in_xy"), (heights, "1f", "in_height")]
        vaos = {}
        for kind in (*_TEXTURE_PASSES, "depth"):
            program = self._program(kind)
            vao = ctx.vertex_array(program, geometry, index_buffer=indices, index_element_size=4)
            # The cell's other heights: the same buffer, read 1, nx and nx + 1 vertices on.
            for name, step in (("in_right", 1), ("in_below", grid.nx), ("in_diagonal", grid.nx + 1)):
                vao.bind(program[name].location, "f", heights, "1f", offset=4 * step)
            vaos[kind] = vao
        self._mesh = _Mesh(grid.shape, grid.cell_size, xy, heights, colors, gray, indices, commands, tile_offsets, vaos)
        return self._mesh

    def _targets_for(self, camera: PinholeCamera) -> _Targets:
        size = (camera.width, camera.height)
        if self._targets is not None and self._targets.size == size:
            return self._targets
        if self._targets is not None:
            self._targets.release()
        ctx = self.ctx
        passes = {}
        for kind, (_, _, targets) in _TEXTURE_PASSES.items():
            textures = tuple(_target_texture(ctx, size, dtype, n) for dtype, n in targets)
            depth_buffer = ctx.depth_renderbuffer(size)
            framebuffer = ctx.framebuffer(color_attachments=textures, depth_attachment=depth_buffer)
            passes[kind] = _TexturePass(framebuffer, textures, depth_buffer,
                                        ctx.vertex_array(self._program("clear_" + kind), []))
        depth_color = ctx.renderbuffer(size, components=1, dtype="f4")
        depth_buffer = ctx.depth_renderbuffer(size)
        depth = ctx.framebuffer(color_attachments=[depth_color], depth_attachment=depth_buffer)
        self._targets = _Targets(size, passes, depth, [depth_color, depth_buffer])
        return self._targets
