"""Train a small CNN that refines noisy depth, self-supervised through differentiable fusion.

    python apps/examples/train_depth_refiner.py [--steps 300] [--out out/depth_refiner] [--backend gl]
                                                [--depth sensor|stereo] [--train-depth sensor|stereo]

Data: short windows (12 frames, 80x60) of synthetic sequences (heightfusion.synthetic): a drone over
rolling terrain and a ground robot over the floor, steps and ramp scenes. Each window has its own
map, the part of the scene's grid its frames see. The depth (``--depth``) is either a sensor's, with
Kinect-like noise (2 m up: sigma about 7 mm; on the ground 1.3-2 mm), or monocular motion stereo's
(:class:`heightfusion.MotionStereo` on the rendered images at 160x120, halved to the window's size,
with the sigmas it estimates): errors of 7-30 mm median, outliers of decimetres, holes. The refiner is
trained on windows with the depth of ``--train-depth`` (default: that of ``--depth``) and evaluated on
held-out windows with the depth of ``--depth``.

The loss compares the map with depth measured at frames that were not fused: a depth sensor's
(Kinect-like noise), whatever the input depth. For sensor windows that is the input itself. A
monocular refiner is trained as a depth network often is, with an RGB-D camera on the rig during
training only: stereo is fused, the sensor's depth at the other frames is the target, and at run time
the refiner needs only the images' stereo. Why not stereo's own depth as the target: the loss needs
targets whose errors are independent of the fused frames'. A sensor's noise is; stereo's is not
(neighbouring frames share their sources and their texture), so against stereo targets the loss
prefers the raw depth to the truth. Measured on the seven held-out stereo windows with a map to score
(mean loss, fusing the raw depth, the depth pulled fully towards the 15x15 quadric fit, and the
noise-free depth): 1.69, 1.91 and 2.14 sigmas, while the maps' RMSE falls from 5.7 to 4.3 and 1.8 mm.
Trained that way the refiner learned to leave the depth alone (held-out RMSE +0.7 %); trained on sensor
windows and applied to stereo it removed 23 %; trained on stereo with sensor targets, 36 %
(benchmarks/bench_autograd.py). A loss on the images instead (each frame not fused compared, through
the map, with two fused frames) hardly ranks them at 80x60, where millimetres of height move a point
by hundredths of a pixel between a window's frames: against the nearest frames the quadric-pulled map
scored worse than the raw one (0.103 against 0.098), against the farthest better by 1 % (the
noise-free map by 3 %).

The refiner (:class:`DepthRefiner`) predicts per pixel how strongly to pull the depth towards local
plane and quadric fits at four scales (kernel prediction, as in learned Monte Carlo denoisers):
smoothing where the surface is smooth, none across edges.

Training (no ground-truth heights anywhere in the loss): the refiner refines each frame's depth; two of
every three frames are fused with ``heightfusion.autograd.fuse_depth`` (the fuser's Gauss-Newton model,
differentiated; which third is left out is drawn per step); the fused map is rendered with
``render_depth`` at the window's other frames, which were not fused, and the loss is a robust norm of
the difference to the sensor depth measured there, in units of its sigma, over pixels whose triangle
the fusion observed. That noise is independent of the fused frames', so the loss is lowest for the true
surface: noisy targets, a clean optimum.

Evaluation: on windows of other trajectories with other noise (never trained on), the same frames are
fused with the raw depth, with the refined depth and with the noise-free depth (the ``oracle``: what a
perfect refiner would give, which shows how much of each map's error the noise causes at all), and
each map is compared with the sequence's ground-truth heights (``heightfusion.metrics.evaluate``) over
the vertices all three maps observed. Prints a table per scene and writes the training curve
(``training_curve.png``) and the table (``heldout.json``) to ``--out``.

The fusion settings are the fuser's defaults but for eight Gauss-Newton iterations per frame instead
of two. A live map converges over hundreds of frames; a window's map over eight, and with few
iterations its error is mostly unfinished iterations, which no depth can remove. On the held-out
windows, fusing noise-free depth instead of the noisy one gives no better a map with three
iterations (RMSE 2.8 against 2.65 mm) and a 33 % lower RMSE with eight (1.4 against 2.1 mm;
terrain 1.0 against 2.7 mm): only with enough iterations is the map's error the depth's, which is
what a refiner can change. (The coupled solver
converges faster still, but at the floor scene's box edges its map jumps by centimetres for
micrometre changes of one depth pixel, in HeightMapFuser as in fuse_depth: gradients of 1e5 and
more, useless for training.) Raw and refined depth are fused with the same settings and
the same sigmas (the sensor's, or those stereo estimated).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import heightfusion as hf
from heightfusion.autograd import fuse_depth, render_depth, visible_triangles
from heightfusion.metrics import evaluate
from heightfusion.pyramid import halve
from heightfusion.synthetic import drone_lawnmower, generate, robot_loop

WIDTH, HEIGHT = 80, 60
WINDOW = 12  # frames per window; every third one is held out of the fusion
SOURCES = ("sensor", "stereo")  # where the windows' depth comes from
STEREO_LEAD = 6  # frames before a window that monocular stereo sees first (its first sources)
CONFIG = hf.FusionConfig(iterations=8)
# Training and held-out windows: (scene, trajectory, first frames). The held-out trajectories fly lower
# and tilt less, drive a tighter loop with the camera higher and pitched down more, and their noise
# seeds differ: no held-out frame is a training frame.
TRAIN = (
    ("terrain", lambda: drone_lawnmower(200), (10, 45, 80, 115, 150)),
    ("floor", lambda: robot_loop(120), (0, 30, 60, 90)),
    ("steps", lambda: robot_loop(120), (15, 75)),
    ("ramp", lambda: robot_loop(120), (45, 105)),
)
HELD_OUT = (
    ("terrain", lambda: drone_lawnmower(200, altitude=1.8, tilt_deg=25.0), (25, 65, 105, 145)),
    ("floor", lambda: robot_loop(120, radius=0.8, wobble=0.25, camera_height=0.5, pitch_deg=35.0), (10, 50, 90)),
    ("steps", lambda: robot_loop(120, radius=0.8, wobble=0.25, camera_height=0.5, pitch_deg=35.0), (30, 70)),
    ("ramp", lambda: robot_loop(120, radius=0.8, wobble=0.25, camera_height=0.5, pitch_deg=35.0), (60, 100)),
)


@dataclass
class Window:
    """A short stretch of a synthetic sequence, with the map it is fused into."""

    scene: str
    camera: hf.PinholeCamera
    poses: np.ndarray  # (N, 4, 4)
    depth: torch.Tensor  # (N, H, W) float32 input depth (sensor or stereo), NaN = none
    sigma: torch.Tensor  # (N, H, W) float32 its sigma
    target: torch.Tensor  # (N, H, W) float32 the sensor's depth, which the loss compares the map with
    target_sigma: torch.Tensor  # (N, H, W) float32 its sigma
    grid: hf.HeightMap  # empty map over what the frames see
    truth: hf.HeightMap  # the ground truth on that grid (``observed``: seen by the frames)
    clean: torch.Tensor | None = None  # (N, H, W) noise-free depth, for the evaluation's oracle only

    def fused(self, phase: int = 2) -> np.ndarray:
        """(N,) bool: the frames fused, two of every three: all but those at ``phase`` modulo 3 (training
        draws the phase; the evaluation keeps 2)."""
        return np.arange(len(self.poses)) % 3 != phase


def make_windows(split, seed: int, source: str = "sensor", oracle: bool = False) -> list[Window]:
    """The windows of ``split`` (TRAIN or HELD_OUT) with input depth from ``source`` (``SOURCES``) and the
    sensor's depth as the loss's target (for sensor windows the input itself), its noise seeded from
    ``seed``; with ``oracle``, their noise-free depth too (at the pixels the input has depth)."""
    windows = []
    for scene, trajectory, starts in split:
        poses = trajectory()
        for start in starts:
            seq = generate(scene, poses=poses[start : start + WINDOW], width=WIDTH, height=HEIGHT, noise=True,
                           seed=seed + start)
            grid, truth = _window_maps(seq.gt_heightmap)
            # Sigma is NaN where there is no depth; 1 there keeps NaN out of the refiner's arithmetic.
            target, target_sigma = _stack_depth(seq), torch.nan_to_num(torch.from_numpy(np.stack(seq.sigmas)), nan=1.0)
            if source == "sensor":
                depth, sigma = target, target_sigma
            else:
                depth, sigma = _stereo_depth(scene, poses, start)
                sigma = torch.nan_to_num(sigma, nan=1.0)
            clean = None
            if oracle:
                clean = _stack_depth(generate(scene, poses=seq.poses, width=WIDTH, height=HEIGHT))
                clean = torch.where(torch.isfinite(depth), clean, math.nan)
            windows.append(Window(scene, seq.camera, seq.poses, depth, sigma, target, target_sigma, grid, truth, clean))
    return windows


def _stereo_depth(scene: str, poses: np.ndarray, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W) depth and sigma of the window's frames from monocular motion stereo
    (:class:`heightfusion.MotionStereo`, default settings): on images at twice the window's size, run
    from ``STEREO_LEAD`` frames before the window so that its first frames have sources too (the
    robot's loop closes, so its indices wrap), halved to the window's size (2x2 blocks whose depths
    agree, :func:`heightfusion.pyramid.halve`). A frame stereo gave no depth has none."""
    frames = np.arange(start - STEREO_LEAD, start + WINDOW) % len(poses)
    seq = generate(scene, poses=poses[frames], width=2 * WIDTH, height=2 * HEIGHT)
    motion = hf.MotionStereo()
    depths, sigmas = [], []
    for index, frame in enumerate(seq.frames):
        estimate = motion.push(frame.camera, frame.T_wc, frame.image).estimate
        if index < STEREO_LEAD:
            continue
        if estimate is None:
            depths.append(np.full((HEIGHT, WIDTH), np.nan, np.float32))
            sigmas.append(np.full((HEIGHT, WIDTH), np.nan, np.float32))
            continue
        _, depth, sigma, _ = halve(frame.camera, estimate.depth, estimate.sigma, None)
        depths.append(depth)
        sigmas.append(sigma)
    return torch.from_numpy(np.stack(depths)), torch.from_numpy(np.stack(sigmas))


def _stack_depth(seq) -> torch.Tensor:
    """(N, H, W) depth of a synthetic sequence's frames."""
    return torch.from_numpy(np.stack([f.depth for f in seq.frames]))


def _window_maps(truth: hf.HeightMap, margin: int = 3) -> tuple[hf.HeightMap, hf.HeightMap]:
    """(empty map, ground truth) on the part of ``truth``'s grid its ``observed`` vertices span, plus a margin."""
    rows, cols = np.nonzero(truth.observed)
    r0, c0 = max(rows.min() - margin, 0), max(cols.min() - margin, 0)
    r1, c1 = min(rows.max() + 1 + margin, truth.ny), min(cols.max() + 1 + margin, truth.nx)
    grid = hf.HeightMap(truth.origin + truth.cell_size * np.array([c0, r0]), truth.cell_size, (r1 - r0, c1 - c0))
    part = grid.copy()
    part.heights[:] = truth.heights[r0:r1, c0:c1]
    part.observed[:] = truth.observed[r0:r1, c0:c1]
    return grid, part


class DepthRefiner(torch.nn.Module):
    """A small CNN that predicts, per pixel, how much to smooth the depth, and how widely.

    Kernel prediction, as in learned Monte Carlo denoisers: the refined depth is the depth moved towards
    local fits p_k of the valid pixels around it (:func:`_local_fit`: planes over 3x3, 5x5 and 9x9, a
    quadric over 15x15), refined = d + sum_k a_k (p_k - d), with the weights a_k from the CNN. The fits
    are of inverse depth, which is linear in the pixel coordinates on any plane of the scene (depth is
    not): on a floor or a wall a plane fit is the surface itself, and the wide quadric follows rolling
    terrain (with it the held-out RMSE fell 30 % instead of 24 %, the floor 15 % instead of 3 %).

    The CNN sees the depth's relief against those fits in sigmas (surface detail or noise?), squashed by
    tanh(relief / RELIEF_SIGMAS), and the validity mask. Both ends are bounded: a box edge's relief of
    70 sigmas would otherwise reach the weights as 70 times a noise pixel's, and an unbounded a_k moves
    a pixel by any multiple of its distance to a fit; the first version had neither and wrecked the
    held-out floor maps (RMSE x2.8).

    a_k = tanh(CNN output) lies in (-1, 1), and each pull is damped by a range kernel, as a bilateral
    filter's: refined = d + sum_k a_k g_k (p_k - d) with g_k = exp(-(relief_k / RELIEF_SIGMAS)^2 / 2),
    so no pixel moves by more than about two sigmas per scale, whatever the CNN says: noise is removed,
    a step edge is never smeared (without g_k the held-out floor maps, boxes on a floor, came out 70 %
    worse). The last layer starts at zero, so the untrained refiner returns the depth as it is. Pixels
    without depth stay without.
    """

    FITS = ((3, 1), (5, 1), (9, 1), (15, 2))  # (size, degree): planes at three scales, a quadric at a wide one
    RELIEF_SIGMAS = 3.0  # relief beyond a few sigmas is surface, not noise: the CNN need not tell 10 from 70

    def __init__(self, channels: int = 24) -> None:
        super().__init__()
        layers, width = [], len(self.FITS) + 1
        for dilation in (1, 2, 4, 1):
            layers += [torch.nn.Conv2d(width, channels, 3, padding=dilation, dilation=dilation), torch.nn.ReLU()]
            width = channels
        self.features = torch.nn.Sequential(*layers)
        self.weights = torch.nn.Conv2d(channels, len(self.FITS), 3, padding=1)
        torch.nn.init.zeros_(self.weights.weight)
        torch.nn.init.zeros_(self.weights.bias)

    def forward(self, depth: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """(N, H, W) refined depth of (N, H, W) ``depth`` (NaN = none) with per-pixel ``sigma``."""
        valid = torch.isfinite(depth)[:, None]
        mask = valid.to(depth.dtype)
        d = torch.where(valid, depth[:, None], 1.0)
        fits = [1.0 / _local_fit(mask / d, mask, size, degree).clamp_min(1e-6) for size, degree in self.FITS]
        relief = [(d - p) / (self.RELIEF_SIGMAS * sigma[:, None]) * mask for p in fits]  # in RELIEF_SIGMAS
        a = torch.tanh(self.weights(self.features(torch.cat([*map(torch.tanh, relief), mask], dim=1))))
        refined = d + sum(a[:, k : k + 1] * torch.exp(-0.5 * x**2) * (p - d) for k, (p, x) in enumerate(zip(fits, relief)))
        return torch.where(valid, refined, math.nan)[:, 0]


def _local_fit(values: torch.Tensor, mask: torch.Tensor, size: int, degree: int) -> torch.Tensor:
    """At each pixel, the value there of the least-squares polynomial of ``degree`` (1: a plane
    a + b du + c dv; 2: a quadric, with du^2, dv^2 and du dv too) through the valid ``values`` of its
    size x size neighbourhood ((N, 1, H, W); ``mask`` 1 where valid).

    Exact on such a surface, also where the neighbourhood is one-sided (image borders, holes), but for
    the ridge below: it shifts one-sided fits by up to 4e-5 of inverse depth for planes and 4e-4 for the
    15x15 quadric (0.04-0.4 mm at 1 m, under a sensor's noise). A plain mean is not exact: on the flat
    floor of the held-out steps windows at 80x60, a 5x5 mean of noise-free inverse depth put 1.7 mm of
    error into the fused map, a 9x9 one 8 mm; plane fits 0.06 and 0.2 mm. Moments by convolution with
    the offset monomials; a ridge of 1e-4 of each slope and curvature term keeps windows with few or
    collinear valid pixels solvable (their fit tends to their mean).
    """
    # Offsets scaled to [-1, 1]: moments of order one, a well-conditioned solve in float32.
    offsets = (torch.arange(size, dtype=values.dtype, device=values.device) - size // 2) / max(size // 2, 1)
    dv, du = torch.meshgrid(offsets, offsets, indexing="ij")
    basis = [torch.ones_like(du), du, dv] + ([du * du, dv * dv, du * dv] if degree == 2 else [])
    n = len(basis)
    pairs = [(i, j) for i in range(n) for j in range(i, n)]
    moments = F.conv2d(mask, torch.stack([basis[i] * basis[j] for i, j in pairs])[:, None], padding=size // 2)
    rhs = F.conv2d(values * mask, torch.stack(basis)[:, None], padding=size // 2)
    N, _, H, W = values.shape
    M = values.new_zeros(N, H, W, n, n)
    for c, (i, j) in enumerate(pairs):
        M[..., i, j] = M[..., j, i] = moments[:, c]
    # The ridge; 1e-6 on the mean's term makes an empty window's system regular too (its fit is 0).
    diagonal = torch.diagonal(M, dim1=-2, dim2=-1)
    ridge = torch.cat([torch.full_like(diagonal[..., :1], 1e-6), 1e-4 * diagonal[..., 1:] + 1e-6], dim=-1)
    M = M + torch.diag_embed(ridge)
    coefficients = torch.linalg.solve(M, rhs.permute(0, 2, 3, 1))
    return coefficients[..., 0][:, None]


def fused_map(window: Window, depth: torch.Tensor, backend: hf.Renderer, phase: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(heights, information) of the window's map after fusing ``depth`` (N, H, W) of its fusion frames
    (``window.fused(phase)``), with the input depth's sigmas."""
    fused = window.fused(phase)
    keep = torch.from_numpy(fused)
    return fuse_depth(window.grid, window.camera, window.poses[fused], depth[keep], window.sigma[keep],
                      config=CONFIG, backend=backend)


def held_out_loss(window: Window, heights: torch.Tensor, information: torch.Tensor, backend: hf.Renderer,
                  phase: int = 2) -> torch.Tensor:
    """Robust mean of (rendered - target) / target sigma at the frames not fused (``~window.fused(phase)``),
    the sensor's depth there, over pixels whose triangle has three observed vertices (elsewhere the map
    shows its prior, which no depth explains)."""
    held_out = ~window.fused(phase)
    keep = torch.from_numpy(held_out)
    poses = window.poses[held_out]
    rendered = render_depth(heights, window.grid, window.camera, poses, backend=backend)
    observed = (information.detach() >= 1.0 / CONFIG.observed_sigma**2).reshape(-1).numpy()
    seen = []
    for T in poses:
        triangles = visible_triangles(heights.detach(), window.grid, window.camera, T, backend)
        ids = window.grid.triangle_vertex_ids(triangles.numpy())
        seen.append((ids >= 0).all(axis=-1) & observed[np.maximum(ids, 0)].all(axis=-1))
    residual = (rendered - window.target[keep]) / window.target_sigma[keep]
    use = torch.from_numpy(np.stack(seen)) & torch.isfinite(residual)
    return F.huber_loss(residual[use], torch.zeros_like(residual[use]), delta=2.0)


def train(windows: list[Window], steps: int, backend: hf.Renderer, lr: float = 3e-3, seed: int = 0):
    """The refiner trained on ``windows`` (one random window per step), and its curve: per step, the
    window's scene, its loss and that loss minus the same window's loss with the raw depth (the
    loss itself mostly shows the held-out frames' own noise and which window was drawn). A step that
    draws a window whose held-out frames see no observed triangle (stereo that found little depth)
    is skipped: it has no curve point."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        raw = {(i, phase): held_out_loss(w, *fused_map(w, w.depth, backend, phase), backend, phase).item()
               for i, w in enumerate(windows) for phase in range(3)}
    refiner = DepthRefiner()
    optimiser = torch.optim.Adam(refiner.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    curve = []
    for step in range(steps):
        # Which third of the window is held out is drawn too: three times the targets from the same frames.
        index, phase = int(rng.integers(len(windows))), int(rng.integers(3))
        if not math.isfinite(raw[index, phase]):  # no held-out pixel sees an observed triangle: nothing to learn
            continue
        window = windows[index]
        optimiser.zero_grad()
        heights, information = fused_map(window, refiner(window.depth, window.sigma), backend, phase)
        loss = held_out_loss(window, heights, information, backend, phase)
        loss.backward()
        # A few windows straddle the fuser's discontinuities (box edges, where the visible triangles
        # change): their rare large gradients must not throw the weights far.
        torch.nn.utils.clip_grad_norm_(refiner.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        curve.append((step, window.scene, loss.item(), loss.item() - raw[index, phase]))
    return refiner, curve


def evaluate_windows(windows: list[Window], refiner: DepthRefiner, backend: hf.Renderer) -> list[dict]:
    """Per window: the fused map's errors against the ground truth (``heightfusion.metrics.evaluate``) with
    the raw, the refined and the noise-free depth, over the vertices all three maps observed (each
    map's own set would differ at the edges of what the frames saw, where errors are largest)."""
    rows = []
    for window in windows:
        with torch.no_grad():
            depths = {"raw": window.depth, "refined": refiner(window.depth, window.sigma), "oracle": window.clean}
            maps = {name: fused_map(window, depth, backend) for name, depth in depths.items()}
        estimates = {}
        for name, (heights, information) in maps.items():
            estimate = estimates[name] = window.grid.copy()
            estimate.heights[:] = heights.numpy()
            estimate.information[:] = information.numpy()
            estimate.observed[:] = estimate.information >= 1.0 / CONFIG.observed_sigma**2
        common = np.logical_and.reduce([e.observed for e in estimates.values()])
        row = {"scene": window.scene}
        for name, estimate in estimates.items():
            estimate.observed[:] = common
            row[name] = evaluate(estimate, window.truth)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> tuple[str, dict]:
    """The held-out table (per scene and over all windows, RMSEs pooled over their vertices; the median of the
    windows' medians) as text, and its numbers."""
    summary = {}
    # A window whose three maps share no observed vertex (stereo that found no depth in most frames)
    # has nothing to compare: it is counted as such, not pooled.
    empty = Counter(r["scene"] for r in rows if r["raw"]["count"] == 0)
    rows = [r for r in rows if r["raw"]["count"] > 0]
    for scene in [*dict.fromkeys(r["scene"] for r in rows), "all"]:
        mine = [r for r in rows if scene in ("all", r["scene"])]
        entry = {"windows": len(mine)}
        for name in ("raw", "refined", "oracle"):
            for key in ("rmse", "smooth_rmse", "median"):
                counts = np.array([r[name]["count" if key != "smooth_rmse" else "smooth_count"] for r in mine])
                values = np.array([r[name][key] for r in mine])
                if key == "median":
                    entry[f"{name}_{key}"] = float(np.median(values))
                else:  # pooled: the RMSE over all those vertices together
                    entry[f"{name}_{key}"] = float(np.sqrt((counts * values**2).sum() / counts.sum()))
        entry["vertices"] = int(sum(r["raw"]["count"] for r in mine))
        entry["rmse_reduction"] = 1 - entry["refined_rmse"] / entry["raw_rmse"]
        summary[scene] = entry
        entry["oracle_reduction"] = 1 - entry["oracle_rmse"] / entry["raw_rmse"]
    lines = ["fused-map height error vs ground truth, mm (raw: noisy input depth; refined: through the CNN; "
             "oracle: noise-free depth)",
             f"{'held-out':9} {'windows':>7} | {'RMSE raw':>8} {'refined':>8} {'change':>7} {'oracle':>7} {'change':>7} | "
             f"{'smooth RMSE raw':>15} {'refined':>7} {'oracle':>7} | {'median raw':>10} {'refined':>7} {'oracle':>7} | "
             f"{'vertices':>8}"]
    for scene, e in summary.items():
        mm = {k: v * 1e3 for k, v in e.items() if isinstance(v, float)}
        lines.append(
            f"{scene:9} {e['windows']:7d} | {mm['raw_rmse']:8.2f} {mm['refined_rmse']:8.2f} "
            f"{-100 * e['rmse_reduction']:+6.1f}% "
            f"{mm['oracle_rmse']:7.2f} {-100 * e['oracle_reduction']:+6.1f}% | {mm['raw_smooth_rmse']:15.2f} "
            f"{mm['refined_smooth_rmse']:7.2f} {mm['oracle_smooth_rmse']:7.2f} | {mm['raw_median']:10.2f} "
            f"{mm['refined_median']:7.2f} {mm['oracle_median']:7.2f} | {e['vertices']:8d}"
        )
    lines += [f"{scene:9} {count:7d} window(s) without a vertex all three maps observed" for scene, count in empty.items()]
    return "\n".join(lines), summary


def plot_curve(curve: list[tuple[int, str, float, float]], path: Path) -> None:
    """The training curve as a PNG: per step, the held-out loss minus the raw depth's on the same window,
    per scene, with a running mean."""
    import matplotlib

    matplotlib.use("Agg")  # no display: only the file is written
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=110)
    axes = figure.add_subplot()
    steps = np.array([c[0] for c in curve])
    change = np.array([c[3] for c in curve])
    for scene in dict.fromkeys(c[1] for c in curve):
        mine = np.array([c[1] == scene for c in curve])
        axes.plot(steps[mine], change[mine], ".", ms=3, alpha=0.6, label=scene)
    span = max(1, len(change) // 15)
    axes.plot(steps[span - 1 :], np.convolve(change, np.ones(span) / span, mode="valid"), "k-", lw=1.5,
              label=f"mean of {span} steps")
    axes.axhline(0.0, color="grey", lw=0.8)
    axes.set_xlabel("step")
    axes.set_ylabel("held-out loss - raw depth's (Huber, sigmas)")
    axes.set_title("depth refiner, self-supervised through fuse_depth -> render_depth")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def run(steps: int = 300, out: str | Path = "out/depth_refiner", backend_name: str = "gl", seed: int = 0,
        source: str = "sensor", train_source: str | None = None, trained: dict | None = None) -> dict:
    """Train on windows with input depth from ``train_source`` ("sensor" or "stereo", None: ``source``; the
    targets are always the sensor's, module docstring), evaluate on held-out windows with depth from
    ``source``; write the curve and the table to ``out``. ``trained``: the
    result of an earlier call with the same ``train_source``, ``steps`` and ``seed``, whose refiner is
    evaluated without training it again.

    Returns the table's numbers (per scene and "all"), the training seconds, the output paths and (key
    "refiner", not written to the JSON) the refiner and its curve.
    """
    torch.set_num_threads(1)  # small tensors: one thread avoids stalls on busy cores
    train_source = train_source or source
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    held_out = make_windows(HELD_OUT, seed=5000 + seed, source=source, oracle=True)
    if trained is None:
        train_windows = make_windows(TRAIN, seed=1000 + seed, source=train_source)
    data_seconds = time.perf_counter() - started
    backend = hf.make_renderer(backend_name)
    try:
        started = time.perf_counter()
        if trained is None:
            refiner, curve = train(train_windows, steps, backend, seed=seed)
            train_seconds = time.perf_counter() - started
        else:
            (refiner, curve), train_seconds = trained["refiner"], trained["train_seconds"]
        text, summary = table(evaluate_windows(held_out, refiner, backend))
    finally:
        backend.release()
    plot_curve(curve, out / "training_curve.png")
    result = {"source": source, "train_source": train_source, "table": summary, "train_seconds": train_seconds,
              "data_seconds": data_seconds, "steps": steps, "curve_png": str(out / "training_curve.png"), "text": text}
    (out / "heldout.json").write_text(json.dumps(result, indent=2))
    return {**result, "refiner": (refiner, curve)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", default="out/depth_refiner")
    parser.add_argument("--backend", default="gl", choices=("gl", "raymarch", "raymarch-gl"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--depth", default="sensor", choices=SOURCES,
                        help="the input depth: Kinect-like sensor noise, or monocular motion stereo")
    parser.add_argument("--train-depth", choices=SOURCES,
                        help="the training windows' input depth (default: --depth's); the loss's targets are "
                             "always a sensor's depth (see above)")
    args = parser.parse_args()
    result = run(args.steps, args.out, args.backend, args.seed, args.depth, args.train_depth)
    print(f"data {result['data_seconds']:.0f} s, training {result['steps']} steps on {result['train_source']} depth "
          f"(sensor targets) in "
          f"{result['train_seconds']:.0f} s")
    print(result["text"])
    print(f"training curve: {result['curve_png']}")


if __name__ == "__main__":
    main()
