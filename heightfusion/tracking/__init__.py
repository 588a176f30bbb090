"""Camera tracking against the map: dense direct alignment (:mod:`.alignment`) of a frame to the map
rendered at its predicted pose and to the latest keyframe, in the modes of :mod:`.tracker`."""

from .alignment import Alignment, AlignmentSettings, align
from .se3 import exp_se3, log_se3, motion_size
from .tracker import TRACK_MODES, Tracker, TrackingConfig, TrackingResult
from .views import Reference, make_reference, tracked_pyramid

__all__ = [
    "TRACK_MODES", "Alignment", "AlignmentSettings", "Reference", "Tracker", "TrackingConfig", "TrackingResult",
    "align", "exp_se3", "log_se3", "make_reference", "motion_size", "tracked_pyramid",
]
