"""Room versions as data.

Every behaviour that differs between room versions 1-12 is a field of
:class:`RoomVersion`; code elsewhere reads the field instead of comparing
version strings. The values follow ``content/rooms/v1.md`` ... ``v12.md`` of
the Matrix specification v1.19.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EventFormat(enum.IntEnum):
    """How event IDs are made and carried."""

    V1 = 1  # event_id is a field of the event: "$random:server" (rooms v1, v2)
    V2 = 2  # event_id is "$" + standard unpadded base64 of the reference hash (v3)
    V3 = 3  # event_id is "$" + URL-safe unpadded base64 of the reference hash (v4+)


class StateResAlgorithm(enum.IntEnum):
    V1 = 1
    V2 = 2
    V2_1 = 3  # v2 with the room version 12 changes (MSC4297)


class RedactionRules(enum.IntEnum):
    V1 = 1  # rooms v1-v5
    V6 = 6  # m.room.aliases loses its special case
    V8 = 8  # m.room.join_rules keeps "allow" (v8 only; see content/rooms/v8.md)
    V9 = 9  # m.room.member keeps join_authorised_via_users_server (v9, v10)
    V11 = 11  # the clarified algorithm of room version 11 (also v12)


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    event_format: EventFormat
    state_res: StateResAlgorithm
    redaction: RedactionRules
    # v5+: signing keys must be valid at the event's origin_server_ts.
    enforce_key_validity: bool
    # v1-v5: auth rule for m.room.aliases events.
    special_case_aliases_auth: bool
    # v1-v2: m.room.redaction has its own auth rule (redact level, or the
    # event IDs of the redaction and the redacted event share a domain).
    special_case_redaction_auth: bool
    # v6+: strict canonical JSON (no floats, integers within +-(2**53-1)).
    strict_canonicaljson: bool
    # v6+: the "notifications" key of power levels is checked by auth rules.
    limit_notifications_power_levels: bool
    # v7+: the "knock" join rule and membership.
    knock_join_rule: bool
    # v8+: the "restricted" join rule.
    restricted_join_rule: bool
    # v10+: the "knock_restricted" join rule.
    knock_restricted_join_rule: bool
    # v10+: power level values must be integers, not strings.
    enforce_int_power_levels: bool
    # v11+: create events carry no "creator"; the sender is the creator.
    implicit_room_creator: bool
    # v11+: m.room.redaction carries "redacts" in content, not at top level.
    redacts_in_content: bool
    # v12: the room ID is derived from the create event's ID; the create event
    # has no room_id and is not listed in auth_events.
    room_id_from_create_event: bool
    # v12: creators (sender of the create event plus content.additional_creators)
    # have unlimited power and cannot be listed in power_levels.users.
    privileged_creators: bool

    @property
    def event_id_is_hash(self) -> bool:
        return self.event_format != EventFormat.V1


def _v(
    identifier: str,
    *,
    event_format: EventFormat,
    state_res: StateResAlgorithm,
    redaction: RedactionRules,
    since: int,
) -> RoomVersion:
    n = since
    return RoomVersion(
        identifier=identifier,
        event_format=event_format,
        state_res=state_res,
        redaction=redaction,
        enforce_key_validity=n >= 5,
        special_case_aliases_auth=n <= 5,
        special_case_redaction_auth=n <= 2,
        strict_canonicaljson=n >= 6,
        limit_notifications_power_levels=n >= 6,
        knock_join_rule=n >= 7,
        restricted_join_rule=n >= 8,
        knock_restricted_join_rule=n >= 10,
        enforce_int_power_levels=n >= 10,
        implicit_room_creator=n >= 11,
        redacts_in_content=n >= 11,
        room_id_from_create_event=n >= 12,
        privileged_creators=n >= 12,
    )


E, S, R = EventFormat, StateResAlgorithm, RedactionRules

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    v.identifier: v
    for v in (
        _v("1", event_format=E.V1, state_res=S.V1, redaction=R.V1, since=1),
        _v("2", event_format=E.V1, state_res=S.V2, redaction=R.V1, since=2),
        _v("3", event_format=E.V2, state_res=S.V2, redaction=R.V1, since=3),
        _v("4", event_format=E.V3, state_res=S.V2, redaction=R.V1, since=4),
        _v("5", event_format=E.V3, state_res=S.V2, redaction=R.V1, since=5),
        _v("6", event_format=E.V3, state_res=S.V2, redaction=R.V6, since=6),
        _v("7", event_format=E.V3, state_res=S.V2, redaction=R.V6, since=7),
        _v("8", event_format=E.V3, state_res=S.V2, redaction=R.V8, since=8),
        _v("9", event_format=E.V3, state_res=S.V2, redaction=R.V9, since=9),
        _v("10", event_format=E.V3, state_res=S.V2, redaction=R.V9, since=10),
        _v("11", event_format=E.V3, state_res=S.V2, redaction=R.V11, since=11),
        _v("12", event_format=E.V3, state_res=S.V2_1, redaction=R.V11, since=12),
    )
}

DEFAULT_ROOM_VERSION = "12"


def get_room_version(identifier: str) -> RoomVersion | None:
    return KNOWN_ROOM_VERSIONS.get(identifier)
