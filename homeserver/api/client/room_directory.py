"""Client API: the public room directory (/publicRooms, /directory/list/room/{roomId})."""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver.api.http import MultiPrefixBlueprint, authenticated, hs, json_body, requester
from homeserver.services.auth import Requester

client = MultiPrefixBlueprint("client_room_directory", ["/_matrix/client/r0", "/_matrix/client/v3"])


@client.route("/publicRooms", methods=["GET"])
async def public_rooms_get() -> Any:
    # Authentication is optional here, but a token that is sent must be valid.
    if request.headers.get("Authorization") or request.args.get("access_token"):
        await requester()
    args = request.args
    return await hs().room_directory.public_rooms(
        limit=args.get("limit"), since=args.get("since"), server=args.get("server"),
    )


@client.route("/publicRooms", methods=["POST"])
@authenticated
async def public_rooms_post(who: Requester) -> Any:
    body = await json_body()
    return await hs().room_directory.public_rooms(
        limit=body.get("limit"), since=body.get("since"), server=request.args.get("server"),
        search_filter=body.get("filter"),
    )


@client.route("/directory/list/room/<room_id>", methods=["GET"])
async def get_visibility(room_id: str) -> Any:
    return await hs().room_directory.visibility(room_id)


@client.route("/directory/list/room/<room_id>", methods=["PUT"])
@authenticated
async def put_visibility(who: Requester, room_id: str) -> Any:
    body = await json_body(allow_empty=False)
    await hs().room_directory.set_visibility(who, room_id, body.get("visibility"))
    return {}
