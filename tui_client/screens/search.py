"""Message search across rooms: type words, see hits, Enter jumps to a hit in its room.

Results come a page at a time (the server's ``next_batch``). While more exist, the list
ends in a "more results" row; the next page loads when that row comes into view (by
scrolling or moving onto it), or on Enter there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

MORE_ID = "more"


@dataclass(frozen=True)
class SearchHit:
    """One result: where it is and how it reads."""

    room_id: str
    event_id: str
    text: Text


@dataclass(frozen=True)
class SearchResults:
    """One page of hits, the token of the next page (None: last page), the total if known."""

    hits: list[SearchHit]
    next_batch: str | None = None
    count: int | None = None


#: Runs a search: (term, next_batch or None for the first page) -> a page.
MessageSearch = Callable[[str, str | None], Awaitable[SearchResults]]


class ResultList(OptionList):
    """The hits; says when its end (the "more results" row) is in sight."""

    class NearEnd(Message):
        """The last rows are visible or highlighted: time to fetch the next page."""

    def _check_end(self) -> None:
        if self.option_count == 0 or self.get_option_at_index(self.option_count - 1).id != MORE_ID:
            return
        at_end = self.highlighted == self.option_count - 1 or self.scroll_y >= self.max_scroll_y - 1
        if at_end:
            self.post_message(self.NearEnd())

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._check_end()

    def watch_highlighted(self, highlighted: int | None) -> None:
        super().watch_highlighted(highlighted)
        self._check_end()


@dataclass
class _Search:
    """The search on screen: its term, hits so far and where the next page starts."""

    term: str
    hits: list[SearchHit] = field(default_factory=list)
    next_batch: str | None = None
    count: int | None = None
    loading: bool = False


class SearchScreen(ModalScreen[SearchHit | None]):
    """Search messages in all your rooms.

    | Key | Action |
    | --- | --- |
    | Enter (in the box) | search |
    | Up / Down, PgUp / PgDn | choose a result (reaching the end loads more) |
    | Enter (on a result) | open its room at that message |
    | Enter (on "more results") | load the next page |
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
    SearchScreen ResultList {
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
        self.current: _Search | None = None

    @property
    def hits(self) -> list[SearchHit]:
        return self.current.hits if self.current else []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Input(self.term, placeholder="Search messages in all rooms…", id="search-query")
            yield Static("", id="search-status")
            yield ResultList(markup=False, id="search-results")

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
        search = self.current = _Search(term, loading=True)
        try:
            page = await self.search(term, None)
        except Exception as error:  # noqa: BLE001 -- any failure is shown, the dialog stays usable
            status.update(Text(f"search failed: {error}", style="red"))
            return
        finally:
            search.loading = False
        results = self.query_one(ResultList)
        results.clear_options()
        self._add_page(search, page)
        if search.hits:
            results.highlighted = 0
            results.focus()

    @on(ResultList.NearEnd)
    def _near_end(self) -> None:
        self.load_more()

    def load_more(self) -> None:
        """Fetch the next page of the current search, unless one is on its way or none is left."""
        search = self.current
        if search is not None and search.next_batch is not None and not search.loading:
            search.loading = True
            self._fetch_more(search)

    @work(group="message-search-more")
    async def _fetch_more(self, search: _Search) -> None:
        status = self.query_one("#search-status", Static)
        assert search.next_batch is not None
        try:
            page = await self.search(search.term, search.next_batch)
        except Exception as error:  # noqa: BLE001 -- shown; Enter on the row tries again
            status.update(Text(f"more results failed: {error}", style="red"))
            return
        finally:
            search.loading = False
        if search is self.current:  # not replaced by a new search meanwhile
            self._add_page(search, page)

    def _add_page(self, search: _Search, page: SearchResults) -> None:
        results = self.query_one(ResultList)
        highlighted = results.highlighted
        if results.option_count and results.get_option_at_index(results.option_count - 1).id == MORE_ID:
            results.remove_option(MORE_ID)
        first = len(search.hits)
        search.hits.extend(page.hits)
        search.next_batch, search.count = page.next_batch, page.count if page.count is not None else search.count
        results.add_options(Option(hit.text, id=str(index)) for index, hit in enumerate(page.hits, first))
        if search.next_batch is not None:
            results.add_option(Option(Text("… more results (Enter, or scroll here)", style="dim italic"), id=MORE_ID))
        if highlighted is not None:
            results.highlighted = min(highlighted, results.option_count - 1)
        shown = len(search.hits)
        total = f" of {search.count}" if search.count is not None and search.count > shown else ""
        more = ", more below" if search.next_batch else ""
        status = f"{shown}{total} found for “{search.term}”{more}" + (" — Enter opens a result" if shown else "")
        self.query_one("#search-status", Static).update(status)

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == MORE_ID:
            self.load_more()
            return
        self.dismiss(self.hits[int(event.option.id or 0)])
