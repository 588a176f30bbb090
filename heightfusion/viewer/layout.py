"""Rectangles of the window's framebuffer that panels are drawn into."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rect:
    """A framebuffer rectangle in pixels, GL style: (x, y) is the bottom-left corner."""

    x: int
    y: int
    width: int
    height: int

    @property
    def viewport(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.width, self.height

    def contains(self, x: float, y_from_top: float, framebuffer_height: int) -> bool:
        """Whether a cursor position (pixels, y from the window's top as glfw gives it) falls inside."""
        y = framebuffer_height - y_from_top
        return self.x <= x < self.x + self.width and self.y <= y < self.y + self.height

    def fit(self, aspect: float) -> Rect:
        """The largest centred sub-rectangle of width / height ``aspect`` (letterboxing an image)."""
        if self.width <= 0 or self.height <= 0:
            return self
        width = min(self.width, round(self.height * aspect))
        height = min(self.height, round(self.width / aspect))
        return Rect(self.x + (self.width - width) // 2, self.y + (self.height - height) // 2, width, height)



def grid_cells(area: Rect, rows: int, cols: int, gap: int = 4) -> list[list[Rect]]:
    """``rows`` x ``cols`` cells of ``area`` separated by ``gap`` px, row 0 at the top."""
    cell_w = (area.width - gap * (cols - 1)) // cols
    cell_h = (area.height - gap * (rows - 1)) // rows
    return [
        [Rect(area.x + c * (cell_w + gap), area.y + area.height - (r + 1) * cell_h - r * gap, cell_w, cell_h)
         for c in range(cols)]
        for r in range(rows)
    ]


def span(first: Rect, last: Rect) -> Rect:
    """The rectangle from ``first``'s bottom-left to ``last``'s top-right (cells of one row)."""
    return Rect(first.x, min(first.y, last.y), last.x + last.width - first.x,
                max(first.y + first.height, last.y + last.height) - min(first.y, last.y))
