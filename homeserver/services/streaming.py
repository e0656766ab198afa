"""Sync pushed over one long-lived connection: WebSocket (our extension) and SSE (MSC2108).

Both transports are the same loop: compute the sync from the last token the client
*has*, push it, advance, repeat, long-polling on the notifier in between. They differ
in how "the client has it" is known:

- WebSocket: the client acknowledges each sync (`{"type":"ack","next_batch":...}`).
  At most one sync is unacknowledged per socket; while one is, nothing more is
  computed, and the next sync, computed when the ack arrives, covers everything since
  the acknowledged token. A client that does not read therefore receives fewer, larger
  syncs: memory per socket is bounded by one response, never by a queue.
- SSE: one-way, so the awaited send is the flow control: the next sync is computed
  only after the previous chunk was handed to the transport (bounded by socket
  buffers, see spec/websocket-sync.md).

Resume is just `since`: every sync carries `next_batch`, and a client that reconnects
with the last token it processed gets exactly what it has not seen.

Disconnects cancel the connection's tasks; `SyncService.sync_until` unregisters its
notifier waiter in `finally`, so nothing waits for a client that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from homeserver import errors
from homeserver.core.fast_json import dumps_text
from homeserver.core.tokens import SyncToken
from homeserver.core.ws_session import (
    CLOSE_AUTH,
    CLOSE_BAD_PARAMS,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    State,
    WsSession,
)
from homeserver.services.auth import AuthService, Requester
from homeserver.services.sync import SyncParams, SyncService, is_empty

log = logging.getLogger(__name__)


# RFC 6455: the endpoint is going away (server shutdown).
CLOSE_GOING_AWAY = 1001


class ServerClosing(Exception):
    """The server is stopping: streams end now."""


class WsTransport(Protocol):
    async def receive(self) -> str | bytes: ...

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True)
class StreamingConfig:
    #: How long one sync computation waits on the notifier before it refreshes presence.
    wait_ms: int = 30_000
    #: A connection without a token must authenticate within this many seconds.
    auth_timeout_s: float = 10.0
    #: Refused frames before the socket is closed with 1008.
    max_strikes: int = 20
    #: Requests handled concurrently per socket; more are answered M_LIMIT_EXCEEDED.
    max_inflight_requests: int = 16
    #: SSE heartbeat default (MSC2108: 5 s) and the range a client may ask for.
    sse_heartbeat_s: float = 5.0
    sse_min_heartbeat_s: float = 1.0
    sse_max_heartbeat_s: float = 300.0


def _dumps(value: Any) -> str:
    return dumps_text(value)


class StreamingSync:
    def __init__(
        self,
        *,
        sync: SyncService,
        auth: AuthService,
        rooms: Any,
        typing: Any,
        receipts: Any,
        config: StreamingConfig,
    ) -> None:
        self.sync = sync
        self.auth = auth
        self.rooms = rooms
        self.typing = typing
        self.receipts = receipts
        self.config = config
        self._methods: dict[str, Callable[[Requester, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "send": self._send,
            "typing": self._typing,
            "receipt": self._receipt,
            "read_markers": self._read_markers,
        }

    # -- the shared loop ---------------------------------------------------------------
    async def next_response(self, who: Requester, params: SyncParams) -> dict[str, Any] | None:
        """One sync from `params.since`, waiting up to `wait_ms`; None when nothing happened.

        Raises ServerClosing once the server is stopping, so streams end instead of spinning.
        """
        if self.sync.notifier.closing:
            raise ServerClosing()
        await self.sync.presence.on_sync(who.user_id, params.set_presence)
        response = await self.sync.sync_until(
            who, params.sync_filter, params.since, self.config.wait_ms,
            full_state=params.full_state, use_state_after=params.use_state_after,
        )
        if params.since is not None and not params.full_state and is_empty(response):
            return None
        return response

    @staticmethod
    def advanced(params: SyncParams, response: dict[str, Any]) -> SyncParams:
        """The parameters of the sync after `response` (full_state applies to the first only)."""
        return replace(params, since=SyncToken.decode(response["next_batch"]), full_state=False)

    # -- SSE (MSC2108) -----------------------------------------------------------------
    def heartbeat_interval(self, raw: str | None) -> float:
        if raw is None or raw == "":
            return self.config.sse_heartbeat_s
        try:
            value = float(raw)
        except ValueError:
            raise errors.invalid_param("'heartbeat_interval' must be a number of seconds") from None
        if math.isnan(value):
            raise errors.invalid_param("'heartbeat_interval' must be a number of seconds")
        return min(max(value, self.config.sse_min_heartbeat_s), self.config.sse_max_heartbeat_s)

    async def sse_events(self, who: Requester, params: SyncParams, heartbeat_s: float) -> AsyncIterator[str]:
        """The `text/event-stream` body: one event per sync (`id` = next_batch), comments as heartbeats."""
        pending: asyncio.Task[dict[str, Any] | None] | None = None
        try:
            while not self.sync.notifier.closing:
                if pending is None:
                    pending = asyncio.ensure_future(self.next_response(who, params))
                done, _ = await asyncio.wait({pending}, timeout=heartbeat_s)
                if not done:
                    yield ": \n\n"
                    continue
                try:
                    response = pending.result()
                except ServerClosing:
                    return
                pending = None
                if response is None:
                    continue
                params = self.advanced(params, response)
                yield f"id: {response['next_batch']}\ndata: {_dumps(response)}\n\n"
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

    # -- WebSocket -----------------------------------------------------------------------
    async def run_websocket(self, transport: WsTransport, token: str | None, args: dict[str, str]) -> None:
        """Drive one accepted WebSocket until it closes (see spec/websocket-sync.md)."""
        conn = _WsConnection(self, transport)
        await conn.run(token, args)

    async def request(self, who: Requester, method: Any, params: Any) -> dict[str, Any]:
        """One request sent over the socket: the same services as the HTTP endpoints."""
        handler = self._methods.get(method) if isinstance(method, str) else None
        if handler is None:
            raise errors.unrecognized(400, f"Unknown method {method!r}")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise errors.bad_json("'params' must be an object")
        return await handler(who, params)

    async def _send(self, who: Requester, p: dict[str, Any]) -> dict[str, Any]:
        room_id = _str_param(p, "room_id")
        event_type = p.get("event_type", "m.room.message")
        if not isinstance(event_type, str) or not event_type:
            raise errors.bad_json("'event_type' must be a string")
        content = p.get("content")
        if not isinstance(content, dict):
            raise errors.bad_json("'content' must be an object")
        txn_id = _str_param(p, "txn_id")
        event_id = await self.rooms.send_message(who, room_id, event_type, content, txn_id)
        return {"event_id": event_id}

    async def _typing(self, who: Requester, p: dict[str, Any]) -> dict[str, Any]:
        room_id = _str_param(p, "room_id")
        is_typing = p.get("typing")
        if not isinstance(is_typing, bool):
            raise errors.bad_json("'typing' must be a boolean")
        timeout = p.get("timeout", 30_000)
        if not isinstance(timeout, int) or isinstance(timeout, bool):
            raise errors.bad_json("'timeout' must be an integer")
        await self.typing.set_typing(who, room_id, who.user_id, is_typing, timeout)
        return {}

    async def _receipt(self, who: Requester, p: dict[str, Any]) -> dict[str, Any]:
        room_id = _str_param(p, "room_id")
        receipt_type = p.get("receipt_type", "m.read")
        if not isinstance(receipt_type, str):
            raise errors.bad_json("'receipt_type' must be a string")
        event_id = _str_param(p, "event_id")
        await self.receipts.post_receipt(who, room_id, receipt_type, event_id, p.get("thread_id"))
        return {}

    async def _read_markers(self, who: Requester, p: dict[str, Any]) -> dict[str, Any]:
        room_id = _str_param(p, "room_id")
        body = {k: v for k, v in p.items() if k != "room_id"}
        await self.receipts.read_markers(who, room_id, body)
        return {}


def _str_param(p: dict[str, Any], name: str) -> str:
    value = p.get(name)
    if not isinstance(value, str) or not value:
        raise errors.bad_json(f"'{name}' must be a non-empty string")
    return value


class _WsConnection:
    """The I/O around one `WsSession`: a reader loop, a push loop, request tasks."""

    def __init__(self, service: StreamingSync, transport: WsTransport) -> None:
        self.s = service
        self.transport = transport
        self.session = WsSession(max_strikes=service.config.max_strikes)
        self.send_lock = asyncio.Lock()
        self.who: Requester | None = None
        self.params: SyncParams | None = None
        self.unacked: str | None = None
        self.acked = asyncio.Event()
        self.acked.set()
        self.pusher: asyncio.Task[None] | None = None
        self.requests: set[asyncio.Task[None]] = set()
        self.fatal: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def send(self, message: dict[str, Any]) -> None:
        text = _dumps(message)
        async with self.send_lock:
            await self.transport.send(text)

    async def send_error(self, err: errors.MatrixError, request_id: Any = None) -> None:
        msg: dict[str, Any] = {"type": "error"}
        if request_id is not None:
            msg["id"] = request_id
        msg.update(err.body())
        await self.send(msg)

    async def run(self, token: str | None, args: dict[str, str]) -> None:
        reader = asyncio.ensure_future(self._read_loop(token, args))
        try:
            await asyncio.wait({reader, self.fatal}, return_when=asyncio.FIRST_COMPLETED)
            if self.fatal.done():
                code, reason = self.fatal.result()
            elif reader.exception() is not None:
                log.error("websocket reader failed", exc_info=reader.exception())
                code, reason = CLOSE_INTERNAL, "Internal error"
            else:
                code, reason = reader.result()
            self.session.closed()
            with contextlib.suppress(Exception):
                await self.transport.close(code, reason)
        finally:
            for task in [reader, *( [self.pusher] if self.pusher else []), *self.requests]:
                task.cancel()
            for task in [reader, *( [self.pusher] if self.pusher else []), *self.requests]:
                with contextlib.suppress(BaseException):
                    await task

    async def _authenticate(self, token: Any, args: dict[str, Any]) -> tuple[int, str] | None:
        """Authenticate and parse the sync parameters; the close to perform on failure."""
        if not isinstance(token, str) or not token:
            err = errors.missing_token()
            self.session.auth_failed()
            await self.send_error(err)
            return (CLOSE_AUTH, err.error)
        try:
            who = await self.s.auth.requester_for_token(token)
        except errors.MatrixError as e:
            self.session.auth_failed()
            await self.send_error(e)
            return (CLOSE_AUTH, e.error)
        try:
            params = await self.s.sync.parse_params(who.user_id, args)
        except errors.MatrixError as e:
            self.session.auth_failed()
            await self.send_error(e)
            return (CLOSE_BAD_PARAMS, e.error)
        self.who, self.params = who, params
        self.session.authenticated()
        await self.send({"type": "authenticated", "user_id": who.user_id, "device_id": who.device_id})
        self.pusher = asyncio.ensure_future(self._push_loop())
        return None

    async def _read_loop(self, token: str | None, args: dict[str, str]) -> tuple[int, str]:
        if token is not None:
            failure = await self._authenticate(token, args)
            if failure:
                return failure
        loop = asyncio.get_running_loop()
        auth_deadline = loop.time() + self.s.config.auth_timeout_s
        while True:
            if self.session.state is State.AWAITING_AUTH:
                remaining = auth_deadline - loop.time()
                try:
                    frame = await asyncio.wait_for(self.transport.receive(), max(remaining, 0.001))
                except TimeoutError:
                    await self.send_error(errors.missing_token())
                    return (CLOSE_AUTH, "Authentication timed out")
            else:
                frame = await self.transport.receive()
            step = self.session.receive(frame)
            if step.refusal is not None:
                errcode, error = step.refusal
                await self.send_error(errors.MatrixError(400, errcode, error), step.request_id)
                if step.close is not None:
                    return step.close
                continue
            msg = step.message or {}
            if step.kind == "auth":
                merged = dict(args)
                for key in ("since", "filter", "set_presence", "full_state", "use_state_after"):
                    value = msg.get(key)
                    if isinstance(value, dict) and key == "filter":
                        value = _dumps(value)
                    if isinstance(value, bool):
                        value = "true" if value else "false"
                    if value is not None:
                        merged[key] = value if isinstance(value, str) else str(value)
                failure = await self._authenticate(msg.get("access_token"), merged)
                if failure:
                    return failure
            elif step.kind == "ping":
                pong: dict[str, Any] = {"type": "pong"}
                if step.request_id is not None:
                    pong["id"] = step.request_id
                await self.send(pong)
            elif step.kind == "ack":
                if msg.get("next_batch") != self.unacked or self.unacked is None:
                    close = self.session.strike()
                    await self.send_error(
                        errors.invalid_param("'next_batch' does not name the unacknowledged sync"), step.request_id
                    )
                    if close:
                        return close
                    continue
                self.unacked = None
                self.acked.set()
            elif step.kind == "request":
                if len(self.requests) >= self.s.config.max_inflight_requests:
                    await self.send_error(errors.limit_exceeded(100), step.request_id)
                    continue
                task = asyncio.ensure_future(self._handle_request(step.request_id, msg))
                self.requests.add(task)
                task.add_done_callback(self.requests.discard)
            # "pong": nothing to do

    async def _handle_request(self, request_id: Any, msg: dict[str, Any]) -> None:
        assert self.who is not None
        try:
            body = await self.s.request(self.who, msg.get("method"), msg.get("params"))
        except errors.MatrixError as e:
            await self.send_error(e, request_id)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("websocket request %r failed", msg.get("method"))
            await self.send_error(errors.MatrixError(500, "M_UNKNOWN", "Internal server error"), request_id)
            return
        await self.send({"type": "response", "id": request_id, "body": body})

    async def _push_loop(self) -> None:
        assert self.who is not None and self.params is not None
        try:
            while True:
                await self.acked.wait()
                response = await self.s.next_response(self.who, self.params)
                if response is None:
                    continue
                self.unacked = response["next_batch"]
                self.acked.clear()
                await self.send({"type": "sync", "body": response})
                self.params = self.s.advanced(self.params, response)
        except asyncio.CancelledError:
            raise
        except ServerClosing:
            if not self.fatal.done():
                self.fatal.set_result((CLOSE_GOING_AWAY, "Server shutting down"))
        except Exception:
            log.exception("websocket sync push failed")
            if not self.fatal.done():
                self.fatal.set_result((CLOSE_INTERNAL, "Internal error"))


__all__ = [
    "CLOSE_GOING_AWAY", "CLOSE_NORMAL", "ServerClosing", "StreamingConfig", "StreamingSync", "WsTransport",
]
