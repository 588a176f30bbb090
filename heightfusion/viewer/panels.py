"""2D panels of a window: images (camera, depth, free space) and lines of text, drawn as textured quads."""

from __future__ import annotations

import cv2
import numpy as np

from ..render.glsl import load_shader
from .layout import Rect

_FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_HEIGHT_PX = 20  # one line of text, baseline gap included


def text_image(lines: list[str], width: int, color=(235, 235, 235), background=(0, 0, 0, 170)) -> np.ndarray:
    """(len(lines) * TEXT_HEIGHT_PX, width, 4) uint8 RGBA with ``lines`` written left-aligned."""
    rgba = np.zeros((max(len(lines), 1) * TEXT_HEIGHT_PX, max(width, 1), 4), dtype=np.uint8)
    rgba[:] = background
    for k, line in enumerate(lines):
        cv2.putText(rgba, line, (6, (k + 1) * TEXT_HEIGHT_PX - 6), _FONT, 0.48, (*color, 255), 1, cv2.LINE_AA)
    return rgba


class ImagePanel:
    """An image shown in a rectangle of the window, letterboxed to keep its aspect.

    ``set_image`` re-uploads only the pixels; the texture is reallocated when the size changes.
    """

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.program = ctx.program(vertex_shader=load_shader("panel.vert"), fragment_shader=load_shader("panel.frag"))
        self.vao = ctx.vertex_array(self.program, [])
        self.texture = None
        self.aspect = 1.0

    def set_image(self, image: np.ndarray) -> None:
        """Show ``image``: (H, W, 3) RGB or (H, W, 4) RGBA uint8, row 0 at the top."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"panel image must be (H, W, 3) or (H, W, 4) uint8, got shape {image.shape}")
        if image.shape[2] == 3:
            image = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
        h, w = image.shape[:2]
        if self.texture is None or self.texture.size != (w, h):
            if self.texture is not None:
                self.texture.release()
            self.texture = self.ctx.texture((w, h), 4)
        self.texture.write(image)
        self.aspect = w / h

    def draw(self, rect: Rect, fit: bool = True) -> Rect:
        """Draw into ``rect`` (letterboxed when ``fit``); returns the rectangle drawn. Alpha blends."""
        import moderngl

        if self.texture is None:
            return rect
        drawn = rect.fit(self.aspect) if fit else rect
        self.ctx.viewport = drawn.viewport
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        self.texture.use(0)
        self.program["image"].value = 0
        self.vao.render(moderngl.TRIANGLE_STRIP, vertices=4)
        self.ctx.disable(moderngl.BLEND)
        return drawn

    def release(self) -> None:
        if self.texture is not None:
            self.texture.release()
        self.vao.release()
        self.program.release()
