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
from ..media import downloads_dir, media_url, save_media, wants_thumbnail
from ..model import Gap, Room, SyncUpdate, TimelineEvent
from ..present import event_text, typing_text
from ..render import markdown_to_html
from ..widgets import Composer, MemberList, RoomList, StatusBar, Timeline
from .help import HelpScreen
from .modals import PromptScreen, QuickSwitcher
from .people import CreateGroupScreen, GroupRequest, UserSearchScreen
from .search import SearchHit, SearchResults, SearchScreen
from .viewer import ImageViewerScreen

if TYPE_CHECKING:
    from ..app import ParleyApp

TYPING_RESEND_S = 4.0
THUMBNAIL = (320, 240)


class MainScreen(Screen[None]):
    """Rooms on the left, the open room's timeline and the composer on the right.

    | Key | Action |
    | --- | --- |
    | Ctrl+K | quick switcher |
    | F1 | help |
    | Ctrl+N / Ctrl+P | next / previous room |
    | F2 | show / hide the member list |
    | Ctrl+O | start a chat (user search) |
    | Ctrl+T | new group |
    | Ctrl+F | search messages in all rooms |
    | Ctrl+G | jump to the first unread message |
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # priority: the composer (a TextArea) would otherwise take Ctrl+K as "delete to end of line".
        Binding("ctrl+k", "switcher", "Switch room", priority=True),
        Binding("f1", "help", "Help", priority=True),
        Binding("ctrl+n", "cycle_room(1)", "Next room", show=False, priority=True),
        Binding("ctrl+p", "cycle_room(-1)", "Previous room", show=False, priority=True),
        Binding("f2", "toggle_members", "Members", priority=True),
        Binding("ctrl+o", "start_chat", "Chat with…", priority=True),
        Binding("ctrl+t", "new_group", "New group", show=False, priority=True),
        Binding("ctrl+f", "search", "Search", priority=True),
        Binding("ctrl+g", "jump_unread", "First unread", show=False, priority=True),
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
        #: room id -> the fully-read event when the room was opened: where "new messages" goes
        self.unread_markers: dict[str, str | None] = {}
        self._fetching: set[tuple[str, str]] = set()
        self._members_loading: set[str] = set()
        #: a room we created or asked for, opened as soon as a sync brings it
        self._open_when_synced: str | None = None
        self.ready = False

    @property
    def parley(self) -> ParleyApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal():
            yield RoomList(id="rooms")
            with Vertical(id="chat"):
                yield Timeline(id="timeline", image_protocol=self.parley.image_protocol)
                with Vertical(id="invite"):
                    yield Static(id="invite-text")
                    with Horizontal():
                        yield Button("Accept", id="accept", variant="primary")
                        yield Button("Decline", id="decline", variant="error")
                yield Static(id="typing")
                yield Static(id="context")
                yield Composer(id="composer")
            yield MemberList(id="members")
        yield Footer()

    def on_mount(self) -> None:
        if self not in self.app.screen_stack:
            return  # the session ended before we were shown (the login screen replaced us)
        self.ready = True
        self.refresh_from_model(None)
        self.query_one(Composer).focus()

    # -- drawing ---------------------------------------------------------------------------

    def refresh_from_model(self, update: SyncUpdate | None) -> None:
        """Redraw after a sync (``update``) or a local change (None: everything)."""
        model = self.parley.model
        if self._open_when_synced is not None and self._open_when_synced in model.rooms:
            room_id, self._open_when_synced = self._open_when_synced, None
            self.open_room(room_id)
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
        elif update is not None and update.presence_changed and self.query_one(MemberList).shown:
            self.query_one(MemberList).show(model, self.current_room)
        self.draw_status()

    def draw_status(self) -> None:
        room = self.current_room
        client = self.parley.client
        self.query_one(StatusBar).show(
            client.status, self.parley.model.user_id,
            room.display_name(self.parley.model.user_id) if room else "", room.topic if room else "",
            client.retry_in, client.sync_transport)

    def _draw_room(self, room: Room) -> None:
        own = self.parley.model.user_id
        self.set_class(room.membership == "invite", "invite-open")
        if room.membership == "invite":
            inviter = room.member_name(room.inviter) if room.inviter else "Someone"
            text = Text(f"{inviter} invited you to ")
            text.append(room.display_name(own), style="bold")
            self.query_one("#invite-text", Static).update(text)
            return
        self.query_one(Timeline).show(room, own, self.parley.tz, images=self._inline_images(room),
                                      unread_after=self.unread_markers.get(room.room_id))
        self.query_one("#typing", Static).update(typing_text(room, own))
        members = self.query_one(MemberList)
        if members.shown:
            members.show(self.parley.model, room)
            self._ensure_members(room)
        self._fetch_inline_images(room)

    @property
    def current_room(self) -> Room | None:
        return self.parley.model.rooms.get(self.room_id) if self.room_id else None

    def open_room(self, room_id: str) -> None:
        if room_id not in self.parley.model.rooms:
            return
        if room_id != self.room_id:
            self._stop_typing()
            self._set_context(None, None)
            # Remember where reading stopped before this visit marks everything read.
            self.unread_markers[room_id] = self.parley.model.rooms[room_id].fully_read
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
        elif message.action in ("open", "save"):
            self._open_or_save(event, save=message.action == "save")
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
    async def load_older(self, room_id: str, gap: Gap) -> None:
        try:
            token: object = gap.token
            if not token and gap.anchor is not None:
                # A gap from the cache, where older events were dropped: /context of the
                # oldest kept event says where history before it starts.
                token = (await self.parley.client.context(room_id, gap.anchor, limit=0)).get("start")
            if not isinstance(token, str) or not token:
                return
            page = await self.parley.client.messages(room_id, token)
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
            self.start_dm(first)
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
            self.action_search(command.argument)

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

    # -- people ------------------------------------------------------------------------------------

    def start_dm(self, user_id: str) -> None:
        """Open the direct chat with ``user_id``, creating it (and ``m.direct``) when there is none."""
        if user_id == self.parley.model.user_id:
            self.notify("That is you.", severity="warning")
            return
        existing = self.parley.model.direct_room_with(user_id)
        if existing is not None:
            self.open_room(existing)
            return

        async def create() -> None:
            room_id = await self.parley.client.create_dm(user_id)
            self._open_when_synced = room_id
            if room_id in self.parley.model.rooms:
                self.refresh_from_model(None)

        self._call(create(), done=f"Invited {user_id} to a direct chat.")

    def create_group(self, request: GroupRequest | None) -> None:
        if request is None:
            return

        async def create() -> None:
            room_id = await self.parley.client.create_room(
                name=request.name, topic=request.topic or None, invite=request.invite, public=request.public)
            self._open_when_synced = room_id
            if room_id in self.parley.model.rooms:
                self.refresh_from_model(None)

        self._call(create(), done=f"Created {request.name}.")

    def action_start_chat(self) -> None:
        self.app.push_screen(UserSearchScreen(self.parley.client.search_users),
                             lambda user_id: self.start_dm(user_id) if user_id else None)

    def action_new_group(self) -> None:
        self.app.push_screen(CreateGroupScreen(), self.create_group)

    @on(MemberList.MemberChosen)
    def _member_chosen(self, message: MemberList.MemberChosen) -> None:
        self.start_dm(message.user_id)

    @on(MemberList.Back)
    def _members_back(self) -> None:
        self.query_one(Composer).focus()

    def action_toggle_members(self) -> None:
        members = self.query_one(MemberList)
        members.set_class(not members.shown, "shown")
        if members.shown:
            members.show(self.parley.model, self.current_room)
            if self.current_room is not None:
                self._ensure_members(self.current_room)

    def _ensure_members(self, room: Room) -> None:
        if room.membership == "join" and not room.members_loaded and room.room_id not in self._members_loading:
            self._members_loading.add(room.room_id)
            self.load_members(room.room_id)

    @work(group="members")
    async def load_members(self, room_id: str) -> None:
        try:
            response = await self.parley.client.members(room_id)
        except (MatrixError, TransportError, LoggedOut) as error:
            self.notify(f"Could not load members: {error}", severity="error")
            return
        finally:
            self._members_loading.discard(room_id)
        self.parley.model.apply_members(room_id, response)
        if room_id == self.room_id:
            self.query_one(MemberList).show(self.parley.model, self.current_room)

    # -- search and jumps ----------------------------------------------------------------------------

    async def _search_messages(self, term: str, next_batch: str | None) -> SearchResults:
        model, own = self.parley.model, self.parley.model.user_id
        page = await self.parley.client.search_messages(term, next_batch=next_batch)
        hits: list[SearchHit] = []
        for result in page.results:
            room = model.rooms.get(str(result.get("room_id", "")))
            event_id = result.get("event_id")
            if room is None or not isinstance(event_id, str):
                continue
            item = TimelineEvent(
                event_id=event_id, sender=str(result.get("sender", "")), type=str(result.get("type", "")),
                origin_server_ts=int(result.get("origin_server_ts", 0)),
                original_content=result["content"] if isinstance(result.get("content"), dict) else {})
            text = event_text(room, item, own, self.parley.tz)
            if text is None:
                continue
            line = Text(f"{room.display_name(own)} · ", style="bold dim")
            line.append_text(text)
            hits.append(SearchHit(room.room_id, event_id, line))
        return SearchResults(hits, page.next_batch, page.count)

    def action_search(self, term: str = "") -> None:
        self.app.push_screen(SearchScreen(self._search_messages, term), self._open_hit)

    def _open_hit(self, hit: SearchHit | None) -> None:
        if hit is not None:
            self.jump_to(hit.room_id, hit.event_id)

    @work(group="jump", exclusive=True)
    async def jump_to(self, room_id: str, event_id: str) -> None:
        """Open ``room_id`` with the cursor on ``event_id``, loading its context when not loaded."""
        model = self.parley.model
        room = model.rooms.get(room_id)
        if room is None:
            return
        self.open_room(room_id)
        if room.event(event_id) is None:
            try:
                context = await self.parley.client.context(room_id, event_id)
            except (MatrixError, TransportError, LoggedOut) as error:
                self.notify(f"Could not load that message: {error}", severity="error")
                return
            model.apply_context(room_id, context)
            if room_id != self.room_id:
                return
            self._draw_room(room)
        timeline = self.query_one(Timeline)
        if timeline.select_event(event_id):
            timeline.focus()

    def action_jump_unread(self) -> None:
        room = self.current_room
        if room is None:
            return
        marker = self.unread_markers.get(room.room_id)
        target = room.first_unread(self.parley.model.user_id, marker) if marker else None
        if target is not None and target.event_id is not None:
            timeline = self.query_one(Timeline)
            timeline.select_event(target.event_id)
            timeline.focus()
        elif marker is not None and room.event(marker) is None:
            self.jump_to(room.room_id, marker)  # the marker is in unloaded history: fetch around it
        else:
            self.notify("No unread messages.")

    # -- media -----------------------------------------------------------------------------------------

    def _inline_images(self, room: Room) -> dict[str, bytes]:
        images: dict[str, bytes] = {}
        for event in room.events():
            url = media_url(event.content) if event.msgtype == "m.image" and not event.redacted else None
            data = self.parley.media.get(url, "inline") if url else None
            if url and data is not None:
                images[url] = data
        return images

    def _fetch_inline_images(self, room: Room) -> None:
        for event in room.events()[-30:]:  # the part of the room the user can see first
            url = media_url(event.content) if event.msgtype == "m.image" and not event.redacted else None
            if url and self.parley.media.get(url, "inline") is None and (url, "inline") not in self._fetching:
                self._fetching.add((url, "inline"))
                self.fetch_inline(room.room_id, url, wants_thumbnail(event.content))

    @work(group="media")
    async def fetch_inline(self, room_id: str, url: str, thumbnail: bool) -> None:
        client = self.parley.client
        try:
            if thumbnail:
                try:
                    data, _ = await client.thumbnail(url, *THUMBNAIL)
                except MatrixError:
                    data, _ = await client.download(url)  # no thumbnail: the original will do
            else:
                data, _ = await client.download(url)
        except (MatrixError, TransportError, LoggedOut, ValueError):
            return  # stays a placeholder line; _fetching keeps us from retrying in a loop
        self.parley.media.put(url, "inline", data)
        if room_id == self.room_id and self.current_room is not None:
            self._draw_room(self.current_room)

    def _open_or_save(self, event: TimelineEvent, *, save: bool) -> None:
        url = media_url(event.content)
        if url is None or event.msgtype not in ("m.image", "m.file", "m.video", "m.audio"):
            self.notify("No file in this message.", severity="warning")
            return
        name = event.content.get("filename") or event.content.get("body") or "download"
        self.open_media(url, str(name), viewer=event.msgtype == "m.image" and not save)

    @work(group="media-full")
    async def open_media(self, url: str, name: str, viewer: bool) -> None:
        data = self.parley.media.get(url, "full")
        if data is None:
            try:
                data, _ = await self.parley.client.download(url)
            except (MatrixError, TransportError, LoggedOut, ValueError) as error:
                self.notify(f"Download failed: {error}", severity="error")
                return
            self.parley.media.put(url, "full", data)
        if viewer:
            self.app.push_screen(ImageViewerScreen(name, data, on_save=self.save_file))
        else:
            self.save_file(name, data)

    def save_file(self, name: str, data: bytes) -> Path | None:
        folder = Path(self.parley.settings.downloads_dir).expanduser() if self.parley.settings.downloads_dir \
            else downloads_dir()
        try:
            path = save_media(folder, name, data)
        except OSError as error:
            self.notify(f"Could not save {name}: {error.strerror or error}", severity="error")
            return None
        self.notify(f"Saved to {path}")
        return path

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
