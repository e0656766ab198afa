"""A picture drawn inside a timeline row, from bytes the client downloaded.

The timeline is an option list of Rich renderables, so the picture is one too, drawn
with the best protocol the terminal has (:func:`image_protocol`):

- ``kitty``: the kitty graphics protocol with Unicode placeholders (textual-image's
  renderable): the image is sent to the terminal once, and the cells are ordinary
  characters that scroll and clip like text.
- ``sixel``: the cells are blank, marked with :data:`SIXEL_META`; the :class:`Timeline`
  finds them in its rendered lines and writes the sixel picture over them
  (:meth:`InlineImage.sixel_rows`), cropped to the rows on screen.
- ``halfcell``: coloured half-cells (textual-image's renderable), which any colour
  terminal shows. The fallback, and what tests and snapshots use (no real terminal).

Whatever the protocol, the picture takes the same cells (at most :data:`MAX_WIDTH` x
:data:`MAX_HEIGHT`, aspect kept). Bytes that do not decode draw a placeholder line.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Literal

import textual_image.widget  # noqa: F401 -- asks the terminal its cell size now, before Textual owns it
from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual_image.renderable import Image as DetectedImage
from textual_image.renderable import SixelImage, TGPImage
from textual_image.renderable.halfcell import Image as HalfcellImage

from ..sixel import encode_sixel

#: The most cells an inline picture takes: wide enough to recognise, short enough to scroll past.
MAX_WIDTH = 40
MAX_HEIGHT = 8

ImageProtocol = Literal["kitty", "sixel", "halfcell"]
PROTOCOLS: tuple[ImageProtocol, ...] = ("kitty", "sixel", "halfcell")
#: Environment variable that overrides the detected protocol (kitty, sixel, halfcell or auto).
PROTOCOL_ENV = "PARLEY_TUI_IMAGES"
#: Style meta key on the blank cells of a sixel picture: (picture key, row).
SIXEL_META = "parley-sixel"


def choose_protocol(detected: str, override: str | None = None) -> ImageProtocol:
    """The protocol to draw with: ``override`` when it names one, else what was detected
    (anything unknown means half-cells)."""
    wanted = (override or "").strip().lower()
    for protocol in PROTOCOLS:
        if wanted == protocol:
            return protocol
    for protocol in PROTOCOLS:
        if detected == protocol:
            return protocol
    return "halfcell"


def detected_protocol() -> str:
    """What textual-image found when it asked the terminal (at import, before Textual starts)."""
    if DetectedImage is TGPImage:
        return "kitty"
    if DetectedImage is SixelImage:
        return "sixel"
    return "halfcell"


def image_protocol(environ: Mapping[str, str] | None = None) -> ImageProtocol:
    """The protocol for this terminal, honouring :data:`PROTOCOL_ENV`."""
    environ = os.environ if environ is None else environ
    return choose_protocol(detected_protocol(), environ.get(PROTOCOL_ENV))


def cell_pixels() -> tuple[int, int]:
    """A terminal cell's size in pixels (width, height), as textual-image measured it at start."""
    try:
        # Private to textual-image, but it is the size its own renderables draw with.
        from textual_image._terminal import get_cell_size

        size = get_cell_size()
        return (size.width, size.height) if size.width > 0 and size.height > 0 else (10, 20)
    except Exception:  # noqa: BLE001 -- no terminal, or the library moved it: the VT340 size
        return (10, 20)


def fit_cells(width: int, height: int, protocol: ImageProtocol, cell: tuple[int, int]) -> tuple[int, int]:
    """(columns, rows) for a ``width`` x ``height`` pixel picture, within the maximum box.

    Half-cells show one pixel per column and two per row; pixel protocols scale the
    picture to fill the box, a cell being ``cell`` (width, height) pixels.
    """
    if protocol == "halfcell":
        columns = max(1, min(MAX_WIDTH, width))
        rows = max(1, round(columns * height / width / 2))
        if rows > MAX_HEIGHT:
            rows = MAX_HEIGHT
            columns = max(1, min(MAX_WIDTH, round(rows * 2 * width / height)))
        return columns, rows
    cell_width, cell_height = cell
    scale = min(MAX_WIDTH * cell_width / width, MAX_HEIGHT * cell_height / height)
    return (max(1, min(MAX_WIDTH, round(width * scale / cell_width))),
            max(1, min(MAX_HEIGHT, round(height * scale / cell_height))))


class InlineImage:
    """A Rich renderable for image ``data`` (the bytes are kept for the viewer and tests)."""

    def __init__(self, mxc: str, data: bytes, indent: int = 6, protocol: ImageProtocol = "halfcell",
                 cell: tuple[int, int] | None = None) -> None:
        self.mxc = mxc
        self.data = data
        self.indent = indent
        self.protocol = protocol
        self.cell = cell or cell_pixels()
        self._renderable: HalfcellImage | TGPImage | None = None
        self._picture: PILImage.Image | None = None
        self._sixels: dict[tuple[int, int], str] = {}
        self.cells: tuple[int, int] | None = None
        self.error: str | None = None
        try:
            with PILImage.open(io.BytesIO(data)) as probe:
                width, height = probe.size
                self.cells = fit_cells(width, height, protocol, self.cell)
                if protocol == "sixel":
                    probe.load()
                    self._picture = probe.convert("RGB")
            columns, rows = self.cells
            if protocol == "kitty":
                self._renderable = TGPImage(io.BytesIO(data), width=columns, height=rows)
            elif protocol == "halfcell":
                self._renderable = HalfcellImage(io.BytesIO(data), width=columns, height=rows)
        except (UnidentifiedImageError, OSError, ValueError, ZeroDivisionError) as error:
            self.cells = None
            self.error = str(error) or type(error).__name__

    @property
    def ok(self) -> bool:
        return self.cells is not None

    @property
    def key(self) -> str:
        """Identifies this picture in rendered cells (sixel)."""
        return f"{id(self):x}"

    def sixel_rows(self, first: int, stop: int) -> str:
        """The sixel string of picture rows ``first`` to ``stop`` (cells, end exclusive)."""
        assert self._picture is not None and self.cells is not None
        cached = self._sixels.get((first, stop))
        if cached is None:
            columns, rows = self.cells
            cell_width, cell_height = self.cell
            scaled = self._picture.resize((columns * cell_width, rows * cell_height))
            part = scaled.crop((0, first * cell_height, columns * cell_width, stop * cell_height))
            cached = self._sixels[(first, stop)] = encode_sixel(part)
        return cached

    def cleanup(self) -> None:
        """Free what the terminal holds for this picture (kitty keeps images until told)."""
        if isinstance(self._renderable, TGPImage):
            self._renderable.cleanup()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.cells is None:
            yield Text(" " * self.indent + "(picture cannot be shown)", style="dim italic")
            return
        columns, rows = self.cells
        pad = Segment(" " * self.indent)
        if self.protocol == "sixel":
            for row in range(rows):
                yield pad
                yield Segment(" " * columns, Style(meta={SIXEL_META: (self.key, row)}))
                yield Segment.line()
            return
        assert self._renderable is not None
        lines = console.render_lines(self._renderable, options.update(width=columns, height=rows), pad=False)
        for line in lines:
            yield pad
            yield from line
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        width = self.indent + (self.cells[0] if self.cells else 30)
        return Measurement(width, width)
