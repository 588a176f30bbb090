"""``camera.yaml``: the intrinsics file a dataset folder may carry.

Keys: ``width height fx fy cx cy`` (pixels), ``depth_scale`` (depth-PNG units per metre: 5000 for
TUM, 1000 for millimetres; absent for monocular data), optional ``distortion`` (OpenCV order).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml

from ..atomic import atomic_write
from ..camera import PinholeCamera
from .files import read_file

_REQUIRED = ("width", "height", "fx", "fy", "cx", "cy")
# Largest image side a camera file may give, pixels: beyond any camera, and a garbled size much larger
# would make every renderer allocate gigabytes for its frame buffers.
MAX_IMAGE_SIDE = 1 << 16
# Longest list of numbers a camera file holds (EuRoC's 4x4 T_BS; OpenCV distortion has at most 14).
_MAX_NUMBERS = 16
# Smallest and largest positive float32, as Python floats (comparing a float64 with np.float32 casts it).
_FLOAT32_RANGE = (float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max))
# Deepest nesting of lists and mappings a camera file may have (EuRoC's T_BS: a list in a mapping in the
# document's mapping). PyYAML takes seconds over, or crashes on, brackets nested thousands deep.
_MAX_YAML_DEPTH = 8
# libyaml's parser when PyYAML has it: the pure-Python one is tens of times slower.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_camera_yaml(path: str | os.PathLike) -> tuple[PinholeCamera, float | None]:
    """(camera, depth_scale or None) from ``path``; ValueError naming the file and key when malformed."""
    path = Path(path)
    data = read_yaml_mapping(path, "camera file")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    try:
        distortion = None if data.get("distortion") is None else yaml_numbers(data["distortion"], "distortion")
        camera = checked_size(PinholeCamera(*(data[k] for k in _REQUIRED), distortion=distortion))
        depth_scale = None if data.get("depth_scale") is None else float(data["depth_scale"])
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an integer too large for a float
        raise ValueError(f"{path}: {exc}") from None
    # Depth images are divided by the scale in float32: it must be a positive float32.
    if depth_scale is not None and not _FLOAT32_RANGE[0] <= depth_scale <= _FLOAT32_RANGE[1]:
        raise ValueError(f"{path}: depth_scale must be a positive number (depth-image units per metre), "
                         f"got {depth_scale}")
    return camera, depth_scale


def read_yaml_mapping(path: Path, what: str) -> dict:
    """The mapping in the YAML file ``path``; ValueError naming the file and ``what`` it is otherwise."""
    try:
        data = _load_shallow_yaml(read_file(path).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, yaml.YAMLError, ValueError) as exc:
        # PyYAML raises ValueError for an integer of more digits than Python converts.
        raise ValueError(f"{path}: cannot read {what} ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: {what} is not a mapping of keys to values")
    return data


def _load_shallow_yaml(text: str) -> object:
    """The YAML document ``text`` (safe types only); ValueError when it nests deeper than a camera file.

    The nesting is checked on the parser's events first, which stops after a few of them.
    """
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > _MAX_YAML_DEPTH:
                raise ValueError(f"lists or mappings nested deeper than {_MAX_YAML_DEPTH} levels")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
    return yaml.load(text, Loader=_LOADER)


def yaml_numbers(value: object, name: str) -> list[float]:
    """``value`` as a flat list of at most 16 numbers; ValueError naming ``name`` otherwise.

    Checked before numpy sees the list: YAML aliases let a short file hold a list that expands to
    billions of nested elements, which ``np.asarray`` would walk (and printing it would too).
    """
    if not isinstance(value, list) or len(value) > _MAX_NUMBERS:
        raise ValueError(f"{name} must be a list of at most {_MAX_NUMBERS} numbers, got {_describe(value)}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{name} must hold numbers only")
    try:
        return [float(v) for v in value]
    except OverflowError:  # a YAML integer of hundreds of digits
        raise ValueError(f"{name} holds a number too large") from None


def checked_size(camera: PinholeCamera) -> PinholeCamera:
    """``camera``, or ValueError when its image is larger than :data:`MAX_IMAGE_SIDE` a side."""
    if max(camera.width, camera.height) > MAX_IMAGE_SIDE:
        raise ValueError(f"image size {camera.width}x{camera.height} is larger than {MAX_IMAGE_SIDE} pixels a side")
    return camera


def _describe(value: object) -> str:
    """A short description of a YAML value for a message, without walking (or printing) all of it."""
    return f"a list of {len(value)} items" if isinstance(value, list) else f"a value of type {type(value).__name__}"


def save_camera_yaml(path: str | os.PathLike, camera: PinholeCamera, depth_scale: float | None = None) -> None:
    """Write ``camera.yaml`` atomically."""
    data = {k: getattr(camera, k) for k in _REQUIRED}
    if depth_scale is not None:
        data["depth_scale"] = float(depth_scale)
    if camera.distortion is not None:
        data["distortion"] = list(camera.distortion)
    with atomic_write(path) as f:
        f.write(yaml.safe_dump(data, sort_keys=False).encode("utf-8"))
