"""Client API: /sync, filters, typing, receipts, read markers, presence, account data, tags."""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver import errors
from homeserver.api.http import MultiPrefixBlueprint, authenticated, hs, json_body
from homeserver.services.auth import Requester

client = MultiPrefixBlueprint("client_sync", ["/_matrix/client/r0", "/_matrix/client/v3"])


@client.route("/sync")
@authenticated
async def sync(who: Requester) -> Any:
    return await hs().sync.sync(who, dict(request.args))


@client.route("/user/<user_id>/filter", methods=["POST"])
@authenticated
async def create_filter(who: Requester, user_id: str) -> Any:
    return {"filter_id": await hs().filters.create(who, user_id, await json_body())}


@client.route("/user/<user_id>/filter/<filter_id>")
@authenticated
async def get_filter(who: Requester, user_id: str, filter_id: str) -> Any:
    return await hs().filters.get(who, user_id, filter_id)


@client.route("/rooms/<room_id>/typing/<user_id>", methods=["PUT"])
@authenticated
async def typing(who: Requester, room_id: str, user_id: str) -> Any:
    body = await json_body(allow_empty=False)
    is_typing = body.get("typing")
    if not isinstance(is_typing, bool):
        raise errors.bad_json("'typing' must be a boolean")
    timeout = body.get("timeout", 30_000)
    if not isinstance(timeout, int) or isinstance(timeout, bool):
        raise errors.bad_json("'timeout' must be an integer")
    await hs().typing.set_typing(who, room_id, user_id, is_typing, timeout)
    return {}


@client.route("/rooms/<room_id>/receipt/<receipt_type>/<path:event_id>", methods=["POST"])
@authenticated
async def receipt(who: Requester, room_id: str, receipt_type: str, event_id: str) -> Any:
    body = await json_body()
    await hs().receipts.post_receipt(who, room_id, receipt_type, event_id, body.get("thread_id"))
    return {}


@client.route("/rooms/<room_id>/read_markers", methods=["POST"])
@authenticated
async def read_markers(who: Requester, room_id: str) -> Any:
    await hs().receipts.read_markers(who, room_id, await json_body())
    return {}


@client.route("/presence/<user_id>/status", methods=["PUT"])
@authenticated
async def put_presence(who: Requester, user_id: str) -> Any:
    await hs().presence.put_status(who, user_id, await json_body(allow_empty=False))
    return {}


@client.route("/presence/<user_id>/status", methods=["GET"])
@authenticated
async def get_presence(who: Requester, user_id: str) -> Any:
    return await hs().presence.get_status(who, user_id)


@client.route("/user/<user_id>/account_data/<data_type>", methods=["PUT"])
@authenticated
async def put_account_data(who: Requester, user_id: str, data_type: str) -> Any:
    await hs().account_data.put_for(who, user_id, "", data_type, await json_body())
    return {}


@client.route("/user/<user_id>/account_data/<data_type>", methods=["GET"])
@authenticated
async def get_account_data(who: Requester, user_id: str, data_type: str) -> Any:
    return await hs().account_data.get_for(who, user_id, "", data_type)


@client.route("/user/<user_id>/rooms/<room_id>/account_data/<data_type>", methods=["PUT"])
@authenticated
async def put_room_account_data(who: Requester, user_id: str, room_id: str, data_type: str) -> Any:
    await hs().account_data.put_for(who, user_id, room_id, data_type, await json_body())
    return {}


@client.route("/user/<user_id>/rooms/<room_id>/account_data/<data_type>", methods=["GET"])
@authenticated
async def get_room_account_data(who: Requester, user_id: str, room_id: str, data_type: str) -> Any:
    return await hs().account_data.get_for(who, user_id, room_id, data_type)


@client.route("/user/<user_id>/rooms/<room_id>/tags")
@authenticated
async def get_tags(who: Requester, user_id: str, room_id: str) -> Any:
    return await hs().account_data.tags(who, user_id, room_id)


@client.route("/user/<user_id>/rooms/<room_id>/tags/<tag>", methods=["PUT"])
@authenticated
async def put_tag(who: Requester, user_id: str, room_id: str, tag: str) -> Any:
    await hs().account_data.set_tag(who, user_id, room_id, tag, await json_body())
    return {}


@client.route("/user/<user_id>/rooms/<room_id>/tags/<tag>", methods=["DELETE"])
@authenticated
async def delete_tag(who: Requester, user_id: str, room_id: str, tag: str) -> Any:
    await hs().account_data.set_tag(who, user_id, room_id, tag, None)
    return {}
