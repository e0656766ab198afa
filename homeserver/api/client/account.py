"""Client API: discovery, registration, login, tokens, account management, devices, profiles."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from homeserver import errors
from homeserver.api.http import MultiPrefixBlueprint, authenticated, client_ip, hs, json_body
from homeserver.core.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS
from homeserver.services.auth import Requester

SPEC_VERSIONS = [
    "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
    *(f"v1.{n}" for n in range(1, 20)),
]

client = MultiPrefixBlueprint("client_account", ["/_matrix/client/r0", "/_matrix/client/v3"])
client_v1 = MultiPrefixBlueprint("client_account_v1", ["/_matrix/client/v1"])
discovery = Blueprint("discovery", __name__)

# Extensions other modules add to /versions (e.g. the WebSocket transport).
UNSTABLE_FEATURES: dict[str, bool] = {}


@discovery.route("/_matrix/client/versions", methods=["GET"])
async def versions() -> Any:
    return {"versions": SPEC_VERSIONS, "unstable_features": dict(UNSTABLE_FEATURES)}


@discovery.route("/.well-known/matrix/client", methods=["GET"])
async def well_known_client() -> Any:
    return {"m.homeserver": {"base_url": hs().config.public_baseurl}}


@client.route("/capabilities")
@authenticated
async def capabilities(who: Requester) -> Any:
    return {
        "capabilities": {
            "m.change_password": {"enabled": True},
            "m.room_versions": {
                "default": DEFAULT_ROOM_VERSION,
                "available": {v: "stable" for v in KNOWN_ROOM_VERSIONS},
            },
            "m.set_displayname": {"enabled": True},
            "m.set_avatar_url": {"enabled": True},
            "m.3pid_changes": {"enabled": False},
            "m.get_login_token": {"enabled": False},
        }
    }


# -- registration ---------------------------------------------------------------
@client.route("/register", methods=["POST"])
async def register() -> Any:
    body = await json_body()
    kind = request.args.get("kind", "user")
    return await hs().accounts.register(body, kind, client_ip())


@client.route("/register/available")
async def register_available() -> Any:
    username = request.args.get("username")
    if not username:
        raise errors.missing_param("'username' is required")
    await hs().accounts.username_available(username)
    return {"available": True}


@client_v1.route("/register/m.login.registration_token/validity")
async def registration_token_validity() -> Any:
    token = request.args.get("token")
    if not token:
        raise errors.missing_param("'token' is required")
    return {"valid": await hs().accounts.registration_token_valid(token)}


# -- login and tokens --------------------------------------------------------------
@client.route("/login", methods=["GET"])
async def login_flows() -> Any:
    return {"flows": hs().accounts.login_flows()}


@client.route("/login", methods=["POST"])
async def login() -> Any:
    body = await json_body(allow_empty=False)
    return await hs().accounts.login(body, client_ip())


@client.route("/refresh", methods=["POST"])
async def refresh() -> Any:
    body = await json_body(allow_empty=False)
    token = body.get("refresh_token")
    if not isinstance(token, str) or not token:
        raise errors.bad_json("'refresh_token' must be a non-empty string")
    return await hs().auth.refresh(token)


@client.route("/logout", methods=["POST"])
@authenticated
async def logout(who: Requester) -> Any:
    await hs().auth.logout(who)
    return {}


@client.route("/logout/all", methods=["POST"])
@authenticated
async def logout_all(who: Requester) -> Any:
    await hs().auth.logout_all(who)
    return {}


@client.route("/account/whoami")
@authenticated
async def whoami(who: Requester) -> Any:
    return {"user_id": who.user_id, "device_id": who.device_id, "is_guest": who.is_guest}


@client.route("/account/password", methods=["POST"])
@authenticated
async def change_password(who: Requester) -> Any:
    await hs().accounts.change_password(who, await json_body(), client_ip())
    return {}


@client.route("/account/deactivate", methods=["POST"])
@authenticated
async def deactivate(who: Requester) -> Any:
    await hs().accounts.deactivate(who, await json_body(), client_ip())
    return {"id_server_unbind_result": "no-support"}


@client.route("/account/3pid")
@authenticated
async def threepids(who: Requester) -> Any:
    return {"threepids": []}


# -- devices --------------------------------------------------------------------
@client.route("/devices")
@authenticated
async def list_devices(who: Requester) -> Any:
    return {"devices": await hs().accounts.list_devices(who.user_id)}


@client.route("/devices/<path:device_id>", methods=["GET"])
@authenticated
async def get_device(who: Requester, device_id: str) -> Any:
    return await hs().accounts.get_device(who.user_id, device_id)


@client.route("/devices/<path:device_id>", methods=["PUT"])
@authenticated
async def put_device(who: Requester, device_id: str) -> Any:
    await hs().accounts.rename_device(who.user_id, device_id, await json_body())
    return {}


@client.route("/devices/<path:device_id>", methods=["DELETE"])
@authenticated
async def delete_device(who: Requester, device_id: str) -> Any:
    body = await json_body()
    await hs().accounts.get_device(who.user_id, device_id)
    await hs().accounts.delete_devices(who, [device_id], body, client_ip())
    return {}


@client.route("/delete_devices", methods=["POST"])
@authenticated
async def delete_devices(who: Requester) -> Any:
    body = await json_body()
    device_ids = body.get("devices")
    if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
        raise errors.bad_json("'devices' must be a list of device IDs")
    await hs().accounts.delete_devices(who, device_ids, body, client_ip())
    return {}


# -- profiles ---------------------------------------------------------------------
@client.route("/profile/<user_id>")
async def get_profile(user_id: str) -> Any:
    return await hs().accounts.get_profile(user_id)


@client.route("/profile/<user_id>/<field>", methods=["GET"])
async def get_profile_field(user_id: str, field: str) -> Any:
    profile = await hs().accounts.get_profile(user_id)
    if field not in profile:
        raise errors.not_found(f"Profile has no {field!r}")
    return {field: profile[field]}


@client.route("/profile/<user_id>/<field>", methods=["PUT"])
@authenticated
async def put_profile_field(who: Requester, user_id: str, field: str) -> Any:
    body = await json_body(allow_empty=False)
    if field not in body:
        raise errors.missing_param(f"'{field}' is required")
    await hs().accounts.set_profile_field(who, user_id, field, body[field])
    return {}
