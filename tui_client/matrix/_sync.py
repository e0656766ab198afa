"""How sync batches arrive: the seam where a WebSocket transport will plug in.

A :class:`SyncSource` yields one sync response per call to :meth:`next_batch`. Long-poll
``GET /sync`` is the standard source and the only one implemented. Parley's server will
advertise a WebSocket sync in ``/versions`` ``unstable_features`` under
:data:`WEBSOCKET_SYNC_FEATURE`; a ``WebSocketSync`` source will then receive the same
response bodies as frames, and :meth:`MatrixClient.sync_forever` will not change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


class SyncSource(Protocol):
    """Produces successive sync responses, starting after ``since``."""

    async def next_batch(self, since: str | None, timeout_ms: int) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class LongPollSync:
    """``GET /_matrix/client/v3/sync`` repeatedly; ``request`` is the client's authed call."""

    def __init__(self, request: SyncRequest) -> None:
        self._request = request

    async def next_batch(self, since: str | None, timeout_ms: int) -> dict[str, Any]:
        return await self._request(since, timeout_ms)

    async def aclose(self) -> None:
        return None
