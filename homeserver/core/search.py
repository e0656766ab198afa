"""Server-side search requests as plain data (CS API § Server Side Search).

:func:`parse_room_events_request` validates a ``POST /search`` body's
``room_events`` criteria into :class:`RoomEventsCriteria`, raising
:class:`SearchRequestError` naming the bad field. :class:`BatchToken` is the
opaque ``next_batch``: the position after the last hit a page returned, in the
page's order, optionally scoped to one group (a room or a sender), so asking
again with it returns every later hit exactly once. No I/O here.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BatchToken",
    "EventContextRequest",
    "EventFilter",
    "RoomEventsCriteria",
    "SearchRequestError",
    "parse_filter",
    "parse_room_events_request",
    "type_pattern",
]

SEARCH_KEYS = ("content.body", "content.name", "content.topic")
ORDERS = ("rank", "recent")
GROUP_KEYS = ("room_id", "sender")
DEFAULT_PAGE = 10
MAX_PAGE = 100
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 100


class SearchRequestError(ValueError):
    pass


@dataclass(frozen=True)
class EventFilter:
    """The parts of a RoomEventFilter that search honours."""

    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    contains_url: bool | None = None
    limit: int = DEFAULT_PAGE


@dataclass(frozen=True)
class EventContextRequest:
    before_limit: int = DEFAULT_CONTEXT
    after_limit: int = DEFAULT_CONTEXT
    include_profile: bool = False


@dataclass(frozen=True)
class RoomEventsCriteria:
    search_term: str
    keys: tuple[str, ...] = SEARCH_KEYS
    filter: EventFilter = field(default_factory=EventFilter)
    order_by: str = "rank"
    event_context: EventContextRequest | None = None
    include_state: bool = False
    group_by: tuple[str, ...] = ()


def _string_list(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SearchRequestError(f"'{name}' must be a list of strings")
    return tuple(value)


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SearchRequestError(f"'{name}' must be an integer")
    if value < low:
        raise SearchRequestError(f"'{name}' must be at least {low}")
    return min(value, high)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise SearchRequestError(f"'{name}' must be a boolean")
    return value


def parse_filter(raw: Any) -> EventFilter:
    if raw is None:
        return EventFilter()
    if not isinstance(raw, dict):
        raise SearchRequestError("'filter' must be an object")
    opt: dict[str, Any] = {}
    for name in ("rooms", "senders", "types"):
        if raw.get(name) is not None:
            opt[name] = _string_list(raw[name], f"filter.{name}")
    for name in ("not_rooms", "not_senders", "not_types"):
        if raw.get(name) is not None:
            opt[name] = _string_list(raw[name], f"filter.{name}")
    if raw.get("contains_url") is not None:
        opt["contains_url"] = _bool(raw["contains_url"], "filter.contains_url")
    if raw.get("limit") is not None:
        opt["limit"] = _int(raw["limit"], "filter.limit", 1, MAX_PAGE)
    return EventFilter(**opt)


def parse_room_events_request(raw: Any) -> RoomEventsCriteria:
    """The `room_events` criteria of a /search body, or SearchRequestError."""
    if not isinstance(raw, dict):
        raise SearchRequestError("'search_categories.room_events' must be an object")
    term = raw.get("search_term")
    if not isinstance(term, str):
        raise SearchRequestError("'search_term' is required and must be a string")
    keys: tuple[str, ...] = SEARCH_KEYS
    if raw.get("keys") is not None:
        keys = _string_list(raw["keys"], "keys")
        bad = [k for k in keys if k not in SEARCH_KEYS]
        if bad:
            raise SearchRequestError(f"'keys' may only contain {', '.join(SEARCH_KEYS)}")
        if not keys:
            keys = SEARCH_KEYS
    order_by = raw.get("order_by", "rank")
    if order_by is None:
        order_by = "rank"
    if order_by not in ORDERS:
        raise SearchRequestError("'order_by' must be 'rank' or 'recent'")
    context = None
    if raw.get("event_context") is not None:
        ec = raw["event_context"]
        if not isinstance(ec, dict):
            raise SearchRequestError("'event_context' must be an object")
        context = EventContextRequest(
            before_limit=_int(ec.get("before_limit", DEFAULT_CONTEXT), "event_context.before_limit", 0, MAX_CONTEXT),
            after_limit=_int(ec.get("after_limit", DEFAULT_CONTEXT), "event_context.after_limit", 0, MAX_CONTEXT),
            include_profile=_bool(ec.get("include_profile", False), "event_context.include_profile"),
        )
    include_state = _bool(raw.get("include_state", False), "include_state")
    group_by: tuple[str, ...] = ()
    if raw.get("groupings") is not None:
        groupings = raw["groupings"]
        if not isinstance(groupings, dict):
            raise SearchRequestError("'groupings' must be an object")
        groups = groupings.get("group_by", [])
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise SearchRequestError("'groupings.group_by' must be a list of objects")
        keys_seen = []
        for g in groups:
            if g.get("key") not in GROUP_KEYS:
                raise SearchRequestError("'groupings.group_by[].key' must be 'room_id' or 'sender'")
            if g["key"] not in keys_seen:
                keys_seen.append(g["key"])
        group_by = tuple(keys_seen)
    return RoomEventsCriteria(
        search_term=term, keys=keys, filter=parse_filter(raw.get("filter")), order_by=order_by,
        event_context=context, include_state=include_state, group_by=group_by,
    )


def type_pattern(glob: str) -> str:
    """A filter type ('m.room.*') as a SQL LIKE pattern (backslash escapes)."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


@dataclass(frozen=True)
class BatchToken:
    """Where the next page starts: after (rank, stream_ordering) in `order_by` order.

    `scope` limits the continuation to one group: ("room_id", room) or ("sender", user).
    """

    order_by: str
    rank: float
    stream_ordering: int
    scope: tuple[str, str] | None = None

    def encode(self) -> str:
        data: dict[str, Any] = {"o": self.order_by, "r": self.rank, "s": self.stream_ordering}
        if self.scope is not None:
            data["g"] = list(self.scope)
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> BatchToken:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise SearchRequestError("Invalid next_batch") from None
        if not isinstance(data, dict):
            raise SearchRequestError("Invalid next_batch")
        order, rank, stream, scope = data.get("o"), data.get("r"), data.get("s"), data.get("g")
        if order not in ORDERS or isinstance(stream, bool) or not isinstance(stream, int):
            raise SearchRequestError("Invalid next_batch")
        if isinstance(rank, bool) or not isinstance(rank, (int, float)) or not math.isfinite(rank):
            raise SearchRequestError("Invalid next_batch")
        if scope is not None:
            if (
                not isinstance(scope, list) or len(scope) != 2 or scope[0] not in GROUP_KEYS
                or not isinstance(scope[1], str)
            ):
                raise SearchRequestError("Invalid next_batch")
            scope = (scope[0], scope[1])
        return cls(order_by=order, rank=float(rank), stream_ordering=stream, scope=scope)
