"""EuRoC MAV (ASL format), monocular: the left camera ``cam0`` and the ground-truth state estimate.

Layout under ``mav0/`` (the path opened may be the sequence folder or ``mav0`` itself):
``cam0/data.csv`` (``timestamp_ns,filename``), ``cam0/data/*.png``, ``cam0/sensor.yaml`` (``intrinsics``
fu fv cu cv, ``resolution``, radial-tangential ``distortion_coefficients``, ``T_BS`` body-to-sensor)
and ``state_groundtruth_estimate0/data.csv`` (``timestamp_ns, p x y z, q w x y z, ...``: the body
pose T_wb, quaternion w first). A camera pose is ``T_wc = T_wb @ T_bs``, the body pose interpolated
at the image time (see :mod:`heightfusion.datasets.trajectory`); the ground truth starts after the
first images, so those are skipped for lack of a pose. A trajectory passed with ``trajectory=`` is
TUM format and read as camera poses, without ``T_bs``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import yaml

from ..camera import PinholeCamera
from ..poses import validate_pose
from .base import (
    BAD_LINE,
    DatasetError,
    FrameRecord,
    Issues,
    OpenOptions,
    Sequence,
    attach_poses,
    configured_camera,
    load_gt_heightmap,
    load_trajectory,
    read_text_lines,
    sequence_name,
)
from .trajectory import Trajectory

_SUPPORTED_DISTORTION = ("radial-tangential", "radtan", "none")


def find_mav0(folder: Path) -> Path | None:
    """The ``mav0`` folder of a EuRoC sequence given as the sequence folder or ``mav0``, or None."""
    for root in (folder / "mav0", folder):
        if (root / "cam0" / "data.csv").is_file():
            return root
    return None


def detect(folder: Path) -> bool:
    """Whether ``folder`` is a EuRoC sequence (or its ``mav0`` folder)."""
    return find_mav0(folder) is not None


def load(folder: Path, options: OpenOptions) -> Sequence:
    """Open a EuRoC MAV sequence (see the module docstring)."""
    mav0 = find_mav0(folder)
    issues = Issues()
    sensor = _read_yaml(mav0 / "cam0" / "sensor.yaml")
    camera, _ = configured_camera(folder, options)
    candidates = _read_images(mav0 / "cam0", issues)
    if options.trajectory is not None:
        trajectory, T_bs = load_trajectory(options.trajectory, issues), np.eye(4)
    else:
        trajectory = _read_groundtruth(mav0 / "state_groundtruth_estimate0" / "data.csv", issues)
        T_bs = _body_to_sensor(sensor, mav0 / "cam0" / "sensor.yaml")
    records = [
        r if r.T_wc is None else dataclasses.replace(r, T_wc=r.T_wc @ T_bs)
        for r in attach_poses(candidates, trajectory, options.max_difference, issues)
    ]
    name = sequence_name(mav0.parent if mav0.name == "mav0" else mav0)
    return Sequence(
        path=folder,
        name=name,
        format="euroc",
        camera=camera or _sensor_camera(sensor, mav0 / "cam0" / "sensor.yaml"),
        records=records,
        issues=issues,
        options=options,
        gt_heightmap=load_gt_heightmap(folder, issues),
    )


def _read_yaml(path: Path) -> dict:
    """The mapping in a EuRoC ``sensor.yaml``; DatasetError if it is missing or not a mapping."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot read EuRoC camera file ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a EuRoC sensor.yaml mapping")
    return data


def _sensor_camera(sensor: dict, path: Path) -> PinholeCamera:
    """The pinhole camera of ``sensor.yaml``; DatasetError for a lens model OpenCV's pinhole cannot hold."""
    model = str(sensor.get("distortion_model", "none")).lower()
    if model not in _SUPPORTED_DISTORTION:
        raise DatasetError(f"{path}: distortion model {model!r} is not supported (expected radial-tangential); "
                           f"give the intrinsics in camera.yaml")
    try:
        fx, fy, cx, cy = (float(v) for v in sensor["intrinsics"])
        width, height = (int(v) for v in sensor["resolution"])
        distortion = sensor.get("distortion_coefficients") if model != "none" else None
        return PinholeCamera(width, height, fx, fy, cx, cy, distortion)
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: bad or missing intrinsics/resolution/distortion_coefficients ({exc})") from None


def _body_to_sensor(sensor: dict, path: Path) -> np.ndarray:
    """``T_BS`` of ``sensor.yaml`` (4x4 camera-to-body); DatasetError if missing or not rigid."""
    try:
        return validate_pose(np.asarray(sensor["T_BS"]["data"], dtype=np.float64).reshape(4, 4), "T_BS")
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: bad or missing T_BS ({exc})") from None


def _read_images(cam0: Path, issues: Issues) -> list[FrameRecord]:
    """Frames listed in ``cam0/data.csv``; garbled lines counted."""
    path = cam0 / "data.csv"
    records = []
    for number, line in read_text_lines(path):
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2 or not fields[0].isdigit() or not fields[1]:
            issues.skip(BAD_LINE, f"{path}:{number}: garbled line {line[:80]!r}")
            continue
        records.append(FrameRecord(len(records), int(fields[0]) * 1e-9, cam0 / "data" / fields[1]))
    return records


def _read_groundtruth(path: Path, issues: Issues) -> Trajectory | None:
    """Body poses from ``state_groundtruth_estimate0/data.csv`` (None if absent); garbled lines counted."""
    if not path.is_file():
        return None
    rows = []
    for number, line in read_text_lines(path):
        fields = line.split(",")
        try:
            values = [float(f) for f in fields[:8]]
        except ValueError:
            values = []
        if len(values) != 8 or not all(math.isfinite(v) for v in values) or not any(values[4:8]):
            issues.skip(BAD_LINE, f"{path}:{number}: garbled ground-truth line {line[:80]!r}")
            continue
        rows.append(values)
    data = np.array(rows, dtype=np.float64).reshape(-1, 8)
    # Columns: t [ns], p x y z, q w x y z -> Trajectory wants quaternions x y z w.
    return Trajectory.from_samples(data[:, 0] * 1e-9, data[:, 1:4], data[:, [5, 6, 7, 4]])
