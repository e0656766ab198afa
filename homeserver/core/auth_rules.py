"""Event authorisation rules for room versions 1-12.

What this implements
--------------------
The "Authorisation rules" section of every room-version page of the Matrix
specification v1.19: ``content/rooms/fragments/v1-auth-rules.md`` (rooms v1,
v2), ``v3-auth-rules.md`` (v3-v5), the v6 and v7 pages, ``v8-auth-rules.md``
(v8, v9), and the v10, v11 and v12 pages; plus "Auth events selection" of the
server-server API (``auth_types_for_event``).

Theory of operation
-------------------
``check_auth(room_version, event, auth_events)`` answers one question: is
``event`` allowed given ``auth_events``, a map ``(type, state_key) -> Event``
holding (at least) the auth-relevant state to check against? That map is the
event's own auth events when an event is received, the room state before the
event for soft-failure checks, and the partially resolved state during state
resolution. It returns ``None`` or raises :class:`AuthError` naming the rule.

Rules that need more than pure computation are *not* here: the signature of
the sender's server (and, for restricted joins, of the server of
``join_authorised_via_users_server``), and the reference-hash derivation of a
v12 room ID. Rules that look at the event's own ``auth_events`` list as sent
(duplicates, unexpected entries, rejected entries) are in
:func:`check_auth_events_list`, run once on receipt; they cannot be checked
against a state map, where keys are unique by construction.

Rules the file keeps
--------------------
* Room-version differences are read from :class:`RoomVersion` fields, never by
  comparing version strings.
* One small function per event type; each ``raise`` quotes the rule it enforces.
* The power levels are read through ``power_levels.py`` only.
* No I/O; the only non-core imports are ``canonicaljson`` and PyNaCl, for the
  ed25519 check of a third-party invite's ``signed`` block.
* For room version 12 the create event is not among an event's auth events,
  but the rules need it: callers put it in ``auth_events`` under
  ``("m.room.create", "")`` (it is the event whose ID the room ID names).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from homeserver.core.events import Event, StateKey
from homeserver.core.power_levels import (
    CREATE_KEY,
    POWER_LEVELS_KEY,
    get_creators,
    get_named_level,
    get_required_level_for_event,
    get_user_power_level,
    parse_power_level,
)
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

__all__ = [
    "AuthError",
    "auth_types_for_event",
    "check_auth",
    "check_auth_events_list",
    "is_valid_user_id",
]

JOIN_RULES_KEY: StateKey = ("m.room.join_rules", "")
AUTHORISING_USER = "join_authorised_via_users_server"

# The power-level keys whose changes rule "power levels 5/6" (v10 numbering) checks.
_NAMED_LEVEL_KEYS = ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite")


class AuthError(Exception):
    """The event is not allowed by the authorisation rules."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------
# small helpers


def _domain(identifier: str) -> str:
    """The server name of a user/room/event ID with a domain (``@a:b`` -> ``b``)."""
    _, _, domain = identifier.partition(":")
    return domain


def is_valid_user_id(user_id: Any) -> bool:
    """A lenient user-ID check (the historical grammar): ``@localpart:server``,
    at most 255 bytes, a non-empty server name without whitespace."""
    if not isinstance(user_id, str) or not user_id.startswith("@"):
        return False
    if len(user_id.encode("utf-8")) > 255:
        return False
    _localpart, sep, server = user_id[1:].partition(":")
    if not sep or not server:
        return False
    return not any(c.isspace() for c in user_id)


def _membership_of(state: Mapping[StateKey, Event], user_id: str) -> str | None:
    ev = state.get(("m.room.member", user_id))
    return ev.membership() if ev is not None else None


def _join_rule(state: Mapping[StateKey, Event]) -> str:
    ev = state.get(JOIN_RULES_KEY)
    if ev is None:
        return "invite"  # Synapse: no join rules event reads as "invite"
    rule = ev.content.get("join_rule")
    return rule if isinstance(rule, str) else "invite"


def _pl_content(state: Mapping[StateKey, Event]) -> Mapping[str, Any] | None:
    ev = state.get(POWER_LEVELS_KEY)
    return ev.content if ev is not None else None


# ---------------------------------------------------------------------------
# auth events selection (server-server API, "Auth events selection")


def auth_types_for_event(
    room_version: RoomVersion,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> list[StateKey]:
    """The ``(type, state_key)`` pairs an event of this shape may cite as auth events.

    Empty for a create event. Tolerates malformed content (it selects what it
    can), so it is safe to call on events that will then fail the rules.
    """
    if event_type == "m.room.create":
        return []
    keys: list[StateKey] = []
    if not room_version.room_id_from_create_event:
        keys.append(CREATE_KEY)
    keys.append(POWER_LEVELS_KEY)
    keys.append(("m.room.member", sender))
    if event_type == "m.room.member" and isinstance(state_key, str):
        membership = content.get("membership")
        keys.append(("m.room.member", state_key))
        if membership in ("join", "invite", "knock"):
            keys.append(JOIN_RULES_KEY)
        if membership == "invite":
            tpi = content.get("third_party_invite")
            if isinstance(tpi, Mapping):
                signed = tpi.get("signed")
                if isinstance(signed, Mapping) and isinstance(signed.get("token"), str):
                    keys.append(("m.room.third_party_invite", signed["token"]))
        if membership == "join" and room_version.restricted_join_rule:
            authoriser = content.get(AUTHORISING_USER)
            if isinstance(authoriser, str):
                keys.append(("m.room.member", authoriser))
    # De-duplicate, keeping the first position (sender == target, etc.).
    return list(dict.fromkeys(keys))


def check_auth_events_list(room_version: RoomVersion, event: Event, auth_events: Sequence[Event]) -> None:
    """The "considering the event's auth_events" rules, on the event's own list.

    ``auth_events`` are the events named by ``event.auth_event_ids()`` (all of
    them, fetched, with their rejection status). Checks: duplicates, entries
    the selection algorithm would not pick (in v12, the create event itself),
    rejected entries, a missing create event (before v12), and room mismatch.
    """
    if event.type == "m.room.create":
        if auth_events:
            raise AuthError("create event: must not have auth events")
        return
    allowed = set(
        auth_types_for_event(room_version, event.type, event.sender, event.state_key, event.content)
    )
    seen: set[StateKey] = set()
    for ae in auth_events:
        if not ae.is_state:
            raise AuthError(f"auth events: {ae.event_id} is not a state event")
        key = ae.state_tuple
        if key in seen:
            raise AuthError(f"auth events: duplicate entry for {key}")
        seen.add(key)
        if key not in allowed:
            raise AuthError(f"auth events: {key} is not selected by the auth events selection")
        if ae.rejected_reason is not None:
            raise AuthError(f"auth events: {ae.event_id} was rejected")
        if ae.room_id != event.room_id:
            raise AuthError(f"auth events: {ae.event_id} is in another room")
    if not room_version.room_id_from_create_event and CREATE_KEY not in seen:
        raise AuthError("auth events: no m.room.create event")


# ---------------------------------------------------------------------------
# the rules


def check_auth(room_version: RoomVersion, event: Event, auth_events: Mapping[StateKey, Event]) -> None:
    """Raise :class:`AuthError` unless ``event`` passes the authorisation rules
    of ``room_version`` against ``auth_events`` (see the module docstring)."""
    if event.type == "m.room.create":
        _check_create(room_version, event)
        return

    create = _check_auth_state(room_version, event, auth_events)

    # m.federate
    if create.content.get("m.federate", True) is not True and _domain(event.sender) != _domain(create.sender):
        raise AuthError("m.federate: room is not federated and the sender is from another server")

    if event.type == "m.room.aliases" and room_version.special_case_aliases_auth:
        _check_aliases(event)
        return

    if event.type == "m.room.member":
        _check_membership(room_version, event, auth_events, create)
        return

    if _membership_of(auth_events, event.sender) != "join":
        raise AuthError("sender is not joined to the room")

    sender_level = get_user_power_level(event.sender, auth_events, room_version)
    pl_content = _pl_content(auth_events)

    if event.type == "m.room.third_party_invite":
        if sender_level < get_named_level(pl_content, "invite", room_version=room_version):
            raise AuthError("m.room.third_party_invite: sender's level is below the invite level")
        return

    required = get_required_level_for_event(event.type, event.is_state, pl_content, room_version=room_version)
    if sender_level < required:
        raise AuthError(f"sender's power level {sender_level} is below the required {required}")

    state_key = event.state_key
    if state_key is not None and state_key.startswith("@") and state_key != event.sender:
        raise AuthError("state_key starting with @ must be the sender")

    if event.type == "m.room.power_levels":
        _check_power_levels(room_version, event, auth_events, create, sender_level)

    if event.type == "m.room.redaction" and room_version.special_case_redaction_auth:
        _check_redaction(room_version, event, pl_content, sender_level)


def _check_create(room_version: RoomVersion, event: Event) -> None:
    if event.prev_event_ids():
        raise AuthError("create: has prev_events")
    if room_version.room_id_from_create_event:
        if "room_id" in event.pdu:
            raise AuthError("create: has a room_id")
    else:
        room_id = event.pdu.get("room_id")
        if not isinstance(room_id, str) or _domain(room_id) != _domain(event.sender):
            raise AuthError("create: room_id domain does not match the sender's")
    version = event.content.get("room_version", "1")
    if not isinstance(version, str) or version not in KNOWN_ROOM_VERSIONS:
        raise AuthError(f"create: unknown room_version {version!r}")
    if not room_version.implicit_room_creator and "creator" not in event.content:
        raise AuthError("create: no creator in content")
    if room_version.privileged_creators and "additional_creators" in event.content:
        extra = event.content["additional_creators"]
        if not isinstance(extra, list) or not all(is_valid_user_id(u) for u in extra):
            raise AuthError("create: additional_creators must be a list of user IDs")


def _check_auth_state(
    room_version: RoomVersion, event: Event, auth_events: Mapping[StateKey, Event]
) -> Event:
    """The state-map part of the auth-events rules; returns the create event."""
    for key, ae in auth_events.items():
        if not ae.is_state or ae.state_tuple != key:
            raise AuthError(f"auth events: entry {key} holds {ae.event_id}")
        if ae.rejected_reason is not None:
            raise AuthError(f"auth events: {ae.event_id} was rejected")
        if ae.room_id != event.room_id:
            raise AuthError(f"auth events: {ae.event_id} is in another room")
    create = auth_events.get(CREATE_KEY)
    if create is None:
        raise AuthError("auth events: no m.room.create event")
    # v12 rule 2: the room ID names an accepted create event. (The room
    # mismatch check above already compares room IDs; this spells it out.)
    if room_version.room_id_from_create_event and event.room_id != "!" + create.event_id[1:]:
        raise AuthError("room_id is not derived from the create event")
    return create


def _check_aliases(event: Event) -> None:
    if event.state_key is None:
        raise AuthError("m.room.aliases: no state_key")
    if event.state_key != _domain(event.sender):
        raise AuthError("m.room.aliases: state_key is not the sender's domain")


def _check_membership(
    room_version: RoomVersion, event: Event, state: Mapping[StateKey, Event], create: Event
) -> None:
    target = event.state_key
    membership = event.content.get("membership")
    if target is None or not isinstance(membership, str):
        raise AuthError("m.room.member: no state_key or no membership")
    # Synapse: in a room with m.federate false, the *target* of a membership
    # change must also be on the creator's server (the spec checks the sender).
    if create.content.get("m.federate", True) is not True and _domain(target) != _domain(create.sender):
        raise AuthError("m.federate: room is not federated and the target is from another server")

    sender = event.sender
    sender_membership = _membership_of(state, sender)
    target_membership = _membership_of(state, target)

    if membership == "join":
        _check_join(room_version, event, state, create, sender_membership)
    elif membership == "invite":
        _check_invite(room_version, event, state, sender_membership, target_membership)
    elif membership == "leave":
        _check_leave(room_version, event, state, sender_membership, target_membership)
    elif membership == "ban":
        _check_ban(room_version, event, state, sender_membership)
    elif membership == "knock" and room_version.knock_join_rule:
        _check_knock(room_version, event, state, sender_membership)
    else:
        raise AuthError(f"m.room.member: unknown membership {membership!r}")


def _check_join(
    room_version: RoomVersion,
    event: Event,
    state: Mapping[StateKey, Event],
    create: Event,
    sender_membership: str | None,
) -> None:
    prev = event.prev_event_ids()
    if len(prev) == 1 and prev[0] == create.event_id:
        creator = create.sender if room_version.implicit_room_creator else create.content.get("creator")
        if event.state_key == creator:
            return  # the creator's first join
    if event.sender != event.state_key:
        raise AuthError("join: sender is not the target")
    if sender_membership == "ban":
        raise AuthError("join: sender is banned")

    rule = _join_rule(state)
    restricted = (rule == "restricted" and room_version.restricted_join_rule) or (
        rule == "knock_restricted" and room_version.knock_restricted_join_rule
    )
    if rule == "invite" or (rule == "knock" and room_version.knock_join_rule):
        if sender_membership in ("invite", "join"):
            return
        raise AuthError(f"join: join rule is {rule} and the sender is not invited")
    if restricted:
        if sender_membership in ("invite", "join"):
            return
        authoriser = event.content.get(AUTHORISING_USER)
        if not isinstance(authoriser, str):
            raise AuthError("join: restricted room and no join_authorised_via_users_server")
        if _membership_of(state, authoriser) != "join":
            raise AuthError("join: the authorising user is not joined")
        invite_level = get_named_level(_pl_content(state), "invite", room_version=room_version)
        if get_user_power_level(authoriser, state, room_version) < invite_level:
            raise AuthError("join: the authorising user cannot invite")
        return
    if rule == "public":
        return
    raise AuthError(f"join: join rule {rule!r} does not allow joining")


def _check_invite(
    room_version: RoomVersion,
    event: Event,
    state: Mapping[StateKey, Event],
    sender_membership: str | None,
    target_membership: str | None,
) -> None:
    if "third_party_invite" in event.content:
        _check_third_party_invite(event, state, target_membership)
        return
    if sender_membership != "join":
        raise AuthError("invite: sender is not joined")
    if target_membership in ("join", "ban"):
        raise AuthError(f"invite: target is {target_membership}")
    pl_content = _pl_content(state)
    if get_user_power_level(event.sender, state, room_version) >= get_named_level(
        pl_content, "invite", room_version=room_version
    ):
        return
    raise AuthError("invite: sender's level is below the invite level")


def _check_third_party_invite(
    event: Event, state: Mapping[StateKey, Event], target_membership: str | None
) -> None:
    if target_membership == "ban":
        raise AuthError("third-party invite: target is banned")
    tpi = event.content["third_party_invite"]
    signed = tpi.get("signed") if isinstance(tpi, Mapping) else None
    if not isinstance(signed, Mapping):
        raise AuthError("third-party invite: no signed")
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError("third-party invite: signed has no mxid or token")
    if mxid != event.state_key:
        raise AuthError("third-party invite: mxid is not the state_key")
    invite_event = state.get(("m.room.third_party_invite", token))
    if invite_event is None:
        raise AuthError("third-party invite: no m.room.third_party_invite for the token")
    if invite_event.sender != event.sender:
        raise AuthError("third-party invite: sender differs from the m.room.third_party_invite sender")
    if _signed_by_any_key(signed, _third_party_public_keys(invite_event.content)):
        return
    raise AuthError("third-party invite: no valid signature from the invite's public keys")


def _third_party_public_keys(content: Mapping[str, Any]) -> list[str]:
    keys: list[str] = []
    if isinstance(content.get("public_key"), str):
        keys.append(content["public_key"])
    more = content.get("public_keys")
    if isinstance(more, list):
        for entry in more:
            if isinstance(entry, Mapping) and isinstance(entry.get("public_key"), str):
                keys.append(entry["public_key"])
    return keys


def _decode_unpadded_base64(text: str) -> bytes | None:
    padded = text + "=" * (-len(text) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return decode(padded.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
    return None


def _signed_by_any_key(signed: Mapping[str, Any], public_keys: list[str]) -> bool:
    """Does any ed25519 signature in ``signed`` verify under any of ``public_keys``?"""
    # Imported here: only third-party invites need them.
    from canonicaljson import encode_canonical_json
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    signatures = signed.get("signatures")
    if not isinstance(signatures, Mapping):
        return False
    unsigned_copy = {k: v for k, v in signed.items() if k not in ("signatures", "unsigned")}
    try:
        message = encode_canonical_json(unsigned_copy)
    except (TypeError, ValueError):
        return False
    for public_key in public_keys:
        key_bytes = _decode_unpadded_base64(public_key)
        if key_bytes is None or len(key_bytes) != 32:
            continue
        verify_key = VerifyKey(key_bytes)
        for server_sigs in signatures.values():
            if not isinstance(server_sigs, Mapping):
                continue
            for key_id, sig in server_sigs.items():
                if (
                    not isinstance(key_id, str)
                    or not key_id.startswith("ed25519:")
                    or not isinstance(sig, str)
                ):
                    continue
                sig_bytes = _decode_unpadded_base64(sig)
                if sig_bytes is None or len(sig_bytes) != 64:
                    continue
                try:
                    verify_key.verify(message, sig_bytes)
                except BadSignatureError:
                    continue
                return True
    return False


def _check_leave(
    room_version: RoomVersion,
    event: Event,
    state: Mapping[StateKey, Event],
    sender_membership: str | None,
    target_membership: str | None,
) -> None:
    if event.sender == event.state_key:
        may_leave = ("invite", "join", "knock") if room_version.knock_join_rule else ("invite", "join")
        if sender_membership in may_leave:
            return
        raise AuthError(f"leave: cannot leave from membership {sender_membership!r}")
    if sender_membership != "join":
        raise AuthError("leave: sender is not joined")
    pl_content = _pl_content(state)
    sender_level = get_user_power_level(event.sender, state, room_version)
    if target_membership == "ban" and sender_level < get_named_level(
        pl_content, "ban", room_version=room_version
    ):
        raise AuthError("leave: unbanning needs the ban level")
    target_level = get_user_power_level(event.state_key or "", state, room_version)
    if sender_level >= get_named_level(pl_content, "kick", room_version=room_version) and (
        target_level < sender_level
    ):
        return
    raise AuthError("leave: kicking needs the kick level and a level above the target's")


def _check_ban(
    room_version: RoomVersion, event: Event, state: Mapping[StateKey, Event], sender_membership: str | None
) -> None:
    if sender_membership != "join":
        raise AuthError("ban: sender is not joined")
    sender_level = get_user_power_level(event.sender, state, room_version)
    target_level = get_user_power_level(event.state_key or "", state, room_version)
    if sender_level >= get_named_level(_pl_content(state), "ban", room_version=room_version) and (
        target_level < sender_level
    ):
        return
    raise AuthError("ban: needs the ban level and a level above the target's")


def _check_knock(
    room_version: RoomVersion, event: Event, state: Mapping[StateKey, Event], sender_membership: str | None
) -> None:
    rule = _join_rule(state)
    if not (rule == "knock" or (rule == "knock_restricted" and room_version.knock_restricted_join_rule)):
        raise AuthError(f"knock: join rule {rule!r} does not allow knocking")
    if event.sender != event.state_key:
        raise AuthError("knock: sender is not the target")
    if sender_membership in ("ban", "invite", "join"):
        raise AuthError(f"knock: sender is already {sender_membership}")


# -- m.room.power_levels ----------------------------------------------------


def _level_map(content: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = content.get(key, {})
    if not isinstance(value, Mapping):
        raise AuthError(f"power levels: {key} is not an object")
    return value


def _parse_or_reject(value: Any, room_version: RoomVersion, what: str) -> int:
    level = parse_power_level(value, room_version)
    if level is None:
        raise AuthError(f"power levels: {what} is not a valid power level: {value!r}")
    return level


def _check_power_levels(
    room_version: RoomVersion,
    event: Event,
    state: Mapping[StateKey, Event],
    create: Event,
    sender_level: float,
) -> None:
    new = event.content
    # Shape. From v10 every level must be a JSON integer; before, only `users`
    # is checked by the spec, and we (like Synapse, whose int() raises) also
    # refuse values that cannot be read as a level at all.
    for key in _NAMED_LEVEL_KEYS:
        if key in new:
            _parse_or_reject(new[key], room_version, key)
    for key in ("events", "notifications"):
        if key in new:
            for sub, value in _level_map(new, key).items():
                _parse_or_reject(value, room_version, f"{key}.{sub}")
    users = _level_map(new, "users")
    for user_id, value in users.items():
        if not is_valid_user_id(user_id):
            raise AuthError(f"power levels: {user_id!r} is not a user ID")
        _parse_or_reject(value, room_version, f"users.{user_id}")

    if room_version.privileged_creators:
        listed = get_creators(create, room_version).intersection(users)
        if listed:
            raise AuthError(f"power levels: room creators may not be listed in users: {sorted(listed)}")

    old_event = state.get(POWER_LEVELS_KEY)
    if old_event is None:
        return
    old = old_event.content

    def read(content: Mapping[str, Any], container: str | None, key: str) -> int | None:
        source = content if container is None else _level_map(content, container)
        if key not in source:
            return None
        return _parse_or_reject(source[key], room_version, key if container is None else f"{container}.{key}")

    for key in _NAMED_LEVEL_KEYS:
        before, after = read(old, None, key), read(new, None, key)
        if before == after:
            continue
        if before is not None and before > sender_level:
            raise AuthError(f"power levels: {key} is currently above the sender's level")
        if after is not None and after > sender_level:
            raise AuthError(f"power levels: new {key} is above the sender's level")

    containers = ["events"]
    if room_version.limit_notifications_power_levels:
        containers.append("notifications")
    for container in containers:
        for key in sorted(set(_level_map(old, container)) | set(_level_map(new, container))):
            before, after = read(old, container, key), read(new, container, key)
            if before == after:
                continue
            if before is not None and before > sender_level:
                raise AuthError(f"power levels: {container}.{key} is currently above the sender's level")
            if after is not None and after > sender_level:
                raise AuthError(f"power levels: new {container}.{key} is above the sender's level")

    for user_id in sorted(set(_level_map(old, "users")) | set(users)):
        before, after = read(old, "users", user_id), read(new, "users", user_id)
        if before == after:
            continue
        if before is not None and user_id != event.sender and before >= sender_level:
            raise AuthError(f"power levels: cannot change the level of {user_id}, at or above the sender's")
        if after is not None and after > sender_level:
            raise AuthError(f"power levels: cannot give {user_id} a level above the sender's")


def _check_redaction(
    room_version: RoomVersion, event: Event, pl_content: Mapping[str, Any] | None, sender_level: float
) -> None:
    # Rooms v1 and v2 only: event IDs carry the origin's domain.
    if sender_level >= get_named_level(pl_content, "redact", room_version=room_version):
        return
    redacts = event.redacts
    if redacts is not None and _domain(redacts) == _domain(event.event_id):
        return
    raise AuthError("redaction: below the redact level and not the redacted event's server")
