"""The volumetric baseline: Open3D TSDF fusion, read out as a height map.

Depth images are fused into a truncated signed distance field (``open3d.t.geometry.VoxelBlockGrid``,
1 cm voxels by default, Open3D's truncation of 8 voxels), restricted to the blocks above the map's
footprint. :meth:`TSDFHeightMap.height_map` extracts the fused surface (zero-crossing points whose
voxels were seen at least ``weight_threshold`` times) and gives every grid vertex the highest
surface point whose nearest vertex it is, with that point's colour: the top of the surface, which
is what a height map holds.

Open3D's integration kernel takes the pixel under a voxel by truncating the voxel's projected
coordinate, i.e. it puts pixel centres at half-integers; the camera's OpenCV intrinsics (centres at
integers) are shifted by half a pixel for it (without the shift, exact synthetic depth of a flat floor
fuses 2.5 mm too low at 320x240).

The TSDF keeps no per-surface variance: every observed vertex gets the same information,
1 / ``height_sigma``^2 (default half a voxel, the scale of the zero-crossing interpolation error).

Open3D is an optional dependency (``pip install -e ".[baselines]"``): it is imported when a
:class:`TSDFHeightMap` is made, and its absence raises :class:`BaselineUnavailable`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..camera import PinholeCamera
from ..heightmap import HeightMap
from ..poses import invert_pose

_INSTALL_HINT = 'TSDFHeightMap needs Open3D: pip install -e ".[baselines]" (or pip install open3d)'


class BaselineUnavailable(ImportError):
    """A baseline's optional dependency is not installed (the message says how to install it)."""


@dataclass(frozen=True)
class TSDFConfig:
    """Parameters of :class:`TSDFHeightMap`.

    Attributes:
        voxel_size: TSDF voxel edge, metres.
        trunc_voxel_multiplier: truncation distance in voxels (Open3D's default).
        block_resolution: voxels per block edge.
        block_count: initial capacity of the block hash map (it grows when full).
        depth_max: depth beyond which pixels are not fused, metres.
        weight_threshold: least integration weight (frames) of a voxel on the extracted surface.
        height_sigma: standard deviation given to every observed height, metres; None: half a voxel.
        device: Open3D device, e.g. "CPU:0" or "CUDA:0".
    """

    voxel_size: float = 0.01
    trunc_voxel_multiplier: float = 8.0
    block_resolution: int = 8
    block_count: int = 10000
    depth_max: float = 10.0
    weight_threshold: float = 3.0
    height_sigma: float | None = None
    device: str = "CPU:0"

    def __post_init__(self) -> None:
        for name in ("voxel_size", "trunc_voxel_multiplier", "depth_max"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"TSDFConfig.{name} must be a positive number, got {value!r}")
        for name in ("block_resolution", "block_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TSDFConfig.{name} must be a positive integer, got {value!r}")
        if not (math.isfinite(self.weight_threshold) and self.weight_threshold >= 0):
            raise ValueError(
                f"TSDFConfig.weight_threshold must be a non-negative number, got {self.weight_threshold!r}"
            )
        if self.height_sigma is not None and not (math.isfinite(self.height_sigma) and self.height_sigma > 0):
            raise ValueError(f"TSDFConfig.height_sigma must be a positive length or None, got {self.height_sigma!r}")

    @property
    def sigma(self) -> float:
        """The standard deviation given to observed heights, metres."""
        return 0.5 * self.voxel_size if self.height_sigma is None else self.height_sigma


@dataclass
class TSDFStats:
    """What one :meth:`TSDFHeightMap.fuse` call did.

    Attributes:
        blocks: voxel blocks the frame was integrated into.
        ms: wall time of the call, milliseconds.
    """

    blocks: int = 0
    ms: float = math.nan


class TSDFHeightMap:
    """Open3D TSDF fusion over ``grid``'s footprint; :meth:`height_map` writes the surface into ``grid``.

    Raises:
        BaselineUnavailable: Open3D is not installed.
    """

    def __init__(self, grid: HeightMap, config: TSDFConfig | None = None) -> None:
        try:
            import open3d as o3d
            import open3d.core as o3c
        except ImportError as exc:
            raise BaselineUnavailable(_INSTALL_HINT) from exc
        self._o3d, self._o3c = o3d, o3c
        self.grid = grid
        self.config = TSDFConfig() if config is None else config
        self._device = o3c.Device(self.config.device)
        self._integrated = False  # any block integrated yet
        self.volume = o3d.t.geometry.VoxelBlockGrid(
            attr_names=("tsdf", "weight", "color"),
            attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
            attr_channels=((1), (1), (3)),
            voxel_size=self.config.voxel_size,
            block_resolution=self.config.block_resolution,
            block_count=self.config.block_count,
            device=self._device,
        )

    def fuse(
        self,
        camera: PinholeCamera,
        T_wc: np.ndarray,
        depth: np.ndarray,
        image: np.ndarray | None = None,
        sigma: np.ndarray | None = None,
    ) -> TSDFStats:
        """Integrate one depth image (and colour) into the TSDF.

        Args:
            camera: intrinsics of ``depth`` (used as an ideal pinhole).
            T_wc: 4x4 camera-to-world pose.
            depth: (H, W) z-depth, metres; NaN or <= 0 where there is no value.
            image: (H, W, 3) RGB uint8 registered to ``depth``; mid-grey when None.
            sigma: ignored (TSDF fusion weighs every measurement alike); accepted so that every
                baseline has the same signature.
        """
        del sigma
        start = time.perf_counter()
        o3d, o3c, cfg = self._o3d, self._o3c, self.config
        depth = np.asarray(depth, dtype=np.float32)
        if depth.shape != camera.shape:
            raise ValueError(f"depth of shape {depth.shape} does not match the camera's {camera.shape}")
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
        if image is None:
            color = np.full(depth.shape + (3,), 0.5, dtype=np.float32)
        else:
            if np.shape(image)[:2] != depth.shape:
                raise ValueError(f"image of shape {np.shape(image)[:2]} does not match depth {depth.shape}")
            color = np.asarray(image, dtype=np.float32) / 255.0
        depth_img = o3d.t.geometry.Image(o3c.Tensor(depth, device=self._device))
        color_img = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(color), device=self._device))
        K = camera.K
        K[:2, 2] += 0.5  # Open3D truncates a voxel's pixel coordinate: its pixel centres sit at +0.5
        K = o3c.Tensor(K, o3c.float64)
        extrinsic = o3c.Tensor(invert_pose(np.asarray(T_wc, dtype=np.float64)), o3c.float64)
        blocks = self.volume.compute_unique_block_coordinates(
            depth_img, K, extrinsic, 1.0, cfg.depth_max, cfg.trunc_voxel_multiplier
        )
        blocks = self._over_map(blocks)
        if len(blocks):
            self._integrated = True
            self.volume.integrate(
                blocks, depth_img, color_img, K, K, extrinsic, 1.0, cfg.depth_max, cfg.trunc_voxel_multiplier
            )
        return TSDFStats(blocks=int(len(blocks)), ms=1e3 * (time.perf_counter() - start))

    def height_map(self) -> HeightMap:
        """Write the fused surface into the grid (module docstring) and return the grid.

        Vertices with no surface point become unobserved with the prior information.
        """
        grid = self.grid
        if not self._integrated:  # Open3D raises on extracting a surface from an empty volume
            grid.observed[:] = False
            grid.information[:] = grid.prior_information
            return grid
        cloud = self.volume.extract_point_cloud(self.config.weight_threshold)
        points = cloud.point.positions.cpu().numpy().astype(np.float64)
        colors = cloud.point.colors.cpu().numpy() if len(points) else np.zeros((0, 3), np.float32)
        j = np.rint((points[:, 0] - grid.origin[0]) / grid.cell_size)
        i = np.rint((points[:, 1] - grid.origin[1]) / grid.cell_size)
        on_map = (i >= 0) & (i < grid.ny) & (j >= 0) & (j < grid.nx)
        cell = (i[on_map] * grid.nx + j[on_map]).astype(np.intp)
        z, colors = points[on_map, 2], colors[on_map]
        order = np.lexsort((z, cell))  # by cell, then height: a cell's highest point comes last
        last = np.r_[cell[order][1:] != cell[order][:-1], True] if len(order) else np.zeros(0, bool)
        top = order[last]
        top_cells = cell[top]
        grid.observed[:] = False
        grid.observed.reshape(-1)[top_cells] = True
        grid.heights.reshape(-1)[top_cells] = z[top]
        grid.colors.reshape(-1, 3)[top_cells] = np.clip(colors[top], 0.0, 1.0)
        grid.information[:] = grid.prior_information
        grid.information.reshape(-1)[top_cells] = 1.0 / self.config.sigma**2
        return grid

    def _over_map(self, blocks):
        """The block coordinates (Open3D (M, 3) int32 tensor) whose xy footprint overlaps the grid's."""
        size = self.config.voxel_size * self.config.block_resolution
        coords = blocks.cpu().numpy()
        x0, x1, y0, y1 = self.grid.extent
        half = 0.5 * self.grid.cell_size  # a vertex's cell reaches half a cell beyond it
        keep = (
            ((coords[:, 0] + 1) * size >= x0 - half)
            & (coords[:, 0] * size <= x1 + half)
            & ((coords[:, 1] + 1) * size >= y0 - half)
            & (coords[:, 1] * size <= y1 + half)
        )
        return self._o3c.Tensor(np.ascontiguousarray(coords[keep]), device=self._device)
