"""Pictures of height maps, their uncertainty and error, and depth images, as RGB arrays and PNG files.

Every ``render_*`` function returns an RGB uint8 (H, W, 3) array (to show in a window: convert to
BGR for OpenCV); every ``*_png`` function renders, writes the PNG atomically and returns the array.

Layout of a map picture: the map panel sits at the top-left corner, one vertex drawn as an
``s x s`` block of pixels (nearest neighbour, ``s = map_scale(grid.shape)`` so that the long side
is at least 400 px), oriented like a map seen from above: north (+y, growing row index i) up and
+x (growing column index j) right, so vertex (i, j) lands in pixel rows ``(ny-1-i)*s .. +s-1`` and
columns ``j*s .. +s-1`` (:func:`vertex_pixel` gives its centre). To the right a colour scale bar
with labelled ticks (the free-space picture has a legend of its labels instead); the canvas is white
and at least ``BAR_MIN_HEIGHT`` px tall. Vertices without a value (unobserved, or masked out) are grey
``NO_DATA_RGB``.

Only matplotlib's colour maps and tick locators are used: no figure, no pyplot, no display.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np
from matplotlib import colormaps, ticker

from .atomic import atomic_write
from .heightmap import HeightMap
from .metrics import check_same_grid
from .navigation import FREE, LABEL_NAMES, OBSTACLE, UNKNOWN, FreeSpaceSettings, free_space

NO_DATA_RGB = (128, 128, 128)
#: Free-space picture colours per label (unknown vertices are ``NO_DATA_RGB``).
FREE_SPACE_RGB = {FREE: (150, 215, 140), OBSTACLE: (190, 40, 40), UNKNOWN: NO_DATA_RGB}
MIN_LONG_SIDE = 400
BAR_MIN_HEIGHT = 220
HEIGHT_CMAP = "viridis"
ERROR_CMAP = "RdBu_r"  # red: estimate above the truth, blue: below
SIGMA_CMAP = "magma"
DEPTH_CMAP = "turbo"

_BACKGROUND = 255
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.5
_BAR_TOP, _BAR_BOTTOM, _BAR_X, _BAR_W, _GAP = 32, 14, 14, 20, 8


# --- public renderers ---------------------------------------------------------------------------
def map_scale(shape: tuple[int, int]) -> int:
    """Pixels per vertex of a map picture of a (ny, nx) grid: long side at least ``MIN_LONG_SIDE`` px."""
    return max(1, math.ceil(MIN_LONG_SIDE / max(int(shape[0]), int(shape[1]))))


def vertex_pixel(shape: tuple[int, int], i: int, j: int) -> tuple[int, int]:
    """(row, col) of the centre pixel of vertex (i, j) in a map picture of a (ny, nx) grid."""
    s = map_scale(shape)
    return (int(shape[0]) - 1 - i) * s + s // 2, j * s + s // 2


def render_height(
    grid: HeightMap,
    vmin: float | None = None,
    vmax: float | None = None,
    mask: np.ndarray | None = None,
    cmap: str = HEIGHT_CMAP,
) -> np.ndarray:
    """Colour-mapped heights with a scale bar in metres (orientation: module docstring).

    ``mask`` (bool (ny, nx), default ``grid.observed``) selects the vertices drawn; the colour range
    defaults to the min and max height over them.
    """
    h, shown, scale = _height_field(grid, vmin, vmax, mask)
    return _scalar_picture(h, shown, scale, cmap, "height [m]", flip=True)


def render_color(grid: HeightMap, mask: np.ndarray | None = None) -> np.ndarray:
    """The colour orthophoto (``grid.colors``), same layout as the map pictures but without a bar."""
    shown = _shown(grid, mask)
    rgb = np.clip(np.rint(grid.colors * 255.0), 0, 255).astype(np.uint8)
    rgb[~shown] = NO_DATA_RGB
    return _upscale(rgb[::-1])


def render_uncertainty(
    grid: HeightMap,
    vmin_mm: float | None = None,
    vmax_mm: float | None = None,
    log: bool = True,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Height standard deviation (``HeightMap.sigma``) in millimetres, log colour scale by default.

    ``mask`` defaults to ``grid.observed`` (unobserved vertices only carry the prior); vertices with
    information <= 0 have no finite sigma and are grey.
    """
    sigma_mm, shown, scale = _sigma_field(grid, vmin_mm, vmax_mm, log, mask)
    return _scalar_picture(sigma_mm, shown, scale, SIGMA_CMAP, "sigma [mm]", flip=True)


def vertex_colors(grid: HeightMap, mode: str = "color") -> np.ndarray:
    """(ny, nx, 3) uint8 RGB per vertex, in grid order (no flip, no upscaling), for a 3D view.

    ``mode``: "color" (``grid.colors``), "height" or "uncertainty", coloured as in :func:`render_color`,
    :func:`render_height` and :func:`render_uncertainty` with their default ranges; unobserved
    vertices are ``NO_DATA_RGB``.
    """
    if mode == "color":
        rgb = np.clip(np.rint(grid.colors * 255.0), 0, 255).astype(np.uint8)
        rgb[~grid.observed] = NO_DATA_RGB
        return rgb
    values, shown, scale, cmap, _ = _mode_field(grid, mode)
    return _colorize(values, shown, scale, _lut(cmap), NO_DATA_RGB)


def vertex_colorbar(grid: HeightMap, mode: str, height: int = BAR_MIN_HEIGHT) -> np.ndarray | None:
    """The colour scale bar of :func:`vertex_colors` in ``mode`` (RGB uint8, ``height`` px tall); None for "color"."""
    if mode == "color":
        return None
    _, _, scale, cmap, title = _mode_field(grid, mode)
    return _colorbar(height, scale, _lut(cmap), title)


def _mode_field(grid: HeightMap, mode: str) -> tuple[np.ndarray, np.ndarray, _Scale, str, str]:
    """(values, shown, scale, colour map, title) of a scalar view mode with its default range."""
    if mode == "height":
        return (*_height_field(grid, None, None, None), HEIGHT_CMAP, "height [m]")
    if mode == "uncertainty":
        return (*_sigma_field(grid, None, None, True, None), SIGMA_CMAP, "sigma [mm]")
    raise ValueError(f"unknown view mode {mode!r}; valid modes: color, height, uncertainty")


def render_error(estimate: HeightMap, truth: HeightMap, limit: float = 0.02) -> np.ndarray:
    """Signed height error estimate - truth, diverging colours clipped at +-``limit`` metres, bar in mm.

    Red: the estimate is too high; blue: too low; grey where not both maps observed. The maps
    must share the grid (ValueError otherwise, as in :func:`heightfusion.metrics.evaluate`).
    """
    check_same_grid(estimate, truth)
    if not (math.isfinite(limit) and limit > 0):
        raise ValueError(f"limit must be a positive height in metres, got {limit!r}")
    e_mm = (estimate.heights.astype(np.float64) - truth.heights.astype(np.float64)) * 1e3
    shown = estimate.observed & truth.observed & np.isfinite(e_mm)
    scale = _Scale.linear(-limit * 1e3, limit * 1e3)
    return _scalar_picture(e_mm, shown, scale, ERROR_CMAP, "est - truth [mm]", flip=True)


def render_depth(depth: np.ndarray, vmin: float = 0.0, vmax: float | None = None) -> np.ndarray:
    """A depth image (H, W) in metres, colour-mapped, black where NaN, with a bar in metres.

    Image orientation is kept (row 0 at the top). ``vmax`` defaults to the largest valid depth;
    ``vmin`` defaults to 0 so that frames of a sequence share a scale.
    """
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"depth must be a 2-D (H, W) array, got shape {d.shape}")
    valid = np.isfinite(d)
    scale = _Scale.linear(*_range(d[valid], vmin, vmax))
    return _scalar_picture(d, valid, scale, DEPTH_CMAP, "depth [m]", flip=False, no_data=(0, 0, 0))


def render_free_space(labels: np.ndarray, notes: tuple[str, ...] = ()) -> np.ndarray:
    """Free-space labels (ny, nx) from :func:`heightfusion.navigation.free_space`, with a legend.

    Colours ``FREE_SPACE_RGB``; map orientation as the other map pictures (module docstring). ``notes``:
    lines printed under the legend (e.g. the robot's settings).
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be a 2-D (ny, nx) array, got shape {lab.shape}")
    bad = ~np.isin(lab, list(FREE_SPACE_RGB))
    if bad.any():
        raise ValueError(f"labels must be FREE, OBSTACLE or UNKNOWN ({FREE}, {OBSTACLE}, {UNKNOWN}), got {lab[bad][0]!r}")
    rgb = np.zeros(lab.shape + (3,), dtype=np.uint8)
    for value, colour in FREE_SPACE_RGB.items():
        rgb[lab == value] = colour
    panel = _upscale(rgb[::-1])
    entries = [(FREE_SPACE_RGB[value], name) for value, name in LABEL_NAMES.items()]
    legend = _legend(max(panel.shape[0], BAR_MIN_HEIGHT), "free space", entries, notes)
    canvas = np.full((legend.shape[0], panel.shape[1] + _GAP + legend.shape[1], 3), _BACKGROUND, dtype=np.uint8)
    canvas[: panel.shape[0], : panel.shape[1]] = panel
    canvas[:, panel.shape[1] + _GAP :] = legend
    return canvas


# --- PNG files ----------------------------------------------------------------------------------
def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an RGB uint8 (H, W, 3) (or grey (H, W)) array as PNG, atomically (temp file + rename)."""
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"write_png needs uint8 (H, W, 3) RGB or (H, W) grey, got {img.dtype} {img.shape}")
    bgr = img if img.ndim == 2 else np.ascontiguousarray(img[..., ::-1])
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError(f"{path}: PNG encoding failed for an image of shape {img.shape}")
    with atomic_write(path) as f:
        f.write(buf.tobytes())


def height_png(
    path: str | os.PathLike,
    grid: HeightMap,
    vmin: float | None = None,
    vmax: float | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Write :func:`render_height` to ``path`` as PNG; returns the RGB array."""
    return _write(path, render_height(grid, vmin, vmax, mask))


def color_png(path: str | os.PathLike, grid: HeightMap) -> np.ndarray:
    """Write :func:`render_color` to ``path`` as PNG; returns the RGB array."""
    return _write(path, render_color(grid))


def uncertainty_png(path: str | os.PathLike, grid: HeightMap, log: bool = True) -> np.ndarray:
    """Write :func:`render_uncertainty` to ``path`` as PNG; returns the RGB array."""
    return _write(path, render_uncertainty(grid, log=log))


def error_png(path: str | os.PathLike, estimate: HeightMap, truth: HeightMap, limit: float = 0.02) -> np.ndarray:
    """Write :func:`render_error` to ``path`` as PNG; returns the RGB array."""
    return _write(path, render_error(estimate, truth, limit))


def depth_png(path: str | os.PathLike, depth: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Write :func:`render_depth` to ``path`` as PNG; returns the RGB array."""
    return _write(path, render_depth(depth, vmax=vmax))


def free_space_png(
    path: str | os.PathLike, grid: HeightMap, settings: FreeSpaceSettings = FreeSpaceSettings(), inflate_unknown: bool = True
) -> np.ndarray:
    """Write the free-space picture of ``grid`` to ``path`` as PNG; returns the RGB array.

    Labels from :func:`~heightfusion.navigation.free_space` for the robot of ``settings``, drawn by
    :func:`render_free_space` with the settings under the legend.
    """
    labels = free_space(grid, settings.max_step, settings.max_slope, settings.robot_radius, settings.max_sigma, inflate_unknown)
    return _write(path, render_free_space(labels, free_space_notes(settings)))


def free_space_notes(settings: FreeSpaceSettings) -> tuple[str, ...]:
    """Legend lines of free-space settings, e.g. ("step <= 5 cm", "slope <= 20 deg", "radius 10 cm")."""
    notes = (f"step <= {settings.max_step * 100:g} cm", f"slope <= {math.degrees(settings.max_slope):.3g} deg",
             f"radius {settings.robot_radius * 100:g} cm")
    return notes if settings.max_sigma is None else notes + (f"sigma <= {settings.max_sigma * 1000:g} mm",)


# --- internals ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Scale:
    """Maps values to [0, 1] along the colour bar, linearly or logarithmically, and picks ticks."""

    vmin: float
    vmax: float
    log: bool

    @staticmethod
    def linear(vmin: float, vmax: float) -> "_Scale":
        return _Scale(vmin, vmax, False)

    @staticmethod
    def logarithmic(vmin: float, vmax: float) -> "_Scale":
        return _Scale(vmin, vmax, True)

    def fraction(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        if self.log:
            with np.errstate(divide="ignore", invalid="ignore"):
                lv, lo, hi = np.log10(v), math.log10(self.vmin), math.log10(self.vmax)
            return np.clip((lv - lo) / (hi - lo), 0.0, 1.0)
        return np.clip((v - self.vmin) / (self.vmax - self.vmin), 0.0, 1.0)

    def ticks(self) -> tuple[np.ndarray, list[str]]:
        eps = 1e-9 * (self.vmax - self.vmin)
        if self.log:
            decades = range(math.floor(math.log10(self.vmin)), math.ceil(math.log10(self.vmax)) + 1)
            t = np.array([m * 10.0**k for k in decades for m in (1, 2, 5)])
            t = t[(t >= self.vmin * (1 - 1e-9)) & (t <= self.vmax * (1 + 1e-9))]
            decade_ticks = t[np.isclose(10.0 ** np.round(np.log10(t)), t)]
            if len(t) > 7 and len(decade_ticks) >= 2:  # labels would collide on a short bar
                t = decade_ticks
            if len(t) >= 2:  # 1-2-5 ticks; a range under about half a decade gets linear ticks
                return t, [f"{v:g}" for v in t]
        t = ticker.MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(self.vmin, self.vmax)
        t = t[(t >= self.vmin - eps) & (t <= self.vmax + eps)]
        return t, _format_ticks(t)


def _format_ticks(ticks: np.ndarray) -> list[str]:
    """Fixed-point labels with the fewest decimals that tell the ticks apart exactly enough."""
    step = float(np.min(np.diff(ticks))) if len(ticks) > 1 else 1.0
    for decimals in range(7):
        if np.all(np.abs(np.round(ticks, decimals) - ticks) <= 1e-3 * step):
            break
    labels = [f"{v:.{decimals}f}" for v in ticks]
    return [lab[1:] if lab.startswith("-") and float(lab) == 0 else lab for lab in labels]  # no "-0.00"


def _range(values: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    """Colour range: given bounds, else the values' min / max; widened when empty or flat."""
    finite = values[np.isfinite(values)]
    if vmin is not None:
        lo = float(vmin)
    else:
        lo = float(finite.min()) if finite.size else (float(vmax) - 1.0 if vmax is not None else 0.0)
    hi = float(vmax) if vmax is not None else (float(finite.max()) if finite.size else lo + 1.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"colour range must be finite, got vmin={lo!r}, vmax={hi!r}")
    if lo > hi:
        raise ValueError(f"colour range is empty: vmin={lo!r} > vmax={hi!r}")
    if hi == lo:  # a flat map still gets a readable bar; a positive range stays positive (log scales)
        pad = 0.01 * abs(lo) if lo != 0 else 1e-3
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _height_field(grid: HeightMap, vmin, vmax, mask) -> tuple[np.ndarray, np.ndarray, _Scale]:
    """Heights (float64), the vertices shown and the linear colour scale over them."""
    shown = _shown(grid, mask) & np.isfinite(grid.heights)
    h = grid.heights.astype(np.float64)
    return h, shown, _Scale.linear(*_range(h[shown], vmin, vmax))


def _sigma_field(grid: HeightMap, vmin_mm, vmax_mm, log: bool, mask) -> tuple[np.ndarray, np.ndarray, _Scale]:
    """Sigma in mm (NaN where not shown), the vertices shown and the colour scale over them."""
    sigma = grid.sigma.astype(np.float64)
    shown = _shown(grid, mask) & np.isfinite(sigma)
    sigma_mm = np.where(shown, 1e3 * sigma, np.nan)
    if not shown.any() and vmin_mm is None:
        vmin_mm = 1.0  # nothing to show (nothing fused yet): any positive range draws the empty picture
    lo, hi = _range(sigma_mm[shown], vmin_mm, vmax_mm)
    if not log:
        return sigma_mm, shown, _Scale.linear(lo, hi)
    if lo <= 0:
        raise ValueError(f"a log colour scale needs vmin_mm > 0, got {lo!r}")
    return sigma_mm, shown, _Scale.logarithmic(lo, hi)


def _shown(grid: HeightMap, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        return grid.observed.copy()
    mask = np.asarray(mask)
    if mask.shape != grid.shape:
        raise ValueError(f"mask has shape {mask.shape}, expected the grid's {grid.shape}")
    return mask.astype(bool)


def _lut(cmap: str) -> np.ndarray:
    """(256, 3) uint8 RGB table of a matplotlib colour map."""
    return np.rint(colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.uint8)


def _colorize(values: np.ndarray, shown: np.ndarray, scale: _Scale, lut: np.ndarray, no_data) -> np.ndarray:
    idx = np.rint(scale.fraction(np.where(shown, values, scale.vmin)) * 255.0).astype(np.intp)
    rgb = lut[idx]
    rgb[~shown] = no_data
    return rgb


def _upscale(rgb: np.ndarray) -> np.ndarray:
    s = map_scale(rgb.shape[:2])
    return np.repeat(np.repeat(rgb, s, axis=0), s, axis=1) if s > 1 else np.ascontiguousarray(rgb)


def _scalar_picture(
    values: np.ndarray,
    shown: np.ndarray,
    scale: _Scale,
    cmap: str,
    title: str,
    flip: bool,
    no_data=NO_DATA_RGB,
) -> np.ndarray:
    lut = _lut(cmap)
    panel = _colorize(values, shown, scale, lut, no_data)
    panel = _upscale(panel[::-1] if flip else panel)
    height = max(panel.shape[0], BAR_MIN_HEIGHT)
    bar = _colorbar(height, scale, lut, title)
    canvas = np.full((height, panel.shape[1] + _GAP + bar.shape[1], 3), _BACKGROUND, dtype=np.uint8)
    canvas[: panel.shape[0], : panel.shape[1]] = panel
    canvas[:, panel.shape[1] + _GAP :] = bar
    return canvas


def _text_size(text: str) -> tuple[int, int]:
    (w, h), _ = cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)
    return w, h


def _colorbar(height: int, scale: _Scale, lut: np.ndarray, title: str) -> np.ndarray:
    """A white panel ``height`` px tall: title on top, the colour ramp (high at the top), ticks and labels."""
    ticks, labels = scale.ticks()
    label_w = max((_text_size(lab)[0] for lab in labels), default=0)
    label_x = _BAR_X + _BAR_W + 8
    width = max(_text_size(title)[0] + 8, label_x + label_w + 6)
    bar = np.full((height, width, 3), _BACKGROUND, dtype=np.uint8)

    y_top, y_bottom = _BAR_TOP, height - 1 - _BAR_BOTTOM
    rows = np.arange(y_top, y_bottom + 1)
    frac = (y_bottom - rows) / (y_bottom - y_top)
    bar[y_top : y_bottom + 1, _BAR_X : _BAR_X + _BAR_W] = lut[np.rint(frac * 255.0).astype(np.intp)][:, None, :]
    cv2.rectangle(bar, (_BAR_X - 1, y_top - 1), (_BAR_X + _BAR_W, y_bottom + 1), (0, 0, 0), 1)

    _, title_h = _text_size(title)
    cv2.putText(bar, title, (4, 4 + title_h), _FONT, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    for value, label in zip(scale.fraction(ticks), labels):
        y = int(round(y_bottom - value * (y_bottom - y_top)))
        cv2.line(bar, (_BAR_X + _BAR_W, y), (_BAR_X + _BAR_W + 4, y), (0, 0, 0), 1)
        _, h = _text_size(label)
        cv2.putText(bar, label, (label_x, y + h // 2), _FONT, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def _legend(height: int, title: str, entries: list[tuple[tuple[int, int, int], str]], notes: tuple[str, ...]) -> np.ndarray:
    """A white panel ``height`` px tall: title on top, one framed colour swatch and name per entry, then notes."""
    label_x = _BAR_X + _BAR_W + 8
    width = max(
        [_text_size(title)[0] + 8]
        + [label_x + _text_size(name)[0] + 6 for _, name in entries]
        + [_text_size(note)[0] + 10 for note in notes]  # notes start at x = 4
    )
    legend = np.full((height, width, 3), _BACKGROUND, dtype=np.uint8)
    _, title_h = _text_size(title)
    cv2.putText(legend, title, (4, 4 + title_h), _FONT, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    y = _BAR_TOP
    for colour, name in entries:
        legend[y : y + 16, _BAR_X : _BAR_X + _BAR_W] = colour
        cv2.rectangle(legend, (_BAR_X - 1, y - 1), (_BAR_X + _BAR_W, y + 16), (0, 0, 0), 1)
        _, h = _text_size(name)
        cv2.putText(legend, name, (label_x, y + 8 + h // 2), _FONT, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
        y += 26
    for note in notes:
        y += 20
        cv2.putText(legend, note, (4, y), _FONT, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return legend


def _write(path: str | os.PathLike, rgb: np.ndarray) -> np.ndarray:
    write_png(path, rgb)
    return rgb
