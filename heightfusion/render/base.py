"""The interface every rendering backend implements."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from ..camera import PinholeCamera
from ..heightmap import GRAY_WEIGHTS, HeightMap
from ..poses import validate_pose
from .fragments import Fragments


@dataclass(frozen=True)
class Capabilities:
    """What a backend's fragments offer beyond depth and ``depth_grad``; fusion, autograd and the shaded
    backend ask these instead of testing backend names.

    Attributes:
        mesh_triangles: each covered pixel sees one mesh triangle: ``triangle_ids``, ``barycentric``
            and three ``vertex_ids`` of that triangle (False: vertex slots of splats, -1 where unused).
        gl_fragments: the fragments are drawn into textures of the backend's OpenGL context
            (``fragment_textures``), where fusion sums its normal equations without reading them back.
        vertex_color: ``Fragments.color`` is the barycentric interpolation of the map's vertex colours
            (what :func:`heightfusion.autograd.render_image` differentiates).
        double_precision: the fragments are computed in float64 (tight ``torch.autograd.gradcheck``).

    Example:
        >>> import heightfusion as hf
        >>> hf.make_renderer("points").capabilities.vertex_color  # discs are blended, not interpolated
        False
    """

    mesh_triangles: bool
    gl_fragments: bool
    vertex_color: bool
    double_precision: bool


class Renderer(abc.ABC):
    """A differentiable renderer of height maps.

    ``render`` returns the full :class:`Fragments`; ``render_depth`` only the (H, W) depth, which
    backends can produce faster and which is the baseline the full render is measured against;
    ``render_depth_gray`` the depth and the grey value of observed surface (camera tracking's view).

    Example:
        >>> import heightfusion as hf
        >>> grid = hf.HeightMap((-0.5, -0.5), 0.05, (21, 21))
        >>> camera = hf.PinholeCamera(64, 48, 50.0, 50.0, 31.5, 23.5)
        >>> depth = hf.make_renderer("raymarch").render_depth(grid, camera, hf.look_at((0, 0, 1.0), (0, 0.01, 0)))
        >>> print(f"{depth[24, 32]:.3f} m")  # straight down onto the floor from 1 m
        1.000 m
    """

    #: Name under which :func:`heightfusion.make_renderer` finds the backend.
    name: str
    #: What the backend's fragments offer (a property where it depends on the instance's settings); the
    #: default claims nothing beyond depth, ``vertex_ids`` and ``depth_grad``.
    capabilities: Capabilities = Capabilities(mesh_triangles=False, gl_fragments=False, vertex_color=False,
                                              double_precision=False)

    @abc.abstractmethod
    def render(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> Fragments:
        """Fragments of ``grid`` seen by ``camera`` at pose ``T_wc`` (camera-to-world)."""

    @abc.abstractmethod
    def render_depth(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> np.ndarray:
        """(H, W) float32 z-depth of ``grid`` seen by ``camera`` at ``T_wc``; NaN where empty."""

    def render_depth_gray(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(depth, grey), both (H, W) float32: :meth:`render_depth`'s depth, and the grey value
        (:data:`heightfusion.heightmap.GRAY_WEIGHTS` of the vertex colours) of the surface at each pixel,
        NaN where no surface is seen or any vertex of its triangle is unobserved. What camera tracking
        aligns a frame to.

        This default takes the triangle under each pixel's surface point from the grid
        (:meth:`HeightMap.triangle_at`) and mixes its vertices' grey values by their barycentric weights;
        backends may draw it directly.
        """
        depth = self.render_depth(grid, camera, T_wc)
        T_wc = np.asarray(T_wc, dtype=np.float64)
        rows, cols = np.nonzero(np.isfinite(depth) & (depth > 0))
        points = camera.unproject(np.stack([cols, rows], axis=-1).astype(np.float64), depth[rows, cols])
        ids, weights, inside = grid.triangle_at(points @ T_wc[:2, :3].T + T_wc[:2, 3])
        keep = inside & grid.observed.ravel()[ids].all(axis=-1)
        rows, cols, ids, weights = rows[keep], cols[keep], ids[keep], weights[keep]
        gray = np.full(depth.shape, np.nan, dtype=np.float32)
        if len(ids):  # each vertex's grey value once (over the span of rows in view), not per pixel and vertex
            first, last = int(ids.min()), int(ids.max())
            vertex_gray = grid.colors.reshape(-1, 3)[first:last + 1] @ GRAY_WEIGHTS
            gray[rows, cols] = (vertex_gray[ids - first] * weights).sum(axis=-1)
        return depth, gray

    def release(self) -> None:
        """Free the backend's resources (GPU buffers); the renderer is unusable afterwards."""


def check_inputs(grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> np.ndarray:
    """Validate a render call's arguments; return ``T_wc`` as float64 4x4."""
    if not isinstance(grid, HeightMap):
        raise TypeError(f"grid must be a heightfusion.HeightMap, got {type(grid).__name__}")
    if not isinstance(camera, PinholeCamera):
        raise TypeError(f"camera must be a heightfusion.PinholeCamera, got {type(camera).__name__}")
    grid.check_finite()
    return validate_pose(T_wc, "T_wc")


def empty_fragments(camera: PinholeCamera) -> Fragments:
    """Fragments of an image that sees no surface."""
    H, W = camera.shape
    nan3 = np.full((H, W, 3), np.nan, dtype=np.float32)
    return Fragments(
        depth=np.full((H, W), np.nan, dtype=np.float32),
        triangle_ids=np.full((H, W), -1, dtype=np.int32),
        vertex_ids=np.full((H, W, 3), -1, dtype=np.int32),
        barycentric=nan3,
        depth_grad=nan3.copy(),
        color=nan3.copy(),
        normal=nan3.copy(),
    )
