"""The timeline of the open room: messages, membership changes, day separators, gaps."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import tzinfo
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.control import Control
from rich.segment import ControlType, Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.dom import NoScreen
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widgets import OptionList
from textual.widgets.option_list import Option, OptionDoesNotExist

from ..media import media_url
from ..model import Gap, Room, TimelineEntry, TimelineEvent
from ..present import timeline_lines
from .inline_image import SIXEL_META, ImageProtocol, InlineImage

#: A zero-width control segment: Textual writes its text to the terminal as it is.
_RAW = ((ControlType.CURSOR_FORWARD, 0),)
_NULL_STYLE = Style()


class Timeline(OptionList):
    """Messages of one room; move the cursor onto a message to act on it.

    | Key | Action |
    | --- | --- |
    | Up / Down, PgUp / PgDn | move between messages (reaching the top loads older ones) |
    | r | reply to the selected message |
    | e | edit the selected message (your own) |
    | + | react to the selected message |
    | Delete / d | delete (redact) the selected message |
    | o | open the selected picture full size |
    | s | save the selected file or picture to the downloads folder |
    | Enter | on "earlier messages": load them |
    | Escape | back to the composer |
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "act('reply')", "Reply"),
        Binding("e", "act('edit')", "Edit"),
        Binding("plus,equals_sign", "act('react')", "React"),
        Binding("delete,d", "act('redact')", "Delete"),
        Binding("o", "act('open')", "Open", show=False),
        Binding("s", "act('save')", "Save", show=False),
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
        """The user wants to ``action`` ("reply", "edit", "react", "redact", "open", "save") ``event``."""

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

    def __init__(self, image_protocol: ImageProtocol = "halfcell", **kwargs: object) -> None:
        super().__init__(markup=False, **kwargs)  # type: ignore[arg-type]
        self._entries: dict[str, TimelineEntry | None] = {}
        self._images: dict[str, InlineImage] = {}
        self.room_id: str | None = None
        #: how pictures are drawn (see :mod:`tui_client.widgets.inline_image`)
        self.image_protocol: ImageProtocol = image_protocol

    def show(self, room: Room, own_user_id: str, tz: tzinfo | None, *,
             images: Mapping[str, bytes] | None = None, unread_after: str | None = None) -> None:
        """Redraw from ``room``; stay at the bottom if we were there, else keep the cursor.

        ``images`` maps ``mxc://`` URLs to downloaded bytes, drawn under their messages;
        ``unread_after`` is the read marker to draw the "new messages" line after.
        """
        switching = room.room_id != self.room_id
        self.room_id = room.room_id
        at_bottom = switching or self.highlighted is None or self.highlighted >= self.option_count - 1
        keep = None if switching else self.selected_id()
        scroll_before = self.scroll_y
        rows = timeline_lines(room, own_user_id, tz, unread_after)
        self._entries = {option_id: entry for option_id, _, entry in rows}
        for option_id in [i for i in self._images if i not in self._entries]:
            self._images.pop(option_id).cleanup()  # another room's, or gone: free the terminal's copy
        self.set_options(Option(self._with_picture(option_id, text, entry, images or {}), id=option_id)
                         for option_id, text, entry in rows)
        if keep is not None and keep in self._entries and not at_bottom:
            self.highlighted = self.get_option_index(keep)
            self.scroll_to(y=scroll_before, animate=False, immediate=True)
        elif rows:
            self.highlighted = None
            self.call_after_refresh(self.scroll_end, animate=False)

    def _with_picture(self, option_id: str, text: RenderableType, entry: TimelineEntry | None,
                      images: Mapping[str, bytes]) -> RenderableType:
        if not isinstance(entry, TimelineEvent) or entry.redacted or entry.msgtype != "m.image":
            return text
        url = media_url(entry.content)
        data = images.get(url) if url else None
        if url is None or data is None:
            return text
        picture = self._images.get(option_id)
        if picture is None or picture.mxc != url or picture.data is not data:
            if picture is not None:
                picture.cleanup()
            picture = self._images[option_id] = InlineImage(url, data, protocol=self.image_protocol)
        return Group(text, picture)

    # -- sixel pictures ------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        """The lines Textual draws, with sixel pictures written over their blank cells.

        A sixel picture is not text: it is written at a cursor position and covers the
        cells under it. So each picture with rows in ``crop`` gets, at the end of its last
        row there, the sequence that moves the cursor to its first row there, draws those
        rows, and moves the cursor back to where the line ended (a full-screen update
        writes the next widget's cells right after ours).
        """
        lines = list(super().render_lines(crop))
        if self.image_protocol != "sixel" or not self._images:
            return lines
        try:
            if not self.screen.is_active:
                return lines  # a dialog is on top: leave the space blank rather than draw over it
            origin = self.screen.find_widget(self).region
        except (NoScreen, NoMatches, KeyError):
            return lines
        pictures = {picture.key: picture for picture in self._images.values()}
        # picture key -> (x in the widget, first line, last line, first row, last row)
        spans: dict[str, list[int]] = {}
        for line_index, strip in enumerate(lines):
            x = crop.x
            for segment in strip:
                meta = segment.style.meta if segment.style is not None and not segment.control else {}
                if SIXEL_META in meta:
                    key, row = meta[SIXEL_META]
                    span = spans.get(key)
                    if span is None:
                        spans[key] = [x, line_index, line_index, row, row]
                    else:
                        span[2], span[4] = line_index, row
                x += segment.cell_length
        for key, (x, first_line, last_line, first_row, last_row) in spans.items():
            picture = pictures.get(key)
            if picture is None or not picture.ok:
                continue
            strip = lines[last_line]
            end = Control.move_to(origin.x + crop.x + strip.cell_length, origin.y + crop.y + last_line)
            drawing = [
                Segment(Control.move_to(origin.x + x, origin.y + crop.y + first_line).segment.text, _NULL_STYLE, _RAW),
                Segment(picture.sixel_rows(first_row, last_row + 1), _NULL_STYLE, _RAW),
                Segment(end.segment.text, _NULL_STYLE, _RAW),
            ]
            lines[last_line] = Strip([*strip, *drawing], strip.cell_length)
        return lines

    def inline_images(self) -> dict[str, InlineImage]:
        """The pictures drawn now, by option (event) id."""
        return {option_id: image for option_id, image in self._images.items() if option_id in self._entries}

    def select_event(self, event_id: str) -> bool:
        """Move the cursor to ``event_id`` (e.g. a search hit or the first unread)."""
        try:
            index = self.get_option_index(event_id)
        except OptionDoesNotExist:
            return False
        self.highlighted = index
        # After any pending scroll_end from show(), so the hit stays in view.
        self.call_after_refresh(self.scroll_to_highlight, top=True)
        return True

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
