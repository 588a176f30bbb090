"""Offline replay: fuse a recorded sequence into a height map and write what a person wants to see.

``heightfusion replay [PATH]`` (the bundled sample by default) fuses the dataset's depth images, or with
``--depth mvs`` depth from monocular motion stereo (:class:`heightfusion.depth.MotionStereo`: images and
poses only; frames without enough parallax yet are skipped and counted), and writes to ``--out``:
``heightmap.npz`` (DESIGN.md schema), ``mesh.ply`` (observed triangles, coloured), PNGs of height,
colour, uncertainty, free space (:mod:`heightfusion.navigation`, settings ``--max-step``, ``--max-slope``,
``--robot-radius``, ``--max-sigma``) and, with ground truth, error, and ``metrics.json`` (evaluation, ms
per stage, frames used and skipped by reason, free-space settings and vertex counts per label).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import visualize
from .atomic import atomic_write
from .fusion import SOLVERS, FusionConfig, HeightMapFuser
from .heightmap import HeightMap, export_ply, save_heightmap
from .metrics import StageTimer, evaluate, smooth_mask_from_heights
from .pipeline import (
    FramePipeline,
    SkippedFrame,
    add_depth_arguments,
    fusion_config,
    stereo_config_from_args,
    uses_stereo,
)
from .navigation import (
    DEFAULT_MAX_SLOPE,
    DEFAULT_MAX_STEP,
    DEFAULT_ROBOT_RADIUS,
    add_free_space_arguments,
    free_space,
    free_space_kwargs,
    label_counts,
)
from .render import BACKENDS, make_renderer

if TYPE_CHECKING:  # the stereo needs torch: imported when "mvs" is asked for
    from .depth import KeyframeConfig, StereoConfig

#: Longest map side ``replay`` sizes from the trajectory before asking for a larger cell size.
MAX_AUTO_SIDE = 1024
# Every how many frames the map extent is sampled from, when sized from the data.
_EXTENT_STRIDE = 5


@dataclass
class ReplayResult:
    """What :func:`replay` did.

    Attributes:
        grid: the fused map.
        frames_used: frames fused.
        skipped: reason -> count of frames (or lines) skipped, by the reader and by the fusion.
        seconds: wall-clock time of the fusion loop, reading frames included.
        ms_per_frame: mean milliseconds per fused frame, per fusion stage (and "read").
        truth: the dataset's ground-truth height map, or None.
        evaluation: :func:`heightfusion.metrics.evaluate` against it, or None.
        messages: what the dataset reader had to say (skipped lines, assumed intrinsics...).
        config: the fusion settings used.
    """

    grid: HeightMap
    frames_used: int
    skipped: Counter
    seconds: float
    ms_per_frame: dict[str, float]
    truth: HeightMap | None = None
    evaluation: dict | None = None
    messages: list[str] = field(default_factory=list)
    config: FusionConfig | None = None

    @property
    def fps(self) -> float:
        return self.frames_used / self.seconds if self.seconds > 0 else math.nan


def replay(
    path: str | Path | None = None,
    *,
    depth: str = "sensor",
    backend: str = "gl",
    cell_size: float | None = None,
    origin: tuple[float, float] | None = None,
    shape: tuple[int, int] | None = None,
    max_frames: int | None = None,
    config: FusionConfig | None = None,
    stereo: StereoConfig | None = None,
    keyframes: KeyframeConfig | None = None,
    progress: bool = True,
    fusion_settings: dict | None = None,
) -> ReplayResult:
    """Fuse the sequence at ``path`` (default: the bundled sample) into a height map.

    The map's grid comes from ``origin``/``cell_size``/``shape`` where given, else from the dataset's
    ``gt_heightmap.npz``, else from the extent of the points the sequence's depth sees (monocular data
    has none: give the grid). With ``depth="mvs"`` each frame's depth and sigma come from
    :class:`~heightfusion.depth.MotionStereo` (settings ``stereo`` and ``keyframes``) and depth images in
    the dataset are not used; ``"auto"`` uses them where frames have them (:mod:`heightfusion.pipeline`).
    Without ``config`` the fusion settings are :func:`heightfusion.pipeline.fusion_config` of
    ``fusion_settings`` (with the stereo sigma floor when stereo gives the depth).
    Raises ``DatasetError`` (a ValueError) for a path that is not a dataset.
    """
    from tqdm import tqdm

    from . import datasets

    sequence = datasets.open(path if path is not None else datasets.sample_path(), max_frames=max_frames)
    grid = _make_grid(sequence, cell_size, origin, shape)
    timer = StageTimer()
    if config is None:
        config = fusion_config(uses_stereo(depth, sequence), **(fusion_settings or {}))
    fuser = HeightMapFuser(grid, make_renderer(backend), config)
    pipeline = FramePipeline(fuser, depth, stereo, keyframes, timer=timer)
    skipped: Counter = Counter()
    used = 0
    start = time.perf_counter()
    frames = iter(sequence)
    with tqdm(total=len(sequence), unit="frame", desc=f"replay {sequence.name}", disable=not progress) as bar:
        while True:
            with timer("read"):
                frame = next(frames, None)
            if frame is None:
                break
            bar.update()
            result = pipeline.process(frame)
            if isinstance(result, SkippedFrame):
                skipped[result.reason] += 1
                if result.detail:
                    bar.write(f"frame {frame.index} (t={frame.timestamp:.3f}) skipped: {result.detail}")
                continue
            used += 1
    seconds = time.perf_counter() - start
    skipped.update(sequence.skipped)
    evaluation = None
    if sequence.gt_heightmap is not None:
        evaluation = evaluate(grid, sequence.gt_heightmap, smooth_mask_from_heights(sequence.gt_heightmap))
    return ReplayResult(
        grid=grid,
        frames_used=used,
        skipped=skipped,
        seconds=seconds,
        ms_per_frame=timer.mean_ms(frames=max(used, 1)),
        truth=sequence.gt_heightmap,
        evaluation=evaluation,
        messages=list(sequence.messages),
        config=config,
    )


def _make_grid(sequence, cell_size, origin, shape) -> HeightMap:
    """The map grid: explicit arguments first, then the ground truth's grid, then the data's extent."""
    gt = sequence.gt_heightmap
    if gt is not None:
        cell_size = gt.cell_size if cell_size is None else cell_size
        if origin is None and shape is None and cell_size == gt.cell_size:
            return HeightMap(tuple(gt.origin), gt.cell_size, gt.shape)
        x0, x1, y0, y1 = gt.extent
    elif origin is None or shape is None:
        x0, x1, y0, y1 = _data_extent(sequence)
    cell_size = 0.02 if cell_size is None else cell_size
    if not (math.isfinite(cell_size) and cell_size > 0):
        raise ValueError(f"--cell-size must be a positive length in metres, got {cell_size!r}")
    if origin is None:
        origin = (x0, y0)
    if shape is None:
        shape = (int(math.ceil((y1 - origin[1]) / cell_size)) + 1, int(math.ceil((x1 - origin[0]) / cell_size)) + 1)
        if max(shape) > MAX_AUTO_SIDE:
            raise ValueError(
                f"the data spans {x1 - x0:.1f} m x {y1 - y0:.1f} m: {shape[1]} x {shape[0]} vertices at "
                f"{cell_size:g} m cells; pass a larger --cell-size or an explicit --origin and --shape"
            )
    return HeightMap(origin, cell_size, shape)


def _data_extent(sequence) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) holding 98 % of the points that every few frames' depth sees."""
    points = []
    for k, frame in enumerate(sequence):
        if k % _EXTENT_STRIDE or frame.depth is None or frame.T_wc is None:
            continue
        rays = frame.camera.pixel_rays()[::4, ::4]
        z = frame.depth[::4, ::4]
        valid = np.isfinite(z)
        points.append((rays[valid] * z[valid, None]) @ frame.T_wc[:3, :3].T + frame.T_wc[:3, 3])
    if not points:
        raise ValueError(
            f"{sequence.path}: no frame with depth and pose to size the map from; pass --origin X Y and --shape NY NX"
        )
    xy = np.concatenate(points)[:, :2]
    lo, hi = np.percentile(xy, 1, axis=0), np.percentile(xy, 99, axis=0)
    return lo[0], hi[0], lo[1], hi[1]


def write_outputs(
    result: ReplayResult,
    out: str | Path,
    extra: dict,
    max_step: float = DEFAULT_MAX_STEP,
    max_slope: float = DEFAULT_MAX_SLOPE,
    robot_radius: float = DEFAULT_ROBOT_RADIUS,
    max_sigma: float | None = None,
) -> dict:
    """Write the map, mesh, pictures and metrics.json to ``out``; returns what metrics.json holds.

    ``max_step``, ``max_slope`` (radians), ``robot_radius`` and ``max_sigma`` are the free-space settings
    (:func:`heightfusion.navigation.free_space`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = result.grid
    save_heightmap(out / "heightmap.npz", grid)
    export_ply(out / "mesh.ply", grid, observed_only=True)
    visualize.height_png(out / "height.png", grid)
    visualize.color_png(out / "color.png", grid)
    visualize.uncertainty_png(out / "uncertainty.png", grid)
    labels = free_space(grid, max_step, max_slope, robot_radius, max_sigma)
    notes = visualize.free_space_notes(max_step, max_slope, robot_radius, max_sigma)
    visualize.write_png(out / "free_space.png", visualize.render_free_space(labels, notes))
    if result.truth is not None:
        visualize.error_png(out / "error.png", grid, result.truth)
    metrics = {
        **extra,
        "frames": {"used": result.frames_used, "skipped": dict(result.skipped)},
        "frames_per_second": result.fps,
        "ms_per_frame": result.ms_per_frame,
        "map": {"origin": grid.origin.tolist(), "cell_size": grid.cell_size, "shape": list(grid.shape),
                "observed": int(grid.observed.sum())},
        "evaluation": result.evaluation,
        "free_space": {"max_step": max_step, "max_slope_deg": math.degrees(max_slope), "robot_radius": robot_radius,
                       "max_sigma": max_sigma, "vertices": label_counts(labels)},
        "messages": result.messages,
    }
    with atomic_write(out / "metrics.json") as f:
        f.write(json.dumps(metrics, indent=2).encode("utf-8"))
    return metrics


# --- command line ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", help="dataset folder or video (default: the bundled sample)")
    add_depth_arguments(parser, default="sensor")
    parser.add_argument("--backend", default="gl", choices=BACKENDS, help="renderer backend (default gl)")
    parser.add_argument("--cell-size", type=float, help="map cell size in metres (default: ground truth's, else 0.02)")
    parser.add_argument("--origin", type=float, nargs=2, metavar=("X", "Y"), help="world (x, y) of vertex (0, 0)")
    parser.add_argument("--shape", type=int, nargs=2, metavar=("NY", "NX"), help="map size in vertices")
    parser.add_argument("--max-frames", type=int, help="fuse at most this many frames")
    parser.add_argument("--solver", default=FusionConfig.solver, choices=SOLVERS, help="Gauss-Newton solve")
    parser.add_argument("--iterations", type=int, default=FusionConfig.iterations, help="Gauss-Newton iterations per frame")
    parser.add_argument("--out", default="replay_out", help="output folder (default replay_out)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_free_space_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from . import datasets

    settings = {"solver": args.solver, "iterations": args.iterations, "sigma_floor": args.sigma_floor}
    free_space_settings = free_space_kwargs(args)  # checked before the fusion, not after
    stereo = stereo_config_from_args(args)
    result = replay(
        args.path, depth=args.depth, backend=args.backend, cell_size=args.cell_size,
        origin=None if args.origin is None else tuple(args.origin),
        shape=None if args.shape is None else tuple(args.shape),
        max_frames=args.max_frames, stereo=stereo, progress=not args.quiet, fusion_settings=settings,
    )
    path = args.path if args.path is not None else datasets.sample_path()
    extra = {"dataset": str(path), "depth": args.depth, "backend": args.backend, "config": _config_dict(result.config)}
    if stereo is not None:
        extra["stereo"] = asdict(stereo)
    metrics = write_outputs(result, args.out, extra, **free_space_settings)
    print(_summary(result, Path(args.out), metrics["free_space"]["vertices"]))
    return 0


def _config_dict(config: FusionConfig) -> dict:
    return {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in config.__dict__.items()}


def _summary(result: ReplayResult, out: Path, free_counts: dict[str, int]) -> str:
    lines = [
        f"fused {result.frames_used} frames in {result.seconds:.1f} s ({result.fps:.1f} frames/s)"
        + (f"; skipped {sum(result.skipped.values())}: {dict(result.skipped)}" if result.skipped else ""),
        "ms per frame: " + ", ".join(f"{k} {v:.1f}" for k, v in result.ms_per_frame.items()),
    ]
    e = result.evaluation
    if e is not None:
        lines.append(
            f"vs ground truth: RMSE {e['rmse'] * 1e3:.2f} mm (smooth areas {e['smooth_rmse'] * 1e3:.2f} mm), "
            f"median {e['median'] * 1e3:.2f} mm, completeness {e['completeness']:.3f}, "
            f"within 1/2 sigma {e['calib_1sigma']:.2f}/{e['calib_2sigma']:.2f}"
        )
    lines.append("free space: " + ", ".join(f"{n} {name}" for name, n in free_counts.items()) + " vertices")
    lines.append(f"wrote {out}/: heightmap.npz mesh.ply height.png color.png uncertainty.png free_space.png"
                 + (" error.png" if e is not None else "") + " metrics.json")
    return "\n".join(lines)
