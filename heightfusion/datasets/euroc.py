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
import re
from pathlib import Path

import numpy as np

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
from .camera_yaml import checked_size, read_yaml_mapping, yaml_numbers
from .trajectory import Trajectory, is_pose_row

_SUPPORTED_DISTORTION = ("radial-tangential", "radtan", "none")
# An image timestamp: an unsigned 64-bit count of nanoseconds, in ASCII digits (str.isdigit also takes
# digits such as '²' that int() refuses, and int() refuses more than 4300 digits).
_NANOSECONDS = re.compile(r"[0-9]{1,20}")


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
        for r in attach_poses(candidates, trajectory, options.max_difference, issues, options.pose_time_offset)
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
        # The ground truth is the reference; a trajectory of the user's (trajectory=) is not.
        reference=None if options.trajectory is not None else trajectory,
        reference_offset=T_bs,
    )


def _read_yaml(path: Path) -> dict:
    """The mapping in a EuRoC ``sensor.yaml``; DatasetError if it is missing or not a mapping."""
    try:
        return read_yaml_mapping(path, "EuRoC camera file")
    except ValueError as exc:
        raise DatasetError(str(exc)) from None


def _sensor_camera(sensor: dict, path: Path) -> PinholeCamera:
    """The pinhole camera of ``sensor.yaml``; DatasetError for a lens model OpenCV's pinhole cannot hold."""
    model = sensor.get("distortion_model", "none")
    if not isinstance(model, str) or model.lower() not in _SUPPORTED_DISTORTION:
        shown = repr(model[:40]) if isinstance(model, str) else f"of type {type(model).__name__}"
        raise DatasetError(f"{path}: distortion model {shown} is not supported (expected radial-tangential); "
                           f"give the intrinsics in camera.yaml")
    coefficients = sensor.get("distortion_coefficients")
    try:
        fx, fy, cx, cy = yaml_numbers(sensor.get("intrinsics"), "intrinsics")
        width, height = yaml_numbers(sensor.get("resolution"), "resolution")
        distortion = None if model.lower() == "none" or coefficients is None else yaml_numbers(
            coefficients, "distortion_coefficients")
        return checked_size(PinholeCamera(width, height, fx, fy, cx, cy, distortion))
    except (TypeError, ValueError, OverflowError) as exc:
        raise DatasetError(f"{path}: bad or missing intrinsics/resolution/distortion_coefficients ({exc})") from None


def _body_to_sensor(sensor: dict, path: Path) -> np.ndarray:
    """``T_BS`` of ``sensor.yaml`` (4x4 camera-to-body); DatasetError if missing or not rigid."""
    T_BS = sensor.get("T_BS")
    try:
        data = yaml_numbers(T_BS.get("data") if isinstance(T_BS, dict) else None, "T_BS data")
        return validate_pose(np.array(data).reshape(4, 4), "T_BS")
    except (ValueError, OverflowError) as exc:
        raise DatasetError(f"{path}: bad or missing T_BS ({exc})") from None


def _read_images(cam0: Path, issues: Issues) -> list[FrameRecord]:
    """Frames listed in ``cam0/data.csv``; garbled lines counted."""
    path = cam0 / "data.csv"
    records = []
    for number, line in read_text_lines(path):
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2 or not _NANOSECONDS.fullmatch(fields[0]) or not fields[1]:
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
        if len(values) != 8 or not is_pose_row(values):
            issues.skip(BAD_LINE, f"{path}:{number}: garbled ground-truth line {line[:80]!r}")
            continue
        rows.append(values)
    data = np.array(rows, dtype=np.float64).reshape(-1, 8)
    # Columns: t [ns], p x y z, q w x y z -> Trajectory wants quaternions x y z w.
    return Trajectory.from_samples(data[:, 0] * 1e-9, data[:, 1:4], data[:, [5, 6, 7, 4]])
