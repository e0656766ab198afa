"""Parley's WebSocket sync (``spec/websocket-sync.md``) as a :class:`SyncSource`.

One socket carries the same bodies ``GET /sync`` returns, pushed by the server. How this
client uses it:

- **Connect** to ``/_matrix/client/unstable/org.parley.websocket_sync`` with the access
  token in the ``Authorization`` header and ``since`` / ``filter`` (the uploaded filter id)
  in the query; the server answers ``authenticated``, then pushes syncs.
- **Flow control**: the server sends the next sync only after an ``ack`` naming the last
  one. We ack when the caller asks for the next batch, i.e. after it has processed the
  previous one, so a busy client slows the server down instead of queueing on it.
- **Resume**: every call names the token the caller has processed; after a lost
  connection the next call reconnects with ``since=<that token>``, and the first sync
  holds exactly what was missed. A sync received but not processed is not acked, so it
  comes again: nothing lost, nothing twice.
- **Keep-alive**: the ``websockets`` library answers the server's protocol pings and sends
  its own every ``ping_interval`` s; a peer silent past ``ping_timeout`` closes the socket,
  which the caller sees as a :class:`TransportError` (and reconnects with backoff).
- **Errors**: an ``error`` frame about the token (``M_UNKNOWN_TOKEN``...) becomes a 401
  :class:`MatrixError` (so the client refreshes or logs out), one about the sync
  parameters at connect (close 4400) a 400; anything else drops the socket and resumes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ._errors import MatrixError, TransportError

WEBSOCKET_SYNC_PATH = "/_matrix/client/unstable/org.parley.websocket_sync"

#: Error codes about who we are; the server closes with 4401 after them.
_AUTH_ERRCODES = frozenset({"M_MISSING_TOKEN", "M_UNKNOWN_TOKEN", "M_USER_LOCKED", "M_USER_DEACTIVATED"})


def websocket_url(homeserver: str) -> str:
    """The WebSocket sync URL of a homeserver base URL (``https`` -> ``wss``)."""
    parts = urlsplit(homeserver.rstrip("/"))
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path + WEBSOCKET_SYNC_PATH, "", ""))


class WebSocketSync:
    """Sync responses pushed over one WebSocket, reconnecting from the caller's token.

    ``access_token`` is asked at every (re)connect, so a refreshed token is used;
    ``on_open`` is called once the server has accepted us (the connection is live even
    when nothing new arrives for a while).
    """

    name = "websocket"

    def __init__(
        self,
        url: str,
        *,
        access_token: Callable[[], str],
        filter_id: str | None = None,
        on_open: Callable[[], None] | None = None,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
    ) -> None:
        self.url = url
        self.access_token = access_token
        self.filter_id = filter_id
        self.on_open = on_open
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._ws: ClientConnection | None = None
        #: the token the server's stream on this socket stands at (its next sync follows it)
        self._position: str | None = None
        #: next_batch of the sync delivered to the caller and not acked yet
        self._unacked: str | None = None
        #: sockets opened so far (1 + reconnects), for tests and the status bar
        self.connections = 0

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def open(self, since: str | None) -> None:
        """Connect and authenticate, the stream starting after ``since``.

        Raises :class:`TransportError` when the socket cannot be opened (no server, or
        something in between that does not speak WebSocket) and :class:`MatrixError`
        when the server refuses us.
        """
        await self.aclose()
        query = {"since": since, "filter": self.filter_id}
        url = self.url + ("?" + urlencode({k: v for k, v in query.items() if v is not None})
                          if any(v is not None for v in query.values()) else "")
        try:
            ws = await connect(
                url,
                additional_headers={"Authorization": f"Bearer {self.access_token()}"},
                open_timeout=self.open_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=2,
                max_size=None,  # an initial sync of many rooms is several MiB
                compression=None,  # off, as the server prefers (memory per idle socket)
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as error:
            raise TransportError(f"websocket: {error or type(error).__name__}") from error
        self._ws = ws
        self._position = since
        self._unacked = None
        self.connections += 1
        try:
            while True:
                frame = await self._receive()
                if frame.get("type") == "authenticated":
                    break
                if frame.get("type") == "error":
                    raise self._error(frame, opening=True)
        except BaseException:
            await self.aclose()
            raise
        if self.on_open is not None:
            self.on_open()

    async def next_batch(self, since: str | None, timeout_ms: int) -> dict[str, Any]:
        """The next sync after ``since`` (``timeout_ms`` does not apply: the server pushes)."""
        if self._ws is None or since != self._position:
            await self.open(since)
        elif self._unacked is not None:
            await self._send({"type": "ack", "next_batch": self._unacked})
            self._unacked = None
        try:
            while True:
                frame = await self._receive()
                kind = frame.get("type")
                if kind == "sync" and isinstance(frame.get("body"), dict):
                    body: dict[str, Any] = frame["body"]
                    token = body.get("next_batch")
                    if not isinstance(token, str):
                        raise TransportError("websocket: a sync without next_batch")
                    self._position = self._unacked = token
                    return body
                if kind == "error" and "id" not in frame:
                    raise self._error(frame, opening=False)
                # pong, responses to requests we never make, unknown kinds: nothing to do
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def drop(self) -> None:
        """Close the socket abruptly, as a network failure would (the next call resumes)."""
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.transport.abort()
            with contextlib.suppress(Exception):
                await ws.wait_closed()

    # -- frames ---------------------------------------------------------------------------------

    async def _send(self, frame: dict[str, Any]) -> None:
        assert self._ws is not None
        try:
            await self._ws.send(json.dumps(frame))
        except ConnectionClosed as closed:
            raise TransportError(f"websocket closed ({_reason(closed)})") from closed

    async def _receive(self) -> dict[str, Any]:
        assert self._ws is not None
        try:
            raw = await self._ws.recv()
        except ConnectionClosed as closed:
            raise TransportError(f"websocket closed ({_reason(closed)})") from closed
        try:
            frame = json.loads(raw)
        except ValueError as error:
            raise TransportError("websocket: a frame that is not JSON") from error
        if not isinstance(frame, dict):
            raise TransportError("websocket: a frame that is not an object")
        return frame

    def _error(self, frame: dict[str, Any], *, opening: bool) -> Exception:
        errcode = str(frame.get("errcode", "M_UNKNOWN"))
        message = str(frame.get("error", errcode))
        body = {key: value for key, value in frame.items() if key != "type"}
        if errcode in _AUTH_ERRCODES:
            return MatrixError(401, errcode, message, body)
        if opening:  # since / filter / set_presence refused (close 4400)
            return MatrixError(400, errcode, message, body)
        return TransportError(f"websocket: the server refused a frame ({errcode}: {message})")


def _reason(closed: ConnectionClosed) -> str:
    frame = closed.rcvd or closed.sent
    if frame is None:
        return "no close frame"
    return f"{frame.code} {frame.reason}".strip()
