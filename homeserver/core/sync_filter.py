"""Sync filters (CS API § Filtering): parsing and matching, as pure functions.

A filter is parsed once into immutable objects; matching takes the event's
plain fields. `types` entries may use `*` as a wildcard; `not_*` lists win over
the positive lists; an absent list matches everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any


class FilterError(ValueError):
    pass


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$")


def _type_matches(event_type: str, patterns: tuple[str, ...]) -> bool:
    return any(p == event_type or ("*" in p and _glob(p).match(event_type)) for p in patterns)


def _str_list(d: dict[str, Any], key: str) -> tuple[str, ...] | None:
    if key not in d:
        return None
    value = d[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FilterError(f"'{key}' must be a list of strings")
    return tuple(value)


def _opt_bool(d: dict[str, Any], key: str, default: bool | None) -> bool | None:
    value = d.get(key, default)
    if value is not None and not isinstance(value, bool):
        raise FilterError(f"'{key}' must be a boolean")
    return value


def _limit(d: dict[str, Any], default: int | None) -> int | None:
    value = d.get("limit", default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FilterError("'limit' must be a non-negative integer")
    return value


@dataclass(frozen=True)
class EventMatch:
    """The event-level part shared by every filter kind."""

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    def matches(
        self, event_type: str, sender: str | None = None, room_id: str | None = None, content: Any = None
    ) -> bool:
        if self.not_types and _type_matches(event_type, self.not_types):
            return False
        if self.types is not None and not _type_matches(event_type, self.types):
            return False
        if sender is not None:
            if sender in self.not_senders:
                return False
            if self.senders is not None and sender not in self.senders:
                return False
        if room_id is not None:
            if room_id in self.not_rooms:
                return False
            if self.rooms is not None and room_id not in self.rooms:
                return False
        if self.contains_url is not None:
            has_url = isinstance(content, dict) and isinstance(content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


def parse_event_match(d: Any, default_limit: int | None = None) -> EventMatch:
    if d is None:
        return EventMatch(limit=default_limit)
    if not isinstance(d, dict):
        raise FilterError("a filter must be an object")
    return EventMatch(
        limit=_limit(d, default_limit),
        types=_str_list(d, "types"),
        not_types=_str_list(d, "not_types") or (),
        senders=_str_list(d, "senders"),
        not_senders=_str_list(d, "not_senders") or (),
        rooms=_str_list(d, "rooms"),
        not_rooms=_str_list(d, "not_rooms") or (),
        contains_url=_opt_bool(d, "contains_url", None),
        lazy_load_members=bool(_opt_bool(d, "lazy_load_members", False)),
        include_redundant_members=bool(_opt_bool(d, "include_redundant_members", False)),
        unread_thread_notifications=bool(_opt_bool(d, "unread_thread_notifications", False)),
    )


@dataclass(frozen=True)
class RoomFilter:
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    timeline: EventMatch = field(default_factory=lambda: EventMatch(limit=10))
    state: EventMatch = field(default_factory=EventMatch)
    ephemeral: EventMatch = field(default_factory=EventMatch)
    account_data: EventMatch = field(default_factory=EventMatch)

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


@dataclass(frozen=True)
class SyncFilter:
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"
    presence: EventMatch = field(default_factory=EventMatch)
    account_data: EventMatch = field(default_factory=EventMatch)
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
        presence=parse_event_match(d.get("presence")),
        account_data=parse_event_match(d.get("account_data")),
        room=RoomFilter(
            rooms=_str_list(room, "rooms"),
            not_rooms=_str_list(room, "not_rooms") or (),
            include_leave=bool(_opt_bool(room, "include_leave", False)),
            timeline=parse_event_match(room.get("timeline"), default_limit=10),
            state=parse_event_match(room.get("state")),
            ephemeral=parse_event_match(room.get("ephemeral")),
            account_data=parse_event_match(room.get("account_data")),
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
