"""Assemble, hash and sign a new PDU in the format of its room version.

The formats are those of ``data/api/server-server/definitions/pdu_v*.yaml`` in
the spec. Deliberate choices:

* No ``origin`` field in any version: the spec removed it from every PDU
  format (matrix-spec PR #998) and Synapse stopped sending it too.
* From v11 ``redacts`` lives only in ``content``, as the v11 PDU format says;
  the top-level copy for old clients is a client-serialisation concern.
* Rooms v1/v2 reference events as ``[event_id, {"sha256": reference_hash}]``.
  The hashes come from ``prev_hashes``; for an event missing from it the pair
  carries ``{}``. No server checks these hashes on receipt, so an empty
  object is harmless, and it is honest where a made-up value would not be.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

from homeserver.core.canonical_json import MAX_SAFE_INTEGER, check_strict_canonical
from homeserver.core.events import Event
from homeserver.core.hashing import compute_event_id
from homeserver.core.room_versions import EventFormat, RoomVersion
from homeserver.core.signing import SigningKey, hash_and_sign_event

__all__ = ["MAX_DEPTH_V1", "MAX_DEPTH_V6", "build_event", "generate_v1_event_id"]

# Depth limits of the PDU formats: 2**63-1 before v6, 2**53-1 from v6
# (canonical JSON integers). At the limit, depth stays at the limit.
MAX_DEPTH_V1 = 2**63 - 1
MAX_DEPTH_V6 = MAX_SAFE_INTEGER

_ID_ALPHABET = string.ascii_letters


def generate_v1_event_id(server_name: str) -> str:
    """``$<18 random letters>:<server_name>``, the event ID form of rooms v1/v2."""
    return "$" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(18)) + ":" + server_name


def _event_refs(
    event_ids: Sequence[str], room_version: RoomVersion, prev_hashes: Mapping[str, str] | None
) -> list[Any]:
    if room_version.event_format == EventFormat.V1:
        hashes = prev_hashes or {}
        return [[eid, {"sha256": hashes[eid]} if eid in hashes else {}] for eid in event_ids]
    return list(event_ids)


def build_event(
    *,
    room_version: RoomVersion,
    room_id: str | None,
    type: str,
    sender: str,
    content: Mapping[str, Any],
    state_key: str | None = None,
    prev_event_ids: Sequence[str],
    auth_event_ids: Sequence[str],
    depth: int,
    origin_server_ts: int,
    server_name: str,
    signing_key: SigningKey,
    redacts: str | None = None,
    unsigned: Mapping[str, Any] | None = None,
    prev_hashes: Mapping[str, str] | None = None,
    event_id: str | None = None,
) -> Event:
    """Build a complete signed event.

    ``room_id`` must be ``None`` for the create event of a v12+ room (its room
    ID is derived from it: see ``Event.room_id``) and a room ID otherwise.
    ``event_id`` is used only by rooms v1/v2; when absent one is generated.
    ``prev_hashes`` maps event IDs to unpadded base64 reference hashes, for
    the v1/v2 reference pairs. Raises ``ValueError`` for inconsistent
    arguments and ``CanonicalJSONError`` for content a v6+ room does not allow.
    """
    is_v12_create = room_version.room_id_from_create_event and type == "m.room.create" and state_key == ""
    if is_v12_create:
        if room_id is not None:
            raise ValueError("a v12+ create event has no room_id: the room ID is derived from it")
        if auth_event_ids:
            raise ValueError("a v12+ create event has no auth events")
    elif room_id is None:
        raise ValueError("room_id is required")
    if redacts is not None and type != "m.room.redaction":
        raise ValueError("redacts is only for m.room.redaction events")
    if event_id is not None and room_version.event_format != EventFormat.V1:
        raise ValueError("event_id is derived from the event in room versions 3 and later")

    max_depth = MAX_DEPTH_V6 if room_version.strict_canonicaljson else MAX_DEPTH_V1
    pdu_content = dict(content)
    pdu: dict[str, Any] = {
        "type": type,
        "sender": sender,
        "content": pdu_content,
        "prev_events": _event_refs(prev_event_ids, room_version, prev_hashes),
        "auth_events": _event_refs(auth_event_ids, room_version, prev_hashes),
        "depth": min(depth, max_depth),
        "origin_server_ts": origin_server_ts,
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    if state_key is not None:
        pdu["state_key"] = state_key
    if redacts is not None:
        if room_version.redacts_in_content:
            if pdu_content.setdefault("redacts", redacts) != redacts:
                raise ValueError("redacts disagrees with content.redacts")
        else:
            pdu["redacts"] = redacts
    if room_version.event_format == EventFormat.V1:
        pdu["event_id"] = event_id if event_id is not None else generate_v1_event_id(server_name)
    if room_version.strict_canonicaljson:
        # Checked before signing: an event we could not send is better refused here.
        check_strict_canonical(pdu)

    pdu = hash_and_sign_event(pdu, server_name, signing_key, room_version)
    if unsigned is not None:
        pdu["unsigned"] = dict(unsigned)
    return Event(pdu, room_version, compute_event_id(pdu, room_version))
