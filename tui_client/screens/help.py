"""The help screen: every key binding and slash command in one table."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..commands import COMMANDS

#: (where, keys, what) — kept beside the widgets' docstring tables.
KEYS: list[tuple[str, str, str]] = [
    ("Anywhere", "Ctrl+K", "quick switcher: jump to a room"),
    ("Anywhere", "F1", "this help"),
    ("Anywhere", "Ctrl+N / Ctrl+P", "next / previous room"),
    ("Anywhere", "F2", "show / hide the member list (Enter on a member: chat)"),
    ("Anywhere", "Ctrl+O", "start a chat: search people"),
    ("Anywhere", "Ctrl+T", "new group"),
    ("Anywhere", "Ctrl+F", "search messages in all rooms"),
    ("Anywhere", "Ctrl+G", "jump to the first unread message"),
    ("Anywhere", "Tab / Shift+Tab", "move between room list, timeline, composer"),
    ("Anywhere", "Ctrl+Q", "quit"),
    ("Rooms", "Enter", "open the highlighted room"),
    ("Rooms", "a / x", "accept / decline an invite"),
    ("Timeline", "↑ ↓ PgUp PgDn", "select a message; the top loads older ones"),
    ("Timeline", "r / e / + / d", "reply / edit / react / delete"),
    ("Timeline", "o / s", "open a picture full size / save a file or picture"),
    ("Timeline", "Esc", "back to the composer"),
    ("Composer", "Enter", "send (markdown is formatted)"),
    ("Composer", "Ctrl+J / Alt+Enter", "new line"),
    ("Composer", "↑ (empty)", "edit your last message"),
    ("Composer", "Esc", "cancel reply/edit"),
]


class HelpScreen(ModalScreen[None]):
    """Keys and commands.

    | Key | Action |
    | --- | --- |
    | Escape / q / F1 | close |
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,f1", "dismiss(None)", "Close"),
    ]

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 78;
        max-width: 100%;
        height: 90%;
        border: round $accent;
        background: $surface;
    }
    """

    def compose(self) -> ComposeResult:
        keys = Table(title="Keys", expand=True, show_edge=False, pad_edge=False)
        keys.add_column("Where", style="dim", no_wrap=True)
        keys.add_column("Keys", style="bold", no_wrap=True)
        keys.add_column("Action")
        for where, key, what in KEYS:
            keys.add_row(where, key, what)
        commands = Table(title="Commands", expand=True, show_edge=False, pad_edge=False)
        commands.add_column("Command", style="bold", no_wrap=True)
        commands.add_column("Action")
        for name, (usage, what) in COMMANDS.items():
            commands.add_row(f"/{name} {usage}".rstrip(), what)
        with VerticalScroll():
            yield Static(keys)
            yield Static(commands)
            yield Static(Text("Esc closes this help.", style="dim", justify="center"))
