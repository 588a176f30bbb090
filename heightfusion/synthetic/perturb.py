"""Imperfect recordings from exact renderings: a drifting error on the given poses, exposure changes and image noise.

Images and depth are always rendered at the true poses; these perturbations make the data a user is
handed look like a real recording's, so that camera tracking and robust stereo can be tested:

- :class:`PoseNoise`: the trajectory written for the frames drifts away from the true one, as motion
  capture a few milliseconds out of sync or wheel/visual odometry would: a random walk in rotation
  and translation, smoothed over a few frames so that it drifts rather than jitters, starting at zero
  (the first pose is exact, as an odometry's start pose is) and scaled so that its RMS over the
  sequence is the given magnitude.
- :class:`Photometric`: per-frame gain and bias on the colour images (auto exposure: smooth over time)
  and Gaussian sensor noise, in 8-bit levels.

Each perturbation draws from its own random generator, so adding one never changes another's draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Smoothing (Gaussian sigma, frames) of the pose random walk: the error drifts, it does not jitter.
DRIFT_SMOOTHING_FRAMES = 3.0
#: Time scale (Gaussian sigma, frames) of the exposure changes.
EXPOSURE_SMOOTHING_FRAMES = 10.0


def _check_non_negative(owner: str, name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{owner}.{name} must be a non-negative number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PoseNoise:
    """Magnitude of the drifting pose error: RMS over the sequence of the rotation error angle (degrees)
    and of the translation error's length (millimetres)."""

    rotation_deg: float = 0.4
    translation_mm: float = 6.0

    def __post_init__(self) -> None:
        for name in ("rotation_deg", "translation_mm"):
            _check_non_negative("PoseNoise", name, getattr(self, name))


@dataclass(frozen=True)
class Photometric:
    """Image perturbations: ``gain`` (the exposure gain stays within 1 +- gain, 0 <= gain < 1), ``bias``
    (the added offset stays within +- bias 8-bit levels) and ``noise`` (Gaussian sigma, 8-bit levels)."""

    gain: float = 0.15
    bias: float = 8.0
    noise: float = 2.0

    def __post_init__(self) -> None:
        for name in ("gain", "bias", "noise"):
            _check_non_negative("Photometric", name, getattr(self, name))
        if self.gain >= 1:
            raise ValueError(f"Photometric.gain must be below 1 (the gain stays within 1 +- gain), got {self.gain!r}")


def as_pose_noise(value: PoseNoise | Sequence[float] | None) -> PoseNoise | None:
    """``value`` as a :class:`PoseNoise`: itself, (DEG, MM), or None for exact poses."""
    if value is None or isinstance(value, PoseNoise):
        return value
    if len(value) != 2:
        raise ValueError(f"pose_noise must be (degrees, millimetres), got {value!r}")
    return PoseNoise(*value)


def as_photometric(value: Photometric | Sequence[float] | None) -> Photometric | None:
    """``value`` as a :class:`Photometric`: itself, (GAIN, BIAS, NOISE), or None for exact images."""
    if value is None or isinstance(value, Photometric):
        return value
    if len(value) != 3:
        raise ValueError(f"photometric must be (gain, bias, noise), got {value!r}")
    return Photometric(*value)


def _scaled_to_rms(walk: np.ndarray, rms: float) -> np.ndarray:
    """(N, 3) ``walk`` scaled so that the RMS of its rows' lengths is ``rms`` (zeros stay zeros)."""
    current = math.sqrt(float(np.mean(np.sum(walk**2, axis=1))))
    return walk * (rms / current) if current > 0 else walk


def drift_errors(count: int, noise: PoseNoise, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(rotation vectors (N, 3) in radians, translations (N, 3) in metres) of a smooth drift (module docstring)."""
    from scipy.ndimage import gaussian_filter1d

    steps = rng.standard_normal((count, 6))
    steps[0] = 0.0
    walk = gaussian_filter1d(np.cumsum(steps, axis=0), DRIFT_SMOOTHING_FRAMES, axis=0, mode="nearest")
    walk -= walk[0]  # the first pose is exact
    return (_scaled_to_rms(walk[:, :3], math.radians(noise.rotation_deg)),
            _scaled_to_rms(walk[:, 3:], noise.translation_mm / 1000.0))


def drift_poses(poses: np.ndarray, noise: PoseNoise, rng: np.random.Generator) -> np.ndarray:
    """(N, 4, 4) ``T_wc`` with a drifting error: each camera turned about its centre by the error rotation
    (in the world frame) and moved by the error translation."""
    from scipy.spatial.transform import Rotation

    rotvecs, translations = drift_errors(len(poses), noise, rng)
    noisy = np.array(poses, dtype=np.float64, copy=True)
    noisy[:, :3, :3] = Rotation.from_rotvec(rotvecs).as_matrix() @ noisy[:, :3, :3]
    noisy[:, :3, 3] += translations
    return noisy


def exposure_series(count: int, photometric: Photometric, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(gains (N,), biases (N,)) of a smooth exposure change: within 1 +- gain and +- bias levels."""
    from scipy.ndimage import gaussian_filter1d

    smooth = gaussian_filter1d(rng.standard_normal((count, 2)), EXPOSURE_SMOOTHING_FRAMES, axis=0, mode="reflect")
    peak = np.abs(smooth).max(axis=0)
    smooth = np.divide(smooth, peak, out=np.zeros_like(smooth), where=peak > 0)
    return 1.0 + photometric.gain * smooth[:, 0], photometric.bias * smooth[:, 1]


def perturb_image(image: np.ndarray, gain: float, bias: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``image`` * ``gain`` + ``bias`` + Gaussian noise of sigma ``noise`` (8-bit levels), rounded and clipped."""
    out = image.astype(np.float32) * np.float32(gain) + np.float32(bias)
    if noise > 0:
        out += np.float32(noise) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
