"""The robotics baseline: a per-cell 1-D Kalman elevation map (Fankhauser et al. 2014/2018).

This is the raw map of ANYbotics' ``elevation_mapping`` (``ElevationMap::add``), with the per-frame
batching of its GPU successor ``elevation_mapping_cupy`` so that it vectorises:

- Every depth pixel becomes a world point; its height variance comes from the sensor model,
  the z-depth sigma propagated along the pixel's ray plus the lateral noise of the Kinect model
  (``StructuredLightSensorProcessor``) propagated through the camera's rotation into world z.
- A point goes to the cell of its nearest grid vertex. All points of a frame are gated against the
  cell as it stood before the frame (Mahalanobis distance |z - h| / sigma_cell against 2.5), as
  ``elevation_mapping_cupy`` does, so the result does not depend on the order of the points.
- Inliers of a cell make one measurement per frame: their inverse-variance mean, with the variance
  of a single point (``elevation_mapping_cupy``'s per-frame averaging: the points of one depth
  image share correlated errors). One scalar Kalman update fuses it into the cell.
- Out-of-gate points follow ``elevation_mapping``: in a cell updated within ``scanning_duration``
  (or by this frame's inliers), a point lower than the cell is ignored and a point higher than the
  gate allows resets the cell to the higher surface (the highest point and the frame's points
  within the gate of it); in a stale cell each out-of-gate point adds ``multi_height_noise`` to
  the variance, so that a changed scene is taken up after a few frames.
- Variance bounds (``clean()``): below ``min_variance`` it is clamped; above ``max_variance`` the
  cell is forgotten (unobserved) and restarts from the next measurement.
- A cell that was never measured takes the inverse-variance mean of its first frame's points.

Left out: the pose-uncertainty propagation (``RobotMotionMapUpdater``; poses are given here) and the
fused map's horizontal-uncertainty smoothing (an output post-process); the map is the raw map.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..camera import PinholeCamera
from ..depth.sensor import SensorNoise
from ..heightmap import HeightMap

#: Clock step between :meth:`KalmanElevationMap.fuse` calls without a timestamp, seconds (30 Hz RGB-D).
DEFAULT_FRAME_PERIOD = 1.0 / 30.0


@dataclass(frozen=True)
class KalmanConfig:
    """Parameters of :class:`KalmanElevationMap`; defaults are ``elevation_mapping``'s.

    Attributes:
        mahalanobis_threshold: gate on |z - h| / sigma_cell.
        min_variance: floor of a cell's height variance, m^2.
        max_variance: a cell whose variance exceeds this is forgotten, m^2.
        multi_height_noise: variance added to a stale cell per out-of-gate point, m^2.
        scanning_duration: a cell updated less than this long ago counts as part of the current
            scan (higher points reset it, lower points are ignored), seconds.
        lateral_factor: lateral noise sigma per metre of depth (Nguyen et al. 2012 Kinect model).
        noise: depth sigma model used when :meth:`KalmanElevationMap.fuse` gets no ``sigma``.
    """

    mahalanobis_threshold: float = 2.5
    min_variance: float = 0.003**2
    max_variance: float = 0.03**2
    multi_height_noise: float = 0.003**2
    scanning_duration: float = 1.0
    lateral_factor: float = 0.001376915
    noise: SensorNoise = field(default_factory=SensorNoise)

    def __post_init__(self) -> None:
        for name in ("mahalanobis_threshold", "min_variance", "max_variance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"KalmanConfig.{name} must be a positive number, got {value!r}")
        for name in ("multi_height_noise", "scanning_duration", "lateral_factor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"KalmanConfig.{name} must be a non-negative number, got {value!r}")
        if self.max_variance <= self.min_variance:
            raise ValueError(
                f"KalmanConfig.max_variance ({self.max_variance!r}) must exceed min_variance ({self.min_variance!r})"
            )


@dataclass
class KalmanStats:
    """What one :meth:`KalmanElevationMap.fuse` call did (counts of points or cells).

    Attributes:
        points: pixels with a valid depth whose point lands on the map.
        fused: points that entered a cell's measurement (inliers, new cells, higher surfaces).
        ignored_lower: points below a recently updated cell's gate, dropped.
        multi_height: out-of-gate points of stale cells, each adding ``multi_height_noise``.
        new_cells: cells measured for the first time (or again after being forgotten).
        higher_resets: cells reset to a higher surface.
        forgotten: cells whose variance passed ``max_variance``, now unobserved.
        ms: wall time of the call, milliseconds.
    """

    points: int = 0
    fused: int = 0
    ignored_lower: int = 0
    multi_height: int = 0
    new_cells: int = 0
    higher_resets: int = 0
    forgotten: int = 0
    ms: float = math.nan


class KalmanElevationMap:
    """Fuses depth images into ``grid`` cell by cell with a 1-D Kalman filter (module docstring).

    The grid's ``heights``, ``information`` (1 / variance), ``colors`` and ``observed`` are updated in
    place after every frame; vertices already observed in ``grid`` start from their height and
    information. Forgotten and never-measured cells keep the grid's prior information.
    """

    def __init__(self, grid: HeightMap, config: KalmanConfig | None = None) -> None:
        self.grid = grid
        self.config = KalmanConfig() if config is None else config
        self._height = grid.heights.astype(np.float64).ravel()
        known = grid.observed.ravel() & (grid.information.ravel() > 0)
        self._variance = np.full(grid.num_vertices, np.inf)
        self._variance[known] = 1.0 / grid.information.ravel()[known].astype(np.float64)
        self._last_update = np.full(grid.num_vertices, -np.inf)
        self._clock = 0.0

    def fuse(
        self,
        camera: PinholeCamera,
        T_wc: np.ndarray,
        depth: np.ndarray,
        image: np.ndarray | None = None,
        sigma: np.ndarray | None = None,
        timestamp: float | None = None,
    ) -> KalmanStats:
        """Fuse one depth image.

        Args:
            camera: intrinsics of ``depth`` (used as an ideal pinhole).
            T_wc: 4x4 camera-to-world pose.
            depth: (H, W) z-depth, metres; NaN or <= 0 where there is no value.
            image: (H, W, 3) RGB uint8 registered to ``depth``; cells take the mean colour of the
                points they fused (the latest frame's colour, as in ``elevation_mapping``).
            sigma: (H, W) depth sigma, metres; default ``config.noise``.
            timestamp: seconds; default the previous call's plus :data:`DEFAULT_FRAME_PERIOD`.
        """
        start = time.perf_counter()
        self._clock = self._clock + DEFAULT_FRAME_PERIOD if timestamp is None else float(timestamp)
        cell, z, var, rgb = self._points(camera, T_wc, depth, image, sigma)
        stats = self._update(cell, z, var, rgb, self._clock)
        stats.ms = 1e3 * (time.perf_counter() - start)
        return stats

    # --- measurements -----------------------------------------------------------------------------
    def _points(
        self,
        camera: PinholeCamera,
        T_wc: np.ndarray,
        depth: np.ndarray,
        image: np.ndarray | None,
        sigma: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Cell id, height, height variance (m^2) and RGB (uint8, or None) of the points on the map."""
        depth = np.asarray(depth)
        if depth.shape != camera.shape:
            raise ValueError(f"depth of shape {depth.shape} does not match the camera's {camera.shape}")
        T_wc = np.asarray(T_wc, dtype=np.float64)
        if T_wc.shape != (4, 4):
            raise ValueError(f"T_wc must be 4x4, got shape {T_wc.shape}")
        valid = np.isfinite(depth) & (depth > 0)
        if sigma is not None:
            sigma = np.asarray(sigma)
            if sigma.shape != depth.shape:
                raise ValueError(f"sigma of shape {sigma.shape} does not match depth {depth.shape}")
            valid &= np.isfinite(sigma) & (sigma > 0)
        pixels = np.flatnonzero(valid)
        d = depth.reshape(-1)[pixels].astype(np.float32)
        rx, ry = (r.reshape(-1)[pixels] for r in _pixel_rays(camera))
        # float32 geometry (sub-micrometre at these ranges) and one component at a time: the per-frame
        # cost is memory traffic over the ~300k points of a VGA depth image.
        R, t = T_wc[:3, :3].astype(np.float32), T_wc[:3, 3].astype(np.float32)
        x = d * (R[0, 0] * rx + R[0, 1] * ry + R[0, 2]) + t[0]
        y = d * (R[1, 0] * rx + R[1, 1] * ry + R[1, 2]) + t[1]
        grid = self.grid
        j = np.rint((x - np.float32(grid.origin[0])) / np.float32(grid.cell_size))
        i = np.rint((y - np.float32(grid.origin[1])) / np.float32(grid.cell_size))
        on_map = (i >= 0) & (i < grid.ny) & (j >= 0) & (j < grid.nx)
        cell = (i[on_map] * grid.nx + j[on_map]).astype(np.intp)
        pixels, d, rx, ry = pixels[on_map], d[on_map], rx[on_map], ry[on_map]
        ray_z = R[2, 0] * rx + R[2, 1] * ry + R[2, 2]
        z = d * ray_z + t[2]
        s = self.config.noise.sigma(d) if sigma is None else sigma.reshape(-1)[pixels].astype(np.float32)
        # A z-depth error moves the point along its ray, whose world z is ray_z; the lateral noise
        # acts along the camera's x and y axes, whose world z are R[2, 0] and R[2, 1].
        lateral = np.float32(self.config.lateral_factor) * d
        var = (s * ray_z) ** 2 + lateral**2 * (R[2, 0] ** 2 + R[2, 1] ** 2)
        rgb = None
        if image is not None:
            image = np.asarray(image)
            if image.shape[:2] != depth.shape:
                raise ValueError(f"image of shape {image.shape[:2]} does not match depth {depth.shape}")
            rgb = image.reshape(-1, image.shape[-1])[pixels, :3]
        return cell, z, var, rgb

    # --- the filter -------------------------------------------------------------------------------
    def _update(
        self, cell: np.ndarray, z: np.ndarray, var: np.ndarray, rgb: np.ndarray | None, now: float
    ) -> KalmanStats:
        """Gate, reset, inflate and fuse one frame's points into the cell state; write the grid."""
        cfg = self.config
        n = self.grid.num_vertices
        stats = KalmanStats(points=int(len(z)))
        h_cell, var_cell = self._height[cell], self._variance[cell]
        dz = z - h_cell
        gate = cfg.mahalanobis_threshold * np.sqrt(var_cell)  # inf for unknown cells: all inliers
        inlier = np.abs(dz) <= gate
        above, below = dz > gate, dz < -gate
        has_inlier = np.bincount(cell[inlier], minlength=n) > 0
        recent = (now - self._last_update[cell] <= cfg.scanning_duration) | has_inlier[cell]

        reset = np.zeros(n, dtype=bool)
        reset[cell[above & recent]] = True
        top = self._top_points(cell, z, var, reset[cell])
        ignored = below & recent
        stale_out = (above | below) & ~recent
        stats.ignored_lower = int(np.count_nonzero(ignored & ~reset[cell]))
        stats.multi_height = int(np.count_nonzero(stale_out))
        inflated = np.bincount(cell[stale_out], minlength=n) * cfg.multi_height_noise

        take = (inlier & ~reset[cell]) | top
        stats.fused = int(np.count_nonzero(take))
        c = cell[take]
        weight = 1.0 / var[take]
        count = np.bincount(c, minlength=n).astype(np.float64)
        sum_w = np.bincount(c, weights=weight, minlength=n)
        sum_wz = np.bincount(c, weights=weight * z[take], minlength=n)

        measured = np.flatnonzero(count)
        touched = np.flatnonzero((count > 0) | (inflated > 0))
        stats.new_cells = int(np.count_nonzero(~np.isfinite(self._variance[measured])))
        stats.higher_resets = int(np.count_nonzero(reset))

        self._variance[touched] += inflated[touched]
        prior_info = 1.0 / self._variance[measured]  # 0 for unknown cells
        prior_info[reset[measured]] = 0.0  # a reset cell takes the higher surface as it is
        # One measurement per cell and frame: mean z = sum_wz / sum_w with the variance of one point,
        # count / sum_w; so its information is sum_w / count and information * mean = sum_wz / count.
        meas_info = sum_w[measured] / count[measured]
        info = prior_info + meas_info
        self._height[measured] = (prior_info * self._height[measured] + sum_wz[measured] / count[measured]) / info
        self._variance[measured] = 1.0 / info
        # As in elevation_mapping, only a fusion stamps the cell: a reset to a higher surface does not,
        # so lower points are ignored for at most scanning_duration after the last fusion.
        self._last_update[measured[~reset[measured]]] = now

        var_t = np.maximum(self._variance[touched], cfg.min_variance)
        forget = var_t > cfg.max_variance
        var_t[forget] = np.inf
        self._variance[touched] = var_t
        stats.forgotten = int(np.count_nonzero(forget))
        self._write_grid(touched, measured, c, rgb[take] if rgb is not None else None, count)
        return stats

    def _top_points(self, cell: np.ndarray, z: np.ndarray, var: np.ndarray, in_reset: np.ndarray) -> np.ndarray:
        """Mask of the points of reset cells within the gate below their cell's highest point of the frame."""
        top = np.zeros(len(z), dtype=bool)
        if not in_reset.any():
            return top
        idx = np.flatnonzero(in_reset)
        highest = np.full(self.grid.num_vertices, -np.inf, dtype=z.dtype)  # same dtype: ufunc.at fast path
        np.maximum.at(highest, cell[idx], z[idx])
        gate = self.config.mahalanobis_threshold * np.sqrt(var[idx])
        top[idx] = highest[cell[idx]] - z[idx] <= gate
        return top

    def _write_grid(
        self, touched: np.ndarray, measured: np.ndarray, cell: np.ndarray, rgb: np.ndarray | None, count: np.ndarray
    ) -> None:
        """Copy the touched cells' state into the grid; measured cells take the mean colour of their points."""
        grid = self.grid
        var = self._variance[touched]
        known = np.isfinite(var)
        grid.heights.reshape(-1)[touched] = self._height[touched]
        grid.information.reshape(-1)[touched] = np.where(known, 1.0 / var, grid.prior_information)
        grid.observed.reshape(-1)[touched] = known
        if rgb is not None:
            colors = grid.colors.reshape(-1, 3)
            for k in range(3):
                sums = np.bincount(cell, weights=rgb[:, k], minlength=len(count))
                colors[measured, k] = sums[measured] / (255.0 * count[measured])


@functools.lru_cache(maxsize=4)
def _pixel_rays(camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) x and y of the camera rays with z = 1 (cached: the camera rarely changes within a run)."""
    rays = camera.pixel_rays()
    rx, ry = (np.ascontiguousarray(rays[..., k], dtype=np.float32) for k in (0, 1))
    rx.setflags(write=False)
    ry.setflags(write=False)
    return rx, ry
