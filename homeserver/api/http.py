"""Shared HTTP plumbing for the blueprints: JSON bodies, access tokens, routes served under several prefixes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from functools import wraps
from typing import Any, TypeVar

from quart import Blueprint, current_app, g, request

from homeserver import errors
from homeserver.services.auth import Requester

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def hs() -> Any:
    """The wired services of this app (see homeserver.app.Services)."""
    return current_app.config["HS"]


async def json_body(*, allow_empty: bool = True) -> dict[str, Any]:
    """The request body as a JSON object, or a Matrix error."""
    limit = int(hs().config.get("limits.max_json_body_bytes"))
    length = request.content_length
    if length is not None and length > limit:
        raise errors.too_large()
    raw = await request.get_data(cache=True, as_text=False)
    if len(raw) > limit:
        raise errors.too_large()
    if not raw.strip():
        if allow_empty:
            return {}
        raise errors.MatrixError(400, "M_NOT_JSON", "Request body is empty")
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise errors.MatrixError(400, "M_NOT_JSON", "Content not JSON") from None
    if not isinstance(value, dict):
        raise errors.MatrixError(400, "M_NOT_JSON", "The body must be a JSON object")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def access_token_from_request() -> str | None:
    return access_token_from(request.headers, request.args)


def access_token_from(headers: Any, args: Any) -> str | None:
    """The access token of a request or WebSocket handshake: the Authorization header, else `?access_token=`."""
    header = headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise errors.missing_token()
    return args.get("access_token") or None


def client_ip() -> str | None:
    return request.remote_addr


async def requester() -> Requester:
    """The authenticated user of this request (cached on `g`)."""
    cached = getattr(g, "requester", None)
    if cached is not None:
        return cached
    token = access_token_from_request()
    if token is None:
        raise errors.missing_token()
    who = await hs().auth.requester_for_token(token)
    g.requester = who
    return who


def authenticated(fn: F) -> F:
    """Route decorator: authenticate first, pass the Requester as the first argument."""

    @wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        who = await requester()
        return await fn(who, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class MultiPrefixBlueprint:
    """Registers each route under several URL prefixes (r0 and v3 of the client API, say)."""

    def __init__(self, name: str, prefixes: Iterable[str]) -> None:
        self.blueprint = Blueprint(name, __name__)
        self.prefixes = list(prefixes)

    def route(self, rule: str, methods: list[str] | None = None, **options: Any) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            for prefix in self.prefixes:
                endpoint = fn.__name__ + prefix.replace("/", "_").replace(".", "_")
                self.blueprint.add_url_rule(
                    prefix + rule, endpoint=endpoint, view_func=fn, methods=methods or ["GET"], **options
                )
            return fn

        return decorator
