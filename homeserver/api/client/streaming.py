"""Client API: sync pushed over a WebSocket (org.parley.websocket_sync) and over SSE (MSC2108).

Route code only: read the handshake, call services/streaming.py. The protocol is in
spec/websocket-sync.md; the connection state machine in core/ws_session.py.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Blueprint, Response, request, websocket

from homeserver import errors
from homeserver.api.client.account import UNSTABLE_FEATURES
from homeserver.api.http import access_token_from, authenticated, hs
from homeserver.core.ws_session import CLOSE_AUTH
from homeserver.infra import ws_compression
from homeserver.services.auth import Requester

WEBSOCKET_FEATURE = "org.parley.websocket_sync"
SSE_FEATURE = "org.matrix.msc2108"

WEBSOCKET_PATH = "/_matrix/client/unstable/org.parley.websocket_sync"
SSE_PATHS = ["/_matrix/client/unstable/org.matrix.msc2108/sync/sse"]

UNSTABLE_FEATURES[WEBSOCKET_FEATURE] = True
UNSTABLE_FEATURES[SSE_FEATURE] = True

streaming = Blueprint("client_streaming", __name__)


class _QuartWs:
    async def receive(self) -> str | bytes:
        return await websocket.receive()

    async def send(self, text: str) -> None:
        await websocket.send(text)

    async def close(self, code: int, reason: str) -> None:
        await websocket.close(code, reason)


@streaming.websocket(WEBSOCKET_PATH)
async def websocket_sync() -> Any:
    services = hs()
    compress = bool(services.config.get("http.websocket_compression", False))
    await websocket.accept(headers=ws_compression.accept_headers(compress))
    transport = _QuartWs()
    try:
        token = access_token_from(websocket.headers, websocket.args)
    except errors.MatrixError as e:
        await transport.send(json.dumps({"type": "error", **e.body()}))
        await transport.close(CLOSE_AUTH, e.error)
        return
    await services.streaming.run_websocket(transport, token, dict(websocket.args))


@streaming.route(SSE_PATHS[0], methods=["GET"])
@authenticated
async def sse_sync(who: Requester) -> Any:
    services = hs()
    args: dict[str, str] = dict(request.args)
    # MSC2108: the resume token is the Last-Event-ID header; `since` is accepted too, for
    # EventSource clients whose first connection cannot set headers.
    last_event_id = request.headers.get("Last-Event-ID")
    if last_event_id:
        args["since"] = last_event_id
    heartbeat = services.streaming.heartbeat_interval(args.get("heartbeat_interval"))
    params = await services.sync.parse_params(who.user_id, args)
    response = Response(
        services.streaming.sse_events(who, params, heartbeat),
        status=200,
        content_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None
    return response
