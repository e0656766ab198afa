"""Client API: server-side search and the user directory."""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver.api.http import MultiPrefixBlueprint, authenticated, hs, json_body
from homeserver.services.auth import Requester

client = MultiPrefixBlueprint("client_search", ["/_matrix/client/r0", "/_matrix/client/v3"])


@client.route("/search", methods=["POST"])
@authenticated
async def search(who: Requester) -> Any:
    body = await json_body(allow_empty=False)
    return await hs().search.search(who, body, request.args.get("next_batch"))


@client.route("/user_directory/search", methods=["POST"])
@authenticated
async def user_directory_search(who: Requester) -> Any:
    body = await json_body(allow_empty=False)
    return await hs().user_directory.search(who, body)
