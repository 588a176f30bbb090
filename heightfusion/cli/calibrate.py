"""``heightfusion calibrate``: camera intrinsics and lens distortion from views of the printed board.

The source is a folder of images, a video file, or a live camera (``--camera N``). From a folder or a
video at most ``10 * max_views`` frames, evenly spread, are searched for the board, and up to
``max_views`` of those that show it, again evenly spread, are calibrated from. From a camera a view is
taken every ``--interval`` seconds while the board is seen, until ``max_views`` (or Ctrl-C).
"""

from __future__ import annotations

import argparse
import math
import re
import time
from pathlib import Path

from .options import add_board_arguments, board_spec_from_args

DEFAULT_MAX_VIEWS = 20
CANDIDATES_PER_VIEW = 10  # frames searched per view wanted: enough choice, bounded time on long videos
HIGH_RMS_PX = 1.0  # above this the board options probably do not match the print, or views are blurred


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..live.sources import capture_device
    from ..markers import MIN_CORNERS  # OpenCV, which the package has loaded anyway

    parser.add_argument("source", nargs="?", help="folder of images or a video file showing the board (or --camera)")
    parser.add_argument("--camera", type=capture_device, metavar="N|URL",
                        help="capture from OpenCV camera N (or a stream URL) instead of SOURCE")
    parser.add_argument("--out", required=True, help="camera.yaml to write")
    parser.add_argument("--max-views", type=int, default=DEFAULT_MAX_VIEWS,
                        help=f"views to calibrate from, at most (default {DEFAULT_MAX_VIEWS})")
    parser.add_argument("--min-corners", type=int, default=MIN_CORNERS,
                        help=f"ChArUco corners a view needs (default {MIN_CORNERS})")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="with --camera: seconds between views taken; move the board meanwhile (default 1)")
    add_board_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..datasets.camera_yaml import save_camera_yaml
    from ..markers import MIN_CALIBRATION_VIEWS, BoardDetector, calibrate_detections

    if (args.source is None) == (args.camera is None):
        raise ValueError("give either SOURCE (a folder of images or a video file) or --camera N")
    if args.max_views < MIN_CALIBRATION_VIEWS:
        raise ValueError(f"--max-views must be at least {MIN_CALIBRATION_VIEWS}, got {args.max_views}")
    if args.min_corners < 4:
        raise ValueError(f"--min-corners must be at least 4, got {args.min_corners}")
    if not (math.isfinite(args.interval) and args.interval >= 0):
        raise ValueError(f"--interval must be a number of seconds >= 0, got {args.interval}")
    detector = BoardDetector(board_spec_from_args(args))

    if args.camera is not None:
        labels, detections = _capture_views(args.camera, detector, args.max_views, args.min_corners, args.interval)
    else:
        labels, detections = [], []
        for label, rgb in _frames(Path(args.source), CANDIDATES_PER_VIEW * args.max_views):
            labels.append(label)
            detections.append(detector.detect(rgb))
        if not detections:
            raise ValueError(f"{args.source}: no readable images or frames")
        usable = [i for i, d in enumerate(detections) if d.problem(args.min_corners) is None]
        print(f"{len(usable)} of {len(detections)} frames searched show the board with >= {args.min_corners} corners")
        if len(usable) > args.max_views:
            keep = [usable[round(k)] for k in np.linspace(0, len(usable) - 1, args.max_views)]
            labels, detections = [labels[i] for i in keep], [detections[i] for i in keep]

    camera, rms, used = calibrate_detections(detections, args.min_corners)
    save_camera_yaml(args.out, camera)
    k = ", ".join(f"{c:.4g}" for c in camera.distortion or ())
    print(
        f"calibrated {camera.width}x{camera.height} from {len(used)} views: "
        f"fx {camera.fx:.2f} fy {camera.fy:.2f} cx {camera.cx:.2f} cy {camera.cy:.2f} px, "
        f"distortion [{k or 'none'}]; RMS reprojection error {rms:.3f} px; wrote {args.out}"
    )
    print(f"views used: {', '.join(labels[i] for i in used)}")
    if rms > HIGH_RMS_PX:
        print(f"warning: RMS above {HIGH_RMS_PX:g} px: check that the board options match the print "
              "and that the views are sharp")
    return 0


def _frames(source: Path, limit: int):
    """(label, RGB image) of up to ``limit`` frames evenly spread over a folder of images or a video."""
    import cv2
    import numpy as np

    from ..datasets.folder import find_images, is_video_file

    if not source.exists():
        raise ValueError(f"{source}: no such file or folder")
    if source.is_dir():
        files = sorted(find_images(source), key=_natural_key)
        if not files:
            raise ValueError(f"{source}: no .png/.jpg images in this folder (or its images/, rgb/, frames/)")
        for i in np.unique(np.linspace(0, len(files) - 1, min(limit, len(files))).round().astype(int)):
            bgr = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
            if bgr is not None:
                yield files[i].name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    if not is_video_file(source):
        raise ValueError(f"{source}: not a folder of images or a video file")
    capture = cv2.VideoCapture(str(source))
    try:
        if not capture.isOpened():
            raise ValueError(f"{source}: cannot open the video (not a video OpenCV can decode)")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        step = max(1, math.ceil(count / limit)) if count > 0 else 1
        n = 0
        while capture.grab():
            if n % step == 0:
                ok, bgr = capture.retrieve()
                if ok:
                    yield f"frame {n}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            n += 1
    finally:
        capture.release()


def _natural_key(path: Path) -> list:
    """Sort key putting ``2.png`` before ``10.png``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _capture_views(index: int | str, detector, max_views: int, min_corners: int, interval: float):
    """(labels, detections) of up to ``max_views`` camera frames showing the board, ``interval`` s apart."""
    from ..live.sources import open_camera

    frames = open_camera(index, None)  # ValueError naming the camera when it cannot be opened
    labels, detections = [], []
    print(f"camera {index}: show the board tilted a different way every {interval:g} s; "
          f"{max_views} views wanted, Ctrl-C to stop early")
    start, last = time.monotonic(), -math.inf
    try:
        for frame in frames:
            if len(detections) >= max_views:
                break
            now = time.monotonic()
            if now - last < interval:
                continue
            detection = detector.detect(frame.image)
            if detection.problem(min_corners) is None:
                last = now
                labels.append(f"t={now - start:.1f}s")
                detections.append(detection)
                print(f"view {len(detections)}/{max_views}: {detection.corners} corners")
        else:
            raise ValueError(f"camera {index} stopped delivering frames")
    except KeyboardInterrupt:
        print(f"stopped: calibrating from {len(detections)} views")
    finally:
        frames.close()
    return labels, detections
