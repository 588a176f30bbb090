"""What a mapping run leaves in its output folder: the map, its mesh, pictures and ``metrics.json``.

One writer for every producer of a map (``replay``, ``live``, research scripts), so all of them leave
the same files, which the viewer, the pictures and later comparisons read alike.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np

from . import visualize
from .atomic import atomic_write
from .heightmap import HeightMap, export_ply, save_heightmap
from .navigation import FreeSpaceSettings, label_counts

#: Files :func:`write_map_outputs` writes (``error.png`` only with a ground truth).
OUTPUT_FILES = ("heightmap.npz", "mesh.ply", "height.png", "color.png", "uncertainty.png", "free_space.png",
                "error.png", "metrics.json")


def run_metrics(
    frames_used: int,
    skipped: Mapping[str, int],
    seconds: float,
    ms_per_frame: Mapping[str, float],
    evaluation: dict | None = None,
    messages: list[str] | None = None,
) -> dict:
    """The ``metrics.json`` entries of a run: frames used and skipped (reason -> count), frames/s, ms per
    frame per stage, the evaluation against ground truth (or None) and the reader's messages."""
    return {
        "frames": {"used": int(frames_used), "skipped": dict(skipped)},
        "frames_per_second": frames_used / seconds if seconds > 0 else math.nan,
        "ms_per_frame": dict(ms_per_frame),
        "evaluation": evaluation,
        "messages": list(messages or []),
    }


def write_map_outputs(
    out: str | os.PathLike,
    grid: HeightMap,
    metrics: Mapping,
    truth: HeightMap | None = None,
    free_space: FreeSpaceSettings = FreeSpaceSettings(),
) -> dict:
    """Write ``grid`` and what describes it to the folder ``out`` (created); returns what metrics.json holds.

    Files: ``heightmap.npz``, ``mesh.ply`` (observed triangles), PNGs of height, colour, uncertainty and
    free space (for the robot of ``free_space``), ``error.png`` when ``truth`` is given, and
    ``metrics.json``: ``metrics`` (e.g. :func:`run_metrics`) with the map's grid and the free-space
    settings and label counts added. Every file is written atomically.

    Example:
        >>> import tempfile, heightfusion as hf
        >>> result = hf.replay(max_frames=3, progress=False)
        >>> out = tempfile.mkdtemp()
        >>> written = hf.write_map_outputs(out, result.grid, result.metrics(), result.truth)
        >>> written["frames"]["used"], sorted(written)[:3]
        (3, ['evaluation', 'frames', 'frames_per_second'])
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_heightmap(out / "heightmap.npz", grid)
    export_ply(out / "mesh.ply", grid, observed_only=True)
    visualize.height_png(out / "height.png", grid)
    visualize.color_png(out / "color.png", grid)
    visualize.uncertainty_png(out / "uncertainty.png", grid)
    labels = free_space.labels(grid)
    visualize.write_png(out / "free_space.png", visualize.render_free_space(labels, visualize.free_space_notes(free_space)))
    if truth is not None:
        visualize.error_png(out / "error.png", grid, truth)
    written = {
        **metrics,
        "map": {"origin": grid.origin.tolist(), "cell_size": grid.cell_size, "shape": list(grid.shape),
                "observed": int(grid.observed.sum()), **_sigma_summary(grid)},
        "free_space": {"max_step": free_space.max_step, "max_slope_deg": math.degrees(free_space.max_slope),
                       "robot_radius": free_space.robot_radius, "max_sigma": free_space.max_sigma,
                       "vertices": label_counts(labels)},
    }
    with atomic_write(out / "metrics.json") as f:
        f.write(json.dumps(written, indent=2).encode("utf-8"))
    return written


def _sigma_summary(grid: HeightMap) -> dict:
    """Median height sigma and its systematic part over the observed vertices, millimetres (None: none observed)."""
    seen = grid.observed
    if not seen.any():
        return {"sigma_median_mm": None, "systematic_sigma_median_mm": None}
    return {"sigma_median_mm": float(np.median(grid.sigma[seen])) * 1e3,
            "systematic_sigma_median_mm": float(np.median(grid.systematic_sigma[seen])) * 1e3}


def write_replay_outputs(
    out: str | os.PathLike,
    path: str | os.PathLike,
    result,
    options: Mapping,
    free_space: FreeSpaceSettings = FreeSpaceSettings(),
) -> dict:
    """Write ``result`` of ``heightfusion.replay.replay(path, **options)`` to the folder ``out`` as
    ``heightfusion replay`` does: :func:`write_map_outputs` with the dataset, depth source, backend and the
    fusion and stereo settings in ``metrics.json``; returns what metrics.json holds."""
    stereo = options.get("stereo")
    extra = {"dataset": str(path), "depth": options.get("depth", "sensor"), "backend": options.get("backend", "gl"),
             "config": {k: asdict(v) if is_dataclass(v) else v for k, v in result.config.__dict__.items()}}
    if stereo is not None:
        extra["stereo"] = asdict(stereo)
    metrics = write_map_outputs(out, result.grid, {**extra, **result.metrics()}, result.truth, free_space)
    write_trajectory_outputs(out, result.poses, result.reference_poses)
    return metrics


def write_trajectory_outputs(out: str | os.PathLike, poses, reference=None) -> None:
    """``trajectory.txt`` (TUM format: the poses a run used) in the folder ``out``, and with a ``reference``
    trajectory ``trajectory.png`` (:func:`heightfusion.trajectory_eval.plot_trajectories`)."""
    from .trajectory_eval import MIN_MATCHED, plot_trajectories, write_tum_trajectory

    write_tum_trajectory(Path(out) / "trajectory.txt", poses, comment="poses used by heightfusion (camera to world)")
    if reference and len(poses) >= MIN_MATCHED:
        try:
            plot_trajectories(Path(out) / "trajectory.png", {"used": poses}, reference, title="camera trajectory")
        except ValueError:  # too few poses matched in time: the errors in metrics.json say so too
            pass
