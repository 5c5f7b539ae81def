"""A Matplotlib figure kept per thread for ``skymap.png``: creating axes and Line2D artists
costs more than drawing on them, so each thread keeps one figure per layout and only moves
its lines from one render to the next. Nothing here is specific to sky maps.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["Canvas", "Lines"]


class Lines:
    """``plot`` for one axes that reuses its Line2D artists from one render to the next.

    Creating a Line2D costs about a millisecond; setting new data on a kept one costs nothing.
    Lines are kept per style, in the order they are asked for; the unused are hidden.
    """

    def __init__(self, ax: Any) -> None:
        self.ax = ax
        self._kept: dict[tuple[Any, ...], list[Any]] = {}
        self._used: dict[tuple[Any, ...], int] = {}

    def reset(self) -> None:
        for lines in self._kept.values():
            for line in lines:
                line.set_visible(False)
        self._used = {}

    def plot(self, x: Any, y: Any, **style: Any) -> None:
        key = tuple(sorted(style.items()))
        kept, used = self._kept.setdefault(key, []), self._used.get(key, 0)
        if used == len(kept):
            kept.append(self.ax.plot([], [], **style)[0])
        kept[used].set_data(x, y)
        kept[used].set_visible(True)
        self._used[key] = used + 1


Rect = tuple[float, float, float, float]


class Canvas:
    """A transparent figure, its Agg canvas and its axes (the all-sky one and an optional
    zoom), kept per thread and per layout. Between renders only the lines are moved."""

    _local = threading.local()

    def __init__(self, size_px: tuple[int, int], dpi: int, sky: Rect, zoom: Rect | None) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        size = (size_px[0] / dpi, size_px[1] / dpi)
        self.figure = Figure(figsize=size, dpi=dpi, facecolor="none")
        self.canvas = FigureCanvasAgg(self.figure)
        self.sky = Lines(self._axes(sky))
        self.sky.ax.set_aspect("equal")
        self.zoom = Lines(self._axes(zoom)) if zoom is not None else None

    def _axes(self, rect: Rect) -> Any:
        ax = self.figure.add_axes(rect)
        ax.axis("off")
        return ax

    @classmethod
    def get(cls, size_px: tuple[int, int], dpi: int, sky: Rect, zoom: Rect | None) -> Canvas:
        """This thread's canvas for the layout, its lines hidden for a new render."""
        kept: dict[Any, Canvas] = cls._local.__dict__.setdefault("kept", {})
        key = (size_px, dpi, sky, zoom)
        if key not in kept:
            kept[key] = cls(size_px, dpi, sky, zoom)
        canvas = kept[key]
        for lines in (canvas.sky, canvas.zoom):
            if lines is not None:
                lines.reset()
        return canvas
