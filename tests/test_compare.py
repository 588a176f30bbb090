"""``heightfusion compare``: heightfusion, the Kalman elevation map and the TSDF on the same data, on real TUM
frames (held-out protocol) and on a small synthetic sequence with ground truth."""

import contextlib
import io
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import heightfusion.compare as compare_module
from heightfusion.baselines import KalmanElevationMap
from heightfusion.cli import main
from heightfusion.compare import CHART_FILE, HELD_OUT, JSON_FILE, MARKDOWN_FILE, TRUTH, compare
from heightfusion.synthetic import generate, write_tum

REAL = Path(__file__).parent / "data" / "tum_fr1_rpy_sample"  # 8 frames of TUM fr1/rpy, README.md there


def _strict_json(text: str):
    """json.loads that rejects NaN and Infinity (what strict parsers do)."""
    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=reject)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """The CLI on the real fixture with every method: (exit status, printed table, output folder, compare.json)."""
    out = tmp_path_factory.mktemp("real") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["compare", str(REAL), "--out", str(out), "--quiet"])
    return status, printed.getvalue(), out, _strict_json((out / JSON_FILE).read_text())


@pytest.fixture(scope="module")
def synthetic_floor(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic") / "floor"
    write_tum(generate("floor", frames=12, width=160, height=120, noise=True), folder)
    return folder


def _row(data: dict, method: str) -> dict:
    return next(r for r in data["rows"] if r["method"] == method)


# --- real data, held-out protocol --------------------------------------------------------------------
def test_real_frames_compare_writes_the_three_files_and_prints_the_table(real_run):
    status, printed, out, data = real_run
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([JSON_FILE, MARKDOWN_FILE, CHART_FILE])
    assert (out / CHART_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / MARKDOWN_FILE).read_text()
    assert table in printed and "| tum_fr1_rpy_sample | heightfusion |" in table
    (sequence,) = data["sequences"]
    assert sequence["protocol"] == HELD_OUT
    assert sequence["frames"] == 7 and sequence["held_out"] == 1  # 8 frames, every 5th held out
    for method in ("heightfusion", "kalman"):
        row = _row(data, method)
        assert row["fused"] == 7 and row["failed"] == {}
        assert row["heldout"]["coverage"] > 0.5
        assert math.isfinite(row["heldout"]["median"]) and row["heldout"]["median"] < 0.05
        assert row["ms_per_frame"] > 0 and row["ratio_to_fastest"] >= 1.0
    assert min(r["ratio_to_fastest"] for r in data["rows"] if r["skipped"] is None) == 1.0


def test_real_frames_tsdf(real_run):
    pytest.importorskip("open3d", reason="Open3D not installed (pip install -e '.[baselines]')")
    row = _row(real_run[3], "tsdf")
    assert row["skipped"] is None and row["fused"] == 7
    assert row["heldout"]["coverage"] > 0.5 and math.isfinite(row["heldout"]["median"])


# --- synthetic data with ground truth ----------------------------------------------------------------
def test_synthetic_ground_truth_scores_heightfusion_within_a_few_mm(synthetic_floor):
    result = compare([synthetic_floor], methods=("heightfusion", "kalman"), progress=False)
    (sequence,) = result.sequences
    assert sequence.protocol == TRUTH and sequence.held_out == 0 and sequence.frames == 12
    fusion, kalman = sequence.methods
    assert fusion.truth["smooth_rmse"] < 0.004 and fusion.truth["completeness"] > 0.8
    assert kalman.truth["smooth_rmse"] < 0.004
    assert fusion.heldout is None and fusion.error == fusion.truth["smooth_rmse"]
    assert "| floor | heightfusion | 12 |" in result.markdown()


def test_unavailable_method_is_reported_skipped_not_a_crash(synthetic_floor, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "open3d", None)  # makes `import open3d` raise ImportError
    result = compare([synthetic_floor], methods=("kalman", "tsdf"), progress=False)
    kalman, tsdf = result.rows
    assert "Open3D" in tsdf.skipped and "\n" not in tsdf.skipped
    assert tsdf.frames == 0 and math.isnan(tsdf.error) and kalman.fused == 12
    assert "skipped: TSDFHeightMap needs Open3D" in result.markdown()
    compare_module.write_outputs(result, tmp_path)  # a skipped method draws and writes too
    assert _row(_strict_json((tmp_path / JSON_FILE).read_text()), "tsdf")["error"] is None


def test_a_frame_a_method_cannot_fuse_is_counted(synthetic_floor, monkeypatch):
    fuse = KalmanElevationMap.fuse

    def fails_on_frame_3(self, camera, T_wc, depth, image=None, sigma=None, timestamp=None):
        if timestamp == pytest.approx(3 / 30):
            raise ValueError("broken frame\nsecond line")
        return fuse(self, camera, T_wc, depth, image, sigma, timestamp)

    monkeypatch.setattr(KalmanElevationMap, "fuse", fails_on_frame_3)
    (kalman,) = compare([synthetic_floor], methods=("kalman",), progress=False).rows
    assert kalman.frames == 12 and kalman.fused == 11
    assert dict(kalman.failed) == {"ValueError: broken frame": 1}


class FakeStereo:
    """Stands in for MotionStereo: no depth for the first ``blind`` frames, then a plane 1 m away; records pushes."""

    pushed: list = []
    blind = 1

    def __init__(self, config=None):
        pass

    def push(self, camera, T_wc, image, timestamp=None):
        self.pushed.append(image)
        if len(self.pushed) <= self.blind:
            return SimpleNamespace(estimate=None, reason="no parallax")
        depth = np.full(camera.shape, 1.0, np.float32)
        return SimpleNamespace(estimate=SimpleNamespace(depth=depth, sigma=np.full(camera.shape, 0.01, np.float32)))


@pytest.fixture
def fake_stereo(monkeypatch):
    import heightfusion.depth

    monkeypatch.setattr(heightfusion.depth, "MotionStereo", FakeStereo, raising=False)
    monkeypatch.setattr(FakeStereo, "pushed", [])
    return FakeStereo


def test_stereo_depth_is_computed_once_per_frame_and_fed_to_every_method(fake_stereo, monkeypatch):
    """With depth "mvs" the methods get the stereo's depth, not the sensor's; held-out frames are still scored
    against their sensor depth and never reach the stereo."""
    seen = {}

    def spy(factory):
        class Spy:
            def __init__(self, grid, stereo):
                assert stereo  # the stereo settings (sigma floor) are asked for
                self.inner, self.name = factory(grid, stereo), factory.__name__

            def fuse(self, frame, depth, sigma):
                seen.setdefault(self.name, []).append(id(depth))
                self.inner.fuse(frame, depth, sigma)

            def height_map(self):
                return self.inner.height_map()

            def release(self):
                self.inner.release()

        return Spy

    for name, factory in list(compare_module._FACTORIES.items()):
        monkeypatch.setitem(compare_module._FACTORIES, name, spy(factory))
    result = compare([REAL], methods=("heightfusion", "kalman"), depth="mvs", progress=False)
    (sequence,) = result.sequences
    assert len(fake_stereo.pushed) == 7 and sequence.held_out == 1  # the held-out frame never reaches the stereo
    assert sequence.skipped == {"stereo: no parallax": 1} and sequence.frames == 6
    assert len(seen) == 2 and len({tuple(ids) for ids in seen.values()}) == 1  # the same depth arrays
    for row in result.rows:
        assert row.fused == 6 and row.heldout["points"] > 0  # scored against the sensor depth


def test_no_frame_with_depth_leaves_empty_maps_not_a_crash(synthetic_floor, fake_stereo, monkeypatch, tmp_path):
    monkeypatch.setattr(fake_stereo, "blind", 10**6)
    result = compare([synthetic_floor], methods=("kalman", "tsdf"), depth="mvs", progress=False)
    assert result.sequences[0].skipped == {"stereo: no parallax": 12}
    for row in result.rows:
        assert row.frames == 0 and math.isnan(row.error) and math.isnan(row.ms_per_frame)
        assert row.skipped is not None or row.truth["completeness"] == 0.0
    compare_module.write_outputs(result, tmp_path)
    assert "| floor | kalman | 0 |" in (tmp_path / MARKDOWN_FILE).read_text()


# --- command-line errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, expected",
    [
        (["does/not/exist"], "no such file or folder"),
        ([str(REAL), "--methods", "heightfusion,octomap"], "octomap"),
        ([str(REAL), "--methods", "kalman,kalman"], "distinct"),
        ([str(REAL), "--every", "1"], "every"),
        ([str(REAL), "--cell-size", "-0.1"], "--cell-size"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(args, expected, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compare", *args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("heightfusion compare: error:") and expected in err
    assert not out.exists()  # checked before any fusion, nothing written
