"""Microfacet shading in torch: GGX distribution, Smith (Schlick-GGX) geometry, Schlick Fresnel.

The reflectance model is the one SVBRDF capture methods fit (e.g. Deschaintre et al., "Single-Image
SVBRDF Capture with a Rendering-Aware Deep Network", SIGGRAPH 2018), per pixel:

    f(l, v) = albedo / pi  +  D(h) G(l, v) F(v . h) / (4 (n . l) (n . v)),    h = normalize(l + v)

- D: GGX (Trowbridge-Reitz) normal distribution with alpha = roughness^2 ("perceptual" roughness in
  [0, 1], clamped below at ``min_roughness``);
- G: Smith shadowing-masking with Schlick's approximation of the GGX G1, k = alpha / 2;
- F: Schlick's Fresnel from the specular colour F0 (``specular``; 0.04 for most dielectrics).

The diffuse and specular lobes are added without an energy trade-off between them (the usual choice
when the maps are what is recovered, so that albedo and specular stay separate unknowns). A surface
point reflects light towards the camera only when both lie on the side its normal points to
(n.l > 0 and n.v > 0); elsewhere the radiance is 0 (a normal tilted away from the camera is black).

Every function is plain torch on broadcastable (..., C) tensors, so autograd differentiates the
shading with respect to all the maps. ``shaders/brdf.glsl`` is the same model in GLSL, term for
term; ``tests/test_render_shaded.py`` holds the two equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "MIN_LIGHT_DISTANCE",
    "MIN_ROUGHNESS",
    "Light",
    "brdf_cos",
    "fresnel_schlick",
    "ggx_distribution",
    "shade",
    "smith_visibility",
]

#: Default lower bound of the roughness: the GGX peak 1 / (pi alpha^2) stays about 5e4, finite in
#: float32, and the highlight stays wider than a delta that no pixel sampling could resolve.
MIN_ROUGHNESS = 0.05
#: Point lights closer to a surface point than this (metres) are treated as this far: 1 / r^2 stays finite.
MIN_LIGHT_DISTANCE = 1e-4

_KINDS = ("directional", "point")


@dataclass(frozen=True)
class Light:
    """A light in the world frame; build one with :meth:`directional` or :meth:`point`.

    Attributes:
        kind: ``"directional"`` (at infinity) or ``"point"``.
        vector: unit direction from the surface towards the light (directional), or the light's
            position in metres (point).
        color: linear RGB, each >= 0.
        intensity: scale (>= 0) of ``color``: irradiance on a surface facing a directional light,
            or a point light's radiant intensity (irradiance at 1 m). The default, pi, makes a
            white Lambertian surface facing the light (1 m away for a point light) render 1.0.
    """

    kind: str
    vector: tuple[float, float, float]
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    intensity: float = math.pi

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"Light kind must be one of {_KINDS}, got {self.kind!r}")
        vector = _three_finite(self.vector, "vector")
        if self.kind == "directional":
            norm = float(np.linalg.norm(vector))
            if norm < 1e-12:
                raise ValueError("a directional Light needs a non-zero direction towards the light")
            vector = vector / norm
        color = _three_finite(self.color, "color")
        if (color < 0).any():
            raise ValueError(f"Light color must be non-negative, got {self.color!r}")
        if not (math.isfinite(self.intensity) and self.intensity >= 0):
            raise ValueError(f"Light intensity must be finite and non-negative, got {self.intensity!r}")
        object.__setattr__(self, "vector", tuple(float(x) for x in vector))
        object.__setattr__(self, "color", tuple(float(x) for x in color))
        object.__setattr__(self, "intensity", float(self.intensity))

    @classmethod
    def directional(cls, towards, color=(1.0, 1.0, 1.0), intensity: float = math.pi) -> "Light":
        """A light at infinity in direction ``towards`` (from the surface to the light, any length)."""
        return cls("directional", tuple(towards), tuple(color), intensity)

    @classmethod
    def point(cls, position, color=(1.0, 1.0, 1.0), intensity: float = math.pi) -> "Light":
        """A point light at ``position`` (metres, world frame); irradiance falls off as 1 / r^2."""
        return cls("point", tuple(position), tuple(color), intensity)

    @property
    def strength(self) -> tuple[float, float, float]:
        """``color * intensity``: irradiance (directional) or radiant intensity (point), per channel."""
        return tuple(c * self.intensity for c in self.color)  # type: ignore[return-value]

    def translated(self, offset) -> "Light":
        """The light with its position shifted by ``offset`` (a directional light has none to shift)."""
        if self.kind == "directional":
            return self
        return replace(self, vector=tuple(np.asarray(self.vector) + np.asarray(offset, dtype=np.float64)))


def _three_finite(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (3,) or not np.isfinite(array).all():
        raise ValueError(f"Light {name} must be three finite numbers, got {values!r}")
    return array


def ggx_distribution(n_dot_h: torch.Tensor, sin2_h: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """GGX normal distribution D = alpha^2 / (pi (cos^2 (alpha^2 - 1) + 1)^2) of the half vector.

    The denominator's base is written sin^2 + cos^2 alpha^2 with sin^2 = |n x h|^2 passed in: the
    textbook 1 - cos^2 (1 - alpha^2) cancels catastrophically at the peak for small alpha (float32
    keeps 1e-7 of 1, alpha^2 is 6e-6 at the smallest roughness).
    """
    base = sin2_h + n_dot_h.square() * alpha.square()
    return alpha.square() / (math.pi * base.square())


def smith_visibility(n_dot_l: torch.Tensor, n_dot_v: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """G / (4 (n.l) (n.v)) for Smith's G with Schlick-GGX G1(x) = x / (x (1 - k) + k), k = alpha / 2.

    The cosines cancel against G's numerators, so the term stays finite at grazing light or view
    (both cosines 0) as long as alpha > 0, which the roughness clamp guarantees.
    """
    k = 0.5 * alpha
    return 0.25 / ((n_dot_l * (1 - k) + k) * (n_dot_v * (1 - k) + k))


def fresnel_schlick(v_dot_h: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """Schlick's Fresnel F0 + (1 - F0) (1 - v.h)^5."""
    m = 1 - v_dot_h
    m2 = m.square()
    return f0 + (1 - f0) * (m2 * m2 * m)


def brdf_cos(
    albedo: torch.Tensor,
    normal: torch.Tensor,
    roughness: torch.Tensor,
    specular: torch.Tensor,
    view_dir: torch.Tensor,
    light_dir: torch.Tensor,
    min_roughness: float = MIN_ROUGHNESS,
) -> torch.Tensor:
    """f(l, v) (n.l): radiance (..., 3) reflected towards ``view_dir`` per unit irradiance; 0 unless
    n.l > 0 and n.v > 0.

    Args:
        albedo: (..., 3) diffuse albedo in [0, 1].
        normal, view_dir, light_dir: (..., 3) unit vectors (``view_dir`` and ``light_dir`` point from
            the surface to the camera and to the light).
        roughness: (...,) perceptual roughness, clamped to [min_roughness, 1]; alpha = roughness^2.
        specular: (..., 3) or (..., 1) specular colour F0 in [0, 1].
    """
    alpha = roughness.clamp(min_roughness, 1.0).square()[..., None]
    n_dot_l = (normal * light_dir).sum(-1, keepdim=True)
    n_dot_v = (normal * view_dir).sum(-1, keepdim=True)
    upper = (n_dot_l > 0) & (n_dot_v > 0)
    # Where the result is 0 anyway, every term is evaluated at harmless stand-ins (h = n, cosines
    # clamped to 0): torch.where passes a zero gradient into the unused branch, and zero times an
    # infinite or NaN local derivative (l = -v gives h = 0 and D = 0 / 0) would still be NaN.
    half = torch.where(upper, F.normalize(light_dir + view_dir, dim=-1), normal)
    n_dot_l, n_dot_v = n_dot_l.clamp(min=0.0), n_dot_v.clamp(min=0.0)
    n_dot_h = (normal * half).sum(-1, keepdim=True).clamp(min=0.0)
    v_dot_h = (view_dir * half).sum(-1, keepdim=True).clamp(0.0, 1.0)
    sin2_h = torch.linalg.cross(normal, half, dim=-1).square().sum(-1, keepdim=True)
    specular_lobe = (
        ggx_distribution(n_dot_h, sin2_h, alpha)
        * smith_visibility(n_dot_l, n_dot_v, alpha)
        * fresnel_schlick(v_dot_h, specular)
    )
    return torch.where(upper, (albedo / math.pi + specular_lobe) * n_dot_l, 0.0)


def shade(
    albedo: torch.Tensor,
    normal: torch.Tensor,
    roughness: torch.Tensor,
    specular: torch.Tensor,
    view_dir: torch.Tensor,
    lights: Sequence[Light],
    position: torch.Tensor | None = None,
    min_roughness: float = MIN_ROUGHNESS,
) -> torch.Tensor:
    """Linear RGB radiance (..., 3) leaving each pixel's surface point towards the camera.

    Args:
        albedo: (..., 3) diffuse albedo in [0, 1].
        normal: (..., 3) surface normal, any non-zero length (normalised here, so an unconstrained
            tensor can be optimised).
        roughness: (...,) perceptual roughness in [0, 1]; values below ``min_roughness`` shade as it.
        specular: (..., 3) or (..., 1) specular colour F0 in [0, 1].
        view_dir: (..., 3) direction from the surface point to the camera, any non-zero length.
        lights: the lights; their contributions add up (none: black).
        position: (..., 3) surface points in the lights' frame, metres; needed for point lights.
        min_roughness: lower clamp of the roughness (its gradient is zero below it).

    Returns:
        (..., 3) radiance in the inputs' dtype and device; not clipped to [0, 1] (highlights exceed it).
    """
    n = F.normalize(normal, dim=-1)
    v = F.normalize(view_dir, dim=-1)
    out = torch.zeros(torch.broadcast_shapes(albedo.shape, n.shape), dtype=albedo.dtype, device=albedo.device)
    for light in lights:
        light_dir, irradiance = _incident(light, position, albedo)
        out = out + brdf_cos(albedo, n, roughness, specular, v, light_dir, min_roughness) * irradiance
    return out


def _incident(light: Light, position: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit direction towards ``light`` and the irradiance (..., 3) it brings to a surface facing it."""
    strength = like.new_tensor(light.strength)
    vector = like.new_tensor(light.vector)
    if light.kind == "directional":
        return vector, strength
    if position is None:
        raise ValueError("shading with a point light needs the surface position of every pixel")
    to_light = vector - position
    dist2 = to_light.square().sum(-1, keepdim=True).clamp(min=MIN_LIGHT_DISTANCE**2)
    return to_light * dist2.rsqrt(), strength / dist2
