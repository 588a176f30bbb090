"""Monocular depth from camera motion: each new frame's depth by plane-sweep stereo against earlier keyframes.

    motion = MotionStereo(StereoConfig(planes="ground", min_height=-0.05, max_height=0.3))
    for frame in sequence:
        result = motion.push(frame.camera, frame.T_wc, frame.image)
        if result.estimate is not None:
            fuser.fuse(frame.camera, frame.T_wc, result.estimate.depth, frame.image, sigma=result.estimate.sigma)
        else:
            print("no depth:", result.reason)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .._compat import deprecated_order
from ..camera import PinholeCamera
from ..fusion.pose_uncertainty import relative_pose_covariance
from ..poses import invert_pose, validate_pose
from ..pyramid import expand, half_camera, half_image
from ..rolling_shutter import body_velocity, global_shutter_depth
from .keyframes import TOO_LITTLE_PARALLAX, TOO_MUCH_PARALLAX, KeyframeConfig, KeyframeWindow
from .stereo import DepthEstimate, PlaneSweepStereo, SourceFeatureCache, StereoConfig, _checked_covariance, nominal_depth

#: Reasons :meth:`MotionStereo.push` gives for a frame without depth: no source (the keyframes moved
#: too little or too much: :meth:`KeyframeWindow.no_source_reason` adds the setting to change), or
#: the stereo ran but left every pixel invalid.
NO_PARALLAX = TOO_LITTLE_PARALLAX
NO_VALID_DEPTH = "no valid depth"

#: A frame's sweep covers, between these percentiles, the depths (or heights) that the points of the
#: previous estimate take in it, widened by PREDICTION_MARGIN of that span on each side (the camera
#: moved, the view changed) and never beyond the configured range; the planes keep the configured step,
#: so the estimate is as fine as the full sweep's, with fewer hypotheses to test.
PREDICTION_PERCENTILES = (1.0, 99.0)
PREDICTION_MARGIN = 0.25
#: A narrowed sweep keeps at least this many planes.
MIN_HYPOTHESES = 16
#: Every this many estimates (and after one without valid depth) the sweep covers the configured range, so
#: that surface outside the predicted range (invalid there, as a winner at the sweep's end is) comes back.
FULL_SWEEP_EVERY = 10
# Every how many pixels (rows and columns) an estimate's points are kept for the next prediction.
_PREDICTION_STRIDE = 4


@dataclass
class MotionStereoResult:
    """What :meth:`MotionStereo.push` made of a frame.

    Attributes:
        estimate: depth, sigma and validity, or None when the frame got no depth.
        reason: why there is no estimate, else None: :data:`NO_VALID_DEPTH`, or one starting with
            :data:`TOO_LITTLE_PARALLAX` or :data:`TOO_MUCH_PARALLAX` (then ``detail`` says what to change).
        detail: more about the reason, or None.
        sources: number of source frames the stereo used.
    """

    estimate: DepthEstimate | None
    reason: str | None
    sources: int = 0
    detail: str | None = None


class MotionStereo:
    """Keeps a window of keyframes and estimates each new frame's depth against the best of them.

    The reference is always the newest frame (no latency); its sources are earlier keyframes chosen
    by parallax and overlap (:mod:`.keyframes`), measured at the median depth of the latest estimate
    (or, before the first one, at the sweep's middle plane). Frames larger than the stereo's
    ``sweep_size`` are halved until they fit (:mod:`heightfusion.pyramid`) before any of this, and
    the estimate comes back at the frame's pixels (each sweep pixel's value on the block it covers).
    With ``predict_range`` the sweep covers the range the previous estimate predicts
    (:data:`PREDICTION_PERCENTILES`), with the configured step between planes. With a rolling shutter
    (``StereoConfig.readout_s``) each frame's velocity is its motion since the frame pushed before it (given
    timestamps: :func:`heightfusion.rolling_shutter.body_velocity`), and its estimate is handed on as the
    camera at ``T_wc`` (the middle row's pose) sees it (:func:`~heightfusion.rolling_shutter.global_shutter_depth`).

    Args:
        stereo: the stereo settings.
        keyframes: window and source selection settings.

    Example:
        >>> import heightfusion as hf
        >>> motion = hf.MotionStereo()
        >>> frame = next(iter(hf.datasets.open(hf.datasets.sample_path(), max_frames=1)))
        >>> motion.push(frame.camera, frame.T_wc, frame.image).reason  # the first frame has no sources yet
        'too little parallax'
    """

    def __init__(self, stereo: StereoConfig | None = None, keyframes: KeyframeConfig | None = None) -> None:
        self.window = KeyframeWindow(keyframes)
        # The keyframes are sources for many frames in turn: their features are prepared once.
        self._source_cache = SourceFeatureCache(self.window.config.window + 2)
        self.stereo = PlaneSweepStereo(stereo, self._source_cache)
        self._scene_depth: float | None = None
        self._points: np.ndarray | None = None  # world points of the latest estimate, None after a frame without
        self._estimates = 0
        self._previous: tuple[float, np.ndarray] | None = None  # timestamp and pose of the frame pushed last

    def push(
        self,
        camera: PinholeCamera,
        T_wc: np.ndarray,
        image: np.ndarray,
        timestamp: float | None = None,
        pose_covariance: np.ndarray | None = None,
    ) -> MotionStereoResult:
        """Estimate the depth of a new frame (``camera``'s RGB image at pose ``T_wc``, taken at ``timestamp``
        seconds, which a rolling shutter needs), then keep it if it is a keyframe.

        ``pose_covariance``: the 6x6 covariance of the pose's error (camera-frame twist, metres and radians,
        as :class:`heightfusion.tracking.Tracker` gives it), or None for an exact pose. The keyframes keep
        theirs, and each estimate's ``pose_sigma`` is the depth error that the pairs' relative pose errors
        cause (``src_pose_covariances`` of :meth:`PlaneSweepStereo.estimate`).

        Raises:
            ValueError: the image does not match the camera, the pose is not rigid, or ``pose_covariance`` is not
                a finite symmetric 6x6 matrix.
        """
        if not isinstance(camera, PinholeCamera):  # the order before 0.2: push(image, T_wc, camera)
            deprecated_order("MotionStereo.push(image, T_wc, camera)", "push(camera, T_wc, image)")
            camera, image = image, camera
        T_wc = validate_pose(T_wc, "T_wc")
        if np.shape(image)[:2] != camera.shape:
            raise ValueError(f"image has shape {np.shape(image)}, the camera's is {camera.shape}")
        level = sweep_level(camera, self.stereo.config.sweep_size)
        pose_covariance = _checked_covariance(pose_covariance, "pose_covariance")
        result = self._push(*_halved(camera, np.asarray(image), level), T_wc, self._velocity(T_wc, timestamp),
                            pose_covariance)
        if result.estimate is not None and level > 0:
            result.estimate = _expanded(result.estimate, level, camera.shape)
        return result

    def _velocity(self, T_wc: np.ndarray, timestamp: float | None) -> np.ndarray | None:
        """Body velocity (v, w) of the frame at ``T_wc`` from the one pushed before it, or None (see the class)."""
        previous, self._previous = self._previous, None if timestamp is None else (float(timestamp), T_wc)
        return body_velocity(previous, T_wc, timestamp)

    def _push(
        self,
        camera: PinholeCamera,
        image: np.ndarray,
        T_wc: np.ndarray,
        velocity: np.ndarray | None,
        pose_covariance: np.ndarray | None,
    ) -> MotionStereoResult:
        """:meth:`push` at the sweep's resolution, for a frame moving at body ``velocity`` (None: unknown)."""
        depth = self._scene_depth if self._scene_depth is not None else nominal_depth(self.stereo.config, camera, T_wc)
        sources = self.window.sources_for(camera, T_wc, depth)
        if not sources:
            reason, detail = self.window.no_source_reason(camera, T_wc, depth)
            result = MotionStereoResult(None, reason, detail=detail)
        else:
            stereo = self._stereo_for(T_wc)
            covariances = [relative_pose_covariance(invert_pose(s.T_wc) @ T_wc, pose_covariance, s.pose_covariance)
                           for s in sources]
            estimate = stereo.estimate(camera, T_wc, image, [s.image for s in sources], [s.T_wc for s in sources],
                                       ref_velocity=velocity, src_velocities=[s.velocity for s in sources],
                                       src_pose_covariances=covariances)
            self._estimates += 1
            self._points = None
            if velocity is not None and self.stereo.config.readout_s > 0:
                estimate = _at_middle_row(camera, estimate, velocity, self.stereo.config.readout_s)
            if estimate.valid.any():
                self._scene_depth = float(np.median(estimate.depth[estimate.valid]))
                self._points = camera.world_points(estimate.depth, T_wc, stride=_PREDICTION_STRIDE)
                result = MotionStereoResult(estimate, None, len(sources))
            else:
                result = MotionStereoResult(None, NO_VALID_DEPTH, len(sources))
        self.window.offer(camera, T_wc, image, depth, velocity, pose_covariance)
        return result

    def _stereo_for(self, T_wc: np.ndarray) -> PlaneSweepStereo:
        """The stereo with the sweep narrowed to the predicted range, or the configured one (see the class)."""
        if not self.stereo.config.predict_range or self._points is None or self._estimates % FULL_SWEEP_EVERY == 0:
            return self.stereo
        config = predicted_sweep(self.stereo.config, T_wc, self._points)
        return self.stereo if config is self.stereo.config else PlaneSweepStereo(config, self._source_cache)


def predicted_sweep(config: StereoConfig, T_wc: np.ndarray, points: np.ndarray) -> StereoConfig:
    """``config`` with its sweep cut to the range ``points`` (world, (N, 3)) take for a camera at ``T_wc``
    (:data:`PREDICTION_PERCENTILES`, :data:`PREDICTION_MARGIN`), at the same step; ``config`` itself when
    that saves nothing."""
    cz = T_wc[2, 3]
    if config.planes == "fronto":  # sweep parameter: inverse depth
        s_far, s_near = 1.0 / config.max_depth, 1.0 / config.min_depth
        distance = (points - T_wc[:3, 3]) @ T_wc[:3, 2]
    else:  # horizontal planes: inverse distance below the camera
        distance = cz - points[:, 2]
        if config.planes == "below":
            s_far, s_near = 1.0 / config.max_depth, 1.0 / config.min_depth
        else:  # the planes z = h
            s_far, s_near = 1.0 / (cz - config.min_height), 1.0 / (cz - config.max_height)
    distance = distance[distance > 0]
    if len(distance) == 0:
        return config
    step = (s_near - s_far) / (config.num_hypotheses - 1)
    low, high = np.percentile(1.0 / distance, PREDICTION_PERCENTILES)
    pad = PREDICTION_MARGIN * (high - low)
    low, high = max(low - pad, s_far), min(high + pad, s_near)
    count = max(MIN_HYPOTHESES, math.ceil((high - low) / step) + 1)
    if count >= config.num_hypotheses:
        return config
    span = (count - 1) * step  # that many planes at the configured step, centred on the prediction
    low = min(max((low + high - span) / 2, s_far), s_near - span)
    high = low + span
    if config.planes in ("fronto", "below"):
        return replace(config, min_depth=1.0 / high, max_depth=1.0 / low, num_hypotheses=count)
    return replace(config, min_height=cz - 1.0 / low, max_height=cz - 1.0 / high, num_hypotheses=count)


def sweep_level(camera: PinholeCamera, size: tuple[int, int] | None) -> int:
    """Halvings that bring ``camera``'s image within ``size`` (width, height); 0 for None."""
    level = 0
    if size is not None:
        while camera.width >> level > size[0] or camera.height >> level > size[1]:
            level += 1
    return level


def _halved(camera: PinholeCamera, image: np.ndarray, level: int) -> tuple[PinholeCamera, np.ndarray]:
    """The camera and image halved ``level`` times."""
    for _ in range(level):
        camera, image = half_camera(camera), half_image(image)
    return camera, image


def _at_middle_row(
    camera: PinholeCamera, estimate: DepthEstimate, velocity: np.ndarray, readout_s: float
) -> DepthEstimate:
    """A rolling shutter's ``estimate`` as the camera at the middle row's pose sees it."""
    sigmas = [estimate.sigma] + ([] if estimate.pose_sigma is None else [estimate.pose_sigma])
    depth, moved = global_shutter_depth(camera, estimate.depth, np.stack(sigmas, -1), velocity, readout_s)
    return DepthEstimate(depth, moved[..., 0], np.isfinite(depth), moved[..., 1] if len(sigmas) > 1 else None)


def _expanded(estimate: DepthEstimate, level: int, shape: tuple[int, int]) -> DepthEstimate:
    """The estimate of a level-``level`` image on the pixels of the (H, W) = ``shape`` frame."""
    return DepthEstimate(
        depth=expand(estimate.depth, level, shape, np.nan),
        sigma=expand(estimate.sigma, level, shape, np.nan),
        valid=expand(estimate.valid, level, shape, False),
        pose_sigma=None if estimate.pose_sigma is None else expand(estimate.pose_sigma, level, shape, np.nan),
    )
