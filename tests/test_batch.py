"""heightfusion batch: sequences on Ray, failures reported, the rest merged, maps equal to one-by-one runs.

Ray's start-up is slow (seconds): one local instance for the module, few and short batches.
"""

import json
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.batch import common_lattice, map_sequence, run_batch, sequence_names
from heightfusion.cli import main
from heightfusion.navigation import FreeSpaceSettings

SAMPLE = hf.datasets.sample_path()


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the batch extra (Ray) is not installed")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


def _llvmpipe_threads(count: str) -> None:
    os.environ["LP_NUM_THREADS"] = count


def test_batch_maps_as_one_by_one_reports_a_bad_path_and_merges_the_rest(local_ray, tmp_path, capsys):
    out = tmp_path / "batch"
    status = main(["batch", SAMPLE, SAMPLE, tmp_path / "missing", "--out", out, "--max-frames", "4", "--quiet"])
    assert status == 3  # some failed
    printed = capsys.readouterr().out
    assert "missing: FAILED" in printed and "no such file or folder" in printed
    summary = json.loads((out / "batch.json").read_text())
    assert [s["name"] for s in summary["sequences"]] == ["sample_floor", "sample_floor-2", "missing"]
    assert [s["ok"] for s in summary["sequences"]] == [True, True, False]
    assert summary["lattice"] == {"cell_size": 0.02, "origin": [-1.49, -1.49]}  # the sample's ground-truth grid
    # One by one, with the batch's options and its tasks' llvmpipe thread count (in a process of its own: the
    # count is read when the GL context is created, and this process's is the library's default): the same map.
    options = {"max_frames": 4, **summary["lattice"], "origin": tuple(summary["lattice"]["origin"])}
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn, initializer=_llvmpipe_threads, initargs=("1",)) as pool:
        alone = pool.submit(map_sequence, SAMPLE, tmp_path / "alone", options, FreeSpaceSettings()).result()
    assert alone.frames_used == summary["sequences"][0]["frames_used"] == 4
    mine = hf.load_heightmap(tmp_path / "alone" / "heightmap.npz")
    for name in ("sample_floor", "sample_floor-2"):
        theirs = hf.load_heightmap(out / "sequences" / name / "heightmap.npz")
        np.testing.assert_array_equal(theirs.observed, mine.observed)
        np.testing.assert_allclose(theirs.heights, mine.heights, atol=1e-6)
        # float32 sums in llvmpipe's GL atomics: their order follows its thread count (one per task here)
        np.testing.assert_allclose(theirs.information, mine.information, rtol=1e-4)
    # Two runs of the same frames merged: the same heights, twice the evidence.
    merged = hf.load_heightmap(out / "merged" / "heightmap.npz")
    assert merged.shape == mine.shape and np.allclose(merged.origin, mine.origin)
    seen = mine.observed
    np.testing.assert_allclose(merged.heights[seen], mine.heights[seen], atol=1e-5)
    prior = mine.prior_information
    np.testing.assert_allclose(merged.information[seen] - prior, 2 * (mine.information[seen] - prior), rtol=1e-4)


def test_a_killed_worker_is_reported_and_the_others_are_merged(local_ray, tmp_path):
    killed = {}

    def kill_first(reports):  # the first sequence's worker, once it has read a frame
        report = reports.get("victim")
        if report is not None and report["read"] >= 1 and not killed:
            killed["pid"] = report["pid"]
            os.kill(report["pid"], signal.SIGKILL)

    victim = tmp_path / "victim"
    victim.symlink_to(SAMPLE)
    result = run_batch([victim, SAMPLE], tmp_path / "out", progress=False, on_progress=kill_first)
    assert killed, "the victim's worker was never seen running"
    outcome = {s.name: s for s in result.sequences}
    assert not outcome["victim"].ok and "worker died" in outcome["victim"].error
    assert outcome["sample_floor"].ok and outcome["sample_floor"].frames_used == 60
    assert result.merged is not None and result.merged.observed.sum() > 0
    assert json.loads((tmp_path / "out" / "merged" / "metrics.json").read_text())["sequences"] == ["sample_floor"]


def test_sequence_names_are_unique_folder_names():
    assert sequence_names(["a/run", "b/run", "c/drive.mp4", "run"]) == ["run", "run-2", "drive", "run-3"]


def test_common_lattice_given_from_the_ground_truth_or_the_default(tmp_path):
    assert common_lattice([SAMPLE], 0.05, (1.0, 2.0)) == {"cell_size": 0.05, "origin": (1.0, 2.0)}
    assert common_lattice([tmp_path / "missing", SAMPLE]) == {"cell_size": 0.02, "origin": (-1.49, -1.49)}
    assert common_lattice([SAMPLE], 0.05) == {"cell_size": 0.05, "origin": (0.0, 0.0)}  # not the truth's cells


def test_without_ray_batch_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(["batch", SAMPLE, "--out", tmp_path / "out"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'heightfusion[batch]'" in err
