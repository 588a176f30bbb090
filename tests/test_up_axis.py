"""The up axis: a recording whose world is Y-up (as ICL-NUIM's is) fuses into the same map as its
Z-up original with --up y and with --up auto."""

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.cli import main
from heightfusion.metrics import evaluate
from heightfusion.synthetic import generate, write_tum
from heightfusion.up_axis import UP_AXES, axis_vector, estimate_up, rotation_to_z, up_rotation


@pytest.mark.parametrize("up", [a for a in UP_AXES if a != "auto"])
def test_rotation_to_z_is_a_rotation_taking_the_axis_up(up):
    R = rotation_to_z(axis_vector(up))
    np.testing.assert_allclose(R @ axis_vector(up), [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_bad_axis_names_are_refused():
    with pytest.raises(ValueError, match="up axis must be one of"):
        up_rotation("w", [])


@pytest.fixture(scope="module")
def y_up(tmp_path_factory):
    """The floor scene (Z up) and the same recording expressed in a world whose Y axis points up."""
    seq = generate("floor", frames=12, width=128, height=96)
    z_folder = write_tum(seq, tmp_path_factory.mktemp("z_up"))
    to_y_up = np.linalg.inv(up_rotation("y", []))
    for frame in seq.frames:
        frame.T_wc = to_y_up @ frame.T_wc
    y_folder = write_tum(seq, tmp_path_factory.mktemp("y_up"))
    (y_folder / "gt_heightmap.npz").unlink()  # the truth is a Z-up map: not this world's
    return seq.gt_heightmap, z_folder, y_folder


def test_auto_finds_the_floor_normal(y_up):
    _, _, y_folder = y_up
    normal, inliers = estimate_up(hf.datasets.open(y_folder))
    assert inliers > 100
    np.testing.assert_allclose(normal, [0, 1, 0], atol=1e-3)


@pytest.mark.parametrize("up", ["y", "auto"])
def test_a_y_up_recording_fuses_like_its_z_up_original(y_up, up):
    truth, _, y_folder = y_up
    grid = {"origin": tuple(truth.origin), "cell_size": truth.cell_size, "shape": truth.shape}
    turned = hf.replay(y_folder, up=up, progress=False, **grid)
    assert any("up axis" in m for m in turned.messages)
    e = evaluate(turned.grid, truth)
    assert e["completeness"] > 0.5 and e["median"] < 0.002, e
    plain = hf.replay(y_folder, up="z", progress=False, **grid)  # the map in the wrong plane
    assert plain.grid.observed.sum() < 0.5 * turned.grid.observed.sum()


def test_replay_takes_up_on_the_command_line(y_up, tmp_path, capsys):
    _, _, y_folder = y_up
    assert main(["replay", str(y_folder), "--up", "y", "--quiet", "--out", str(tmp_path)]) == 0
    assert "up axis: world (0.00, 1.00, 0.00) made +Z" in capsys.readouterr().err + (tmp_path / "metrics.json").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", str(y_folder), "--up", "w", "--out", str(tmp_path)])
    assert exit_info.value.code == 2


def test_up_aligned_frames_pass_over_what_the_wrapped_sequence_passes_over(tmp_path):
    """iter_frames(stale) reaches a dataset's reader through the turn; a sequence without one is read whole."""
    from heightfusion.up_axis import UpAligned

    turn = np.diag([1.0, -1.0, -1.0, 1.0])
    synthetic = generate("floor", frames=4, width=32, height=24)
    opened = hf.datasets.open(write_tum(synthetic, tmp_path / "floor"))
    late = synthetic.frames[2].timestamp  # frame 2 is due: frame 1 is passed over
    for sequence, expected in ((opened, [0, 2, 3]), (synthetic, [0, 1, 2, 3])):
        frames = list(UpAligned(sequence, turn).iter_frames(lambda t: abs(t - late) < 1e-4))
        assert [f.index for f in frames] == expected
        np.testing.assert_allclose(frames[0].T_wc, turn @ synthetic.frames[0].T_wc, atol=1e-4)  # TUM text precision
