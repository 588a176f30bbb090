"""Differentiable height-map renderers behind one interface; pick one with :func:`make_renderer`."""

from __future__ import annotations

from .base import Capabilities, Renderer
from .context import GLUnavailableError
from .fragments import Fragments


def _gl(**kwargs) -> Renderer:
    from .gl import GLRenderer

    return GLRenderer(**kwargs)


def _raymarch(**kwargs) -> Renderer:
    from .raymarch import RaymarchRenderer

    return RaymarchRenderer(**kwargs)


def _raymarch_gl(**kwargs) -> Renderer:
    from .raymarch_gl import RaymarchGLRenderer

    return RaymarchGLRenderer(**kwargs)


def _shaded(**kwargs) -> Renderer:
    from .shaded import ShadedRenderer

    return ShadedRenderer(**kwargs)


def _points(**kwargs) -> Renderer:
    from .points import PointsRenderer

    return PointsRenderer(**kwargs)


_BACKENDS = {"gl": _gl, "raymarch": _raymarch, "raymarch-gl": _raymarch_gl, "shaded": _shaded, "points": _points}

#: Names accepted by :func:`make_renderer`.
BACKENDS = tuple(_BACKENDS)


def make_renderer(name: str = "gl", **kwargs) -> Renderer:
    """A renderer backend by name; ValueError listing the valid names for an unknown one.

    No GL context is created here: GL backends create (or adopt) it on their first render.

    Example:
        >>> import heightfusion as hf
        >>> renderer = hf.make_renderer("raymarch")  # or "gl", "raymarch-gl", "shaded", "points"
        >>> renderer.capabilities.mesh_triangles
        True
    """
    try:
        factory = _BACKENDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown renderer backend {name!r}; valid backends: {', '.join(BACKENDS)}") from None
    return factory(**kwargs)


__all__ = ["BACKENDS", "Capabilities", "Fragments", "GLUnavailableError", "Renderer", "make_renderer"]
