"""The event (PDU) model shared by every part of the core.

An :class:`Event` wraps the PDU as it travels over federation (a plain dict,
the exact JSON that is hashed and signed) together with its event ID and the
room version that gives it meaning. It is immutable by convention: code that
needs a changed event builds a new dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.core.room_versions import EventFormat, RoomVersion

StateKey = tuple[str, str]  # (event type, state_key)


class Event:
    __slots__ = ("event_id", "pdu", "rejected_reason", "room_version")

    def __init__(
        self,
        pdu: dict[str, Any],
        room_version: RoomVersion,
        event_id: str | None = None,
        rejected_reason: str | None = None,
    ) -> None:
        self.pdu = pdu
        self.room_version = room_version
        if event_id is None:
            if room_version.event_format == EventFormat.V1:
                event_id = pdu["event_id"]
            else:
                # Imported here: hashing sits in another core module that
                # itself builds Events.
                from homeserver.core.hashing import compute_event_id

                event_id = compute_event_id(pdu, room_version)
        self.event_id: str = event_id
        self.rejected_reason = rejected_reason

    # -- plain fields ---------------------------------------------------
    @property
    def type(self) -> str:
        return self.pdu["type"]

    @property
    def sender(self) -> str:
        return self.pdu["sender"]

    @property
    def room_id(self) -> str:
        """The room ID. For a v12 create event (no room_id field) it is derived."""
        room_id = self.pdu.get("room_id")
        if room_id is None and self.room_version.room_id_from_create_event and self.type == "m.room.create":
            return "!" + self.event_id[1:]
        return room_id  # type: ignore[return-value]

    @property
    def content(self) -> dict[str, Any]:
        return self.pdu.get("content", {})

    @property
    def state_key(self) -> str | None:
        return self.pdu.get("state_key")

    @property
    def is_state(self) -> bool:
        return "state_key" in self.pdu

    @property
    def state_tuple(self) -> StateKey:
        return (self.pdu["type"], self.pdu["state_key"])

    @property
    def depth(self) -> int:
        return self.pdu.get("depth", 0)

    @property
    def origin_server_ts(self) -> int:
        return self.pdu.get("origin_server_ts", 0)

    @property
    def redacts(self) -> str | None:
        if self.room_version.redacts_in_content:
            r = self.content.get("redacts")
        else:
            r = self.pdu.get("redacts")
        return r if isinstance(r, str) else None

    # -- DAG edges ------------------------------------------------------
    def prev_event_ids(self) -> list[str]:
        return _ids(self.pdu.get("prev_events", []), self.room_version)

    def auth_event_ids(self) -> list[str]:
        return _ids(self.pdu.get("auth_events", []), self.room_version)

    def membership(self) -> str | None:
        if self.type != "m.room.member":
            return None
        m = self.content.get("membership")
        return m if isinstance(m, str) else None

    def __repr__(self) -> str:
        return f"<Event {self.event_id} {self.type} {self.state_key!r} from {self.sender}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.event_id == self.event_id

    def __hash__(self) -> int:
        return hash(self.event_id)


def _ids(refs: list[Any], room_version: RoomVersion) -> list[str]:
    if room_version.event_format == EventFormat.V1:
        # v1/v2 rooms reference events as [event_id, {"sha256": hash}] pairs.
        return [r[0] for r in refs]
    return list(refs)


StateMap = Mapping[StateKey, str]  # state key -> event ID
