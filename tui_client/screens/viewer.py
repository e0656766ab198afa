"""A picture at full size, drawn by textual-image (kitty, sixel or half-cells by terminal)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static
from textual_image.widget import Image as ImageWidget


class ImageViewerScreen(ModalScreen[None]):
    """One picture, as big as the screen allows.

    | Key | Action |
    | --- | --- |
    | s | save it to the downloads folder |
    | Escape / q / o | close |
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,o", "dismiss(None)", "Close"),
        Binding("s", "save", "Save"),
    ]

    DEFAULT_CSS = """
    ImageViewerScreen {
        align: center middle;
    }
    ImageViewerScreen > Vertical {
        width: 95%;
        height: 95%;
        border: round $accent;
        background: $surface;
    }
    ImageViewerScreen #viewer-image {
        width: 1fr;
        height: 1fr;
    }
    ImageViewerScreen #viewer-caption {
        height: 1;
        padding: 0 1;
    }
    """

    def __init__(self, name: str, data: bytes, on_save: Callable[[str, bytes], object] | None = None) -> None:
        super().__init__()
        self.file_name = name
        self.data = data
        self.on_save = on_save

    def compose(self) -> ComposeResult:
        with Vertical():
            try:
                yield ImageWidget(io.BytesIO(self.data), id="viewer-image")
            except Exception:  # noqa: BLE001 -- bytes that are no picture get a line instead
                yield Static(Text("This picture cannot be shown.", style="dim italic"), id="viewer-image")
            caption = Text(self.file_name, style="bold")
            caption.append("   s save · Esc close", style="dim")
            yield Static(caption, id="viewer-caption")

    def action_save(self) -> None:
        if self.on_save is not None:
            self.on_save(self.file_name, self.data)
