"""The live mapping app: frames fused as they come, shown in one window.

Layout: the top row holds the camera image, the depth being fused and the map rendered from the
frame's pose; the bottom row an orbit view of the coloured map (with the camera's frustum and
trajectory) and the free-space map; a status strip gives frames/s, ms per stage, frame counts and the
keys. Fusion and drawing share the window's OpenGL context; frames are read on another thread
(:mod:`.sources`), which drops the ones fusion has no time for.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import visualize
from ..datasets.frame import Frame
from ..fusion import FusionConfig, HeightMapFuser
from ..heightmap import HeightMap, save_heightmap
from ..metrics import StageTimer, evaluate, same_grid, smooth_mask_from_heights
from ..outputs import run_metrics
from ..pipeline import FramePipeline, FusedFrame, SkippedFrame
from ..render.base import Renderer
from ..sinks import FrameSink, log_processed
from ..tiles import TileWindow
from ..tracking import Tracker, TrackingConfig
from ..tracking.bootstrap import MonocularBootstrap
from ..viewer.layout import Rect, grid_cells, span
from ..viewer.map_view import MODES, frustum_segments
from ..viewer.orbit_view import OrbitView
from ..viewer.panels import TEXT_HEIGHT_PX, ImagePanel, text_image
from ..viewer.window import Window
from .sources import LatestFrameSource

KEYS_HELP = ("[space] pause  [r] reset map  [s] save map  [m] colour/height/uncertainty  [q] quit"
             "    mouse: drag to orbit, right-drag to pan, wheel to zoom")
# Seconds of history behind the frames/s shown, and the smoothing of the ms per stage shown.
_FPS_WINDOW_S = 2.0
_EMA = 0.2
_TRAJECTORY_COLOR = (1.0, 0.55, 0.1)
# The path drawn: a point per centimetre moved, the latest few thousand (a long run stays cheap to draw).
_TRAJECTORY_STEP_M = 0.01
_TRAJECTORY_POINTS = 5000
_FRUSTUM_COLOR = (1.0, 0.9, 0.2)
# The depth panel shows every n-th pixel so that at most this many columns are colour-mapped: a 640x480 frame
# took 7.7 ms of the loop for a panel a third of the window wide, every 2nd pixel 2.
_DEPTH_PANEL_COLUMNS = 320


@dataclass
class LiveSettings:
    """How the live app runs.

    Attributes:
        out: folder for the saved map and pictures.
        depth: depth source (:data:`heightfusion.pipeline.DEPTH_SOURCES`).
        config: fusion settings.
        stereo, keyframes: motion-stereo settings (when stereo is used), or None for the defaults.
        autosave_s: seconds between atomic checkpoints of the map, or None.
        exit_at_end: close when the source ends (else the window stays open on the final map).
        mode: initial colouring of the 3D views (one of :data:`heightfusion.viewer.map_view.MODES`).
        truth: ground-truth map to evaluate against at the end, or None.
        end_message: what to say when the source ends (a video's end, a camera that disconnected).
        pose_problem: why the latest frame without a pose has none (e.g. the marker board's reason), or None.
        sink: gets every frame processed, the depth fused (None: not fused) and the map (e.g. a Rerun log).
        tiles: a window over a tiled map (:class:`heightfusion.tiles.TileWindow`) that is the map and follows
            the camera, saved with the map; None: one fixed grid from ``make_grid``.
        track: camera tracking (:data:`heightfusion.tracking.TRACK_MODES`), with settings ``tracking`` and
            odometry's ``start_pose`` (None: the first frame's pose).
        pose_sigma: (metres, degrees) by which the given poses err, or None: exact
            (:class:`heightfusion.pipeline.FramePipeline`).
        stereo_ahead: with stereo depth and no tracking, a frame's stereo runs while the frame before is
            fused and drawn (:meth:`heightfusion.pipeline.FramePipeline.prefetch`): the map lags one frame
            behind the camera.
        stereo_process: ... in a child process (:class:`heightfusion.depth.worker.StereoProcess`), else on
            a thread of this one; None: a thread where the source drops frames (a camera, a recording played
            at its pace), a child process where every frame is fused. Measured in ``benchmarks/bench_live.py``
            (real 640x480 TUM frames, 2 shared CPU cores, runs alternated): every frame, the process fused
            5.0-5.4 frames/s against the thread's 4.5-4.8 (moderngl holds the GIL while llvmpipe renders);
            at the recording's pace the thread fused 3.9-4.3 against 1.7-3.1 (it took 40-44 frames of the
            180 against 33-38, and found sources with parallax and overlap for more of them).
    """

    out: Path
    depth: str = "auto"
    config: FusionConfig = field(default_factory=FusionConfig)
    stereo: object = None
    keyframes: object = None
    autosave_s: float | None = None
    exit_at_end: bool = False
    mode: str = "color"
    truth: HeightMap | None = None
    end_message: str = "source ended"
    pose_problem: Callable[[], str | None] | None = None
    sink: FrameSink | None = None
    tiles: TileWindow | None = None
    track: str = "off"
    tracking: TrackingConfig | None = None
    start_pose: np.ndarray | None = None
    pose_sigma: tuple[float, float] | None = None
    stereo_ahead: bool = True
    stereo_process: bool | None = None


def depth_for_panel(depth: np.ndarray) -> np.ndarray:
    """Every n-th pixel (rows and columns) of ``depth``, n the least that leaves at most
    :data:`_DEPTH_PANEL_COLUMNS` columns: what the depth panel colour-maps."""
    step = -(-depth.shape[1] // _DEPTH_PANEL_COLUMNS)
    return depth[::step, ::step]


def stereo_in_process(stereo_process: bool | None, source) -> bool:
    """``LiveSettings.stereo_process`` for frames from ``source``: None means a child process only where every
    frame is fused (a source that drops none; sources without ``drops`` count as dropping, as a camera does)."""
    return stereo_process if stereo_process is not None else not getattr(source, "drops", True)


@dataclass
class LiveResult:
    """What a live run did: frames read, fused, dropped (fusion too slow) and skipped by reason."""

    read: int
    fused: int
    dropped: int
    skipped: Counter
    seconds: float
    ms_per_frame: dict[str, float]
    ended: str
    grid: HeightMap | None
    messages: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.fused / self.seconds if self.seconds > 0 else float("nan")

    def metrics(self, evaluation: dict | None = None) -> dict:
        """This run's entries of ``metrics.json`` (:func:`heightfusion.outputs.run_metrics`); dropped
        frames count as skipped."""
        skipped = Counter(self.skipped)
        if self.dropped:
            skipped["dropped (fusion too slow)"] += self.dropped
        return {**run_metrics(self.fused, skipped, self.seconds, self.ms_per_frame, evaluation, self.messages),
                "ended": self.ended}


class LiveApp:
    """Fuses the frames of ``source`` into a map created by ``make_grid`` and shows it in ``window``.

    Args:
        window: the app's window (its context is the renderer's).
        source: the frames (started here).
        renderer: the fusion's backend.
        make_grid: the empty map, given the first frame with a pose (its extent may depend on it).
        free_space: labels of a map (:func:`heightfusion.navigation.free_space` with the user's settings).
        settings: the rest.
    """

    def __init__(
        self,
        window: Window,
        source: LatestFrameSource,
        renderer: Renderer,
        make_grid: Callable[[Frame], HeightMap],
        free_space: Callable[[HeightMap], np.ndarray],
        settings: LiveSettings,
    ) -> None:
        import glfw

        self._glfw = glfw
        self.window, self.source, self.renderer = window, source, renderer
        self.make_grid, self.free_space, self.settings = make_grid, free_space, settings
        self.grid: HeightMap | None = None
        self.pipeline: FramePipeline | None = None
        self.timer = StageTimer()
        self.paused = False
        self.mode = settings.mode
        self.message = ""
        self.ended: str | None = None
        self.fused = 0
        self.skipped: Counter = Counter()
        self._recent_ms: dict[str, float] = {}
        self._fused_times: deque[float] = deque()
        self._last_view: tuple | None = None  # (camera, T_wc) of the last frame with a pose
        self._pending: Frame | None = None  # read, its stereo prefetched, processed at the next step
        # Poses for monocular odometry's first frames where frames come without (a webcam without the board).
        self._bootstrap: MonocularBootstrap | None = None
        self._trajectory: deque[np.ndarray] = deque(maxlen=_TRAJECTORY_POINTS)
        self._last_autosave = self._started = time.perf_counter()
        ctx = window.ctx
        self.view = OrbitView(window)
        self.panels = {name: ImagePanel(ctx) for name in ("camera", "depth", "free", "status")}
        window.on_key = self.on_key

    # --- input ------------------------------------------------------------------------------------
    def on_key(self, key: int, action: int, mods: int) -> None:
        glfw = self._glfw
        if action != glfw.PRESS:
            return
        if key == glfw.KEY_SPACE:
            self.paused = not self.paused
            self.message = "paused" if self.paused else ""
        elif key == glfw.KEY_R and self.grid is not None:
            self._reset_map(self.grid)
            self.message = "map reset"
        elif key == glfw.KEY_S:
            self.message = f"saved {self.save_map()}" if self.grid is not None else "no map yet"
        elif key == glfw.KEY_M:
            self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]
            if self.grid is not None:
                self.view.show(self.grid, self.mode)
        elif key in (glfw.KEY_Q, glfw.KEY_ESCAPE):
            self.window.close()

    # --- the map ----------------------------------------------------------------------------------
    def _reset_map(self, like: HeightMap) -> None:
        """A new, empty map on ``like``'s grid, and a new pipeline (its stereo keyframes forgotten too)."""
        tiles = self.settings.tiles
        if tiles is None:
            self.grid = HeightMap(tuple(like.origin), like.cell_size, like.shape)
        else:  # the window stays the map; a reset empties it (the tiles under it are replaced when saved)
            if self.grid is not None:
                tiles.clear()
            self.grid = tiles.grid
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline.fuser.release()
        fuser = HeightMapFuser(self.grid, self.renderer, self.settings.config)
        s = self.settings
        tracker = None if s.track == "off" else Tracker(s.track, self.renderer, s.tracking, s.start_pose)
        self.pipeline = FramePipeline(fuser, s.depth, s.stereo, s.keyframes, timer=self.timer, tracker=tracker,
                                      stereo_process=stereo_in_process(s.stereo_process, self.source),
                                      pose_sigma=s.pose_sigma)
        self.view.show(self.grid, self.mode)
        self.panels["free"].set_image(visualize.render_free_space(self.free_space(self.grid)))
        self._trajectory.clear()

    def save_map(self) -> Path:
        """Write the map to ``out/heightmap.npz`` atomically (and the window's tiles, with ``tiles``); returns the path."""
        if self.settings.tiles is not None:
            self.settings.tiles.save()
        self.settings.out.mkdir(parents=True, exist_ok=True)
        path = self.settings.out / "heightmap.npz"
        save_heightmap(path, self.grid)
        return path

    # --- one frame --------------------------------------------------------------------------------
    def _process(self, frame: Frame) -> FusedFrame | SkippedFrame:
        """Fuse ``frame`` (and show it); what the pipeline made of it."""
        if frame.image is not None:
            self.panels["camera"].set_image(frame.image)
        # Odometry needs a pose for its first frame only (or none, given a start pose).
        tracking_alone = self.settings.track == "odometry" and (
            self.settings.start_pose is not None or (self.pipeline is not None and self.pipeline.poses))
        if frame.T_wc is None and not tracking_alone:
            self.skipped["no pose"] += 1
            problem = self.settings.pose_problem() if self.settings.pose_problem is not None else None
            self.message = f"frame {frame.index}: no pose" + (f" ({problem})" if problem else "")
            return SkippedFrame("no pose")
        if self.grid is None:
            self._reset_map(self.make_grid(frame if frame.T_wc is not None else replace(frame, T_wc=self.settings.start_pose)))
        if self.settings.tiles is not None:
            self.settings.tiles.follow(frame.T_wc)
        start = time.perf_counter()
        result = self.pipeline.process(frame)
        if result.T_wc is not None:  # the pose the frame was used at (tracked, or as given)
            self._last_view = (frame.camera, result.T_wc)
            position = result.T_wc[:3, 3].copy()
            if not self._trajectory or np.linalg.norm(position - self._trajectory[-1]) >= _TRAJECTORY_STEP_M:
                self._trajectory.append(position)
        if isinstance(result, SkippedFrame):
            self.skipped[result.reason] += 1
            if result.detail:
                self.message = f"frame {frame.index} skipped: {result.detail}"
            return result
        self._note("fusion", sum(result.stats.ms.values()))
        self._note("depth", (time.perf_counter() - start) * 1e3 - sum(result.stats.ms.values()))
        self.fused += 1
        now = time.perf_counter()
        self._fused_times.append(now)
        while self._fused_times and now - self._fused_times[0] > _FPS_WINDOW_S:
            self._fused_times.popleft()
        self._timed("free space", lambda: self.panels["free"].set_image(visualize.render_free_space(self.free_space(self.grid))))
        self._timed("pictures", lambda: (self.panels["depth"].set_image(visualize.render_depth(depth_for_panel(result.depth))),
                                         self.view.show(self.grid, self.mode)))
        return result

    def _timed(self, stage: str, work: Callable[[], object]) -> None:
        """Run ``work``, timing it for the run's totals and the status line."""
        start = time.perf_counter()
        with self.timer(stage):
            work()
        self._note(stage, (time.perf_counter() - start) * 1e3)

    def _note(self, stage: str, ms: float) -> None:
        old = self._recent_ms.get(stage)
        self._recent_ms[stage] = ms if old is None else (1 - _EMA) * old + _EMA * ms

    # --- drawing ----------------------------------------------------------------------------------
    def draw(self) -> None:
        if not self.window.drawable:
            self.window.skip_frame()
            return
        start = time.perf_counter()
        width, height = self.window.size
        self.window.begin_frame()
        status = Rect(0, 0, width, 2 * TEXT_HEIGHT_PX)
        rows = grid_cells(Rect(0, status.height, width, height - status.height), 2, 3)
        self.panels["camera"].draw(rows[0][0])
        self.panels["depth"].draw(rows[0][1])
        if self.grid is not None and self._last_view is not None:
            camera, T_wc = self._last_view
            self.view.map_view.draw(rows[0][2].fit(camera.width / camera.height), T_wc, camera)
            self.view.draw(span(rows[1][0], rows[1][1]), lines=self._overlay_segments(camera, T_wc))
            self.panels["free"].draw(rows[1][2])
        self.panels["status"].set_image(text_image(self._status_lines(), width))
        self.panels["status"].draw(status, fit=False)
        self.window.end_frame()
        self._note("draw", (time.perf_counter() - start) * 1e3)

    def _overlay_segments(self, camera, T_wc) -> tuple[np.ndarray, np.ndarray]:
        """Frustum of the current camera and the trajectory so far, map-local, with their colours."""
        frustum = frustum_segments(self.grid, camera, T_wc, depth=0.3)
        offset = np.array([*self.grid.origin, 0.0])
        path = np.asarray(self._trajectory) - offset
        trail = np.stack([path[:-1], path[1:]], axis=1) if len(path) > 1 else np.zeros((0, 2, 3))
        segments = np.concatenate([frustum, trail])
        colors = np.array([_FRUSTUM_COLOR] * len(frustum) + [_TRAJECTORY_COLOR] * len(trail))
        return segments, colors

    def _status_lines(self) -> list[str]:
        fps = len(self._fused_times) / _FPS_WINDOW_S if self._fused_times else 0.0
        stages = "  ".join(f"{k} {v:.0f}" for k, v in self._recent_ms.items())
        skipped = sum(self.skipped.values())
        state = self.ended or ("paused" if self.paused else "")
        if self.pipeline is not None and self.pipeline.stereo_process_error is not None:
            state = f"{state}  stereo went on in this process: {self.pipeline.stereo_process_error}".strip()
        line = (f"{fps:.1f} frames/s | ms: {stages} | fused {self.fused}  dropped {self.source.dropped}  "
                f"skipped {skipped} | {self.mode}")
        extra = "  ".join(text for text in (state, self.message) if text)
        return [line + (f" | {extra}" if extra else ""), KEYS_HELP]

    # --- the loop ---------------------------------------------------------------------------------
    def run(self) -> LiveResult:
        """Fuse and draw until the window closes (or the source ends, with ``exit_at_end``)."""
        self.start()
        try:
            while self.step():
                pass
        finally:
            self.source.stop()
        return self.finish()

    def start(self) -> None:
        """Start reading frames (:meth:`run` does it; for driving the loop with :meth:`step`)."""
        self.source.start()
        self._started = time.perf_counter()

    def step(self) -> bool:
        """One turn of the loop: fuse the newest frame if there is one, then draw. False: the run is over."""
        if self.window.should_close:
            return False
        if self.ended is None and not self.paused:
            with self.timer("wait"):
                frame = self.source.next(timeout=0.03)
            if frame is not None or self._pending is not None:
                for ready in self._bootstrapped(self._ready(frame)):
                    result = self._process(ready)
                    if self.settings.sink is not None:
                        log_processed(self.settings.sink, ready, result, self.grid)
            elif self.source.exhausted:
                for held in self._bootstrap.finish() if self._bootstrap is not None else ():
                    self._process(held)
                self._finish(self._end_reason())
                if self.settings.exit_at_end:
                    self.draw()
                    return False
        self._autosave()
        self.draw()
        if self.ended is not None or self.paused:
            self._glfw.wait_events_timeout(0.05)  # nothing to fuse: idle until input
        return True

    def _ready(self, frame: Frame | None) -> list[Frame]:
        """The frames to process now, in order: the pending one, then ``frame`` unless its stereo could be
        prefetched (it then waits for the next step; None: the source had nothing, flush)."""
        ready = [self._pending] if self._pending is not None else []
        self._pending = None
        if frame is not None:
            ahead = self.settings.stereo_ahead and self.pipeline is not None and self.pipeline.prefetch(frame)
            if ahead:
                self._pending = frame
            else:
                ready.append(frame)
        return ready

    def _bootstrapped(self, frames: list[Frame]) -> list[Frame]:
        """``frames`` through the monocular bootstrap (:mod:`heightfusion.tracking.bootstrap`) once one is needed:
        odometry with a start pose, stereo depth and a first frame without a pose. It holds frames back until the
        camera has moved enough, then hands them on posed (a burst that the map catches up with)."""
        s = self.settings
        out = []
        for frame in frames:
            if (self._bootstrap is None and s.track == "odometry" and s.start_pose is not None and frame.T_wc is None
                    and frame.depth is None and not (self.pipeline is not None and self.pipeline.poses)):
                self._bootstrap = MonocularBootstrap(s.start_pose)
            if self._bootstrap is None:
                out.append(frame)
                continue
            before = self._bootstrap.message
            out += self._bootstrap.push(frame)
            if self._bootstrap.message != before:
                self.message = self._bootstrap.message
        return out

    def finish(self) -> LiveResult:
        """End the run (saving the map if that has not happened) and say what it did."""
        self.source.stop()
        seconds = time.perf_counter() - self._started
        if self.ended is None:
            self._finish("quit")
        return LiveResult(
            read=self.source.read, fused=self.fused, dropped=self.source.dropped, skipped=self.skipped,
            seconds=seconds, ms_per_frame=self.timer.mean_ms(frames=max(self.fused, 1)), ended=self.ended,
            grid=self.grid, messages=[] if self._bootstrap is None else [self._bootstrap.summary],
        )

    def _end_reason(self) -> str:
        message = self.settings.end_message
        return f"{message} ({self.source.error})" if self.source.error else message

    def _finish(self, reason: str) -> None:
        """The run is over: keep the map and save it."""
        self.ended = reason
        if self.grid is not None:
            self.message = f"map saved to {self.save_map()}"

    def _autosave(self) -> None:
        every = self.settings.autosave_s
        if every is None or self.grid is None or time.perf_counter() - self._last_autosave < every:
            return
        self.save_map()
        self._last_autosave = time.perf_counter()

    def evaluation(self) -> dict | None:
        """The map against the settings' ground truth, or None (no truth, no map, or another grid)."""
        truth, grid = self.settings.truth, self.grid
        if truth is None or grid is None:
            return None
        if self.settings.tiles is not None:  # the saved tiled map on the truth's grid (None: another lattice)
            grid = self.settings.tiles.region_like(truth)
        if grid is None or not same_grid(grid, truth):  # a user-given grid: nothing to compare vertex by vertex
            return None
        return evaluate(grid, truth, smooth_mask_from_heights(truth))

    def release(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline.fuser.release()
        self.view.release()
        for panel in self.panels.values():
            panel.release()
