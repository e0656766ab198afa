"""Client API: end-to-end encryption keys, cross-signing, to-device messages, key backup."""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver import errors
from homeserver.api.http import MultiPrefixBlueprint, authenticated, client_ip, hs, json_body
from homeserver.services.auth import Requester

client = MultiPrefixBlueprint("client_keys", ["/_matrix/client/r0", "/_matrix/client/v3"])
# Cross-signing was under /unstable before v1.1; some clients still use it.
client_unstable = MultiPrefixBlueprint("client_keys_unstable", ["/_matrix/client/unstable"])


# -- keys -------------------------------------------------------------------------
@client.route("/keys/upload", methods=["POST"])
@authenticated
async def upload_keys(who: Requester) -> Any:
    return await hs().e2ee.upload_keys(who, await json_body())


@client.route("/keys/upload/<path:device_id>", methods=["POST"])
@authenticated
async def upload_keys_for_device(who: Requester, device_id: str) -> Any:
    # r0 allowed the device ID in the path; it must be the requester's own.
    if device_id != who.device_id:
        raise errors.invalid_param("Keys can only be uploaded for the requesting device")
    return await hs().e2ee.upload_keys(who, await json_body())


@client.route("/keys/query", methods=["POST"])
@authenticated
async def query_keys(who: Requester) -> Any:
    return await hs().e2ee.query_keys(who, await json_body())


@client.route("/keys/claim", methods=["POST"])
@authenticated
async def claim_keys(who: Requester) -> Any:
    return await hs().e2ee.claim_keys(who, await json_body())


@client.route("/keys/changes", methods=["GET"])
@authenticated
async def key_changes(who: Requester) -> Any:
    from_token, to_token = request.args.get("from"), request.args.get("to")
    if not from_token or not to_token:
        raise errors.missing_param("'from' and 'to' are required")
    return await hs().e2ee.key_changes(who, from_token, to_token)


@client.route("/keys/device_signing/upload", methods=["POST"])
@client_unstable.route("/keys/device_signing/upload", methods=["POST"])
@authenticated
async def upload_cross_signing_keys(who: Requester) -> Any:
    await hs().e2ee.upload_cross_signing_keys(who, await json_body(), client_ip())
    return {}


@client.route("/keys/signatures/upload", methods=["POST"])
@client_unstable.route("/keys/signatures/upload", methods=["POST"])
@authenticated
async def upload_signatures(who: Requester) -> Any:
    return await hs().e2ee.upload_signatures(who, await json_body())


# -- to-device --------------------------------------------------------------------
@client.route("/sendToDevice/<event_type>/<path:txn_id>", methods=["PUT"])
@authenticated
async def send_to_device(who: Requester, event_type: str, txn_id: str) -> Any:
    await hs().e2ee.send_to_device(who, event_type, txn_id, await json_body(allow_empty=False))
    return {}


# -- key backup ---------------------------------------------------------------------
@client.route("/room_keys/version", methods=["POST"])
@authenticated
async def create_backup_version(who: Requester) -> Any:
    return await hs().key_backup.create_version(who, await json_body(allow_empty=False))


@client.route("/room_keys/version", methods=["GET"])
@authenticated
async def current_backup_version(who: Requester) -> Any:
    return await hs().key_backup.get_version(who, None)


@client.route("/room_keys/version/<version>", methods=["GET"])
@authenticated
async def get_backup_version(who: Requester, version: str) -> Any:
    return await hs().key_backup.get_version(who, version)


@client.route("/room_keys/version/<version>", methods=["PUT"])
@authenticated
async def update_backup_version(who: Requester, version: str) -> Any:
    await hs().key_backup.update_version(who, version, await json_body(allow_empty=False))
    return {}


@client.route("/room_keys/version/<version>", methods=["DELETE"])
@authenticated
async def delete_backup_version(who: Requester, version: str) -> Any:
    await hs().key_backup.delete_version(who, version)
    return {}


@client.route("/room_keys/keys", methods=["PUT"])
@client.route("/room_keys/keys/<room_id>", methods=["PUT"])
@client.route("/room_keys/keys/<room_id>/<session_id>", methods=["PUT"])
@authenticated
async def put_room_keys(who: Requester, room_id: str | None = None, session_id: str | None = None) -> Any:
    body = await json_body(allow_empty=False)
    return await hs().key_backup.put_keys(who, request.args.get("version"), body, room_id, session_id)


@client.route("/room_keys/keys", methods=["GET"])
@client.route("/room_keys/keys/<room_id>", methods=["GET"])
@client.route("/room_keys/keys/<room_id>/<session_id>", methods=["GET"])
@authenticated
async def get_room_keys(who: Requester, room_id: str | None = None, session_id: str | None = None) -> Any:
    return await hs().key_backup.get_keys(who, request.args.get("version"), room_id, session_id)


@client.route("/room_keys/keys", methods=["DELETE"])
@client.route("/room_keys/keys/<room_id>", methods=["DELETE"])
@client.route("/room_keys/keys/<room_id>/<session_id>", methods=["DELETE"])
@authenticated
async def delete_room_keys(who: Requester, room_id: str | None = None, session_id: str | None = None) -> Any:
    return await hs().key_backup.delete_keys(who, request.args.get("version"), room_id, session_id)
