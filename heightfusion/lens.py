"""Lens distortion removed once, where images and depth are read: everything downstream (renderers,
fusion, stereo) then works on the ideal pinhole image of the camera's ``K``.

:func:`undistortion_for` builds the per-pixel maps of a camera once and caches them. Colour is
resampled bilinearly. Depth is resampled without blending across depth edges: the inverse depth,
which is affine in the image over a plane (so interpolating it is exact there), is interpolated
bilinearly where the four lens pixels around the sample agree within :data:`EDGE_RATIO`; elsewhere the
nearest pixel's depth is taken, as it is (a depth of either side of the edge, never a mixture).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from .camera import PinholeCamera

#: Four neighbouring depths whose largest exceeds the smallest by more than this share are a depth
#: edge (or clutter): no interpolation across it. 3 % is 3 cm at 1 m, well above a Kinect's noise
#: and the change between neighbours on a surface seen at up to about 80 degrees, below a box's edge.
EDGE_RATIO = 0.03


class Undistortion:
    """The ideal pinhole image of ``camera`` (same ``K``, no distortion) from its lens image.

    Args:
        camera: a camera with ``distortion``.
    """

    def __init__(self, camera: PinholeCamera) -> None:
        if camera.distortion is None:
            raise ValueError("Undistortion needs a camera with distortion coefficients")
        self.camera = camera
        map_x, map_y = cv2.initUndistortRectifyMap(
            camera.K, np.asarray(camera.distortion), None, camera.K, (camera.width, camera.height), cv2.CV_32FC1
        )
        # Wild coefficients give NaN or huge samples: any of them lands just outside the image (no value),
        # never in an integer cast that overflows.
        self.map_x, self.map_y = (np.clip(np.nan_to_num(m, nan=-2.0), -2.0, n + 1.0).astype(np.float32)
                                  for m, n in ((map_x, camera.width), (map_y, camera.height)))
        x0, y0 = np.floor(self.map_x), np.floor(self.map_y)
        self._fx, self._fy = (self.map_x - x0).astype(np.float32), (self.map_y - y0).astype(np.float32)
        x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
        # Flat indices of the four lens pixels around each sample and of the nearest one; -1 outside the image.
        self._corners = [self._flat(x0 + dx, y0 + dy) for dy in (0, 1) for dx in (0, 1)]
        self._nearest = self._flat(np.rint(self.map_x).astype(np.int64), np.rint(self.map_y).astype(np.int64))

    def _flat(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        inside = (x >= 0) & (x < self.camera.width) & (y >= 0) & (y < self.camera.height)
        return np.where(inside, y * self.camera.width + x, -1)

    def image(self, image: np.ndarray) -> np.ndarray:
        """The ideal image of ``image`` (H, W[, C]) of the lens: bilinear, black outside the lens's view."""
        if image.shape[:2] != self.camera.shape:
            raise ValueError(f"image of shape {image.shape[:2]} does not match camera shape {self.camera.shape}")
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def depth(self, depth: np.ndarray) -> np.ndarray:
        """The ideal z-depth image of ``depth`` (H, W) metres of the lens, NaN where there is none."""
        if depth.shape != self.camera.shape:
            raise ValueError(f"depth of shape {depth.shape} does not match camera shape {self.camera.shape}")
        flat = np.append(np.asarray(depth, dtype=np.float32).ravel(), np.float32(np.nan))  # index -1: no value
        z00, z10, z01, z11 = (flat[index] for index in self._corners)
        with np.errstate(invalid="ignore", divide="ignore"):
            stack = np.stack([z00, z10, z01, z11])
            smooth = np.isfinite(stack).all(axis=0) & (stack.max(axis=0) <= stack.min(axis=0) * (1 + EDGE_RATIO))
            fx, fy = self._fx, self._fy
            inverse = ((1 - fx) * (1 - fy) / z00 + fx * (1 - fy) / z10 + (1 - fx) * fy / z01 + fx * fy / z11)
            blended = np.where(stack.max(axis=0) == stack.min(axis=0), z00, 1.0 / inverse)  # flat: keep it exact
            return np.where(smooth, blended, flat[self._nearest]).astype(np.float32)


@functools.lru_cache(maxsize=8)
def undistortion_for(camera: PinholeCamera) -> Undistortion:
    """The :class:`Undistortion` of ``camera``, built on first use and then reused."""
    return Undistortion(camera)
