"""The main chat screen: room list, timeline, composer; carries out what the user asks."""

from __future__ import annotations

import mimetypes
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Static

from ..commands import Command, CommandError, parse_command
from ..matrix import (
    LoggedOut,
    MatrixError,
    TransportError,
    edit_content,
    message_content,
    reaction_content,
    reply_content,
)
from ..model import Room, SyncUpdate, TimelineEvent
from ..present import event_text, typing_text
from ..render import markdown_to_html
from ..widgets import Composer, RoomList, StatusBar, Timeline
from .help import HelpScreen
from .modals import PromptScreen, QuickSwitcher, ResultsScreen

if TYPE_CHECKING:
    from ..app import ParleyApp

TYPING_RESEND_S = 4.0


class MainScreen(Screen[None]):
    """Rooms on the left, the open room's timeline and the composer on the right.

    | Key | Action |
    | --- | --- |
    | Ctrl+K | quick switcher |
    | F1 | help |
    | Ctrl+N / Ctrl+P | next / previous room |
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # priority: the composer (a TextArea) would otherwise take Ctrl+K as "delete to end of line".
        Binding("ctrl+k", "switcher", "Switch room", priority=True),
        Binding("f1", "help", "Help", priority=True),
        Binding("ctrl+n", "cycle_room(1)", "Next room", show=False, priority=True),
        Binding("ctrl+p", "cycle_room(-1)", "Previous room", show=False, priority=True),
    ]

    DEFAULT_CSS = """
    MainScreen #chat {
        width: 1fr;
    }
    MainScreen #typing {
        height: 1;
        padding: 0 1;
    }
    MainScreen #context {
        height: 1;
        padding: 0 1;
        background: $boost;
        display: none;
    }
    MainScreen #context.active {
        display: block;
    }
    MainScreen #invite {
        display: none;
        height: 1fr;
        align: center middle;
    }
    MainScreen #invite Static {
        width: 100%;
        content-align: center middle;
        margin-bottom: 1;
    }
    MainScreen #invite Horizontal {
        height: auto;
        align: center middle;
    }
    MainScreen #invite Button {
        margin: 0 1;
    }
    MainScreen.invite-open #invite {
        display: block;
    }
    MainScreen.invite-open #timeline, MainScreen.invite-open #composer, MainScreen.invite-open #typing {
        display: none;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.room_id: str | None = None
        self.replying_to: TimelineEvent | None = None
        self.editing: TimelineEvent | None = None
        self._last_typing_sent = 0.0
        self._typing_room: str | None = None
        self.ready = False

    @property
    def parley(self) -> ParleyApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal():
            yield RoomList(id="rooms")
            with Vertical(id="chat"):
                yield Timeline(id="timeline")
                with Vertical(id="invite"):
                    yield Static(id="invite-text")
                    with Horizontal():
                        yield Button("Accept", id="accept", variant="primary")
                        yield Button("Decline", id="decline", variant="error")
                yield Static(id="typing")
                yield Static(id="context")
                yield Composer(id="composer")
        yield Footer()

    def on_mount(self) -> None:
        self.ready = True
        self.refresh_from_model(None)
        self.query_one(Composer).focus()

    # -- drawing ---------------------------------------------------------------------------

    def refresh_from_model(self, update: SyncUpdate | None) -> None:
        """Redraw after a sync (``update``) or a local change (None: everything)."""
        model = self.parley.model
        if self.room_id is not None and self.room_id not in model.rooms:
            self.room_id = None
        if self.room_id is None:
            first = next((r for r in model.room_list() if r.membership == "join"), None)
            if first is not None:
                self.open_room(first.room_id)
                return
        if update is None or update.room_list_changed:
            self.query_one(RoomList).show(model, self.room_id)
        if self.room_id is not None and (update is None or self.room_id in update.rooms_changed):
            self._draw_room(model.rooms[self.room_id])
            if update is not None:
                self._mark_read()
        self.draw_status()

    def draw_status(self) -> None:
        room = self.current_room
        client = self.parley.client
        self.query_one(StatusBar).show(
            client.status, self.parley.model.user_id,
            room.display_name(self.parley.model.user_id) if room else "", room.topic if room else "",
            client.retry_in)

    def _draw_room(self, room: Room) -> None:
        own = self.parley.model.user_id
        self.set_class(room.membership == "invite", "invite-open")
        if room.membership == "invite":
            inviter = room.member_name(room.inviter) if room.inviter else "Someone"
            text = Text(f"{inviter} invited you to ")
            text.append(room.display_name(own), style="bold")
            self.query_one("#invite-text", Static).update(text)
            return
        self.query_one(Timeline).show(room, own, self.parley.tz)
        self.query_one("#typing", Static).update(typing_text(room, own))

    @property
    def current_room(self) -> Room | None:
        return self.parley.model.rooms.get(self.room_id) if self.room_id else None

    def open_room(self, room_id: str) -> None:
        if room_id not in self.parley.model.rooms:
            return
        if room_id != self.room_id:
            self._stop_typing()
            self._set_context(None, None)
        self.room_id = room_id
        self.query_one(RoomList).show(self.parley.model, room_id)
        self._draw_room(self.parley.model.rooms[room_id])
        self.draw_status()
        self._mark_read()

    def _mark_read(self) -> None:
        room = self.current_room
        if room is None or room.membership != "join":
            return
        latest = self.parley.model.latest_event_id(room.room_id)
        if latest is None or latest.startswith("~"):
            return
        already = room.receipts.get(self.parley.model.user_id) == latest and not room.notification_count
        if already:
            return
        self.parley.model.mark_read_locally(room.room_id)
        self.query_one(RoomList).show(self.parley.model, self.room_id)
        self._call(self.parley.client.set_read_markers(room.room_id, latest, read=latest))

    # -- reply / edit context ------------------------------------------------------------------

    def _set_context(self, replying_to: TimelineEvent | None, editing: TimelineEvent | None) -> None:
        self.replying_to, self.editing = replying_to, editing
        context = self.query_one("#context", Static)
        room = self.current_room
        target = replying_to or editing
        context.set_class(target is not None, "active")
        if target is None or room is None:
            context.update("")
            return
        label = Text("Replying to " if replying_to else "Editing ", style="bold")
        label.append(room.member_name(target.sender) if replying_to else "your message")
        label.append(f": {target.body.splitlines()[0] if target.body else ''}", style="dim")
        label.append("  (Esc cancels)", style="dim italic")
        context.update(label)

    # -- events from widgets -----------------------------------------------------------------------

    @on(RoomList.RoomChosen)
    def _room_chosen(self, message: RoomList.RoomChosen) -> None:
        self.open_room(message.room_id)
        if self.current_room and self.current_room.membership == "join":
            self.query_one(Composer).focus()

    @on(RoomList.InviteAnswered)
    def _invite_answered(self, message: RoomList.InviteAnswered) -> None:
        self.answer_invite(message.room_id, message.accept)

    @on(Button.Pressed, "#accept")
    def _accept(self) -> None:
        if self.room_id:
            self.answer_invite(self.room_id, True)

    @on(Button.Pressed, "#decline")
    def _decline(self) -> None:
        if self.room_id:
            self.answer_invite(self.room_id, False)

    def answer_invite(self, room_id: str, accept: bool) -> None:
        client = self.parley.client
        self._call(client.join(room_id) if accept else client.leave(room_id),
                   done="Joined." if accept else "Invite declined.")

    @on(Timeline.Act)
    def _timeline_act(self, message: Timeline.Act) -> None:
        event, room = message.event, self.current_room
        if room is None or event.event_id is None:
            return
        own = self.parley.model.user_id
        if message.action == "reply":
            self._set_context(event, None)
            self.query_one(Composer).focus()
        elif message.action == "edit":
            if event.sender != own or event.redacted or event.type != "m.room.message":
                self.notify("You can only edit your own messages.", severity="warning")
                return
            self._start_edit(event)
        elif message.action == "redact":
            if event.redacted:
                return
            self._call(self.parley.client.redact(room.room_id, event.event_id), done="Message deleted.")
        elif message.action == "react":
            self.app.push_screen(PromptScreen("React with:", "👍"),
                                 lambda key: self._react(room.room_id, event, key) if key else None)

    def _react(self, room_id: str, event: TimelineEvent, key: str) -> None:
        own = self.parley.model.user_id
        existing = event.reactions.get(key, {}).get(own)
        if existing is not None and not existing.startswith("~"):
            self._call(self.parley.client.redact(room_id, existing))  # toggling off
            return
        assert event.event_id is not None
        self._send(room_id, "m.reaction", reaction_content(event.event_id, key))

    def _start_edit(self, event: TimelineEvent) -> None:
        self._set_context(None, event)
        composer = self.query_one(Composer)
        composer.text = event.body
        composer.move_cursor(composer.document.end)
        composer.focus()

    @on(Timeline.LoadOlder)
    def _load_older(self, message: Timeline.LoadOlder) -> None:
        if self.room_id is not None:
            self.load_older(self.room_id, message.gap)

    @on(Timeline.Back)
    def _back(self) -> None:
        self.query_one(Composer).focus()

    @on(Composer.Cancelled)
    def _cancelled(self) -> None:
        if self.editing is not None:
            self.query_one(Composer).text = ""
        if self.replying_to is None and self.editing is None:
            self.query_one(Timeline).focus()
        self._set_context(None, None)

    @on(Composer.EditLast)
    def _edit_last(self) -> None:
        if self.room_id is None:
            return
        last = self.parley.model.last_own_message(self.room_id)
        if last is not None:
            self._start_edit(last)

    @on(Composer.Changed)
    def _composer_changed(self, message: Composer.Changed) -> None:
        if self.room_id is None or self.current_room is None or self.current_room.membership != "join":
            return
        text = message.text_area.text
        now = time.monotonic()
        if not text or text.startswith("/"):
            self._stop_typing()
        elif now - self._last_typing_sent > TYPING_RESEND_S or self._typing_room != self.room_id:
            self._last_typing_sent, self._typing_room = now, self.room_id
            self._call(self.parley.client.set_typing(self.room_id, True, timeout_ms=5000), quiet=True)

    def _stop_typing(self) -> None:
        if self._typing_room is not None:
            room_id, self._typing_room, self._last_typing_sent = self._typing_room, None, 0.0
            self._call(self.parley.client.set_typing(room_id, False), quiet=True)

    @on(Composer.Submitted)
    def _submitted(self, message: Composer.Submitted) -> None:
        composer = self.query_one(Composer)
        try:
            command = parse_command(message.text)
        except CommandError as error:
            self.notify(str(error), severity="error")
            return
        composer.text = ""
        self._stop_typing()
        if command is not None:
            self.run_command(command)
            return
        text = message.text[1:] if message.text.startswith("//") else message.text
        self.send_text(text)

    # -- actions ---------------------------------------------------------------------------------------

    def send_text(self, text: str, msgtype: str = "m.text") -> None:
        """Send composer text to the open room as a message, reply or edit."""
        room = self.current_room
        if room is None or room.membership != "join":
            self.notify("Open a room first.", severity="warning")
            return
        content = message_content(text, markdown_to_html(text), msgtype)
        if self.editing is not None and self.editing.event_id is not None:
            content = edit_content(self.editing.event_id, content)
        elif self.replying_to is not None and self.replying_to.event_id is not None:
            quoted = self.replying_to
            assert quoted.event_id is not None
            content = reply_content(content, room_id=room.room_id, event_id=quoted.event_id,
                                    sender=quoted.sender, quoted_body=quoted.body)
        self._set_context(None, None)
        self._send(room.room_id, "m.room.message", content)

    def _send(self, room_id: str, event_type: str, content: dict[str, Any]) -> None:
        """Show a local echo at once, then send; the echo turns into the real event."""
        client, model = self.parley.client, self.parley.model
        txn_id = client.new_txn_id()
        model.add_local_echo(room_id, txn_id, event_type, content, self.parley.now_ms())
        self.refresh_from_model(None)
        self._deliver(room_id, event_type, content, txn_id)

    @work(group="send")
    async def _deliver(self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str) -> None:
        model = self.parley.model
        try:
            event_id = await self.parley.client.send_event(room_id, event_type, content, txn_id)
        except (MatrixError, TransportError, LoggedOut) as error:
            model.mark_failed(room_id, txn_id)
            self.notify(f"Not sent: {error}", severity="error")
        else:
            model.mark_sent(room_id, txn_id, event_id)
        self.refresh_from_model(None)

    @work(group="history", exclusive=True)
    async def load_older(self, room_id: str, gap: Any) -> None:
        try:
            page = await self.parley.client.messages(room_id, gap.token)
        except (MatrixError, TransportError, LoggedOut) as error:
            self.notify(f"Could not load history: {error}", severity="error")
            return
        self.parley.model.apply_messages(room_id, gap, page)
        if room_id == self.room_id:
            self._draw_room(self.parley.model.rooms[room_id])

    def run_command(self, command: Command) -> None:
        client = self.parley.client
        room_id = self.room_id
        needs_room = {"leave", "invite", "kick", "ban", "topic", "name", "me", "upload"}
        if command.name in needs_room and room_id is None:
            self.notify("Open a room first.", severity="warning")
            return
        first, rest = command.first_and_rest()
        assert room_id is not None or command.name not in needs_room
        if command.name == "help":
            self.action_help()
        elif command.name == "join":
            self._call(client.join(first), done=f"Joined {first}.")
        elif command.name == "leave":
            self._call(client.leave(room_id), done="Left the room.")  # type: ignore[arg-type]
        elif command.name == "invite":
            self._call(client.invite(room_id, first), done=f"Invited {first}.")  # type: ignore[arg-type]
        elif command.name == "kick":
            self._call(client.kick(room_id, first, rest or None), done=f"Removed {first}.")  # type: ignore[arg-type]
        elif command.name == "ban":
            self._call(client.ban(room_id, first, rest or None), done=f"Banned {first}.")  # type: ignore[arg-type]
        elif command.name == "topic":
            self._call(client.set_topic(room_id, command.argument))  # type: ignore[arg-type]
        elif command.name == "name":
            self._call(client.set_room_name(room_id, command.argument))  # type: ignore[arg-type]
        elif command.name == "nick":
            self._call(client.set_displayname(command.argument), done="Display name set.")
        elif command.name == "me":
            self.send_text(command.argument, msgtype="m.emote")
        elif command.name == "dm":
            existing = self.parley.model.direct_room_with(first)
            if existing is not None:
                self.open_room(existing)
            else:
                self._call(client.create_dm(first), done=f"Started a chat with {first}.")
        elif command.name == "create":
            words = command.words
            public = "--public" in words
            invitees = [w for w in words if w.startswith("@")]
            name = " ".join(w for w in words if w != "--public" and not w.startswith("@"))
            self._call(client.create_room(name=name or None, invite=invitees, public=public),
                       done=f"Created {name or 'the room'}.")
        elif command.name == "upload":
            self.upload(room_id, Path(command.argument).expanduser())  # type: ignore[arg-type]
        elif command.name == "search":
            self.search(command.argument, room_id)

    @work(group="upload")
    async def upload(self, room_id: str, path: Path) -> None:
        try:
            data = path.read_bytes()
        except OSError as error:
            self.notify(f"Cannot read {path}: {error.strerror}", severity="error")
            return
        mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        info: dict[str, Any] = {"size": len(data), "mimetype": mimetype}
        msgtype = {"image": "m.image", "video": "m.video", "audio": "m.audio"}.get(mimetype.split("/")[0], "m.file")
        if msgtype == "m.image":
            info.update(_image_size(path))
        try:
            uri = await self.parley.client.upload(data, mimetype, path.name)
        except (MatrixError, TransportError, LoggedOut) as error:
            self.notify(f"Upload failed: {error}", severity="error")
            return
        content = {"msgtype": msgtype, "body": path.name, "filename": path.name, "url": uri, "info": info}
        self._send(room_id, "m.room.message", content)

    @work(group="search", exclusive=True)
    async def search(self, term: str, room_id: str | None) -> None:
        try:
            results = await self.parley.client.search_messages(term, room_id)
        except (MatrixError, TransportError, LoggedOut) as error:
            self.notify(f"Search failed: {error}", severity="error")
            return
        room = self.current_room
        lines: list[Text] = []
        for result in results:
            if room is None:
                break
            item = TimelineEvent(
                event_id=result.get("event_id"), sender=str(result.get("sender", "")),
                type=str(result.get("type", "")), origin_server_ts=int(result.get("origin_server_ts", 0)),
                original_content=result["content"] if isinstance(result.get("content"), dict) else {})
            text = event_text(room, item, self.parley.model.user_id, self.parley.tz)
            if text is not None:
                lines.append(text)
        self.app.push_screen(ResultsScreen(f"Search: {term} ({len(lines)} found)", lines))

    def _call(self, awaitable: Any, *, done: str | None = None, quiet: bool = False) -> None:
        """Run a client call in the background; report failure (and success, if ``done``)."""

        async def runner() -> None:
            try:
                await awaitable
            except (MatrixError, TransportError, LoggedOut, ValueError) as error:
                if not quiet:
                    self.notify(str(error), severity="error")
            else:
                if done:
                    self.notify(done)

        self.run_worker(runner(), group="calls")

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    def action_switcher(self) -> None:
        own = self.parley.model.user_id
        rooms = [(room.room_id, room.display_name(own)) for room in self.parley.model.room_list()]
        self.app.push_screen(QuickSwitcher(rooms), lambda room_id: self._switch_to(room_id))

    def _switch_to(self, room_id: str | None) -> None:
        if room_id:
            self.open_room(room_id)
            self.query_one(Composer).focus()

    def action_cycle_room(self, step: int) -> None:
        ids = self.query_one(RoomList).room_ids()
        if not ids:
            return
        index = ids.index(self.room_id) if self.room_id in ids else -step
        self.open_room(ids[(index + step) % len(ids)])


def _image_size(path: Path) -> dict[str, int]:
    try:
        from PIL import Image  # Pillow is a project dependency; size is a nicety

        with Image.open(path) as image:
            return {"w": image.width, "h": image.height}
    except Exception:  # noqa: BLE001 -- not an image Pillow knows, or Pillow missing
        return {}
