"""Event filters (CS API § Filtering): parse filter JSON and match events against it.

Pure: plain dicts in, plain values out. The same :class:`RoomEventFilter`
serves ``/messages``, ``/context`` and ``/sync`` (``room.timeline``,
``room.state``, ...), and :class:`EventFilter` the non-room sections
(``presence``, ``account_data``).

Matching works on either a PDU or a client-format event: both carry
``type``, ``sender``, ``room_id`` (absent only for the v12 create event PDU)
and ``content`` at the top level.

Rules kept here (from ``data/api/client-server/definitions/*filter.yaml``):

* an absent list means "no restriction"; an empty ``types``/``senders``/``rooms``
  list matches nothing;
* ``not_*`` wins over the matching positive list;
* ``*`` in ``types`` / ``not_types`` matches any run of characters (only there);
* ``contains_url: true`` keeps events whose ``content.url`` is a string, ``false``
  keeps the others.

Bad filter JSON raises :class:`FilterError` carrying the Matrix error code the
API layer should answer with (``M_BAD_JSON`` for a wrong shape,
``M_INVALID_PARAM`` for a query parameter that is not JSON at all).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "EventFilter",
    "FilterError",
    "RoomEventFilter",
    "parse_event_filter",
    "parse_room_event_filter",
    "parse_room_event_filter_json",
    "type_matches",
]

# Synapse caps filter limits; a client asking for more gets this many.
MAX_FILTER_LIMIT = 1000


class FilterError(ValueError):
    """A filter that cannot be used. ``errcode`` is the Matrix error code to answer with."""

    def __init__(self, message: str, errcode: str = "M_BAD_JSON") -> None:
        super().__init__(message)
        self.errcode = errcode


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def type_matches(event_type: str, patterns: Iterable[str]) -> bool:
    """True if `event_type` matches any pattern (``*`` is a wildcard)."""
    for p in patterns:
        if "*" in p:
            if _glob(p).fullmatch(event_type):
                return True
        elif p == event_type:
            return True
    return False


def _str_list(raw: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    if key not in raw or raw[key] is None:
        return None
    value = raw[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FilterError(f"'{key}' must be a list of strings")
    return tuple(value)


def _bool(raw: Mapping[str, Any], key: str, default: bool | None) -> bool | None:
    if key not in raw or raw[key] is None:
        return default
    value = raw[key]
    if not isinstance(value, bool):
        raise FilterError(f"'{key}' must be a boolean")
    return value


def _limit(raw: Mapping[str, Any]) -> int | None:
    if "limit" not in raw or raw["limit"] is None:
        return None
    value = raw["limit"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise FilterError("'limit' must be an integer")
    if value < 0:
        raise FilterError("'limit' must not be negative")
    return min(value, MAX_FILTER_LIMIT)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """The common part of every filter: types and senders, and a limit."""

    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    limit: int | None = None

    def matches(self, event: Mapping[str, Any]) -> bool:
        event_type = event.get("type")
        sender = event.get("sender")
        if not isinstance(event_type, str):
            return False
        if self.not_types and type_matches(event_type, self.not_types):
            return False
        if self.types is not None and not type_matches(event_type, self.types):
            return False
        if sender in self.not_senders:
            return False
        if self.senders is not None and sender not in self.senders:
            return False
        return True

    def filter(self, events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [e for e in events if self.matches(e)]

    @property
    def is_unrestricted(self) -> bool:
        """True if this filter lets every event through (the limit aside)."""
        return self.types is None and not self.not_types and self.senders is None and not self.not_senders


@dataclass(frozen=True, slots=True)
class RoomEventFilter(EventFilter):
    """An EventFilter plus the room-specific keys of ``RoomEventFilter``."""

    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    def matches_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def matches(self, event: Mapping[str, Any]) -> bool:
        if not EventFilter.matches(self, event):
            return False
        room_id = event.get("room_id")
        if isinstance(room_id, str) and not self.matches_room(room_id):
            return False
        if self.contains_url is not None:
            content = event.get("content")
            has_url = isinstance(content, Mapping) and isinstance(content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True

    @property
    def is_unrestricted(self) -> bool:
        return (
            self.types is None
            and not self.not_types
            and self.senders is None
            and not self.not_senders
            and self.rooms is None
            and not self.not_rooms
            and self.contains_url is None
        )


def _event_filter_fields(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise FilterError("A filter must be a JSON object")
    return {
        "types": _str_list(raw, "types"),
        "not_types": _str_list(raw, "not_types") or (),
        "senders": _str_list(raw, "senders"),
        "not_senders": _str_list(raw, "not_senders") or (),
        "limit": _limit(raw),
    }


def parse_event_filter(raw: Any) -> EventFilter:
    """An EventFilter from its JSON object; FilterError if the shape is wrong."""
    return EventFilter(**_event_filter_fields(raw))


def parse_room_event_filter(raw: Any) -> RoomEventFilter:
    """A RoomEventFilter from its JSON object (``None`` means no filter); FilterError if malformed."""
    if raw is None:
        return RoomEventFilter()
    fields = _event_filter_fields(raw)
    return RoomEventFilter(
        **fields,
        rooms=_str_list(raw, "rooms"),
        not_rooms=_str_list(raw, "not_rooms") or (),
        contains_url=_bool(raw, "contains_url", None),
        lazy_load_members=bool(_bool(raw, "lazy_load_members", False)),
        include_redundant_members=bool(_bool(raw, "include_redundant_members", False)),
        unread_thread_notifications=bool(_bool(raw, "unread_thread_notifications", False)),
    )


def parse_room_event_filter_json(text: str | None) -> RoomEventFilter:
    """The ``filter`` query parameter of /messages and /context (JSON text; may be absent)."""
    if text is None or text == "":
        return RoomEventFilter()
    try:
        raw = json.loads(text)
    except ValueError:
        raise FilterError("'filter' is not valid JSON", "M_INVALID_PARAM") from None
    return parse_room_event_filter(raw)
