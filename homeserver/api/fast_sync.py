"""`GET /sync` answered at the ASGI layer, ahead of Quart's routing and request context.

Long-poll `/sync` is most of a homeserver's requests: every delivered message
is one response and one re-poll per recipient. With the sync itself served
from memory (`services/stream_cache.py`), Quart's per-request machinery
(request object, contexts, hooks, response object) cost more than the sync.
This lane does the same work directly: the same authentication, parameters,
errors, CORS and request-id headers, metrics and log line as every other
endpoint, and it cancels the sync (releasing its waiter) the moment the client
disconnects. Every other request goes to Quart untouched.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_plus

from homeserver import errors
from homeserver.api.http import access_token_from
from homeserver.core.fast_json import dumps_bytes as encode_json
from homeserver.logs import request_id_var

log = logging.getLogger("homeserver.app")

SYNC_PATHS = {
    "/_matrix/client/v3/sync": "/_matrix/client/v3/sync",
    "/_matrix/client/r0/sync": "/_matrix/client/r0/sync",
    "/_matrix/client/v3/sync/": "/_matrix/client/v3/sync",
    "/_matrix/client/r0/sync/": "/_matrix/client/r0/sync",
}

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]],
                   Awaitable[None]]


class _Headers:
    """Case-insensitive first-value access to ASGI headers (what `access_token_from` needs)."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._h: dict[str, str] = {}
        for k, v in raw:
            self._h.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._h.get(name.lower(), default)


class FastSync:
    def __init__(self, app: ASGIApp, services: Any, extra_headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.services = services
        self.extra_headers = extra_headers
        self._metric_children: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            endpoint = SYNC_PATHS.get(scope["path"])
            if endpoint is not None:
                await self._sync(endpoint, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _sync(self, endpoint: str, scope: dict[str, Any], receive: Any, send: Any) -> None:
        start = time.perf_counter()
        headers = _Headers(scope.get("headers", []))
        rid = headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request_id_var.set(rid)
        args = parse_query(scope.get("query_string", b""))
        status, body, extra = 200, b"", {}
        # The sync runs in this request's own task; a watcher cancels it if the client leaves,
        # which releases its waiter at once.
        current = asyncio.current_task()
        assert current is not None
        state = {"finished": False, "left": False}

        def on_disconnect(watcher: asyncio.Future[None]) -> None:
            if not watcher.cancelled() and not state["finished"]:
                state["left"] = True
                current.cancel()

        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        watcher.add_done_callback(on_disconnect)
        try:
            body = encode_json(await self._answer(headers, args))
        except asyncio.CancelledError:
            if not state["left"]:
                raise  # we are being cancelled (shutdown): not the client's doing
            current.uncancel()
            self._record(endpoint, 499, start)
            return
        except errors.MatrixError as exc:
            status, body, extra = exc.status, encode_json(exc.body()), exc.headers
        except Exception as exc:
            log.error("unhandled error", exc_info=exc)
            status, body = 500, encode_json({"errcode": "M_UNKNOWN", "error": "Internal server error"})
        finally:
            state["finished"] = True
            watcher.cancel()
        out = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", rid.encode("latin-1", "replace")),
            *self.extra_headers,
            *((k.lower().encode(), str(v).encode()) for k, v in extra.items()),
        ]
        try:
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        finally:
            self._record(endpoint, status, start)

    async def _answer(self, headers: _Headers, args: dict[str, str]) -> Any:
        token = access_token_from(headers, args)
        if token is None:
            raise errors.missing_token()
        who = await self.services.auth.requester_for_token(token)
        return await self.services.sync.sync(who, args)

    def _record(self, endpoint: str, status: int, start: float) -> None:
        elapsed = time.perf_counter() - start
        children = self._metric_children.get((endpoint, status))
        if children is None:
            metrics = self.services.metrics
            children = (metrics.requests.labels("GET", endpoint, str(status)), metrics.latency.labels("GET", endpoint))
            self._metric_children[(endpoint, status)] = children
        children[0].inc()
        children[1].observe(elapsed)
        # Answered long-polls are most of all requests: their lines are debug-level, the rest info.
        log.log(logging.DEBUG if status == 200 else logging.INFO,
                "%s %s %d %.1fms", "GET", endpoint, status, elapsed * 1000)


def parse_query(query: bytes) -> dict[str, str]:
    """The query string as `parse_qsl(..., keep_blank_values=True)` reads it, first value of each name.

    A client sends the same filter with every long-poll: its decoded form is remembered, and a
    value with nothing escaped (a since token, a timeout) needs no decoding at all.
    """
    args: dict[str, str] = {}
    for part in query.decode("latin-1").split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = _unquote(name)
        if name not in args:
            args[name] = _unquote(value)
    return args


def _unquote(text: str) -> str:
    if "%" not in text and "+" not in text:
        return text
    return _unquote_escaped(text)


@functools.lru_cache(maxsize=4096)
def _unquote_escaped(text: str) -> str:
    return unquote_plus(text, encoding="utf-8", errors="replace")


async def _wait_disconnect(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
