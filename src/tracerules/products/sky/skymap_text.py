"""The lettering of ``skymap.png``, drawn with Pillow on the rendered Matplotlib canvas.

Matplotlib lays out and rasterises every line of text anew on each draw, a few milliseconds
per line: with some fifty labels that was most of the figure's time. Pillow draws the same
DejaVu Sans glyphs (Matplotlib's own font file) in tens of microseconds, so the figure keeps
Matplotlib for the graphics and writes its words here. Positions are in image pixels, origin
at the top left.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

INK, MUTED, FAINT = (20, 24, 28), (101, 123, 131), (88, 110, 117)
_FREETYPE = threading.RLock()


@functools.lru_cache(maxsize=8)
def font(size: int, bold: bool = False) -> Any:
    """DejaVu Sans (Matplotlib's default face, from its own data folder) at ``size`` px."""
    import matplotlib
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    # The basic layout engine: left-to-right Latin text needs no shaping, and raqm's costs.
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)


@functools.lru_cache(maxsize=1024)
def _stencil(text: str, size: int, bold: bool, anchor: str) -> tuple[Any, tuple[int, int]]:
    """The text's coverage mask and its offset from the anchor point, kept: most words of the
    figure (labels, grid values, the legend) are the same in every figure."""
    from PIL import Image, ImageDraw

    with _FREETYPE:  # one FreeType face serves every thread: render with it one at a time
        face = font(size, bold)
        left, top, right, bottom = face.getbbox(text, anchor=anchor)
        if right <= left or bottom <= top:
            return None, (0, 0)
        mask = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=face, anchor=anchor)
    return mask, (left, top)


class Lettering:
    """Writes on one RGB image: text anchored like Matplotlib's ha/va, and small legends."""

    def __init__(self, image: Any) -> None:
        from PIL import ImageDraw

        self.image = image
        self.draw = ImageDraw.Draw(image)

    def text(
        self,
        xy: tuple[float, float],
        text: str,
        size: int = 11,
        *,
        anchor: str = "la",
        colour: tuple[int, int, int] = INK,
        bold: bool = False,
    ) -> None:
        """``anchor`` is Pillow's: l/m/r horizontally, a/m/s/d vertically (top/middle/...)."""
        mask, (left, top) = _stencil(text, size, bold, anchor)
        if mask is not None:
            self.image.paste(colour, (round(xy[0]) + left, round(xy[1]) + top), mask)

    def rows(
        self, x: float, y: float, rows: Sequence[tuple[str, str]], size: int = 11, gap: int = 4
    ) -> None:
        """Label above value, one pair under the other: the side panel of key numbers."""
        step = size + 3
        for label, value in rows:
            self.text((x, y), label, size - 1, colour=MUTED)
            self.text((x, y + step), value, size)
            y += 2 * step + gap

    def legend(
        self, x: float, y: float, entries: Sequence[tuple[str, Any]], width: float, size: int = 11
    ) -> None:
        """Entries (label, sample) laid out in rows across ``width`` px from (x, y).

        A sample is ("line", rgb, dashed) or ("dot", rgb) or ("cross", rgb).
        """
        left, column = x, width / 4.0
        for i, (label, sample) in enumerate(entries):
            if i and i % 4 == 0:
                x, y = left, y + size + 8
            self._sample(x, y + size / 2 + 1, sample)
            self.text((x + 26, y), label, size)
            x += column

    def _sample(self, x: float, y: float, sample: Any) -> None:
        kind, colour = sample[0], sample[1]
        if kind == "line":
            dashed = len(sample) > 2 and sample[2]
            spans = [(0, 6), (9, 15), (18, 22)] if dashed else [(0, 22)]
            for a, b in spans:
                self.draw.line([(x + a, y), (x + b, y)], fill=colour, width=2)
        elif kind == "dot":
            self.draw.line([(x, y), (x + 22, y)], fill=colour, width=1)
            self.draw.ellipse([(x + 7, y - 4), (x + 15, y + 4)], fill=colour, outline=INK)
        else:  # a cross
            self.draw.line([(x + 6, y), (x + 16, y)], fill=colour, width=2)
            self.draw.line([(x + 11, y - 5), (x + 11, y + 5)], fill=colour, width=2)

    def colour_bar(
        self,
        box: tuple[int, int, int, int],
        colours: np.ndarray[Any, Any],
        ticks: Sequence[tuple[float, str]],
        label: str,
    ) -> None:
        """A horizontal bar of ``colours`` (n x 3 uint8) in ``box`` (x0, y0, x1, y1), with
        tick labels at fractions of its length and a label under them."""
        from PIL import Image

        x0, y0, x1, y1 = box
        strip = np.repeat(colours[None, :, :3], y1 - y0, axis=0)
        self.image.paste(Image.fromarray(strip).resize((x1 - x0, y1 - y0)), (x0, y0))
        self.draw.rectangle(box, outline=MUTED)
        for fraction, text in ticks:
            tx = x0 + fraction * (x1 - x0)
            self.draw.line([(tx, y1), (tx, y1 + 3)], fill=MUTED)
            self.text((tx, y1 + 4), text, 9, anchor="ma", colour=FAINT)
        self.text(((x0 + x1) / 2, y1 + 17), label, 10, anchor="ma", colour=FAINT)
