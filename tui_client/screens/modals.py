"""Small modal screens: the Ctrl+K quick switcher, a one-line prompt, and result lists."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option


def fuzzy_score(query: str, candidate: str) -> int | None:
    """Score ``candidate`` for ``query`` as a subsequence match; None when it does not match.

    Higher is better: consecutive letters and matches at word starts count extra, so
    "gen" ranks "General" above "Agent notes".
    """
    query, text = query.lower(), candidate.lower()
    if not query:
        return 0
    score, position, previous = 0, 0, -2
    for char in query:
        found = text.find(char, position)
        if found < 0:
            return None
        score += 1
        if found == previous + 1:
            score += 3
        if found == 0 or not text[found - 1].isalnum():
            score += 5
        previous, position = found, found + 1
    return score * 100 - len(text)


class QuickSwitcher(ModalScreen[str | None]):
    """Jump to a room by typing part of its name.

    | Key | Action |
    | --- | --- |
    | (type) | filter rooms (fuzzy) |
    | Up / Down | choose |
    | Enter | open |
    | Escape | close |
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("down", "move(1)", "Next", show=False),
        Binding("up", "move(-1)", "Previous", show=False),
    ]

    DEFAULT_CSS = """
    QuickSwitcher {
        align: center top;
    }
    QuickSwitcher > Vertical {
        width: 60;
        height: auto;
        max-height: 18;
        margin-top: 2;
        border: round $accent;
        background: $surface;
    }
    QuickSwitcher OptionList {
        height: auto;
        max-height: 12;
        border: none;
    }
    """

    def __init__(self, rooms: list[tuple[str, str]]) -> None:
        super().__init__()
        self.rooms = rooms  # (room id, display name)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Input(placeholder="Jump to room…", id="switcher-query")
            yield OptionList(markup=False, id="switcher-results")

    def on_mount(self) -> None:
        self._filter("")
        self.query_one(Input).focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self._filter(event.value)

    def _filter(self, query: str) -> None:
        scored = [(fuzzy_score(query, name), room_id, name) for room_id, name in self.rooms]
        ranked = sorted((s for s in scored if s[0] is not None), key=lambda s: -s[0])  # type: ignore[operator]
        results = self.query_one(OptionList)
        results.set_options(Option(Text(name), id=room_id) for _, room_id, name in ranked)
        results.highlighted = 0 if ranked else None

    def action_move(self, step: int) -> None:
        results = self.query_one(OptionList)
        if results.option_count:
            results.highlighted = ((results.highlighted or 0) + step) % results.option_count

    @on(Input.Submitted)
    def _submit(self) -> None:
        results = self.query_one(OptionList)
        if results.highlighted is not None and results.option_count:
            self.dismiss(results.get_option_at_index(results.highlighted).id)

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line of text (e.g. the reaction to add)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    DEFAULT_CSS = """
    PromptScreen {
        align: center middle;
    }
    PromptScreen > Vertical {
        width: 50;
        height: auto;
        border: round $accent;
        background: $surface;
        padding: 0 1;
    }
    """

    def __init__(self, title: str, value: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.title_text))
            yield Input(self.value)

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


class ResultsScreen(ModalScreen[None]):
    """A scrollable list of lines (search results), closed with Escape."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Close"), Binding("q", "dismiss(None)", "Close", show=False)]

    DEFAULT_CSS = """
    ResultsScreen {
        align: center middle;
    }
    ResultsScreen > Vertical {
        width: 90%;
        height: 80%;
        border: round $accent;
        background: $surface;
    }
    ResultsScreen OptionList {
        height: 1fr;
        border: none;
    }
    """

    def __init__(self, title: str, lines: list[Text]) -> None:
        super().__init__()
        self.title_text = title
        self.lines = lines

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.title_text, style="bold"))
            yield OptionList(*(Option(line) for line in self.lines or [Text("No results.", style="dim")]),
                             markup=False)
