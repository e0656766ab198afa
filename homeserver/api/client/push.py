"""Client API: push rules, pushers and /notifications."""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver.api.http import MultiPrefixBlueprint, authenticated, hs, json_body
from homeserver.services.auth import Requester

client = MultiPrefixBlueprint("client_push", ["/_matrix/client/r0", "/_matrix/client/v3"])


@client.route("/pushrules/")
@authenticated
async def all_rules(who: Requester) -> Any:
    return await hs().push_rules.get_all(who)


@client.route("/pushrules/global/")
@authenticated
async def global_rules(who: Requester) -> Any:
    return await hs().push_rules.get_global(who)


@client.route("/pushrules/<scope>/<kind>/<rule_id>")
@authenticated
async def get_rule(who: Requester, scope: str, kind: str, rule_id: str) -> Any:
    return await hs().push_rules.get_rule(who, scope, kind, rule_id)


@client.route("/pushrules/<scope>/<kind>/<rule_id>", methods=["PUT"])
@authenticated
async def put_rule(who: Requester, scope: str, kind: str, rule_id: str) -> Any:
    body = await json_body(allow_empty=False)
    await hs().push_rules.put_rule(who, scope, kind, rule_id, body, request.args.get("before"),
                                   request.args.get("after"))
    return {}


@client.route("/pushrules/<scope>/<kind>/<rule_id>", methods=["DELETE"])
@authenticated
async def delete_rule(who: Requester, scope: str, kind: str, rule_id: str) -> Any:
    await hs().push_rules.delete_rule(who, scope, kind, rule_id)
    return {}


@client.route("/pushrules/<scope>/<kind>/<rule_id>/<any(enabled, actions):attr>")
@authenticated
async def get_rule_attr(who: Requester, scope: str, kind: str, rule_id: str, attr: str) -> Any:
    return await hs().push_rules.get_attr(who, scope, kind, rule_id, attr)


@client.route("/pushrules/<scope>/<kind>/<rule_id>/<any(enabled, actions):attr>", methods=["PUT"])
@authenticated
async def put_rule_attr(who: Requester, scope: str, kind: str, rule_id: str, attr: str) -> Any:
    await hs().push_rules.set_attr(who, scope, kind, rule_id, attr, await json_body(allow_empty=False))
    return {}


@client.route("/notifications")
@authenticated
async def notifications(who: Requester) -> Any:
    return await hs().push.notifications(who, dict(request.args), hs().serializer)


@client.route("/pushers")
@authenticated
async def get_pushers(who: Requester) -> Any:
    return await hs().push.get_pushers(who)


@client.route("/pushers/set", methods=["POST"])
@authenticated
async def set_pusher(who: Requester) -> Any:
    await hs().push.set_pusher(who, await json_body(allow_empty=False))
    return {}
