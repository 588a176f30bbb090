"""Synthetic sequences with a drifting pose error and photometric changes, and the readers' reference trajectory."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.cli import main as cli_main
from heightfusion.synthetic import generate, write_tum
from heightfusion.synthetic.perturb import Photometric, PoseNoise, exposure_series
from heightfusion.up_axis import UpAligned, up_rotation

SMALL = {"frames": 12, "width": 32, "height": 24}


def _rotation_deg(R: np.ndarray) -> float:
    return math.degrees(math.acos(np.clip((np.trace(R) - 1) / 2, -1, 1)))


@pytest.fixture(scope="module")
def exact():
    return generate("floor", noise=True, seed=4, **SMALL)


@pytest.fixture(scope="module")
def perturbed():
    return generate("floor", noise=True, seed=4, pose_noise=(0.5, 8.0), photometric=(0.2, 10.0, 3.0), **SMALL)


def test_pose_noise_drifts_with_the_given_rms_from_an_exact_start(exact, perturbed):
    np.testing.assert_array_equal(perturbed.true_poses, exact.poses)
    given, true = perturbed.poses, perturbed.true_poses
    angles = [_rotation_deg(G[:3, :3] @ T[:3, :3].T) for G, T in zip(given, true)]
    shifts = np.linalg.norm(given[:, :3, 3] - true[:, :3, 3], axis=1)
    assert math.sqrt(np.mean(np.square(angles))) == pytest.approx(0.5, rel=1e-6)
    assert math.sqrt(np.mean(shifts**2)) == pytest.approx(0.008, rel=1e-6)
    assert angles[0] == pytest.approx(0, abs=1e-6) and shifts[0] == 0
    # A drift, not a jitter: consecutive errors differ by much less than the error itself.
    assert np.abs(np.diff(shifts)).max() < 0.5 * shifts.max()
    for G in given:
        hf.validate_pose(G)


def test_images_and_depth_come_from_the_true_poses(exact, perturbed):
    for a, b in zip(exact, perturbed):
        np.testing.assert_array_equal(a.depth, b.depth)  # same poses, same depth noise draws
    assert exact.pose_noise is None and exact.photometric is None and exact.poses is not exact.true_poses
    np.testing.assert_array_equal(exact.poses, exact.true_poses)


def test_photometric_gain_bias_and_noise(exact, perturbed):
    gains, biases = exposure_series(len(exact), Photometric(0.2, 10.0, 3.0), np.random.default_rng((4, 2)))
    assert np.abs(gains - 1).max() == pytest.approx(0.2) and np.abs(biases).max() == pytest.approx(10.0)
    assert np.abs(np.diff(gains)).max() < 0.05  # smooth over time
    for a, b, gain, bias in zip(exact, perturbed, gains, biases):
        clean = a.image.astype(np.float64)
        inside = (clean * gain + bias > 10) & (clean * gain + bias < 245)  # away from clipping
        residual = b.image.astype(np.float64)[inside] - (clean[inside] * gain + bias)
        assert abs(residual.mean()) < 0.5 and residual.std() == pytest.approx(3.0, rel=0.15)


def test_seeded_and_independent_draws(perturbed):
    again = generate("floor", noise=True, seed=4, pose_noise=(0.5, 8.0), photometric=(0.2, 10.0, 3.0), **SMALL)
    np.testing.assert_array_equal(again.poses, perturbed.poses)
    np.testing.assert_array_equal(again[5].image, perturbed[5].image)
    other = generate("floor", seed=5, pose_noise=(0.5, 8.0), **SMALL)
    assert not np.allclose(other.poses, perturbed.poses)


@pytest.mark.parametrize("bad, match", [
    ({"pose_noise": (-1.0, 2.0)}, "PoseNoise.rotation_deg must be a non-negative number"),
    ({"pose_noise": (1.0,)}, r"pose_noise must be \(degrees, millimetres\)"),
    ({"photometric": (1.5, 0.0, 0.0)}, "Photometric.gain must be below 1"),
    ({"photometric": (0.1, math.nan, 0.0)}, "Photometric.bias must be a non-negative number"),
])
def test_bad_perturbations_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        generate("floor", frames=1, width=8, height=8, **bad)


def test_written_layout_and_reference_trajectory(perturbed, exact, tmp_path):
    out = write_tum(perturbed, tmp_path / "noisy")
    assert "drifting error" in (out / "groundtruth.txt").read_text()
    sequence = hf.datasets.open(out)
    frames = list(sequence)
    reference = sequence.reference_trajectory()
    assert [t for t, _ in reference] == pytest.approx([f.timestamp for f in frames])
    np.testing.assert_allclose([T for _, T in reference], perturbed.true_poses, atol=1e-8)
    np.testing.assert_allclose([f.T_wc for f in frames], perturbed.poses, atol=1e-8)
    # Without pose noise there is no true-pose file, and a stale one is removed: the reference is the ground truth.
    out = write_tum(exact, out)
    assert not (out / "groundtruth_true.txt").exists()
    sequence = hf.datasets.open(out, max_frames=5, stride=2)
    np.testing.assert_allclose([T for _, T in sequence.reference_trajectory()], exact.poses[::2][:5], atol=1e-8)


def test_reference_of_a_real_sequence_and_up_alignment():
    sequence = hf.datasets.open("tests/data/tum_fr1_rpy_sample")
    frames, reference = list(sequence), sequence.reference_trajectory()
    assert len(reference) == len(frames) == 8
    np.testing.assert_array_equal(np.array([T for _, T in reference]), np.array([f.T_wc for f in frames]))
    turned = UpAligned(sequence, up_rotation("y", sequence))
    np.testing.assert_allclose([T for _, T in turned.reference_trajectory()], [f.T_wc for f in turned], atol=1e-12)
    assert not turned.identity


def test_folder_without_ground_truth_has_no_reference(tmp_path):
    seq = generate("flat", frames=2, width=16, height=12)
    out = write_tum(seq, tmp_path / "s")
    (out / "groundtruth.txt").rename(out / "trajectory.txt")  # a trajectory, not a ground truth
    assert hf.datasets.open(out).reference_trajectory() is None


def test_cli_synth_perturbations(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["synth", str(out), "--frames", "3", "--width", "16", "--height", "12"]
    assert cli_main(args + ["--pose-noise", "--photometric"]) == 0
    assert "pose drift 0.4 deg / 6 mm, exposure changes and image noise" in capsys.readouterr().out
    assert (out / "groundtruth_true.txt").is_file()
    assert "PoseNoise(rotation_deg=0.4, translation_mm=6.0)" in (out / "groundtruth.txt").read_text()
    assert cli_main(args + ["--pose-noise", "1", "20", "--seed", "2"]) == 0
    assert "pose drift 1 deg / 20 mm" in capsys.readouterr().out
    assert cli_main(args + ["--pose-noise", "1", "2", "3"]) == 2
    assert "--pose-noise takes no value or 2 (rotation_deg translation_mm), got 3" in capsys.readouterr().err
    assert cli_main(args + ["--photometric", "2", "0", "0"]) == 2
    assert "Photometric.gain must be below 1" in capsys.readouterr().err
    assert PoseNoise() == PoseNoise(0.4, 6.0)


def test_euroc_reference_is_its_camera_ground_truth(tmp_path):
    from test_datasets import make_euroc

    folder = make_euroc(tmp_path)
    sequence = hf.datasets.open(folder)
    frames = list(sequence)
    np.testing.assert_allclose([T for _, T in sequence.reference_trajectory()], [f.T_wc for f in frames], atol=1e-12)
    own = tmp_path / "mine.txt"
    own.write_text("".join(f"{f.timestamp:.9f} 0 0 1 0 0 0 1\n" for f in frames))
    assert hf.datasets.open(folder, trajectory=own).reference_trajectory() is None  # the user's poses are no reference


def test_unreadable_reference_is_noted_not_fatal(tmp_path, monkeypatch):
    from heightfusion.datasets import base

    out = write_tum(generate("flat", frames=3, width=16, height=12, pose_noise=(0.1, 1.0)), tmp_path / "s")
    real_read = base.read_tum_trajectory

    def read(path):
        if Path(path).name == "groundtruth_true.txt":
            raise PermissionError(13, "Permission denied")
        return real_read(path)

    monkeypatch.setattr(base, "read_tum_trajectory", read)
    sequence = hf.datasets.open(out)
    assert sequence.reference_trajectory() is None and len(list(sequence)) == 3
    assert any("no reference trajectory" in m and "groundtruth_true.txt" in m for m in sequence.messages)
