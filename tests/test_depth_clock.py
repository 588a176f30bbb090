"""The depth stream's clock: depth images moved from the pose at their own timestamps, and the offset measured."""

import dataclasses

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.camera_offset import depth_at_colour_camera
from heightfusion.datasets.trajectory import read_tum_trajectory
from heightfusion.depth_clock import fit_depth_time_offset
from heightfusion.synthetic import generate, write_tum

from test_camera_offset import hand_held_pose

BASE = hf.look_at((0.0, -0.5, 1.0), (0.0, 0.3, 0.0))


def hand_held_floor(frames: int = 40):
    """The synthetic floor rendered along a hand-held camera's path (turning at up to 50 deg/s), 160x120."""
    return generate("floor", poses=np.array([BASE @ hand_held_pose(i / 30.0) for i in range(frames)]), width=160,
                    height=120)


def stamped_late(folder, lag: float) -> None:
    """Rewrite the folder's ``depth.txt`` with every depth image stamped ``lag`` seconds after it was taken."""
    lines = [line.split() for line in (folder / "depth.txt").read_text().splitlines() if line and line[0] != "#"]
    (folder / "depth.txt").write_text("".join(f"{float(t) + lag:.6f} {name}\n" for t, name in lines))


@pytest.mark.parametrize("lag", [0.015, -0.01])
def test_depth_agreement_measures_when_the_depth_was_taken(lag):
    """Depth images rendered at the frames' times but stamped ``lag`` later: the fit finds that the trajectory's
    clock is ``-lag`` ahead of the stamps, within 0.5 ms: each depth image back at its frame's pose, where it
    was taken (its agreement there is the fit's "before")."""
    frames = [dataclasses.replace(f, depth_timestamp=f.timestamp + lag) for f in hand_held_floor().frames]
    fit = fit_depth_time_offset(frames, gaps=(2, 4), every=2)
    assert abs(fit.seconds + lag) < 0.0005
    assert fit.after == pytest.approx(fit.before, rel=0.05)
    assert fit.spread < 0.001
    assert fit.summary().startswith("depth time offset ")


def test_the_fit_is_made_on_the_trajectory_clock():
    """Frames opened at ``pose_time_offset=0.012`` (the trajectory's clock 12 ms ahead of the images': their poses
    are the trajectory's at t + 12 ms, the true ones), depth taken with the image and stamped 10 ms later: the
    depth was taken at the trajectory's time of its stamp + 2 ms."""
    frames = [dataclasses.replace(f, depth_timestamp=f.timestamp + 0.01) for f in hand_held_floor().frames]
    fit = fit_depth_time_offset(frames, pose_time_offset=0.012, gaps=(2, 4), every=2)
    assert abs(fit.seconds - 0.002) < 0.0005
    assert fit.pose_time_offset == 0.012 and "-10.0 ms from the images'" in fit.summary()


def test_the_fit_needs_depth_timestamps_and_a_range():
    frames = hand_held_floor(6).frames  # no depth timestamps: nothing to fit
    with pytest.raises(ValueError, match="at least 4 pairs"):
        fit_depth_time_offset(frames)
    with pytest.raises(ValueError, match="max_offset"):
        fit_depth_time_offset(frames, max_offset=0.0)
    with pytest.raises(ValueError, match="gaps"):
        fit_depth_time_offset(frames, gaps=(0,))


def test_open_moves_each_depth_image_from_the_pose_at_its_stamp(tmp_path):
    """A TUM folder whose depth images are stamped 12 ms after they were taken. Opened with
    ``depth_time_offset=-0.012`` each depth image comes from the pose of its own frame (unchanged); taken at its
    stamp (0) it is moved by the camera's motion over those 12 ms, the way that motion says; by default (None) it
    is left as recorded. Every frame carries its depth's stamp."""
    folder = write_tum(hand_held_floor(8), tmp_path / "late", progress=False)
    stamped_late(folder, 0.012)
    recorded = list(hf.datasets.open(folder))
    on_time = list(hf.datasets.open(folder, depth_time_offset=-0.012))
    at_stamp = list(hf.datasets.open(folder, depth_time_offset=0.0))
    assert len(recorded) == len(on_time) == len(at_stamp) == 8
    trajectory, _ = read_tum_trajectory(folder / "groundtruth.txt")  # what the reader interpolates
    for plain, moved_back, moved in zip(recorded[:-1], on_time, at_stamp):  # the last one's stamp is past the end
        assert plain.depth_timestamp == pytest.approx(plain.timestamp + 0.012, abs=1e-6)
        np.testing.assert_allclose(moved_back.depth, plain.depth, atol=1e-5, equal_nan=True)
        motion = np.linalg.inv(plain.T_wc) @ trajectory.pose_at(plain.timestamp + 0.012)
        np.testing.assert_array_equal(moved.depth, depth_at_colour_camera(plain.camera, plain.depth, motion))
        assert np.nanmedian(np.abs(moved.depth - plain.depth)) > 2e-4  # the camera turned: the depth moved
    fit = fit_depth_time_offset(recorded, gaps=(2,), every=1)
    assert abs(fit.seconds + 0.012) < 0.001


def test_bad_depth_time_offsets_are_refused_by_name():
    with pytest.raises(ValueError, match="depth_time_offset"):
        hf.datasets.open(hf.datasets.sample_path(), depth_time_offset=2.0)
    with pytest.raises(ValueError, match="depth_time_offset"):
        hf.datasets.open(hf.datasets.sample_path(), depth_time_offset="-17")


def test_replay_moves_the_depth_and_records_the_offset(tmp_path):
    """The hand-held floor with its depth stamped 15 ms late: replayed with the depth's clock offset the map is
    the one of the depth as taken, at the stamps' face value it is worse, and ``metrics.json`` says which was used."""
    folder = write_tum(hand_held_floor(12), tmp_path / "late", progress=False)
    recorded = hf.replay(folder, progress=False)  # the depth images at their frames' poses: where they were taken
    stamped_late(folder, 0.015)
    on_time = hf.replay(folder, progress=False, depth_time_offset=-0.015)
    at_stamp = hf.replay(folder, progress=False, depth_time_offset=0.0)
    assert on_time.evaluation["smooth_rmse"] == pytest.approx(recorded.evaluation["smooth_rmse"], abs=2e-4)
    assert at_stamp.evaluation["smooth_rmse"] > 1.5 * on_time.evaluation["smooth_rmse"]
    assert on_time.metrics()["depth_time_offset_s"] == -0.015
    assert "depth_time_offset_s" not in recorded.metrics()
    with pytest.raises(ValueError, match="odometry tracks without the trajectory"):
        hf.replay(folder, progress=False, track="odometry", depth_time_offset=-0.015)


def test_camera_offset_command_prints_and_writes_the_depth_clock(tmp_path, capsys):
    """``heightfusion camera-offset`` on the hand-held floor whose depth is stamped 12 ms late: it prints the depth
    clock and the ``--depth-time-offset-ms`` option with the other offsets, and writes them."""
    import json

    from heightfusion.cli import main

    folder = write_tum(hand_held_floor(), tmp_path / "late", progress=False)
    stamped_late(folder, 0.012)
    out = tmp_path / "o.json"
    assert main(["camera-offset", str(folder), "--gaps", "2", "4", "6", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "depth time offset -12." in printed and "--depth-time-offset-ms -12." in printed
    record = json.loads(out.read_text())
    assert abs(record["depth_time_offset"]["seconds"] + 0.012) < 0.001
    assert "--depth-time-offset-ms -12." in record["options"]["camera"]
