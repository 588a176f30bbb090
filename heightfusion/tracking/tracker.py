"""Camera tracking for the mapping loop: a pose per frame, refined from a given one or estimated alone.

Modes (:data:`TRACK_MODES`):

- ``"off"``: frames keep the pose they come with.
- ``"refine"``: the frame's given pose (trajectory, motion capture, marker board) is corrected by dense
  alignment. The prediction keeps the given poses' frame-to-frame motion, which drift does not spoil,
  and carries the correction found for the previous frame: ``T_pred = T_prev @ inv(G_prev) @ G``.
- ``"odometry"``: only a starting pose is needed (the first frame's, or ``start_pose``); later frames are
  predicted by constant velocity and tracked from the images alone. Without depth from a sensor, frames
  keep their given poses until the map (built by stereo on them) covers the view: that bootstrap sets
  the scale. Frames without given poses (a plain video) get their first ones from
  :class:`heightfusion.tracking.bootstrap.MonocularBootstrap` (scale from the start pose's height).

What a frame is aligned to (:func:`heightfusion.tracking.alignment.align`): the map rendered at the
predicted pose (depth and vertex colours, where the vertices are observed) once it covers
``min_map_coverage`` of the view — it anchors the pose to the map, so errors do not accumulate — and
the latest keyframe (its image, with the sensor's depth or the map's), which still has the detail
and the exposure of a real image where the map is thin or blurred. A frame whose alignment fails the
verdict (too few points, too few inliers, an unbounded covariance, a jump away from the prediction) is
not used: the pipeline skips and counts it, and never fuses at a bad pose. A keyframe the predicted view
has left is no reference; with nothing else to align to, "refine" keeps the frame's given pose, as it
does before the map exists.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..camera import PinholeCamera
from ..datasets.frame import Frame
from ..heightmap import HeightMap
from .alignment import Alignment, AlignmentSettings, align
from .se3 import motion_size
from .views import Reference, TrackedImage, level_range, make_reference, tracked_pyramid

#: A reference whose grey values explain the frame's only with a gain below this has lost its contrast
#: (a black or washed-out frame), whatever the residuals say.
MIN_GAIN = 0.2
#: "off": the given poses; "refine": given poses corrected; "odometry": from a starting pose alone.
TRACK_MODES = ("off", "refine", "odometry")


@dataclass
class TrackingConfig:
    """Settings of :class:`Tracker`.

    Attributes:
        max_side: the finest pyramid level tracked has at most this many pixels along its shorter side
            (640x480 frames are tracked up to 160x120). Measured on the real TUM frames (180, odometry):
            ATE 40 mm at 160x120 against 39-47 mm at 320x240, in half the time (tracking then costs what
            fusion does); on the synthetic floor with pose drift (refine): smooth-area RMSE 1.4 mm against
            2.2 mm — the finer levels' detail is where views disagree most (blur, interpolation).
        min_side: the coarsest level keeps at least this many.
        max_points: photometric (and geometric) points per reference and level.
        min_gradient: a photometric point needs at least this image gradient, grey levels (0-1) per pixel.
        use_map: align to the map rendered at the predicted pose where it covers the view.
        use_keyframe: True: align to the latest keyframe where the map does not cover the view (the map
            still thin, or the camera looking past it); "always": beside the map too; False: never; "auto":
            "always" in odometry (a real desk's monitors and shelves are walls a 2.5D map holds coarsely:
            TUM fr1 desk, odometry ATE 40 mm with the keyframe beside the map, 48 mm without), True in refine. Aligned to the map,
            a pose is tied to what the map learnt from many earlier frames; chained keyframe to keyframe,
            each alignment's error stays in the poses (synthetic floor with pose drift, map alone:
            smooth-area RMSE 1.6 mm, ATE 4.9 mm; with the keyframe beside it: 7.4 mm, 6.6 mm).
        min_map_coverage: share of the tracked image that must see observed map for the map reference.
        keyframe_overlap: a new keyframe is taken when fewer of the keyframe's footprint points (its depth, a regular
            subsample) stay in view.
        keyframe_motion: ... or when the camera moved this far from it (metres, degrees).
        min_points: the alignment needs at least this many residuals at the finest level.
        min_inliers: ... and this share of them within the robust threshold.
        max_sigma: largest pose standard deviation accepted (metres, degrees).
        max_correction: largest correction of the prediction accepted (metres, degrees).
        refine_prior: in "refine", the standard deviation (metres, degrees) of the given poses'
            frame-to-frame motion, per frame; the prediction (module docstring) enters the alignment as a
            measurement of the pose with it; None: no prior. The default is what motion capture gives per
            frame at 30 Hz (and the synthetic drift's RPE, 0.25 mm and 0.02 deg). Measured on the real TUM
            frames (90, every 5th held out): held-out median |dh| 7.7 mm with it against 9.2 mm with the
            poses as given and 10.9 mm with a prior of 0.5 mm / 0.05 deg, which lets the map's coarse model
            of the desk's vertical faces pull the poses.
        refine_drift: the given poses drift (odometry, a trajectory without loop closure): their error
            builds up frame by frame, so the prediction is weighed as a Kalman prediction, the last pose's
            covariance grown by ``refine_prior``, and the map pulls the accumulated error back. False (motion
            capture, whose error does not build up): weighed with ``refine_prior`` alone, so the map's model
            errors cannot pull the poses away. Measured with ``refine_prior`` 0.2 mm / 0.02 deg on the
            synthetic floor with drifting poses (the scene of ``benchmarks/bench_tracking.py``; six runs, which
            differ as llvmpipe's atomic sums do): smooth-area RMSE 1.2-1.9 mm (mean 1.5), ATE 2.5 mm with it,
            against 3.0-3.6 mm and 4.8 mm without; on the real TUM frames held-out median 13.7 mm with it
            against 7.2 mm without (the motion capture is right, and the map's pull wrong). With 0.25 mm /
            0.02 deg, fusion's trust region and the shared and own pose errors apart in the systematic sigma
            (``bench_tracking.py``, 2026-12-05, three runs): 1.31-1.60 mm, within 1 sigma 0.63-0.69, ATE 2.5 mm.
        map_pixels_per_cell: the map's colours take part only at pyramid levels where a cell spans at most
            this many pixels: the vertex colours are the image averaged per cell, so at finer levels
            they lack the image's detail and pull the pose (measured on the synthetic floor: 5-13 mm errors
            against the true map's colours at 5 pixels per cell).
        alignment: the Gauss-Newton settings.
    """

    max_side: int = 120
    min_side: int = 30
    max_points: int = 3000
    min_gradient: float = 0.01
    use_map: bool = True
    use_keyframe: bool | str = "auto"
    min_map_coverage: float = 0.3
    keyframe_overlap: float = 0.7
    keyframe_motion: tuple[float, float] = (0.15, 10.0)
    min_points: int = 150
    min_inliers: float = 0.5
    max_sigma: tuple[float, float] = (0.02, 1.0)
    max_correction: tuple[float, float] = (0.15, 10.0)
    refine_prior: tuple[float, float] | None = (0.0002, 0.02)
    refine_drift: bool = False
    map_pixels_per_cell: float = 8.0
    alignment: AlignmentSettings = field(default_factory=AlignmentSettings)


@dataclass
class TrackingResult:
    """The pose a frame is to be used at, or why it cannot be.

    Attributes:
        T_wc: the pose (None when the frame cannot be used).
        reason: None when ``T_wc`` may be used; else why not (what the pipeline counts).
        tracked: the pose came from alignment (False: a given pose used as it is, e.g. before the map
            exists, or a starting pose).
        alignment: the alignment's details, or None.
        references: names of the references aligned to.
        covariance: 6x6 covariance of the pose (camera-frame twist; metres, radians) with respect to the map
            (:meth:`Tracker.track`), or None for a pose used as given.
        ms: milliseconds spent.
    """

    T_wc: np.ndarray | None
    reason: str | None = None
    tracked: bool = False
    alignment: Alignment | None = None
    references: list[str] = field(default_factory=list)
    covariance: np.ndarray | None = None
    ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class _State:
    given: np.ndarray | None
    estimate: np.ndarray


#: Every this many pixels (of the finest tracked level) along both axes, a keyframe's depth gives a point of
#: its footprint: what tells whether a later view still overlaps it.
FOOTPRINT_STRIDE = 8


@dataclass
class _Keyframe:
    """A keyframe's view (finest tracked level) and pose; its :class:`Reference` is made on first use: in
    "refine" the map is aligned to while it covers the view, and most keyframes are never needed."""

    camera: PinholeCamera
    T_wc: np.ndarray
    gray: np.ndarray
    depth: np.ndarray
    levels: int
    footprint: np.ndarray  # (N, 3) world points of the depth, every FOOTPRINT_STRIDE pixels
    covariance: np.ndarray
    _reference: Reference | None = None

    def reference(self, config: TrackingConfig) -> Reference:
        if self._reference is None:
            self._reference = make_reference("keyframe", self.camera, self.T_wc, self.gray, self.depth, 0,
                                             self.levels - 1, config.max_points, config.min_gradient)
        return self._reference


class Tracker:
    """Tracks frames for the mapping loop (module docstring): :meth:`track` before fusion, :meth:`accept` after.

    Args:
        mode: one of :data:`TRACK_MODES` other than "off".
        renderer: renders the map for the map reference and monocular keyframes (the fuser's), or None.
        config: settings.
        start_pose: odometry's starting pose; default the first frame's given pose.

    Example:
        >>> import heightfusion as hf
        >>> from heightfusion.tracking import Tracker
        >>> frames = list(hf.datasets.open(hf.datasets.sample_path(), max_frames=2))
        >>> tracker = Tracker("refine")
        >>> first = tracker.track(frames[0]); tracker.accept(frames[0], first.T_wc)
        >>> tracker.track(frames[1]).ok  # aligned to the first frame (a keyframe with depth)
        True
    """

    def __init__(self, mode: str, renderer=None, config: TrackingConfig | None = None,
                 start_pose: np.ndarray | None = None) -> None:
        if mode not in TRACK_MODES or mode == "off":
            raise ValueError(f"tracking mode must be 'refine' or 'odometry', got {mode!r}")
        self.mode = mode
        self.renderer = renderer
        self.config = config or TrackingConfig()
        self.start_pose = None if start_pose is None else np.asarray(start_pose, dtype=np.float64)
        self._keyframe: _Keyframe | None = None
        # The pose's covariance with respect to the map (the first pose defines the map's frame: zero); the
        # latest result's, until accepted.
        self._covariance = np.zeros((6, 6))
        self._pending: tuple[np.ndarray, np.ndarray] | None = None
        self._previous: list[_State] = []  # the last two accepted frames
        self._pyramid: tuple[np.ndarray, list[TrackedImage]] | None = None  # (image, pyramid) of the last frame

    def _levels(self, camera: PinholeCamera) -> tuple[int, int]:
        return level_range(camera, self.config.max_side, self.config.min_side)

    def _frame_pyramid(self, frame: Frame) -> list[TrackedImage]:
        if self._pyramid is None or self._pyramid[0] is not frame.image:  # track and accept share it
            self._pyramid = (frame.image, tracked_pyramid(frame.camera, frame.image, frame.depth, *self._levels(frame.camera)))
        return self._pyramid[1]

    def _prediction(self, frame: Frame) -> np.ndarray | None:
        if self.mode == "refine":
            if frame.T_wc is None:
                return None
            last = self._previous[-1] if self._previous else None
            if last is None or last.given is None:
                return frame.T_wc
            return last.estimate @ np.linalg.inv(last.given) @ frame.T_wc
        if not self._previous:
            return frame.T_wc if self.start_pose is None else self.start_pose
        last = self._previous[-1].estimate
        if len(self._previous) < 2:
            return last
        return last @ (np.linalg.inv(self._previous[-2].estimate) @ last)

    def map_view(self, grid: HeightMap, camera: PinholeCamera, T_wc: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(grey values, depth, coverage) of ``grid`` rendered at ``T_wc``: (H, W) float32, NaN where no observed
        vertex is seen (:meth:`heightfusion.render.Renderer.render_depth_gray`); coverage is the share of
        pixels with a value."""
        depth, gray = self.renderer.render_depth_gray(grid, camera, T_wc)
        seen = np.isfinite(gray)
        return gray, np.where(seen, depth, np.nan).astype(np.float32), float(seen.mean())

    def _references(self, pyramid: list[TrackedImage], T_pred: np.ndarray, grid: HeightMap | None) -> list[Reference]:
        refs = []
        cfg = self.config
        levels = (0, len(pyramid) - 1)
        if cfg.use_map and grid is not None and self.renderer is not None and grid.observed.any():
            camera = pyramid[0].camera
            gray, depth, coverage = self.map_view(grid, camera, T_pred)
            if coverage >= cfg.min_map_coverage:
                ref = make_reference("map", camera, T_pred, gray, depth, *levels, cfg.max_points, cfg.min_gradient)
                pixels_per_cell = camera.fx * grid.cell_size / float(np.nanmedian(depth))
                for level in ref.levels:
                    if pixels_per_cell > cfg.map_pixels_per_cell:
                        level.photometric, level.intensity = level.photometric[:0], level.intensity[:0]
                    pixels_per_cell /= 2
                refs.append(ref)
        use = cfg.use_keyframe if cfg.use_keyframe != "auto" else ("always" if self.mode == "odometry" else True)
        wanted = use == "always" or (use and not refs)
        if wanted and self._keyframe is not None and self._keyframe.levels == len(pyramid):
            # A keyframe the predicted view has left is no reference: its points would not constrain the
            # pose, and the frame would be lost for it rather than for anything wrong with the frame. (On
            # the monocular synthetic floor, 60 frames of 127 mm and 17 deg, refine lost 50 frames that
            # way: the map was still too thin to replace the keyframe.)
            keyframe = self._keyframe.reference(cfg)
            if points_in_view(keyframe.levels[0].photometric, pyramid[0].camera, T_pred) >= cfg.min_points:
                refs.append(keyframe)
        return refs

    def track(self, frame: Frame, grid: HeightMap | None = None) -> TrackingResult:
        """The pose ``frame`` is to be used at (``grid``: the map so far, for the map reference)."""
        start = time.perf_counter()
        result = self._track(frame, grid)
        result.ms = (time.perf_counter() - start) * 1e3
        return result

    def _track(self, frame: Frame, grid: HeightMap | None) -> TrackingResult:
        T_pred = self._prediction(frame)
        if T_pred is None:
            return TrackingResult(None, "no pose to start from")
        if frame.image is None:
            return TrackingResult(None, "no image")
        if not self._previous:  # the first frame: the starting pose, nothing to align to yet
            return TrackingResult(T_pred)
        pyramid = self._frame_pyramid(frame)
        refs = self._references(pyramid, T_pred, grid)
        if not refs:
            if self.mode == "refine" or frame.T_wc is not None:  # before the map: the given pose as it is
                return TrackingResult(T_pred if self.mode == "refine" else frame.T_wc)
            return TrackingResult(None, "nothing to track against")
        step = self._prediction_covariance()
        # Drifting poses: the Kalman prediction, the last pose's covariance grown by a step. Motion capture's
        # error does not build up, and the map's pull on the pose is weighed against one step's alone.
        prior = None if step is None else np.linalg.inv(step + self._covariance if self.config.refine_drift else step)
        alignment = align(pyramid, refs, T_pred, self.config.alignment, prior)
        names = [ref.name for ref in refs]
        reason = self._verdict(alignment, T_pred)
        if reason:
            return TrackingResult(None, reason, True, alignment, names)
        covariance = self._propagated(alignment, names)
        self._pending = (frame.image, covariance)
        return TrackingResult(alignment.T_wc, None, True, alignment, names, covariance)

    def _prediction_covariance(self) -> np.ndarray | None:
        """In "refine", the 6x6 covariance of one frame's prediction (``refine_prior``); else None."""
        if self.mode != "refine" or self.config.refine_prior is None:
            return None
        metres, degrees = self.config.refine_prior
        return np.diag([metres**2] * 3 + [math.radians(degrees) ** 2] * 3)

    def _propagated(self, alignment: Alignment, references: list[str]) -> np.ndarray:
        """The pose's covariance with respect to the map after this alignment.

        In "refine" a Kalman step: the last pose's covariance grown by the prediction's (``refine_prior``),
        combined with what the images measured (the alignment's data covariance, which counts only the
        share of independent residuals); where the images pin the pose weakly, the covariance grows frame
        by frame as a drifting pose's error does. Aligned to a keyframe alone, the keyframe's pose
        covariance plus the alignment's. (The twist's frame moves with the camera; for the small motion
        between frames its change is neglected.)
        """
        data = alignment.data_covariance
        step = self._prediction_covariance()
        if step is not None:
            return np.linalg.inv(np.linalg.inv(data) + np.linalg.inv(self._covariance + step))
        if references == ["keyframe"]:
            return self._keyframe.covariance + data
        return data

    def _verdict(self, alignment: Alignment, T_pred: np.ndarray) -> str | None:
        cfg = self.config
        if sum(alignment.points.values()) < cfg.min_points:
            return "too few points"
        if alignment.inliers < cfg.min_inliers:
            return "too few inliers"
        if min(gain for gain, _ in alignment.brightness) < MIN_GAIN:
            return "no contrast"
        if alignment.data_covariance is None:  # the images must have a say: a prior alone passes no frame
            return "unconstrained"
        cov = alignment.covariance  # what the data leave open, the prediction's prior may hold
        if not np.isfinite(cov).all():
            return "unconstrained"
        sd = np.sqrt(np.clip(np.diag(cov), 0, None))
        if sd[:3].max() > cfg.max_sigma[0] or math.degrees(sd[3:].max()) > cfg.max_sigma[1]:
            return "poorly constrained"
        moved, turned = motion_size(np.linalg.inv(T_pred) @ alignment.T_wc)
        if moved > cfg.max_correction[0] or turned > cfg.max_correction[1]:
            return "jumped from the prediction"
        return None

    def accept(self, frame: Frame, T_wc: np.ndarray, grid: HeightMap | None = None) -> None:
        """Record that ``frame`` was used at ``T_wc`` (after fusing it into ``grid``): motion and keyframe."""
        self._previous = (self._previous + [_State(frame.T_wc, np.asarray(T_wc, dtype=np.float64))])[-2:]
        if self._pending is not None and self._pending[0] is frame.image:
            self._covariance = self._pending[1]
        self._pending = None
        if frame.image is None:
            return
        pyramid = self._frame_pyramid(frame)
        if self._keyframe is not None and not self._keyframe_stale(pyramid[0].camera, T_wc):
            return
        camera = pyramid[0].camera
        depth = pyramid[0].depth
        if depth is None:  # monocular: the map's depth at this pose, where it has any
            if grid is None or self.renderer is None or not grid.observed.any():
                return
            _, depth, coverage = self.map_view(grid, camera, T_wc)
            if coverage < self.config.min_map_coverage:
                return
        footprint = camera.world_points(depth, T_wc, FOOTPRINT_STRIDE)
        self._keyframe = _Keyframe(camera, np.asarray(T_wc, dtype=np.float64), pyramid[0].gray, depth, len(pyramid),
                                   footprint, self._covariance)

    def _keyframe_stale(self, camera: PinholeCamera, T_wc: np.ndarray) -> bool:
        keyframe = self._keyframe
        moved, turned = motion_size(np.linalg.inv(keyframe.T_wc) @ T_wc)
        if moved > self.config.keyframe_motion[0] or turned > self.config.keyframe_motion[1]:
            return True
        points = len(keyframe.footprint)
        return points == 0 or points_in_view(keyframe.footprint, camera, T_wc) < self.config.keyframe_overlap * points


def points_in_view(points: np.ndarray, camera: PinholeCamera, T_wc: np.ndarray) -> int:
    """How many of the world ``points`` (N, 3) ``camera`` at ``T_wc`` sees."""
    T_cw = np.linalg.inv(T_wc)
    X = points @ T_cw[:3, :3].T + T_cw[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = camera.project(X)
    inside = (X[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= camera.width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= camera.height - 1)
    return int(inside.sum())
