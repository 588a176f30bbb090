"""Synthetic sequences: ray-cast images and depth along a trajectory, ground truth, and the TUM writer."""

from __future__ import annotations

import dataclasses

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..atomic import atomic_write
from ..camera import PinholeCamera
from ..datasets import MAX_POSE_TIME_OFFSET_S
from ..datasets.frame import Frame
from ..datasets.trajectory import Trajectory
from ..depth.sensor import SensorNoise
from ..heightmap import HeightMap, save_heightmap, triangle_vertex_offsets
from ..poses import pose_to_tum, validate_pose
from ..trajectory_eval import write_tum_trajectory
from .perturb import Photometric, PoseNoise, as_photometric, as_pose_noise, drift_poses, exposure_series, perturb_image
from .raycast import RayHits, raycast
from .scenes import Scene, make_scene, shade
from .trajectories import trajectory_for

#: Depth-PNG units per metre in the written TUM layout.
DEPTH_SCALE = 5000.0
#: The true poses beside ``groundtruth.txt`` when that holds perturbed ones (``pose_noise``, ``clock_offset``).
TRUE_TRAJECTORY_FILE = "groundtruth_true.txt"
#: Information (1/variance, 1/m^2) of the ground-truth heights: exact up to float32 rounding.
GT_INFORMATION = 1e6

_SKY_HORIZON = np.array([0.80, 0.86, 0.92], dtype=np.float32)
_SKY_ZENITH = np.array([0.45, 0.62, 0.88], dtype=np.float32)


@dataclass
class SyntheticSequence:
    """A generated sequence held in memory.

    Attributes:
        scene: the analytic scene.
        camera: intrinsics shared by all frames.
        frames: the frames (image, depth, pose, camera, timestamp); with ``pose_noise`` or ``clock_offset``
            the frames' poses are the perturbed ones a user would be given.
        sigmas: per-frame (H, W) float32 depth sigma from the Kinect-like model (NaN where no depth);
            present with or without ``noise`` (without it the depth is exact and sigma is only a weight).
        gt_heightmap: exact heights on the scene's grid, shaded texture colours, and ``observed`` = vertices
            of the grid triangles hit by at least one pixel ray of at least one frame.
        noise: whether Gaussian noise of ``sigmas`` was added to the depth.
        seed: seed of the depth noise, the pose drift and the photometric changes.
        true_poses: (N, 4, 4) ``T_wc`` the frames were rendered at.
        pose_noise: the drifting error on the frames' poses (:mod:`.perturb`), or None (exact poses).
        photometric: the exposure changes and noise on the images, or None (exact images).
        clock_offset: seconds the given trajectory's clock runs ahead of the images' (0: in step).
        trajectory: (N, 4, 4) the given trajectory's samples, one per frame at its timestamp plus ``clock_offset``
            (what ``groundtruth.txt`` holds); the frames' poses are this trajectory at their timestamps.
    """

    scene: Scene
    camera: PinholeCamera
    frames: list[Frame]
    sigmas: list[np.ndarray]
    gt_heightmap: HeightMap
    noise: bool
    seed: int
    true_poses: np.ndarray
    pose_noise: PoseNoise | None = None
    photometric: Photometric | None = None
    clock_offset: float = 0.0
    trajectory: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames)

    def __getitem__(self, index: int) -> Frame:
        return self.frames[index]

    @property
    def poses(self) -> np.ndarray:
        """(N, 4, 4) ``T_wc`` of the frames."""
        return np.stack([f.T_wc for f in self.frames])


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def default_camera(width: int = 320, height: int = 240, focal_factor: float = 0.8) -> PinholeCamera:
    """Pinhole camera with fx = fy = ``focal_factor`` * width and the principal point at the image centre."""
    f = focal_factor * width
    return PinholeCamera(width, height, f, f, (width - 1) / 2, (height - 1) / 2)


def render_image(scene: Scene, camera: PinholeCamera, hits: RayHits) -> np.ndarray:
    """(H, W, 3) uint8 RGB of the ray hits: texture pre-filtered to the pixel footprint, Lambertian shading, sky.

    The footprint is the pixel's size at the hit divided by sqrt(cos) of the incidence angle, the
    geometric mean of its two axes, so grazing floors are smoothed without blurring facing walls.
    """
    hit = hits.hit
    d = hits.directions
    d_unit = d / np.linalg.norm(d, axis=-1, keepdims=True)
    # Sky: blend from horizon to zenith with the ray's elevation.
    elevation = np.clip(d_unit[..., 2], 0, 1)[..., None]
    rgb = (1 - elevation) * _SKY_HORIZON + elevation * _SKY_ZENITH
    p = hits.points[hit]
    n = scene.normal(p[:, 0], p[:, 1])
    cos_incidence = np.abs((n * d_unit[hit]).sum(-1))
    pixel_angle = 1.0 / math.sqrt(camera.fx * camera.fy)
    distance = hits.depth[hit] * np.linalg.norm(d[hit], axis=-1)
    footprint = distance * pixel_angle / np.sqrt(np.maximum(cos_incidence, 0.02))
    albedo = scene.colour(p[:, 0], p[:, 1], p[:, 2], footprint=footprint, normal=n)
    rgb[hit] = albedo * shade(n)[:, None]
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def _mark_observed(observed: np.ndarray, grid: HeightMap, points: np.ndarray) -> None:
    """Set ``observed`` at the three vertices of the grid triangle under each world point (N, 3)."""
    rc = grid.world_to_grid(points[:, :2])
    r, c = rc[:, 0], rc[:, 1]
    ok = (r >= 0) & (r < grid.ny - 1) & (c >= 0) & (c < grid.nx - 1)
    r, c = r[ok], c[ok]
    i, j = np.floor(r).astype(np.intp), np.floor(c).astype(np.intp)
    k = (r - i > c - j).astype(np.intp)  # triangle 1 covers r >= s (heightmap triangulation)
    ids = (i * grid.nx + j)[:, None] + triangle_vertex_offsets(grid.nx)[k]
    observed.reshape(-1)[ids.ravel()] = True


def ground_truth_heightmap(scene: Scene) -> HeightMap:
    """The scene on its grid: exact heights at the vertices, shaded colours, information GT_INFORMATION.

    ``observed`` is left all False (:func:`generate` fills it from the frames).
    """
    grid = scene.grid.make_heightmap()
    xy = grid.vertex_xy()
    x, y = xy[..., 0], xy[..., 1]
    h = scene.height(x, y)
    n = scene.normal(x, y)
    albedo = scene.colour(x, y, h, footprint=grid.cell_size, normal=n)
    grid.heights = h.astype(np.float32)
    grid.information = np.full(grid.shape, GT_INFORMATION, dtype=np.float32)
    grid.colors = (albedo * shade(n)[..., None]).astype(np.float32)
    return grid


def generate(
    scene: str | Scene = "floor",
    frames: int = 40,
    width: int = 320,
    height: int = 240,
    noise: bool = False,
    seed: int = 0,
    fps: float = 30.0,
    focal_factor: float = 0.8,
    poses: np.ndarray | None = None,
    progress: bool = False,
    distortion: tuple[float, ...] | None = None,
    pose_noise: PoseNoise | tuple[float, float] | None = None,
    photometric: Photometric | tuple[float, float, float] | None = None,
    clock_offset: float = 0.0,
) -> SyntheticSequence:
    """Render a synthetic sequence in memory.

    Args:
        scene: a scene name (see :data:`~heightfusion.synthetic.scenes.SCENE_NAMES`) or a :class:`Scene`.
        frames: number of frames along the scene's default trajectory (ignored when ``poses`` is given).
        width, height: image size, pixels.
        noise: add Kinect-like Gaussian depth noise (:class:`~heightfusion.depth.SensorNoise` defaults).
        seed: seed of the depth noise, the pose drift and the photometric changes.
        fps: frame rate; frame i has timestamp i / fps seconds.
        focal_factor: fx = fy = focal_factor * width.
        poses: (N, 4, 4) ``T_wc`` to use instead of the default trajectory.
        progress: show a progress bar.
        distortion: OpenCV lens distortion coefficients: images and depth are rendered through that
            lens (:meth:`~heightfusion.PinholeCamera.lens_rays`) and the camera carries them.
        pose_noise: a :class:`~heightfusion.synthetic.perturb.PoseNoise` or (degrees, millimetres): the
            frames carry poses with that drifting error, ``true_poses`` the ones they were rendered at.
        photometric: a :class:`~heightfusion.synthetic.perturb.Photometric` or (gain, bias, noise):
            smooth per-frame exposure gain and bias and Gaussian noise (8-bit levels) on the images.
        clock_offset: seconds (at most :data:`heightfusion.datasets.MAX_POSE_TIME_OFFSET_S` either way) the given
            trajectory's clock runs ahead of the images', as motion capture's may: its samples (the true poses,
            drifted with ``pose_noise``) are stamped at the frames' times plus this, and each frame carries the
            trajectory's pose at its own time (interpolated, the first or last sample beyond them);
            ``replay --time-offset-ms`` undoes it.

    Raises:
        ValueError: for an unknown scene or out-of-range values, naming the argument.
    """
    scene_obj = make_scene(scene) if isinstance(scene, str) else scene
    if not isinstance(scene_obj, Scene):
        raise ValueError(f"scene must be a scene name or a Scene, got {scene!r}")
    width, height = _check_int("width", width, 8), _check_int("height", height, 8)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if poses is None:
        poses = trajectory_for(scene_obj, _check_int("frames", frames, 1))
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or len(poses) == 0:
        raise ValueError(f"poses must have shape (N, 4, 4) with N >= 1, got {poses.shape}")
    for i, T_wc in enumerate(poses):
        validate_pose(T_wc, f"poses[{i}]")
    pose_noise, photometric = as_pose_noise(pose_noise), as_photometric(photometric)
    camera = dataclasses.replace(default_camera(width, height, focal_factor), distortion=distortion)
    rng = np.random.default_rng(seed)
    # Own generators (seeded by seed) for each perturbation: adding one leaves the depth noise as it was.
    trajectory = poses if pose_noise is None else drift_poses(poses, pose_noise, np.random.default_rng((seed, 1)))
    if not (isinstance(clock_offset, (int, float)) and math.isfinite(clock_offset)
            and abs(clock_offset) <= MAX_POSE_TIME_OFFSET_S):
        raise ValueError(f"clock_offset must be a number of seconds within +-{MAX_POSE_TIME_OFFSET_S:g}, "
                         f"got {clock_offset!r}")
    given_poses = _late(trajectory, np.arange(len(poses)) / fps, clock_offset)
    photo_rng = np.random.default_rng((seed, 2))
    if photometric is not None:
        gains, biases = exposure_series(len(poses), photometric, photo_rng)
    gt = ground_truth_heightmap(scene_obj)
    from tqdm import tqdm

    out_frames, sigmas = [], []
    for index, T_wc in enumerate(tqdm(poses, desc=f"synth {scene_obj.name}", unit="frame", disable=not progress)):
        hits = raycast(scene_obj, camera, T_wc)
        image = render_image(scene_obj, camera, hits)
        if photometric is not None:
            image = perturb_image(image, gains[index], biases[index], photometric.noise, photo_rng)
        depth = hits.depth
        sigma = SensorNoise().sigma(depth)
        if noise:
            depth = (depth + sigma * rng.standard_normal(depth.shape)).astype(np.float32)
            depth[depth <= 0] = np.nan
        _mark_observed(gt.observed, gt, hits.points[hits.hit])
        out_frames.append(Frame(index / fps, image, depth, given_poses[index].copy(), camera, index))
        sigmas.append(sigma)
    return SyntheticSequence(scene_obj, camera, out_frames, sigmas, gt, bool(noise), int(seed), poses.copy(),
                             pose_noise, photometric, float(clock_offset), trajectory.copy())


def _late(samples: np.ndarray, times: np.ndarray, clock_offset: float) -> np.ndarray:
    """(N, 4, 4) the trajectory of pose ``samples`` stamped at ``times + clock_offset``, at ``times`` (interpolated;
    the first or last sample beyond them)."""
    if not clock_offset:
        return samples
    tum = np.array([pose_to_tum(T) for T in samples])
    trajectory = Trajectory.from_samples(times + clock_offset, tum[:, :3], tum[:, 3:])
    clamped = np.clip(times, trajectory.timestamps[0], trajectory.timestamps[-1])
    return np.array([trajectory.pose_at(t, max_gap=math.inf) for t in clamped])


def _stamp(t: float) -> str:
    return f"{t:.6f}"


def _write_text(path: Path, header: str, lines: list[str]) -> None:
    with atomic_write(path) as f:
        f.write((header + "".join(line + "\n" for line in lines)).encode("utf-8"))


def _write_image(path: Path, array: np.ndarray) -> None:
    """Encode by the file's extension (.png lossless, .jpg quality 92) and write atomically."""
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if path.suffix == ".jpg" else []
    ok, buf = cv2.imencode(path.suffix, array, params)
    if not ok:
        raise ValueError(f"{path}: image encoding failed")
    with atomic_write(path) as f:
        f.write(buf.tobytes())


def depth_to_png(depth: np.ndarray, depth_scale: float = DEPTH_SCALE) -> np.ndarray:
    """uint16 depth image (depth * depth_scale, rounded); 0 where depth is NaN, <= 0 or beyond the range."""
    scaled = np.rint(np.nan_to_num(depth, nan=0.0) * depth_scale)
    return np.where((scaled > 0) & (scaled <= 65535), scaled, 0).astype(np.uint16)


def write_tum(
    seq: SyntheticSequence, out_dir: str | os.PathLike, progress: bool | None = None, image_format: str = "png"
) -> Path:
    """Write ``seq`` in the TUM RGB-D layout with ground truth; returns the folder.

    Files: ``rgb/<t>.png`` (or ``.jpg`` with ``image_format="jpg"``: a quarter of the size, for
    bundled samples), ``depth/<t>.png`` (uint16, 1/5000 m, 0 = invalid), ``rgb.txt``,
    ``depth.txt``, ``groundtruth.txt`` (``t tx ty tz qx qy qz qw``: the frames' poses, perturbed with
    ``pose_noise``; with a ``clock_offset`` the trajectory's samples, stamped that much later), then also
    ``groundtruth_true.txt`` (the true poses), ``camera.yaml`` (depth_scale
    5000) and ``gt_heightmap.npz``. ``progress``: show a bar (None: only for 100+ frames on a terminal).
    """
    import cv2
    from tqdm import tqdm

    from ..datasets.camera_yaml import save_camera_yaml

    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(exist_ok=True)
    disable = (len(seq) < 100 or None) if progress is None else not progress  # None: tqdm checks for a tty
    rgb_lines, depth_lines = [], []
    for frame in tqdm(seq.frames, desc=f"write {out.name}", unit="frame", disable=disable):
        stamp = _stamp(frame.timestamp)
        _write_image(out / "rgb" / f"{stamp}.{image_format}", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        _write_image(out / "depth" / f"{stamp}.png", depth_to_png(frame.depth))
        rgb_lines.append(f"{stamp} rgb/{stamp}.{image_format}")
        depth_lines.append(f"{stamp} depth/{stamp}.png")
    source = (f"heightfusion synthetic scene '{seq.scene.name}', noise={seq.noise}, seed={seq.seed}, "
              f"pose_noise={seq.pose_noise}, photometric={seq.photometric}, clock_offset={seq.clock_offset}")
    _write_text(out / "rgb.txt", f"# color images\n# {source}\n# timestamp filename\n", rgb_lines)
    _write_text(out / "depth.txt", f"# depth maps\n# {source}\n# timestamp filename\n", depth_lines)
    timestamps = [frame.timestamp for frame in seq.frames]
    perturbed = seq.pose_noise is not None or seq.clock_offset != 0
    drifting = f" with a drifting error or a clock offset; the true one is in {TRUE_TRAJECTORY_FILE}" if perturbed else ""
    # In step, the frames' own poses (a caller may have moved them); with a clock offset, the trajectory's samples.
    samples = seq.trajectory if seq.clock_offset else seq.poses
    write_tum_trajectory(out / "groundtruth.txt", [(t + seq.clock_offset, T) for t, T in zip(timestamps, samples)],
                         f"ground truth trajectory{drifting}\n{source}")
    if perturbed:
        write_tum_trajectory(out / TRUE_TRAJECTORY_FILE, list(zip(timestamps, seq.true_poses)),
                             f"true trajectory (the poses the frames were rendered at)\n{source}")
    elif (out / TRUE_TRAJECTORY_FILE).exists():  # a stale one from an earlier run would become the reference
        (out / TRUE_TRAJECTORY_FILE).unlink()
    save_camera_yaml(out / "camera.yaml", seq.camera, depth_scale=DEPTH_SCALE)
    save_heightmap(out / "gt_heightmap.npz", seq.gt_heightmap)
    return out
