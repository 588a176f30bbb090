"""Pinhole camera model with OpenCV conventions (x right, y down, z forward; pixel centres at integers)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Lengths OpenCV accepts for distortion coefficients (k1 k2 p1 p2 [k3 [k4 k5 k6 [s1..s4 [tx ty]]]]).
_DISTORTION_LENGTHS = (4, 5, 8, 12, 14)


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of a pinhole camera and, optionally, its lens distortion (OpenCV order).

    All renderers, fusion and stereo work on the ideal pinhole image of ``K``: images and depth from
    a real lens are undistorted once, where they are read (``heightfusion.datasets.open(...,
    undistort=True)``, which ``replay``, ``live`` and ``compare`` use; or :meth:`undistort_image`), and
    the camera that goes with them has ``distortion=None``.

    Attributes:
        width, height: image size in pixels.
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels (pixel (u, v) has its centre at integer coordinates).
        distortion: OpenCV distortion coefficients or None for an ideal lens.

    Example:
        >>> import heightfusion as hf
        >>> camera = hf.PinholeCamera(640, 480, 525.0, 525.0, 319.5, 239.5)
        >>> camera.project([[0.1, 0.0, 1.0]]).round(1)
        array([[372. , 239.5]])
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple[float, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not float(value).is_integer() or value <= 0:
                raise ValueError(f"PinholeCamera.{name} must be a positive integer number of pixels, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("fx", "fy"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"PinholeCamera.{name} must be a positive focal length in pixels, got {value!r}")
            object.__setattr__(self, name, value)
        for name in ("cx", "cy"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"PinholeCamera.{name} must be finite, got {value!r}")
            object.__setattr__(self, name, value)
        if self.distortion is not None:
            coeffs = tuple(float(c) for c in np.asarray(self.distortion, dtype=np.float64).ravel())
            if len(coeffs) not in _DISTORTION_LENGTHS or not all(math.isfinite(c) for c in coeffs):
                raise ValueError(
                    f"PinholeCamera.distortion must be {', '.join(map(str, _DISTORTION_LENGTHS))} finite "
                    f"OpenCV coefficients, got {self.distortion!r}"
                )
            object.__setattr__(self, "distortion", coeffs if any(coeffs) else None)

    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape as (rows, cols) = (height, width)."""
        return (self.height, self.width)

    def scaled(self, factor: float) -> "PinholeCamera":
        """The same camera for an image resized by ``factor`` (pixel centres stay at integers)."""
        width, height = round(self.width * factor), round(self.height * factor)
        sx, sy = width / self.width, height / self.height
        return PinholeCamera(
            width, height, self.fx * sx, self.fy * sy,
            (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, self.distortion,
        )

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Pixel coordinates (..., 2) of camera-frame points (..., 3); NaN for points with z <= 0."""
        p = np.asarray(points_cam, dtype=np.float64)
        z = p[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * p[..., 0] / z + self.cx
            v = self.fy * p[..., 1] / z + self.cy
        uv = np.stack([u, v], axis=-1)
        uv[z <= 0] = np.nan
        return uv

    def unproject(self, uv: np.ndarray, depth: np.ndarray | float) -> np.ndarray:
        """Camera-frame points (..., 3) of pixels ``uv`` (..., 2) at z-depth ``depth`` (metres)."""
        uv = np.asarray(uv, dtype=np.float64)
        z = np.asarray(depth, dtype=np.float64)
        x = (uv[..., 0] - self.cx) / self.fx * z
        y = (uv[..., 1] - self.cy) / self.fy * z
        return np.stack(np.broadcast_arrays(x, y, z), axis=-1)

    def pixel_rays(self) -> np.ndarray:
        """(H, W, 3) camera-frame ray directions with z = 1, so the ray parameter is the z-depth."""
        u = np.arange(self.width, dtype=np.float64)
        v = np.arange(self.height, dtype=np.float64)
        uu, vv = np.meshgrid(u, v)
        return self.unproject(np.stack([uu, vv], axis=-1), 1.0)

    def lens_rays(self) -> np.ndarray:
        """(H, W, 3) camera-frame rays with z = 1 through the pixel centres of the real lens's image.

        With ``distortion`` each pixel's ray is found by inverting the OpenCV lens model (iteratively,
        to 1e-10 of normalised coordinates); without, these are :meth:`pixel_rays`. Synthetic images
        of a distorted camera are rendered along these rays.
        """
        if self.distortion is None:
            return self.pixel_rays()
        import cv2

        u, v = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
        pixels = np.stack([u.ravel(), v.ravel()], axis=-1)[:, None, :]
        converged = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)
        xy = cv2.undistortPoints(pixels, self.K, np.asarray(self.distortion), criteria=converged)
        xy = xy.reshape(self.height, self.width, 2)
        return np.concatenate([xy, np.ones((self.height, self.width, 1))], axis=-1)

    def world_points(self, depth: np.ndarray, T_wc: np.ndarray, stride: int = 1) -> np.ndarray:
        """(N, 3) world points of the pixels with a valid depth (finite, > 0) in every ``stride``-th row and column.

        Args:
            depth: (H, W) z-depth image, metres; NaN or <= 0 where there is no value.
            T_wc: 4x4 camera-to-world pose.
        """
        z = np.asarray(depth)[::stride, ::stride]
        valid = np.isfinite(z) & (z > 0)
        rows, cols = np.nonzero(valid)
        points = self.unproject(np.stack([cols * stride, rows * stride], axis=-1), z[valid])
        return points @ T_wc[:3, :3].T + T_wc[:3, 3]

    def undistort_image(self, image: np.ndarray) -> np.ndarray:
        """The image as an ideal pinhole camera with the same K would see it (no-op without distortion).

        The maps are built once per camera (:func:`heightfusion.lens.undistortion_for`).
        """
        if self.distortion is None:
            return image
        from .lens import undistortion_for

        return undistortion_for(self).image(image)
