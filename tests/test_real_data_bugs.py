"""Issue 11's bugs, each under a test that failed before its fix: monocular replay on an RGB-D folder
kept only frames with a depth match, a run that fused nothing ended in an error without outputs, and
"no parallax" also meant "too much parallax"."""

import json

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.cli import main
from heightfusion.depth import KeyframeConfig, MotionStereo
from heightfusion.depth.keyframes import TOO_LITTLE_PARALLAX, TOO_MUCH_PARALLAX
from heightfusion.synthetic import generate, write_tum

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def floor_folder(tmp_path_factory):
    return write_tum(generate("floor", frames=8, width=96, height=72), tmp_path_factory.mktemp("floor"))


def test_monocular_replay_keeps_images_without_a_depth_match(floor_folder, tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for name in ("rgb", "depth"):
        (folder / name).symlink_to(floor_folder / name)
    for name in ("rgb.txt", "groundtruth.txt", "camera.yaml", "gt_heightmap.npz"):
        (folder / name).write_bytes((floor_folder / name).read_bytes())
    lines = (floor_folder / "depth.txt").read_text().splitlines()
    (folder / "depth.txt").write_text("\n".join(lines[:5]) + "\n")  # depth for the first two frames only
    assert len(list(hf.datasets.open(folder))) == 2  # sensor depth: images without depth are skipped
    frames = list(hf.datasets.open(folder, require_depth=False))
    assert len(frames) == 8 and sum(f.depth is None for f in frames) == 6
    result = hf.replay(folder, depth="mvs", progress=False)
    assert "no depth match" not in result.skipped
    assert result.frames_used + sum(result.skipped.values()) == 8


def test_a_run_that_fuses_nothing_still_writes_its_metrics_and_says_why(tmp_path, capsys):
    still = np.repeat(hf.look_at((-1.0, 0.0, 0.6), (0.5, 0.0, 0.0))[None], 5, axis=0)  # a camera that never moves
    folder = write_tum(generate("floor", poses=still, width=96, height=72), tmp_path / "still")
    out = tmp_path / "out"
    assert main(["replay", str(folder), "--depth", "mvs", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "nothing was fused: stereo: too little parallax (5)" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"]["used"] == 0 and metrics["frames"]["skipped"] == {"stereo: too little parallax": 5}
    assert (out / "uncertainty.png").is_file() and (out / "heightmap.npz").is_file()


def _sideways(x: float) -> np.ndarray:
    return hf.look_at((x, -1.0, 1.0), (x, 0.0, 0.0))


def test_stereo_says_whether_sources_moved_too_little_or_too_much():
    seq = generate("floor", poses=np.stack([_sideways(0.0), _sideways(0.6), _sideways(0.601)]), width=96, height=72)
    motion = MotionStereo(keyframes=KeyframeConfig(min_parallax=6.0, max_parallax=20.0))
    results = [motion.push(f.camera, f.T_wc, f.image) for f in seq.frames]
    assert results[0].reason == TOO_LITTLE_PARALLAX  # the first frame: no keyframe yet
    assert results[1].reason == TOO_MUCH_PARALLAX and "--max-parallax" in results[1].detail  # 60 cm in one step
    assert results[2].reason == TOO_MUCH_PARALLAX  # 1 mm after frame 1, 60 cm after frame 0: nothing in between
    creeping = generate("floor", poses=np.stack([_sideways(0.001 * k) for k in range(3)]), width=96, height=72)
    motion = MotionStereo(keyframes=KeyframeConfig(min_parallax=6.0, max_parallax=20.0))
    results = [motion.push(f.camera, f.T_wc, f.image) for f in creeping.frames]
    assert results[2].reason == TOO_LITTLE_PARALLAX and "--min-parallax" in results[2].detail
