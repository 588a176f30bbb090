"""heightfusion: real-time monocular height-map fusion with differentiable rendering.

No OpenGL context or window is created at import time.
"""

from . import datasets
from .camera import PinholeCamera
from .datasets.frame import Frame
from .fusion import FusionConfig, FusionStats, HeightMapFuser
from .heightmap import HeightMap, export_ply, load_heightmap, save_heightmap
from .poses import invert_pose, look_at, matrix_to_quat, pose_from_tum, pose_to_tum, quat_to_matrix, validate_pose
from .render import BACKENDS, Fragments, GLUnavailableError, Renderer, make_renderer

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "Fragments",
    "Frame",
    "FusionConfig",
    "FusionStats",
    "HeightMapFuser",
    "GLUnavailableError",
    "HeightMap",
    "PinholeCamera",
    "Renderer",
    "datasets",
    "export_ply",
    "invert_pose",
    "load_heightmap",
    "look_at",
    "make_renderer",
    "matrix_to_quat",
    "pose_from_tum",
    "pose_to_tum",
    "quat_to_matrix",
    "save_heightmap",
    "validate_pose",
]
