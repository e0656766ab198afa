"""Power levels: reading ``m.room.power_levels`` content the way each room version means it.

Pure functions over plain dicts (the content of a power-levels event) and the
room's create event. The defaults follow the ``m.room.power_levels`` schema of
the Matrix specification v1.19 and the "Power levels" notes of the room-version
pages:

* no power-levels event: the room creator(s) have 100 (infinite in room
  version 12), everybody else ``users_default`` = 0;
* ``ban``, ``kick``, ``redact``, ``state_default`` and ``notifications.room``
  default to 50; ``invite``, ``events_default`` and ``users_default`` to 0.
  (Older text of the spec said ``state_default`` is 0 when there is no
  power-levels event; v1.19 and Synapse both use 50, and so do we.)

Values are parsed per room version: v1-v5 accept integers, integer strings
("stringy" levels) and floats (truncated); v6-v9 integers and integer strings;
v10+ only integers. A value that does not parse is treated as absent by the
*readers* here; the auth rules reject power-levels events carrying such values
where the room version says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from homeserver.core.events import Event, StateKey
from homeserver.core.room_versions import RoomVersion

__all__ = [
    "CREATE_KEY",
    "NAMED_LEVEL_DEFAULTS",
    "NO_POWER_LEVELS_CREATOR_LEVEL",
    "POWER_LEVELS_KEY",
    "get_creators",
    "get_named_level",
    "get_required_level_for_event",
    "get_user_power_level",
    "get_user_power_level_from_content",
    "parse_power_level",
]

CREATE_KEY: StateKey = ("m.room.create", "")
POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")

# Defaults of the top-level levels, and of ``notifications.room``.
NAMED_LEVEL_DEFAULTS: Mapping[str, int] = {
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
    "events_default": 0,
    "state_default": 50,
    "users_default": 0,
    "notifications.room": 50,
}

# Rooms v1-v11 without a power-levels event: the creator has this level.
NO_POWER_LEVELS_CREATOR_LEVEL = 100

# "a single base 10 integer ... optionally prefixed with - or + ... optionally with
# leading or trailing whitespace" (v1-stringy-power-levels). ASCII digits only:
# Python's int() would also take other scripts' digits and underscores.
_STRINGY_INT = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
_STRINGY_WS = " \t\n\r\f\v"


def parse_power_level(value: Any, room_version: RoomVersion | None = None) -> int | None:
    """Read one power-level value, or ``None`` if it is not a valid level here.

    ``room_version=None`` reads as leniently as the oldest room versions (used
    for content that has already passed the auth rules of its room).
    """
    if isinstance(value, bool):
        # JSON true/false. Synapse's int() takes them as 1/0 in the rooms that
        # accept stringy values; from v10 ("must be an integer") they are refused.
        if room_version is not None and room_version.enforce_int_power_levels:
            return None
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if room_version is not None and room_version.enforce_int_power_levels:
            return None
        if _STRINGY_INT.fullmatch(value) is None:
            return None
        return int(value.strip(_STRINGY_WS))
    if isinstance(value, float):
        if room_version is not None and room_version.strict_canonicaljson:
            return None
        if not math.isfinite(value):
            return None
        return math.trunc(value)
    return None


def get_creators(create_event: Event | None, room_version: RoomVersion) -> frozenset[str]:
    """The room creators as the auth rules of ``room_version`` define them.

    v1-v10: ``content.creator``; v11: the create event's sender; v12: the
    sender plus every string in ``content.additional_creators``.
    """
    if create_event is None:
        return frozenset()
    if not room_version.implicit_room_creator:
        creator = create_event.content.get("creator")
        return frozenset([creator]) if isinstance(creator, str) else frozenset()
    creators = {create_event.sender}
    if room_version.privileged_creators:
        extra = create_event.content.get("additional_creators")
        if isinstance(extra, list):
            creators.update(u for u in extra if isinstance(u, str))
    return frozenset(creators)


def _content_of(event: Event | None) -> Mapping[str, Any] | None:
    return event.content if event is not None else None


def get_user_power_level_from_content(
    user_id: str,
    pl_content: Mapping[str, Any] | None,
    create_event: Event | None,
    room_version: RoomVersion,
) -> int | float:
    """A user's power level given the power-levels content (``None`` if there is
    no power-levels event) and the create event. Creators in room version 12
    get ``float('inf')``."""
    if room_version.privileged_creators and user_id in get_creators(create_event, room_version):
        return math.inf
    if pl_content is None:
        if user_id in get_creators(create_event, room_version):
            return NO_POWER_LEVELS_CREATOR_LEVEL
        return NAMED_LEVEL_DEFAULTS["users_default"]
    users = pl_content.get("users")
    if isinstance(users, Mapping) and user_id in users:
        level = parse_power_level(users[user_id], room_version)
        if level is not None:
            return level
    return get_named_level(pl_content, "users_default", room_version=room_version)


def get_user_power_level(
    user_id: str, auth_state: Mapping[StateKey, Event], room_version: RoomVersion
) -> int | float:
    """A user's power level in ``auth_state`` (state key -> event; only the
    create and power-levels entries are read)."""
    return get_user_power_level_from_content(
        user_id,
        _content_of(auth_state.get(POWER_LEVELS_KEY)),
        auth_state.get(CREATE_KEY),
        room_version,
    )


def get_named_level(
    pl_content: Mapping[str, Any] | None,
    name: str,
    default: int | None = None,
    *,
    room_version: RoomVersion | None = None,
) -> int:
    """A named level: ``ban``, ``kick``, ``redact``, ``invite``,
    ``events_default``, ``state_default``, ``users_default``, or a dotted
    ``notifications.<key>`` such as ``notifications.room``.

    ``default`` overrides the spec's default for ``name`` (which applies both
    when there is no power-levels event and when the key is absent).
    """
    if default is None:
        default = NAMED_LEVEL_DEFAULTS.get(name, 0)
    if pl_content is None:
        return default
    container: Any = pl_content
    key = name
    if name.startswith("notifications."):
        container = pl_content.get("notifications")
        key = name[len("notifications.") :]
    if not isinstance(container, Mapping) or key not in container:
        return default
    level = parse_power_level(container[key], room_version)
    return default if level is None else level


def get_required_level_for_event(
    event_type: str,
    is_state: bool,
    pl_content: Mapping[str, Any] | None,
    *,
    room_version: RoomVersion | None = None,
) -> int:
    """The *required power level* to send an event of this type: its entry in
    ``events``, else ``state_default`` for state events or ``events_default``."""
    if pl_content is not None:
        events = pl_content.get("events")
        if isinstance(events, Mapping) and event_type in events:
            level = parse_power_level(events[event_type], room_version)
            if level is not None:
                return level
    return get_named_level(
        pl_content, "state_default" if is_state else "events_default", room_version=room_version
    )
