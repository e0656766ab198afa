"""The client model as plain JSON and back, for the local cache (pure: no files here).

:func:`room_to_json` keeps what the room list and the first screen of each timeline
need: current state, counts, receipts, read marker, and the last ``max_events`` timeline
events with their edits and reactions applied. Typing, presence and unsent local echoes
are not kept. When older events are dropped, a :class:`~tui_client.model.Gap` without a
token but with an ``anchor`` (the oldest kept event) takes their place, so scrolling up
still reaches them. :func:`restore` rebuilds a :class:`~tui_client.model.ClientState`
that behaves as if it had been fed the same syncs: members come from the kept state,
and the relation index (which edit or reaction belongs to which message) from the events.

Anything malformed raises :class:`SnapshotError`; the caller then starts cold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .model import ClientState, Gap, Room, SendStatus, TimelineEntry, TimelineEvent

JsonDict = dict[str, Any]

#: Bumped whenever the shape below changes; an older cache is then ignored (cold start).
SNAPSHOT_VERSION = 1
DEFAULT_MAX_EVENTS = 50
#: Relations waiting for a target that is not loaded; more than this per room are dropped.
MAX_PENDING_RELATIONS = 200


class SnapshotError(ValueError):
    """A cached snapshot that does not describe a room (corrupt or from another version)."""


def room_to_json(room: Room, max_events: int = DEFAULT_MAX_EVENTS) -> JsonDict:
    """``room`` as JSON-ready data, its timeline cut to the last ``max_events`` events."""
    return {
        "room_id": room.room_id,
        "membership": room.membership,
        "state": [[event_type, state_key, content, room.state_senders.get((event_type, state_key))]
                  for (event_type, state_key), content in room.state.items()],
        "heroes": list(room.heroes),
        "joined_member_count": room.joined_member_count,
        "invited_member_count": room.invited_member_count,
        "notification_count": room.notification_count,
        "highlight_count": room.highlight_count,
        "receipts": dict(room.receipts),
        "fully_read": room.fully_read,
        "is_direct": room.is_direct,
        "last_activity_ts": room.last_activity_ts,
        "invited_by": room.invited_by,
        "pending_relations": {target: events for target, events in
                              list(room.pending_relations.items())[-MAX_PENDING_RELATIONS:]},
        "timeline": [_entry_to_json(entry) for entry in _recent(room.timeline, max_events)],
    }


def _recent(timeline: list[TimelineEntry], max_events: int) -> list[TimelineEntry]:
    """The last ``max_events`` sent events and the gaps among them; a tokenless gap in front
    when older events were cut off."""
    kept: list[TimelineEntry] = []
    count = 0
    cut = False
    for entry in reversed(timeline):
        if isinstance(entry, TimelineEvent):
            if entry.event_id is None:
                continue  # a local echo not confirmed by the server: not ours to keep
            if count == max_events:
                cut = True
                break
            count += 1
        kept.append(entry)
    kept.reverse()
    while kept and isinstance(kept[-1], Gap):
        kept.pop()  # a gap with nothing after it cannot be filled in order
    if cut and kept and not isinstance(kept[0], Gap):
        first = kept[0]
        assert isinstance(first, TimelineEvent) and first.event_id is not None
        kept.insert(0, Gap("", anchor=first.event_id))
    return kept


def _entry_to_json(entry: TimelineEntry) -> JsonDict:
    if isinstance(entry, Gap):
        return {"gap": entry.token, "anchor": entry.anchor}
    data: JsonDict = {
        "event_id": entry.event_id, "sender": entry.sender, "type": entry.type,
        "ts": entry.origin_server_ts, "content": entry.original_content,
    }
    if entry.state_key is not None:
        data["state_key"] = entry.state_key
    if entry.prev_content is not None:
        data["prev_content"] = entry.prev_content
    if entry.redacted:
        data["redacted"] = True
    edits = {edit_id: [ts, content] for edit_id, (ts, content) in entry.edits.items() if not edit_id.startswith("~")}
    if edits:
        data["edits"] = edits
    reactions = {key: {sender: reaction_id for sender, reaction_id in senders.items()
                       if not reaction_id.startswith("~")}
                 for key, senders in entry.reactions.items()}
    reactions = {key: senders for key, senders in reactions.items() if senders}
    if reactions:
        data["reactions"] = reactions
    return data


def restore(user_id: str, next_batch: str | None, account_data: Mapping[str, Any],
            rooms: Iterable[Mapping[str, Any]]) -> ClientState:
    """A model from :func:`room_to_json` rooms, the sync token and the account data."""
    model = ClientState(user_id)
    try:
        for event_type, content in account_data.items():
            if not isinstance(content, dict):
                raise SnapshotError(f"account data {event_type!r} is not an object")
            model.account_data[event_type] = content
        for data in rooms:
            room = _room_from_json(model, data)
            model.rooms[room.room_id] = room
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise SnapshotError(f"not a cached room: {error!r}") from error
    direct = model.account_data.get("m.direct")
    if isinstance(direct, dict):
        # Sets model.direct and re-derives each joined room's is_direct from it.
        model._set_direct(direct)
    model.next_batch = next_batch
    model.catching_up = next_batch is not None
    return model


def _room_from_json(model: ClientState, data: Mapping[str, Any]) -> Room:
    room = Room(room_id=_text(data["room_id"]), membership=_text(data["membership"]))
    for event_type, state_key, content, sender in data["state"]:
        event: JsonDict = {"type": _text(event_type), "state_key": _text(state_key), "content": dict(content)}
        if sender is not None:
            event["sender"] = _text(sender)
        model._apply_state_event(room, event)
    room.heroes = [_text(hero) for hero in data["heroes"]]
    room.joined_member_count = _optional_int(data["joined_member_count"])
    room.invited_member_count = _optional_int(data["invited_member_count"])
    room.notification_count = int(data["notification_count"])
    room.highlight_count = int(data["highlight_count"])
    room.receipts = {_text(user): _text(event_id) for user, event_id in data["receipts"].items()}
    room.fully_read = None if data["fully_read"] is None else _text(data["fully_read"])
    room.is_direct = bool(data["is_direct"])
    room.last_activity_ts = int(data["last_activity_ts"])
    room.invited_by = None if data["invited_by"] is None else _text(data["invited_by"])
    room.pending_relations = {_text(target): [dict(event) for event in events]
                              for target, events in data["pending_relations"].items()}
    for item in data["timeline"]:
        if "gap" in item:
            anchor = item.get("anchor")
            room.timeline.append(Gap(_text(item["gap"]), None if anchor is None else _text(anchor)))
            continue
        entry = _event_from_json(item)
        event_id = _text(entry.event_id)
        room.timeline.append(entry)
        room._by_id[event_id] = entry
        for edit_id in entry.edits:
            room._relations[edit_id] = ("edit", event_id)
        for key, senders in entry.reactions.items():
            for sender, reaction_id in senders.items():
                room._relations[reaction_id] = ("reaction", event_id, key, sender)
    return room


def _event_from_json(item: Mapping[str, Any]) -> TimelineEvent:
    prev = item.get("prev_content")
    return TimelineEvent(
        event_id=_text(item["event_id"]),
        sender=_text(item["sender"]),
        type=_text(item["type"]),
        origin_server_ts=int(item["ts"]),
        original_content=dict(item["content"]),
        state_key=None if item.get("state_key") is None else _text(item["state_key"]),
        prev_content=None if prev is None else dict(prev),
        status=SendStatus.SENT,
        redacted=item.get("redacted") is True,
        edits={_text(edit_id): (int(ts), dict(content)) for edit_id, (ts, content) in item.get("edits", {}).items()},
        reactions={_text(key): {_text(sender): _text(reaction_id) for sender, reaction_id in senders.items()}
                   for key, senders in item.get("reactions", {}).items()},
    )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise SnapshotError(f"expected a string, got {type(value).__name__}")
    return value


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise SnapshotError(f"expected an integer, got {type(value).__name__}")
    return value
