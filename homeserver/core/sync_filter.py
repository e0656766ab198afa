"""Sync filters (CS API § Filtering): the top-level filter built from the event filters of core.filters.

A filter is parsed once into immutable objects. Event matching (types with `*`
wildcards, senders, rooms, contains_url) is `core.filters`; this module adds
the structure /sync needs around it: room lists, include_leave, the
timeline/state/ephemeral/account_data parts, and event_fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from homeserver.core.filters import (
    EventFilter,
    FilterError,
    RoomEventFilter,
    _bool,
    _str_list,
    parse_event_filter,
    parse_room_event_filter,
)

__all__ = ["FilterError", "RoomFilter", "SyncFilter", "apply_event_fields", "parse_sync_filter"]


@dataclass(frozen=True)
class RoomFilter:
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    timeline: RoomEventFilter = field(default_factory=RoomEventFilter)
    state: RoomEventFilter = field(default_factory=RoomEventFilter)
    ephemeral: RoomEventFilter = field(default_factory=RoomEventFilter)
    account_data: RoomEventFilter = field(default_factory=RoomEventFilter)

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


@dataclass(frozen=True)
class SyncFilter:
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"
    presence: EventFilter = field(default_factory=EventFilter)
    account_data: EventFilter = field(default_factory=EventFilter)
    room: RoomFilter = field(default_factory=RoomFilter)


def parse_sync_filter(d: Any) -> SyncFilter:
    if not isinstance(d, dict):
        raise FilterError("the filter must be a JSON object")
    event_format = d.get("event_format", "client")
    if event_format not in ("client", "federation"):
        raise FilterError("'event_format' must be 'client' or 'federation'")
    room = d.get("room", {})
    if not isinstance(room, dict):
        raise FilterError("'room' must be an object")
    return SyncFilter(
        event_fields=_str_list(d, "event_fields"),
        event_format=event_format,
        presence=parse_event_filter(d.get("presence", {})),
        account_data=parse_event_filter(d.get("account_data", {})),
        room=RoomFilter(
            rooms=_str_list(room, "rooms"),
            not_rooms=_str_list(room, "not_rooms") or (),
            include_leave=bool(_bool(room, "include_leave", False)),
            timeline=parse_room_event_filter(room.get("timeline")),
            state=parse_room_event_filter(room.get("state")),
            ephemeral=parse_room_event_filter(room.get("ephemeral")),
            account_data=parse_room_event_filter(room.get("account_data")),
        ),
    )


def apply_event_fields(event: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Keep only the named (dotted, `\\.`-escaped) fields of a client event."""
    out: dict[str, Any] = {}
    for f in fields:
        parts = [p.replace("\\.", ".") for p in re.split(r"(?<!\\)\.", f)]
        src: Any = event
        for p in parts:
            if not isinstance(src, dict) or p not in src:
                src = None
                break
            src = src[p]
        if src is None:
            continue
        dst = out
        for p in parts[:-1]:
            dst = dst.setdefault(p, {})
        dst[parts[-1]] = src
    return out
