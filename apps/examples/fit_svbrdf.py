"""Recover per-pixel albedo, normal and roughness maps from renderings under several lights.

    python apps/examples/fit_svbrdf.py [--size 32] [--grid 4] [--steps 400] [--lr 0.05]

A flat surface seen from straight above, as in SVBRDF capture. The "shaded" renderer's surface maps
of a level height map give every pixel's view direction and surface point; synthetic material maps
(colour blobs, a bumpy normal map, roughness bands; a known dielectric specular of 0.04) stand in
for the unknown material. One image per point light, the lights on a grid in the camera's plane (a
flash moved around the camera), is rendered with the GLSL shading pass: an implementation apart
from the torch one the fit uses (``--shading torch`` renders them with torch too). Adam then fits
the three maps, from a grey, level, medium-rough start, by rendering them with the torch shading
(heightfusion.render.brdf) and comparing in log radiance (so that highlights do not drown the
diffuse shading). Prints the loss and the errors against the true maps as it goes.

Roughness is only observable where some light puts a highlight (or its tail) on the pixel: away
from every highlight a weak, rough specular lobe looks like a little more diffuse albedo. The light
grid spaces the highlights a few lobe widths apart for the roughness range used here; fewer lights
or smoother (lower-roughness) materials leave pixels whose roughness the images do not determine.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

import heightfusion as hf
from heightfusion.render.brdf import Light
from heightfusion.render.shaded import SurfaceMaps, shade_maps

CAMERA_HEIGHT = 0.5  # metres above the surface
SPECULAR = 0.04  # known specular colour F0 of a dielectric


@dataclass
class Scene:
    """The fitting problem: true maps, the views' shading inputs, the lights and the target images."""

    maps: SurfaceMaps  # true maps (all pixels see the surface)
    lights: list[Light]  # one per target image
    targets: torch.Tensor  # (L, H, W, 3) radiance


class Material(torch.nn.Module):
    """Unconstrained parameters of the per-pixel maps, mapped into their valid ranges."""

    def __init__(self, shape: tuple[int, int]) -> None:
        super().__init__()
        self.albedo_logit = torch.nn.Parameter(torch.zeros(*shape, 3))  # grey 0.5
        self.slope = torch.nn.Parameter(torch.zeros(*shape, 2))  # level: normal (-sx, -sy, 1)
        self.roughness_logit = torch.nn.Parameter(torch.zeros(shape))  # 0.5

    def maps(self) -> dict[str, torch.Tensor]:
        """The per-pixel maps, as keyword arguments of :func:`shade_maps`."""
        normal = torch.cat([-self.slope, torch.ones_like(self.slope[..., :1])], dim=-1)
        return {
            "albedo": torch.sigmoid(self.albedo_logit),
            "normal": torch.nn.functional.normalize(normal, dim=-1),
            "roughness": torch.sigmoid(self.roughness_logit),
        }


def true_material(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Albedo (colour blobs), normals (of a bumpy height field) and roughness (bands), (size, size, C)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    albedo = np.full((size, size, 3), 0.15)
    for _ in range(6):
        cx, cy, r = rng.random(), rng.random(), 0.1 + 0.15 * rng.random()
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r**2)[..., None]
        albedo += 0.5 * blob * rng.random(3)
    # World-frame normals of a bump field over the image (x, y in image widths), tilted up to ~20 degrees.
    bumps = 0.02 * np.sin(2 * math.pi * 3 * x) * np.sin(2 * math.pi * 2 * y)
    gy, gx = np.gradient(bumps, 1 / size)
    normal = np.stack([-gx, -gy, np.ones_like(gx)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    roughness = 0.3 + 0.2 * (np.floor(4 * (x + 0.5 * y)) % 3)
    return {"albedo": np.clip(albedo, 0, 1), "normal": normal, "roughness": roughness}


def make_scene(size: int = 32, light_grid: int = 4, shading: str = "gl", seed: int = 0) -> Scene:
    """A camera above a level map, the true maps, and one target image per light."""
    grid = hf.HeightMap(origin=(-0.5, -0.5), cell_size=0.1, shape=(11, 11))
    cam = hf.PinholeCamera(size, size, size, size, (size - 1) / 2, (size - 1) / 2)
    T_wc = hf.look_at([0.0, 0.0, CAMERA_HEIGHT], [0.0, 0.0, 0.0], up=(0.0, 1.0, 0.0))
    renderer = hf.make_renderer("shaded", specular=SPECULAR, shading=shading)
    try:
        geometry = renderer.surface_maps(renderer.inner.render(grid, cam, T_wc), grid, cam, T_wc)
        truth = {k: v.astype(np.float32) for k, v in true_material(size, seed).items()}
        maps = replace(geometry, **truth)
        lights = _lights(light_grid)
        if shading == "gl":
            images = [renderer.gl_pass.shade(maps, [light]) for light in lights]
        else:
            images = [shade_maps(maps, [light]).numpy() for light in lights]
    finally:
        renderer.release()
    return Scene(maps, lights, torch.from_numpy(np.stack(images)))


def _lights(grid: int) -> list[Light]:
    """grid x grid point lights in the camera's plane, 0.9 m across.

    A light's highlight on the level surface lies halfway between it and the camera, so these tile
    the 0.5 m wide view. Intensity: a white Lambertian surface under a light renders 1.0.
    """
    offsets = np.linspace(-0.45, 0.45, grid)
    intensity = math.pi * CAMERA_HEIGHT**2
    return [Light.point((x, y, CAMERA_HEIGHT), intensity=intensity) for x in offsets for y in offsets]


def render(scene: Scene, material: Material) -> torch.Tensor:
    """(L, H, W, 3) images of the current material under each of the scene's lights."""
    maps = material.maps()
    return torch.stack([shade_maps(scene.maps, [light], **maps) for light in scene.lights])


def errors(scene: Scene, material: Material) -> dict[str, float]:
    """Albedo RMSE, mean normal angle (degrees) and roughness mean absolute error against the truth."""
    with torch.no_grad():
        maps = {k: v.numpy() for k, v in material.maps().items()}
    cos = np.clip((maps["normal"] * scene.maps.normal).sum(-1), -1.0, 1.0)
    return {
        "albedo_rmse": float(np.sqrt(np.mean((maps["albedo"] - scene.maps.albedo) ** 2))),
        "normal_deg": float(np.degrees(np.arccos(cos)).mean()),
        "roughness_mae": float(np.abs(maps["roughness"] - scene.maps.roughness).mean()),
    }


def fit(
    scene: Scene,
    steps: int,
    lr: float = 0.05,
    report: Callable[[int, float, Material], None] | None = None,
    report_every: int = 50,
) -> tuple[Material, list[float]]:
    """Fit the maps with Adam on the log-radiance error; returns the material and the loss per step.

    The normals learn at lr / 2.5: they change the shading under every light at once, and at the
    full rate they tilt far while the albedo is still wrong, into local minima they do not leave.
    """
    material = Material(scene.maps.shape)
    optimiser = torch.optim.Adam(
        [
            {"params": [material.albedo_logit, material.roughness_logit]},
            {"params": [material.slope], "lr": lr / 2.5},
        ],
        lr=lr,
    )
    target = torch.log1p(scene.targets)
    losses = []
    for step in range(steps + 1):
        optimiser.zero_grad()
        loss = (torch.log1p(render(scene, material)) - target).square().mean()
        if report is not None and step % report_every == 0:
            report(step, loss.item(), material)
        losses.append(loss.item())
        if step < steps:
            loss.backward()
            optimiser.step()
    return material, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32, help="image width and height, pixels")
    parser.add_argument("--grid", type=int, default=4, help="lights per side of the light grid (one image each)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--shading", default="gl", choices=("gl", "torch"), help="what renders the target images")
    args = parser.parse_args()

    scene = make_scene(args.size, args.grid, args.shading)
    print(f"{len(scene.lights)} images of {args.size}x{args.size} pixels, target radiance up to "
          f"{scene.targets.max().item():.2f}")

    def report(step: int, loss: float, material: Material) -> None:
        e = errors(scene, material)
        print(f"step {step:4d}  loss {loss:.2e}  albedo RMSE {e['albedo_rmse']:.4f}  "
              f"normal error {e['normal_deg']:5.2f} deg  roughness MAE {e['roughness_mae']:.4f}")

    fit(scene, args.steps, args.lr, report)


if __name__ == "__main__":
    main()
