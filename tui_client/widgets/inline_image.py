"""A picture drawn inside a timeline row, from bytes the client downloaded.

The timeline is an option list of Rich renderables, so the picture is one too: the
image as coloured half-cells (textual-image's renderer), which any colour terminal
shows. The full-size viewer uses textual-image's widget instead, which picks kitty,
sixel or half-cells by terminal. Bytes that do not decode draw a placeholder line.
"""

from __future__ import annotations

import io

import textual_image.widget  # noqa: F401 -- asks the terminal its cell size now, before Textual owns it
from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.text import Text
from textual_image.renderable.halfcell import Image as HalfcellImage

#: The most cells an inline picture takes: wide enough to recognise, short enough to scroll past.
MAX_WIDTH = 40
MAX_HEIGHT = 8


class InlineImage:
    """A Rich renderable for image ``data`` (the bytes are kept for the viewer and tests)."""

    def __init__(self, mxc: str, data: bytes, indent: int = 6) -> None:
        self.mxc = mxc
        self.data = data
        self.indent = indent
        self._renderable: HalfcellImage | None = None
        self._cells: tuple[int, int] | None = None
        self.error: str | None = None
        try:
            with PILImage.open(io.BytesIO(data)) as probe:
                width, height = probe.size
            # Half-cells: a cell is one pixel wide and two tall once scaled, so rows = h/2 per column.
            columns = max(1, min(MAX_WIDTH, width))
            rows = max(1, round(columns * height / width / 2))
            if rows > MAX_HEIGHT:
                rows = MAX_HEIGHT
                columns = max(1, min(MAX_WIDTH, round(rows * 2 * width / height)))
            self._cells = (columns, rows)
            self._renderable = HalfcellImage(io.BytesIO(data), width=columns, height=rows)
        except (UnidentifiedImageError, OSError, ValueError, ZeroDivisionError) as error:
            self.error = str(error) or type(error).__name__

    @property
    def ok(self) -> bool:
        return self._renderable is not None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self._renderable is None or self._cells is None:
            yield Text(" " * self.indent + "(picture cannot be shown)", style="dim italic")
            return
        pad = Segment(" " * self.indent)
        lines = console.render_lines(self._renderable, options.update(width=self._cells[0], height=self._cells[1]),
                                     pad=False)
        for line in lines:
            yield pad
            yield from line
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        width = self.indent + (self._cells[0] if self._cells else 30)
        return Measurement(width, width)
