"""Synthetic sequences over analytic scenes, with exact ground truth, for tests, demos and benchmarks.

Depth comes from exact ray casting of the analytic height field (:mod:`.raycast`), never from the
project's renderers, so that it can test them.

    from heightfusion.synthetic import generate, write_tum
    seq = generate("floor", frames=40, noise=True)    # frames, sigmas, gt_heightmap, scene
    write_tum(seq, "out/floor")                      # TUM RGB-D layout + camera.yaml + gt_heightmap.npz
"""

from .raycast import RayHits, cast_rays, raycast
from .scenes import SCENE_NAMES, BlockScene, Box, GridSpec, Ramp, Scene, TerrainScene, make_scene
from .sequence import (
    DEPTH_SCALE,
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
    "BlockScene",
    "Box",
    "GridSpec",
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
