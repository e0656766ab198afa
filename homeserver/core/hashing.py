"""Content hashes, reference hashes and hash-derived IDs of events.

Server-server API § Calculating the content hash / reference hash for an event,
and the event ID formats of the room versions (``v1-event-ids``, v3,
``v4-event-ids``) and the v12 room ID (the create event's ID with ``!``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from homeserver.core.canonical_json import encode_canonical_json
from homeserver.core.encoding import unpadded_b64decode, unpadded_b64encode, urlsafe_b64encode
from homeserver.core.redaction import prune_event_dict
from homeserver.core.room_versions import EventFormat, RoomVersion

__all__ = [
    "add_content_hash",
    "check_content_hash",
    "compute_content_hash",
    "compute_event_id",
    "compute_reference_hash",
    "reference_hash_base64",
    "room_id_for_create_event",
]

# Not covered by the content hash: unsigned changes in transit, signatures
# depend on the hash, and hashes cannot cover themselves.
_NOT_CONTENT_HASHED = ("unsigned", "signatures", "hashes")


def compute_content_hash(pdu: dict[str, Any]) -> bytes:
    """SHA-256 over the canonical JSON of the full event minus unsigned, signatures and hashes."""
    hashed = {k: v for k, v in pdu.items() if k not in _NOT_CONTENT_HASHED}
    return hashlib.sha256(encode_canonical_json(hashed)).digest()


def add_content_hash(pdu: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``pdu`` with ``hashes.sha256`` set; other hash algorithms are kept."""
    old_hashes = pdu.get("hashes")
    hashes = dict(old_hashes) if isinstance(old_hashes, dict) else {}
    hashes["sha256"] = unpadded_b64encode(compute_content_hash(pdu))
    return {**pdu, "hashes": hashes}


def check_content_hash(pdu: dict[str, Any]) -> bool:
    """Whether ``hashes.sha256`` matches the event. False if missing or malformed.

    A mismatch on an event whose signature verified means a redacted copy was
    received: the caller should keep the redacted form.
    """
    hashes = pdu.get("hashes")
    if not isinstance(hashes, dict):
        return False
    claimed = hashes.get("sha256")
    if not isinstance(claimed, str):
        return False
    try:
        claimed_bytes = unpadded_b64decode(claimed)
    except ValueError:
        return False
    return claimed_bytes == compute_content_hash(pdu)


def compute_reference_hash(pdu: dict[str, Any], room_version: RoomVersion) -> bytes:
    """SHA-256 over the canonical JSON of the redacted event without signatures and unsigned."""
    pruned = prune_event_dict(pdu, room_version)
    # The redaction algorithm already drops "unsigned"; "signatures" is kept
    # by it and must go here.
    pruned.pop("signatures", None)
    pruned.pop("unsigned", None)
    return hashlib.sha256(encode_canonical_json(pruned)).digest()


def reference_hash_base64(pdu: dict[str, Any], room_version: RoomVersion) -> str:
    """The reference hash as rooms v1/v2 carry it in ``prev_events``/``auth_events`` pairs."""
    return unpadded_b64encode(compute_reference_hash(pdu, room_version))


def compute_event_id(pdu: dict[str, Any], room_version: RoomVersion) -> str:
    """The event ID: the ``event_id`` field (v1, v2) or ``$`` + the encoded reference hash (v3+)."""
    fmt = room_version.event_format
    if fmt == EventFormat.V1:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str):
            raise ValueError("room v1/v2 event has no event_id")
        return event_id
    digest = compute_reference_hash(pdu, room_version)
    if fmt == EventFormat.V2:
        return "$" + unpadded_b64encode(digest)
    return "$" + urlsafe_b64encode(digest)


def room_id_for_create_event(pdu: dict[str, Any], room_version: RoomVersion) -> str:
    """The room ID a v12+ create event defines: its event ID with the sigil ``!``."""
    if not room_version.room_id_from_create_event:
        raise ValueError(f"room version {room_version.identifier} does not derive room IDs")
    if pdu.get("type") != "m.room.create":
        raise ValueError("only an m.room.create event defines a room ID")
    return "!" + compute_event_id(pdu, room_version)[1:]
