"""The member list of the open room, with presence, toggled beside the timeline."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ..model import ClientState, Room
from ..present import member_count_label, member_row


class MemberList(OptionList):
    """Joined then invited members, by name; a dot shows presence.

    | Key | Action |
    | --- | --- |
    | Up / Down | move between members |
    | Enter | open (or start) a direct chat with the member |
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Composer", show=False)]

    DEFAULT_CSS = """
    MemberList {
        width: 26;
        height: 1fr;
        border: none;
        border-left: vkey $panel-lighten-2;
        padding: 0;
        display: none;
    }
    MemberList.shown {
        display: block;
    }
    """

    class MemberChosen(Message):
        """The user picked a member (to chat with them)."""

        def __init__(self, user_id: str) -> None:
            super().__init__()
            self.user_id = user_id

    class Back(Message):
        """Return focus to the composer."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(markup=False, **kwargs)  # type: ignore[arg-type]

    @property
    def shown(self) -> bool:
        return self.has_class("shown")

    def show(self, model: ClientState, room: Room | None) -> None:
        """Rebuild from ``room``'s members and the model's presence."""
        if room is None:
            self.clear_options()
            return
        highlighted = self.highlighted
        options = [Option(member_count_label(room), id="header", disabled=True)]
        options.extend(Option(member_row(room, member, model.presence.get(member.user_id)), id=member.user_id)
                       for member in room.member_list())
        if not room.members_loaded:
            options.append(Option("loading…", id="loading", disabled=True))
        self.set_options(options)
        if highlighted is not None and highlighted < self.option_count:
            self.highlighted = highlighted

    def user_ids(self) -> list[str]:
        ids = (self.get_option_at_index(i).id for i in range(self.option_count))
        return [i for i in ids if i is not None and i.startswith("@")]

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id and event.option.id.startswith("@"):
            self.post_message(self.MemberChosen(event.option.id))

    def action_back(self) -> None:
        self.post_message(self.Back())
