"""A glfw window whose moderngl context heightfusion's GL renderers share.

The window's context becomes the context of every GL backend (:func:`heightfusion.render.context.use_context`),
so the live app fuses and draws with one context and no copies between contexts. Frames are drawn into an
offscreen framebuffer the size of the window and blitted to the screen: a screenshot then reads exactly
what was drawn, also from a hidden window or one larger than the X screen.

Input goes through glfw's callbacks to the ``on_key``, ``on_mouse_button``, ``on_cursor`` and ``on_scroll``
attributes (plain callables, None to ignore), so tests can drive them the way glfw does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import numpy as np

from ..render import context

#: Smallest framebuffer side, pixels, that the apps lay their panels out in.
MIN_DRAW_SIZE = 64


class WindowUnavailableError(RuntimeError):
    """No window can be opened (no display, glfw failed, OpenGL too old)."""


def check_window_size(size) -> None:
    """ValueError unless ``size`` is a (width, height) the apps can lay out (each at least MIN_DRAW_SIZE)."""
    if len(size) != 2 or min(size) < MIN_DRAW_SIZE:
        raise ValueError(f"--size must be two numbers of at least {MIN_DRAW_SIZE} pixels, got {' '.join(map(str, size))}")


def _check_display() -> None:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise WindowUnavailableError(
            "no display to open a window on (DISPLAY is not set); run from a desktop session, or headless "
            "under Xvfb: `xvfb-run -a heightfusion ...`"
        )


class Window:
    """A resizable window with an OpenGL 4.3 core context.

    Args:
        title: window title.
        size: (width, height) in screen coordinates.
        visible: False opens it hidden (scripted runs that only want a screenshot).
    """

    def __init__(self, title: str, size: tuple[int, int] = (1280, 720), visible: bool = True) -> None:
        import glfw
        import moderngl

        _check_display()
        context.software_renderer_threads()
        if not glfw.init():
            raise WindowUnavailableError(f"glfw could not initialise: {glfw.get_error()}")
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, context.REQUIRED_GL_VERSION // 100)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, context.REQUIRED_GL_VERSION // 10 % 10)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        glfw.window_hint(glfw.VISIBLE, bool(visible))
        self.handle = glfw.create_window(int(size[0]), int(size[1]), title, None, None)
        if not self.handle:
            error = glfw.get_error()
            glfw.terminate()
            raise WindowUnavailableError(f"could not open an OpenGL 4.3 window: {error}")
        glfw.make_context_current(self.handle)
        glfw.swap_interval(0)  # the loop is paced by the camera, not the display
        try:
            self.ctx = moderngl.create_context(require=context.REQUIRED_GL_VERSION)
            context.use_context(self.ctx)
        except Exception as exc:
            glfw.destroy_window(self.handle)
            glfw.terminate()
            raise WindowUnavailableError(f"no usable OpenGL context in the window: {exc}") from None
        self.on_key: Callable[[int, int, int], None] | None = None  # (key, action, mods)
        self.on_mouse_button: Callable[[int, int, int], None] | None = None  # (button, action, mods)
        self.on_cursor: Callable[[float, float], None] | None = None  # (x, y) pixels from top-left
        self.on_scroll: Callable[[float, float], None] | None = None  # (dx, dy)
        glfw.set_key_callback(self.handle, lambda _w, key, _scancode, action, mods: self._dispatch(self.on_key, key, action, mods))
        glfw.set_mouse_button_callback(self.handle, lambda _w, b, action, mods: self._dispatch(self.on_mouse_button, b, action, mods))
        glfw.set_cursor_pos_callback(self.handle, lambda _w, x, y: self._dispatch(self.on_cursor, *self._to_framebuffer(x, y)))
        glfw.set_scroll_callback(self.handle, lambda _w, dx, dy: self._dispatch(self.on_scroll, dx, dy))
        self._fbo = None
        self._fbo_size: tuple[int, int] | None = None

    @staticmethod
    def _dispatch(handler, *args) -> None:
        if handler is not None:
            handler(*args)

    def _to_framebuffer(self, x: float, y: float) -> tuple[float, float]:
        """Cursor position in framebuffer pixels (HiDPI screens have more pixels than screen units)."""
        import glfw

        win_w, win_h = glfw.get_window_size(self.handle)
        fb_w, fb_h = self.size
        return x * fb_w / max(win_w, 1), y * fb_h / max(win_h, 1)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the framebuffer in pixels."""
        import glfw

        return glfw.get_framebuffer_size(self.handle)

    @property
    def drawable(self) -> bool:
        """Whether the window is large enough to lay panels out in (False while minimised)."""
        width, height = self.size
        return width >= MIN_DRAW_SIZE and height >= MIN_DRAW_SIZE

    @property
    def should_close(self) -> bool:
        import glfw

        return bool(glfw.window_should_close(self.handle))

    def close(self) -> None:
        """Ask the loop to end (as the window's close button does)."""
        import glfw

        glfw.set_window_should_close(self.handle, True)

    def begin_frame(self, background=(0.12, 0.12, 0.14)):
        """Bind the (window-sized) offscreen framebuffer and clear it; returns it."""
        self.ctx.__enter__()  # the window's context, current whatever ran before
        size = self.size
        if self._fbo_size != size:
            self._release_fbo()
            width, height = max(size[0], 1), max(size[1], 1)
            self._fbo = self.ctx.framebuffer(
                color_attachments=[self.ctx.renderbuffer((width, height), 4)],
                depth_attachment=self.ctx.depth_renderbuffer((width, height)),
            )
            self._fbo_size = size
        self._fbo.use()
        self._fbo.viewport = (0, 0, *size)
        self._fbo.clear(*background, 1.0, depth=1.0)
        return self._fbo

    def end_frame(self) -> None:
        """Show the frame and handle pending input events."""
        import glfw

        self.ctx.copy_framebuffer(self.ctx.screen, self._fbo)
        glfw.swap_buffers(self.handle)
        glfw.poll_events()

    def skip_frame(self) -> None:
        """Handle input without drawing (a minimised window)."""
        import glfw

        glfw.poll_events()

    def read_rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB of the last frame drawn, top row first."""
        if self._fbo is None:
            raise RuntimeError("nothing drawn yet: call begin_frame() first")
        width, height = self._fbo_size
        data = self._fbo.read(viewport=(0, 0, width, height), components=3, alignment=1)
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)[::-1].copy()

    def _release_fbo(self) -> None:
        if self._fbo is not None:
            for attachment in (*self._fbo.color_attachments, self._fbo.depth_attachment):
                attachment.release()
            self._fbo.release()
            self._fbo = None

    def destroy(self) -> None:
        """Close the window and forget its context (renderers made later use a headless one)."""
        import glfw

        self._release_fbo()
        context.release_context()
        glfw.destroy_window(self.handle)
        glfw.terminate()
