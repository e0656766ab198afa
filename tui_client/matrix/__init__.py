"""The TUI's Matrix client layer: the only code that speaks the client-server API.

Widgets and screens use these names and nothing below them.
"""

from ._client import SYNC_FILTER, MatrixClient, SearchPage, Session, parse_mxc
from ._content import edit_content, message_content, reaction_content, reply_content
from ._errors import LoggedOut, MatrixError, TransportError
from ._sync import WEBSOCKET_SYNC_FEATURE, ConnectionStatus, LongPollSync, SyncSource, websocket_sync_offered
from ._transport import ApiRequest, ApiResponse, HttpxTransport, Transport
from ._websocket import WebSocketSync

__all__ = [
    "SYNC_FILTER",
    "WEBSOCKET_SYNC_FEATURE",
    "ApiRequest",
    "ApiResponse",
    "ConnectionStatus",
    "HttpxTransport",
    "LoggedOut",
    "LongPollSync",
    "MatrixClient",
    "MatrixError",
    "SearchPage",
    "Session",
    "SyncSource",
    "Transport",
    "TransportError",
    "WebSocketSync",
    "edit_content",
    "message_content",
    "parse_mxc",
    "reaction_content",
    "reply_content",
    "websocket_sync_offered",
]
