"""How sync batches arrive: long-poll ``GET /sync``, or Parley's WebSocket.

A :class:`SyncSource` yields one sync response per call to :meth:`next_batch`, given the
token the caller has processed. Long-poll ``GET /sync`` is the standard source and works
with every homeserver. A server that lists :data:`WEBSOCKET_SYNC_FEATURE` in ``/versions``
``unstable_features`` also pushes the same bodies over a WebSocket
(:class:`~tui_client.matrix._websocket.WebSocketSync`); :func:`websocket_sync_offered` is
the decision, and :meth:`MatrixClient.sync_forever` does not care which source it reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from enum import Enum
from typing import Any, Protocol

#: The ``unstable_features`` flag a server sets when it offers WebSocket sync.
WEBSOCKET_SYNC_FEATURE = "org.parley.websocket_sync"

SyncRequest = Callable[[str | None, int], Awaitable[dict[str, Any]]]


class ConnectionStatus(Enum):
    """The health of the sync connection, for the status bar."""

    OFFLINE = "offline"
    CONNECTING = "connecting"
    SYNCING = "connected"
    RECONNECTING = "reconnecting"
    LOGGED_OUT = "logged out"


def websocket_sync_offered(versions: Mapping[str, Any]) -> bool:
    """Whether a ``/versions`` body offers Parley's WebSocket sync (flag set to ``true``)."""
    features = versions.get("unstable_features")
    return isinstance(features, Mapping) and features.get(WEBSOCKET_SYNC_FEATURE) is True


class SyncSource(Protocol):
    """Produces successive sync responses, starting after ``since``; ``name`` is for the status bar."""

    name: str

    async def next_batch(self, since: str | None, timeout_ms: int) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class LongPollSync:
    """``GET /_matrix/client/v3/sync`` repeatedly; ``request`` is the client's authed call."""

    name = "long-poll"

    def __init__(self, request: SyncRequest) -> None:
        self._request = request

    async def next_batch(self, since: str | None, timeout_ms: int) -> dict[str, Any]:
        return await self._request(since, timeout_ms)

    async def aclose(self) -> None:
        return None
