"""Camera offset (hand-eye): the camera's pose on the body a trajectory gives, from motions, images and in replay."""

import dataclasses
import math

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.camera_offset import (MotionPairs, depth_at_colour_camera, fit_camera_offset, fit_time_offset,
                                       measured_motions)
from heightfusion.synthetic import generate, write_tum
from heightfusion.tracking.se3 import exp_se3, log_se3
from heightfusion.up_axis import UpAligned

OFFSET = exp_se3(np.array([0.04, -0.02, 0.03, 0.01, -0.02, 0.015]))  # 5.4 cm, 1.5 deg


def camera_motions(body: np.ndarray, X: np.ndarray) -> np.ndarray:
    """The camera's motions ``inv(X) A X`` for body motions ``A`` (N, 4, 4)."""
    return np.linalg.inv(X) @ body @ X


def random_motions(rng, count: int, axis=None) -> np.ndarray:
    """Body motions turning 5-20 degrees (about random axes, or about ``axis``) and moving a few millimetres."""
    axes = rng.normal(size=(count, 3)) if axis is None else np.tile(axis, (count, 1))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.radians(rng.uniform(5, 20, count)) * rng.choice([-1, 1], count)
    return exp_se3(np.hstack([rng.normal(scale=0.005, size=(count, 3)), axes * angles[:, None]]))


def test_fit_recovers_a_known_offset_despite_noise_and_wrong_pairs():
    rng = np.random.default_rng(0)
    body = random_motions(rng, 60)
    noise = exp_se3(np.hstack([rng.normal(scale=2e-4, size=(60, 3)), rng.normal(scale=math.radians(0.02), size=(60, 3))]))
    measured = camera_motions(body, OFFSET) @ noise
    measured[:4] = measured[:4] @ exp_se3(np.array([0.05, 0, 0, 0, 0.1, 0]))  # four alignments gone wrong
    offset = fit_camera_offset(body, measured, rotation=True)
    error = log_se3(np.linalg.inv(OFFSET) @ offset.T_bc)
    assert np.linalg.norm(error[:3]) < 1e-3 and math.degrees(np.linalg.norm(error[3:])) < 0.05
    assert offset.before[0] > 10.0  # without it, the pairs disagree by centimetres
    assert offset.undetermined is None and offset.translation_sigma.max() < 1e-3
    assert offset.spread[0] < 2.0 and offset.summary().startswith("camera offset +")


def test_translation_only_fit_leaves_the_rotation_alone():
    rng = np.random.default_rng(1)
    X = exp_se3(np.array([0.03, 0.0, -0.01, 0, 0, 0]))
    body = random_motions(rng, 20)
    offset = fit_camera_offset(body, camera_motions(body, X), rotation=False)
    np.testing.assert_allclose(offset.T_bc, X, atol=1e-6)
    assert offset.after[0] < 1e-3 * offset.before[0]


def test_turning_about_one_axis_leaves_the_offset_along_it_undetermined():
    rng = np.random.default_rng(2)
    axis = np.array([0.0, 0.6, 0.8])
    body = random_motions(rng, 30, axis)
    X = exp_se3(np.r_[OFFSET[:3, 3], 0, 0, 0])
    offset = fit_camera_offset(body, camera_motions(body, X), rotation=False)
    assert offset.undetermined is not None and abs(offset.undetermined @ axis) > 0.999
    t = offset.T_bc[:3, 3]
    assert abs(t @ axis) < 1e-3  # held at zero by the prior
    across = OFFSET[:3, 3] - (OFFSET[:3, 3] @ axis) * axis
    np.testing.assert_allclose(t, across, atol=1e-4)  # what the turns do determine is found
    assert "not determined along" in offset.summary()


def hand_held_pose(t: float) -> np.ndarray:
    """A hand-held camera's pose at ``t`` seconds: turning back and forth about three axes at 0.7-1.3 Hz
    (up to 50 deg/s) and moving a few centimetres."""
    twist = np.array([0.03 * math.sin(2.1 * t), 0.02 * math.cos(1.7 * t), 0.01 * t,
                      0.12 * math.sin(6.3 * t), 0.08 * math.sin(4.4 * t + 1.0), 0.06 * math.sin(8.2 * t + 2.0)])
    return exp_se3(twist)


def pairs_with_clock_offset(offset: float, noise_deg: float, seed: int = 0) -> MotionPairs:
    """Pairs of frames 3, 6 and 10 apart at 30 Hz over 6 s: the given motions from the trajectory at the frame
    times, the measured ones from the poses ``offset`` seconds later (the trajectory's clock ahead), turned by
    ``noise_deg`` of noise, six of them wrong by 3 degrees."""
    rng = np.random.default_rng(seed)
    times = np.arange(180) / 30.0
    poses = np.array([hand_held_pose(t) for t in times])
    velocities = np.array([log_se3(np.linalg.inv(poses[max(i - 1, 0)]) @ poses[min(i + 1, 179)]) /
                           (times[min(i + 1, 179)] - times[max(i - 1, 0)]) for i in range(180)])
    index = np.array([(i, i + gap) for gap in (3, 6, 10) for i in range(0, 180 - gap, 2)])
    given = np.linalg.inv(poses[index[:, 0]]) @ poses[index[:, 1]]
    true = np.array([np.linalg.inv(hand_held_pose(times[i] + offset)) @ hand_held_pose(times[j] + offset) for i, j in index])
    turns = rng.normal(scale=math.radians(noise_deg), size=(len(index), 3))
    turns[:6] += math.radians(3.0)
    measured = true @ exp_se3(np.hstack([np.zeros((len(index), 3)), turns]))
    return MotionPairs(given=given, measured=measured, times=times[index], velocities=velocities[index])


@pytest.mark.parametrize("offset", [-0.012, 0.0, 0.007])
def test_time_offset_of_the_trajectory_clock_is_found(offset):
    pairs = pairs_with_clock_offset(offset, noise_deg=0.05)
    fit = fit_time_offset(pairs)
    assert abs(fit.seconds - offset) < 0.001
    assert fit.spread < 0.002
    if offset:  # the pairs' rotations agree better at the offset found than at 0
        assert fit.after < fit.before
    assert fit.summary().startswith("time offset ")
    # The motions at the offset are the true ones, but for the frames' velocities being central differences.
    exact = pairs_with_clock_offset(offset, noise_deg=0.0)

    def error(seconds: float) -> np.ndarray:
        return np.array([math.degrees(np.linalg.norm(log_se3(np.linalg.inv(g) @ m)[3:]))
                         for g, m in zip(exact.given_at(seconds)[6:], exact.measured[6:])])

    assert np.median(error(fit.seconds)) < 0.04 and error(fit.seconds).max() < 0.1
    if offset:
        assert np.median(error(0.0)) > 0.1


@pytest.mark.parametrize("offset", [0.012, -0.008])
def test_images_measure_the_clock_offset_of_a_rendered_hand_held_recording(offset):
    """A floor rendered along a hand-held camera's path, its frames given the poses of a trajectory whose clock
    runs ``offset`` ahead (the image taken at t is at the trajectory's pose at t + offset): dense RGB-D alignment
    of frame pairs and the time-offset fit find it within a millisecond."""
    base = hf.look_at((0.0, -0.5, 1.0), (0.0, 0.3, 0.0))
    seq = generate("floor", poses=np.array([base @ hand_held_pose(i / 30.0) for i in range(40)]), width=160, height=120)
    frames = [dataclasses.replace(f, T_wc=base @ hand_held_pose(f.timestamp - offset)) for f in seq.frames]
    fit = fit_time_offset(measured_motions(frames, gaps=(2, 4, 6), every=1))
    assert abs(fit.seconds - offset) < 0.001
    assert fit.after < 0.2 * fit.before


def test_time_offset_needs_pairs_and_a_range():
    pairs = pairs_with_clock_offset(0.0, noise_deg=0.05)
    few = MotionPairs(pairs.given[:7], pairs.measured[:7], pairs.times[:7], pairs.velocities[:7])
    with pytest.raises(ValueError, match="8 frame pairs"):
        fit_time_offset(few)
    with pytest.raises(ValueError, match="max_offset"):
        fit_time_offset(pairs, max_offset=0.0)


def test_measured_motions_give_pair_times_and_velocities():
    frames = list(hf.datasets.open(hf.datasets.sample_path(), max_frames=8))
    pairs = measured_motions(frames, gaps=(2,), every=1)
    assert len(pairs) == len(pairs.times) == len(pairs.velocities) >= 4
    stamps = [f.timestamp for f in frames]
    assert all(t1 - t0 == pytest.approx(stamps[2] - stamps[0], abs=1e-5) for t0, t1 in pairs.times)
    # Each frame's velocity is the central difference of its neighbours' poses; at offset 0 the motions are as given.
    first = stamps.index(pairs.times[0, 0])
    twist = log_se3(np.linalg.inv(frames[first - 1].T_wc) @ frames[first + 1].T_wc) / (stamps[first + 1] - stamps[first - 1])
    np.testing.assert_allclose(pairs.velocities[0, 0], twist, atol=1e-9)
    np.testing.assert_allclose(pairs.given_at(0.0), pairs.given, atol=1e-12)


def test_bad_gaps_are_refused():
    with pytest.raises(ValueError, match="positive frame counts"):
        measured_motions([], gaps=(0, 3))


def test_bad_motions_are_refused():
    body = random_motions(np.random.default_rng(3), 10)
    with pytest.raises(ValueError, match="10 given motions but 9 measured"):
        fit_camera_offset(body, body[:9])
    with pytest.raises(ValueError, match="at least 8 frame pairs, got 5"):
        fit_camera_offset(body[:5], body[:5], rotation=True)
    with pytest.raises(ValueError, match="at least 4 frame pairs, got 3"):
        fit_camera_offset(body[:3], body[:3])
    bad = body.copy()
    bad[2, :3, :3] *= 2
    with pytest.raises(ValueError, match="measured motion 2 is not a rigid transform"):
        fit_camera_offset(body, bad)


def test_images_measure_the_offset_of_the_trajectory():
    """The bundled sample's frames with their poses moved off the camera by a known offset: dense RGB-D alignment
    of frame pairs finds it, but for the part along the axis the camera orbits about (reported as undetermined)."""
    frames = (dataclasses.replace(f, T_wc=f.T_wc @ np.linalg.inv(OFFSET))  # read once, as a recording streams
              for f in hf.datasets.open(hf.datasets.sample_path(), max_frames=24))
    pairs = measured_motions(frames, gaps=(1, 2), every=1)
    given, measured = pairs.given, pairs.measured
    assert len(given) >= 30
    offset = fit_camera_offset(given, measured, rotation=False)
    axis = offset.undetermined
    assert axis is not None
    turns = np.array([log_se3(A)[3:] for A in given])
    assert np.abs(turns @ axis).min() > 0.99 * np.linalg.norm(turns, axis=1).min()  # the orbit's axis
    true = OFFSET[:3, 3] - (OFFSET[:3, 3] @ axis) * axis
    np.testing.assert_allclose(offset.T_bc[:3, 3], true, atol=0.004)
    assert offset.after[0] < 0.2 * offset.before[0]


def test_up_aligned_moves_poses_and_reference_onto_the_camera():
    sequence = hf.datasets.open(hf.datasets.sample_path(), max_frames=3)
    turn = np.diag([1.0, -1.0, -1.0, 1.0])
    moved = UpAligned(sequence, turn, OFFSET)
    for original, frame in zip(sequence, moved):
        np.testing.assert_allclose(frame.T_wc, turn @ original.T_wc @ OFFSET)
    reference = dict(sequence.reference_trajectory())
    for t, T in moved.reference_trajectory():
        np.testing.assert_allclose(T, turn @ reference[t] @ OFFSET)
    plain = UpAligned(sequence, np.eye(4), np.eye(4))
    np.testing.assert_array_equal(next(iter(plain)).T_wc, next(iter(sequence)).T_wc)


def test_replay_at_the_offset_fuses_the_map_of_the_camera_poses(tmp_path):
    """A synthetic floor recorded twice: with the camera's poses, and with those of a body the camera sits on at
    ``OFFSET``; replayed with the offset, the second gives the first's map."""
    seq = generate("floor", frames=10, width=96, height=72)
    at_camera_poses = write_tum(seq, tmp_path / "camera", progress=False)
    for frame in seq.frames:
        frame.T_wc = frame.T_wc @ np.linalg.inv(OFFSET)
    at_body_poses = write_tum(seq, tmp_path / "body", progress=False)
    truth = hf.replay(at_camera_poses, progress=False).evaluation["smooth_rmse"]
    as_given = hf.replay(at_body_poses, progress=False).evaluation["smooth_rmse"]
    moved = hf.replay(at_body_poses, progress=False, camera_offset=OFFSET)
    assert moved.evaluation["smooth_rmse"] == pytest.approx(truth, abs=2e-4)
    assert as_given > 3 * truth
    # the reference trajectory is moved with the frames: the poses used are its own
    assert moved.trajectory["ate_unaligned_m"]["rmse"] < 1e-6
    np.testing.assert_allclose(moved.metrics()["camera_offset"], hf.pose_to_tum(OFFSET))  # said in metrics.json


def plane_depth(camera, T_cd: np.ndarray) -> np.ndarray:
    """Depth image, on the colour camera's pixel grid, of the plane z = 2 + 0.2 x (colour frame) seen from ``T_cd``."""
    v, u = np.mgrid[0:camera.height, 0:camera.width]
    rays = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones(u.shape)], axis=-1)
    turned = rays @ T_cd[:3, :3].T
    t = T_cd[:3, 3]
    return ((2.0 + 0.2 * t[0] - t[2]) / (turned[..., 2] - 0.2 * turned[..., 0])).astype(np.float32)


def test_depth_seen_from_beside_is_moved_into_the_colour_camera():
    camera = hf.PinholeCamera(160, 120, 150.0, 150.0, 79.5, 59.5)
    T_cd = exp_se3(np.array([0.028, 0.0, 0.018, 0.0, 0.01, 0.0]))
    seen = plane_depth(camera, T_cd)
    truth = plane_depth(camera, np.eye(4))
    moved = depth_at_colour_camera(camera, seen, T_cd)
    inner = (slice(5, -5), slice(10, -10))  # the depth's view leaves a strip of the colour image unseen
    error = np.abs(moved - truth)[inner]
    assert np.isfinite(error).mean() > 0.9
    assert np.nanmedian(error) < 0.0015 and np.nanmax(error) < 0.006
    assert np.nanmedian(np.abs(seen - truth)[inner]) > 5 * np.nanmedian(error)  # as registered it is ~1 cm off


def test_the_nearest_point_wins_where_two_land():
    camera = hf.PinholeCamera(8, 6, 10.0, 10.0, 3.5, 2.5)
    depth = np.full((6, 8), 4.0, dtype=np.float32)
    depth[2, 3] = 1.0  # a near point that lands beside the far one it hides from the colour camera
    T_cd = exp_se3(np.array([0.3, 0.0, 0.0, 0.0, 0.0, 0.0]))
    moved = depth_at_colour_camera(camera, depth, T_cd)
    assert moved[2, 6] == pytest.approx(1.0)  # shifted 3 px: 10 * 0.3 / 1.0
    assert np.nanmax(moved) == pytest.approx(4.0)
    assert np.isnan(depth_at_colour_camera(camera, np.full((6, 8), np.nan, np.float32), T_cd)).all()


def test_replay_with_a_depth_offset_moves_the_depth_and_says_so():
    plain = hf.replay(max_frames=3, progress=False)
    moved = hf.replay(max_frames=3, progress=False, depth_offset=np.eye(4))
    assert moved.evaluation["rmse"] == pytest.approx(plain.evaluation["rmse"], abs=1e-4)
    np.testing.assert_allclose(moved.metrics()["depth_offset"], [0, 0, 0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="depth_offset last row must be"):
        hf.replay(max_frames=1, progress=False, depth_offset=2 * np.eye(4))
    T_cd = exp_se3(np.array([0.03, 0.0, 0.02, 0, 0, 0]))
    frame = next(iter(UpAligned(hf.datasets.open(hf.datasets.sample_path(), max_frames=1), np.eye(4), depth_offset=T_cd)))
    original = next(iter(hf.datasets.open(hf.datasets.sample_path(), max_frames=1)))
    np.testing.assert_array_equal(frame.depth, depth_at_colour_camera(original.camera, original.depth, T_cd))
    np.testing.assert_array_equal(frame.T_wc, original.T_wc)  # the frame keeps its pose


def test_replay_at_the_time_offset_fuses_the_map_of_the_true_poses(tmp_path):
    """A synthetic floor whose trajectory's clock runs 50 ms ahead of the images' (``synth --time-offset-ms 50``):
    replayed with that time offset it fuses the map of its true poses, which are its reference."""
    truth = hf.replay(write_tum(generate("floor", frames=10, width=96, height=72), tmp_path / "in_step",
                                progress=False), progress=False).evaluation["smooth_rmse"]
    seq = generate("floor", frames=10, width=96, height=72, clock_offset=0.05)
    assert np.abs(seq.poses[1:, :3, 3] - seq.true_poses[1:, :3, 3]).max() > 0.01  # the frames' poses lag
    folder = write_tum(seq, tmp_path / "late", progress=False)
    late = hf.replay(folder, progress=False)
    on_time = hf.replay(folder, progress=False, pose_time_offset=0.05)
    assert on_time.evaluation["smooth_rmse"] == pytest.approx(truth, abs=2e-4)
    assert late.evaluation["smooth_rmse"] > 3 * truth
    assert on_time.trajectory["ate_unaligned_m"]["rmse"] < 1e-6 < late.trajectory["ate_unaligned_m"]["rmse"]
    assert on_time.metrics()["pose_time_offset_s"] == 0.05
    assert "pose_time_offset_s" not in late.metrics()
    with pytest.raises(ValueError, match="clock_offset"):
        generate("floor", frames=2, width=16, height=12, clock_offset=2.0)


def test_camera_offset_command_prints_and_writes_the_time_offset(tmp_path, capsys):
    """``heightfusion camera-offset`` on a rendered hand-held recording whose trajectory (``synth``'s clock offset)
    runs 12 ms ahead: it prints the time offset and the ``--time-offset-ms`` option, and writes them."""
    import json

    from heightfusion.cli import main

    base = hf.look_at((0.0, -0.5, 1.0), (0.0, 0.3, 0.0))
    seq = generate("floor", poses=np.array([base @ hand_held_pose(i / 30.0) for i in range(40)]), width=160,
                   height=120, clock_offset=0.012)
    folder = write_tum(seq, tmp_path / "late", progress=False)
    out = tmp_path / "o.json"
    assert main(["camera-offset", str(folder), "--gaps", "2", "4", "6", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("time offset +1") and "--time-offset-ms 1" in printed
    record = json.loads(out.read_text())
    assert abs(record["time_offset"]["seconds"] - 0.012) < 0.002
    assert record["options"]["depth"].startswith("--time-offset-ms ")
    # Exact poses but for the clock: what the pairs still disagree by after it is the depth alignment's error.
    mm, deg = map(float, record["options"]["pose_sigma"].split()[1:])
    assert "--pose-sigma " in printed and 0 <= mm < 1.0 and 0 <= deg < 0.1
