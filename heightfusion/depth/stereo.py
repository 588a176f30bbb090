"""Multi-view plane-sweep stereo: depth and per-pixel sigma of a reference frame from nearby frames with known poses.

Pipeline (torch, vectorised over pixels and hypotheses, so the same code runs on CPU and GPU):

1. Features: each image becomes grey, then locally normalised, (I - mean) / (std + eps) over a small
   window. Matching normalised intensities is insensitive to gain and offset, like ZNCC, but costs one
   lookup per pixel and hypothesis instead of three box filters.
2. Plane sweep: ``num_hypotheses`` planes ``n . X = 1 / s`` in the reference camera, uniform in ``s``:
   fronto-parallel planes (``s`` = inverse depth) or horizontal world planes (``planes="ground"``, natural
   for a height map: the floor and box tops are planes of the sweep). Per pixel, inverse depth is
   ``rho = s * (n . ray)``, so the sweep is uniform in inverse depth at every pixel. Every source frame is
   warped by each plane's homography; its features are looked up in a copy upsampled twice (nearest,
   within 0.25 px), about three times cheaper on a CPU than bilinear sampling.
3. Cost: truncated absolute feature difference, averaged over the ``best_k`` best of the sources that
   see the point (a point hidden in some sources is still matched in the others, and one that only one
   source sees is not outvoted), box-filtered 3x3.
4. Regularisation: semi-global matching along rows and columns, both ways, on the cost at every other
   pixel; the large-jump penalty drops where the reference image has an edge. Coarse to fine
   (``coarse_to_fine``, the default): the sweep of steps 2-3 runs at those pixels only, and every
   pixel's cost is then evaluated on a band of hypotheses around its block's coarse winner, where the
   full-resolution cost places the depth edges and the sub-hypothesis minimum.
5. Winner per pixel, parabola through its neighbours for a sub-hypothesis estimate. Invalid where the
   reference has no texture, the point shows too little parallax in every source, no source matches
   it (cost), the cost curve is too flat to pin the depth (sigma), the winner disagrees with the
   winner found along the ray of a source that sees it (left-right check: occlusions, mismatches), or
   with its neighbours (speckles).
6. Sigma: from the curvature of the cost curve at the winner, in hypothesis steps, with floors for the
   sub-hypothesis fit and for matching precision in pixels (so the baseline counts: a step that moves
   the match further is known more finely); converted to depth by ``sigma_z = z^2 sigma_rho``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from .._compat import deprecated_order
from ..camera import PinholeCamera
from ..heightmap import GRAY_WEIGHTS
from ..poses import invert_pose, validate_pose
from ..rolling_shutter import row_poses
from .graphs import GraphedFunction

#: Plane families of the sweep: fronto-parallel to the reference camera, or horizontal in the world (at heights
#: in the world, or at distances below the camera).
PLANE_FAMILIES = ("fronto", "ground", "below")

# The pose sigma's slant term (``_pose_rho_sigma``): the reference's structure tensor over boxes of this side
# (the matching's 5 px windows, aggregated 3x3, and smoothed: 5 / 9 / 15 px gave a pitch error's depth error at
# 0.78 / 0.94 / 1.08 times the one seen), and at most this many pixels along the line per pixel across it.
_STRUCTURE_BOX = 9
_MAX_ACROSS = 3.0
# Source features are looked up in a copy upsampled this many times (nearest lookup, error <= 1/(2 U) px).
_LOOKUP_UPSAMPLE = 2
# Feature value outside a source image: far from any normalised intensity, so its truncated cost is
# the truncation (a mismatch) without a separate mask.
_NO_DATA = 1e3
# Elements of one chunk of hypothesis slices: large enough that the lookups' per-call cost fades, small
# enough to bound the sweep's temporaries.
_CHUNK_ELEMENTS = 1 << 19
# The left-right check finds the source's winners at every this many pixels: a quarter of the work,
# at the price of occlusion borders a pixel wider.
_CHECK_STRIDE = 2
# The left-right check asks the sources that see most of the estimate, this many of them (a pixel passes when
# one agrees): each costs a quarter of a source's sweep. One, the source that sees most, is stricter: on the
# real TUM frames (replay --depth mvs, every 5th frame held out, two alternated rounds) it fused a map of
# held-out median 40 mm against 47-49 mm with two, at the same coverage and 10 % more frames/s; on the
# synthetic scenes of benchmarks/bench_depth.py it marks 1-8 % fewer textured pixels valid at the same error.
_CHECK_SOURCES = 1
# Semi-global matching sums this many paths (rows and columns, both ways), each counting the matching cost once.
_PATHS = 4
# On a CUDA device semi-global matching pads its hypotheses to a multiple of this (one graph per padded count).
_GRAPH_HYPOTHESES = 16
# Coarse to fine needs at least this many coarse pixels a side; smaller images are matched at every pixel.
_MIN_COARSE_SIDE = 16
# Half-size of the window of the speckle check.
_SUPPORT_RADIUS = 2


@dataclass(frozen=True)
class StereoConfig:
    """Settings of :class:`PlaneSweepStereo`; the defaults suit 320x240 images of scenes 0.3-10 m away.

    Attributes:
        num_hypotheses: planes of the sweep.
        planes: "fronto" (planes at constant depth in the reference camera, between ``min_depth`` and
            ``max_depth``), "below" (horizontal world planes ``min_depth`` to ``max_depth`` below the camera:
            floor and table tops are planes of the sweep, and no surface is placed above the camera, where
            a height map has none; on the real TUM frames per-frame error 16.7 against fronto's 21.5 % and
            maps of coverage 0.32 against 0.24 at a held-out median within the spread of the held-out splits,
            but on the synthetic floor, monocular with drifting poses, 16.6 against 10.5 mm RMSE:
            ``benchmarks/bench_mono_real.py``, ``benchmarks/bench_tracking.py``) or "ground" (horizontal world
            planes z = h, ``min_height`` <= h <= ``max_height``;
            the camera must be above ``max_height``).
        min_depth, max_depth: depth range of fronto-parallel planes, or distance range below the camera of
            "below" planes, metres.
        min_height, max_height: height range of ground planes (world z), metres.
        window: side of the local normalisation window, pixels (odd).
        aggregation: side of the box that sums the matching cost, pixels (odd; 1 = none).
        best_k: the cost of a hypothesis is the mean of the k best sources (occlusion-robust).
        truncation: a feature difference counts at most this much; a point no source sees costs this.
        texture_eps: added to the local standard deviation before normalising (intensity in [0, 1]).
        min_texture: pixels whose local standard deviation is below this are invalid (textureless).
        p1: penalty of a one-hypothesis step between neighbours (semi-global matching).
        p2: penalty of a larger jump where the image is flat.
        edge_contrast: intensity difference (in [0, 1]) that halves ``p2``: jumps are cheap across edges.
        coarse_to_fine: the whole sweep and semi-global matching run at every other pixel (rows and
            columns; full-resolution features and lookups), and at every pixel the matching cost is
            evaluated only on the ``refine_band`` hypotheses either side of its 2x2 block's coarse
            winner, with the coarse smoothness there. About 1.7x faster at 320x240 for nearly the same
            depth (``benchmarks/bench_depth.py`` with and without ``--single-level``). A winner at the
            band's end is invalid. False: the whole sweep at every pixel, semi-global matching on
            ``sgm_scale`` blocks. Images under 32 pixels a side are always matched at every pixel.
        refine_band: hypotheses either side of the coarse winner at full resolution (``coarse_to_fine``).
            On real TUM frames 4 fused a better map than 2 (held-out median 37 against 47 mm on the
            vertices both observed) at the same speed; synthetic scenes did not tell them apart.
        sgm_scale: without ``coarse_to_fine``, semi-global matching runs on blocks of this many pixels a
            side (1: every pixel); its smoothness term is interpolated back onto the full-resolution
            matching cost, which still places the edges.
        max_cost: the mean matching cost at the winner must be below this (else no source matches).
        consistency: the winner may differ by at most this many hypotheses from the winner found along
            the ray of a source that sees it (left-right check, with the source that sees most) and
            from its neighbours' (speckle check); ``math.inf`` disables both checks.
        support: share of the valid neighbours in a 5x5 window (and at least a third of the window)
            whose winner must lie within ``consistency`` of a pixel's for it to stay valid.
        min_parallax: pixels whose point (at the estimated depth) is matched fewer pixels away from the
            match of the point at infinity than this in every source are invalid: too little parallax to
            measure depth (a forward-moving camera's epipole, a pure rotation).
        sigma_floor_px, sigma_floor_steps, sigma_curvature: the winner's sigma, in hypothesis steps, is
            sqrt((sigma_floor_px / pixels per step)^2 + sigma_floor_steps^2 + sigma_curvature / curvature):
            a floor of matching precision in pixels (a step that moves the match further, from a longer
            baseline, is known more finely), one of the sub-hypothesis fit, and the flatness of the cost
            curve. The defaults are fitted on the synthetic scenes (benchmark, check 2).
        max_relative_sigma: pixels whose sigma exceeds this fraction of their depth are invalid.
        device: torch device ("cpu", "cuda", "cuda:1", ...); "auto" (the default): the first CUDA device
            where torch sees one, else the CPU.
        sweep_size: :class:`~heightfusion.depth.MotionStereo` halves its frames (by 2x2 blocks,
            :mod:`heightfusion.pyramid`) until they fit in this (width, height), keeps keyframes and runs
            the sweep at that size (pixel settings, here and in ``KeyframeConfig``, count its pixels),
            and hands the estimate back at the frame's pixels; None: at the frame's resolution.
            :class:`PlaneSweepStereo` itself works at the size it is given.
        predict_range: :class:`~heightfusion.depth.MotionStereo` narrows each frame's sweep to the range
            the previous estimate predicts, at the same step between planes (fewer hypotheses, the
            same precision; :func:`heightfusion.depth.motion.predicted_sweep`). Off by default: on the
            synthetic floor video of ``tests/test_live.py`` the narrowed sweeps lost surface the full
            sweep finds (the live view from the pose showed 8 % map instead of over 15 %).
        threads: torch threads while estimating (on a CPU device); None: all cores but one, which the
            GL driver and the frame reader keep. Torch's OpenMP workers spin at barriers: on a 2-core
            machine with both cores busy, a 320x240 estimate took 0.9-5.7 s with 2 threads and a steady
            0.23 s with one.
        readout_s: rolling shutter: seconds from the exposure of the image's first row to its last (0: a
            global shutter). Row ``v`` of an image at pose ``T_wc`` with body velocity ``xi`` (see
            :meth:`PlaneSweepStereo.estimate`) is then taken at ``T_wc exp(((v + 1/2) / H - 1/2) readout_s xi)``:
            the pose is the middle row's. A Kinect v1 (the TUM RGB-D freiburg sequences) reads out in about
            0.03 s; ``benchmarks/bench_mono_real.py`` measures what it changes on those frames.
    """

    num_hypotheses: int = 64
    planes: str = "fronto"
    min_depth: float = 0.3
    max_depth: float = 10.0
    min_height: float = -0.2
    max_height: float = 0.5
    window: int = 5
    aggregation: int = 3
    best_k: int = 2
    truncation: float = 1.5
    texture_eps: float = 0.02
    min_texture: float = 0.002
    p1: float = 0.05
    p2: float = 0.5
    edge_contrast: float = 0.05
    max_cost: float = 1.0
    coarse_to_fine: bool = True
    refine_band: int = 4
    sgm_scale: int = 2
    consistency: float = 1.0
    support: float = 0.5
    min_parallax: float = 4.0
    sigma_floor_px: float = 0.1
    sigma_floor_steps: float = 0.1
    sigma_curvature: float = 0.007
    max_relative_sigma: float = 0.1
    device: str = "auto"
    sweep_size: tuple[int, int] | None = (320, 240)
    predict_range: bool = False
    threads: int | None = None
    readout_s: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.num_hypotheses, bool) or not isinstance(self.num_hypotheses, int) or self.num_hypotheses < 3:
            raise ValueError(f"StereoConfig.num_hypotheses must be an integer >= 3, got {self.num_hypotheses!r}")
        if self.planes not in PLANE_FAMILIES:
            raise ValueError(f"StereoConfig.planes must be one of {', '.join(PLANE_FAMILIES)}, got {self.planes!r}")
        if not 0 < self.min_depth < self.max_depth < math.inf:
            raise ValueError(f"StereoConfig needs 0 < min_depth < max_depth, got {self.min_depth!r}, {self.max_depth!r}")
        if not -math.inf < self.min_height < self.max_height < math.inf:
            raise ValueError(f"StereoConfig needs min_height < max_height, got {self.min_height!r}, {self.max_height!r}")
        for name in ("window", "aggregation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
                raise ValueError(f"StereoConfig.{name} must be an odd positive integer, got {value!r}")
        for name in ("best_k", "sgm_scale", "refine_band"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"StereoConfig.{name} must be a positive integer, got {value!r}")
        for name in ("truncation", "texture_eps", "p2", "edge_contrast", "max_cost", "sigma_floor_px",
                     "sigma_floor_steps", "sigma_curvature", "max_relative_sigma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"StereoConfig.{name} must be a positive number, got {value!r}")
        for name in ("min_texture", "p1", "min_parallax", "support", "readout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"StereoConfig.{name} must be a non-negative number, got {value!r}")
        if not self.p1 <= self.p2:
            raise ValueError(f"StereoConfig.p1 must not exceed p2, got {self.p1!r} > {self.p2!r}")
        if self.sweep_size is not None and not (
            len(self.sweep_size) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in self.sweep_size)
        ):
            raise ValueError(f"StereoConfig.sweep_size must be (width, height) in pixels or None, got {self.sweep_size!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as exc:
                raise ValueError(f"StereoConfig.device must be 'auto' or a torch device such as 'cpu' or 'cuda', "
                                 f"got {self.device!r} ({exc})") from None
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"StereoConfig.threads must be a positive integer or None, got {self.threads!r}")
        if not self.consistency >= 0:
            raise ValueError(f"StereoConfig.consistency must be non-negative (inf: off), got {self.consistency!r}")


@dataclass
class DepthEstimate:
    """Depth of a reference frame estimated by stereo.

    Attributes:
        depth: (H, W) float32 z-depth, metres; NaN where not ``valid``.
        sigma: (H, W) float32 standard deviation of ``depth`` from matching the images, metres; positive where
            ``valid``, NaN elsewhere: the error that is new with every estimate.
        valid: (H, W) bool.
        pose_sigma: (H, W) float32 standard deviation of ``depth`` (metres, NaN where not ``valid``) that the
            errors of the sources' poses relative to the reference cause, or None where the poses were taken as
            exact (no ``src_pose_covariances``). Kept apart from ``sigma``: estimates that share keyframes and
            poses share it, so more of them do not average it away, and fusion keeps it out of the weights
            (:meth:`heightfusion.HeightMapFuser.fuse`'s ``pose_sigma``). :meth:`total_sigma` is the two
            together, the error the depth has.
    """

    depth: np.ndarray
    sigma: np.ndarray
    valid: np.ndarray
    pose_sigma: np.ndarray | None = None

    def total_sigma(self) -> np.ndarray:
        """(H, W) float32 ``sigma`` and ``pose_sigma`` in quadrature (``sigma`` without the latter)."""
        return self.sigma if self.pose_sigma is None else np.hypot(self.sigma, self.pose_sigma)

    @classmethod
    def invalid(cls, shape: tuple[int, int]) -> DepthEstimate:
        """An estimate with no valid pixel."""
        return cls(np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32), np.zeros(shape, bool))


@dataclass
class _Planes:
    """The sweep's planes ``normal . X = 1 / s_k`` in the reference camera.

    ``s`` (D,) is uniform; ``weight`` (H, W) is ``normal . ray`` for rays with z = 1, so that pixel p
    on plane k has inverse depth ``s_k * weight(p)``; non-positive weight: the pixel's ray meets no plane.
    """

    normal: np.ndarray
    s: torch.Tensor
    weight: torch.Tensor

    @property
    def step(self) -> float:
        return float(self.s[1] - self.s[0])


@dataclass
class _Source:
    """A source frame ready for the sweep.

    Pixel p on plane k projects to homogeneous ``a(p) + s_k w(p) b`` in the source (``a = K R K^-1 p``,
    (3, H, W), and ``b = K t``, (3, 1, 1), for the reference-to-source motion (R, t) = ``T_sr``; with a
    rolling shutter the motion differs per reference row, and ``b`` is (3, H, 1)). ``a``/``b`` are
    pre-scaled to ``grid_sample``'s normalised coordinates of the padded, upsampled ``features``;
    ``a_px``/``b_px`` give plain source pixels. ``T_sr`` is the motion between the middle rows;
    ``pose_covariance`` the 6x6 covariance of its error (or None: exact), see :meth:`PlaneSweepStereo.estimate`.
    """

    features: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    a_px: torch.Tensor
    b_px: torch.Tensor
    T_sr: np.ndarray
    pose_covariance: np.ndarray | None = None


class SourceFeatureCache:
    """The pose-free part of preparing a source image (grey, locally normalised, upsampled for the lookups:
    about 5 ms at 320x240 on a CPU core), kept per image object for the next estimates that use it.

    Keyframes serve as sources for many frames in turn, so :class:`heightfusion.depth.MotionStereo` keeps one.
    Entries are found by the image object itself (held, so its id cannot be reused while cached), so an
    image must not change in place while cached; the oldest entry goes beyond ``size``.
    """

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._entries: dict[tuple, tuple[np.ndarray, torch.Tensor]] = {}

    def get(self, image: np.ndarray, key: tuple, make) -> torch.Tensor:
        """The features of ``image`` under ``key`` (what else they depend on), from ``make()`` if not kept."""
        entry = self._entries.get((id(image), key))
        if entry is not None and entry[0] is image:
            return entry[1]
        features = make()
        self._entries[id(image), key] = (image, features)
        while len(self._entries) > self.size:
            del self._entries[next(iter(self._entries))]
        return features


class PlaneSweepStereo:
    """Depth of a reference frame from source frames with known poses (module docstring: the pipeline).

    Args:
        config: settings; the defaults suit 320x240 images.
        source_cache: keeps the source images' features between estimates (:class:`SourceFeatureCache`: the
            images must then not change in place), or None.

    >>> stereo = PlaneSweepStereo(StereoConfig(min_depth=0.5, max_depth=5.0))
    >>> est = stereo.estimate(camera, ref_T_wc, ref_image, [src_image], [src_T_wc])  # doctest: +SKIP
    """

    def __init__(self, config: StereoConfig | None = None, source_cache: SourceFeatureCache | None = None) -> None:
        self.config = config or StereoConfig()
        self.device = resolve_device(self.config.device)
        self.source_cache = source_cache

    def estimate(
        self,
        camera: PinholeCamera,
        ref_T_wc: np.ndarray,
        ref_image: np.ndarray,
        src_images: list[np.ndarray],
        src_T_wcs: list[np.ndarray],
        *,
        ref_velocity: np.ndarray | None = None,
        src_velocities: list[np.ndarray | None] | None = None,
        src_pose_covariances: list[np.ndarray | None] | None = None,
    ) -> DepthEstimate:
        """Depth, sigma and validity of ``ref_image`` (RGB uint8 or float in [0, 1], or grey (H, W)) taken
        by ``camera`` at ``ref_T_wc``, from source images of the same camera at ``src_T_wcs``.

        Sources in which no point within the sweep shows ``min_parallax`` are left out; with none left
        (sources at the reference's pose, a pure rotation) every pixel is invalid.

        ``ref_velocity`` and ``src_velocities`` are the images' body velocities for a rolling shutter
        (``StereoConfig.readout_s``): twists ``(v, w)`` in m/s and rad/s with ``T_wc(t + tau) = T_wc(t)
        exp_se3(tau xi)`` (:mod:`heightfusion.tracking.se3`). None (or ``readout_s`` 0): a global shutter.

        ``src_pose_covariances``: for each source, the 6x6 covariance of the error of its pose relative to the
        reference's (a twist (v, w), metres and radians, in the source camera's frame, that moves the
        points the source sees by v + w x X; :func:`heightfusion.fusion.pose_uncertainty.relative_pose_covariance`
        makes it from the two poses' own covariances), or None where the poses are exact. The estimate's
        ``pose_sigma`` is then the depth error it causes: a relative rotation error of 0.5 deg moves the match
        by 2.3 px at 320x240, which over a 15 px parallax is 15 % of the depth. Validity rests on the match alone.

        Raises:
            ValueError: an image does not match the camera's size, the numbers of source images and
                poses (or velocities) differ, there is no source, a pose is not rigid, a velocity is not 6
                finite numbers, or ``planes="ground"`` with the camera not above ``max_height``.
        """
        if not isinstance(camera, PinholeCamera):  # the order before 0.2: (ref_image, ref_T_wc, src_images, src_T_wcs, camera)
            deprecated_order("PlaneSweepStereo.estimate(ref_image, ref_T_wc, src_images, src_T_wcs, camera)",
                             "estimate(camera, ref_T_wc, ref_image, src_images, src_T_wcs)")
            camera, ref_image, src_images, src_T_wcs = src_T_wcs, camera, ref_image, src_images
        if src_velocities is not None and len(src_velocities) != len(src_images):
            raise ValueError(f"{len(src_images)} source images but {len(src_velocities)} source velocities")
        if src_pose_covariances is not None and len(src_pose_covariances) != len(src_images):
            raise ValueError(f"{len(src_images)} source images but {len(src_pose_covariances)} source pose covariances")
        covariances = [_checked_covariance(c, f"src_pose_covariances[{i}]")
                       for i, c in enumerate(src_pose_covariances or [None] * len(src_images))]
        velocities = [_checked_velocity(ref_velocity, "ref_velocity")] + [
            _checked_velocity(v, f"src_velocities[{i}]")
            for i, v in enumerate(src_velocities or [None] * len(src_images))]
        with torch_threads(self.config.threads):
            return self._estimate(camera, ref_T_wc, ref_image, src_images, src_T_wcs, velocities, covariances)

    def _estimate(
        self,
        camera: PinholeCamera,
        ref_T_wc: np.ndarray,
        ref_image: np.ndarray,
        src_images: list[np.ndarray],
        src_T_wcs: list[np.ndarray],
        velocities: list[np.ndarray | None],
        covariances: list[np.ndarray | None],
    ) -> DepthEstimate:
        cfg = self.config
        if len(src_images) != len(src_T_wcs):
            raise ValueError(f"{len(src_images)} source images but {len(src_T_wcs)} source poses")
        if not src_images:
            raise ValueError("stereo needs at least one source frame")
        ref_T_wc = validate_pose(ref_T_wc, "ref_T_wc")
        src_T_wcs = [validate_pose(T, f"src_T_wcs[{i}]") for i, T in enumerate(src_T_wcs)]
        ref_gray = self._gray(ref_image, camera, "ref_image")
        src_features = [self._source_features(image, camera, f"src_images[{i}]") for i, image in enumerate(src_images)]

        planes = _make_planes(cfg, ref_T_wc, camera, self.device)
        ref_features, ref_std = _normalise(ref_gray, cfg.window, cfg.texture_eps)
        textured = (ref_std >= cfg.min_texture) & (planes.weight > 0)
        sources = self._sources(src_features, src_T_wcs, ref_T_wc, camera, planes, velocities, covariances)
        if not sources or not bool(textured.any()):
            return DepthEstimate.invalid(camera.shape)

        if cfg.coarse_to_fine and min(camera.shape) >= 2 * _MIN_COARSE_SIDE:
            labels, cost, total, checked = self._refined(camera, ref_gray, sources, planes, ref_features)
            check_scale = 2
        else:
            labels = None
            cost = _sweep(ref_features, sources, planes, cfg)
            total = checked = _regularise(cost, ref_gray, cfg)
            check_scale = 1
        choice, offset, curvature = _winner(total)
        winner = choice if labels is None else _at(labels, choice)
        position = winner.float() + offset
        rho = (planes.s[0] + position * planes.step) * planes.weight
        depth = 1.0 / rho.clamp_min(1e-12)
        steps_sigma = _sigma_steps(curvature, _pixels_per_step(sources, planes, rho), cfg)
        sigma = steps_sigma * abs(planes.step) * planes.weight * depth**2
        pose_sigma = _pose_rho_sigma(sources, rho, camera, ref_gray)
        parallax = torch.stack([_parallax(source, rho) for source in sources]).amax(0)

        valid = textured & (winner > 0) & (winner < cfg.num_hypotheses - 1) & (rho > 0)
        valid &= (_at(cost, choice) <= cfg.max_cost) & (parallax >= cfg.min_parallax)
        valid &= (sigma > 0) & (sigma <= cfg.max_relative_sigma * depth)
        if labels is not None:
            # At the band's end the minimum may lie beyond it, and the parabola has no neighbour there.
            valid &= (choice > 0) & (choice < 2 * cfg.refine_band)
        if math.isfinite(cfg.consistency):
            valid &= self._left_right(checked, check_scale, winner, rho, valid, sources, planes, camera)
            valid &= _supported(position, valid, cfg.consistency, cfg.support)
        return _to_numpy(depth, sigma, valid, None if pose_sigma is None else pose_sigma * depth**2)

    def _left_right(
        self, total: torch.Tensor, scale: int, winner: torch.Tensor, rho: torch.Tensor, valid: torch.Tensor,
        sources: list[_Source], planes: _Planes, camera: PinholeCamera,
    ) -> torch.Tensor:
        """(H, W) bool: the winner agrees with the winner along the ray of one of the :data:`_CHECK_SOURCES`
        sources that see most of the ``valid`` pixels (at ``rho``): the left-right check on the aggregated
        cost ``total`` (D, H', W') of every ``scale``-th reference pixel."""
        # A pixel must agree with one source that sees it: others may see an occluder there.
        padded = F.pad(total, (1, 1, 1, 1), value=math.inf)[:, None]
        consistent = torch.zeros_like(valid)
        for source in _most_seeing(sources, rho, valid, _CHECK_SOURCES):
            consistent |= _left_right_consistent(padded, scale, winner, source, planes, camera, self.config.consistency)
        return consistent

    def _refined(
        self,
        camera: PinholeCamera,
        ref_gray: torch.Tensor,
        sources: list[_Source],
        planes: _Planes,
        ref_features: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Coarse to fine (``StereoConfig.coarse_to_fine``): (labels, cost, total, coarse_total).

        The full sweep and semi-global matching run at every other pixel (rows and columns) of the
        reference: ``coarse_total`` (D, h, w). Its features keep the full resolution's texture, and the
        source lookups are the same, at a quarter of the pixels. The matching cost is then evaluated at
        every pixel only on the (2 band + 1, H, W) ``labels`` (hypothesis numbers) around the coarse winner
        of the pixel's 2x2 block, and ``total`` adds the coarse smoothness at those labels.
        """
        cfg = self.config
        every = (slice(None), slice(None, None, 2), slice(None, None, 2))
        coarse_planes = replace(planes, weight=planes.weight[every[1:]])
        coarse_sources = [replace(source, a=source.a[every].contiguous(), a_px=source.a_px[every],
                                  b=source.b[every].contiguous(), b_px=source.b_px[every]) for source in sources]
        coarse_cost = _sweep(ref_features[every[1:]].contiguous(), coarse_sources, coarse_planes, cfg)
        coarse_total = _semi_global(coarse_cost, ref_gray[every[1:]], cfg.p1, cfg.p2, cfg.edge_contrast)
        coarse_winner = _argmin(coarse_total)[1]
        smoothness = coarse_total - coarse_cost * _PATHS
        band = torch.arange(-cfg.refine_band, cfg.refine_band + 1, device=self.device)[:, None, None]
        labels = (_expand_blocks(coarse_winner, camera.shape)[None] + band).clamp_(0, cfg.num_hypotheses - 1)
        cost = _sweep(ref_features, sources, planes, cfg, labels)
        return labels, cost, _band_smoothness(smoothness, labels).add_(cost, alpha=_PATHS), coarse_total

    def _gray(self, image: np.ndarray, camera: PinholeCamera, name: str) -> torch.Tensor:
        """(H, W) float32 grey in [0, 1] on the device; ValueError unless the image matches ``camera``."""
        array = np.asarray(image)
        if array.shape[:2] != camera.shape or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
            raise ValueError(f"{name} has shape {array.shape}, expected {camera.shape} grey or {camera.shape + (3,)} RGB")
        values = torch.from_numpy(np.ascontiguousarray(array)).to(self.device, torch.float32)
        if array.dtype == np.uint8:
            values = values / 255.0
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        if values.ndim == 3:
            values = values @ torch.from_numpy(GRAY_WEIGHTS).to(self.device)
        return values.contiguous()

    def _source_features(self, image: np.ndarray, camera: PinholeCamera, name: str) -> torch.Tensor:
        """:func:`_lookup_features` of a source image (checked as :meth:`_gray` does), from the cache if kept."""
        cfg = self.config

        def make() -> torch.Tensor:
            return _lookup_features(self._gray(image, camera, name), cfg)

        if self.source_cache is None:
            return make()
        return self.source_cache.get(image, (camera.shape, cfg.window, cfg.texture_eps, str(self.device)), make)

    def _sources(
        self,
        features: list[torch.Tensor],
        T_wcs: list[np.ndarray],
        ref_T_wc: np.ndarray,
        camera: PinholeCamera,
        planes: _Planes,
        velocities: list[np.ndarray | None],
        covariances: list[np.ndarray | None],
    ) -> list[_Source]:
        """The sources in which the nearest plane shows ``min_parallax`` somewhere (others cannot help);
        ``velocities``: the reference's, then the sources'; ``covariances``: the sources' (:meth:`estimate`)."""
        cfg = self.config
        sources = []
        for fine, T_wc, velocity, covariance in zip(features, T_wcs, velocities[1:], covariances):
            motion = _RowMotion(cfg.readout_s, velocities[0], velocity)
            source = _make_source(fine, T_wc, ref_T_wc, camera, self.device, motion, covariance)
            if bool((_parallax(source, planes.s[-1] * planes.weight) >= cfg.min_parallax).any()):
                sources.append(source)
        return sources


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` names; "auto": the first CUDA device where torch sees one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run torch's CPU kernels on ``threads`` threads inside the block (None: all cores but one), then
    restore the caller's setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads if threads is not None else max(1, (os.cpu_count() or 1) - 1))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def nominal_depth(config: StereoConfig, camera: PinholeCamera, T_wc: np.ndarray) -> float:
    """A typical scene depth, metres, before anything is measured: the median depth of the sweep's middle plane.

    The middle plane is the middle of the sweep in ``s`` (inverse depth for fronto-parallel planes,
    inverse distance below the camera for horizontal ones); the median is over the pixels that see it
    (its distance along the normal if none does).
    """
    planes = _make_planes(config, validate_pose(T_wc), camera, torch.device("cpu"))
    middle = float(planes.s.mean())
    rho = middle * planes.weight
    seen = rho > 0
    return float((1.0 / rho[seen]).median()) if bool(seen.any()) else 1.0 / middle


# --- geometry ---------------------------------------------------------------------------------------
def _homogeneous_map(M: np.ndarray, camera: PinholeCamera, device: torch.device, stride: int = 1) -> torch.Tensor:
    """(n, H', W') float32 ``M @ (u, v, 1)`` for the pixels (u, v) at every ``stride``-th row and column.

    ``M`` is (n, 3), or (H', n, 3): a matrix per row. Written out with broadcast rows and columns: faster on
    a CPU than a matmul with 3 rows, and exact enough (float32) for pixel coordinates.
    """
    M = np.asarray(M, dtype=np.float64)
    u = torch.arange(0, camera.width, stride, dtype=torch.float32, device=device)[None, :]
    v = torch.arange(0, camera.height, stride, dtype=torch.float32, device=device)[:, None]
    if M.ndim == 2:
        return torch.stack([float(row[0]) * u + (float(row[1]) * v + float(row[2])) for row in M])
    per_row = torch.as_tensor(M, dtype=torch.float64, device=device)
    u, v = u.double(), v.double()
    return torch.stack([per_row[:, i, 0:1] * u + (per_row[:, i, 1:2] * v + per_row[:, i, 2:3])
                        for i in range(M.shape[1])]).float()


def _make_planes(cfg: StereoConfig, ref_T_wc: np.ndarray, camera: PinholeCamera, device: torch.device) -> _Planes:
    """The plane family of ``cfg`` for a reference camera at ``ref_T_wc``."""
    if cfg.planes == "fronto":
        normal = np.array([0.0, 0.0, 1.0])
        s_near, s_far = 1.0 / cfg.min_depth, 1.0 / cfg.max_depth
    elif cfg.planes == "below":  # the world plane d below the camera is (-r3) . X = d
        normal = -ref_T_wc[2, :3]
        s_near, s_far = 1.0 / cfg.min_depth, 1.0 / cfg.max_depth
    else:
        # World plane z = h is (-r3) . X = cz - h in the camera, r3 the third row of R_wc.
        normal = -ref_T_wc[2, :3]
        cz = ref_T_wc[2, 3]
        if not cz - cfg.max_height > 1e-3:
            raise ValueError(
                f"ground planes need the camera above max_height: camera at z = {cz:.3f} m, "
                f"max_height = {cfg.max_height} m"
            )
        s_near, s_far = 1.0 / (cz - cfg.max_height), 1.0 / (cz - cfg.min_height)
    weight = _homogeneous_map(normal[None, :] @ np.linalg.inv(camera.K), camera, device)[0]
    s = torch.linspace(s_far, s_near, cfg.num_hypotheses, dtype=torch.float64, device=device)
    return _Planes(normal, s.float(), weight)


def _lookup_features(gray: torch.Tensor, cfg: StereoConfig) -> torch.Tensor:
    """(1, 1, (H - 1) * up + 3, (W - 1) * up + 3) locally normalised features of a source's (H, W) grey image,
    upsampled :data:`_LOOKUP_UPSAMPLE` times for the lookups, with a border of "no data"."""
    features, _ = _normalise(gray, cfg.window, cfg.texture_eps)
    up = _LOOKUP_UPSAMPLE
    size = ((gray.shape[0] - 1) * up + 1, (gray.shape[1] - 1) * up + 1)
    # align_corners=True puts upsampled pixel j at source coordinate j / up: pixel centres stay exact.
    fine = F.interpolate(features[None, None], size=size, mode="bilinear", align_corners=True)[0, 0]
    fine = F.pad(fine, (1, 1, 1, 1), value=_NO_DATA)  # a border of "no data" that clamped lookups land on
    return fine[None, None].contiguous()


@dataclass(frozen=True)
class _RowMotion:
    """The images' motion during a rolling shutter's readout (``StereoConfig.readout_s``): the body velocities
    of a reference and a source image, each None where unknown (that image then taken at once)."""

    readout_s: float
    ref_velocity: np.ndarray | None
    src_velocity: np.ndarray | None

    @property
    def rolling(self) -> bool:
        return self.readout_s > 0 and (self.ref_velocity is not None or self.src_velocity is not None)


def _checked_velocity(velocity: np.ndarray | None, name: str) -> np.ndarray | None:
    """``velocity`` as 6 float64, or None; ValueError naming ``name`` unless it is 6 finite numbers."""
    if velocity is None:
        return None
    array = np.asarray(velocity, dtype=np.float64)
    if array.shape != (6,) or not np.isfinite(array).all():
        raise ValueError(f"{name} must be a body velocity (v, w) of 6 finite numbers, got {velocity!r}")
    return array


def _checked_covariance(covariance: np.ndarray | None, name: str) -> np.ndarray | None:
    """``covariance`` as a 6x6 float64 array, or None; ValueError naming ``name`` unless it is a finite,
    symmetric 6x6 matrix."""
    if covariance is None:
        return None
    array = np.asarray(covariance, dtype=np.float64)
    if array.shape != (6, 6) or not np.isfinite(array).all() or not np.allclose(array, array.T, rtol=1e-6, atol=1e-12):
        raise ValueError(f"{name} must be a finite symmetric 6x6 covariance, got shape {array.shape}")
    return array


def _make_source(
    fine: torch.Tensor,
    T_wc: np.ndarray,
    ref_T_wc: np.ndarray,
    camera: PinholeCamera,
    device: torch.device,
    motion: _RowMotion | None = None,
    pose_covariance: np.ndarray | None = None,
) -> _Source:
    """Warp coefficients of one source frame, with its :func:`_lookup_features` ``fine``; per reference row
    where ``motion`` is a rolling shutter's."""
    T_sr = invert_pose(T_wc) @ ref_T_wc
    K, K_inv = camera.K, np.linalg.inv(camera.K)
    if motion is not None and motion.rolling:
        height = camera.height
        rows = (np.arange(height) + 0.5) / height
        # A point of reference row v is seen in the source near the row that its ray's point at infinity
        # lands on (parallax moves it a few rows: a few percent of the readout); its middle column stands in.
        middle = np.stack([np.full(height, (camera.width - 1) / 2), np.arange(height), np.ones(height)])
        ray = K @ T_sr[:3, :3] @ K_inv @ middle
        landing = np.where(ray[2] > 1e-9, (ray[1] / np.where(ray[2] > 1e-9, ray[2], 1.0) + 0.5) / height, 0.5)
        src_rows = row_poses(T_wc, motion.src_velocity, np.clip(landing, 0.0, 1.0), motion.readout_s)
        T_sr_rows = np.linalg.inv(src_rows) @ row_poses(ref_T_wc, motion.ref_velocity, rows, motion.readout_s)
    else:
        T_sr_rows = T_sr[None]
    A = K @ T_sr_rows[:, :3, :3] @ K_inv
    b_px = K @ T_sr_rows[:, :3, 3:]

    up = _LOOKUP_UPSAMPLE
    rows, columns = fine.shape[-2:]
    # Source pixel u is column u * up + 1 of ``fine``; grid_sample (align_corners=True) wants
    # 2 * column / (columns - 1) - 1. Folding that affine map into the homography saves an op per lookup.
    scale = np.array([2 * up / (columns - 1), 2 * up / (rows - 1), 1.0])
    shift = np.array([2 / (columns - 1) - 1, 2 / (rows - 1) - 1, 0.0])
    to_grid = np.diag(scale) + np.outer(shift, [0.0, 0.0, 1.0])
    def per_row(M: np.ndarray) -> np.ndarray:  # one matrix for every row, or the (n, 3) of all rows
        return M if len(M) > 1 else M[0]

    def column(b: np.ndarray) -> torch.Tensor:  # (rows, 3, 1) -> (3, rows, 1)
        return torch.as_tensor(np.transpose(b, (1, 0, 2)), dtype=torch.float32, device=device).contiguous()

    return _Source(
        features=fine,
        a=_homogeneous_map(per_row(to_grid @ A), camera, device),
        b=column(to_grid @ b_px),
        a_px=_homogeneous_map(per_row(A), camera, device),
        b_px=column(b_px),
        T_sr=T_sr,
        pose_covariance=pose_covariance,
    )


def _project(a: torch.Tensor, b: torch.Tensor, rho: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inhomogeneous (x, y) of ``a + rho * b``; points behind the camera land far outside any image."""
    den = (a[2] + rho * b[2]).clamp_min(1e-6)
    return (a[0] + rho * b[0]) / den, (a[1] + rho * b[1]) / den


def _parallax(source: _Source, rho: torch.Tensor) -> torch.Tensor:
    """(H, W) pixels between the match in ``source`` of the point at inverse depth ``rho`` and of the point
    at infinity on the same ray: the disparity that measures depth (0 for no translation, at the epipole,
    or where ``rho`` is not positive)."""
    x, y = _project(source.a_px, source.b_px, rho)
    x_inf, y_inf = _project(source.a_px, source.b_px, torch.zeros_like(rho))
    parallax = torch.nan_to_num(torch.hypot(x - x_inf, y - y_inf))
    return torch.where(rho > 0, parallax, torch.zeros_like(parallax))


def _most_seeing(sources: list[_Source], rho: torch.Tensor, valid: torch.Tensor, count: int) -> list[_Source]:
    """The ``count`` sources in whose image most of the ``valid`` pixels' points (at ``rho``) land."""
    height, width = valid.shape
    seen = []
    for source in sources:
        x, y = _project(source.a_px, source.b_px, rho)
        inside = (x > -0.5) & (x < width - 0.5) & (y > -0.5) & (y < height - 0.5)
        seen.append(int((inside & valid).sum()))
    order = sorted(range(len(sources)), key=lambda i: -seen[i])
    return [sources[i] for i in order[:count]]


def _pixels_per_step(sources: list[_Source], planes: _Planes, rho: torch.Tensor) -> torch.Tensor:
    """(H, W) pixels the match moves per hypothesis step at inverse depth ``rho``, largest over the sources."""
    step = abs(planes.step) * planes.weight
    best = torch.zeros_like(rho)
    for source in sources:
        x0, y0 = _project(source.a_px, source.b_px, rho)
        x1, y1 = _project(source.a_px, source.b_px, rho + step)
        best = torch.maximum(best, torch.nan_to_num(torch.hypot(x1 - x0, y1 - y0)))
    return best


# --- matching cost ----------------------------------------------------------------------------------
def _box_sum(x: torch.Tensor, size: int) -> torch.Tensor:
    """Sum over a size x size box (zero padding) of the last two dimensions, by shifted adds (fast on CPU)."""
    if size == 1:
        return x
    r = size // 2
    height, width = x.shape[-2:]
    padded = F.pad(x, (r, r, r, r))
    rows = padded[..., :, 0:width] + padded[..., :, 1 : 1 + width]
    for i in range(2, size):
        rows += padded[..., :, i : i + width]
    out = rows[..., 0:height, :] + rows[..., 1 : 1 + height, :]
    for i in range(2, size):
        out += rows[..., i : i + height, :]
    return out


def _normalise(gray: torch.Tensor, window: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Locally normalised image (I - mean) / (std + eps) and the local std, over ``window`` x ``window``."""
    count = _box_sum(torch.ones_like(gray), window)
    mean = _box_sum(gray, window) / count
    var = (_box_sum(gray * gray, window) / count - mean * mean).clamp_min(0.0)
    std = var.sqrt()
    return (gray - mean) / (std + eps), std


def _sweep(
    ref_features: torch.Tensor, sources: list[_Source], planes: _Planes, cfg: StereoConfig, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """(D, H, W) matching cost: box mean of the best-k mean truncated feature difference over the sources.

    D planes: every plane of the sweep, or per pixel the hypothesis numbers ``labels`` (D, H, W) give.
    """
    height, width = ref_features.shape
    k = min(cfg.best_k, len(sources))
    count = cfg.num_hypotheses if labels is None else labels.shape[0]
    cost = torch.empty(count, height, width, device=ref_features.device)
    chunk = max(1, _CHUNK_ELEMENTS // (height * width))
    coords = torch.empty(2, min(chunk, count), height, width, device=ref_features.device)
    for k0 in range(0, count, chunk):
        s = planes.s[k0 : k0 + chunk, None, None] if labels is None else planes.s[labels[k0 : k0 + chunk]]
        rho = s * planes.weight
        best: list[torch.Tensor] = []
        for source in sources:
            _insert_smallest(best, _source_difference(ref_features, source, rho, coords[:, : len(rho)]), k)
        cost[k0 : k0 + chunk] = _box_sum(_mean_seen(best, cfg.truncation), cfg.aggregation) / cfg.aggregation**2
    return cost


def _source_difference(ref_features: torch.Tensor, source: _Source, rho: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """(Dc, H, W) |feature difference| of the reference and one source on the planes ``rho``; >= _NO_DATA / 2 off the image.

    ``coords`` (2, Dc, H, W) is scratch space for the lookup coordinates.
    """
    chunk, height, width = rho.shape
    return _lookup(source.features, source.a, source.b, rho, coords).view(chunk, height, width).sub_(ref_features).abs_()


def _lookup(
    image: torch.Tensor, a: torch.Tensor, b: torch.Tensor, rho: torch.Tensor, coords: torch.Tensor
) -> torch.Tensor:
    """Nearest values of ``image`` (N, 1, h, w) at the grid_sample coordinates of ``a + rho * b`` (see :class:`_Source`).

    With N = 1 every slice of ``rho`` (Dc, H, W) looks into the one image, with N = Dc slice i into image i.
    The coordinates are written as two planes of ``coords`` (2, Dc, H, W) that ``grid_sample`` reads
    through an interleaved view: faster on a CPU than writing them interleaved.
    """
    chunk, _, width = rho.shape
    den = torch.addcmul(a[2], rho, b[2]).clamp_min_(1e-6)
    torch.div(torch.addcmul(a[0], rho, b[0]), den, out=coords[0])
    torch.div(torch.addcmul(a[1], rho, b[1]), den, out=coords[1])
    grid = coords.permute(1, 2, 3, 0).reshape(1 if image.shape[0] == 1 else chunk, -1, width, 2)
    return F.grid_sample(image, grid, mode="nearest", padding_mode="border", align_corners=True)


def _mean_seen(best: list[torch.Tensor], truncation: float) -> torch.Tensor:
    """Mean of the truncated differences in ``best`` (ascending) over the sources that see the point.

    Averaging only the sources that see a hypothesis keeps a point near the border that one source
    sees from losing to wrong depths that more sources happen to see. Truncating after choosing the
    k best is the same as before (it is monotonic) and leaves "off the image" recognisable; as ``best``
    is ascending, the sources that see the point come first, and a point no source sees costs the
    truncation.
    """
    running = best[0].clamp_max(truncation)
    mean = running
    for count, difference in enumerate(best[1:], start=2):
        running = running + difference.clamp_max(truncation)
        mean = torch.where(difference < _NO_DATA / 2, running / count, mean)
    return mean


def _insert_smallest(best: list[torch.Tensor], cost: torch.Tensor, k: int) -> None:
    """Keep ``best`` the element-wise ``k`` smallest costs seen so far, in ascending order."""
    for i in range(len(best)):
        low = torch.minimum(best[i], cost)
        if i + 1 < k:  # what the last slot pushes out is dropped: no need to compute it
            cost = torch.maximum(best[i], cost)
        best[i] = low
    if len(best) < k:
        best.append(cost)


def _at(volume: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(H, W) values of a (D, H, W) volume at per-pixel hypothesis ``index`` (H, W)."""
    return volume.gather(0, index[None])[0]


# --- semi-global matching ---------------------------------------------------------------------------
def _regularise(cost: torch.Tensor, guide: torch.Tensor, cfg: StereoConfig) -> torch.Tensor:
    """(D, H, W) aggregated cost: semi-global matching, on blocks of ``sgm_scale`` pixels.

    At scale s > 1 the paths run on the cost averaged over s x s blocks, and what they add to it (the
    smoothness each hypothesis pays) is copied back onto the block's pixels of the full-resolution
    cost: s^2 times less work in the sequential part, while the full-resolution matching cost still
    places the edges. (Pixels past the last whole block share the nearest block's smoothness.)
    """
    scale = cfg.sgm_scale
    if scale == 1:
        return _semi_global(cost, guide, cfg.p1, cfg.p2, cfg.edge_contrast)
    coarse, coarse_guide = _block_mean(cost, scale), _block_mean(guide, scale)
    smoothness = _semi_global(coarse, coarse_guide, cfg.p1, cfg.p2, cfg.edge_contrast).sub_(coarse, alpha=_PATHS)
    total = F.interpolate(smoothness[None], size=cost.shape[1:], mode="nearest")[0]
    return total.add_(cost, alpha=_PATHS)


def _block_mean(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Mean over the whole ``scale`` x ``scale`` blocks of the last two dimensions (strided adds: fast on CPU)."""
    height, width = x.shape[-2] // scale * scale, x.shape[-1] // scale * scale
    total = x[..., 0:height:scale, 0:width:scale].clone()
    for dy in range(scale):
        for dx in range(scale):
            if dy or dx:
                total += x[..., dy:height:scale, dx:width:scale]
    return total.div_(scale * scale)


def _expand_blocks(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(H, W) = ``shape`` values of the 2x2 block each pixel belongs to: pixel (y, x) takes ``x[y // 2, x // 2]``
    of ``x`` (h, w), sampled at every other pixel; rows or columns past ``x``'s take its last."""
    rows = (torch.arange(shape[0], device=x.device) // 2).clamp_max_(x.shape[0] - 1)
    columns = (torch.arange(shape[1], device=x.device) // 2).clamp_max_(x.shape[1] - 1)
    return x[rows[:, None], columns[None, :]]


def _band_smoothness(smoothness: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, H, W) coarse ``smoothness`` (D, h, w) of each pixel's 2x2 block at the hypotheses ``labels`` (B, H, W)."""
    depth, rows, columns = smoothness.shape
    height, width = labels.shape[1:]
    block = _expand_blocks(torch.arange(rows * columns, device=labels.device).view(rows, columns), (height, width))
    return smoothness.reshape(-1).take(labels * (rows * columns) + block)


def _semi_global(cost: torch.Tensor, guide: torch.Tensor, p1: float, p2: float, contrast: float) -> torch.Tensor:
    """(D, H, W) sum of the :data:`_PATHS` path costs of semi-global matching along columns and rows, both ways;
    on a CUDA device replayed from a CUDA graph (:mod:`.graphs`: the steps' operator launches would
    otherwise take most of the stereo's time)."""
    if not cost.is_cuda:
        return _semi_global_ops(cost, guide, p1=p1, p2=p2, contrast=contrast)
    # A graph is captured per shape, and predicted sweeps vary in hypotheses: padded to a multiple of
    # _GRAPH_HYPOTHESES with infinite cost, which no path ever takes, a few graphs serve them all.
    depth = cost.shape[0]
    padded = F.pad(cost, (0, 0, 0, 0, 0, -depth % _GRAPH_HYPOTHESES), value=math.inf)
    return _GRAPHED_SEMI_GLOBAL(padded, guide, p1=p1, p2=p2, contrast=contrast)[:depth]


def _semi_global_ops(cost: torch.Tensor, guide: torch.Tensor, *, p1: float, p2: float, contrast: float) -> torch.Tensor:
    """:func:`_semi_global` operator by operator.

    Paths run along dimension 1 of a (D, n, m) volume, so that each step reads a (D, 2, m) slab of
    whole image rows; the row paths run on a transposed copy.
    """
    total = torch.zeros_like(cost)
    _paths(cost, total, guide, p1, p2, contrast)
    transposed = torch.zeros(cost.shape[0], cost.shape[2], cost.shape[1], device=cost.device)
    _paths(cost.transpose(1, 2).contiguous(), transposed, guide.t(), p1, p2, contrast)
    return total.add_(transposed.transpose(1, 2))


_GRAPHED_SEMI_GLOBAL = GraphedFunction(_semi_global_ops)


def _paths(cost: torch.Tensor, total: torch.Tensor, guide: torch.Tensor, p1: float, p2: float, contrast: float) -> None:
    """Add to ``total`` the semi-global paths along dimension 1 of ``cost`` (D, n, m), forward and backward.

    Both directions advance together (row i and row n - 1 - i form one slab), halving the Python steps.
    """
    n = cost.shape[1]
    # Penalty of a large jump onto path position i >= 1, for the forward path and the backward one: (n - 1, 2, m).
    jump = p1 + (p2 - p1) / (1.0 + (guide[1:] - guide[:-1]).abs() / contrast)
    penalty = torch.stack([jump, jump.flip(0)], dim=1)
    order = torch.arange(n, device=cost.device)
    rows = torch.stack([order, order.flip(0)], dim=1)
    path = cost.index_select(1, rows[0])
    total.index_add_(1, rows[0], path)
    for i in range(1, n):
        previous_min = path.amin(0, keepdim=True)
        candidate = torch.minimum(path, previous_min + penalty[i - 1])
        shifted = path + p1
        torch.minimum(candidate[1:], shifted[:-1], out=candidate[1:])
        torch.minimum(candidate[:-1], shifted[1:], out=candidate[:-1])
        path = cost.index_select(1, rows[i]).add_(candidate.sub_(previous_min))
        total.index_add_(1, rows[i], path)


# --- winner, checks, sigma --------------------------------------------------------------------------
def _argmin(volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(minimum, index of the first minimum) over dimension 0 of a (D, H, W) volume.

    ``amin`` plus a masked ``amin`` of the hypothesis numbers: several times faster on CPU than ``argmin``.
    """
    minimum = volume.amin(0)
    numbers = torch.arange(volume.shape[0], dtype=volume.dtype, device=volume.device)[:, None, None]
    index = torch.where(volume == minimum, numbers, math.inf).amin(0)
    return minimum, index.long()


def _winner(total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Winning hypothesis (H, W) int64, its parabola offset in [-0.5, 0.5] and the cost curvature there."""
    depth = total.shape[0]
    _, winner = _argmin(total)
    inner = winner.clamp(1, depth - 2)
    left, centre, right = _at(total, inner - 1), _at(total, inner), _at(total, inner + 1)
    curvature = left - 2 * centre + right
    offset = torch.where(curvature > 0, (left - right) / (2 * curvature).clamp_min(1e-12), torch.zeros_like(curvature))
    return winner, offset.clamp(-0.5, 0.5), curvature


def _left_right_consistent(
    padded: torch.Tensor,
    scale: int,
    winner: torch.Tensor,
    source: _Source,
    planes: _Planes,
    camera: PinholeCamera,
    tolerance: float,
) -> torch.Tensor:
    """(H, W) bool: the winner agrees with the winner of the source pixel it projects to (occlusion check).

    ``padded`` is the (D, 1, H' + 2, W' + 2) aggregated cost of every ``scale``-th reference pixel (rows and
    columns) with a border of +inf, where lookups off the reference image land. The source's winners are
    found at every :data:`_CHECK_STRIDE`-th pixel.

    The source's winner at pixel q is the best plane along q's ray: plane k maps q back to the reference
    pixel ``H_k^-1 q``, where the reference's aggregated cost of plane k is looked up. By
    Sherman-Morrison, ``H_k^-1 q ~ e(q) - t_k (n'.e(q)) f`` with e = A^-1 q, f = A^-1 K t, n' = K^-T n
    and ``t_k = s_k / (1 + s_k n'.f)``: the same form as the forward warp, one lookup per plane.
    """
    depth, height, width = padded.shape[0], camera.height, camera.width
    volume_rows, volume_columns = padded.shape[2] - 2, padded.shape[3] - 2
    device = padded.device
    K = camera.K
    A_inv = np.linalg.inv(K @ source.T_sr[:3, :3] @ np.linalg.inv(K))
    f = A_inv @ K @ source.T_sr[:3, 3]
    n_img = np.linalg.inv(K).T @ planes.normal
    # Reference pixel (x, y) is column x / scale + 1 of the inf-padded volume, at grid_sample coordinate
    # 2 (x / scale + 1) / (W' + 1) - 1; fold that into e and f as in _make_source.
    to_grid = np.array([[2 / (scale * (volume_columns + 1)), 0, 2 / (volume_columns + 1) - 1],
                        [0, 2 / (scale * (volume_rows + 1)), 2 / (volume_rows + 1) - 1], [0, 0, 1]])
    e_n = _homogeneous_map(n_img[None, :] @ A_inv, camera, device, _CHECK_STRIDE)[0]
    e = _homogeneous_map(to_grid @ A_inv, camera, device, _CHECK_STRIDE)
    f_grid = torch.as_tensor(-(to_grid @ f), dtype=torch.float32, device=device)[:, None, None]
    s = planes.s.double().cpu().numpy()
    denominator = 1.0 + s * float(n_img @ f)
    # A plane through the source's centre (denominator 0) is seen edge-on; a tiny denominator sends
    # its lookups off the volume, onto the infinite border, so it never wins.
    t = s / np.where(np.abs(denominator) > 1e-9, denominator, 1e-9)

    rows, columns = e_n.shape
    chunk = max(1, _CHUNK_ELEMENTS // (rows * columns))
    coords = torch.empty(2, chunk, rows, columns, device=device)
    best_cost = torch.full((rows, columns), math.inf, device=device)
    best_plane = torch.zeros((rows, columns), dtype=torch.int64, device=device)
    for k0 in range(0, depth, chunk):
        k1 = min(k0 + chunk, depth)
        rho = torch.as_tensor(t[k0:k1], dtype=torch.float32, device=device)[:, None, None] * e_n
        looked_up = _lookup(padded[k0:k1], e, f_grid, rho, coords[:, : k1 - k0])[:, 0]
        chunk_cost, chunk_plane = _argmin(looked_up)
        better = chunk_cost < best_cost
        best_cost = torch.where(better, chunk_cost, best_cost)
        best_plane = torch.where(better, chunk_plane + k0, best_plane)

    rho = planes.s[winner] * planes.weight
    x, y = _project(source.a_px, source.b_px, rho)
    inside = (x > -0.5) & (x < width - 0.5) & (y > -0.5) & (y < height - 0.5)
    column = (x / _CHECK_STRIDE).round().clamp(0, columns - 1).long()
    row = (y / _CHECK_STRIDE).round().clamp(0, rows - 1).long()
    return inside & ((best_plane[row, column] - winner).abs() <= tolerance)


def _supported(position: torch.Tensor, valid: torch.Tensor, tolerance: float, share: float) -> torch.Tensor:
    """(H, W) bool: enough valid 5x5 neighbours lie within ``tolerance`` hypotheses of ``position`` (no speckle).

    Enough: at least ``share`` of the valid neighbours and at least a third of the window.
    """
    height, width = position.shape
    r = _SUPPORT_RADIUS
    weight = F.pad(valid.to(position.dtype), (r, r, r, r))
    values = F.pad(position, (r, r, r, r))
    neighbours = torch.zeros_like(position)
    agreeing = torch.zeros_like(position)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            if dy == r and dx == r:
                continue
            present = weight[dy : dy + height, dx : dx + width]
            neighbours += present
            agreeing += present * ((values[dy : dy + height, dx : dx + width] - position).abs() <= tolerance)
    window = (2 * r + 1) ** 2 - 1
    return (agreeing >= share * neighbours) & (3 * agreeing >= window)


def _pose_rho_sigma(sources: list[_Source], rho: torch.Tensor, camera: PinholeCamera,
                    ref_gray: torch.Tensor) -> torch.Tensor | None:
    """(H, W) standard deviation of inverse depth (1/m) that the sources' pose errors cause at ``rho``, or None
    when no source has a ``pose_covariance``.

    A source's relative pose errs by a twist (v, w) (source camera frame) that moves the reference's point X
    (source frame) by v + w x X, and its match in the source image by J (v, w) pixels. Along the epipolar
    line e that shift is taken for depth. Across it (n) it is too where the texture is slanted: the match
    that best fits a pattern shifted by d along n lies k d along e, k = S_en / S_ee from the reference's
    structure tensor S over the matching's support (least squares on the linearised image). So the match
    errs by (e + k n) . J (v, w) along the line; divided by the pixels it moves per unit of inverse depth,
    that is the inverse depth's error. Checked against the depths stereo finds with a source's pose off by
    a known twist (``tests/test_stereo_pose_sigma.py``): without the slant term a pitch error's was half
    the error seen.

    The least over the sources that see the point (over all where none does): the best-placed source pins
    the depth, and the others' errors are not independent of its own (the reference's pose error is in all
    of them).
    """
    if all(source.pose_covariance is None for source in sources):
        return None
    height, width = rho.shape
    K_inv = torch.as_tensor(np.linalg.inv(camera.K), dtype=torch.float32, device=rho.device)
    sxx, sxy, syy = _structure_tensor(ref_gray, _STRUCTURE_BOX)
    least = least_seen = None
    for source in sources:
        if source.pose_covariance is None:
            continue
        a, b = source.a_px, source.b_px
        h = a + rho * b
        den = h[2].clamp_min(1e-6)
        x, y = h[0] / den, h[1] / den
        dx, dy = (b[0] - x * b[2]) / den, (b[1] - y * b[2]) / den  # d(match)/d(rho), pixels per 1/m
        moves = torch.hypot(dx, dy).clamp_min(1e-9)
        ex, ey = dx / moves, dy / moves
        along = ex * ex * sxx + 2 * ex * ey * sxy + ey * ey * syy
        across = -ex * ey * sxx + (ex * ex - ey * ey) * sxy + ex * ey * syy
        k = (across / along.clamp_min(1e-12)).clamp(-_MAX_ACROSS, _MAX_ACROSS)
        ux, uy = ex - k * ey, ey + k * ex  # e + k n, n = (-ey, ex)
        # The pixel shift along (ux, uy) per change dY of Y = rho X (homogeneous K Y): c . dY, and
        # dY = rho v + w x Y, so the row on (v, w) is (rho c, Y x c).
        c = torch.stack([ux * camera.fx, uy * camera.fy, -(ux * (x - camera.cx) + uy * (y - camera.cy))]) / den
        Y = torch.einsum("ij,jhw->ihw", K_inv, h)
        row = torch.cat([rho * c, torch.linalg.cross(Y, c, dim=0)])
        covariance = torch.as_tensor(source.pose_covariance, dtype=torch.float32, device=rho.device)
        variance = torch.einsum("ihw,ij,jhw->hw", row, covariance, row)
        sigma = variance.clamp_min(0).sqrt() / moves
        inside = (h[2] > 1e-6) & (x > -0.5) & (x < width - 0.5) & (y > -0.5) & (y < height - 0.5)
        seen = torch.where(inside, sigma, torch.full_like(sigma, math.inf))
        least = sigma if least is None else torch.minimum(least, sigma)
        least_seen = seen if least_seen is None else torch.minimum(least_seen, seen)
    return None if least is None else torch.where(torch.isfinite(least_seen), least_seen, least)


def _structure_tensor(gray: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Sxx, Sxy, Syy), each (H, W): sums over size x size boxes (odd ``size``) of the products of ``gray``'s
    central-difference gradients."""
    padded = F.pad(gray[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    gx = (padded[1:-1, 2:] - padded[1:-1, :-2]) / 2
    gy = (padded[2:, 1:-1] - padded[:-2, 1:-1]) / 2
    return _box_sum(gx * gx, size), _box_sum(gx * gy, size), _box_sum(gy * gy, size)


def _sigma_steps(curvature: torch.Tensor, pixels_per_step: torch.Tensor, cfg: StereoConfig) -> torch.Tensor:
    """(H, W) sigma of the winner in hypothesis steps (see ``StereoConfig.sigma_curvature``)."""
    pixel_floor = cfg.sigma_floor_px / pixels_per_step.clamp_min(1e-6)
    return torch.sqrt(pixel_floor**2 + cfg.sigma_floor_steps**2 + cfg.sigma_curvature / curvature.clamp_min(1e-9))


def _to_numpy(depth: torch.Tensor, sigma: torch.Tensor, valid: torch.Tensor,
              pose_sigma: torch.Tensor | None = None) -> DepthEstimate:
    """The estimate as float32 NumPy arrays with NaN wherever ``valid`` is False."""
    valid = valid & torch.isfinite(depth) & torch.isfinite(sigma)
    nan = torch.full_like(depth, math.nan)

    def masked(x: torch.Tensor) -> np.ndarray:
        return torch.where(valid, x, nan).cpu().numpy().astype(np.float32)

    return DepthEstimate(depth=masked(depth), sigma=masked(sigma), valid=valid.cpu().numpy(),
                         pose_sigma=None if pose_sigma is None else masked(pose_sigma))
