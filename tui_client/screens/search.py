"""Message search across rooms: type words, see hits, Enter jumps to a hit in its room."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option


@dataclass(frozen=True)
class SearchHit:
    """One result: where it is and how it reads."""

    room_id: str
    event_id: str
    text: Text


MessageSearch = Callable[[str], Awaitable[list[SearchHit]]]


class SearchScreen(ModalScreen[SearchHit | None]):
    """Search messages in all your rooms.

    | Key | Action |
    | --- | --- |
    | Enter (in the box) | search |
    | Up / Down | choose a result |
    | Enter (on a result) | open its room at that message |
    | Escape | close |
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Close")]

    DEFAULT_CSS = """
    SearchScreen {
        align: center middle;
    }
    SearchScreen > Vertical {
        width: 90%;
        height: 80%;
        border: round $accent;
        background: $surface;
    }
    SearchScreen OptionList {
        height: 1fr;
        border: none;
    }
    SearchScreen #search-status {
        padding: 0 1;
        color: $text-muted;
    }
    """

    def __init__(self, search: MessageSearch, term: str = "") -> None:
        super().__init__()
        self.search = search
        self.term = term
        self.hits: list[SearchHit] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Input(self.term, placeholder="Search messages in all rooms…", id="search-query")
            yield Static("", id="search-status")
            yield OptionList(markup=False, id="search-results")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        if self.term:
            self.run_search(self.term)

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.run_search(event.value.strip())

    @work(exclusive=True, group="message-search")
    async def run_search(self, term: str) -> None:
        status = self.query_one("#search-status", Static)
        status.update("searching…")
        try:
            hits = await self.search(term)
        except Exception as error:  # noqa: BLE001 -- any failure is shown, the dialog stays usable
            status.update(Text(f"search failed: {error}", style="red"))
            return
        self.hits = hits
        results = self.query_one(OptionList)
        results.set_options(Option(hit.text, id=str(index)) for index, hit in enumerate(hits))
        status.update(f"{len(hits)} found for “{term}”" + (" — Enter opens a result" if hits else ""))
        if hits:
            results.highlighted = 0
            results.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.hits[int(event.option.id or 0)])
