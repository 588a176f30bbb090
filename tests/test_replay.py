"""``heightfusion replay`` end to end on small sequences written by the synthetic generator."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

import heightfusion as hf
from heightfusion.cli import main
from heightfusion.replay import replay
from heightfusion.synthetic import generate, write_tum


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "steps"
    write_tum(generate("steps", frames=8, width=96, height=72, noise=True), folder)
    return folder


def test_replay_writes_every_output(small_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["replay", str(small_dataset), "--out", str(out), "--quiet", "--max-slope", "25"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["heightmap.npz", "mesh.ply", "height.png", "color.png", "uncertainty.png", "free_space.png", "error.png",
         "metrics.json", "trajectory.txt", "trajectory.png"]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"]["used"] == 8 and metrics["frames"]["skipped"] == {}
    assert metrics["evaluation"]["completeness"] > 0.5
    assert metrics["evaluation"]["median"] < 0.01
    assert set(metrics["ms_per_frame"]) >= {"read", "seed", "render+accumulate", "solve", "update"}
    grid = hf.load_heightmap(out / "heightmap.npz")
    assert grid.observed.any()
    free = metrics["free_space"]
    assert free["max_slope_deg"] == pytest.approx(25) and free["max_step"] == 0.05 and free["robot_radius"] == 0.1
    assert sum(free["vertices"].values()) == grid.num_vertices
    for png in ("height.png", "error.png", "free_space.png"):
        assert cv2.imread(str(out / png)) is not None
    printed = capsys.readouterr().out
    assert "frames/s" in printed and "free_space.png" in printed and "obstacle" in printed


def test_bad_free_space_option_fails_before_the_fusion(small_dataset, tmp_path, capsys):
    assert main(["replay", str(small_dataset), "--out", str(tmp_path / "a"), "--max-slope", "95"]) == 2
    assert "--max-slope" in capsys.readouterr().err
    assert main(["replay", str(small_dataset), "--out", str(tmp_path / "b"), "--robot-radius", "-1"]) == 2
    assert "robot_radius" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing fused, nothing written


def test_bad_frames_are_skipped_and_counted(small_dataset, tmp_path):
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(small_dataset), str(broken)], check=True)
    depth_files = sorted((broken / "depth").iterdir())
    depth_files[2].unlink()  # missing depth file
    depth_files[4].write_bytes(b"garbage")  # unreadable depth file
    lines = (broken / "groundtruth.txt").read_text().splitlines()
    lines[5] = "this line is garbled"
    (broken / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    result = replay(broken, progress=False)
    assert result.frames_used < 8
    assert sum(result.skipped.values()) >= 2
    assert np.isfinite(result.grid.heights).all()


def test_map_extent_from_the_data_without_ground_truth(small_dataset, tmp_path):
    bare = tmp_path / "bare"
    subprocess.run(["cp", "-r", str(small_dataset), str(bare)], check=True)
    (bare / "gt_heightmap.npz").unlink()
    result = replay(bare, cell_size=0.05, progress=False)
    assert result.truth is None and result.evaluation is None
    assert result.grid.cell_size == 0.05 and result.grid.observed.mean() > 0.3


def test_not_a_dataset_is_one_clear_line_and_status_2(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    proc = subprocess.run(
        [sys.executable, "-m", "heightfusion", "replay", str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(tmp_path) in proc.stderr and "expected" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bundled_sample_is_installed():
    seq = hf.datasets.open(hf.datasets.sample_path(), max_frames=2)
    frames = list(seq)
    assert len(frames) == 2 and frames[0].depth is not None and seq.gt_heightmap is not None
