"""permessage-deflate on WebSockets: off unless configured, decided per connection.

hypercorn (checked: 0.17) always offers wsproto's PerMessageDeflate and accepts it whenever
the client asks, with no configuration switch. An idle compressed socket costs about
4x the memory of a plain one (see DESIGN.md, "Measured here"), so we want it off by
default. The only per-connection input hypercorn's handshake takes from the app is the
extra headers of the ASGI `websocket.accept` message, so the app marks a connection
that may compress with a private header, and `install()` wraps hypercorn's
`Handshake.accept` to drop the client's extension offer unless the marker is present
(the marker itself is removed, it never reaches the client).

If a future hypercorn changes `Handshake`, `install()` logs a warning and leaves
hypercorn alone (compression then follows hypercorn's default); the integration test
`test_ws_compression_off_by_default` notices.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

MARKER = b"x-parley-permessage-deflate"
_installed = False


def accept_headers(enabled: bool) -> dict[str, str]:
    """Headers to pass to `websocket.accept()`."""
    return {MARKER.decode(): "on"} if enabled else {}


def install() -> bool:
    global _installed
    if _installed:
        return True
    try:
        from hypercorn.protocol.ws_stream import Handshake
    except ImportError:  # pragma: no cover
        log.warning("hypercorn Handshake not found: permessage-deflate follows hypercorn's default")
        return False
    original = getattr(Handshake, "accept", None)
    if original is None or not hasattr(Handshake, "__init__"):  # pragma: no cover
        log.warning("hypercorn Handshake.accept not found: permessage-deflate follows hypercorn's default")
        return False

    def accept(self: Any, subprotocol: Any, additional_headers: Any) -> Any:
        headers = []
        allow = False
        for name, value in additional_headers:
            if name.lower() == MARKER:
                allow = value == b"on"
                continue
            headers.append((name, value))
        if not allow:
            self.extensions = None
        return original(self, subprotocol, headers)

    Handshake.accept = accept  # type: ignore[method-assign]
    _installed = True
    return True
