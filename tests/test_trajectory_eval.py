"""heightfusion.trajectory_eval: TUM trajectory files, ATE/RPE with evo against hand-made trajectories, the plot."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from heightfusion.trajectory_eval import (
    plot_trajectories,
    read_tum_trajectory,
    trajectory_errors,
    write_tum_trajectory,
)


def _circle(count: int = 20, fps: float = 30.0) -> list[tuple[float, np.ndarray]]:
    """Cameras on a 1 m circle at 1 m height, turning as they go (not collinear: the alignment is defined)."""
    poses = []
    for i in range(count):
        a = 2 * math.pi * i / count
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("zx", [a, 0.3 * math.sin(a)]).as_matrix()
        T[:3, 3] = (math.cos(a), math.sin(a), 1.0 + 0.1 * math.sin(2 * a))
        poses.append((i / fps, T))
    return poses


def _moved(poses, offset=np.zeros(3), rotation=np.eye(3)):
    """Every pose moved by the same world transform (rotation about the origin, then ``offset``)."""
    G = np.eye(4)
    G[:3, :3], G[:3, 3] = rotation, offset
    return [(t, G @ T) for t, T in poses]


def test_constant_offset_gives_the_offset_unaligned_and_zero_aligned():
    reference = _circle()
    errors = trajectory_errors(_moved(reference, offset=np.array([0.03, -0.04, 0.0])), reference)
    assert errors["matched"] == len(reference)
    for key in ("rmse", "mean", "median", "max"):
        assert errors["ate_unaligned_m"][key] == pytest.approx(0.05, abs=1e-9)
        assert errors["ate_aligned_m"][key] == pytest.approx(0.0, abs=1e-9)
    assert errors["rpe_translation_m"]["max"] == pytest.approx(0.0, abs=1e-9)
    assert errors["rpe_rotation_deg"]["max"] == pytest.approx(0.0, abs=1e-6)


def test_rigidly_turned_trajectory_aligns_to_zero():
    reference = _circle()
    turned = _moved(reference, rotation=Rotation.from_euler("z", 5, degrees=True).as_matrix())
    errors = trajectory_errors(turned, reference)
    assert errors["ate_aligned_m"]["rmse"] == pytest.approx(0.0, abs=1e-9)
    # Every camera is ~1 m from the z axis, so a 5 degree turn about it moves each by 2 sin(2.5 deg) m.
    assert errors["ate_unaligned_m"]["rmse"] == pytest.approx(2 * math.sin(math.radians(2.5)), rel=1e-3)


def test_a_camera_standing_still_has_no_alignment():
    still = [(0.1 * i, np.eye(4)) for i in range(5)]
    moved = _moved(still, offset=np.array([0.0, 0.0, 0.02]))
    errors = trajectory_errors(moved, still)
    assert errors["ate_unaligned_m"]["rmse"] == pytest.approx(0.02)
    assert all(math.isnan(v) for v in errors["ate_aligned_m"].values())


def test_one_jump_shows_in_the_relative_error():
    reference = _circle()
    jumped = [(t, T.copy()) for t, T in reference]
    for _, T in jumped[10:]:
        T[2, 3] += 0.02  # the estimate jumps 2 cm up at frame 10 and stays there
    errors = trajectory_errors(jumped, reference)
    assert errors["rpe_translation_m"]["max"] == pytest.approx(0.02, abs=1e-9)
    assert errors["rpe_translation_m"]["median"] == pytest.approx(0.0, abs=1e-9)
    assert errors["ate_unaligned_m"]["max"] == pytest.approx(0.02, abs=1e-9)


def test_association_by_timestamp():
    reference = _circle()
    late = [(t + 0.005, T) for t, T in reference[::2]]  # every other pose, 5 ms late: all matched
    assert trajectory_errors(late, reference)["matched"] == len(late)
    with pytest.raises(ValueError, match="0 estimated pose.*within 0.02 s"):
        trajectory_errors([(t + 1000.0, T) for t, T in reference], reference)
    with pytest.raises(ValueError, match="at least 3"):
        trajectory_errors(reference[:2], reference)
    with pytest.raises(ValueError, match="estimated trajectory is empty"):
        trajectory_errors([], reference)
    broken = [(t, T.copy()) for t, T in reference]
    broken[3][1][0, 0] = 5.0
    with pytest.raises(ValueError, match="estimated pose at t=0.100000 is not a rigid transform"):
        trajectory_errors(broken, reference)


def test_tum_round_trip_and_errors(tmp_path):
    poses = _circle(5)
    path = write_tum_trajectory(tmp_path / "sub" / "trajectory.txt", poses, comment="from a test\nsecond line")
    text = path.read_text()
    assert text.startswith("# from a test\n# second line\n# timestamp tx ty tz qx qy qz qw\n")
    assert len(text.splitlines()) == 3 + 5
    back = read_tum_trajectory(path)
    assert [t for t, _ in back] == pytest.approx([t for t, _ in poses], abs=1e-6)
    np.testing.assert_allclose(np.array([T for _, T in back]), np.array([T for _, T in poses]), atol=1e-8)
    assert not [p for p in tmp_path.joinpath("sub").iterdir() if p.name.endswith(".tmp")]
    path.write_text(text + "1.0 2.0 oops\n")
    with pytest.raises(ValueError, match=r"trajectory.txt:9: garbled trajectory line"):
        read_tum_trajectory(path)


def test_plot_writes_a_png(tmp_path):
    reference = _circle()
    noisy = _moved(reference, offset=np.array([0.0, 0.01, 0.0]))
    path = plot_trajectories(tmp_path / "trajectory.png", {"a": noisy, "b": reference[::2]}, reference, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    plot_trajectories(tmp_path / "one.png", noisy, reference)  # a single estimate needs no label
    assert (tmp_path / "one.png").is_file()


def test_import_heightfusion_loads_neither_evo_nor_open3d():
    code = ("import sys, heightfusion, heightfusion.trajectory_eval, heightfusion.baselines.open3d_odometry; "
            "assert not {'evo', 'open3d'} & set(sys.modules), sorted({'evo', 'open3d'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plot_draws_an_unmatched_estimate_in_the_top_view_only(tmp_path):
    reference = _circle()
    far_in_time = [(t + 100.0, T) for t, T in reference]
    assert plot_trajectories(tmp_path / "p.png", {"late": far_in_time, "ok": reference}, reference).is_file()
    with pytest.raises(ValueError, match="needs a reference and at least one"):
        plot_trajectories(tmp_path / "q.png", {}, reference)
