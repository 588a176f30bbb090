"""heightfusion: real-time monocular height-map fusion with differentiable rendering.

What research code imports (every entry's docstring has an example, checked by ``tests/test_api.py``):

- the map and the camera: :class:`HeightMap`, :class:`PinholeCamera`, :func:`save_heightmap`,
  :func:`load_heightmap`, :func:`export_ply`;
- rendering: :func:`make_renderer` (backends :data:`BACKENDS`), :class:`Renderer`, :class:`Capabilities`,
  :class:`Fragments`; PyTorch autograd in :mod:`heightfusion.autograd`;
- fusion: :class:`HeightMapFuser`, :class:`FusionConfig`, :class:`FusionStats`, :class:`SensorNoise`;
- depth and frames: :class:`MotionStereo` (monocular plane-sweep stereo; imports torch on first use),
  :class:`FramePipeline` (depth, then fusion, one frame at a time), :mod:`heightfusion.datasets` and
  :class:`Frame`;
- whole runs: :func:`replay` and :func:`write_map_outputs`;
- navigation: :func:`free_space`, :class:`FreeSpaceSettings`;
- poses: :func:`look_at`, :func:`invert_pose`, :func:`validate_pose`, TUM conversions.

API conventions (every module keeps them):

- Wherever a frame meets the map the arguments come in one order, ``(grid, camera, T_wc, data...)``:
  ``renderer.render(grid, camera, T_wc)``, ``fuser.fuse(camera, T_wc, depth, image, sigma)`` (the fuser
  holds the grid), ``motion.push(camera, T_wc, image)``, ``stereo.estimate(camera, T_wc, image,
  src_images, src_T_wcs)``. The camera is always called ``camera``. Calls in the order before 0.2 still
  work and warn (``DeprecationWarning``).
- Units are metres, seconds and radians unless a name or docstring says otherwise; the world is Z up;
  cameras are OpenCV's (x right, y down, z forward); ``T_wc`` is a 4x4 float64 camera-to-world pose;
  depth is z-depth, float32, NaN where there is no value; images are RGB uint8 at the library's boundary.
- Settings are frozen or validated dataclasses (``FusionConfig``, ``StereoConfig``, ``FreeSpaceSettings``)
  whose bad values raise ``ValueError`` naming the field; library functions take plain arguments and
  never parse command lines (that is :mod:`heightfusion.cli`).
- Objects holding GPU resources (renderers, fusers) have ``release()``; the caller that made a
  renderer releases it.
- Backends declare what their fragments offer in ``renderer.capabilities``; code asks that, never a
  backend's name.

No OpenGL context or window is created at import time.
"""

from . import datasets
from .camera import PinholeCamera
from .datasets.frame import Frame
from .depth.sensor import SensorNoise
from .fusion import FusionConfig, FusionStats, HeightMapFuser
from .heightmap import HeightMap, export_ply, load_heightmap, save_heightmap
from .navigation import FreeSpaceSettings, free_space
from .outputs import write_map_outputs
from .pipeline import FramePipeline
from .poses import invert_pose, look_at, matrix_to_quat, pose_from_tum, pose_to_tum, quat_to_matrix, validate_pose
from .render import BACKENDS, Capabilities, Fragments, GLUnavailableError, Renderer, make_renderer
from .replay import ReplayResult, replay

__version__ = "0.2.0"

__all__ = [
    "BACKENDS",
    "Capabilities",
    "Fragments",
    "Frame",
    "FramePipeline",
    "FreeSpaceSettings",
    "FusionConfig",
    "FusionStats",
    "GLUnavailableError",
    "HeightMap",
    "HeightMapFuser",
    "MotionStereo",
    "PinholeCamera",
    "Renderer",
    "ReplayResult",
    "SensorNoise",
    "datasets",
    "export_ply",
    "free_space",
    "invert_pose",
    "load_heightmap",
    "look_at",
    "make_renderer",
    "matrix_to_quat",
    "pose_from_tum",
    "pose_to_tum",
    "quat_to_matrix",
    "replay",
    "save_heightmap",
    "validate_pose",
    "write_map_outputs",
]


def __getattr__(name: str):
    # Motion stereo needs torch, which `import heightfusion` does not load.
    if name == "MotionStereo":
        from .depth import MotionStereo

        return MotionStereo
    raise AttributeError(f"module 'heightfusion' has no attribute {name!r}")
