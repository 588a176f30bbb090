"""TUM RGB-D and the ICL-NUIM TUM-compatible release.

Layout: ``rgb.txt`` and ``depth.txt`` (``timestamp file`` per line), 16-bit depth PNGs in units of
1/``depth_scale`` metres (5000 unless ``camera.yaml`` says otherwise; 0 = no value), and a trajectory
``groundtruth.txt`` (``t tx ty tz qx qy qz qw``, camera-to-world; the reference for estimated
poses, unless a ``groundtruth_true.txt`` beside it holds the true ones). Images are matched to depth images
with :func:`~heightfusion.datasets.trajectory.associate`. A folder with ``associations.txt``
(``t file t file`` per line, as ``associate.py`` writes it; the ICL-NUIM release ships one) uses those
pairs as they are, the file whose path names ``depth`` taken as the depth image. Without depth
images the sequence is monocular (``depth`` is None).

Intrinsics, unless given by ``camera.yaml`` or the ``camera`` option: TUM freiburg1/2/3 from the
folder name (``freiburg2`` or ``fr2``; freiburg1/2 with the published distortion, which the reader
applies only with ``undistort=True``), ICL-NUIM's for an ICL-NUIM folder, else the Kinect default
525, 525, 319.5, 239.5 (noted in ``messages``).

ICL-NUIM: the published intrinsics 481.20, -480.00, 319.50, 239.50 belong to the original POV-Ray
renderings, whose scene is mirrored (the negative fy undoes that mirror, and PinholeCamera allows no
negative focal length anyway). The TUM-compatible release read here (``*_frei_png`` folders with a
``*.gt.freiburg`` trajectory) is used by TUM tools with a positive fy, so the reader uses fy = +480
and takes images, depth and poses as they are: nothing is flipped. Its world frame is the release's
own, not rotated to z-up; check the up axis before fusing into a height map. A folder is ICL-NUIM
when its name says so (``icl``, ``living_room``, ``lr_kt``, ``of_kt``, ``_frei_png``) or it holds a
``*.gt.freiburg`` trajectory.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ..camera import PinholeCamera
from .base import (
    BAD_LINE,
    NO_DEPTH_MATCH,
    FrameRecord,
    Issues,
    OpenOptions,
    Sequence,
    attach_poses,
    configured_camera,
    find_trajectory_file,
    load_gt_heightmap,
    load_reference,
    load_trajectory,
    read_text_lines,
    sequence_name,
    summarize_timestamps,
)
from .trajectory import associate

TUM_DEPTH_SCALE = 5000.0
TUM_CAMERAS = {
    1: PinholeCamera(640, 480, 517.3, 516.5, 318.6, 255.3, (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)),
    2: PinholeCamera(640, 480, 520.9, 521.0, 325.1, 249.7, (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)),
    3: PinholeCamera(640, 480, 535.4, 539.2, 320.1, 247.6),
}
KINECT_DEFAULT_CAMERA = PinholeCamera(640, 480, 525.0, 525.0, 319.5, 239.5)
ICL_NUIM_CAMERA = PinholeCamera(640, 480, 481.20, 480.00, 319.50, 239.50)  # fy = +480, see the module docstring

_FREIBURG_NAME = re.compile(r"(?:freiburg|fr)([123])(?![0-9])")
_ICL_NAME = re.compile(r"icl|living_?room|lr_?kt\d|of_?kt\d|_frei_png")
ICL_TRAJECTORY_PATTERN = "*.gt.freiburg"


def detect(folder: Path) -> bool:
    """Whether ``folder`` has the TUM layout (``rgb.txt`` or ``associations.txt``)."""
    return (folder / "rgb.txt").is_file() or (folder / "associations.txt").is_file()


def is_icl_nuim(folder: Path) -> bool:
    """Whether a TUM-layout folder is an ICL-NUIM sequence (by name or its ``*.gt.freiburg`` file)."""
    return bool(_ICL_NAME.search(sequence_name(folder).lower())) or any(folder.glob(ICL_TRAJECTORY_PATTERN))


def camera_from_name(name: str) -> PinholeCamera | None:
    """The intrinsics a folder name implies (TUM freiburg1/2/3, ICL-NUIM), else None."""
    name = name.lower()
    match = _FREIBURG_NAME.search(name)
    if match:
        return TUM_CAMERAS[int(match.group(1))]
    return ICL_NUIM_CAMERA if _ICL_NAME.search(name) else None


def load(folder: Path, options: OpenOptions) -> Sequence:
    """Open a TUM RGB-D or ICL-NUIM folder (see the module docstring)."""
    issues = Issues()
    icl = is_icl_nuim(folder)
    camera, depth_scale = configured_camera(folder, options)
    if camera is None:
        camera = _default_camera(folder, icl, issues)
    if (folder / "associations.txt").is_file():
        candidates = _read_associations(folder, issues)
    else:
        candidates = _associate_lists(folder, options.max_difference, options.require_depth, issues)
    has_depth = any(record.depth is not None for record in candidates)
    trajectory_file = find_trajectory_file(folder, options, (ICL_TRAJECTORY_PATTERN,))
    trajectory = None if trajectory_file is None else load_trajectory(trajectory_file, issues)
    return Sequence(
        path=folder,
        name=sequence_name(folder),
        format="icl-nuim" if icl else "tum",
        camera=camera,
        records=attach_poses(candidates, trajectory, options.max_difference, issues, options.pose_time_offset,
                             options.depth_time_offset),
        issues=issues,
        options=options,
        depth_scale=(depth_scale or TUM_DEPTH_SCALE) if has_depth else None,
        gt_heightmap=load_gt_heightmap(folder, issues),
        reference=load_reference(folder, issues, (trajectory_file, trajectory), (ICL_TRAJECTORY_PATTERN,)),
    )


def _default_camera(folder: Path, icl: bool, issues: Issues) -> PinholeCamera:
    """ICL-NUIM's, the folder name's freiburg camera, or the Kinect default (noted)."""
    if icl:
        return ICL_NUIM_CAMERA
    named = camera_from_name(sequence_name(folder))
    if named is not None:
        return named
    issues.note(f"{folder}: no camera.yaml and no freiburg1/2/3 in the folder name; "
                f"using the Kinect default intrinsics 525, 525, 319.5, 239.5")
    return KINECT_DEFAULT_CAMERA


def _read_list(path: Path, issues: Issues) -> list[tuple[float, Path]]:
    """(timestamp, file) of each line of a TUM list file such as ``rgb.txt``; garbled lines counted."""
    entries = []
    for number, line in read_text_lines(path):
        fields = line.split()
        timestamp = _parse_time(fields[0])
        if len(fields) < 2 or timestamp is None:
            issues.skip(BAD_LINE, f"{path}:{number}: garbled line {line[:80]!r}")
            continue
        entries.append((timestamp, path.parent / fields[1]))
    return entries


def _associate_lists(folder: Path, max_difference: float, require_depth: bool, issues: Issues) -> list[FrameRecord]:
    """Frames of ``rgb.txt``, each with its associated depth image from ``depth.txt`` if there is one;
    images without one are skipped (counted) when ``require_depth``, else kept without depth."""
    images = _read_list(folder / "rgb.txt", issues)
    if not (folder / "depth.txt").is_file():
        return [FrameRecord(i, t, image) for i, (t, image) in enumerate(images)]
    depths = _read_list(folder / "depth.txt", issues)
    pairs = dict(associate([t for t, _ in images], [t for t, _ in depths], max_difference))
    if not require_depth:
        return [FrameRecord(i, t, image, depths[pairs[i]][1], depth_timestamp=depths[pairs[i]][0]) if i in pairs
                else FrameRecord(i, t, image) for i, (t, image) in enumerate(images)]
    unmatched = [t for i, (t, _) in enumerate(images) if i not in pairs]
    if unmatched:
        issues.skip(NO_DEPTH_MATCH, f"{len(unmatched)} image(s) without a depth image within {max_difference} s "
                    f"({summarize_timestamps(unmatched)})", count=len(unmatched))
    return [FrameRecord(i, images[i][0], images[i][1], depths[j][1], depth_timestamp=depths[j][0])
            for i, j in sorted(pairs.items())]


def _read_associations(folder: Path, issues: Issues) -> list[FrameRecord]:
    """Frames of ``associations.txt``: ``t_rgb rgb_file t_depth depth_file`` (either pair may come first)."""
    path = folder / "associations.txt"
    records = []
    for number, line in read_text_lines(path):
        fields = line.split()
        times = [_parse_time(f) for f in fields[0:3:2]]
        if len(fields) < 4 or None in times:
            issues.skip(BAD_LINE, f"{path}:{number}: garbled line {line[:80]!r}")
            continue
        (t_image, image), (t_depth, depth) = (times[0], fields[1]), (times[1], fields[3])
        if "depth" in image.lower() and "depth" not in depth.lower():
            (t_image, image), (t_depth, depth) = (t_depth, depth), (t_image, image)
        records.append(FrameRecord(len(records), t_image, folder / image, folder / depth, depth_timestamp=t_depth))
    return records


def _parse_time(text: str) -> float | None:
    """A finite timestamp, or None if ``text`` is not one."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
