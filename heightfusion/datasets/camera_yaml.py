"""``camera.yaml``: the intrinsics file a dataset folder may carry.

Keys: ``width height fx fy cx cy`` (pixels), ``depth_scale`` (depth-PNG units per metre: 5000 for
TUM, 1000 for millimetres; absent for monocular data), optional ``distortion`` (OpenCV order).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ..atomic import atomic_write
from ..camera import PinholeCamera

_REQUIRED = ("width", "height", "fx", "fy", "cx", "cy")


def load_camera_yaml(path: str | os.PathLike) -> tuple[PinholeCamera, float | None]:
    """(camera, depth_scale or None) from ``path``; ValueError naming the file and key when malformed."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read camera file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with keys {', '.join(_REQUIRED)}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    try:
        cam = PinholeCamera(*(data[k] for k in _REQUIRED), distortion=data.get("distortion"))
        depth_scale = None if data.get("depth_scale") is None else float(data["depth_scale"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if depth_scale is not None and not depth_scale > 0:
        raise ValueError(f"{path}: depth_scale must be positive, got {depth_scale}")
    return cam, depth_scale


def save_camera_yaml(path: str | os.PathLike, cam: PinholeCamera, depth_scale: float | None = None) -> None:
    """Write ``camera.yaml`` atomically."""
    data = {k: getattr(cam, k) for k in _REQUIRED}
    if depth_scale is not None:
        data["depth_scale"] = float(depth_scale)
    if cam.distortion is not None:
        data["distortion"] = list(cam.distortion)
    with atomic_write(path) as f:
        f.write(yaml.safe_dump(data, sort_keys=False).encode("utf-8"))
