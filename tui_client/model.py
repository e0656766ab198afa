"""The client's state of a Matrix account, as plain data: the TUI's "h11".

Sync responses (``/sync``), history pages (``/messages``) and member lists go in as the
JSON dicts the server sent; widgets read rooms, timelines, names and counts out. There
is no Textual, no httpx and no clock in here: every method is a deterministic function
of the data given, so the whole model is tested with plain pytest.

Theory of operation:

- A room's timeline is a list of entries in display order: :class:`TimelineEvent` or
  :class:`Gap`. A gap marks history we know exists but have not fetched (a ``limited``
  sync timeline, or the start of the room); it carries the pagination token that fills
  it with :meth:`ClientState.apply_messages`.
- Events are de-duplicated by ``event_id``; a local echo (sent, not yet synced) is
  matched to its remote copy by ``transaction_id`` or by the event id the send returned.
- Relations are not timeline entries: edits (``m.replace``), reactions (``m.annotation``)
  and redactions change their target. When the target is not loaded yet they wait in
  ``pending_relations`` and apply when it arrives (back-pagination sees edits first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .text import clean_text

JsonDict = dict[str, Any]

#: Event types that are displayed as timeline entries (others update state silently).
MESSAGE_TYPES = frozenset({"m.room.message", "m.sticker", "m.room.encrypted"})
RELATION_TYPES_HIDDEN = frozenset({"m.replace", "m.annotation"})


class SendStatus(Enum):
    """Where a timeline event is in its journey to the server."""

    SENT = "sent"
    PENDING = "pending"
    FAILED = "failed"


@dataclass
class Member:
    """A room member as far as the client knows (lazy loading means not everyone)."""

    user_id: str
    membership: str
    displayname: str | None = None
    avatar_url: str | None = None


#: Presence states, most available first (the member list sorts by this).
PRESENCE_ORDER = ("online", "unavailable", "offline")


@dataclass
class Presence:
    """A user's ``m.presence`` as last seen in a sync."""

    presence: str = "offline"
    currently_active: bool = False
    last_active_ago: int | None = None
    status_msg: str | None = None


@dataclass
class Gap:
    """Missing history before the next entry; ``token`` is a ``/messages`` ``from`` token.

    A gap restored from the local cache where older events were dropped has no token
    (``""``) but an ``anchor``: the event right after it, whose ``/context`` ``start``
    token is where back-pagination continues.
    """

    token: str
    anchor: str | None = None


@dataclass
class TimelineEvent:
    """One displayed event, with edits, redaction and reactions already applied."""

    event_id: str | None
    sender: str
    type: str
    origin_server_ts: int
    original_content: JsonDict
    state_key: str | None = None
    prev_content: JsonDict | None = None
    txn_id: str | None = None
    status: SendStatus = SendStatus.SENT
    redacted: bool = False
    #: edit event id -> (timestamp, m.new_content); the latest one wins.
    edits: dict[str, tuple[int, JsonDict]] = field(default_factory=dict)
    #: reaction key -> sender -> reaction event id
    reactions: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def content(self) -> JsonDict:
        """The content to display: empty if redacted, else the latest edit or the original."""
        if self.redacted:
            return {}
        if self.edits:
            _, latest = max(self.edits.values(), key=lambda pair: pair[0])
            return latest
        return self.original_content

    @property
    def edited(self) -> bool:
        return bool(self.edits) and not self.redacted

    @property
    def msgtype(self) -> str | None:
        value = self.content.get("msgtype")
        return value if isinstance(value, str) else None

    @property
    def reply_to(self) -> str | None:
        """The event id this message replies to, if any (from the original content)."""
        relates = self.original_content.get("m.relates_to")
        if isinstance(relates, dict):
            reply = relates.get("m.in_reply_to")
            if isinstance(reply, dict) and isinstance(reply.get("event_id"), str):
                return reply["event_id"]
        return None

    @property
    def body(self) -> str:
        """Plain body with the reply fallback (leading ``> `` lines) removed and cleaned."""
        body = self.content.get("body")
        if not isinstance(body, str):
            return ""
        if self.reply_to is not None and not self.edits:
            body = strip_reply_fallback(body)
        return clean_text(body)

    @property
    def is_state(self) -> bool:
        return self.state_key is not None


TimelineEntry = TimelineEvent | Gap


def strip_reply_fallback(body: str) -> str:
    """Drop the ``> <@user> quoted`` lines older clients prepend to replies."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    if index < len(lines) and lines[index] == "":
        index += 1
    return "\n".join(lines[index:])


def _relation(event: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(rel_type, target event id)`` of an event's ``m.relates_to``, if any."""
    content = event.get("content")
    if not isinstance(content, dict):
        return None, None
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict):
        return None, None
    rel_type, target = relates.get("rel_type"), relates.get("event_id")
    if isinstance(rel_type, str) and isinstance(target, str):
        return rel_type, target
    return None, None


def _redacts(event: Mapping[str, Any]) -> str | None:
    """The target of a redaction: top-level ``redacts`` (v1-v10) or ``content.redacts`` (v11+)."""
    content = event.get("content")
    if isinstance(content, dict) and isinstance(content.get("redacts"), str):
        return content["redacts"]
    value = event.get("redacts")
    return value if isinstance(value, str) else None


@dataclass
class Room:
    """Everything the client knows about one room."""

    room_id: str
    membership: str = "join"
    #: (event type, state key) -> content of the current state event
    state: dict[tuple[str, str], JsonDict] = field(default_factory=dict)
    #: (event type, state key) -> sender of the current state event
    state_senders: dict[tuple[str, str], str] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    heroes: list[str] = field(default_factory=list)
    joined_member_count: int | None = None
    invited_member_count: int | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)
    notification_count: int = 0
    highlight_count: int = 0
    #: user id -> event id of their latest m.read receipt
    receipts: dict[str, str] = field(default_factory=dict)
    typing: list[str] = field(default_factory=list)
    fully_read: str | None = None
    #: the full member list was loaded with ``/members`` (sync lazy-loads only senders)
    members_loaded: bool = False
    is_direct: bool = False
    last_activity_ts: int = 0
    #: sender of our own invite membership event, for invites
    invited_by: str | None = None
    #: target event id -> relation events waiting for it
    pending_relations: dict[str, list[JsonDict]] = field(default_factory=dict)
    _by_id: dict[str, TimelineEvent] = field(default_factory=dict, repr=False)
    #: relation event id -> (kind, target id[, key, sender]) so redacting a relation undoes it
    _relations: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    # -- lookups ---------------------------------------------------------------------

    def event(self, event_id: str) -> TimelineEvent | None:
        return self._by_id.get(event_id)

    def events(self) -> list[TimelineEvent]:
        return [entry for entry in self.timeline if isinstance(entry, TimelineEvent)]

    def oldest_gap(self) -> Gap | None:
        """The gap to fill when the user scrolls to the top, if history remains."""
        for entry in self.timeline:
            if isinstance(entry, Gap):
                return entry
        return None

    @property
    def topic(self) -> str:
        return clean_text(self.state.get(("m.room.topic", ""), {}).get("topic"), single_line=True)

    @property
    def inviter(self) -> str | None:
        return self.invited_by if self.membership == "invite" else None

    def member_list(self) -> list[Member]:
        """Joined members, then invited ones, each group by display name (case-blind)."""
        present = [m for m in self.members.values() if m.membership in ("join", "invite")]
        return sorted(present, key=lambda m: (m.membership != "join", self.member_name(m.user_id).lower(),
                                              m.user_id))

    def first_unread(self, own_user_id: str, after: str | None = None) -> TimelineEvent | None:
        """The first message from someone else after the read marker ``after`` (default: ours).

        None when the marker is the latest event, or when it is not loaded (then everything
        loaded may be unread, and the caller decides).
        """
        marker = after if after is not None else self.fully_read
        if marker is None or marker not in self._by_id:
            return None
        seen = False
        for entry in self.timeline:
            if not isinstance(entry, TimelineEvent):
                continue
            if seen and entry.sender != own_user_id and entry.type in MESSAGE_TYPES and not entry.redacted:
                return entry
            seen = seen or entry.event_id == marker
        return None

    def readers_of(self, event_id: str) -> list[str]:
        """Users whose latest read receipt is exactly ``event_id``, sorted."""
        return sorted(user for user, target in self.receipts.items() if target == event_id)

    # -- names -----------------------------------------------------------------------

    def member_name(self, user_id: str) -> str:
        """A user's display name, disambiguated with the user id when it is not unique."""
        member = self.members.get(user_id)
        name = clean_text(member.displayname, single_line=True).strip() if member else ""
        if not name:
            return clean_text(user_id, single_line=True)
        clashes = sum(
            1
            for other in self.members.values()
            if other.user_id != user_id
            and other.membership in ("join", "invite")
            and clean_text(other.displayname, single_line=True).strip() == name
        )
        return f"{name} ({clean_text(user_id, single_line=True)})" if clashes else name

    def display_name(self, own_user_id: str) -> str:
        """The room's name per the spec's "Calculating the display name for a room"."""
        name = self.state.get(("m.room.name", ""), {}).get("name")
        if isinstance(name, str) and name.strip():
            return clean_text(name, single_line=True)
        alias = self.state.get(("m.room.canonical_alias", ""), {}).get("alias")
        if isinstance(alias, str) and alias:
            return clean_text(alias, single_line=True)
        heroes = [h for h in self.heroes if h != own_user_id]
        if not heroes:
            heroes = sorted(
                m.user_id
                for m in self.members.values()
                if m.user_id != own_user_id and m.membership in ("join", "invite")
            )[:5]
        if self.joined_member_count is not None or self.invited_member_count is not None:
            total = (self.joined_member_count or 0) + (self.invited_member_count or 0)
        else:
            total = 1 + sum(
                1 for m in self.members.values() if m.user_id != own_user_id and m.membership in ("join", "invite")
            )
        if self.membership == "invite" and not heroes and self.inviter:
            return self.member_name(self.inviter)
        names = [self.member_name(h) for h in heroes]
        if total <= 1:
            return f"Empty Room (was {_join_names(names, 0)})" if names else "Empty Room"
        others = total - 1 - len(names)
        return _join_names(names, others) if names else "Empty Room"

    # -- timeline mechanics ------------------------------------------------------------

    def _index_of(self, item: TimelineEntry) -> int:
        for index, entry in enumerate(self.timeline):
            if entry is item:
                return index
        raise ValueError("entry not in timeline")


def _join_names(names: list[str], others: int) -> str:
    if others > 0:
        return f"{', '.join(names)} and {others} other{'s' if others != 1 else ''}"
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"


@dataclass
class Notification:
    """A new event from someone else that may deserve the user's attention."""

    room_id: str
    event_id: str
    highlight: bool
    is_direct: bool


@dataclass
class SyncUpdate:
    """What one applied sync changed, so the UI redraws only what it must."""

    rooms_changed: set[str] = field(default_factory=set)
    rooms_removed: set[str] = field(default_factory=set)
    room_list_changed: bool = False
    #: users whose presence changed (the member list redraws)
    presence_changed: set[str] = field(default_factory=set)
    notifications: list[Notification] = field(default_factory=list)


class ClientState:
    """All rooms of one logged-in user, fed by sync responses and history pages."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.rooms: dict[str, Room] = {}
        self.direct: dict[str, list[str]] = {}
        self.account_data: dict[str, JsonDict] = {}
        self.presence: dict[str, Presence] = {}
        self.next_batch: str | None = None
        #: rooms changed (or removed) since the cache last took them: see :meth:`take_dirty`
        self.dirty_rooms: set[str] = set()
        self.account_data_dirty = False
        #: restored from a cache: the next sync is a catch-up, whose messages are not news
        self.catching_up = False

    def take_dirty(self) -> tuple[set[str], bool]:
        """The rooms (and whether account data) changed since the last call; resets both."""
        rooms, account_data = self.dirty_rooms, self.account_data_dirty
        self.dirty_rooms, self.account_data_dirty = set(), False
        return rooms, account_data

    # -- sync ----------------------------------------------------------------------------

    def apply_sync(self, response: Mapping[str, Any]) -> SyncUpdate:
        """Fold one ``/sync`` response into the state; return what changed."""
        update = SyncUpdate()
        initial = self.next_batch is None or self.catching_up
        self.catching_up = False
        for event in _events(response.get("account_data")):
            if isinstance(event.get("type"), str) and isinstance(event.get("content"), dict):
                self.account_data[event["type"]] = event["content"]
                self.account_data_dirty = True
                if event["type"] == "m.direct":
                    self._set_direct(event["content"])
                    self.dirty_rooms.update(self.rooms)
                    update.room_list_changed = True
        for event in _events(response.get("presence")):
            if event.get("type") == "m.presence" and isinstance(event.get("sender"), str):
                self.presence[event["sender"]] = _presence(_dict(event.get("content")))
                update.presence_changed.add(event["sender"])
        rooms = _dict(response.get("rooms"))
        for room_id, data in _dict(rooms.get("invite")).items():
            self._apply_invite(room_id, _dict(data))
            update.rooms_changed.add(room_id)
            update.room_list_changed = True
        for room_id, data in _dict(rooms.get("join")).items():
            room = self.rooms.get(room_id)
            if room is None or room.membership != "join":
                update.room_list_changed = True
            before = room.highlight_count if room else 0
            room = self._apply_joined(room_id, _dict(data), update)
            update.rooms_changed.add(room_id)
            if not initial:
                self._collect_notifications(room, _dict(data), before, update)
        for room_id in _dict(rooms.get("leave")):
            if self.rooms.pop(room_id, None) is not None:
                update.rooms_removed.add(room_id)
                update.room_list_changed = True
        if isinstance(response.get("next_batch"), str):
            self.next_batch = response["next_batch"]
        if update.rooms_changed:
            update.room_list_changed = True  # ordering and badges depend on activity
        self.dirty_rooms |= update.rooms_changed | update.rooms_removed
        return update

    def _set_direct(self, content: Mapping[str, Any]) -> None:
        self.direct = {
            user: [r for r in rooms if isinstance(r, str)]
            for user, rooms in content.items()
            if isinstance(rooms, list)
        }
        direct_rooms = {room_id for rooms in self.direct.values() for room_id in rooms}
        for room in self.rooms.values():
            if room.membership == "join":
                room.is_direct = room.room_id in direct_rooms

    def _direct_room_ids(self) -> set[str]:
        return {room_id for rooms in self.direct.values() for room_id in rooms}

    def _apply_invite(self, room_id: str, data: Mapping[str, Any]) -> None:
        room = Room(room_id=room_id, membership="invite")
        for event in _events(data.get("invite_state")):
            self._apply_state_event(room, event)
        mine = room.state.get(("m.room.member", self.user_id), {})
        room.invited_by = room.state_senders.get(("m.room.member", self.user_id))
        room.is_direct = bool(mine.get("is_direct"))
        self.rooms[room_id] = room

    def _apply_joined(self, room_id: str, data: Mapping[str, Any], update: SyncUpdate) -> Room:
        room = self.rooms.get(room_id)
        if room is None or room.membership != "join":
            room = Room(room_id=room_id, is_direct=room_id in self._direct_room_ids())
            self.rooms[room_id] = room
        summary = _dict(data.get("summary"))
        if isinstance(summary.get("m.heroes"), list):
            room.heroes = [h for h in summary["m.heroes"] if isinstance(h, str)]
        if isinstance(summary.get("m.joined_member_count"), int):
            room.joined_member_count = summary["m.joined_member_count"]
        if isinstance(summary.get("m.invited_member_count"), int):
            room.invited_member_count = summary["m.invited_member_count"]
        for event in _events(data.get("state")):
            self._apply_state_event(room, event)
        timeline = _dict(data.get("timeline"))
        events = list(_events(timeline.get("events")))
        if timeline.get("limited") and isinstance(timeline.get("prev_batch"), str):
            # History is missing between what we have and these events.
            room.timeline.append(Gap(timeline["prev_batch"]))
        for event in events:
            self._ingest(room, event, position=None)
        unread = _dict(data.get("unread_notifications"))
        if isinstance(unread.get("notification_count"), int):
            room.notification_count = unread["notification_count"]
        if isinstance(unread.get("highlight_count"), int):
            room.highlight_count = unread["highlight_count"]
        for event in _events(_dict(data.get("ephemeral")).get("events")):
            self._apply_ephemeral(room, event)
        for event in _events(_dict(data.get("account_data")).get("events")):
            if event.get("type") == "m.fully_read":
                target = _dict(event.get("content")).get("event_id")
                room.fully_read = target if isinstance(target, str) else room.fully_read
        return room

    def _collect_notifications(
        self, room: Room, data: Mapping[str, Any], highlights_before: int, update: SyncUpdate
    ) -> None:
        own_name = room.member_name(self.user_id).lower()
        localpart = self.user_id.split(":", 1)[0].lstrip("@").lower()
        for event in _events(_dict(data.get("timeline")).get("events")):
            if event.get("sender") == self.user_id or event.get("type") not in MESSAGE_TYPES:
                continue
            if _relation(event)[0] in RELATION_TYPES_HIDDEN or not isinstance(event.get("event_id"), str):
                continue
            body = _dict(event.get("content")).get("body")
            text = body.lower() if isinstance(body, str) else ""
            mentioned = bool(text) and (own_name in text or localpart in text or self.user_id.lower() in text)
            highlight = mentioned or room.highlight_count > highlights_before
            update.notifications.append(Notification(room.room_id, event["event_id"], highlight, room.is_direct))

    def _apply_ephemeral(self, room: Room, event: Mapping[str, Any]) -> None:
        content = _dict(event.get("content"))
        if event.get("type") == "m.typing":
            users = content.get("user_ids")
            room.typing = [u for u in users if isinstance(u, str)] if isinstance(users, list) else []
        elif event.get("type") == "m.receipt":
            for event_id, receipt_types in content.items():
                for user_id in _dict(_dict(receipt_types).get("m.read")):
                    room.receipts[user_id] = event_id

    def _apply_state_event(self, room: Room, event: Mapping[str, Any]) -> None:
        event_type, state_key = event.get("type"), event.get("state_key")
        content = event.get("content")
        if not isinstance(event_type, str) or not isinstance(state_key, str) or not isinstance(content, dict):
            return
        room.state[(event_type, state_key)] = content
        if isinstance(event.get("sender"), str):
            room.state_senders[(event_type, state_key)] = event["sender"]
        if event_type == "m.room.member":
            membership = content.get("membership")
            if isinstance(membership, str):
                displayname = content.get("displayname")
                avatar = content.get("avatar_url")
                room.members[state_key] = Member(
                    state_key,
                    membership,
                    displayname if isinstance(displayname, str) else None,
                    avatar if isinstance(avatar, str) else None,
                )

    # -- timeline ------------------------------------------------------------------------

    def _ingest(self, room: Room, event: Mapping[str, Any], position: int | None) -> int:
        """Place one event at ``position`` (None: the end); return the next insert position.

        Relations apply to their targets instead of being placed. Returns the position
        after whatever was inserted so pagination can insert a page in order.
        """
        event = dict(event)
        event_id = event.get("event_id")
        if not isinstance(event_id, str) or not isinstance(event.get("type"), str):
            return position if position is not None else len(room.timeline)
        if position is None and event.get("state_key") is not None:
            # Timeline state is current state; paginated (older) state is history only.
            self._apply_state_event(room, event)
        if position is None and isinstance(event.get("origin_server_ts"), int):
            room.last_activity_ts = max(room.last_activity_ts, event["origin_server_ts"])
        if event["type"] == "m.room.redaction":
            self._apply_relation(room, event, "redaction", _redacts(event))
            return position if position is not None else len(room.timeline)
        rel_type, target = _relation(event)
        if rel_type in RELATION_TYPES_HIDDEN and event.get("state_key") is None:
            self._apply_relation(room, event, rel_type, target)
            return position if position is not None else len(room.timeline)
        existing = room._by_id.get(event_id)
        if existing is None:
            existing = self._match_local_echo(room, event)
        if existing is not None:
            # Already shown (a duplicate page, or our own echo coming back): adopt server data.
            existing.event_id = event_id
            existing.status = SendStatus.SENT
            if isinstance(event.get("origin_server_ts"), int):
                existing.origin_server_ts = event["origin_server_ts"]
            room._by_id[event_id] = existing
            if position is None and existing.txn_id is not None:
                # A remote echo moves our message to where the server put it.
                room.timeline.remove(existing)
                room.timeline.append(existing)
            return position if position is not None else len(room.timeline)
        item = TimelineEvent(
            event_id=event_id,
            sender=_str(event.get("sender")),
            type=event["type"],
            origin_server_ts=_int(event.get("origin_server_ts")),
            original_content=_dict(event.get("content")),
            state_key=event.get("state_key") if isinstance(event.get("state_key"), str) else None,
            prev_content=_dict(_dict(event.get("unsigned")).get("prev_content")) or None,
            redacted="redacted_because" in _dict(event.get("unsigned")),
        )
        if position is None:
            room.timeline.append(item)
            position = len(room.timeline)
        else:
            room.timeline.insert(position, item)
            position += 1
        room._by_id[event_id] = item
        for waiting in room.pending_relations.pop(event_id, []):
            self._ingest(room, waiting, position=-1)
        return position

    def _match_local_echo(self, room: Room, event: Mapping[str, Any]) -> TimelineEvent | None:
        txn_id = _dict(event.get("unsigned")).get("transaction_id")
        if not isinstance(txn_id, str):
            return None
        for entry in reversed(room.timeline):
            if isinstance(entry, TimelineEvent) and entry.txn_id == txn_id and entry.event_id is None:
                return entry
        return None

    def _apply_relation(self, room: Room, event: Mapping[str, Any], kind: str | None, target_id: str | None) -> None:
        event_id = event["event_id"]
        if target_id is None:
            return
        if kind == "redaction" and target_id in room._relations:
            self._undo_relation(room, target_id)
            return
        target = room._by_id.get(target_id)
        if target is None:
            waiting = room.pending_relations.setdefault(target_id, [])
            if all(w.get("event_id") != event_id for w in waiting):
                waiting.append(dict(event))
            return
        sender = event.get("sender")
        content = _dict(event.get("content"))
        if kind == "redaction":
            target.redacted = True
            target.reactions.clear()
        elif kind == "m.replace":
            new_content = content.get("m.new_content")
            if sender == target.sender and isinstance(new_content, dict) and not target.redacted:
                target.edits[event_id] = (_int(event.get("origin_server_ts")), new_content)
                room._relations[event_id] = ("edit", target_id)
        elif kind == "m.annotation":
            key = _dict(content.get("m.relates_to")).get("key")
            if isinstance(key, str) and isinstance(sender, str) and not target.redacted:
                target.reactions.setdefault(key, {})[sender] = event_id
                room._relations[event_id] = ("reaction", target_id, key, sender)

    def _undo_relation(self, room: Room, relation_id: str) -> None:
        record = room._relations.pop(relation_id)
        target = room._by_id.get(record[1])
        if target is None:
            return
        if record[0] == "edit":
            target.edits.pop(relation_id, None)
        elif record[0] == "reaction":
            _, _, key, sender = record
            senders = target.reactions.get(key, {})
            if senders.get(sender) == relation_id:
                del senders[sender]
            if not senders:
                target.reactions.pop(key, None)

    def apply_messages(self, room_id: str, gap: Gap, response: Mapping[str, Any]) -> None:
        """Fill ``gap`` with a ``/messages?dir=b&from=gap.token`` page.

        The page arrives newest first; it is inserted oldest first where the gap was.
        The gap stays (with the page's ``end`` token) while there is more history, and
        goes when the server says the start of the room was reached (no ``end``).
        """
        room = self.rooms.get(room_id)
        if room is None:
            return
        try:
            index = room._index_of(gap)
        except ValueError:
            return  # filled already by an earlier page
        self.dirty_rooms.add(room_id)
        room.timeline.pop(index)
        chunk = list(_events(response.get("chunk")))
        end = response.get("end")
        if isinstance(end, str) and chunk:
            room.timeline.insert(index, Gap(end))
            index += 1
        for event in _events(response.get("state")):
            if event.get("type") == "m.room.member" and event.get("state_key") not in room.members:
                self._apply_state_event(room, event)
        position = index
        for event in reversed(chunk):
            if event.get("type") == "m.room.member" and event.get("state_key") not in room.members:
                self._apply_state_event(room, event)
            position = self._ingest(room, event, position)

    def apply_members(self, room_id: str, response: Mapping[str, Any]) -> None:
        """Apply a ``/members`` response (the full member list lazy loading left out)."""
        room = self.rooms.get(room_id)
        if room is not None:
            for event in _events(response.get("chunk")):
                self._apply_state_event(room, event)
            room.members_loaded = True
            self.dirty_rooms.add(room_id)

    def apply_context(self, room_id: str, response: Mapping[str, Any]) -> str | None:
        """Load a ``/context/{eventId}`` answer into the timeline; return the event id shown.

        When the event is already loaded nothing changes. Otherwise the context is
        placed as an island where its time belongs: just before the gap that precedes
        the first later event, itself preceded by a new gap (the context's ``start``
        token) so scrolling up from the island loads what came before it. The old gap
        stays after the island and still fills the history between it and the newer part.
        """
        room = self.rooms.get(room_id)
        target = _dict(response.get("event"))
        event_id = target.get("event_id")
        if room is None or not isinstance(event_id, str):
            return None
        self.dirty_rooms.add(room_id)
        for event in _events(response.get("state")):
            if event.get("type") == "m.room.member" and event.get("state_key") not in room.members:
                self._apply_state_event(room, event)
        if event_id in room._by_id:
            return event_id
        ts = _int(target.get("origin_server_ts"))
        index = next((i for i, entry in enumerate(room.timeline)
                      if isinstance(entry, TimelineEvent) and entry.origin_server_ts > ts), len(room.timeline))
        gap_index = next((i for i in range(index - 1, -1, -1) if isinstance(room.timeline[i], Gap)), None)
        position = gap_index if gap_index is not None else index
        if isinstance(response.get("start"), str):
            room.timeline.insert(position, Gap(response["start"]))
            position += 1
        island = [*reversed(list(_events(response.get("events_before")))), target,
                  *_events(response.get("events_after"))]
        for event in island:
            if event.get("type") == "m.room.member" and event.get("state_key") not in room.members:
                self._apply_state_event(room, event)
            position = self._ingest(room, event, position)
        return event_id

    # -- local echoes ----------------------------------------------------------------------

    def add_local_echo(
        self, room_id: str, txn_id: str, event_type: str, content: JsonDict, ts: int
    ) -> TimelineEvent | None:
        """Show a message the user just sent, before the server has confirmed it.

        Relations (edits, reactions) are applied to their target immediately instead.
        """
        room = self.rooms.get(room_id)
        if room is None:
            return None
        rel_type, target = _relation({"content": content})
        if rel_type in RELATION_TYPES_HIDDEN and target is not None:
            fake = {"event_id": f"~{txn_id}", "sender": self.user_id, "type": event_type,
                    "origin_server_ts": ts, "content": content}
            self._apply_relation(room, fake, rel_type, target)
            return None
        item = TimelineEvent(
            event_id=None, sender=self.user_id, type=event_type, origin_server_ts=ts,
            original_content=content, txn_id=txn_id, status=SendStatus.PENDING,
        )
        room.timeline.append(item)
        room.last_activity_ts = max(room.last_activity_ts, ts)
        return item

    def _echo(self, room_id: str, txn_id: str) -> TimelineEvent | None:
        room = self.rooms.get(room_id)
        if room is None:
            return None
        for entry in reversed(room.timeline):
            if isinstance(entry, TimelineEvent) and entry.txn_id == txn_id:
                return entry
        return None

    def mark_sent(self, room_id: str, txn_id: str, event_id: str) -> None:
        """The server accepted a local echo: remember its event id for de-duplication."""
        room = self.rooms.get(room_id)
        echo = self._echo(room_id, txn_id)
        if room is None:
            return
        self.dirty_rooms.add(room_id)
        if echo is None:
            # A relation echo: re-key it under the real event id so a redaction finds it.
            fake_id = f"~{txn_id}"
            if fake_id in room._relations:
                room._relations[event_id] = record = room._relations.pop(fake_id)
                target = room._by_id.get(record[1])
                if target is not None and record[0] == "edit":
                    target.edits[event_id] = target.edits.pop(fake_id)
                elif target is not None and record[0] == "reaction":
                    target.reactions.setdefault(record[2], {})[record[3]] = event_id
            return
        if event_id in room._by_id and room._by_id[event_id] is not echo:
            room.timeline.remove(echo)  # the sync got there first
            return
        echo.event_id = event_id
        echo.status = SendStatus.SENT
        room._by_id[event_id] = echo

    def mark_failed(self, room_id: str, txn_id: str) -> None:
        echo = self._echo(room_id, txn_id)
        if echo is not None:
            echo.status = SendStatus.FAILED

    # -- queries -----------------------------------------------------------------------------

    def room_list(self) -> list[Room]:
        """Invites first, then rooms by latest activity (newest first), ties by name."""
        return sorted(
            self.rooms.values(),
            key=lambda r: (r.membership != "invite", -r.last_activity_ts, r.display_name(self.user_id).lower()),
        )

    def last_own_message(self, room_id: str) -> TimelineEvent | None:
        """The latest non-redacted message the user sent in a room (for Up-to-edit)."""
        room = self.rooms.get(room_id)
        if room is None:
            return None
        for entry in reversed(room.timeline):
            if (
                isinstance(entry, TimelineEvent)
                and entry.sender == self.user_id
                and entry.type == "m.room.message"
                and not entry.redacted
                and entry.event_id is not None
            ):
                return entry
        return None

    def latest_event_id(self, room_id: str) -> str | None:
        room = self.rooms.get(room_id)
        if room is None:
            return None
        for entry in reversed(room.timeline):
            if isinstance(entry, TimelineEvent) and entry.event_id is not None:
                return entry.event_id
        return None

    def direct_room_with(self, user_id: str) -> str | None:
        """An existing joined DM with ``user_id``, if there is one."""
        for room_id in self.direct.get(user_id, []):
            room = self.rooms.get(room_id)
            if room is not None and room.membership == "join":
                return room_id
        return None

    def mark_read_locally(self, room_id: str) -> None:
        """Clear the badges right away when the user reads a room (the server follows)."""
        room = self.rooms.get(room_id)
        if room is not None:
            self.dirty_rooms.add(room_id)
            room.notification_count = room.highlight_count = 0
            latest = self.latest_event_id(room_id)
            if latest is not None:
                room.receipts[self.user_id] = latest
                room.fully_read = latest


def _presence(content: Mapping[str, Any]) -> Presence:
    state = content.get("presence")
    ago = content.get("last_active_ago")
    message = content.get("status_msg")
    return Presence(
        presence=state if state in PRESENCE_ORDER else "offline",
        currently_active=content.get("currently_active") is True,
        last_active_ago=ago if isinstance(ago, int) and not isinstance(ago, bool) else None,
        status_msg=message if isinstance(message, str) and message else None,
    )


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _events(container: object) -> Iterable[JsonDict]:
    """The event dicts of ``{"events": [...]}`` or of a plain list, skipping junk."""
    if isinstance(container, dict):
        container = container.get("events")
    if not isinstance(container, list):
        return []
    return [event for event in container if isinstance(event, dict)]
