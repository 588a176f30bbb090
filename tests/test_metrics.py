"""Evaluation metrics against hand-computed examples, the default smooth mask, and the stage timer."""

import json
import math

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.metrics import StageTimer, evaluate, smooth_mask_from_heights


def pair(shape=(2, 3), cell_size=0.1):
    truth = hf.HeightMap((0.0, 0.0), cell_size, shape)
    estimate = hf.HeightMap((0.0, 0.0), cell_size, shape)
    truth.observed[:] = True
    return estimate, truth


def test_height_errors_match_hand_computation():
    estimate, truth = pair()
    truth.heights[:] = 0.5
    errors = np.array([[0.005, -0.015, 0.03], [0.0, 0.1, -0.04]])
    estimate.heights[:] = 0.5 + errors
    estimate.observed[:] = True
    estimate.observed[1, 1] = False  # the 0.1 outlier is not observed: it must not count
    m = evaluate(estimate, truth, smooth_mask=np.ones((2, 3), bool))

    e = np.array([0.005, -0.015, 0.03, 0.0, -0.04])
    assert m["count"] == 5
    assert m["rmse"] == pytest.approx(math.sqrt(np.mean(e**2)), abs=1e-7)
    assert m["mae"] == pytest.approx(0.018, abs=1e-7)
    assert m["median"] == pytest.approx(0.015, abs=1e-7)
    assert m["bias"] == pytest.approx(-0.004, abs=1e-7)
    assert (m["within_1cm"], m["within_2cm"], m["within_5cm"]) == pytest.approx((0.4, 0.6, 1.0))
    assert m["truth_count"] == 6 and m["completeness"] == pytest.approx(5 / 6)
    assert m["smooth_count"] == 5 and m["smooth_rmse"] == pytest.approx(m["rmse"])


def test_calibration_counts_errors_within_one_and_two_sigma():
    estimate, truth = pair(shape=(2, 2))
    estimate.observed[:] = True
    estimate.information[:] = 1 / 0.01**2  # sigma = 1 cm
    estimate.heights[:] = [[0.005, -0.015], [0.03, -0.001]]
    estimate.information[1, 1] = 0.0  # no information: infinite sigma, always within
    m = evaluate(estimate, truth)
    assert m["calib_1sigma"] == pytest.approx(2 / 4)
    assert m["calib_2sigma"] == pytest.approx(3 / 4)
    estimate.systematic_sigma[0, 1] = 0.012  # sigma sqrt(1 + 1.44) cm = 1.56 cm > 1.5 cm
    assert evaluate(estimate, truth)["calib_1sigma"] == pytest.approx(3 / 4)


def test_completeness_counts_only_ground_truth_visible_vertices():
    estimate, truth = pair(shape=(3, 3))
    truth.observed[:] = False
    truth.observed[0, :] = True
    truth.observed[1, 0] = True  # 4 visible vertices
    estimate.observed[0, :] = True  # 3 of them
    estimate.observed[2, 2] = True  # observed where the truth knows nothing: ignored
    m = evaluate(estimate, truth)
    assert m["count"] == 3 and m["truth_count"] == 4
    assert m["completeness"] == pytest.approx(0.75)


def test_smooth_statistics_use_the_given_mask():
    estimate, truth = pair()
    estimate.observed[:] = True
    estimate.heights[:] = [[0.01, 0.01, 0.2], [0.01, 0.01, 0.2]]
    smooth = np.array([[True, True, False], [True, True, False]])
    m = evaluate(estimate, truth, smooth_mask=smooth)
    assert m["smooth_count"] == 4 and m["smooth_rmse"] == pytest.approx(0.01, abs=1e-7)
    assert m["rmse"] > 0.1
    with pytest.raises(ValueError, match="smooth_mask has shape"):
        evaluate(estimate, truth, smooth_mask=np.ones((3, 3), bool))


@pytest.mark.parametrize(
    "other, match",
    [
        (hf.HeightMap((0.0, 0.0), 0.1, (2, 4)), "shape"),
        (hf.HeightMap((0.0, 0.0), 0.1 + 1e-6, (2, 3)), "cell_size"),
        (hf.HeightMap((0.0, 1e-6), 0.1, (2, 3)), "origin"),
    ],
)
def test_grid_mismatch_raises_naming_it(other, match):
    _, truth = pair()
    with pytest.raises(ValueError, match=match):
        evaluate(other, truth)
    evaluate(hf.HeightMap((1e-12, 0.0), 0.1 + 1e-12, (2, 3)), truth)  # within tolerance: fine


def test_empty_overlap_gives_nan_not_an_exception():
    estimate, truth = pair()
    m = evaluate(estimate, truth)  # the estimate observed nothing
    assert m["count"] == 0 and m["smooth_count"] == 0
    assert math.isnan(m["rmse"]) and math.isnan(m["within_1cm"]) and math.isnan(m["calib_1sigma"])
    assert m["completeness"] == 0.0
    truth.observed[:] = False
    assert math.isnan(evaluate(estimate, truth)["completeness"])


def test_result_is_plain_json():
    estimate, truth = pair()
    estimate.observed[:] = True
    m = evaluate(estimate, truth)
    assert all(type(v) in (int, float) for v in m.values())
    assert json.loads(json.dumps(m)) == m


def test_non_finite_observed_height_raises():
    estimate, truth = pair()
    estimate.observed[:] = True
    estimate.heights[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"estimate .*NaN.*i=1, j=2"):
        evaluate(estimate, truth)


def test_smooth_mask_marks_a_step_and_its_neighbourhood():
    truth = hf.HeightMap((0.0, 0.0), 0.02, (4, 10))
    truth.observed[:] = True
    truth.heights[:, 5:] = 0.1  # step between columns 4 and 5
    truth.heights[:] += np.arange(10) * 0.002  # gentle slope: not an edge
    expected = np.ones((4, 10), bool)
    expected[:, 3:7] = False
    np.testing.assert_array_equal(smooth_mask_from_heights(truth), expected)
    expected[:, [3, 6]] = True
    np.testing.assert_array_equal(smooth_mask_from_heights(truth, dilate_cells=0), expected)
    assert smooth_mask_from_heights(truth, step=0.2).all()
    truth.observed[:, 5] = False  # the step now has no observed pair across it
    assert smooth_mask_from_heights(truth).all()
    with pytest.raises(ValueError, match="step"):
        smooth_mask_from_heights(truth, step=0.0)


def test_stage_timer_accumulates_per_stage():
    timer = StageTimer()
    timer.add("render", 4.0)
    timer.add("render", 2.0)
    timer.add("solve", 1.0)
    with pytest.raises(RuntimeError):
        with timer("io"):
            raise RuntimeError("recorded anyway")
    assert timer.total_ms()["render"] == 6.0 and timer.counts() == {"render": 2, "solve": 1, "io": 1}
    assert timer.mean_ms()["render"] == 3.0
    assert timer.mean_ms(frames=2) == pytest.approx({"render": 3.0, "solve": 0.5, "io": timer.total_ms()["io"] / 2})
    assert timer.total_ms()["io"] >= 0.0
    timer.reset()
    assert timer.mean_ms() == {} and timer.total_ms() == {}
