"""Client API: rooms, membership, state, sending, history, aliases."""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver import errors
from homeserver.api.http import MultiPrefixBlueprint, authenticated, hs, json_body
from homeserver.services.auth import Requester

client = MultiPrefixBlueprint("client_rooms", ["/_matrix/client/r0", "/_matrix/client/v3"])


def _reason(body: dict[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise errors.bad_json("'reason' must be a string")
    return reason


def _user_id(body: dict[str, Any]) -> str:
    user_id = body.get("user_id")
    if not isinstance(user_id, str):
        raise errors.bad_json("'user_id' must be a string")
    return user_id


@client.route("/createRoom", methods=["POST"])
@authenticated
async def create_room(who: Requester) -> Any:
    return await hs().rooms.create_room(who, await json_body())


# -- membership -------------------------------------------------------------------
@client.route("/join/<path:room_id_or_alias>", methods=["POST"])
@authenticated
async def join_by_id_or_alias(who: Requester, room_id_or_alias: str) -> Any:
    body = await json_body()
    return {"room_id": await hs().rooms.join(who, room_id_or_alias, _reason(body))}


@client.route("/rooms/<room_id>/join", methods=["POST"])
@authenticated
async def join_room(who: Requester, room_id: str) -> Any:
    body = await json_body()
    return {"room_id": await hs().rooms.join(who, room_id, _reason(body))}


@client.route("/knock/<path:room_id_or_alias>", methods=["POST"])
@authenticated
async def knock(who: Requester, room_id_or_alias: str) -> Any:
    body = await json_body()
    return {"room_id": await hs().rooms.knock(who, room_id_or_alias, _reason(body))}


@client.route("/rooms/<room_id>/invite", methods=["POST"])
@authenticated
async def invite(who: Requester, room_id: str) -> Any:
    body = await json_body(allow_empty=False)
    await hs().rooms.set_membership(who, room_id, _user_id(body), "invite", _reason(body))
    return {}


@client.route("/rooms/<room_id>/leave", methods=["POST"])
@authenticated
async def leave(who: Requester, room_id: str) -> Any:
    body = await json_body()
    await hs().rooms.set_membership(who, room_id, who.user_id, "leave", _reason(body))
    return {}


@client.route("/rooms/<room_id>/kick", methods=["POST"])
@authenticated
async def kick(who: Requester, room_id: str) -> Any:
    body = await json_body(allow_empty=False)
    await hs().rooms.kick(who, room_id, _user_id(body), _reason(body))
    return {}


@client.route("/rooms/<room_id>/ban", methods=["POST"])
@authenticated
async def ban(who: Requester, room_id: str) -> Any:
    body = await json_body(allow_empty=False)
    await hs().rooms.set_membership(who, room_id, _user_id(body), "ban", _reason(body))
    return {}


@client.route("/rooms/<room_id>/unban", methods=["POST"])
@authenticated
async def unban(who: Requester, room_id: str) -> Any:
    body = await json_body(allow_empty=False)
    await hs().rooms.unban(who, room_id, _user_id(body), _reason(body))
    return {}


@client.route("/rooms/<room_id>/forget", methods=["POST"])
@authenticated
async def forget(who: Requester, room_id: str) -> Any:
    await hs().rooms.forget(who, room_id)
    return {}


@client.route("/joined_rooms")
@authenticated
async def joined_rooms(who: Requester) -> Any:
    return {"joined_rooms": await hs().events.rooms_for_user(who.user_id)}


@client.route("/rooms/<room_id>/joined_members")
@authenticated
async def joined_members(who: Requester, room_id: str) -> Any:
    await hs().rooms.require_member(who.user_id, room_id)
    return {"joined": await hs().rooms.joined_members(room_id)}


@client.route("/rooms/<room_id>/members")
@authenticated
async def members(who: Requester, room_id: str) -> Any:
    return await hs().room_state.members(who, room_id, dict(request.args))


# -- state -------------------------------------------------------------------------
@client.route("/rooms/<room_id>/state")
@authenticated
async def full_state(who: Requester, room_id: str) -> Any:
    return await hs().room_state.full_state(who, room_id)


@client.route("/rooms/<room_id>/state/<event_type>", methods=["GET"], defaults={"state_key": ""})
@client.route("/rooms/<room_id>/state/<event_type>/<path:state_key>", methods=["GET"])
@authenticated
async def get_state(who: Requester, room_id: str, event_type: str, state_key: str) -> Any:
    return await hs().room_state.state_event(who, room_id, event_type, state_key, request.args.get("format"))


@client.route("/rooms/<room_id>/state/<event_type>", methods=["PUT"], defaults={"state_key": ""})
@client.route("/rooms/<room_id>/state/<event_type>/<path:state_key>", methods=["PUT"])
@authenticated
async def put_state(who: Requester, room_id: str, event_type: str, state_key: str) -> Any:
    content = await json_body()
    return {"event_id": await hs().rooms.send_state(who, room_id, event_type, state_key, content)}


# -- sending -------------------------------------------------------------------------
@client.route("/rooms/<room_id>/send/<event_type>/<txn_id>", methods=["PUT"])
@authenticated
async def send(who: Requester, room_id: str, event_type: str, txn_id: str) -> Any:
    content = await json_body()
    return {"event_id": await hs().rooms.send_message(who, room_id, event_type, content, txn_id)}


@client.route("/rooms/<room_id>/redact/<path:event_id>/<txn_id>", methods=["PUT"])
@authenticated
async def redact(who: Requester, room_id: str, event_id: str, txn_id: str) -> Any:
    body = await json_body()
    return {"event_id": await hs().rooms.redact(who, room_id, event_id, txn_id, _reason(body))}


# -- history -----------------------------------------------------------------------------
@client.route("/rooms/<room_id>/messages")
@authenticated
async def messages(who: Requester, room_id: str) -> Any:
    return await hs().timeline.messages(who, room_id, dict(request.args))


@client.route("/rooms/<room_id>/event/<path:event_id>")
@authenticated
async def get_event(who: Requester, room_id: str, event_id: str) -> Any:
    return await hs().timeline.get_event(who, room_id, event_id)


# -- aliases -----------------------------------------------------------------------------
@client.route("/directory/room/<path:alias>", methods=["PUT"])
@authenticated
async def put_alias(who: Requester, alias: str) -> Any:
    body = await json_body(allow_empty=False)
    room_id = body.get("room_id")
    if not isinstance(room_id, str):
        raise errors.bad_json("'room_id' must be a string")
    await hs().rooms.create_alias(who, alias, room_id)
    return {}


@client.route("/directory/room/<path:alias>", methods=["GET"])
async def get_alias(alias: str) -> Any:
    row = await hs().aliases.get_alias(alias)
    if row is None:
        raise errors.not_found("Room alias not found")
    return {"room_id": row["room_id"], "servers": [hs().config.server_name]}


@client.route("/directory/room/<path:alias>", methods=["DELETE"])
@authenticated
async def delete_alias(who: Requester, alias: str) -> Any:
    await hs().rooms.delete_alias(who, alias)
    return {}


@client.route("/rooms/<room_id>/aliases")
@authenticated
async def room_aliases(who: Requester, room_id: str) -> Any:
    await hs().rooms.require_member(who.user_id, room_id)
    return {"aliases": await hs().aliases.aliases_for_room(room_id)}


@client.route("/rooms/<room_id>/context/<path:event_id>")
@authenticated
async def context(who: Requester, room_id: str, event_id: str) -> Any:
    return await hs().timeline.context(who, room_id, event_id, dict(request.args))


@client.route("/rooms/<room_id>/upgrade", methods=["POST"])
@authenticated
async def upgrade(who: Requester, room_id: str) -> Any:
    body = await json_body(allow_empty=False)
    return {"replacement_room": await hs().upgrades.upgrade(who, room_id, body)}
