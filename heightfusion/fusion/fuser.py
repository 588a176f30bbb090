"""Probabilistic height-map fusion by differentiable rendering (DESIGN.md, "Fusion").

Per frame, with the map's heights h0 and information (1/variance) Lambda before the frame as prior:

0. take the frame to the pyramid level its cells need (:mod:`heightfusion.pyramid`): a few
   pixels per cell side rather than dozens;
1. render Fragments at the current heights h from the frame's pose;
2. residual r = z_measured - z_rendered per pixel, weight 1/sigma^2, Huber-robustified and gated on
   the residual's predicted sigma sqrt(sigma^2 + sum_k J_k^2 / Lambda_k), so that a map that knows
   little is not protected against what it is shown; grazing pixels are dropped;
3. normal equations A = sum w J J^T, g = sum w J r over the three vertices under each pixel
   (:mod:`heightfusion.fusion.normal_equations`);
4. solve (Lambda + A) delta = g + Lambda (h0 - h), diagonal or coupled (a sparse direct solve over
   the grid's neighbour stencil), h += delta; repeat from 1 for a few Gauss-Newton iterations;
5. after the last iteration, render and accumulate once more at the new heights: information +=
   diag(A) there (capped, optional forgetting), colours as information-weighted means, ``observed``
   where the vertex's sigma fell below ``observed_sigma``; with a pose covariance, the height error the
   pose's error causes goes into ``systematic_sigma`` (:mod:`heightfusion.fusion.pose_uncertainty`).

A frame changes only the part of the map it sees: each solve covers the vertices its pixels touched,
grown by :data:`SOLVE_MARGIN` (the smoothness prior carries a step that far); the rest of the map,
however large, costs nothing (with the GL backend, rendering and summing follow the view too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._compat import deprecated_order
from ..camera import PinholeCamera
from ..depth.sensor import SensorNoise
from ..heightmap import HeightMap
from ..metrics import StageTimer
from ..poses import validate_pose
from ..render.base import Renderer
from ..render.projection import MapWindow
from .normal_equations import NormalEquations, SmoothnessPrior, accumulate, solve
from .pose_uncertainty import depth_height_sigma, pose_depth_sigma, pose_height_sigma
from ..pyramid import auto_level, frame_at_level, max_level

SOLVERS = ("coupled", "diagonal")
ACCUMULATORS = ("auto", "cpu", "gl")
#: Vertices around those a frame's pixels touched that its solve also updates (the smoothness prior's reach).
SOLVE_MARGIN = 2
#: A pixel whose rendered surface lies deeper than this many times the frame's deepest measurement is not
#: used (it counts as unseen): the camera measured nothing that far, so the map there is not what the pixel
#: saw. The map beyond that depth is then not drawn at all, which bounds the work of a view towards the
#: horizon of a large map.
DEPTH_REACH = 1.25
# Cameras whose pixel rays a fuser keeps (the pyramid levels a sequence uses).
_CACHED_CAMERAS = 4


@dataclass
class FusionConfig:
    """Settings of :class:`HeightMapFuser`; the defaults suit an RGB-D sensor at 0.5-4 m.

    Attributes:
        iterations: Gauss-Newton iterations (render, accumulate, solve) per frame.
        solver: "diagonal" (lumped: each vertex alone, never overshooting) or "coupled" (sparse
            direct solve with the neighbour terms A_jk and Levenberg-Marquardt damping).
        huber_k: Huber threshold in predicted sigmas (``math.inf`` for plain least squares).
        gate_k: residuals beyond this many predicted sigmas are rejected as outliers.
        max_incidence_deg: pixels whose ray meets the surface more obliquely are dropped.
        noise: sensor noise model giving sigma when ``fuse`` is called without one.
        sigma_floor: smallest per-vertex sigma, metres (caps the information).
        forgetting: share of each vertex's information forgotten per frame (moving scenes), 0..1.
        observed_sigma: a vertex counts as observed once its sigma is below this, metres.
        damping: Levenberg-Marquardt damping of the coupled solve, (Lambda + A + damping diag(A)):
            bounds the step along height combinations the frame barely constrains.
        smoothness_slope: prior spread of the slope between neighbouring vertices (their height
            difference over the cell size), Huber-robust so that steps stay sharp; weak against
            measurements, it settles what they leave open (``math.inf``: off).
        max_update: largest change of a vertex's height in one Gauss-Newton iteration, metres (a
            trust region against steps taken far from the linearisation point). Within it a vertex moves at
            most ``gate_k`` times the spread the gate expects between the map and the frame at that vertex,
            sqrt(1 / information before the frame + 1 / the frame's information there): a measurement
            further off would be rejected, and a larger step comes from a ray whose linearisation failed (it
            meets another triangle at the new heights). Without it (2026-12-05) the synthetic floor at its
            true poses kept 30-45 vertices of its smooth area 5-120 mm off with sigmas under a millimetre,
            near the boxes; with it, three alternated runs each: smooth-area RMSE at the true poses 0.72-1.08
            -> 0.82-0.87 mm, with drifting poses and the drift model 1.40-1.60 -> 1.24-1.28 mm; real TUM
            frames held-out median 7.84 -> 7.86 mm (refine 7.16 -> 7.14), monocular 38.7-40.1 -> 36.1-37.2
            mm. (Bounding by the map's sigma alone gave the floor 0.57-0.64 mm but the monocular map 42.5-42.8
            mm: stereo's sigma is too small on real frames, and the map's first estimates then stayed.)
        seed_stride: vertices with no evidence yet start at the mean height of the frame's points in
            their cell, from every ``seed_stride``-th pixel row and column (see ``HeightMapFuser``).
        fuse_color: update vertex colours from the frame's image when one is given.
        accumulate: where the normal equations are summed: "cpu" (fragments read back, then
            ``np.bincount``; any backend), "gl" (a compute pass with atomics next to the fragments;
            the GL backend, faster on GPUs and on Mesa's llvmpipe alike) or "auto" ("gl" with the GL
            backend, else "cpu").
        pyramid_level: image pyramid level the frame is fused at (:mod:`heightfusion.pyramid`):
            "auto" (per frame, a few pixels per cell side at the frame's median depth) or a level
            (0: the frame's own resolution; each level halves it, down to a 16-pixel side at most).
        rasterize_every_render: with GL sums, rasterize the mesh for each of a frame's renders (True), or
            only for its first: the later ones (after each Gauss-Newton step) keep that draw's
            visibility and re-intersect each pixel's ray near the triangle it saw
            (:meth:`GLRenderer.refresh_fusion_fragments`), at a cost per pixel rather than per triangle.
            What a step moved in front of a ray from elsewhere is then seen from the next frame on.
            Measured (benchmarks/bench_realtime.py, real TUM and synthetic 640x480 frames): the same
            held-out and ground-truth accuracy at two thirds of the fusion time.

    Example:
        >>> import heightfusion as hf
        >>> config = hf.FusionConfig(solver="coupled", noise=hf.SensorNoise(base=0.002))
        >>> config.iterations
        2
    """

    iterations: int = 2
    solver: str = "diagonal"
    huber_k: float = 2.0
    gate_k: float = 5.0
    max_incidence_deg: float = 80.0
    noise: SensorNoise = field(default_factory=SensorNoise)
    sigma_floor: float = 2e-4
    forgetting: float = 0.0
    observed_sigma: float = 0.005
    damping: float = 0.5
    smoothness_slope: float = 1.0
    max_update: float = 0.1
    seed_stride: int = 2
    fuse_color: bool = True
    accumulate: str = "auto"
    pyramid_level: int | str = "auto"
    rasterize_every_render: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.iterations, int) or self.iterations < 1:
            raise ValueError(f"FusionConfig.iterations must be a positive integer, got {self.iterations!r}")
        if not isinstance(self.rasterize_every_render, bool):
            raise ValueError(f"FusionConfig.rasterize_every_render must be True or False, got {self.rasterize_every_render!r}")
        if self.accumulate not in ACCUMULATORS:
            raise ValueError(f"FusionConfig.accumulate must be one of {', '.join(ACCUMULATORS)}, got {self.accumulate!r}")
        if self.pyramid_level != "auto" and (
            isinstance(self.pyramid_level, bool) or not isinstance(self.pyramid_level, int) or self.pyramid_level < 0
        ):
            raise ValueError(
                f"FusionConfig.pyramid_level must be 'auto' or a non-negative integer, got {self.pyramid_level!r}"
            )
        if self.solver not in SOLVERS:
            raise ValueError(f"FusionConfig.solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if not self.damping >= 0:
            raise ValueError(f"FusionConfig.damping must be non-negative, got {self.damping!r}")
        if not isinstance(self.seed_stride, int) or isinstance(self.seed_stride, bool) or self.seed_stride < 1:
            raise ValueError(f"FusionConfig.seed_stride must be a positive integer (pixels), got {self.seed_stride!r}")
        for name in ("huber_k", "gate_k", "sigma_floor", "observed_sigma", "smoothness_slope", "max_update"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"FusionConfig.{name} must be positive, got {value!r}")
        if not 0 < self.max_incidence_deg <= 90:
            raise ValueError(f"FusionConfig.max_incidence_deg must be in (0, 90], got {self.max_incidence_deg!r}")
        if not 0 <= self.forgetting < 1:
            raise ValueError(f"FusionConfig.forgetting must be in [0, 1), got {self.forgetting!r}")


@dataclass
class FusionStats:
    """What one :meth:`HeightMapFuser.fuse` call did.

    Attributes:
        level: the pyramid level the frame was fused at (0: its own resolution).
        pixels_measured: pixels of the frame as given with a valid measured depth; the counts below are
            of the pixels fused, at ``level``.
        pixels_used: measured pixels that entered the normal equations (last iteration).
        pixels_unseen: measured pixels where the map renders nothing (outside the map).
        pixels_grazing: dropped for a too oblique view of the surface.
        pixels_gated: rejected as outliers.
        mean_abs_residual: mean |z_measured - z_rendered| over the used pixels after the update,
            metres (NaN when none was used).
        ms: milliseconds per stage: pyramid (only when the frame was fused at a coarser level), seed,
            render and accumulate (or render+accumulate, in one GL pass), solve, update.

    Example:
        >>> import heightfusion as hf
        >>> stats = hf.FusionStats(pixels_measured=100, pixels_used=90)
        >>> stats.to_dict()["pixels_used"]
        90
    """

    level: int = 0
    pixels_measured: int = 0
    pixels_used: int = 0
    pixels_unseen: int = 0
    pixels_grazing: int = 0
    pixels_gated: int = 0
    mean_abs_residual: float = math.nan
    ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**{k: v for k, v in self.__dict__.items() if k != "ms"}, "ms": dict(self.ms)}


class HeightMapFuser:
    """Fuses depth frames into ``grid`` (in place) by rendering it with ``renderer``.

    Args:
        grid: the map to update; its information is the prior of each frame.
        renderer: any backend from :func:`heightfusion.make_renderer`. Its Fragments need ``depth``,
            ``vertex_ids`` (-1 in unused slots) and ``depth_grad`` (ValueError without them); without
            ``normal`` no pixel is dropped as grazing. Colours come from the frame's image, never from
            ``Fragments.color``, so a backend may leave it (and ``triangle_ids``, ``barycentric``) None.
        config: fusion settings.
    """

    def __init__(self, grid: HeightMap, renderer: Renderer, config: FusionConfig | None = None) -> None:
        self.grid = grid
        self.renderer = renderer
        self.config = config or FusionConfig()
        self._camera_rays: dict[PinholeCamera, tuple[np.ndarray, np.ndarray]] = {}
        self._gl_accumulator = _gl_accumulator(renderer, self.config.accumulate)

    def release(self) -> None:
        """Free the GPU buffers of the fusion's own summation; the renderer stays the caller's to release."""
        if self._gl_accumulator is not None:
            self._gl_accumulator.release()
            self._gl_accumulator = None

    def fuse(
        self,
        camera: PinholeCamera,
        T_wc: np.ndarray,
        depth: np.ndarray,
        image: np.ndarray | None = None,
        sigma: np.ndarray | None = None,
        pose_covariance: np.ndarray | None = None,
        pose_sigma: np.ndarray | None = None,
        aligned_to_map: bool = True,
    ) -> FusionStats:
        """Fuse one depth image taken by ``camera`` at pose ``T_wc`` into the map.

        Args:
            camera: the depth image's camera.
            T_wc: 4x4 camera-to-world pose.
            depth: (H, W) z-depth, metres; NaN, 0 or negative = no value.
            image: (H, W, 3) RGB, uint8 or float in [0, 1], for the vertex colours.
            sigma: (H, W) per-pixel depth standard deviation, metres; default ``config.noise``.
            pose_covariance: 6x6 covariance of the pose's error (camera-frame twist (v, w), metres and
                radians: the tracker's), or None for an exact pose. It widens each pixel's sigma (not for depth
                with a ``pose_sigma``) and sets the updated vertices' share of ``grid.systematic_sigma``
                (:mod:`.pose_uncertainty`). Measured on the real TUM frames (every 5th held out, poses at the
                measured clock and --pose-sigma): widening made the sensor map's held-out median 6.2 -> 5.7 mm,
                but stereo's map 30.5 -> 34.8 mm, whose weights then stay the matching's.
            pose_sigma: (H, W) standard deviation of the depths (metres, NaN where none) that errors of
                the poses they were measured from cause (motion stereo's relative poses,
                :attr:`heightfusion.depth.DepthEstimate.pose_sigma`), or None. Frames that share those poses
                share the error, so it stays out of the weights (which ``sigma`` sets) and goes, as the height
                error it causes (:func:`.pose_uncertainty.depth_height_sigma`), into the frame's own share of
                ``grid.systematic_sigma``.
            aligned_to_map: the pose was found by aligning the frame to this map (the tracker's), so its heights
                also err as the map it saw does; False for a pose from elsewhere (a given pose with its
                covariance: FramePipeline's ``pose_sigma``), whose error it shares with the frames around it.

        Example (the ray marcher needs no OpenGL):
            >>> import numpy as np, heightfusion as hf
            >>> camera = hf.PinholeCamera(64, 48, 50.0, 50.0, 31.5, 23.5)
            >>> T_wc = hf.look_at((0.0, -0.3, 1.0), (0.0, 0.0, 0.0))
            >>> renderer = hf.make_renderer("raymarch")
            >>> plane = hf.HeightMap((-0.5, -0.5), 0.05, (21, 21), initial_height=0.1)
            >>> depth = renderer.render_depth(plane, camera, T_wc)  # a floor 10 cm up, seen from 1 m
            >>> grid = hf.HeightMap((-0.5, -0.5), 0.05, (21, 21))
            >>> stats = hf.HeightMapFuser(grid, renderer).fuse(camera, T_wc, depth)
            >>> print(f"{np.median(grid.heights[grid.observed]):.3f} m")
            0.100 m
        """
        if not isinstance(camera, PinholeCamera):  # the order before 0.2: fuse(depth, T_wc, camera, ...)
            deprecated_order("HeightMapFuser.fuse(depth, T_wc, camera)", "fuse(camera, T_wc, depth)")
            camera, depth = depth, camera
        cfg = self.config
        grid = self.grid
        try:
            T_wc = validate_pose(T_wc, "T_wc")
        except ValueError as exc:
            raise FrameError(str(exc)) from None
        depth, sigma, colors = _check_frame(depth, camera, image, sigma, cfg.noise)
        if pose_covariance is not None:
            pose_covariance = _check_covariance(pose_covariance)
        if pose_sigma is not None:
            pose_sigma = np.asarray(pose_sigma, dtype=np.float32)
            if pose_sigma.shape != camera.shape:
                raise FrameError(f"pose_sigma has shape {pose_sigma.shape}, the camera's image is {camera.shape}")
        depth_error = None if pose_sigma is None else (camera, pose_sigma)  # at the frame's pixels
        stats = FusionStats(level=self._level(camera, depth), pixels_measured=int(np.isfinite(depth).sum()))
        timer = StageTimer()
        if stats.level > 0:
            with timer("pyramid"):
                camera, depth, sigma, colors = frame_at_level(camera, depth, sigma, colors, stats.level)
        if pose_covariance is not None and pose_sigma is None:
            # After the pyramid: the pose's error is one for a whole block of pixels, no spread between them.
            sigma = np.hypot(sigma, pose_depth_sigma(camera, T_wc, depth, pose_covariance))
        colors = _float_rgb(colors) if cfg.fuse_color else None
        if cfg.forgetting > 0:
            np.maximum(grid.information * (1 - cfg.forgetting), grid.prior_information, out=grid.information)
        with timer("seed"):
            changed = self._seed_unobserved(depth, T_wc, camera)
        start = _StartHeights(grid.heights)
        reach = DEPTH_REACH * float(np.max(depth, initial=0.0, where=np.isfinite(depth)))
        refresh = not cfg.rasterize_every_render  # the renders after the first keep its visibility
        for iteration in range(cfg.iterations):
            system = self._normal_equations(timer, depth, sigma, T_wc, camera, grid.information, None, reach,
                                            refresh and iteration > 0)
            with timer("solve"):
                changed = _union(changed, self._step(system, start))
        # The information the frame adds is measured at the new estimate (the posterior mode), not at
        # a linearisation point the iterations left behind: vertices still far from their pixels must
        # not become confident. (Rays that what a step raised now hides still see the surface behind
        # when the first draw's visibility is kept; their measurement, on the raised part, then lies
        # in front of it and mostly outside the outlier gate.)
        system = self._normal_equations(timer, depth, sigma, T_wc, camera, None, colors, reach, refresh)
        with timer("update"):
            changed = _union(changed, self._update_map(system, T_wc, pose_covariance, depth_error, aligned_to_map))
        stats.pixels_used = system.pixels_used
        stats.pixels_unseen = system.pixels_unseen
        stats.pixels_grazing = system.pixels_grazing
        stats.pixels_gated = system.pixels_gated
        stats.mean_abs_residual = system.mean_abs_residual
        stats.ms = timer.total_ms()
        if changed is not None:  # what the frame left alone was checked by earlier frames
            window = changed.slices
            if not (np.isfinite(grid.heights[window]).all() and np.isfinite(grid.information[window]).all()):
                raise FloatingPointError("the fused map holds NaN or infinite values (a fusion bug: please report it)")
        return stats

    def _level(self, camera: PinholeCamera, depth: np.ndarray) -> int:
        """This frame's pyramid level: ``config.pyramid_level``'s, a fixed one at most the coarsest possible."""
        if self.config.pyramid_level == "auto":
            return auto_level(camera, depth, self.grid.cell_size)
        return min(self.config.pyramid_level, max_level(camera))

    def _step(self, system: NormalEquations, start: _StartHeights) -> MapWindow | None:
        """One Gauss-Newton update of the heights the frame touched (and SOLVE_MARGIN around them); the
        window it changed, or None.

        The solve runs on that window grown by one vertex, so that every updated vertex has all its
        mesh edges (smoothness prior, couplings) inside; the outer ring only lends its heights.
        """
        cfg, grid = self.config, self.grid
        touched = system.touched()
        if touched is None:
            return None
        box = touched.grown(SOLVE_MARGIN, grid.shape)
        around = box.grown(1, grid.shape)
        system = system.restricted(around)
        heights = grid.heights[around.slices].astype(np.float64)
        information = grid.information[around.slices].astype(np.float64)
        smoothness = SmoothnessPrior.robust(heights, cfg.smoothness_slope * grid.cell_size)
        rhs = system.g + information * (start.heights(around) - heights) - smoothness.gradient(heights)
        delta = solve(system, information, rhs, cfg.solver, cfg.damping, smoothness)
        # The trust region (FusionConfig.max_update): gate_k sigmas of the map before the frame against the
        # frame's own measurement of the vertex (its information this frame: the diagonal of A).
        inner = box.within(around)
        with np.errstate(divide="ignore"):
            spread = np.sqrt(1.0 / np.maximum(information[inner], 1e-30) + 1.0 / system.diagonal[inner])
        limit = np.minimum(cfg.gate_k * spread, cfg.max_update)
        step = np.clip(delta[inner], -limit, limit)
        grid.heights[box.slices] += step.astype(np.float32)
        return box

    def _normal_equations(
        self,
        timer: StageTimer,
        depth: np.ndarray,
        sigma: np.ndarray,
        T_wc: np.ndarray,
        camera: PinholeCamera,
        information: np.ndarray | None,
        colors: np.ndarray | None,
        max_depth: float,
        refresh: bool = False,
    ) -> NormalEquations:
        """Render at the current heights and accumulate; ``information`` (the map's, before the frame) widens
        the outlier gate; surface deeper than ``max_depth`` is not used (:data:`DEPTH_REACH`); ``refresh``:
        with GL sums, keep the last draw's visibility (``FusionConfig.rasterize_every_render``)."""
        cfg, grid = self.config, self.grid
        ray_norm = self._ray_norm(camera)
        cos_min = math.cos(math.radians(cfg.max_incidence_deg))
        rules = (cos_min, cfg.huber_k, cfg.gate_k, information, colors, max_depth)
        if self._gl_accumulator is not None:
            with timer("refresh+accumulate" if refresh else "render+accumulate"):  # the fragments never leave the GPU
                return self._gl_accumulator.accumulate_window(grid, camera, T_wc, depth, sigma, ray_norm, *rules,
                                                              refresh=refresh)
        with timer("render"):
            frag = self.renderer.render(grid, camera, T_wc)
        with timer("accumulate"):
            return accumulate(frag, depth, sigma, grid.shape, ray_norm, *rules)

    def _seed_unobserved(self, depth: np.ndarray, T_wc: np.ndarray, camera: PinholeCamera) -> MapWindow | None:
        """Start vertices with no evidence yet at the mean height of the frame's points in their cell.

        The prior height of such a vertex is a guess; the measured points that fall in its cell are
        a better one. Starting there, the rendering residuals are small and each pixel pulls on the
        triangle it really sees, rather than raising floor far behind an obstacle the map does not
        have yet (which a low forward-looking camera would otherwise smear into ghosts).
        Only vertices whose information is still the prior's are seeded: one that earlier frames
        measured keeps its estimate, which its information describes. Where the cell's points
        disagree (their spread in height exceeds a cell size: an edge, clutter) the seed is the highest
        of them, as elevation mapping's higher-point rule does: a vertex at a box's edge carries its
        top (the bundled sample's smooth-area RMSE falls from 1.36 to 0.83 mm against the mean there).
        Returns the window of the vertices it may have changed (None: none).
        """
        grid, step = self.grid, self.config.seed_stride
        sub = depth[::step, ::step]
        valid = np.isfinite(sub)
        if not valid.any():
            return None
        rays = self._rays(camera)[::step, ::step][valid]
        points = rays * sub[valid][:, None] @ T_wc[:3, :3].T + T_wc[:3, 3]
        col_row = np.rint((points[:, :2] - grid.origin) / grid.cell_size).astype(np.int64)
        inside = (col_row[:, 0] >= 0) & (col_row[:, 0] < grid.nx) & (col_row[:, 1] >= 0) & (col_row[:, 1] < grid.ny)
        rows, cols = col_row[inside, 1], col_row[inside, 0]
        window = MapWindow.around(rows, cols)
        if window is None:
            return None
        ids = (rows - window.row0) * window.shape[1] + (cols - window.col0)  # within the window
        no_evidence = (grid.information[window.slices] <= np.float32(grid.prior_information)).reshape(-1)
        keep = no_evidence[ids]
        ids, z = ids[keep], points[inside, 2][keep]
        counts = np.bincount(ids, minlength=window.size)
        seeded = counts > 0
        mean = np.bincount(ids, z, minlength=window.size)[seeded] / counts[seeded]
        spread_sq = np.bincount(ids, z * z, minlength=window.size)[seeded] / counts[seeded] - mean**2
        top = np.full(window.size, -np.inf)
        np.maximum.at(top, ids, z)
        seed = np.where(spread_sq <= grid.cell_size**2, mean, top[seeded])
        grid.heights[window.slices][seeded.reshape(window.shape)] = seed.astype(np.float32)
        return window

    def _update_map(self, system: NormalEquations, T_wc: np.ndarray, pose_covariance: np.ndarray | None,
                    depth_error: tuple[PinholeCamera, np.ndarray] | None, aligned_to_map: bool) -> MapWindow | None:
        """Information, colours, systematic sigma and ``observed`` from the frame's final sums; the window it
        changed, or None. ``depth_error``: the camera and ``pose_sigma`` of :meth:`fuse`, or None."""
        cfg, grid = self.config, self.grid
        threshold = 1.0 / cfg.observed_sigma**2
        touched = system.touched()
        if touched is not None:
            window = touched.slices
            system = system.restricted(touched)
            prior = grid.information[window].astype(np.float64)
            information = np.minimum(prior + system.diagonal, 1.0 / cfg.sigma_floor**2)
            if system.color_sums is not None:
                seen = system.diagonal > 0
                colors = grid.colors[window]
                # Information-weighted running mean: the map's colour weighs what the map knew before.
                old_weight = prior[seen][:, None]
                colors[seen] = (colors[seen] * old_weight + system.color_sums[seen]) / (
                    old_weight + system.diagonal[seen][:, None]
                )
            self._update_systematic(touched, system.diagonal, prior, T_wc, pose_covariance, depth_error, aligned_to_map)
            grid.information[window] = information
            grid.observed[window] |= information >= threshold
        if cfg.forgetting > 0:  # what faded below the threshold (an obstacle that left) is unobserved again
            grid.observed[:] = grid.information >= threshold
        return touched

    def _update_systematic(self, window: MapWindow, added: np.ndarray, prior: np.ndarray, T_wc: np.ndarray,
                           pose_covariance: np.ndarray | None,
                           depth_error: tuple[PinholeCamera, np.ndarray] | None = None,
                           aligned_to_map: bool = True) -> None:
        """``systematic_sigma`` on ``window`` after a frame that added the information ``added`` (after the
        ``prior``).

        The error model: a tracked pose is known with respect to the map it was aligned to, so its frame's
        heights err by the map's error where it saw mapped vertices (``inherited``: their evidence-weighted
        mean sigma, shared: the same error the map has) plus the pose's own error with respect to the map
        (:func:`pose_height_sigma`, new with every alignment). A vertex's fused height is the evidence-weighted
        mean of its frames', so its error is the weighted mean of the shared parts (the map's and the frame's
        inherited one, taken as fully correlated) and the frame's own part weighted by its share of the
        evidence; the two in quadrature. A frame with an exact pose (no ``pose_covariance``) errs by neither.
        So the error grows as the camera explores, frame by frame from the map it came from, and stays what
        it was where the camera returns. (Averaging the frames' total sigmas instead, own part included,
        counted every revisit's own error as new shared error: the sigma crept up where the map was seen most,
        and on the synthetic floor with drifting poses 85 % of the vertices lay within 1 sigma, against 71 %.)

        A pose not ``aligned_to_map`` (given, with its covariance) inherits nothing, and its error is shared
        with the frames around it (on the real TUM frames motion capture's relative rotations err by 0.35 deg
        RMS over one frame and 0.8-1.2 deg over ten: most of a pose's error is its neighbours' too): its height
        error joins the shared parts. Taken as each frame's own instead, it averaged away and 20 % of the
        held-out sensor points lay within 1 sigma of the map fused at the measured --pose-sigma, against 62 %
        shared (2026-12-05, ``bench_mono_real.py``). Depth whose error comes
        from poses (``depth_error``: stereo's, from the relative poses of each reference and its sources,
        which change from pair to pair) adds that height error (:func:`depth_height_sigma`) to the frame's own
        part: independent from frame to frame, an approximation for frames that share keyframes.
        """
        grid = self.grid
        old = grid.systematic_sigma[window.slices]
        if pose_covariance is None and depth_error is None and not old.any():  # exact poses, no systematic error
            return
        evidence = np.maximum(prior - grid.prior_information, 0.0)
        total = evidence + added
        seen = total > 0
        shared, own = 0.0, 0.0
        points = np.concatenate([grid.vertex_xy(window.slices), grid.heights[window.slices][..., None]], axis=-1)
        if pose_covariance is not None and aligned_to_map:
            weights = evidence * (added > 0)
            shared = float((weights * old).sum() / weights.sum()) if weights.any() else 0.0
            own = pose_height_sigma(T_wc, points, pose_covariance)
        elif pose_covariance is not None:
            shared = pose_height_sigma(T_wc, points, pose_covariance)
        if depth_error is not None:
            own = np.hypot(own, depth_height_sigma(depth_error[0], T_wc, points, depth_error[1]))
        total = np.where(seen, total, 1.0)
        sigma = np.hypot((evidence * old + added * shared) / total, added * own / total)
        grid.systematic_sigma[window.slices] = np.where(seen, sigma, old)

    def _rays(self, camera: PinholeCamera) -> np.ndarray:
        """(H, W, 3) camera-frame rays with z = 1 (cached per camera)."""
        return self._camera_cache(camera)[0]

    def _ray_norm(self, camera: PinholeCamera) -> np.ndarray:
        """|d| per pixel for rays d with camera-z component 1 (cached per camera)."""
        return self._camera_cache(camera)[1]

    def _camera_cache(self, camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
        if camera not in self._camera_rays:
            if len(self._camera_rays) >= _CACHED_CAMERAS:
                del self._camera_rays[next(iter(self._camera_rays))]
            rays = camera.pixel_rays()
            self._camera_rays[camera] = (rays, np.linalg.norm(rays, axis=-1).astype(np.float32))
        return self._camera_rays[camera]


class _StartHeights:
    """The map's heights as the frame found them (after seeding), the prior of its Gauss-Newton steps.

    Rows are copied when a step first asks for them, before it changes them: a frame copies the rows
    it works on, not the map.
    """

    def __init__(self, heights: np.ndarray) -> None:
        self._live = heights
        self._copy = np.empty_like(heights)
        self._saved = np.zeros(len(heights), dtype=bool)

    def heights(self, window: MapWindow) -> np.ndarray:
        """float64 start heights of ``window``; its rows must not have changed since the frame began unless an
        earlier call saved them."""
        rows = np.flatnonzero(~self._saved[window.row0 : window.row1]) + window.row0
        self._copy[rows] = self._live[rows]
        self._saved[rows] = True
        return self._copy[window.slices].astype(np.float64)


def _union(a: MapWindow | None, b: MapWindow | None) -> MapWindow | None:
    return b if a is None else a.union(b)


class FrameError(ValueError):
    """A frame's data cannot be fused (sizes that do not match the camera, a pose that is not rigid):
    pipelines skip and count such a frame; any other error is a real failure."""


#: Depths beyond this (metres) are no measurement: no sensor sees that far, and their squares overflow.
MAX_DEPTH = 1e4
#: Smallest per-pixel depth sigma, metres: no sensor is surer than a micrometre, and the weights
#: 1/sigma^2 of smaller ones overflow float32.
MIN_SIGMA = 1e-6


def _check_frame(
    depth: np.ndarray, camera: PinholeCamera, image: np.ndarray | None, sigma: np.ndarray | None, noise: SensorNoise
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(depth with NaN for no value, sigma, image: uint8 RGB as given, other types as float32, or None);
    FrameError on a mismatch.

    Depths that are NaN, infinite, not positive or beyond :data:`MAX_DEPTH` are no value.
    """
    depth = np.array(depth, dtype=np.float32)  # a copy: no value becomes NaN in place
    if depth.shape != camera.shape:
        raise FrameError(f"depth has shape {depth.shape}, the camera's image is {camera.shape}")
    with np.errstate(invalid="ignore"):
        depth[~((depth > 0) & (depth < MAX_DEPTH))] = np.nan
    if sigma is None:
        sigma = noise.sigma(depth)
    else:
        sigma = np.asarray(sigma, dtype=np.float32)
        if sigma.shape != camera.shape:
            raise FrameError(f"sigma has shape {sigma.shape}, the camera's image is {camera.shape}")
        with np.errstate(invalid="ignore"):
            bad = ~((sigma > 0) & (sigma < np.inf)) & np.isfinite(depth)
        if bad.any():
            raise FrameError(f"sigma must be positive and finite where depth is valid; {int(bad.sum())} pixels are not")
        sigma = np.maximum(sigma, np.float32(MIN_SIGMA))
    colors = None
    if image is not None:
        image = np.asarray(image)
        if image.shape != camera.shape + (3,):
            raise FrameError(f"image has shape {image.shape}, expected {camera.shape + (3,)} (RGB)")
        if image.dtype == np.uint8:
            colors = image  # halved as it is (cheaper than floats), made float after the pyramid: _float_rgb
        else:
            colors = image.astype(np.float32)
            if not np.isfinite(colors).all():
                raise FrameError("image holds NaN or infinite values")
    return depth, sigma, colors


def _check_covariance(covariance: np.ndarray) -> np.ndarray:
    """``covariance`` as a 6x6 float64 array; FrameError unless it is one of finite values."""
    covariance = np.asarray(covariance, dtype=np.float64)
    if covariance.shape != (6, 6) or not np.isfinite(covariance).all():
        raise FrameError(f"pose_covariance must be a finite 6x6 matrix, got shape {covariance.shape}")
    return covariance


def _float_rgb(colors: np.ndarray | None) -> np.ndarray | None:
    """RGB as float32 in [0, 1] (uint8 scaled), or None."""
    if colors is None or colors.dtype != np.uint8:
        return colors
    return colors.astype(np.float32) * np.float32(1 / 255)


def _gl_accumulator(renderer: Renderer, choice: str):
    """A GLAccumulator for ``renderer`` when ``choice`` asks for one ("auto": where the backend's fragments
    live in its GL context), else None."""
    on_gpu = renderer.capabilities.gl_fragments
    if choice == "cpu" or (choice == "auto" and not on_gpu):
        return None
    if not on_gpu:
        raise ValueError(f"FusionConfig.accumulate='gl' needs a backend that draws its fragments in OpenGL ('gl'), "
                         f"got {renderer.name!r}")
    from .gl_accumulate import GLAccumulator

    return GLAccumulator(renderer)
