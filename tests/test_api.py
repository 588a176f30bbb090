"""The top-level API research code imports: every entry documented with an example, and the examples run."""

import doctest
import inspect
import warnings

import numpy as np
import pytest

import heightfusion as hf

# Values, not documented objects: BACKENDS is a tuple of names (documented where make_renderer is).
_NOT_DOCUMENTED_OBJECTS = {"BACKENDS"}
_ENTRIES = sorted(set(hf.__all__) - _NOT_DOCUMENTED_OBJECTS)


def _examples(name: str) -> list[doctest.DocTest]:
    obj = getattr(hf, name)
    finder = doctest.DocTestFinder(recurse=inspect.isclass(obj))  # a class's methods; not a module's members
    return [t for t in finder.find(obj, f"heightfusion.{name}", globs={}) if t.examples]


@pytest.mark.parametrize("name", _ENTRIES)
def test_every_entry_has_an_example_that_runs(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write here
    tests = _examples(name)
    assert tests, f"heightfusion.{name} has no docstring example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"heightfusion.{name}: {runner.failures} of {runner.tries} examples failed (see output)"


def test_entries_exist_and_import_no_torch_until_asked():
    import subprocess
    import sys

    code = ("import sys, heightfusion as hf; assert 'torch' not in sys.modules; "
            "[getattr(hf, n) for n in hf.__all__ if n != 'MotionStereo']; assert 'torch' not in sys.modules; "
            "hf.MotionStereo; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_old_argument_orders_warn_and_give_the_same_result():
    camera = hf.PinholeCamera(32, 24, 25.0, 25.0, 15.5, 11.5)
    T_wc = hf.look_at((0.0, -0.3, 1.0), (0.0, 0.0, 0.0))
    renderer = hf.make_renderer("raymarch")
    depth = renderer.render_depth(hf.HeightMap((-0.5, -0.5), 0.05, (21, 21), initial_height=0.1), camera, T_wc)
    new, old = (hf.HeightMap((-0.5, -0.5), 0.05, (21, 21)) for _ in range(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hf.HeightMapFuser(new, renderer).fuse(camera, T_wc, depth)
    with pytest.warns(DeprecationWarning, match=r"fuse\(camera, T_wc, depth\)"):
        hf.HeightMapFuser(old, renderer).fuse(depth, T_wc, camera)
    np.testing.assert_array_equal(old.heights, new.heights)

    image = np.random.default_rng(0).integers(0, 255, camera.shape + (3,), dtype=np.uint8)
    with pytest.warns(DeprecationWarning, match=r"push\(camera, T_wc, image\)"):
        assert hf.MotionStereo().push(image, T_wc, camera).reason == hf.MotionStereo().push(camera, T_wc, image).reason
    from heightfusion.depth import PlaneSweepStereo

    moved = T_wc.copy()
    moved[0, 3] += 0.05
    stereo = PlaneSweepStereo()
    with pytest.warns(DeprecationWarning, match=r"estimate\(camera, ref_T_wc"):
        before = stereo.estimate(image, T_wc, [image], [moved], camera)
    after = stereo.estimate(camera, T_wc, image, [image], [moved])
    np.testing.assert_array_equal(before.valid, after.valid)


def test_library_modules_parse_no_command_lines():
    import pathlib

    package = pathlib.Path(inspect.getfile(hf)).parent
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if p.parent.name != "cli" and "argparse" in p.read_text()]
    assert offenders == []
