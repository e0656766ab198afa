"""The timeline of the open room: messages, membership changes, day separators, gaps."""

from __future__ import annotations

from datetime import tzinfo
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ..model import Gap, Room, TimelineEntry, TimelineEvent
from ..present import timeline_lines


class Timeline(OptionList):
    """Messages of one room; move the cursor onto a message to act on it.

    | Key | Action |
    | --- | --- |
    | Up / Down, PgUp / PgDn | move between messages (reaching the top loads older ones) |
    | r | reply to the selected message |
    | e | edit the selected message (your own) |
    | + | react to the selected message |
    | Delete / d | delete (redact) the selected message |
    | Enter | on "earlier messages": load them |
    | Escape | back to the composer |
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "act('reply')", "Reply"),
        Binding("e", "act('edit')", "Edit"),
        Binding("plus,equals_sign", "act('react')", "React"),
        Binding("delete,d", "act('redact')", "Delete"),
        Binding("escape", "back", "Composer", show=False),
    ]

    DEFAULT_CSS = """
    Timeline {
        height: 1fr;
        border: none;
        padding: 0 1 0 0;
    }
    Timeline > .option-list--option-highlighted {
        background: $boost;
    }
    """

    class Act(Message):
        """The user wants to ``action`` ("reply", "edit", "react", "redact") ``event``."""

        def __init__(self, action: str, event: TimelineEvent) -> None:
            super().__init__()
            self.action = action
            self.event = event

    class LoadOlder(Message):
        """Fill ``gap`` with older history."""

        def __init__(self, gap: Gap) -> None:
            super().__init__()
            self.gap = gap

    class Back(Message):
        """Return focus to the composer."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(markup=False, **kwargs)  # type: ignore[arg-type]
        self._entries: dict[str, TimelineEntry | None] = {}
        self.room_id: str | None = None

    def show(self, room: Room, own_user_id: str, tz: tzinfo | None) -> None:
        """Redraw from ``room``; stay at the bottom if we were there, else keep the cursor."""
        switching = room.room_id != self.room_id
        self.room_id = room.room_id
        at_bottom = switching or self.highlighted is None or self.highlighted >= self.option_count - 1
        keep = None if switching else self.selected_id()
        scroll_before = self.scroll_y
        rows = timeline_lines(room, own_user_id, tz)
        self._entries = {option_id: entry for option_id, _, entry in rows}
        self.set_options(Option(text, id=option_id) for option_id, text, _ in rows)
        if keep is not None and keep in self._entries and not at_bottom:
            self.highlighted = self.get_option_index(keep)
            self.scroll_to(y=scroll_before, animate=False, immediate=True)
        elif rows:
            self.highlighted = None
            self.call_after_refresh(self.scroll_end, animate=False)

    def selected_id(self) -> str | None:
        if self.highlighted is None or self.highlighted >= self.option_count:
            return None
        return self.get_option_at_index(self.highlighted).id

    def selected_event(self) -> TimelineEvent | None:
        option_id = self.selected_id()
        entry = self._entries.get(option_id) if option_id else None
        return entry if isinstance(entry, TimelineEvent) else None

    def action_act(self, action: str) -> None:
        event = self.selected_event()
        if event is not None:
            self.post_message(self.Act(action, event))

    def action_back(self) -> None:
        self.post_message(self.Back())

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        entry = self._entries.get(event.option.id or "")
        if isinstance(entry, Gap) and event.option_index == 0:
            self.post_message(self.LoadOlder(entry))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        entry = self._entries.get(event.option.id or "")
        if isinstance(entry, Gap):
            self.post_message(self.LoadOlder(entry))
