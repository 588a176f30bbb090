"""The live app and the map viewer, end to end in windows under Xvfb, and the frame source without one.

Window tests run in subprocesses: this process holds a headless EGL context (other GL tests), and
creating a GLX window while it is current kills the process.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest
from conftest import write_mjpg_video

import heightfusion as hf
from heightfusion.datasets.frame import Frame
from heightfusion.live.sources import LatestFrameSource, open_camera
from heightfusion.synthetic import generate, write_tum
from heightfusion.viewer.layout import Rect, grid_cells, span
from heightfusion.viewer.panels import TEXT_HEIGHT_PX

needs_display = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="window tests need X: run under xvfb-run -a")
SIZE = (960, 540)
BACKGROUND_RGB = np.array([18, 20, 26])  # heightfusion.viewer.map_view.BACKGROUND as uint8
WINDOW_RGB = np.array([31, 31, 36])  # Window.begin_frame's clear colour (letterboxes)


def run_cli(*args, env=None, timeout=240):
    return subprocess.run([sys.executable, "-m", "heightfusion", *map(str, args)], check=False, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def floor_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("live") / "floor"
    write_tum(generate("floor", frames=30, width=200, height=150), folder)
    return folder


@pytest.fixture(scope="module")
def floor_video(floor_dataset, tmp_path_factory):
    """The dataset's images as an MJPG video, with its trajectory and camera as separate files."""
    folder = tmp_path_factory.mktemp("video")
    video = write_mjpg_video(sorted((floor_dataset / "rgb").iterdir()), folder / "floor.avi")
    (folder / "traj.txt").write_text((floor_dataset / "groundtruth.txt").read_text())
    (folder / "camera.yaml").write_text((floor_dataset / "camera.yaml").read_text())
    return video


def layout_rects(size=SIZE):
    """The live window's panels, as heightfusion.live.app lays them out: {name: Rect}."""
    width, height = size
    status = Rect(0, 0, width, 2 * TEXT_HEIGHT_PX)
    rows = grid_cells(Rect(0, status.height, width, height - status.height), 2, 3)
    return {"camera": rows[0][0], "depth": rows[0][1], "pose view": rows[0][2],
            "orbit": span(rows[1][0], rows[1][1]), "free": rows[1][2]}


def crop(image, rect):
    """Pixels of a GL-style Rect (bottom-left origin) in an image stored top row first."""
    h = image.shape[0]
    return image[h - rect.y - rect.height: h - rect.y, rect.x: rect.x + rect.width]


def shows_surface(pixels) -> float:
    """Share of pixels that are neither the 3D view's background nor black (the map is drawn there)."""
    p = pixels.astype(int)
    differs = (np.abs(p - BACKGROUND_RGB).sum(axis=2) > 30) & (np.abs(p - WINDOW_RGB).sum(axis=2) > 30)
    return float((differs & (p.sum(axis=2) > 30)).mean())


def free_green(pixels) -> float:
    g = pixels.astype(int)
    return float(((g[..., 1] > g[..., 0] + 40) & (g[..., 1] > g[..., 2] + 40)).mean())


def check_live_screenshot(path):
    shot = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert shot.shape[:2] == (SIZE[1], SIZE[0])
    rects = layout_rects()
    assert shows_surface(crop(shot, rects["orbit"])) > 0.06, "the orbit view shows no map"
    assert shows_surface(crop(shot, rects["pose view"].fit(4 / 3))) > 0.15, "the view from the pose shows no map"
    assert free_green(crop(shot, rects["free"])) > 0.05, "the free-space panel shows no free space"


# --- the frame source (no window) -------------------------------------------------------------------
def frames(n, fps=1000.0):
    cam = hf.PinholeCamera(8, 6, 5, 5, 3.5, 2.5)
    return [Frame(i / fps, np.zeros((6, 8, 3), np.uint8), None, np.eye(4), cam, i) for i in range(n)]


def test_a_slow_consumer_drops_frames_and_never_queues_them():
    source = LatestFrameSource(frames(200, fps=2000.0), pace=True, drop=True).start()
    taken = []
    while not source.exhausted:
        frame = source.next(timeout=0.05)
        if frame is not None:
            taken.append(frame.index)
            time.sleep(0.01)  # fusion slower than the source
    assert source.read == 200 and source.error is None
    assert source.dropped > 0 and len(taken) + source.dropped == 200
    assert taken == sorted(taken) and taken[-1] == 199  # always the newest: the last frame is never lost


class SlowRecording:
    """A recording of ``n`` frames at ``fps`` whose frames take ``decode_s`` to read (as 640x480 images do on
    a busy CPU), read through ``iter_frames(stale)`` as :class:`heightfusion.datasets.Sequence` is."""

    def __init__(self, n: int, fps: float, decode_s: float) -> None:
        self.frames, self.decode_s, self.decoded = frames(n, fps), decode_s, []

    def iter_frames(self, stale=None):
        for k, frame in enumerate(self.frames):
            if stale is not None and k + 1 < len(self.frames) and stale(self.frames[k + 1].timestamp):
                continue
            time.sleep(self.decode_s)
            self.decoded.append(k)
            yield frame

    def __iter__(self):
        return self.iter_frames()


def test_a_reader_behind_the_pace_passes_over_what_a_camera_would_have_replaced():
    """Frames due every 10 ms that take 30 ms to read: the reader keeps the recording's pace by leaving the
    frames whose successor is already due unread (counted as dropped), rather than decoding them all and
    playing the recording three times too slowly."""
    recording = SlowRecording(60, fps=100.0, decode_s=0.03)
    source = LatestFrameSource(recording, pace=True, drop=True).start()
    start, taken = time.perf_counter(), []
    while not source.exhausted:
        frame = source.next(timeout=0.05)
        if frame is not None:
            taken.append(frame.index)
    elapsed = time.perf_counter() - start
    assert source.read == len(recording.decoded) < 35 and len(taken) + source.dropped == 60  # each frame: one or the other
    assert taken == sorted(taken) and set(taken) <= set(recording.decoded) and taken[-1] == 59  # the last is read
    assert elapsed < 0.6 * 60 * 0.03  # near the recording's 0.6 s, not the 1.8 s of reading every frame
    every = LatestFrameSource(SlowRecording(10, fps=100.0, decode_s=0.03), pace=True, drop=False).start()
    while not every.exhausted:
        every.next(timeout=0.05)
    assert every.read == 10 and every.dropped == 0  # without drops every frame is read


def test_the_stereo_runs_on_a_thread_where_frames_are_dropped():
    """Paced with drops (a camera, a recording at its pace) the stereo thread fused more frames than the child
    process (bench_live.py); every frame, the process: unless the settings say which."""
    from heightfusion.live.app import stereo_in_process

    recording = frames(2, fps=30.0)
    assert not stereo_in_process(None, LatestFrameSource(recording, pace=True, drop=True))
    assert stereo_in_process(None, LatestFrameSource(recording, pace=False, drop=False))
    assert not stereo_in_process(None, iter(recording))  # a source that does not say: as a camera
    assert stereo_in_process(True, LatestFrameSource(recording, drop=True))
    assert not stereo_in_process(False, LatestFrameSource(recording, drop=False))


def test_the_depth_panel_shows_at_most_320_columns():
    from heightfusion.live.app import depth_for_panel

    depth = np.arange(480 * 640, dtype=np.float32).reshape(480, 640)
    np.testing.assert_array_equal(depth_for_panel(depth), depth[::2, ::2])
    assert depth_for_panel(depth[:240, :320]).shape == (240, 320)  # small frames as they are
    assert depth_for_panel(np.zeros((720, 1280), np.float32)).shape == (180, 320)


def test_every_frame_mode_takes_every_frame_in_order():
    source = LatestFrameSource(frames(50), pace=False, drop=False).start()
    taken = []
    while not source.exhausted:
        frame = source.next(timeout=0.05)
        if frame is not None:
            taken.append(frame.index)
    assert taken == list(range(50)) and source.dropped == 0


def test_a_broken_source_ends_with_its_message():
    def broken():
        yield from frames(3)
        raise OSError("camera unplugged")

    source = LatestFrameSource(broken(), pace=False, drop=False).start()
    while not source.exhausted:
        source.next(timeout=0.05)
    assert source.read == 3 and "camera unplugged" in source.error


def test_a_capture_that_ends_is_a_camera_that_disconnected(floor_video):
    frames_read = list(open_camera(str(floor_video), None))
    assert len(frames_read) == 30 and frames_read[0].image.shape == (150, 200, 3)
    with pytest.raises(ValueError, match="camera 97: OpenCV could not open it"):
        open_camera(97, None)


# --- the live app and the viewer in windows ------------------------------------------------------------
@needs_display
def test_live_on_a_dataset_folder(floor_dataset, tmp_path):
    shot, out = tmp_path / "live.png", tmp_path / "out"
    done = run_cli("live", floor_dataset, "--max-frames", 30, "--screenshot", shot, "--out", out, "--hidden",
                   "--size", *SIZE)
    assert done.returncode == 0, done.stderr
    assert "sequence floor ended" in done.stdout
    check_live_screenshot(shot)
    metrics = json.loads((out / "metrics.json").read_text())
    fused, skipped = metrics["frames"]["used"], metrics["frames"]["skipped"]
    assert fused >= 5 and fused + sum(skipped.values()) == 30  # played in real time: the rest dropped, counted
    # A reader behind the pace (a loaded machine) passes over frames undecoded: dropped, not read.
    read = int(re.search(r"read (\d+) frames", done.stdout).group(1))
    assert fused <= read <= 30
    assert metrics["evaluation"]["smooth_median"] < 0.01
    assert (out / "free_space.png").is_file() and hf.load_heightmap(out / "heightmap.npz").observed.any()


@needs_display
@pytest.mark.parametrize("ahead", [[], ["--no-stereo-ahead"]], ids=["stereo-ahead", "in-turn"])
def test_live_on_a_video_with_poses_uses_motion_stereo(floor_video, tmp_path, ahead):
    shot, out = tmp_path / "video.png", tmp_path / "out"
    folder = floor_video.parent
    done = run_cli("live", floor_video, "--poses", folder / "traj.txt", "--calibration", folder / "camera.yaml",
                   "--max-frames", 30, "--every-frame", "--screenshot", shot, "--out", out, "--hidden",
                   "--size", *SIZE, "--origin", -1.5, -1.5, "--shape", 151, 151, *ahead)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert "video floor ended" in done.stdout
    assert metrics["frames"]["used"] >= 10  # every frame with stereo depth (the first ones have no parallax yet)
    assert "dropped (fusion too slow)" not in metrics["frames"]["skipped"]
    check_live_screenshot(shot)
    grid = hf.load_heightmap(out / "heightmap.npz")
    assert grid.observed.sum() > 2000
    assert abs(np.median(grid.heights[grid.observed])) < 0.02  # the floor, at height 0


@pytest.fixture(scope="module")
def board_video(tmp_path_factory):
    """A camera sliding past the marker board on a plain floor (no trajectory file), and its camera.yaml."""
    from heightfusion.datasets.camera_yaml import save_camera_yaml
    from heightfusion.markers import BoardSpec, render_board_view

    folder = tmp_path_factory.mktemp("board")
    spec, cam = BoardSpec(), hf.PinholeCamera(240, 180, 200, 200, 119.5, 89.5)
    centre = np.array([spec.size[0] / 2, spec.size[1] / 2, 0.0])
    writer = cv2.VideoWriter(str(folder / "board.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (cam.width, cam.height))
    # Slide past and back and past again: 48 frames, so that a real-time run that drops most of them on a
    # busy machine still fuses a few (the tests that take every frame read the first 16).
    for k in [*range(16), *range(15, -1, -1), *range(16)]:
        T_wc = hf.look_at(centre + [-0.08 + 0.01 * k, -0.3, 0.3], centre)
        writer.write(cv2.cvtColor(render_board_view(spec, cam, T_wc), cv2.COLOR_RGB2BGR))
    writer.release()
    save_camera_yaml(folder / "camera.yaml", cam)
    return folder


@needs_display
def test_live_takes_poses_from_the_marker_board(board_video, tmp_path):
    out = tmp_path / "out"
    done = run_cli("live", board_video / "board.avi", "--calibration", board_video / "camera.yaml", "--every-frame",
                   "--max-frames", 16, "--out", out, "--hidden", "--size", *SIZE, "--extent", 1, "--cell-size", 0.01)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"]["used"] >= 8 and "no pose" not in metrics["frames"]["skipped"]
    grid = hf.load_heightmap(out / "heightmap.npz")
    xy = grid.vertex_xy()[grid.observed]
    assert grid.observed.sum() > 100
    assert np.all((xy > -0.05) & (xy < [0.3, 0.23]))  # the board and its paper: world frame at its corner
    assert abs(np.median(grid.heights[grid.observed])) < 0.01  # lying on the floor, Z up


@needs_display
def test_a_camera_that_stops_keeps_and_saves_the_map(board_video, tmp_path):
    """A stream opened as a camera (OpenCV opens files like URLs) that ends: poses from the board, the map
    saved, a clear message, exit status 0."""
    out = tmp_path / "out"
    done = run_cli("live", "--camera", board_video / "board.avi", "--calibration", board_video / "camera.yaml",
                   "--out", out, "--hidden", "--size", *SIZE, "--extent", 1, "--cell-size", 0.01, "--exit-at-end")
    assert done.returncode == 0, done.stderr
    assert "stopped delivering frames (disconnected?)" in done.stdout
    assert hf.load_heightmap(out / "heightmap.npz").observed.any()
    missing = run_cli("live", "--camera", 97, "--out", tmp_path / "none", "--hidden")
    assert missing.returncode == 2 and "camera 97: OpenCV could not open it" in missing.stderr


@needs_display
def test_view_shows_a_saved_map_in_each_mode(tmp_path):
    grid = hf.HeightMap((0.0, 0.0), 0.05, (40, 50))
    xy = grid.vertex_xy()
    grid.heights[:] = 0.2 * np.exp(-((xy[..., 0] - 1.2) ** 2 + (xy[..., 1] - 1.0) ** 2) / 0.1)
    grid.colors[:] = [0.8, 0.3, 0.2]
    grid.observed[:] = True
    grid.information[:] = 1e4
    path = tmp_path / "map.npz"
    hf.save_heightmap(path, grid)
    means = {}
    for mode in ("color", "height", "uncertainty"):
        shot = tmp_path / f"{mode}.png"
        done = run_cli("view", path, "--mode", mode, "--frames", 2, "--hidden", "--screenshot", shot, "--size", *SIZE)
        assert done.returncode == 0, done.stderr
        image = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
        width, height = SIZE
        cells = grid_cells(Rect(0, 2 * TEXT_HEIGHT_PX, width, height - 2 * TEXT_HEIGHT_PX), 1, 3)[0]
        view = crop(image, span(cells[0], cells[1]))
        assert shows_surface(view) > 0.1
        surface = view[np.abs(view.astype(int) - BACKGROUND_RGB).sum(axis=2) > 30]
        means[mode] = surface.mean(axis=0)
        assert free_green(crop(image, cells[2])) > 0.15  # flat and observed: mostly free (the bump is an obstacle)
    assert means["color"][0] > means["color"][1] + 40  # the map's red-orange colour
    assert np.abs(means["color"] - means["height"]).max() > 20  # the modes colour differently


def test_view_of_a_missing_file_is_one_line_and_status_2(tmp_path):
    done = run_cli("view", tmp_path / "nope.npz")
    assert done.returncode == 2 and "nope.npz: no such map file" in done.stderr and "Traceback" not in done.stderr


def test_live_without_a_display_says_how_to_get_one(floor_dataset, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = run_cli("live", floor_dataset, "--out", tmp_path / "out", env=env)
    assert done.returncode == 2 and "xvfb-run" in done.stderr and "Traceback" not in done.stderr


_DRIVE_KEYS = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import glfw
    import heightfusion as hf
    from heightfusion.live.app import LiveApp, LiveSettings
    from heightfusion.live.sources import LatestFrameSource
    from heightfusion.navigation import free_space
    from heightfusion.viewer.window import Window

    seq = hf.datasets.open(sys.argv[1])
    out = Path(sys.argv[2])
    window = Window("keys", (640, 360), visible=False)
    gt = seq.gt_heightmap
    app = LiveApp(window, LatestFrameSource(seq, pace=False, drop=False), hf.make_renderer("gl"),
                  lambda frame: hf.HeightMap(tuple(gt.origin), gt.cell_size, gt.shape), free_space,
                  LiveSettings(out=out, autosave_s=0.0))
    app.start()
    for _ in range(6):
        app.step()
    report = {"fused": app.fused, "autosaved": (out / "heightmap.npz").is_file()}
    (out / "heightmap.npz").unlink()
    key = glfw.set_key_callback(window.handle, None)  # the callback the app registered with glfw
    glfw.set_key_callback(window.handle, key)
    press = lambda k: key(window.handle, k, 0, glfw.PRESS, 0)
    press(glfw.KEY_SPACE)
    fused = app.fused
    for _ in range(3):
        app.step()
    report["paused"], report["fused_while_paused"] = app.paused, app.fused - fused
    press(glfw.KEY_SPACE)
    app.step()
    report["resumed"] = not app.paused and app.fused > fused
    app.settings.autosave_s = None
    press(glfw.KEY_S)
    report["saved"] = (out / "heightmap.npz").is_file()
    mode = app.mode
    press(glfw.KEY_M)
    report["mode"] = [mode, app.mode]
    observed = int(app.grid.observed.sum())
    press(glfw.KEY_R)
    report["reset"] = [observed, int(app.grid.observed.sum())]
    mouse = glfw.set_mouse_button_callback(window.handle, None)
    glfw.set_mouse_button_callback(window.handle, mouse)
    cursor = glfw.set_cursor_pos_callback(window.handle, None)
    glfw.set_cursor_pos_callback(window.handle, cursor)
    scroll = glfw.set_scroll_callback(window.handle, None)
    glfw.set_scroll_callback(window.handle, scroll)
    orbit = app.view.controller.orbit
    before = [orbit.azimuth, orbit.distance]
    rect = app.view.controller.rect
    x, y = rect.x + rect.width / 2, 360 - (rect.y + rect.height / 2)  # glfw: y from the top
    cursor(window.handle, x, y)
    mouse(window.handle, glfw.MOUSE_BUTTON_LEFT, glfw.PRESS, 0)
    cursor(window.handle, x + 50, y)
    mouse(window.handle, glfw.MOUSE_BUTTON_LEFT, glfw.RELEASE, 0)
    scroll(window.handle, 0.0, 2.0)
    report["orbit"] = [before, [orbit.azimuth, orbit.distance]]
    press(glfw.KEY_Q)
    report["closing"] = not app.step()
    result = app.finish()
    report["ended"] = result.ended
    print(json.dumps(report))
""")


@needs_display
def test_keys_and_mouse_through_glfw_callbacks(floor_dataset, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", _DRIVE_KEYS, str(floor_dataset), str(out)], check=False, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["fused"] >= 5 and report["autosaved"]
    assert report["paused"] and report["fused_while_paused"] == 0 and report["resumed"]
    assert report["saved"]
    assert report["mode"] == ["color", "height"]
    assert report["reset"][0] > 1000 and report["reset"][1] == 0
    (az0, dist0), (az1, dist1) = report["orbit"]
    assert az1 != pytest.approx(az0) and dist1 < dist0
    assert report["closing"] and report["ended"] == "quit"


def test_bad_window_options_fail_before_any_window(tmp_path, capsys):
    from heightfusion.cli import main

    assert main(["live", "--size", "40", "40", "--out", str(tmp_path / "a")]) == 2
    assert "--size must be two numbers of at least 64 pixels" in capsys.readouterr().err
    assert main(["live", "--autosave", "0", "--out", str(tmp_path / "b")]) == 2
    assert "--autosave must be a positive number of seconds" in capsys.readouterr().err
    assert main(["live", "--origin", "0", "0", "--out", str(tmp_path / "c")]) == 2
    assert "--origin and --shape go together" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_board_poses_set_the_pose_or_say_why_not():
    from heightfusion.live.sources import BoardPoses
    from heightfusion.markers import BoardSpec, render_board_view

    spec, cam = BoardSpec(), hf.PinholeCamera(240, 180, 200, 200, 119.5, 89.5)
    centre = np.array([spec.size[0] / 2, spec.size[1] / 2, 0.0])
    truth = hf.look_at(centre + [0.0, -0.3, 0.3], centre)
    poses = BoardPoses(spec)
    seen = poses(Frame(0.0, render_board_view(spec, cam, truth), None, None, cam, 0))
    assert poses.reason is None and np.linalg.norm(seen.T_wc[:3, 3] - truth[:3, 3]) < 0.01
    blank = poses(Frame(0.1, np.full((180, 240, 3), 128, np.uint8), None, None, cam, 1))
    assert blank.T_wc is None and poses.reason  # e.g. "no markers detected"


@needs_display
def test_live_on_a_grid_other_than_the_truths_still_saves(floor_dataset, tmp_path):
    out = tmp_path / "out"
    done = run_cli("live", floor_dataset, "--max-frames", 5, "--every-frame", "--out", out, "--hidden",
                   "--size", *SIZE, "--origin", -1.39, -1.49, "--shape", 150, 150)  # the truth's shape, shifted
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation"] is None and metrics["frames"]["used"] == 5


@needs_display
def test_live_tracks_and_writes_the_poses_it_used(floor_dataset, tmp_path):
    """live --track refine: frames tracked against the map, the poses used in trajectory.txt (with a
    reference, trajectory.png) and the tracking counts in metrics.json."""
    out = tmp_path / "out"
    done = run_cli("live", floor_dataset, "--max-frames", 6, "--every-frame", "--out", out, "--hidden",
                   "--size", *SIZE, "--track", "refine")
    assert done.returncode == 0, done.stderr
    lines = [line for line in (out / "trajectory.txt").read_text().splitlines() if not line.startswith("#")]
    assert len(lines) == 6
    assert (out / "trajectory.png").is_file()
    assert "track" in json.loads((out / "metrics.json").read_text())["ms_per_frame"]
