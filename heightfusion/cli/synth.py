"""``heightfusion synth``: write a synthetic sequence in the TUM RGB-D layout, with ground truth."""

from __future__ import annotations

import argparse

MAX_IMAGE_SIDE = 8192  # pixels: every frame is held in memory until written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..synthetic.scenes import SCENE_NAMES  # numpy only, which the package has loaded anyway

    parser.add_argument("out", help="output folder (created; existing files are overwritten)")
    parser.add_argument("--scene", default="floor", help=f"one of {', '.join(SCENE_NAMES)} (default floor)")
    parser.add_argument("--frames", type=int, default=40, help="number of frames (default 40)")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    parser.add_argument("--height", type=int, default=240, help="image height in pixels (default 240)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate for the timestamps (default 30)")
    parser.add_argument("--noise", action="store_true", help="add Kinect-like depth noise")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the depth noise, pose drift and photometric changes (default 0)")
    parser.add_argument("--pose-noise", type=float, nargs="*", metavar="DEG_MM",
                        help="write groundtruth.txt with a drifting pose error of about DEG degrees and MM millimetres "
                             "(RMS; without values 0.4 6); the images are rendered at the true poses, written to "
                             "groundtruth_true.txt")
    parser.add_argument("--photometric", type=float, nargs="*", metavar="GAIN_BIAS_NOISE",
                        help="per-frame exposure gain (within 1 +- GAIN) and bias (within +- BIAS levels), smooth over "
                             "time, and Gaussian image noise of NOISE levels (8-bit); without values 0.15 8 2")
    parser.add_argument("--time-offset-ms", type=float, default=0.0, metavar="MS",
                        help="write groundtruth.txt with a clock running MS milliseconds ahead of the images' (motion "
                             "capture out of step: each sample stamped MS later); the true poses go to "
                             "groundtruth_true.txt, and replay --time-offset-ms MS undoes it (default 0)")
    parser.add_argument("--distort", type=float, nargs="*", metavar="K",
                        help="render through a lens with these OpenCV distortion coefficients (k1 k2 p1 p2 [k3]); "
                             "without values, TUM freiburg1's (camera.yaml carries them)")
    parser.add_argument("--jpeg", action="store_true", help="write colour images as JPEG (smaller) instead of PNG")


def _perturbation(option: str, values: list[float] | None, kind: type):
    """The ``kind`` (PoseNoise, Photometric) an option's values give: its defaults without values, None when absent."""
    from dataclasses import fields

    from . import UserError

    if values is None:
        return None
    names = [f.name for f in fields(kind)]
    if values and len(values) != len(names):
        raise UserError(f"{option} takes no value or {len(names)} ({' '.join(names)}), got {len(values)}: {values}")
    return kind(*values)


def run(args: argparse.Namespace) -> int:
    from ..synthetic.perturb import Photometric, PoseNoise
    from ..synthetic.sequence import generate, write_tum
    from . import UserError, check_output_folder
    from .options import time_offset_option

    check_output_folder(args.out, "OUT")
    for name in ("width", "height"):
        if getattr(args, name) > MAX_IMAGE_SIDE:
            raise UserError(f"--{name} must be at most {MAX_IMAGE_SIDE} pixels, got {getattr(args, name)}")
    distortion = None
    if args.distort is not None:
        from ..datasets.tum import TUM_CAMERAS

        distortion = tuple(args.distort) if args.distort else TUM_CAMERAS[1].distortion
    pose_noise = _perturbation("--pose-noise", args.pose_noise, PoseNoise)
    photometric = _perturbation("--photometric", args.photometric, Photometric)
    seq = generate(
        args.scene, frames=args.frames, width=args.width, height=args.height,
        noise=args.noise, seed=args.seed, fps=args.fps, progress=True, distortion=distortion,
        pose_noise=pose_noise, photometric=photometric, clock_offset=time_offset_option(args) or 0.0,
    )
    out = write_tum(seq, args.out, progress=True, image_format="jpg" if args.jpeg else "png")
    gt = seq.gt_heightmap
    print(
        f"wrote {len(seq)} frames of scene '{seq.scene.name}' ({args.width}x{args.height}"
        f"{', noisy depth' if args.noise else ''}{', distorted lens' if distortion else ''}"
        f"{f', pose drift {pose_noise.rotation_deg:g} deg / {pose_noise.translation_mm:g} mm' if pose_noise else ''}"
        f"{', exposure changes and image noise' if photometric else ''}"
        f"{f', trajectory clock {args.time_offset_ms:+g} ms ahead' if args.time_offset_ms else ''}) to {out}; ground truth {gt.shape[1]}x{gt.shape[0]} vertices "
        f"at {gt.cell_size:g} m, {gt.observed.mean():.0%} seen"
    )
    return 0
