"""Synthetic sequences over analytic scenes, with exact ground truth, for tests, demos and benchmarks.

Depth comes from exact ray casting of the analytic height field (:mod:`.raycast`), never from the
project's renderers, so that it can test them.

    from heightfusion.synthetic import generate, write_tum
    seq = generate("floor", frames=40, noise=True)    # frames, sigmas, gt_heightmap, scene
    write_tum(seq, "out/floor")                      # TUM RGB-D layout + camera.yaml + gt_heightmap.npz

    # an imperfect recording: drifting poses (groundtruth_true.txt holds the true ones), exposure changes
    seq = generate("floor", frames=40, noise=True, pose_noise=(0.4, 6.0), photometric=(0.15, 8.0, 2.0))
"""

from .perturb import Photometric, PoseNoise
from .raycast import RayHits, cast_rays, raycast
from .scenes import SCENE_NAMES, BlockScene, Box, GridSpec, Ramp, Scene, TerrainScene, make_scene
from .sequence import (
    DEPTH_SCALE,
    TRUE_TRAJECTORY_FILE,
    SyntheticSequence,
    default_camera,
    depth_to_png,
    generate,
    ground_truth_heightmap,
    render_image,
    write_tum,
)
from .trajectories import drone_lawnmower, robot_loop, trajectory_for

__all__ = [
    "DEPTH_SCALE",
    "SCENE_NAMES",
    "TRUE_TRAJECTORY_FILE",
    "BlockScene",
    "Box",
    "GridSpec",
    "Photometric",
    "PoseNoise",
    "Ramp",
    "RayHits",
    "Scene",
    "SyntheticSequence",
    "TerrainScene",
    "cast_rays",
    "default_camera",
    "depth_to_png",
    "drone_lawnmower",
    "generate",
    "ground_truth_heightmap",
    "make_scene",
    "raycast",
    "render_image",
    "robot_loop",
    "trajectory_for",
    "write_tum",
]
