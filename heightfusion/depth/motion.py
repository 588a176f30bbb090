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

from dataclasses import dataclass

import numpy as np

from .._compat import deprecated_order
from ..camera import PinholeCamera
from ..poses import validate_pose
from .keyframes import TOO_LITTLE_PARALLAX, TOO_MUCH_PARALLAX, KeyframeConfig, KeyframeWindow
from .stereo import DepthEstimate, PlaneSweepStereo, StereoConfig, nominal_depth

#: Reasons :meth:`MotionStereo.push` gives for a frame without depth: no source (the keyframes moved
#: too little or too much: :meth:`KeyframeWindow.no_source_reason` adds the setting to change), or
#: the stereo ran but left every pixel invalid.
NO_PARALLAX = TOO_LITTLE_PARALLAX
NO_VALID_DEPTH = "no valid depth"


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
    (or, before the first one, at the sweep's middle plane).

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
        self.stereo = PlaneSweepStereo(stereo)
        self.window = KeyframeWindow(keyframes)
        self._scene_depth: float | None = None

    def push(self, camera: PinholeCamera, T_wc: np.ndarray, image: np.ndarray) -> MotionStereoResult:
        """Estimate the depth of a new frame (``camera``'s RGB image at pose ``T_wc``), then keep it if it is a keyframe.

        Raises:
            ValueError: the image does not match the camera, or the pose is not rigid.
        """
        if not isinstance(camera, PinholeCamera):  # the order before 0.2: push(image, T_wc, camera)
            deprecated_order("MotionStereo.push(image, T_wc, camera)", "push(camera, T_wc, image)")
            camera, image = image, camera
        T_wc = validate_pose(T_wc, "T_wc")
        if np.shape(image)[:2] != camera.shape:
            raise ValueError(f"image has shape {np.shape(image)}, the camera's is {camera.shape}")
        depth = self._scene_depth if self._scene_depth is not None else nominal_depth(self.stereo.config, camera, T_wc)
        sources = self.window.sources_for(camera, T_wc, depth)
        if not sources:
            reason, detail = self.window.no_source_reason(camera, T_wc, depth)
            result = MotionStereoResult(None, reason, detail=detail)
        else:
            estimate = self.stereo.estimate(camera, T_wc, image, [s.image for s in sources], [s.T_wc for s in sources])
            if estimate.valid.any():
                self._scene_depth = float(np.median(estimate.depth[estimate.valid]))
                result = MotionStereoResult(estimate, None, len(sources))
            else:
                result = MotionStereoResult(None, NO_VALID_DEPTH, len(sources))
        self.window.offer(camera, T_wc, np.asarray(image), depth)
        return result
