"""The room list: invites, direct chats and groups, with unread and mention badges."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option, OptionDoesNotExist

from ..model import ClientState
from ..present import room_row


class RoomList(OptionList):
    """Rooms grouped as Invites, People and Rooms, most recently active first.

    | Key | Action |
    | --- | --- |
    | Up / Down | move between rooms |
    | Enter | open the room |
    | a | accept the highlighted invite |
    | x | decline the highlighted invite |
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "answer_invite(True)", "Accept invite", show=False),
        Binding("x", "answer_invite(False)", "Decline invite", show=False),
    ]

    DEFAULT_CSS = """
    RoomList {
        width: 28;
        height: 1fr;
        border: none;
        border-right: vkey $panel-lighten-2;
        padding: 0;
    }
    """

    class RoomChosen(Message):
        """The user opened a room."""

        def __init__(self, room_id: str) -> None:
            super().__init__()
            self.room_id = room_id

    class InviteAnswered(Message):
        """The user accepted or declined an invite."""

        def __init__(self, room_id: str, accept: bool) -> None:
            super().__init__()
            self.room_id = room_id
            self.accept = accept

    def __init__(self, **kwargs: object) -> None:
        super().__init__(markup=False, **kwargs)  # type: ignore[arg-type]
        self.current_room_id: str | None = None

    def show(self, model: ClientState, current_room_id: str | None) -> None:
        """Rebuild from the model, keeping the current room highlighted."""
        self.current_room_id = current_room_id
        width = max((self.size.width or 28) - 2, 16)
        sections: dict[str, list[Option]] = {"Invites": [], "People": [], "Rooms": []}
        for room in model.room_list():
            section = "Invites" if room.membership == "invite" else "People" if room.is_direct else "Rooms"
            prompt = room_row(room, model.user_id, width)
            if room.room_id == current_room_id:
                prompt.stylize("bold")
            sections[section].append(Option(prompt, id=room.room_id))
        options: list[Option] = []
        for title, rows in sections.items():
            if rows:
                options.append(Option(Text(title.upper(), style="bold dim"), id=f"section-{title}", disabled=True))
                options.extend(rows)
        highlighted_id = self._highlighted_id() or current_room_id
        self.set_options(options)
        if highlighted_id is not None:
            try:
                self.highlighted = self.get_option_index(highlighted_id)
            except OptionDoesNotExist:  # the room left the list
                self.highlighted = None

    def _highlighted_id(self) -> str | None:
        if self.highlighted is None or self.highlighted >= self.option_count:
            return None
        return self.get_option_at_index(self.highlighted).id

    def room_ids(self) -> list[str]:
        """Room ids in displayed order (for next/previous room)."""
        ids = (self.get_option_at_index(i).id for i in range(self.option_count))
        return [i for i in ids if i is not None and not i.startswith("section-")]

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.RoomChosen(event.option.id))

    def action_answer_invite(self, accept: bool) -> None:
        room_id = self._highlighted_id()
        if room_id is not None and not room_id.startswith("section-"):
            self.post_message(self.InviteAnswered(room_id, accept))
