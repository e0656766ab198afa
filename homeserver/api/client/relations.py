"""Client API v1: event relationships (/relations) and thread lists (/threads)."""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver.api.http import MultiPrefixBlueprint, authenticated, hs
from homeserver.services.auth import Requester

client_v1 = MultiPrefixBlueprint("client_relations", ["/_matrix/client/v1"])



def _split(rest: str) -> tuple[str, str | None, str | None]:
    """`{eventId}[/{relType}[/{eventType}]]` -> its parts.

    Event IDs of room version 3 contain "/" (standard base64), so the path
    cannot be split on its first "/". A segment after the first that contains
    a "." starts the relation type: base64 has no ".", and a v1/v2 ID
    (`$x:server.name`) has no "/". (A relation type without a "." would be
    read as part of the event ID and give a 404; every specified and
    namespaced type has one.)
    """
    parts = rest.split("/")
    for i in range(1, len(parts)):
        if "." in parts[i]:
            tail = parts[i:]
            if len(tail) > 2:
                break
            return "/".join(parts[:i]), tail[0], tail[1] if len(tail) == 2 else None
    return rest, None, None


@client_v1.route("/rooms/<room_id>/relations/<path:rest>")
@authenticated
async def relations(who: Requester, room_id: str, rest: str) -> Any:
    event_id, rel_type, event_type = _split(rest)
    return await hs().relations.relations(who, room_id, event_id, rel_type, event_type, dict(request.args))


@client_v1.route("/rooms/<room_id>/threads")
@authenticated
async def threads(who: Requester, room_id: str) -> Any:
    return await hs().relations.threads(who, room_id, dict(request.args))
