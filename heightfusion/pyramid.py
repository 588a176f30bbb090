"""Image pyramids: frames halved level by level, for fusion at the resolution the map's cells need and
for stereo at the resolution its sweep can afford.

A 2 cm cell seen from 1 m spans 10 x 10 pixels of a 640x480 Kinect image, and rendering and summing
the normal equations costs per pixel. Level L halves the frame L times, each time by 2x2 blocks:

- depth: the mean of a block's valid values when at least two are valid and they agree: their spread
  is within :data:`AGREEMENT_SIGMAS` of their sigma plus the depth change across the block of a
  surface tilted :data:`MAX_TILT_DEG` from the view. Otherwise the block has no value, so nothing is
  mixed across a depth edge (no pixel floats between an object and what lies behind it), and a lone
  pixel at a hole's rim, where a Kinect's depth is least reliable, is dropped.
- sigma: the mean of the valid values' sigmas, that of one pixel, not divided by their number. The
  errors of neighbouring pixels are largely one error: a Kinect's depth comes from matching a window
  of about 9x9 pixels of its projected pattern, and a stereo estimate's neighbours share their cost
  window and regularisation. Fusing a quarter of the pixels with the sigma of one then claims less
  information than the full frame did (which counted every pixel as independent), never more.
- image: area average of the block (colour fusion weighs it like the depth).
- camera: :meth:`PinholeCamera.scaled` by one half, after dropping an odd last row or column, so that
  the coarse pixel's centre is its block's centre (:func:`half_camera`).

Stereo halves the images (and camera) alone: :func:`half_image`, and :func:`expand` takes its estimate
back to the frame's pixels.

The level: :func:`auto_level` picks the one at which a cell at the frame's median depth spans closest to
:data:`PIXELS_PER_CELL` pixels along each side (in ratio: from 0.71 to 1.41 times that), keeping at least
:data:`AUTO_MIN_SIDE` pixels along the image's shorter side.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .camera import PinholeCamera

#: Pixels along a cell's side that :func:`auto_level` aims at, at the frame's median depth. Measured
#: (benchmarks/bench_realtime.py, 2 cm cells) against fusion at full resolution: on the real TUM frames
#: (144 fused, 36 held out; 9 px per cell at the median 1.1 m, levels 1-2 chosen) held-out median |dh|
#: 7.9 mm against 8.7 mm and coverage 0.94 against 0.96, in a third of the time. Fewer pixels per cell
#: cost coverage of far surface first: with one pixel's sigma for a block (module docstring), a vertex
#: seen by few pixels stays under the "observed" bar longer. Aiming at 4 px kept coverage (0.962) but
#: fused the far views (3.8 px per cell at 2.7 m) at full resolution, at twice the time.
PIXELS_PER_CELL = 2.0
#: The spread a block's depths may have in units of their sigma (noise alone rarely exceeds it).
AGREEMENT_SIGMAS = 3.0
#: Tilt of a surface from the view up to which a block's depths still agree (their spread then includes
#: the depth change across the block); more oblique views carry little height information anyway.
MAX_TILT_DEG = 70.0
#: No level makes the image's shorter side smaller than this many pixels.
MIN_SIDE = 16
#: ... and :func:`auto_level` none smaller than this (160x120 for a 4:3 camera): with fewer pixels the far
#: surface, whose cells span the fewest, drops out of the map. Synthetic floor, 40 frames: completeness
#: 0.93 at 80x60 (2 px per cell at the median depth) against 0.96 at 160x120 (4 px), 0.99 at 640x480.
AUTO_MIN_SIDE = 120


def auto_level(
    camera: PinholeCamera, depth: np.ndarray, cell_size: float, pixels_per_cell: float = PIXELS_PER_CELL
) -> int:
    """The level at which a cell of ``cell_size`` metres at the median depth of ``depth`` spans closest to
    ``pixels_per_cell`` pixels a side, in ratio (0 when the frame has no depth)."""
    sample = depth[::8, ::8]
    sample = sample[np.isfinite(sample)]
    if len(sample) == 0:
        return 0
    pixels = min(camera.fx, camera.fy) * cell_size / float(np.median(sample))
    return max(0, min(round(math.log2(pixels / pixels_per_cell)), max_level(camera, AUTO_MIN_SIDE)))


def max_level(camera: PinholeCamera, min_side: int = MIN_SIDE) -> int:
    """The coarsest level whose image keeps ``min_side`` pixels along its shorter side."""
    return max(0, int(math.floor(math.log2(min(camera.width, camera.height) / min_side))))


def frame_at_level(
    camera: PinholeCamera, depth: np.ndarray, sigma: np.ndarray, colors: np.ndarray | None, level: int
) -> tuple[PinholeCamera, np.ndarray, np.ndarray, np.ndarray | None]:
    """(camera, depth, sigma, colors) halved ``level`` times (module docstring); level 0 returns them as given.

    ``depth`` and ``sigma`` are (H, W) float32 with NaN for no value, ``colors`` (H, W, 3) uint8 or float32 (kept
    as it is), or None.
    """
    for _ in range(level):
        camera, depth, sigma, colors = halve(camera, depth, sigma, colors)
    return camera, depth, sigma, colors


def half_camera(camera: PinholeCamera) -> PinholeCamera:
    """The camera of an image halved by 2x2 blocks (an odd last row or column dropped)."""
    even = PinholeCamera(camera.width // 2 * 2, camera.height // 2 * 2, camera.fx, camera.fy, camera.cx, camera.cy,
                         camera.distortion)
    return even.scaled(0.5)


def half_image(image: np.ndarray) -> np.ndarray:
    """The 2x2 block means (area average) of an (H, W) or (H, W, C) image, an odd last row or column dropped;
    uint8 stays uint8 (rounded)."""
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    return cv2.resize(image[:height, :width], (width // 2, height // 2), interpolation=cv2.INTER_AREA)


def halve(
    camera: PinholeCamera, depth: np.ndarray, sigma: np.ndarray, colors: np.ndarray | None
) -> tuple[PinholeCamera, np.ndarray, np.ndarray, np.ndarray | None]:
    """One level of :func:`frame_at_level`."""
    height, width = camera.height // 2 * 2, camera.width // 2 * 2
    blocks = _blocks(depth, height, width)
    valid = np.isfinite(blocks)
    count = valid.sum(axis=0, dtype=np.float32)  # float32 throughout: no float64 temporaries
    zero = np.float32(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid, blocks, zero).sum(axis=0) / count
        block_sigma = np.where(valid, _blocks(sigma, height, width), zero).sum(axis=0) / count
        spread = np.fmax.reduce(blocks, axis=0) - np.fmin.reduce(blocks, axis=0)
        # Diagonal neighbours lie sqrt(2) pixels apart; a surface tilted t from the view changes depth by
        # about z tan(t) / f per pixel.
        tilt = np.float32(math.tan(math.radians(MAX_TILT_DEG)) * math.sqrt(2) / min(camera.fx, camera.fy))
        agree = (count >= 2) & (spread <= np.float32(AGREEMENT_SIGMAS) * block_sigma + tilt * mean)
    nan = np.float32(np.nan)
    return (
        half_camera(camera),
        np.where(agree, mean, nan),
        np.where(agree, block_sigma, nan),
        None if colors is None else half_image(colors),
    )


def _blocks(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(4, height / 2, width / 2): the four pixels of each 2x2 block of ``image``'s top-left height x width."""
    return np.stack([image[i:height:2, j:width:2] for i in (0, 1) for j in (0, 1)])


def expand(values: np.ndarray, level: int, shape: tuple[int, int], fill) -> np.ndarray:
    """(H, W) = ``shape`` image whose pixel (u, v) holds ``values`` at level-``level`` pixel (u >> level,
    v >> level) (the block it belongs to); ``fill`` where rows or columns were dropped by halving."""
    out = np.full(shape, fill, dtype=values.dtype)
    scale = 1 << level
    rows, cols = values.shape[0] * scale, values.shape[1] * scale
    out[:rows, :cols] = np.repeat(np.repeat(values, scale, axis=0), scale, axis=1)
    return out
