"""Many recordings mapped at once on Ray (``heightfusion batch``), then merged into one map.

One Ray task per sequence runs what ``heightfusion replay PATH --tiles OUT/sequences/NAME/tiles --out
OUT/sequences/NAME`` runs, with the same options (:func:`map_sequence`); when every task has finished or
failed, the tiled maps of those that finished are merged by summing their evidence
(:func:`heightfusion.tiles.merge_tiled`) into ``OUT/merged/tiles``, with the merged map's files
(:func:`heightfusion.outputs.write_map_outputs`) in ``OUT/merged``; ``OUT/batch.json`` says what each
sequence did. Ray (the optional extra ``batch``) is imported when a batch runs, never with ``heightfusion``.

- **One lattice.** Maps merge only on one lattice of one cell size, so every sequence gets the same
  ``cell_size`` and ``origin`` (:func:`common_lattice`): the given ones, else the first sequence's ground
  truth's grid, else 2 cm cells through (0, 0). ``heightfusion replay`` with these options gives the same
  map as the batch task does: bit for bit with the task's thread count (``LP_NUM_THREADS=1``); with
  llvmpipe's default threads the GL sums add in another order, and a few vertices differ (motion stereo,
  120 frames: median 0, 0.4 % over 0.01 mm, at most 2.8 mm).
- **Threads.** A task reserves ``cpus_per_task`` of Ray's CPUs and keeps Mesa's llvmpipe
  (``LP_NUM_THREADS``), OpenMP and torch (the stereo's thread budget) to as many threads, so that
  concurrent tasks share the cores instead of oversubscribing them. Each worker process has its own
  headless EGL context (:mod:`heightfusion.render.context`), made by its first task.
- **Failures.** An error in a sequence (a bad path, a garbled file, a bug) ends its task with the message;
  a worker that dies (killed, out of memory, a crash) is reported by Ray. Tasks are not retried; the
  others go on and are merged.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .atomic import atomic_write
from .datasets.frame import Frame
from .heightmap import HeightMap
from .navigation import FreeSpaceSettings
from .sizing import DEFAULT_CELL_SIZE

INSTALL_HINT = "pip install 'heightfusion[batch]' (ray==2.60.0)"
# Seconds between two progress reports of a task, and between two looks of the driver at them.
_REPORT_S = 0.5
# Environment variables that set the thread counts of Mesa's llvmpipe and OpenMP (torch).
_THREAD_VARIABLES = ("LP_NUM_THREADS", "OMP_NUM_THREADS")


class RayUnavailableError(RuntimeError):
    """Ray is not installed (the CLI prints it as one line, exit status 2)."""


@dataclass
class SequenceOutcome:
    """What became of one sequence of a batch.

    Attributes:
        name: its folder under ``OUT/sequences``.
        path: the recording.
        ok: whether its map was made (and is in the merge).
        error: why not (one line), or None.
        frames_used, frames_skipped: frames fused and skipped (by the reader or the fusion).
        seconds: wall-clock time of its fusion loop.
        cpu_seconds: CPU time its process spent mapping it (all threads; outputs written included).
    """

    name: str
    path: str
    ok: bool
    error: str | None = None
    frames_used: int = 0
    frames_skipped: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames_used / self.seconds if self.seconds > 0 else math.nan


@dataclass
class BatchResult:
    """A batch: its sequences' outcomes (in the order given), the merged map (None when none finished) and
    its folder, the lattice every map was made on, and the wall-clock seconds of the whole batch."""

    sequences: list[SequenceOutcome]
    merged: HeightMap | None
    out: Path
    lattice: dict
    seconds: float

    @property
    def failed(self) -> list[SequenceOutcome]:
        return [s for s in self.sequences if not s.ok]


def sequence_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """A folder name per sequence: the recording's name, made unique with ``-2``, ``-3``... in order."""
    names: list[str] = []
    for path in paths:
        base = Path(os.path.abspath(path)).stem or "sequence"  # abspath: "." has a name; a link keeps its own
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}-{k}"
        names.append(name)
    return names


def common_lattice(paths: Sequence[str | os.PathLike], cell_size: float | None = None,
                   origin: tuple[float, float] | None = None) -> dict:
    """``cell_size`` and ``origin`` that put every sequence's map on one lattice (module docstring).

    Without ``origin`` the first sequence that opens with a ground truth (of ``cell_size``, when given)
    gives its grid's; a sequence that does not open here is left to its task to report. Raises ValueError
    for a cell size that is not a positive length.
    """
    from . import datasets

    if cell_size is not None and not (math.isfinite(cell_size) and cell_size > 0):
        raise ValueError(f"--cell-size must be a positive length in metres, got {cell_size!r}")
    if origin is None:
        for path in paths:
            try:
                truth = datasets.open(path).gt_heightmap
            except (ValueError, OSError):  # reported by the sequence's own task
                continue
            if truth is not None and cell_size in (None, truth.cell_size):
                return {"cell_size": truth.cell_size, "origin": tuple(float(v) for v in truth.origin)}
    return {"cell_size": DEFAULT_CELL_SIZE if cell_size is None else cell_size,
            "origin": (0.0, 0.0) if origin is None else tuple(origin)}


def map_sequence(path: str | os.PathLike, out: str | os.PathLike, options: Mapping, free_space: FreeSpaceSettings,
                 sink=None) -> SequenceOutcome:
    """Map one sequence as ``heightfusion replay PATH --tiles OUT/tiles --out OUT`` with ``options`` (keyword
    arguments of :func:`heightfusion.replay.replay`) does, starting from an empty tiled map; what a batch
    task runs. Raises what replay raises."""
    from .outputs import write_replay_outputs
    from .replay import replay
    from .tiles import is_tiled_map

    cpu = time.process_time()
    out = Path(out)
    tiles = out / "tiles"
    if is_tiled_map(tiles):  # an earlier run's: a run extends a tiled map, a batch starts from nothing
        shutil.rmtree(tiles)
    result = replay(path, **options, tiles=tiles, progress=False, sink=sink)
    write_replay_outputs(out, path, result, options, free_space)
    return SequenceOutcome(out.name, str(path), True, frames_used=result.frames_used,
                           frames_skipped=sum(result.skipped.values()), seconds=result.seconds,
                           cpu_seconds=time.process_time() - cpu)


def run_batch(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    options: Mapping | None = None,
    free_space: FreeSpaceSettings = FreeSpaceSettings(),
    *,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_task: int = 1,
    progress: bool = True,
    on_progress: Callable[[dict], None] | None = None,
) -> BatchResult:
    """Map ``paths`` on Ray, one task per sequence, into ``out/sequences/NAME``, then merge into ``out/merged``.

    Args:
        paths: the recordings (as the workers see them).
        out: the batch's folder (created; on a cluster, a folder the workers and this process share).
        options: keyword arguments of :func:`heightfusion.replay.replay` (``cli.replay.replay_options``);
            ``cell_size`` and ``origin`` are replaced by :func:`common_lattice` of them, ``shape`` must be None.
        free_space: settings of each map's (and the merged map's) free-space picture.
        ray_address: an existing Ray cluster (e.g. ``"auto"``, ``"ray://head:10001"``); None starts a local
            instance of ``num_cpus`` CPUs (default: the machine's), stopped at the end. A Ray already
            initialised in this process is used as it is.
        cpus_per_task: CPUs each task reserves and the threads it uses.
        progress: show a progress bar per sequence (frames read, frames/s).
        on_progress: called about twice a second with name -> {"read", "fused", "seconds", "pid"} of the
            running and finished tasks (the benchmark kills a worker through it).
    """
    options = dict(options or {})
    if options.get("shape") is not None:
        raise ValueError("--shape has no meaning in a batch (each sequence's map is tiled)")
    if not (isinstance(cpus_per_task, int) and cpus_per_task >= 1):
        raise ValueError(f"--cpus-per-task must be a positive integer, got {cpus_per_task!r}")
    if not paths:
        raise ValueError("batch needs at least one sequence")
    started = time.perf_counter()
    lattice = common_lattice(paths, options.get("cell_size"), options.get("origin"))
    options.update(lattice)
    ray = _import_ray()
    out = Path(out)
    if options.get("stereo") is not None:
        options["stereo"] = replace(options["stereo"], threads=cpus_per_task)
    names = sequence_names(paths)
    own_ray = not ray.is_initialized()
    if own_ray:
        ray.init(address=ray_address, num_cpus=None if ray_address else (num_cpus or os.cpu_count()),
                 include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        board = ray.remote(num_cpus=0)(_Board).remote()
        # No runtime_env for the thread variables: it would start fresh workers instead of Ray's prestarted ones
        # (seconds each, and CPU the tasks need on a small machine); the task sets them itself.
        task = ray.remote(_run_task).options(num_cpus=cpus_per_task, max_retries=0)
        refs = {task.remote(path, out / "sequences" / name, options, free_space, cpus_per_task, board): (name, path)
                for name, path in zip(names, paths)}
        outcomes = _collect(ray, refs, board, _Bars(names, paths, options.get("max_frames"), progress), on_progress)
    finally:
        if own_ray:
            ray.shutdown()
    ordered = [outcomes[name] for name in names]
    merged = merge_finished(out, ordered, free_space)
    result = BatchResult(ordered, merged, out, lattice, time.perf_counter() - started)
    _write_summary(result)
    return result


def merge_finished(out: Path, outcomes: Sequence[SequenceOutcome], free_space: FreeSpaceSettings) -> HeightMap | None:
    """Merge the tiled maps of the sequences that finished into ``out/merged/tiles`` and write the merged map's
    files to ``out/merged``; returns the merged map (None when none finished, or when it spans more than
    :data:`heightfusion.tiles.RESULT_MAX_SIDE` vertices: then the tiled map alone is the result)."""
    from .outputs import run_metrics, write_map_outputs
    from .tiles import RESULT_MAX_SIDE, TiledMap, is_tiled_map, merge_tiled

    finished = [s for s in outcomes if s.ok]
    if not finished:
        return None
    target = out / "merged" / "tiles"
    if is_tiled_map(target):  # an earlier batch's merge
        shutil.rmtree(target)
    sources = [TiledMap.open(out / "sequences" / s.name / "tiles", writable=False) for s in finished]
    tiled = merge_tiled(sources, target)
    bounds = tiled.bounds()
    if bounds is None or max(bounds[1] - bounds[0], bounds[3] - bounds[2]) > RESULT_MAX_SIDE:
        return None  # nothing fused anywhere, or too large for one array: the tiled map is the result
    merged = tiled.whole()
    metrics = run_metrics(sum(s.frames_used for s in finished), {}, sum(s.seconds for s in finished), {})
    write_map_outputs(out / "merged", merged, {"sequences": [s.name for s in finished], **metrics}, None, free_space)
    return merged


# --- inside the workers ---------------------------------------------------------------------------
def _run_task(path, out: Path, options: Mapping, free_space: FreeSpaceSettings, threads: int, board) -> SequenceOutcome:
    """One sequence in a Ray worker, on ``threads`` threads: errors become a failed outcome with their message."""
    # Read when the worker's GL context is made (its first task; later ones reuse it, with the same count) and
    # when torch is imported; a torch already imported gets the count directly.
    os.environ.update({name: str(threads) for name in _THREAD_VARIABLES})
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    reporter = _Reporter(board, Path(out).name)
    try:
        outcome = map_sequence(path, out, options, free_space, sink=reporter)
    except Exception as exc:  # reported, not raised: the others go on
        message = " ".join(str(exc).split()) or "no message"
        outcome = SequenceOutcome(Path(out).name, str(path), False, f"{type(exc).__name__}: {message}",
                                  frames_used=reporter.fused, frames_skipped=reporter.read - reporter.fused)
    reporter.report(force=True)
    return outcome


class _Reporter:
    """A task's frame sink: frames read and fused and seconds since the first frame (the rate leaves out
    the worker's start-up), sent to the batch's board every :data:`_REPORT_S`."""

    def __init__(self, board, name: str) -> None:
        self.board, self.name = board, name
        self.read = self.fused = 0
        self.started: float | None = None
        self._last = time.monotonic()

    def log_frame(self, frame: Frame, depth, grid) -> None:
        if self.started is None:
            self.started = time.monotonic()
        self.read += 1
        self.fused += depth is not None
        self.report()

    def log_map(self, grid: HeightMap) -> None:
        pass

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= _REPORT_S:
            seconds = 0.0 if self.started is None else now - self.started
            self.board.update.remote(self.name, {"read": self.read, "fused": self.fused, "seconds": seconds,
                                                 "pid": os.getpid()})
            self._last = now


class _Board:
    """A Ray actor holding the latest progress of every task (name -> report)."""

    def __init__(self) -> None:
        self.reports: dict[str, dict] = {}

    def update(self, name: str, report: dict) -> None:
        self.reports[name] = report

    def snapshot(self) -> dict[str, dict]:
        return dict(self.reports)


# --- in the driver --------------------------------------------------------------------------------
def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(f"heightfusion batch needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _collect(ray, refs: dict, board, bars: _Bars, on_progress) -> dict[str, SequenceOutcome]:
    """Wait for the tasks ``refs`` (ref -> (name, path)), showing their progress; name -> outcome."""
    outcomes: dict[str, SequenceOutcome] = {}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=_REPORT_S)
            for ref in done:
                name, path = refs[ref]
                try:
                    outcomes[name] = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died: nothing came back from the task
                    outcomes[name] = SequenceOutcome(name, str(path), False, _ray_failure(ray, exc))
            reports = ray.get(board.snapshot.remote())
            bars.show(reports, outcomes)
            if on_progress is not None:
                on_progress(reports)
    finally:
        bars.close(outcomes)
    return outcomes


def _ray_failure(ray, exc: Exception) -> str:
    """One line for a task that Ray says failed."""
    if isinstance(exc, ray.exceptions.WorkerCrashedError):
        return "its Ray worker died (killed, out of memory or crashed); not retried"
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class _Bars:
    """A progress bar per sequence: frames read of the frames it has, frames/s; the outcome when it ends."""

    def __init__(self, names: list[str], paths, max_frames: int | None, enabled: bool) -> None:
        from tqdm import tqdm

        self.bars = {name: tqdm(total=_frame_count(path, max_frames) if enabled else None, desc=name, unit="frame",
                                position=k, leave=True, disable=not enabled)
                     for k, (name, path) in enumerate(zip(names, paths))}

    def show(self, reports: dict[str, dict], outcomes: dict[str, SequenceOutcome]) -> None:
        for name, bar in self.bars.items():
            report = reports.get(name)
            if report is not None and name not in outcomes:
                bar.n = report["read"]
                bar.set_postfix_str(f"{report['fused'] / max(report['seconds'], 1e-9):.1f} fused/s", refresh=False)
                bar.refresh()

    def close(self, outcomes: dict[str, SequenceOutcome]) -> None:
        for name, bar in self.bars.items():
            outcome = outcomes.get(name)
            if outcome is not None:
                bar.n = outcome.frames_used + outcome.frames_skipped
                bar.set_postfix_str(f"{outcome.fps:.1f} fused/s" if outcome.ok else "FAILED", refresh=False)
            bar.close()


def _frame_count(path, max_frames: int | None) -> int | None:
    """Frames the sequence at ``path`` has (at most ``max_frames``), None when it does not open here."""
    from . import datasets

    try:
        return len(datasets.open(path, max_frames=max_frames))
    except (ValueError, OSError, TypeError):
        return None


def _write_summary(result: BatchResult) -> None:
    """``out/batch.json``: the lattice, each sequence's outcome and frames/s, the merge."""
    summary = {
        "seconds": result.seconds,
        "lattice": {"cell_size": result.lattice["cell_size"], "origin": list(result.lattice["origin"])},
        "sequences": [{**asdict(s), "frames_per_second": s.fps if math.isfinite(s.fps) else None} for s in result.sequences],
        "merged": None if result.merged is None else {"folder": "merged", "sequences": [s.name for s in result.sequences if s.ok],
                                                      "observed": int(result.merged.observed.sum())},
    }
    result.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(result.out / "batch.json") as f:
        f.write(json.dumps(summary, indent=2).encode("utf-8"))
