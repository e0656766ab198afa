"""The message composer: a multi-line editor where Enter sends and Ctrl+J adds a line."""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea


class Composer(TextArea):
    """Type a message (markdown) or a /command.

    | Key | Action |
    | --- | --- |
    | Enter | send |
    | Ctrl+J / Alt+Enter / Shift+Enter | new line |
    | Up (when empty) | edit your last message |
    | Escape | cancel reply or edit; move to the timeline |
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Send", show=True, priority=True),
        Binding("ctrl+j,alt+enter,shift+enter", "newline", "New line", show=False, priority=True),
    ]

    DEFAULT_CSS = """
    Composer {
        height: auto;
        min-height: 3;
        max-height: 8;
        border: round $panel-lighten-2;
        padding: 0 1;
    }
    Composer:focus {
        border: round $accent;
    }
    """

    class Submitted(Message):
        """The user pressed Enter: send ``text``."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class EditLast(Message):
        """Up in an empty composer: edit the last own message."""

    class Cancelled(Message):
        """Escape: drop any reply/edit in progress."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         placeholder="Message (Enter to send, /help for commands)", **kwargs)  # type: ignore[arg-type]

    def action_submit(self) -> None:
        text = self.text.strip("\n")
        if text.strip():
            self.post_message(self.Submitted(text))

    def action_newline(self) -> None:
        self.insert("\n")

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "up" and not self.text:
            event.stop()
            event.prevent_default()
            self.post_message(self.EditLast())
            return
        if event.key == "escape":
            event.stop()
            event.prevent_default()
            self.post_message(self.Cancelled())
            return
        await super()._on_key(event)
