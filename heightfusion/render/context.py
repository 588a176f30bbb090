"""The one place that creates or adopts the OpenGL context every GL backend shares.

Headless EGL by default (Mesa llvmpipe on a CPU-only machine, the vendor driver on a GPU): EGL's
first device, or device N of the environment variable :data:`EGL_DEVICE_VARIABLE` (a machine with
several GPUs, or a GPU listed after the software renderer). An app with a window calls
:func:`use_context` with its window's context so that renderers draw there. Nothing here runs at
import time.
"""

from __future__ import annotations

import os
import threading

#: Lowest OpenGL version the shaders need (shader storage buffers, compute shaders).
REQUIRED_GL_VERSION = 430
#: Environment variable naming the EGL device (0, 1, ...) of the headless context.
EGL_DEVICE_VARIABLE = "HEIGHTFUSION_EGL_DEVICE"
#: Mesa's software renderer (llvmpipe) runs this many rasterizer threads at least where the environment
#: does not say (``LP_NUM_THREADS``; its own default is one per core). The thread that issues a draw sets
#: up every triangle alone, so with one rasterizer per core that core's rasterizer waits; with more
#: threads than cores the others take its share. Measured on a shared 2-core CPU, real TUM 640x480
#: frames (benchmarks/bench_threads.py: bench_realtime.py's sensor setting "auto", 144 frames, runs
#: alternated): fusion took 1.74-1.96x the Kalman map's time with 3-8 threads against 2.02-2.12x with 2,
#: the same map.
#: GPU drivers ignore the variable.
LLVMPIPE_MIN_THREADS = 4

_lock = threading.Lock()
_context = None


class GLUnavailableError(RuntimeError):
    """No usable OpenGL context could be created (missing libraries, no EGL device, too old GL).

    Example:
        >>> import heightfusion as hf
        >>> try:
        ...     hf.make_renderer("gl").render_depth(grid, camera, T_wc)
        ... except hf.GLUnavailableError as exc:  # no EGL/GL 4.3 here: fall back to the ray marcher
        ...     renderer = hf.make_renderer("raymarch")  # doctest: +SKIP
    """


_INSTALL_HINT = (
    "heightfusion's GL backends need OpenGL 4.3 through EGL. On Debian/Ubuntu install Mesa with "
    "`apt-get install libegl1 libgl1 libgl1-mesa-dri libegl-mesa0` (software rendering works), or a GPU "
    "driver with EGL; the 'raymarch' backend (make_renderer('raymarch')) needs no OpenGL."
)


def get_context():
    """The shared moderngl context, created headless (EGL) on first use."""
    global _context
    with _lock:
        if _context is None:
            _context = _create_headless()
        return _context


def use_context(ctx) -> None:
    """Make GL backends render with ``ctx`` (e.g. a glfw window's context, current on this thread).

    Renderers created before the call keep the context they were created with.
    """
    global _context
    _check_version(ctx)
    with _lock:
        _context = ctx


def release_context() -> None:
    """Forget the shared context (and release it if we created it); the next use creates a new one."""
    global _context
    with _lock:
        if _context is not None and getattr(_context, "_heightfusion_owned", False):
            _context.release()
        _context = None


def software_renderer_threads() -> None:
    """Give llvmpipe :data:`LLVMPIPE_MIN_THREADS` threads at least, unless ``LP_NUM_THREADS`` is set.

    Takes effect for GL contexts (or windows) created afterwards in this process: call it before the
    first one. :func:`get_context` and the viewer's window do.
    """
    if "LP_NUM_THREADS" not in os.environ:
        os.environ["LP_NUM_THREADS"] = str(max(os.cpu_count() or 1, LLVMPIPE_MIN_THREADS))


def _create_headless():
    software_renderer_threads()
    try:
        import moderngl
    except ImportError as exc:  # pragma: no cover - moderngl is a hard dependency
        raise GLUnavailableError(f"moderngl is not installed ({exc}). {_INSTALL_HINT}") from None
    device = os.environ.get(EGL_DEVICE_VARIABLE, "0")
    if not device.isdigit():
        raise GLUnavailableError(f"{EGL_DEVICE_VARIABLE} must be an EGL device number (0, 1, ...), got {device!r}")
    try:
        ctx = moderngl.create_context(standalone=True, backend="egl", require=REQUIRED_GL_VERSION,
                                      device_index=int(device))
    except Exception as exc:
        raise GLUnavailableError(f"could not create a headless OpenGL context ({exc}). {_INSTALL_HINT}") from None
    ctx._heightfusion_owned = True
    _check_version(ctx)
    return ctx


def _check_version(ctx) -> None:
    if ctx.version_code < REQUIRED_GL_VERSION:
        raise GLUnavailableError(
            f"OpenGL {ctx.version_code / 100:.1f} ({ctx.info.get('GL_RENDERER', '?')}) is too old. {_INSTALL_HINT}"
        )


class UsesContext:
    """Mixin for GL users: ``ctx`` is the context given as ``self._ctx``, else the shared one (lazily).

    :meth:`activate` makes it current and leaves it so: GL calls go to whichever context is current on
    the thread, an app may hold others (a window's), and moderngl's ``with ctx:`` would release the
    context on exit, breaking nested and later use.
    """

    _ctx = None

    @property
    def ctx(self):
        if self._ctx is None:
            self._ctx = get_context()
        return self._ctx

    def activate(self) -> None:
        self.ctx.__enter__()


def describe() -> str:
    """One line naming the GL renderer and version of the shared context."""
    ctx = get_context()
    return f"{ctx.info['GL_RENDERER']} | OpenGL {ctx.info['GL_VERSION']}"
