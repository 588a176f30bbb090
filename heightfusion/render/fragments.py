"""The per-pixel record every renderer returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Fragments:
    """What a renderer saw at each pixel of an (H, W) image.

    Empty pixels (no surface: sky, map out of view) hold NaN in every float field and -1 in
    ``vertex_ids`` and ``triangle_ids``. A backend that cannot produce a field sets it to None and
    says so in its docstring.

    Attributes:
        depth: (H, W) float32 z-depth along the camera's z axis, metres.
        triangle_ids: (H, W) int32 id of the visible triangle (see :mod:`heightfusion.heightmap`).
        vertex_ids: (H, W, 3) int32 flat ids of that triangle's vertices, in triangulation order.
        barycentric: (H, W, 3) float32 weights of those vertices at the hit point (XY plane).
        depth_grad: (H, W, 3) float32 d depth / d height of those vertices (dimensionless):
            b_k / (d_z - g . d_xy) with d the ray direction scaled to camera-z 1 and g the
            triangle's height gradient.
        color: (H, W, 3) float32 RGB in [0, 1] interpolated from the vertex colours.
        normal: (H, W, 3) float32 unit surface normal in the world frame (z >= 0: the upper side).

    Example:
        >>> import heightfusion as hf
        >>> grid = hf.HeightMap((-1.0, -1.0), 0.1, (21, 21))
        >>> camera = hf.PinholeCamera(64, 48, 50.0, 50.0, 31.5, 23.5)
        >>> frag = hf.make_renderer("raymarch").render(grid, camera, hf.look_at((0, 0, 1.0), (0, 0.01, 0)))
        >>> frag.vertex_ids.shape, bool(frag.mask.all())  # three vertices under every pixel
        ((48, 64, 3), True)
        >>> print(f"{frag.depth_grad[24, 32].sum():.3f}")  # raising all three vertices 1 m brings the floor 1 m nearer
        -1.000
    """

    depth: np.ndarray
    triangle_ids: np.ndarray | None = None
    vertex_ids: np.ndarray | None = None
    barycentric: np.ndarray | None = None
    depth_grad: np.ndarray | None = None
    color: np.ndarray | None = None
    normal: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: pixels that see the surface."""
        return np.isfinite(self.depth)

    @property
    def shape(self) -> tuple[int, int]:
        return self.depth.shape  # type: ignore[return-value]


def scatter_fragments(values: dict[str, np.ndarray], hit: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Per-pixel images (H, W, ...) of per-hit ``values`` (N, ...) at the flat pixel indices ``hit``.

    Pixels without a hit hold -1 in int32 fields and NaN in float ones, as :class:`Fragments` wants.
    """
    images = {}
    for name, value in values.items():
        empty = -1 if value.dtype == np.int32 else np.nan
        image = np.full((shape[0] * shape[1],) + value.shape[1:], empty, dtype=value.dtype)
        image[hit] = value
        images[name] = image.reshape(tuple(shape) + value.shape[1:])
    return images
