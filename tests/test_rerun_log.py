"""Rerun recordings of a run (heightfusion.rerun_log): what a .rrd holds, read back with the SDK."""

import os
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.cli import main
from heightfusion.rerun_log import CAMERA, DEPTH, IMAGE, MAP, observed_mesh


def _read_rrd(path) -> dict[str, dict[str, list]]:
    """entity path -> component column (and "frame") -> values, over all of the recording's chunks."""
    from rerun.chunk import RrdReader

    columns: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        for name in batch.schema.names:
            if name == "frame" or ":" in name:
                columns[chunk.entity_path.lstrip("/")][name] += batch.column(name).to_pylist()
    return columns


def test_replay_records_frames_depth_poses_and_the_map(tmp_path):
    pytest.importorskip("rerun")
    rrd, out = tmp_path / "run.rrd", tmp_path / "out"
    assert main(["replay", "--max-frames", "3", "--quiet", "--out", out, "--rerun", rrd, "--rerun-mesh-every", "2"]) == 0
    logged = _read_rrd(rrd)
    assert logged["world"]["ViewCoordinates:xyz"]  # Z up, static
    for entity in (CAMERA, IMAGE, DEPTH):  # every frame of the sample is fused
        assert sorted(set(logged[entity]["frame"])) == [0, 1, 2], entity
    assert logged[CAMERA]["frame"] == [0, 1, 2]
    assert len(logged[DEPTH]["DepthImage:buffer"]) == 3 and len(logged[IMAGE]["EncodedImage:blob"]) == 3
    assert logged[IMAGE]["Pinhole:image_from_camera"] and logged[DEPTH]["Pinhole:resolution"] == [[[320, 240]]]
    # The mesh after fused frames 1 and 3 (every 2nd), and the final map at the last frame.
    assert logged[MAP]["frame"] == [0, 2, 2]
    final = np.array(logged[MAP]["Mesh3D:vertex_positions"][-1])
    grid = hf.load_heightmap(out / "heightmap.npz")
    assert len(final) == grid.observed.sum()
    np.testing.assert_allclose(np.sort(final[:, 2]), np.sort(grid.heights[grid.observed]), atol=1e-6)
    T_wc = np.array(logged[CAMERA]["Transform3D:translation"][0]).reshape(3)
    first = next(iter(hf.datasets.open(hf.datasets.sample_path(), max_frames=1)))
    np.testing.assert_allclose(T_wc, first.T_wc[:3, 3], atol=1e-6)


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="the live app needs X: run under xvfb-run -a")
def test_live_records_every_frame_and_the_final_map(tmp_path):
    pytest.importorskip("rerun")
    rrd = tmp_path / "live.rrd"
    done = subprocess.run([sys.executable, "-m", "heightfusion", "live", "--hidden", "--every-frame", "--max-frames", "3",
                           "--size", "480", "270", "--out", str(tmp_path / "out"), "--rerun", str(rrd)],
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    logged = _read_rrd(rrd)
    assert sorted(set(logged[CAMERA]["frame"])) == [0, 1, 2] and len(logged[DEPTH]["DepthImage:buffer"]) == 3
    final = np.array(logged[MAP]["Mesh3D:vertex_positions"][-1])
    assert len(final) == hf.load_heightmap(tmp_path / "out" / "heightmap.npz").observed.sum()


def test_observed_mesh_keeps_whole_observed_triangles():
    grid = hf.HeightMap((1.0, 2.0), 0.5, (3, 4))
    grid.heights[:] = np.arange(12).reshape(3, 4)
    assert observed_mesh(grid) is None
    grid.observed[:2, :2] = True  # one cell: two triangles on four vertices
    grid.observed[2, 3] = True  # a lone vertex: in no triangle
    positions, triangles, colors = observed_mesh(grid)
    assert triangles.shape == (2, 3) and triangles.max() < len(positions) and colors.dtype == np.uint8
    np.testing.assert_allclose(positions[triangles].reshape(-1, 3)[:, :2].min(axis=0), (1.0, 2.0))
    np.testing.assert_allclose(sorted(set(positions[triangles][..., 2].ravel())), [0, 1, 4, 5])


def test_without_the_sdk_the_option_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rerun", None)  # import rerun raises ImportError
    assert main(["replay", "--max-frames", "1", "--out", tmp_path / "out", "--rerun", tmp_path / "a.rrd"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'heightfusion[rerun]'" in err
    assert not (tmp_path / "out").exists()  # refused before the run
