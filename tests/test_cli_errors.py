"""Every ``heightfusion`` command under misuse: a bad option value or a missing, garbled or wrong file gives
ONE line on stderr that names the option or the file, exit status 2 and no traceback; ``--debug`` adds the
traceback; a bug is one "internal error" line with exit status 1.

Most commands run in this process (``heightfusion.cli.main`` with ``capfd``, which also sees what native
libraries write to file descriptor 2). The window commands ``live`` and ``view``, and every case that
opens a video (FFmpeg reads its log level once per process), run in a fresh interpreter that calls
``main`` for each case with file descriptors 1 and 2 redirected: a GLX window must never be created in
a process whose EGL context is current.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.cli import COMMANDS, main

# --- fixtures: a tiny dataset and hostile files ------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Paths by name: a 2-frame 32x24 dataset and the bad inputs the cases use."""
    from heightfusion.synthetic import generate, write_tum

    root = tmp_path_factory.mktemp("cli_errors")
    ds = write_tum(generate("floor", frames=2, width=32, height=24), root / "ds", progress=False)
    text = root / "notes.txt"
    text.write_text("this is not a dataset, a map or a video\n")
    empty = root / "empty"
    empty.mkdir()
    grid = hf.HeightMap((0.0, 0.0), 0.1, (6, 6))
    good_map = root / "map.npz"
    hf.save_heightmap(good_map, grid)
    coarse_map = root / "coarse_map.npz"
    hf.save_heightmap(coarse_map, hf.HeightMap((0.0, 0.0), 0.2, (6, 6)))
    truncated = root / "truncated.npz"
    truncated.write_bytes(good_map.read_bytes()[: good_map.stat().st_size // 2])
    other_npz = root / "other.npz"
    np.savez(other_npz, a=np.zeros(3))
    nan_map = root / "nan_map.npz"
    with np.load(good_map) as data:
        arrays = dict(data)
    arrays["heights"] = np.full_like(arrays["heights"], np.nan)
    np.savez(nan_map, **arrays)
    latin1_yaml = root / "latin1.yaml"
    latin1_yaml.write_bytes("width: 32\nheight: 24\nfx: 25.6  # Brennweite \xe4\xf6\xfc\n".encode("latin-1"))
    bad_yaml_ds = root / "ds_latin1_yaml"
    bad_yaml_ds.mkdir()
    for item in ds.iterdir():
        if item.name != "camera.yaml":
            (bad_yaml_ds / item.name).symlink_to(item)
    (bad_yaml_ds / "camera.yaml").write_bytes(latin1_yaml.read_bytes())
    fake_video = root / "clip.mp4"
    fake_video.write_text("not a video\n")
    garbled_images = root / "garbled_images"
    garbled_images.mkdir()
    for name in ("a.png", "b.png"):
        (garbled_images / name).write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return {
        "ds": ds, "text": text, "empty": empty, "map": good_map, "coarse_map": coarse_map, "truncated": truncated, "other_npz": other_npz,
        "nan_map": nan_map, "latin1_yaml": latin1_yaml, "bad_yaml_ds": bad_yaml_ds, "video": fake_video,
        "garbled_images": garbled_images, "missing": root / "no_such_thing", "out": root / "out",
    }


def expand(args: list[str], files: dict[str, Path]) -> list[str]:
    """``args`` with ``{name}`` replaced by the fixture's path of that name (``{out}/x`` inside the out folder)."""
    return [a.format(**{k: str(v) for k, v in files.items()}) for a in args]


def check_one_line(command: str, status: int, stderr: str, must_name: str) -> None:
    lines = stderr.strip().splitlines()
    assert status == 2, f"exit status {status}, stderr:\n{stderr}"
    assert "Traceback" not in stderr
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert lines[0].startswith(f"heightfusion {command}: error: "), lines[0]
    assert must_name in lines[0], f"{must_name!r} not named in: {lines[0]}"


# --- cases: (argv with {placeholders}, text the error line must contain) -------------------------------------

IN_PROCESS = {
    "replay": [
        (["replay", "{text}"], "{text}"),
        (["replay", "{empty}"], "{empty}"),
        (["replay", "{missing}"], "{missing}"),
        (["replay", "{bad_yaml_ds}"], "camera.yaml"),
        (["replay", "{ds}", "--cell-size", "-1"], "--cell-size"),
        (["replay", "{ds}", "--cell-size", "nan"], "--cell-size"),
        (["replay", "{ds}", "--shape", "-3", "5", "--origin", "0", "0"], "shape"),
        (["replay", "{ds}", "--origin", "nan", "nan", "--shape", "10", "10"], "origin"),
        (["replay", "{ds}", "--max-frames", "0"], "--max-frames"),
        (["replay", "{ds}", "--iterations", "0"], "iterations"),
        (["replay", "{ds}", "--sigma-floor", "nan"], "sigma_floor"),
        (["replay", "{ds}", "--max-slope", "100"], "--max-slope"),
        (["replay", "{ds}", "--robot-radius", "-1"], "robot_radius"),
        (["replay", "{ds}", "--depth", "mvs", "--stereo-device", "gpu0"], "gpu0"),
        (["replay", "{ds}", "--out", "{text}"], "{text}"),
        (["replay", "{ds}", "--camera-offset", "0", "0", "nan", "0", "0", "0", "1"], "--camera-offset"),
        (["replay", "{ds}", "--camera-offset", "0", "0", "0", "0", "0", "0", "0"], "--camera-offset"),
        (["replay", "{ds}", "--depth-offset", "0", "0", "inf", "0", "0", "0", "1"], "--depth-offset"),
        (["replay", "{ds}", "--time-offset-ms", "nan"], "--time-offset-ms"),
        (["replay", "{ds}", "--time-offset-ms", "2000"], "--time-offset-ms"),
        (["replay", "{ds}", "--depth-time-offset-ms", "-5000"], "--depth-time-offset-ms"),
        (["replay", "{ds}", "--track", "odometry", "--depth-time-offset-ms", "-17"], "--depth-time-offset-ms"),
    ],
    "camera-offset": [
        (["camera-offset", "{missing}"], "{missing}"),
        (["camera-offset", "{text}"], "{text}"),
        (["camera-offset", "{ds}", "--gaps", "0"], "--gaps"),
        (["camera-offset", "{ds}", "--max-frames", "1"], "--max-frames"),
        (["camera-offset", "{ds}", "--quiet"], "{ds}"),  # 2 frames: too few pairs for a fit
        (["camera-offset", "{ds}", "--out", "{text}/x.json"], "{text}"),
        (["camera-offset", "{ds}", "--out", "{empty}"], "{empty}"),
    ],
    "synth": [
        (["synth", "{out}/s", "--frames", "0"], "frames"),
        (["synth", "{out}/s", "--frames", "1", "--width", "-1"], "width"),
        (["synth", "{out}/s", "--frames", "1", "--width", "100000"], "--width"),
        (["synth", "{out}/s", "--frames", "1", "--fps", "nan"], "fps"),
        (["synth", "{out}/s", "--frames", "1", "--time-offset-ms", "nan"], "--time-offset-ms"),
        (["synth", "{out}/s", "--frames", "1", "--scene", "moon"], "moon"),
        (["synth", "{out}/s", "--frames", "1", "--width", "16", "--height", "12", "--distort", "nan"], "distortion"),
        (["synth", "{text}", "--frames", "1", "--width", "16", "--height", "12"], "{text}"),
    ],
    "board": [
        (["board", "--out", "{out}/b.png", "--dpi", "-1"], "--dpi"),
        (["board", "--out", "{out}/b.png", "--dpi", "nan"], "--dpi"),
        (["board", "--out", "{out}/b.png", "--dpi", "1e9"], "--dpi"),
        (["board", "--out", "{out}/b.png", "--margin", "-1"], "margin"),
        (["board", "--out", "{out}/b.png", "--squares", "0", "0"], "squares"),
        (["board", "--out", "{out}/b.png", "--square-length", "nan"], "square_length"),
        (["board", "--out", "{out}/b.png", "--marker-length", "1"], "marker_length"),
        (["board", "--out", "{out}/b.png", "--dictionary", "BOGUS"], "BOGUS"),
        (["board", "--out", "{text}/b.png"], "{text}"),
    ],
    "calibrate": [
        (["calibrate", "{text}", "--out", "{out}/c.yaml"], "{text}"),
        (["calibrate", "{empty}", "--out", "{out}/c.yaml"], "{empty}"),
        (["calibrate", "{missing}", "--out", "{out}/c.yaml"], "{missing}"),
        (["calibrate", "{garbled_images}", "--out", "{out}/c.yaml"], "{garbled_images}"),
        (["calibrate", "{ds}/rgb", "--out", "{out}/c.yaml", "--max-views", "-1"], "--max-views"),
        (["calibrate", "{ds}/rgb", "--out", "{out}/c.yaml", "--min-corners", "0"], "--min-corners"),
        (["calibrate", "{ds}/rgb", "--out", "{out}/c.yaml", "--interval", "nan"], "--interval"),
    ],
    "export": [
        (["export", "{text}", "--ply", "{out}/x.ply"], "{text}"),
        (["export", "{truncated}", "--ply", "{out}/x.ply"], "{truncated}"),
        (["export", "{missing}", "--ply", "{out}/x.ply"], "{missing}"),
        (["export", "{map}"], "--ply"),
        (["export", "{map}", "--ply", "{text}/x.ply"], "{text}"),
        (["export", "{map}", "--ply", "{empty}"], "{empty}"),
    ],
    "batch": [  # refused before Ray starts (a sequence that fails is reported, exit status 3: test_batch.py)
        (["batch", "{ds}", "--out", "{text}", "--quiet"], "{text}"),
        (["batch", "{ds}", "--out", "{out}/b", "--quiet", "--max-frames", "0"], "--max-frames"),
        (["batch", "{ds}", "--out", "{out}/b", "--quiet", "--shape", "5", "5"], "--shape"),
        (["batch", "{ds}", "--out", "{out}/b", "--quiet", "--cell-size", "nan"], "--cell-size"),
        (["batch", "{ds}", "--out", "{out}/b", "--quiet", "--cpus-per-task", "0"], "--cpus-per-task"),
        (["batch", "{ds}", "--out", "{out}/b", "--quiet", "--num-cpus", "-2"], "--num-cpus"),
        (["batch", "{ds}", "--out", "{out}/b", "--quiet", "--max-slope", "nan"], "--max-slope"),
    ],
    "merge": [
        (["merge", "{text}", "--out", "{out}/m.npz"], "{text}"),
        (["merge", "{map}", "{truncated}", "--out", "{out}/m.npz"], "{truncated}"),
        (["merge", "{map}", "{coarse_map}", "--out", "{out}/m.npz"], "cells"),
        (["merge", "{map}", "--out", "{text}/m.npz"], "{text}"),
        (["merge", "{map}", "--out", "{empty}"], "{empty}"),
    ],
    "compare": [
        (["compare", "{text}", "--out", "{out}/k", "--quiet"], "{text}"),
        (["compare", "{empty}", "--out", "{out}/k", "--quiet"], "{empty}"),
        (["compare", "{ds}", "--out", "{out}/k", "--quiet", "--methods", "bogus"], "bogus"),
        (["compare", "{ds}", "--out", "{out}/k", "--quiet", "--every", "0"], "every"),
        (["compare", "{ds}", "--out", "{out}/k", "--quiet", "--cell-size", "nan"], "--cell-size"),
    ],
}

# Run in a fresh interpreter (see the module docstring).
IN_SUBPROCESS = {
    "view": [
        (["view", "{text}", "--hidden", "--frames", "1"], "{text}"),
        (["view", "{truncated}", "--hidden", "--frames", "1"], "{truncated}"),
        (["view", "{other_npz}", "--hidden", "--frames", "1"], "{other_npz}"),
        (["view", "{nan_map}", "--hidden", "--frames", "1"], "{nan_map}"),
        (["view", "{missing}", "--hidden", "--frames", "1"], "{missing}"),
        (["view", "{empty}", "--hidden", "--frames", "1"], "{empty}"),
        (["view", "{map}", "--hidden", "--size", "0", "0"], "--size"),
        (["view", "{map}", "--hidden", "--frames", "0"], "--frames"),
        (["view", "{map}", "--hidden", "--frames", "1", "--max-slope", "nan"], "--max-slope"),
    ],
    "live": [
        (["live", "{text}", "--hidden", "--max-frames", "1", "--out", "{out}/l"], "{text}"),
        (["live", "{empty}", "--hidden", "--max-frames", "1", "--out", "{out}/l"], "{empty}"),
        (["live", "{video}", "--hidden", "--max-frames", "1", "--out", "{out}/l"], "{video}"),
        (["live", "{ds}", "--calibration", "{latin1_yaml}", "--hidden", "--max-frames", "1", "--out", "{out}/l"], "{latin1_yaml}"),
        (["live", "{ds}", "--calibration", "{text}", "--hidden", "--max-frames", "1", "--out", "{out}/l"], "{text}"),
        (["live", "{bad_yaml_ds}", "--hidden", "--max-frames", "1", "--out", "{out}/l"], "camera.yaml"),
        (["live", "{ds}", "--hidden", "--max-frames", "-1", "--out", "{out}/l"], "--max-frames"),
        (["live", "{ds}", "--hidden", "--max-frames", "1", "--extent", "nan", "--out", "{out}/l"], "--extent"),
        (["live", "{ds}", "--hidden", "--max-frames", "1", "--size", "-1", "-1", "--out", "{out}/l"], "--size"),
        (["live", "{ds}", "--hidden", "--max-frames", "1", "--autosave", "nan", "--out", "{out}/l"], "--autosave"),
        (["live", "{ds}", "--hidden", "--max-frames", "1", "--cell-size", "-1", "--out", "{out}/l"], "cell_size"),
        (["live", "{ds}", "--hidden", "--max-frames", "1", "--square-length", "-1", "--out", "{out}/l"], "square_length"),
        (["live", "{ds}", "--hidden", "--max-frames", "1", "--out", "{text}"], "{text}"),
        (["live", "{ds}", "--hidden", "--max-frames", "1", "--camera-offset", "0", "0", "0", "0", "0", "0", "0",
          "--out", "{out}/l"], "--camera-offset"),
        (["live", "--camera", "0", "--hidden", "--max-frames", "1", "--camera-offset", "0", "0", "0", "0", "0", "0", "1",
          "--out", "{out}/l"], "--camera-offset"),
        (["live", "--camera", "0", "--hidden", "--max-frames", "1", "--time-offset-ms", "5", "--out", "{out}/l"],
         "--time-offset-ms"),
        (["live", "{ds}", "--hidden", "--max-frames", "1", "--time-offset-ms", "inf", "--out", "{out}/l"],
         "--time-offset-ms"),
        (["live", "--camera", "0", "--hidden", "--max-frames", "1", "--depth-time-offset-ms", "-17",
          "--out", "{out}/l"], "--depth-time-offset-ms"),
        (["live", "{ds}", "--hidden", "--max-frames", "1", "--depth-time-offset-ms", "nan", "--out", "{out}/l"],
         "--depth-time-offset-ms"),
    ],
    # Other commands given a video: FFmpeg's own log lines must not reach stderr either.
    "video": [
        (["replay", "{video}", "--quiet", "--out", "{out}/r"], "{video}"),
        (["calibrate", "{video}", "--out", "{out}/c.yaml"], "{video}"),
    ],
}


def test_every_command_has_cases():
    covered = {args[0] for cases in (*IN_PROCESS.values(), *IN_SUBPROCESS.values()) for args, _ in cases}
    missing = set(COMMANDS) - {"info"} - covered  # info takes no input; its failures are tested below
    assert not missing, f"add bad-input cases for the new command(s) {sorted(missing)} here"


def _in_process_cases():
    for command, cases in IN_PROCESS.items():
        for args, name in cases:
            marks = () if command in COMMANDS else pytest.mark.skip(reason=f"no {command} command here")
            yield pytest.param(args, name, id=" ".join(args).replace("{", "").replace("}", ""), marks=marks)


@pytest.mark.parametrize(("args", "name"), list(_in_process_cases()))
def test_bad_input_is_one_line_exit_2(args, name, files, capfd):
    status = main(expand(args, files))
    check_one_line(args[0], status, capfd.readouterr().err, expand([name], files)[0])


# --- window commands and videos: a fresh interpreter per group ------------------------------------------------

_RUNNER = textwrap.dedent(
    """
    import json, os, sys, tempfile
    from heightfusion.cli import main

    cases, results = json.loads(sys.stdin.read()), []
    saved = os.dup(1), os.dup(2)
    for argv in cases:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            sys.stdout.flush(); sys.stderr.flush()
            os.dup2(out.fileno(), 1); os.dup2(err.fileno(), 2)
            try:
                try:
                    status = main(argv)
                except SystemExit as exc:
                    status = exc.code
            finally:
                sys.stdout.flush(); sys.stderr.flush()
                os.dup2(saved[0], 1); os.dup2(saved[1], 2)
            err.seek(0)
            results.append([status, err.read().decode("utf-8", "replace")])
    print(json.dumps(results))
    """
)


def run_in_fresh_interpreter(cases: list[list[str]]) -> list[tuple[int, str]]:
    done = subprocess.run([sys.executable, "-c", _RUNNER], input=json.dumps(cases), capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return [tuple(r) for r in json.loads(done.stdout.strip().splitlines()[-1])]


@pytest.fixture(scope="module")
def subprocess_results(files) -> dict[str, list[tuple[int, str]]]:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        pytest.skip("no display (run under xvfb-run)")
    groups = list(IN_SUBPROCESS)
    flat = [expand(args, files) for g in groups for args, _ in IN_SUBPROCESS[g]]
    results = run_in_fresh_interpreter(flat)
    out, k = {}, 0
    for g in groups:
        out[g] = results[k : k + len(IN_SUBPROCESS[g])]
        k += len(IN_SUBPROCESS[g])
    return out


@pytest.mark.parametrize(("group", "index"), [
    pytest.param(g, i, id=" ".join(args).replace("{", "").replace("}", ""))
    for g, cases in IN_SUBPROCESS.items() for i, (args, _) in enumerate(cases)
])
def test_window_commands_and_videos_one_line_exit_2(group, index, files, subprocess_results):
    args, name = IN_SUBPROCESS[group][index]
    status, stderr = subprocess_results[group][index]
    check_one_line(args[0], status, stderr, expand([name], files)[0])


def test_console_command_exit_status_and_debug(files):
    """``python -m heightfusion``: the status reaches the shell; ``--debug`` before or after the command adds
    the traceback above the same line."""
    def run(*args):
        return subprocess.run([sys.executable, "-m", "heightfusion", *map(str, args)], capture_output=True, text=True,
                              timeout=120, check=False)

    plain = run("view", files["truncated"], "--hidden")
    check_one_line("view", plain.returncode, plain.stderr, str(files["truncated"]))
    debug = run("--debug", "view", files["truncated"], "--hidden")
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()


# --- --debug, bugs, usage errors, Ctrl-C (in process) ---------------------------------------------------------


def test_debug_flag_shows_the_traceback(files, capfd):
    for argv in (["--debug", "replay", str(files["text"])], ["replay", str(files["text"]), "--debug"]):
        assert main(argv) == 2
        err = capfd.readouterr().err
        assert "Traceback (most recent call last)" in err
        assert err.strip().splitlines()[-1].startswith("heightfusion replay: error: ")


def test_a_bug_is_one_internal_error_line_exit_1(monkeypatch, capfd):
    import heightfusion.cli.info as info

    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(info, "run", broken)
    assert main(["info"]) == 1
    err = capfd.readouterr().err
    assert err.strip().splitlines() == [
        "heightfusion info: internal error: RuntimeError: boom second line (run with --debug for the traceback)"
    ]
    assert main(["--debug", "info"]) == 1
    err = capfd.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == "heightfusion info: internal error: RuntimeError: boom second line"


def test_a_broken_subcommand_module_is_an_internal_error(monkeypatch, capfd):
    import heightfusion.cli.board as board

    def broken(parser):
        raise ImportError("cannot import name 'x'")

    monkeypatch.setattr(board, "add_arguments", broken)
    assert main(["info"]) == 1
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("heightfusion: internal error: ImportError: ")


def test_user_errors_that_are_not_value_errors(monkeypatch, capfd):
    """Out of memory for a size the user asked, no OpenGL, a file the OS refuses: one line, exit 2."""
    import heightfusion.cli.info as info
    from heightfusion.render.context import GLUnavailableError

    for exc, text in [
        (MemoryError("Unable to allocate 74.5 GiB"), "out of memory (Unable to allocate 74.5 GiB)"),
        (GLUnavailableError("no EGL"), "no EGL"),
        (PermissionError(13, "Permission denied", "/root/x"), "/root/x: Permission denied"),
    ]:
        def raising(args, exc=exc):
            raise exc

        monkeypatch.setattr(info, "run", raising)
        assert main(["info"]) == 2
        lines = capfd.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("heightfusion info: error: ") and text in lines[0], lines


def test_usage_errors_and_interrupt(monkeypatch, capfd):
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", "--max-frames", "many"])
    assert exit_info.value.code == 2
    capfd.readouterr()
    import heightfusion.cli.info as info

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(info, "run", interrupted)
    assert main(["info"]) == 130
    assert capfd.readouterr().err.strip() == "heightfusion info: interrupted"
