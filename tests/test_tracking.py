"""Camera tracking: the SE(3) exponential, the alignment's Jacobians against finite differences, pose
recovery on consistent views, the tracker's modes and verdicts, and --track through replay and the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

import heightfusion as hf
from heightfusion.cli import main
from heightfusion.pipeline import FramePipeline, SkippedFrame
from heightfusion.tracking import Tracker, TrackingConfig, align, exp_se3, log_se3, make_reference, motion_size, tracked_pyramid
from heightfusion.tracking.alignment import AlignmentSettings, _point_jacobian, _residuals
from heightfusion.tracking.views import level_range

REAL_SAMPLE = Path(__file__).parent / "data" / "tum_fr1_rpy_sample"


@pytest.fixture(scope="module")
def floor_frames():
    """Three renderings of the synthetic floor from 1.2 m, 2-3 cm and a few degrees apart (30 fps hand-held)."""
    from heightfusion.synthetic.sequence import generate

    start = hf.look_at((0.6, -0.9, 1.2), (0.0, 0.0, 0.0))
    poses = np.stack([start, start @ exp_se3([0.02, 0.01, 0.0, 0.01, -0.03, 0.02]),
                      start @ exp_se3([0.04, 0.015, 0.01, 0.02, -0.05, 0.03])])
    return list(generate("floor", poses=poses))


def _warped(frame_from, frame_to):
    """frame_to's image made from frame_from's pixels through frame_to's depth: views consistent to the
    pixel (what real or synthetic renderings never quite are), so the alignment must find the pose."""
    camera = frame_to.camera
    uv = np.stack(np.meshgrid(np.arange(camera.width), np.arange(camera.height)), -1).astype(float)
    points = camera.unproject(uv, frame_to.depth.astype(float)) @ frame_to.T_wc[:3, :3].T + frame_to.T_wc[:3, 3]
    T_cw = np.linalg.inv(frame_from.T_wc)
    p = camera.project(points @ T_cw[:3, :3].T + T_cw[:3, 3]).astype(np.float32)
    return cv2.remap(frame_from.image, p[..., 0], p[..., 1], cv2.INTER_LINEAR)


def test_exp_se3_matches_rodrigues_and_inverts():
    rng = np.random.default_rng(1)
    for _ in range(5):
        xi = np.concatenate([rng.normal(0, 0.3, 3), rng.normal(0, 0.8, 3)])
        T = exp_se3(xi)
        R, _ = cv2.Rodrigues(xi[3:])
        np.testing.assert_allclose(T[:3, :3], R, atol=1e-12)
        np.testing.assert_allclose(exp_se3(-xi) @ T, np.eye(4), atol=1e-12)
    assert exp_se3(np.zeros(6)) == pytest.approx(np.eye(4))
    moved, turned = motion_size(exp_se3([0.1, 0, 0, 0, 0, math.radians(30)]))
    assert turned == pytest.approx(30.0)


def test_log_se3_inverts_exp_se3():
    rng = np.random.default_rng(2)
    for scale in (1e-10, 1e-4, 0.3, 1.0):  # the Taylor branch, small and large angles
        xi = np.concatenate([rng.normal(0, 0.5, 3), rng.normal(0, scale, 3)])
        np.testing.assert_allclose(log_se3(exp_se3(xi)), xi, atol=1e-10)


@pytest.mark.parametrize("with_depth", [True, False])
def test_residual_jacobians_match_finite_differences(with_depth):
    """Smooth images (where the Sobel gradient is the true one) and central differences of steps of a
    few tenths of a pixel (OpenCV's remap resolves 1/32 pixel)."""
    from heightfusion.tracking.views import Reference, ReferenceLevel, tracked_image

    camera = hf.PinholeCamera(160, 120, 128.0, 128.0, 79.5, 59.5)
    v, u = np.mgrid[0:120, 0:160].astype(np.float32)
    gray = (0.5 + 0.2 * np.sin(u / 9.0) * np.cos(v / 11.0) + 0.001 * u).astype(np.float32)
    depth = (1.0 + 0.002 * u + 0.001 * v).astype(np.float32)  # a tilted plane
    level = tracked_image(camera, gray, depth if with_depth else None)
    rng = np.random.default_rng(3)
    uv = np.stack([rng.uniform(20, 140, 400), rng.uniform(20, 100, 400)], -1)
    T_wc = hf.look_at((0.0, 0.0, 1.0), (0.0, 0.01, 0.0), up=(0.0, 1.0, 0.0))
    T_cw = np.linalg.inv(T_wc)
    points_c = camera.unproject(uv, 1.0 + 0.002 * uv[:, 0] + 0.001 * uv[:, 1]) * 1.01  # not quite on the views
    points_w = points_c @ T_wc[:3, :3].T + T_wc[:3, 3]
    ref = Reference("test", T_wc, [ReferenceLevel(points_w, rng.uniform(0.3, 0.7, 400).astype(np.float32), points_w)])
    brightness = np.array([[0.9, 0.02]])
    settings = AlignmentSettings(max_depth_gradient=1.0)
    base = _residuals(level, [ref], 0, T_cw, brightness, settings)
    assert len(base) == (2 if with_depth else 1) and len(base[0].r) == 400
    eps = 2e-3
    for j in range(8):
        step = np.zeros(8)
        step[j] = eps
        plus = _residuals(level, [ref], 0, exp_se3(step[:6]) @ T_cw, brightness + step[6:].reshape(1, 2), settings)
        minus = _residuals(level, [ref], 0, exp_se3(-step[:6]) @ T_cw, brightness - step[6:].reshape(1, 2), settings)
        for kind, p, m in zip(base, plus, minus):
            numeric = (p.r - m.r) / (2 * eps)
            scale = np.abs(kind.J[:, j]).max() + 1e-9
            assert np.median(np.abs(numeric - kind.J[:, j])) <= 0.02 * scale, (j, kind.floor)


def test_point_jacobian_is_the_projection_derivative():
    camera = hf.PinholeCamera(64, 48, 50.0, 52.0, 31.5, 23.5)
    level = type("L", (), {"camera": camera})()
    X = np.array([[0.1, -0.2, 1.3], [-0.3, 0.05, 0.8]])
    gu, gv = np.array([0.7, -0.2]), np.array([0.1, 0.5])

    def value(T):  # a "gradient image" that is linear in the pixel: value = gu u + gv v
        Xc = X @ T[:3, :3].T + T[:3, 3]
        uv = camera.project(Xc)
        return gu * uv[:, 0] + gv * uv[:, 1]

    J = _point_jacobian(level, X, gu, gv)
    for j in range(6):
        step = np.zeros(6)
        step[j] = 1e-7
        numeric = (value(exp_se3(step)) - value(np.eye(4))) / 1e-7
        np.testing.assert_allclose(numeric, J[:, j], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("with_depth", [True, False])
def test_alignment_recovers_the_pose_of_a_consistent_view(floor_frames, with_depth):
    f0, f1 = floor_frames[0], floor_frames[1]
    finest, coarsest = level_range(f0.camera, 240, 30)
    pyr0 = tracked_pyramid(f0.camera, f0.image, f0.depth, finest, coarsest)
    ref = make_reference("keyframe", pyr0[0].camera, f0.T_wc, f0.image, pyr0[0].depth, finest, coarsest, 3000, 0.01)
    image = _warped(f0, f1)
    pyramid = tracked_pyramid(f1.camera, image, f1.depth if with_depth else None, finest, coarsest)
    start = f1.T_wc @ exp_se3([0.01, -0.008, 0.006, 0.01, -0.012, 0.008])  # 1.4 cm, 1 degree off
    result = align(pyramid, [ref], start)
    moved, turned = motion_size(np.linalg.inv(f1.T_wc) @ result.T_wc)
    # What is left is the warp's own interpolation blur (about 1.6 mm from the image alone, mostly along
    # the view); from the start it was 14 mm and a degree.
    assert moved < 0.003 and turned < 0.1
    assert result.covariance is not None and np.all(np.linalg.eigvalsh(result.covariance) > 0)
    assert result.brightness[0] == pytest.approx((1.0, 0.0), abs=0.05)


def test_alignment_absorbs_an_exposure_change(floor_frames):
    f0, f1 = floor_frames[0], floor_frames[1]
    finest, coarsest = level_range(f0.camera, 240, 30)
    pyr0 = tracked_pyramid(f0.camera, f0.image, f0.depth, finest, coarsest)
    ref = make_reference("keyframe", pyr0[0].camera, f0.T_wc, f0.image, pyr0[0].depth, finest, coarsest, 3000, 0.01)
    darker = np.clip(_warped(f0, f1).astype(np.float32) * 0.7 + 20, 0, 255).astype(np.uint8)
    result = align(tracked_pyramid(f1.camera, darker, None, finest, coarsest), [ref], f1.T_wc @ exp_se3([0.01, 0, 0, 0, 0.01, 0]))
    moved, turned = motion_size(np.linalg.inv(f1.T_wc) @ result.T_wc)
    assert moved < 0.003 and turned < 0.15
    assert result.brightness[0][0] == pytest.approx(0.7, abs=0.05)


def test_a_reference_with_unknown_colours_picks_no_point_without_a_grey_value(floor_frames):
    """A coarser level of the map's view can have depth where its colour is unknown (NaN): Sobel gives an
    isolated pixel a gradient from its neighbours alone; picked, its NaN grey value turned the level's
    normal equations to NaN and no step was taken (found on the real frames: 1 frame in 10 kept its
    prediction so)."""
    f0, f1 = floor_frames[0], floor_frames[1]
    finest, coarsest = level_range(f0.camera, 240, 30)
    pyr0 = tracked_pyramid(f0.camera, f0.image, f0.depth, finest, coarsest)
    gray = pyr0[0].gray.copy()
    gray[5::17, 3::19] = np.nan  # single unknown pixels among known ones
    ref = make_reference("map", pyr0[0].camera, f0.T_wc, gray, pyr0[0].depth, finest, coarsest, 3000, 0.01)
    assert len(ref.levels[0].intensity) > 1000
    for level in ref.levels:
        assert np.isfinite(level.intensity).all()
    pyramid = tracked_pyramid(f1.camera, _warped(f0, f1), f1.depth, finest, coarsest)
    result = align(pyramid, [ref], f1.T_wc @ exp_se3([0.01, -0.008, 0.006, 0.01, -0.012, 0.008]))
    moved, turned = motion_size(np.linalg.inv(f1.T_wc) @ result.T_wc)
    assert moved < 0.003 and turned < 0.1


def test_tracker_refine_keeps_exact_poses_and_skips_what_it_cannot_track(floor_frames):
    tracker = Tracker("refine", config=TrackingConfig(use_map=False))
    f0, f1 = floor_frames[0], floor_frames[1]
    first = tracker.track(f0)
    assert first.ok and not first.tracked  # nothing to align to yet: the given pose
    tracker.accept(f0, first.T_wc)
    second = tracker.track(f1)
    assert second.ok and second.tracked and second.references == ["keyframe"]
    moved, turned = motion_size(np.linalg.inv(f1.T_wc) @ second.T_wc)
    assert moved < 0.005 and turned < 0.5
    blank = hf.Frame(f1.timestamp, np.zeros_like(f1.image), None, f1.T_wc, f1.camera, f1.index)  # nothing to align
    failed = tracker.track(blank)
    assert not failed.ok and failed.T_wc is None and failed.reason in ("no contrast", "unconstrained", "too few points")


def test_refine_keeps_the_given_pose_where_the_keyframe_is_out_of_view(floor_frames):
    """A keyframe the predicted view has left is nothing to align to: in refine the frame keeps its given
    pose (as before the map exists) instead of being lost."""
    f0, f1 = floor_frames[0], floor_frames[1]
    away = hf.look_at((-0.6, 0.9, 1.2), (-1.4, 1.8, 0.0))  # looking at the floor's far corner, away from f0's view
    tracker = Tracker("refine", config=TrackingConfig(use_map=False))
    tracker.accept(f0, tracker.track(f0).T_wc)
    result = tracker.track(hf.Frame(f1.timestamp, f1.image, None, away, f1.camera, f1.index))
    assert result.ok and not result.tracked
    np.testing.assert_allclose(result.T_wc, away, atol=1e-12)
    assert tracker.track(f1).tracked  # the keyframe's own view still aligns to it


@pytest.mark.parametrize("drift", [False, True])
def test_refine_weighs_the_prediction_as_its_pose_model_says(floor_frames, monkeypatch, drift):
    """Drifting poses: the prediction's information is that of the last pose's covariance grown by one step
    (a Kalman prediction); motion capture: one step's alone."""
    import heightfusion.tracking.tracker as tracker_module

    priors = []

    def spy(pyramid, references, T_wc, settings, prior):
        priors.append(prior)
        return align(pyramid, references, T_wc, settings, prior)

    monkeypatch.setattr(tracker_module, "align", spy)
    config = TrackingConfig(use_map=False, keyframe_overlap=0.0, refine_drift=drift)  # f0 stays the keyframe
    tracker = Tracker("refine", config=config)
    step = np.diag([config.refine_prior[0] ** 2] * 3 + [math.radians(config.refine_prior[1]) ** 2] * 3)
    covariances = []
    for frame in floor_frames:
        result = tracker.track(frame)
        tracker.accept(frame, result.T_wc)
        covariances.append(np.zeros((6, 6)) if result.covariance is None else result.covariance)
    assert len(priors) == 2
    for prior, last in zip(priors, covariances):
        np.testing.assert_allclose(np.linalg.inv(prior), step + last if drift else step, rtol=1e-9)
    assert np.trace(covariances[1][:3, :3]) > 0


def test_pipeline_counts_untrackable_frames_and_records_poses(floor_frames):
    grid = hf.HeightMap((-1.5, -1.5), 0.05, (61, 61))
    fuser = hf.HeightMapFuser(grid, hf.make_renderer("raymarch"))
    pipeline = FramePipeline(fuser, "auto", tracker=Tracker("refine", config=TrackingConfig(use_map=False)))
    f0, f1 = floor_frames[0], floor_frames[1]
    assert not isinstance(pipeline.process(f0), SkippedFrame)
    blank = hf.Frame(f1.timestamp, np.zeros_like(f1.image), None, f1.T_wc, f1.camera, f1.index)  # nothing to align
    skipped = pipeline.process(blank)
    assert isinstance(skipped, SkippedFrame) and skipped.reason.startswith("tracking: ")
    assert [t for t, _ in pipeline.poses] == [f0.timestamp]  # the untracked frame has no pose: none recorded
    assert dict(pipeline.tracking) == {"given": 1}


def test_tracker_rejects_a_mode_it_does_not_know():
    with pytest.raises(ValueError, match="refine"):
        Tracker("off")
    with pytest.raises(ValueError, match="track must be one of"):
        hf.replay(max_frames=1, progress=False, track="slam")


@pytest.mark.skipif(not REAL_SAMPLE.exists(), reason="no real sample")
def test_rgbd_odometry_on_real_frames_beats_no_motion():
    """Real TUM frames (hand-held, motion blur): odometry from the first pose alone follows the camera
    better than standing still would, and every frame is tracked."""
    result = hf.replay(REAL_SAMPLE, progress=False, track="odometry", max_frames=12)
    assert result.tracking["tracked"] == result.frames_used - 1
    reference = dict(result.reference_poses)
    first = result.poses[0][1]
    still = [np.linalg.norm(first[:3, 3] - reference[t][:3, 3]) for t, _ in result.poses if t in reference]
    ate = result.trajectory["ate_unaligned_m"]["rmse"]
    assert ate < 0.03
    if len(still):
        assert ate < max(0.01, np.sqrt(np.mean(np.square(still))))


def test_replay_cli_writes_the_trajectory(tmp_path):
    out = tmp_path / "out"
    assert main(["replay", "--max-frames", "4", "--track", "refine", "--out", str(out), "--quiet"]) == 0
    lines = [line for line in (out / "trajectory.txt").read_text().splitlines() if not line.startswith("#")]
    assert len(lines) == 4 and len(lines[0].split()) == 8
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tracking"]["mode"] == "refine" and metrics["trajectory"]["matched"] == 4
    assert (out / "trajectory.png").stat().st_size > 1000
    # Tracked poses carry a covariance: the map's sigma has a systematic part, at most the whole sigma.
    assert 0 < metrics["map"]["systematic_sigma_median_mm"] <= metrics["map"]["sigma_median_mm"]
    assert hf.load_heightmap(out / "heightmap.npz").systematic_sigma.max() > 0


def test_start_pose_needs_odometry(tmp_path, capsys):
    assert main(["replay", "--start-pose", "0", "0", "0", "0", "0", "0", "1", "--out", str(tmp_path / "o")]) == 2
    assert "--track odometry" in capsys.readouterr().err


def test_pose_depth_sigma_is_the_depth_derivative_of_the_pose():
    """A level floor seen from 1.2 m: each twist component's change of every pixel's depth, by finite
    differences of the exact ray-plane depth, against the rows pose_depth_sigma propagates."""
    from heightfusion.fusion.pose_uncertainty import pose_depth_sigma

    camera = hf.PinholeCamera(40, 30, 32.0, 32.0, 19.5, 14.5)
    T_wc = hf.look_at((0.3, -1.0, 1.2), (0.0, 0.2, 0.0))

    def floor_depth(T):
        rays = camera.pixel_rays() @ T[:3, :3].T
        return -T[2, 3] / rays[..., 2]

    depth = floor_depth(T_wc)
    T_cw = np.linalg.inv(T_wc)
    eps = 1e-6
    columns = []
    for k in range(6):
        step = np.zeros(6)
        step[k] = eps
        columns.append((floor_depth(np.linalg.inv(exp_se3(step) @ T_cw)) - depth) / eps)
    J = np.stack(columns, axis=-1)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6)) * np.r_[[1e-3] * 3, [1e-3] * 3]
    covariance = A @ A.T
    expected = np.sqrt(np.einsum("hwi,ij,hwj->hw", J, covariance, J))
    np.testing.assert_allclose(pose_depth_sigma(camera, T_wc, depth.astype(np.float32), covariance), expected,
                               rtol=1e-3)


def test_pose_drift_sets_refines_prior_and_needs_refine(tmp_path, capsys):
    from heightfusion.cli.options import add_track_arguments, track_options
    import argparse

    parser = argparse.ArgumentParser()
    add_track_arguments(parser)
    options = track_options(parser.parse_args(["--track", "refine", "--pose-drift", "0.5", "0.05"]))
    assert options["tracking"].refine_prior == pytest.approx((0.0005, 0.05)) and options["tracking"].refine_drift
    assert main(["replay", "--pose-drift", "0.5", "0.05", "--out", str(tmp_path / "o")]) == 2
    assert "--track refine" in capsys.readouterr().err


def test_a_sink_sees_each_frame_at_the_pose_it_was_used_at():
    """With tracking, a run's watchers (a Rerun log) get the tracked pose, not the one the frame came with."""

    class Recorder:
        def __init__(self):
            self.poses = []

        def log_frame(self, frame, depth, grid):
            self.poses.append((frame.timestamp, frame.T_wc))

    given = {f.timestamp: f.T_wc for f in hf.datasets.open(hf.datasets.sample_path(), max_frames=4)}
    recorder = Recorder()
    result = hf.replay(max_frames=4, progress=False, track="refine", sink=recorder)
    assert [t for t, _ in recorder.poses] == [t for t, _ in result.poses]
    for (_, seen), (t, used) in zip(recorder.poses, result.poses):
        np.testing.assert_array_equal(seen, used)
    assert any(not np.array_equal(used, given[t]) for t, used in result.poses)  # tracking moved some


def test_map_view_grey_is_the_rendered_colour_of_observed_surface(gl_renderer):
    """The map reference's grey values and depth (the renderer's depth-and-grey pass) against the full
    fragments' interpolated colour and depth: unobserved vertices give no value, the rest the same surface."""
    from conftest import bumpy_grid
    from heightfusion.tracking.views import to_gray

    grid = bumpy_grid()
    grid.observed[:] = True
    grid.observed[:4, :5] = False  # a corner never seen: no value there
    camera = hf.PinholeCamera(96, 72, 80.0, 80.0, 47.5, 35.5)
    T_wc = hf.look_at([0.2, -0.5, 1.3], [1.0, 0.4, 0.0])
    gray, depth, coverage = Tracker("refine", renderer=gl_renderer).map_view(grid, camera, T_wc)
    fragments = gl_renderer.render(grid, camera, T_wc)
    seen = np.isfinite(gray)
    assert 0.2 < coverage == seen.mean() and (np.isfinite(depth) == seen).all()
    observed = grid.observed.ravel()[fragments.vertex_ids].all(axis=-1) & fragments.mask
    np.testing.assert_array_equal(seen, observed)
    both = seen & observed
    np.testing.assert_allclose(gray[both], to_gray(fragments.color)[both], atol=1e-4)
    np.testing.assert_allclose(depth[both], fragments.depth[both], rtol=1e-4)
    assert not seen[~fragments.mask].any()


@pytest.mark.parametrize("size", [(160, 120), (80, 60), (40, 30)])
def test_a_reference_keeps_at_most_max_points_per_level_and_kind(floor_frames, size):
    f0 = floor_frames[0]
    camera = f0.camera.scaled(size[0] / f0.camera.width)
    depth = cv2.resize(f0.depth, size, interpolation=cv2.INTER_NEAREST)
    image = cv2.resize(f0.image, size, interpolation=cv2.INTER_AREA)
    ref = make_reference("keyframe", camera, f0.T_wc, image, depth, 0, 0, 1000, 0.0)
    level = ref.levels[0]
    assert 0.2 * 1000 < len(level.photometric) <= 1000 and 0.2 * 1000 < len(level.geometric) <= 1000
