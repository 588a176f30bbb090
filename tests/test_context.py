"""GL context handling: lazy, shared, adoptable, and a clear error without OpenGL."""

import moderngl
import pytest

import heightfusion as hf
from heightfusion.render import context


def test_missing_opengl_is_a_clear_error(monkeypatch):
    def no_egl(*args, **kwargs):
        raise Exception("libEGL.so.1: cannot open shared object file")

    monkeypatch.setattr(context, "_context", None)
    monkeypatch.setattr(moderngl, "create_context", no_egl)
    with pytest.raises(hf.GLUnavailableError, match=r"apt-get install .*libegl1.*raymarch"):
        hf.make_renderer("gl").render(
            hf.HeightMap((0, 0), 0.1, (4, 4)), hf.PinholeCamera(8, 6, 5, 5, 3.5, 2.5), hf.look_at([0.15, 0.15, 1.0], [0.15, 0.16, 0.0])
        )


def test_use_context_adopts_an_apps_context(monkeypatch):
    own = moderngl.create_context(standalone=True, backend="egl")
    monkeypatch.setattr(context, "_context", None)
    context.use_context(own)
    renderer = hf.make_renderer("gl")
    assert renderer.ctx is own
    grid = hf.HeightMap((0, 0), 0.1, (4, 4))
    cam = hf.PinholeCamera(8, 6, 5, 5, 3.5, 2.5)
    depth = renderer.render_depth(grid, cam, hf.look_at([0.15, 0.15, 1.0], [0.15, 0.16, 0.0]))
    assert depth[3, 4] == pytest.approx(1.0, rel=1e-3)  # the map, straight below
    renderer.release()
    own.release()


def test_too_old_opengl_is_refused():
    class OldContext:
        version_code = 330
        info = {"GL_RENDERER": "ancient"}

    with pytest.raises(hf.GLUnavailableError, match="3.3.*too old"):
        context.use_context(OldContext())


def test_software_renderer_threads_default_and_override(monkeypatch):
    monkeypatch.delenv("LP_NUM_THREADS", raising=False)
    monkeypatch.setattr(context.os, "cpu_count", lambda: 2)
    context.software_renderer_threads()
    assert context.os.environ["LP_NUM_THREADS"] == str(context.LLVMPIPE_MIN_THREADS)  # more than the 2 cores
    monkeypatch.setattr(context.os, "cpu_count", lambda: 16)
    monkeypatch.delenv("LP_NUM_THREADS")
    context.software_renderer_threads()
    assert context.os.environ["LP_NUM_THREADS"] == "16"  # one per core where there are more
    monkeypatch.setenv("LP_NUM_THREADS", "1")
    context.software_renderer_threads()
    assert context.os.environ["LP_NUM_THREADS"] == "1"  # the user's choice stands


def test_info_names_the_gl_renderer_and_the_stereo_device(capsys):
    import torch

    from heightfusion.cli import main

    assert main(["info"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"OpenGL: {context.describe()}"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert lines[1].startswith(f"stereo: {expected}")
