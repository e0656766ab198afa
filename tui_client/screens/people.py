"""Dialogs about people: find a user to chat with, and create a group room."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, OptionList, Static
from textual.widgets.option_list import Option

from ..render import sender_colour
from ..text import clean_text

USER_ID = re.compile(r"@[^:\s]+:\S+")

UserSearch = Callable[[str], Awaitable[list[dict[str, Any]]]]


def user_result_text(result: dict[str, Any]) -> Text:
    """``Alice  @alice:example.org`` for a user-directory result."""
    user_id = clean_text(result.get("user_id"), single_line=True)
    name = clean_text(result.get("display_name"), single_line=True).strip()
    text = Text(name or user_id, style=f"bold {sender_colour(user_id)}")
    if name:
        text.append(f"  {user_id}", style="dim")
    return text


class UserSearchScreen(ModalScreen[str | None]):
    """Find someone in the user directory; Enter starts (or opens) a direct chat.

    | Key | Action |
    | --- | --- |
    | (type) | search the user directory (or type a full @user:server) |
    | Up / Down | choose |
    | Enter | chat with the chosen user |
    | Escape | close |
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("down", "move(1)", "Next", show=False),
        Binding("up", "move(-1)", "Previous", show=False),
    ]

    DEFAULT_CSS = """
    UserSearchScreen {
        align: center top;
    }
    UserSearchScreen > Vertical {
        width: 64;
        height: auto;
        max-height: 20;
        margin-top: 2;
        border: round $accent;
        background: $surface;
    }
    UserSearchScreen OptionList {
        height: auto;
        max-height: 12;
        border: none;
    }
    UserSearchScreen #people-status {
        padding: 0 1;
        color: $text-muted;
    }
    """

    def __init__(self, search: UserSearch, debounce: float = 0.25) -> None:
        super().__init__()
        self.search = search
        self.debounce = debounce
        self.results: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Start a chat", style="bold"), id="people-title")
            yield Input(placeholder="Name or @user:server…", id="people-query")
            yield OptionList(markup=False, id="people-results")
            yield Static("", id="people-status")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self.lookup(event.value.strip())

    @work(exclusive=True, group="user-search")
    async def lookup(self, term: str) -> None:
        status = self.query_one("#people-status", Static)
        if not term:
            self._show([])
            status.update("")
            return
        await asyncio.sleep(self.debounce)  # a newer keystroke cancels this worker first
        status.update("searching…")
        try:
            results = await self.search(term)
        except Exception as error:  # noqa: BLE001 -- any failure is shown, the dialog stays usable
            status.update(Text(f"search failed: {error}", style="red"))
            return
        self._show(results)
        status.update("" if results else "no one found; type a full @user:server to invite anyway")

    def _show(self, results: list[dict[str, Any]]) -> None:
        options = self.query_one(OptionList)
        valid = [r for r in results if isinstance(r.get("user_id"), str)]
        self.results = [r["user_id"] for r in valid]
        options.set_options(Option(user_result_text(r), id=r["user_id"]) for r in valid)
        options.highlighted = 0 if valid else None

    def action_move(self, step: int) -> None:
        options = self.query_one(OptionList)
        if options.option_count:
            options.highlighted = ((options.highlighted or 0) + step) % options.option_count

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is not None and options.option_count:
            self.dismiss(options.get_option_at_index(options.highlighted).id)
        elif USER_ID.fullmatch(event.value.strip()):
            self.dismiss(event.value.strip())

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


@dataclass(frozen=True)
class GroupRequest:
    """What the create-group dialog asks the server for."""

    name: str
    topic: str = ""
    invite: list[str] = field(default_factory=list)
    public: bool = False


def parse_invitees(text: str) -> tuple[list[str], list[str]]:
    """Split ``@a:x, @b:y`` into (valid user ids, rejected words)."""
    words = [w for w in re.split(r"[\s,]+", text) if w]
    valid = [w for w in words if USER_ID.fullmatch(w)]
    return list(dict.fromkeys(valid)), [w for w in words if not USER_ID.fullmatch(w)]


class CreateGroupScreen(ModalScreen[GroupRequest | None]):
    """Name, topic, invitees, public or private; Create makes the room.

    | Key | Action |
    | --- | --- |
    | Tab | next field |
    | Enter | create (from a text field) |
    | Escape | cancel |
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    DEFAULT_CSS = """
    CreateGroupScreen {
        align: center middle;
    }
    CreateGroupScreen > Vertical {
        width: 64;
        height: auto;
        border: round $accent;
        background: $surface;
        padding: 0 1;
    }
    CreateGroupScreen Horizontal {
        height: auto;
        align: right middle;
    }
    CreateGroupScreen Button {
        margin-left: 1;
    }
    CreateGroupScreen #group-error {
        color: $error;
    }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("New group", style="bold"))
            yield Input(placeholder="Name", id="group-name")
            yield Input(placeholder="Topic (optional)", id="group-topic")
            yield Input(placeholder="Invite: @user:server, … (optional)", id="group-invite")
            yield Checkbox("Public (anyone can find and join)", id="group-public")
            yield Static("", id="group-error")
            with Horizontal():
                yield Button("Cancel", id="group-cancel")
                yield Button("Create", id="group-create", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#group-name", Input).focus()

    @on(Button.Pressed, "#group-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    @on(Button.Pressed, "#group-create")
    def _create(self) -> None:
        name = self.query_one("#group-name", Input).value.strip()
        invite, rejected = parse_invitees(self.query_one("#group-invite", Input).value)
        error = self.query_one("#group-error", Static)
        if not name:
            error.update("A group needs a name.")
            return
        if rejected:
            error.update(f"Not a user id: {', '.join(rejected)} (use @user:server)")
            return
        self.dismiss(GroupRequest(name=name, topic=self.query_one("#group-topic", Input).value.strip(),
                                  invite=invite, public=self.query_one("#group-public", Checkbox).value))
