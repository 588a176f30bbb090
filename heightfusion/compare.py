"""Compare heightfusion with the established height-mapping methods: the same data, grid and protocol, one run.

:func:`compare` runs every method of :data:`METHODS` on each sequence and returns a
:class:`CompareResult`, one row per sequence and method; :func:`write_outputs` writes it as
``heightfusion compare`` does (``compare.json``, ``compare.md``, ``compare.png``).

Per sequence every method gets the same frames, poses, depth (and sigma) and grid
(:func:`heightfusion.sizing.grid_for_sequence`), frame by frame in one pass. With ``depth="mvs"`` the
stereo depth is computed once per frame (:class:`heightfusion.depth.MotionStereo`) and fed to all
methods; frames the stereo gives no depth are skipped for all of them and counted.

Protocols, by what the sequence offers:

- ``ground truth`` (the folder has ``gt_heightmap.npz``): all frames are fused and the maps scored with
  :func:`heightfusion.metrics.evaluate`; the main figure is the RMSE on smooth areas, with
  completeness and the share within 1 sigma. No held-out figures here: they would need a second
  fusion without the held-out frames.
- ``held-out`` (real data without one): every ``every``-th frame is kept out of fusion, image and
  depth (the rule of :func:`heightfusion.heldout.split_heldout`, applied while streaming: 180 frames
  at 640x480 are 400 MB), the rest fused, and the maps scored against the held-out frames' sensor
  depth with :func:`heightfusion.heldout.score_heldout` (also with ``depth="mvs"``); the main figure
  is the median |dh|, with coverage and the shares within 1/2/5 cm.

Time: milliseconds of the method's own work per frame handed to it (frames already read and
decoded; the shared stereo is timed separately), and its ratio to the fastest method on that
sequence. The TSDF's read-out of the height map, needed once per map, is included and spread over
the frames. A method whose dependency is missing (Open3D, OpenGL) is reported as skipped with the
reason; a frame a method cannot fuse (``ValueError``, e.g. :class:`heightfusion.fusion.FrameError`)
is counted under its message and the run goes on.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .atomic import atomic_write
from .datasets.frame import Frame
from .heightmap import HeightMap
from .heldout import DEFAULT_EVERY, score_heldout
from .metrics import evaluate, smooth_mask_from_heights
from .sizing import grid_for_sequence

if TYPE_CHECKING:  # the stereo needs torch: imported when "mvs" is asked for
    from .depth import StereoConfig

#: The methods compared: heightfusion's fusion (GL renderer), the Kalman elevation map, the Open3D TSDF.
METHODS = ("heightfusion", "kalman", "tsdf")
#: Depth sources: the frames' depth images, or monocular motion stereo on images and poses.
DEPTH_SOURCES = ("sensor", "mvs")
TRUTH = "ground truth"
HELD_OUT = "held-out"

# Files write_outputs writes.
JSON_FILE, MARKDOWN_FILE, CHART_FILE = "compare.json", "compare.md", "compare.png"


# --- results ----------------------------------------------------------------------------------------
@dataclass
class MethodResult:
    """One method on one sequence (a row of the comparison).

    Attributes:
        sequence: the sequence's name.
        method: one of :data:`METHODS`.
        skipped: why the method did not run (a missing dependency), else None.
        frames: frames handed to the method.
        failed: message -> count of frames it could not fuse.
        ms_per_frame: its time per frame handed to it, milliseconds (module docstring).
        ratio_to_fastest: ``ms_per_frame`` over the fastest method's on this sequence.
        truth: :func:`heightfusion.metrics.evaluate` against the ground truth, or None.
        heldout: :func:`heightfusion.heldout.score_heldout` against the held-out frames, or None.
    """

    sequence: str
    method: str
    skipped: str | None = None
    frames: int = 0
    failed: Counter = field(default_factory=Counter)
    ms_per_frame: float = math.nan
    ratio_to_fastest: float = math.nan
    truth: dict | None = None
    heldout: dict | None = None

    @property
    def fused(self) -> int:
        """Frames the method fused."""
        return self.frames - sum(self.failed.values())

    @property
    def error(self) -> float:
        """The main accuracy figure, metres: smooth-area RMSE with ground truth, else held-out median |dh|."""
        if self.truth is not None:
            return self.truth["smooth_rmse"]
        if self.heldout is not None:
            return self.heldout["median"]
        return math.nan


@dataclass
class SequenceResult:
    """What a sequence gave the comparison.

    Attributes:
        name, path: the sequence.
        protocol: :data:`TRUTH` or :data:`HELD_OUT`.
        grid: the (empty) grid every method fused into.
        frames: frames handed to the methods.
        held_out: frames kept out of fusion for scoring (0 with ground truth).
        skipped: reason -> count of frames no method got (reader skips, no depth, no stereo depth).
        stereo_ms_per_frame: stereo time per frame pushed to it, milliseconds; NaN with sensor depth.
        methods: one :class:`MethodResult` per method, in the order asked for.
        messages: what the dataset reader had to say.
    """

    name: str
    path: str
    protocol: str
    grid: HeightMap
    frames: int
    held_out: int
    skipped: Counter
    stereo_ms_per_frame: float
    methods: list[MethodResult]
    messages: list[str] = field(default_factory=list)


@dataclass
class CompareResult:
    """A comparison: the settings and one :class:`SequenceResult` per sequence.

    Example:
        >>> import heightfusion as hf
        >>> from heightfusion.compare import compare
        >>> result = compare([hf.datasets.sample_path()], methods=("kalman",), progress=False)
        >>> row = result.rows[0]
        >>> row.method, row.fused, row.error < 0.01
        ('kalman', 60, True)
    """

    depth: str
    every: int
    methods: tuple[str, ...]
    sequences: list[SequenceResult]

    @property
    def rows(self) -> list[MethodResult]:
        """One row per sequence and method, sequence by sequence."""
        return [row for seq in self.sequences for row in seq.methods]

    def to_dict(self) -> dict:
        """Plain JSON-ready data (NaN as None)."""
        sequences = [
            {
                "name": s.name, "path": s.path, "protocol": s.protocol, "frames": s.frames, "held_out": s.held_out,
                "skipped": dict(s.skipped), "stereo_ms_per_frame": s.stereo_ms_per_frame,
                "grid": {"origin": s.grid.origin.tolist(), "cell_size": s.grid.cell_size, "shape": list(s.grid.shape)},
                "messages": s.messages,
            }
            for s in self.sequences
        ]
        rows = [
            {
                "sequence": r.sequence, "method": r.method, "skipped": r.skipped, "frames": r.frames,
                "fused": r.fused, "failed": dict(r.failed), "ms_per_frame": r.ms_per_frame,
                "ratio_to_fastest": r.ratio_to_fastest, "error": r.error, "truth": r.truth, "heldout": r.heldout,
            }
            for r in self.rows
        ]
        data = {"depth": self.depth, "every": self.every, "methods": list(self.methods), "sequences": sequences, "rows": rows}
        return _json_ready(data)

    def markdown(self) -> str:
        """The comparison as markdown: a table per protocol, then a note per sequence."""
        lines = [f"Depth: {self.depth}. Same frames, poses, depth and grid for every method.", ""]
        for protocol in (TRUTH, HELD_OUT):
            sequences = [s for s in self.sequences if s.protocol == protocol]
            if sequences:
                lines += [*_table(protocol, sequences, self.every), ""]
        lines += [_note(s) for s in self.sequences]
        return "\n".join(lines) + "\n"


def _table(protocol: str, sequences: list[SequenceResult], every: int) -> list[str]:
    """Markdown lines of the table of ``sequences``, all scored by ``protocol``."""
    if protocol == TRUTH:
        title, header, cells = "all frames fused, scored against the ground-truth height map", _TRUTH_HEADER, _truth_cells
    else:
        title = f"every {every}th frame held out, the rest fused, scored against its depth on upward-facing surfaces"
        header, cells = _HELD_OUT_HEADER, _heldout_cells
    lines = [f"**{protocol}**: {title}", "", _row(["sequence", "method", "frames", *header, "ms/frame", "x fastest"]),
             _row(["---"] * (len(header) + 5))]
    for s in sequences:
        for r in s.methods:
            if r.skipped is not None:
                lines.append(_row([s.name, r.method, "-", f"skipped: {r.skipped}", *["-"] * (len(header) + 1)]))
                continue
            frames = f"{r.fused}" + (f" ({sum(r.failed.values())} failed)" if r.failed else "")
            lines.append(_row([s.name, r.method, frames, *cells(r), f"{r.ms_per_frame:.1f}", f"{r.ratio_to_fastest:.1f}"]))
    return lines


def _note(s: SequenceResult) -> str:
    """A markdown list item: what the sequence gave the methods, and what they could not fuse."""
    note = (f"- {s.name}: {s.frames} frames given to every method" + (f", {s.held_out} held out" if s.held_out else "")
            + f"; grid {s.grid.shape[1]} x {s.grid.shape[0]} vertices at {s.grid.cell_size:g} m")
    if math.isfinite(s.stereo_ms_per_frame):
        note += f"; stereo {s.stereo_ms_per_frame:.0f} ms/frame (shared, not in the methods' time)"
    if s.skipped:
        note += "; no method got: " + ", ".join(f"{n} {reason}" for reason, n in s.skipped.items())
    for r in s.methods:
        if r.failed:
            note += f"; {r.method} could not fuse: " + ", ".join(f"{n} x {msg}" for msg, n in r.failed.items())
    return note


_TRUTH_HEADER = ["RMSE smooth mm", "RMSE mm", "completeness", "within 1 sigma"]
_HELD_OUT_HEADER = ["median abs dh mm", "coverage", "within 1 cm", "within 2 cm", "within 5 cm", "within 1 sigma"]


def _truth_cells(r: MethodResult) -> list[str]:
    t = r.truth
    return [f"{1e3 * t['smooth_rmse']:.2f}", f"{1e3 * t['rmse']:.2f}", f"{t['completeness']:.3f}", f"{t['calib_1sigma']:.3f}"]


def _heldout_cells(r: MethodResult) -> list[str]:
    h = r.heldout
    return [f"{1e3 * h['median']:.2f}", f"{h['coverage']:.3f}", f"{h['within_1cm']:.3f}", f"{h['within_2cm']:.3f}",
            f"{h['within_5cm']:.3f}", f"{h['calib_1sigma']:.3f}"]


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _json_ready(value):
    """``value`` with NaN and inf floats as None and numpy scalars as Python numbers (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- the methods ------------------------------------------------------------------------------------
class _Method(Protocol):
    """A method under comparison: fuses frames into its grid; ``height_map`` leaves the result there."""

    def fuse(self, frame: Frame, depth: np.ndarray, sigma: np.ndarray | None) -> None: ...

    def height_map(self) -> HeightMap: ...

    def release(self) -> None: ...


class _HeightFusion:
    """heightfusion's fusion with the GL renderer and the depth source's settings."""

    def __init__(self, grid: HeightMap, stereo: bool) -> None:
        from .fusion import HeightMapFuser
        from .pipeline import fusion_config
        from .render import make_renderer

        self.renderer = make_renderer("gl")
        try:
            self.fuser = HeightMapFuser(grid, self.renderer, fusion_config(stereo))
        except BaseException:
            self.renderer.release()
            raise

    def fuse(self, frame: Frame, depth: np.ndarray, sigma: np.ndarray | None) -> None:
        self.fuser.fuse(frame.camera, frame.T_wc, depth, frame.image, sigma)

    def height_map(self) -> HeightMap:
        return self.fuser.grid

    def release(self) -> None:
        self.fuser.release()
        self.renderer.release()


class _Kalman:
    """The Kalman elevation map with its default (``elevation_mapping``) settings and the frames' times."""

    def __init__(self, grid: HeightMap, stereo: bool) -> None:
        from .baselines import KalmanElevationMap

        self.kalman = KalmanElevationMap(grid)

    def fuse(self, frame: Frame, depth: np.ndarray, sigma: np.ndarray | None) -> None:
        self.kalman.fuse(frame.camera, frame.T_wc, depth, frame.image, sigma, timestamp=frame.timestamp)

    def height_map(self) -> HeightMap:
        return self.kalman.grid

    def release(self) -> None:
        pass


class _TSDF:
    """Open3D TSDF fusion with its default settings, read out as a height map at the end."""

    def __init__(self, grid: HeightMap, stereo: bool) -> None:
        from .baselines import TSDFHeightMap

        self.tsdf = TSDFHeightMap(grid)

    def fuse(self, frame: Frame, depth: np.ndarray, sigma: np.ndarray | None) -> None:
        self.tsdf.fuse(frame.camera, frame.T_wc, depth, frame.image)  # a TSDF has no use for sigma

    def height_map(self) -> HeightMap:
        return self.tsdf.height_map()

    def release(self) -> None:
        pass


_FACTORIES = {"heightfusion": _HeightFusion, "kalman": _Kalman, "tsdf": _TSDF}


def _start(name: str, grid: HeightMap, stereo: bool) -> _Method | str:
    """The method ``name`` on a fresh copy of ``grid``, or the one-line reason it cannot run here."""
    from .baselines import BaselineUnavailable
    from .render import GLUnavailableError

    try:
        return _FACTORIES[name](HeightMap(tuple(grid.origin), grid.cell_size, grid.shape), stereo)
    except (BaselineUnavailable, GLUnavailableError) as exc:
        return str(exc).splitlines()[0]


# --- the comparison ---------------------------------------------------------------------------------
def compare(
    paths: Sequence[str | Path],
    methods: Sequence[str] = METHODS,
    depth: str = "sensor",
    every: int = DEFAULT_EVERY,
    cell_size: float | None = None,
    stereo: StereoConfig | None = None,
    progress: bool = True,
) -> CompareResult:
    """Run ``methods`` on every sequence at ``paths`` (module docstring).

    Args:
        paths: dataset folders (any format :func:`heightfusion.datasets.open` reads; images are undistorted).
        methods: names from :data:`METHODS`.
        depth: one of :data:`DEPTH_SOURCES`.
        every: every how many frames one is held out (data without ground truth).
        cell_size: map cell size, metres (default: the ground truth's, else 0.02).
        stereo: settings of the motion stereo (``depth="mvs"``).
        progress: show a progress bar per sequence.

    Raises:
        ValueError: an unknown method or depth source, a bad ``every``, or a path that is not a
            dataset (``DatasetError``) or has nothing to score against: all checked before any fusion.
    """
    from . import datasets

    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(f"methods must be distinct names from {', '.join(METHODS)}, got {', '.join(methods) or 'none'}")
    if depth not in DEPTH_SOURCES:
        raise ValueError(f"depth must be one of {', '.join(DEPTH_SOURCES)}, got {depth!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 2:
        raise ValueError(f"every must be an integer >= 2, got {every!r}")
    if not paths:
        raise ValueError("no sequence to compare on")
    sequences = [datasets.open(path, undistort=True) for path in paths]
    for sequence in sequences:
        if sequence.gt_heightmap is None and sequence.depth_scale is None:
            raise ValueError(f"{sequence.path}: neither a ground-truth height map nor depth images to score the maps against")
        if depth == "sensor" and sequence.depth_scale is None:
            raise ValueError(f"{sequence.path}: no depth images; use depth 'mvs'")
    results = [_compare_sequence(s, methods, depth, every, cell_size, stereo, progress) for s in sequences]
    return CompareResult(depth, every, methods, results)


class _Depths:
    """Each fused frame's depth and sigma for every method: the frame's own, or motion stereo's, computed once."""

    def __init__(self, stereo: bool, config: StereoConfig | None) -> None:
        self.motion = None
        if stereo:
            from .depth import MotionStereo

            self.motion = MotionStereo(config)
        self.seconds, self.frames = 0.0, 0

    def __call__(self, frame: Frame) -> tuple[np.ndarray, np.ndarray | None] | str:
        """(depth, sigma or None), or the reason the frame has no depth."""
        if self.motion is None:
            return "no depth" if frame.depth is None else (frame.depth, None)
        start = time.perf_counter()
        pushed = self.motion.push(frame.camera, frame.T_wc, frame.image, frame.timestamp)
        self.seconds += time.perf_counter() - start
        self.frames += 1
        if pushed.estimate is None:
            return f"stereo: {pushed.reason}"
        return pushed.estimate.depth, pushed.estimate.sigma

    @property
    def ms_per_frame(self) -> float:
        """Stereo milliseconds per frame pushed; NaN without stereo."""
        return 1e3 * self.seconds / self.frames if self.frames else math.nan


class _Entry:
    """A running method with its row and its time so far, seconds."""

    def __init__(self, method: _Method, row: MethodResult) -> None:
        self.method, self.row, self.seconds = method, row, 0.0

    def fuse(self, frame: Frame, depth: np.ndarray, sigma: np.ndarray | None) -> None:
        """Fuse a frame, timed; a frame the method rejects (``ValueError``) is counted under its message."""
        self.row.frames += 1
        start = time.perf_counter()
        try:
            self.method.fuse(frame, depth, sigma)
        except ValueError as exc:  # bad data for this method (FrameError included): the run goes on
            self.row.failed[f"{type(exc).__name__}: {str(exc).splitlines()[0]}"] += 1
        self.seconds += time.perf_counter() - start

    def finish(self, truth: HeightMap | None, held_out: list[Frame]) -> None:
        """Read the map out (timed with the fusion), then score it: against ``truth``, else ``held_out``."""
        start = time.perf_counter()
        grid = self.method.height_map()
        self.seconds += time.perf_counter() - start
        row = self.row
        row.ms_per_frame = 1e3 * self.seconds / row.frames if row.frames else math.nan
        if truth is not None:
            row.truth = evaluate(grid, truth, smooth_mask_from_heights(truth))
        else:
            row.heldout = score_heldout(grid, held_out)


def _compare_sequence(sequence, methods: tuple[str, ...], depth: str, every: int, cell_size: float | None,
                      stereo: StereoConfig | None, progress: bool) -> SequenceResult:
    """All ``methods`` on one sequence, in one pass over its frames."""
    from tqdm import tqdm

    truth = sequence.gt_heightmap
    protocol = TRUTH if truth is not None else HELD_OUT
    grid = grid_for_sequence(sequence, cell_size)
    rows = {name: MethodResult(sequence.name, name) for name in methods}
    entries: list[_Entry] = []
    skipped: Counter = Counter()
    held_out: list[Frame] = []
    given = 0
    depths = _Depths(depth == "mvs", stereo)
    try:
        for name in methods:
            started = _start(name, grid, depth == "mvs")
            if isinstance(started, str):
                rows[name].skipped = started
            else:
                entries.append(_Entry(started, rows[name]))
        frames = tqdm(sequence, total=len(sequence), unit="frame", desc=f"compare {sequence.name}", disable=not progress)
        for position, frame in enumerate(frames):
            if protocol == HELD_OUT and position % every == every - 1:  # split_heldout's rule
                held_out.append(Frame(frame.timestamp, None, frame.depth, frame.T_wc, frame.camera, frame.index))
                continue
            measured = depths(frame)
            if isinstance(measured, str):
                skipped[measured] += 1
                continue
            given += 1
            for entry in entries:
                entry.fuse(frame, *measured)
        for entry in entries:
            entry.finish(truth, held_out)
    finally:
        for entry in entries:
            entry.method.release()
    fastest = min((r.ms_per_frame for r in rows.values() if math.isfinite(r.ms_per_frame)), default=math.nan)
    for row in rows.values():
        row.ratio_to_fastest = row.ms_per_frame / fastest
    skipped.update(sequence.skipped)
    return SequenceResult(
        name=sequence.name, path=str(sequence.path), protocol=protocol, grid=grid, frames=given,
        held_out=len(held_out), skipped=skipped, stereo_ms_per_frame=depths.ms_per_frame,
        methods=[rows[name] for name in methods], messages=list(sequence.messages),
    )


# --- outputs ----------------------------------------------------------------------------------------
def write_outputs(result: CompareResult, out_dir: str | Path) -> list[Path]:
    """Write ``compare.json``, ``compare.md`` and ``compare.png`` (:func:`chart_png`) into ``out_dir``; their paths."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    contents = {
        JSON_FILE: (json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n").encode("utf-8"),
        MARKDOWN_FILE: result.markdown().encode("utf-8"),
        CHART_FILE: chart_png(result),
    }
    for name, data in contents.items():
        with atomic_write(out / name) as f:
            f.write(data)
    return [out / name for name in contents]


def chart_png(result: CompareResult) -> bytes:
    """A grouped bar chart as PNG bytes: the main error figure (mm) and ms per frame, per method per sequence."""
    import matplotlib

    matplotlib.use("Agg")  # no display: only files are written
    from matplotlib.figure import Figure

    names = [s.name for s in result.sequences]
    protocols = {s.protocol for s in result.sequences}
    error_label = " / ".join(
        label for protocol, label in ((TRUTH, "smooth-area RMSE (ground truth)"), (HELD_OUT, "median |dh| (held-out)"))
        if protocol in protocols
    )
    figure = Figure(figsize=(max(8.0, 2.0 + 2.6 * len(names)), 4.2), layout="constrained")
    panels = figure.subplots(1, 2)
    width = 0.8 / len(result.methods)
    x = np.arange(len(names))
    for panel, title, value in (
        (panels[0], f"error, mm: {error_label}", lambda r: 1e3 * r.error),
        (panels[1], "time per frame, ms", lambda r: r.ms_per_frame),
    ):
        for k, method in enumerate(result.methods):
            values = [value(next(r for r in s.methods if r.method == method)) for s in result.sequences]
            bars = panel.bar(x + (k - (len(result.methods) - 1) / 2) * width, np.nan_to_num(values, nan=0.0), width, label=method)
            panel.bar_label(bars, labels=[f"{v:.3g}" if math.isfinite(v) else "n/a" for v in values], fontsize=7)
        panel.set_title(title, fontsize=9)
        panel.set_xticks(x, names, fontsize=8)
    panels[0].legend(fontsize=8)
    figure.suptitle(f"heightfusion compare: {result.depth} depth, same frames, poses and grid for every method", fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()
