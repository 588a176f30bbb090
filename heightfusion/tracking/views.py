"""What the tracker aligns: image pyramids of the frame being tracked, and reference points.

A frame is tracked coarse to fine over an image pyramid (:class:`TrackedImage` per level: grey image,
its gradients, and the frame's depth and its gradients where the frame has depth). What it is aligned
to is a :class:`Reference`: a view with known pose and depth (a keyframe, or the map rendered at the
predicted pose), turned into world points per level — for the photometric residual, the pixels with
the strongest image gradient, one per block so they spread over the view (as DSO picks them); for the
geometric residual, a regular subsample of the view's depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..camera import PinholeCamera
from ..heightmap import GRAY_WEIGHTS
from ..pyramid import half_camera, half_image, halve

#: Relative depth spread (of the depth) within which a 2x2 block of depths is averaged when halving;
#: beyond it the block straddles a depth edge and gets no depth (:func:`heightfusion.pyramid.halve`).
_DEPTH_AGREEMENT = 0.01


@dataclass
class TrackedImage:
    """One pyramid level of a frame: ``intensity`` (H, W, 3) float32, the grey value in [0, 1] and its
    gradient along u and v (per pixel), and ``geometry`` (H, W, 3), the depth (metres, NaN where none) and
    its gradient, or None without depth. Stacked so that one bilinear lookup samples value and gradient."""

    camera: PinholeCamera
    intensity: np.ndarray
    geometry: np.ndarray | None = None

    @property
    def gray(self) -> np.ndarray:
        return self.intensity[..., 0]

    @property
    def depth(self) -> np.ndarray | None:
        return None if self.geometry is None else self.geometry[..., 0]


def tracked_image(camera: PinholeCamera, gray: np.ndarray, depth: np.ndarray | None = None) -> TrackedImage:
    """The :class:`TrackedImage` of a grey image (and depth) seen by ``camera``."""
    geometry = None if depth is None else np.dstack([depth, *_gradients(depth)])
    return TrackedImage(camera, np.dstack([gray, *_gradients(gray)]), geometry)


@dataclass
class ReferenceLevel:
    """A reference's points at one pyramid level: ``photometric`` (N, 3) world points with the grey values
    ``intensity`` (N,) they had in the reference view, and ``geometric`` (M, 3) world points of its depth."""

    photometric: np.ndarray
    intensity: np.ndarray
    geometric: np.ndarray


@dataclass
class Reference:
    """A view aligned against: its pose ``T_wr``, its points per level (finest first), and ``name`` ("map",
    "keyframe") for reports. Each reference has its own affine brightness in the alignment."""

    name: str
    T_wr: np.ndarray
    levels: list[ReferenceLevel]


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 grey values in [0, 1] of an RGB image (uint8, or float in [0, 1]; NaN stays NaN)."""
    image = np.asarray(image)
    scale = 1.0 / 255.0 if image.dtype == np.uint8 else 1.0
    if image.ndim == 2:
        return image.astype(np.float32) * np.float32(scale)
    return image[..., :3].astype(np.float32) @ (GRAY_WEIGHTS * np.float32(scale))


def level_range(camera: PinholeCamera, max_side: int, min_side: int) -> tuple[int, int]:
    """(finest, coarsest) pyramid levels: the finest whose shorter side is at most ``max_side`` pixels, the
    coarsest that keeps at least ``min_side``."""
    side = min(camera.width, camera.height)
    finest = max(0, math.ceil(math.log2(side / max_side))) if side > max_side else 0
    coarsest = max(finest, int(math.floor(math.log2(side / min_side))))
    return finest, coarsest


def _gradients(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Sobel / 8: the central difference per pixel, smoothed across; NaN spreads to the 3x3 neighbours.
    return (cv2.Sobel(values, cv2.CV_32F, 1, 0, ksize=3, scale=0.125),
            cv2.Sobel(values, cv2.CV_32F, 0, 1, ksize=3, scale=0.125))


def _levels(camera: PinholeCamera, gray: np.ndarray, depth: np.ndarray | None, finest: int, coarsest: int):
    """(camera, gray, depth) at each level from ``finest`` to ``coarsest``."""
    out = []
    for level in range(coarsest + 1):
        if level >= finest:
            out.append((camera, gray, depth))
        if level == coarsest:
            break
        if depth is None:
            camera, gray = half_camera(camera), half_image(gray)
        else:
            sigma = np.float32(_DEPTH_AGREEMENT) * depth
            halved_camera, depth, _, _ = halve(camera, depth, sigma, None)
            camera, gray = halved_camera, half_image(gray)
    return out


def tracked_pyramid(camera: PinholeCamera, image: np.ndarray, depth: np.ndarray | None, finest: int,
                    coarsest: int) -> list[TrackedImage]:
    """The frame's :class:`TrackedImage` levels from ``finest`` to ``coarsest`` (``image`` RGB or grey)."""
    return [tracked_image(*level) for level in _levels(camera, to_gray(image), depth, finest, coarsest)]


def _strongest_per_block(magnitude: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the largest value of ``magnitude`` in each ``block`` x ``block`` block (NaN: none)."""
    H, W = magnitude.shape
    h, w = H // block, W // block
    blocks = magnitude[: h * block, : w * block].reshape(h, block, w, block).transpose(0, 2, 1, 3).reshape(h, w, -1)
    filled = np.where(np.isfinite(blocks), blocks, -1.0)
    best = filled.argmax(axis=2)
    keep = np.take_along_axis(filled, best[..., None], axis=2)[..., 0] > 0
    bi, bj = np.nonzero(keep)
    k = best[bi, bj]
    return bi * block + k // block, bj * block + k % block


def make_reference(name: str, camera: PinholeCamera, T_wr: np.ndarray, image: np.ndarray, depth: np.ndarray,
                   finest: int, coarsest: int, max_points: int, min_gradient: float) -> Reference:
    """A :class:`Reference` of a view at pose ``T_wr`` with grey or RGB ``image`` and ``depth`` (NaN where
    none), both at level-``finest`` resolution with ``camera``: up to ``max_points`` points per level and kind;
    photometric points need a gradient of at least ``min_gradient`` grey levels (0-1) per pixel."""
    levels = []
    R, t = T_wr[:3, :3], T_wr[:3, 3]
    gray = to_gray(image)
    for level_camera, level_gray, level_depth in _levels(camera, gray, depth, 0, coarsest - finest):
        gx, gy = _gradients(level_gray)
        magnitude = np.hypot(gx, gy)
        # Sobel gives an isolated pixel its neighbours' gradient: a NaN grey value (halved map colours next
        # to unseen vertices, where the halved depth still has a value) would turn the normal equations NaN.
        magnitude[~np.isfinite(level_depth) | ~np.isfinite(level_gray) | (magnitude < min_gradient)] = np.nan
        H, W = level_gray.shape
        # Whole pixels, rounded up: at most max_points blocks (rounded, 80x60 with 3000 points kept all 4800,
        # more than the finer level had).
        block = max(1, math.ceil(math.sqrt(H * W / max_points)))
        rows, cols = _strongest_per_block(magnitude, block)
        uv = np.stack([cols, rows], axis=-1).astype(np.float64)
        photometric = level_camera.unproject(uv, level_depth[rows, cols]) @ R.T + t
        sub = level_depth[::block, ::block]
        gi, gj = np.nonzero(np.isfinite(sub))
        uv = np.stack([gj * block, gi * block], axis=-1).astype(np.float64)
        geometric = level_camera.unproject(uv, sub[gi, gj]) @ R.T + t
        levels.append(ReferenceLevel(photometric, level_gray[rows, cols].astype(np.float32), geometric))
    return Reference(name, np.asarray(T_wr, dtype=np.float64), levels)
