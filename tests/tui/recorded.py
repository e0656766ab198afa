"""A transport that answers from recorded homeserver responses, for driving the client.

This is the test side of :class:`tui_client.matrix.Transport`: it records every request
the client layer makes, answers ``/sync`` from a queue of sync responses (waiting when
the queue is empty, as a long-poll would) and answers other calls from a table of
canned bodies. It stands in for *a* homeserver's wire data, not for any of our code.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

from tui_client.matrix import ApiRequest, ApiResponse, Session

Responder = Callable[[ApiRequest], ApiResponse | dict[str, Any]]

SESSION = Session("http://hs.test", "@me:example.org", "token-1", "DEVICE", "refresh-1")


class RecordedTransport:
    """Answers requests from recorded data and remembers what was asked."""

    def __init__(self, syncs: list[dict[str, Any]] | None = None) -> None:
        self.requests: list[ApiRequest] = []
        self.syncs: asyncio.Queue[dict[str, Any] | ApiResponse | Exception] = asyncio.Queue()
        for response in syncs or []:
            self.syncs.put_nowait(response)
        self.routes: list[tuple[str, re.Pattern[str], Responder]] = []
        self._event_counter = 0
        self.closed = False
        self.route("POST", r"/_matrix/client/v3/user/[^/]+/filter", {"filter_id": "f1"})
        self.route("GET", r"/_matrix/client/versions", {"versions": ["v1.19"], "unstable_features": {}})
        self.route("PUT", r"/_matrix/client/v3/rooms/[^/]+/(send|redact)/.*", self._new_event_id)
        self.route("PUT", r"/_matrix/client/v3/rooms/[^/]+/typing/.*", {})
        self.route("POST", r"/_matrix/client/v3/rooms/[^/]+/(read_markers|receipt/.*)", {})

    def route(self, method: str, path_pattern: str, answer: Responder | dict[str, Any] | ApiResponse) -> None:
        """Answer ``method path`` (regex, full match) with a body, a response or a function.

        Later routes take precedence, so a test can override the defaults.
        """
        responder: Responder = answer if callable(answer) else (lambda _request, _a=answer: _a)
        self.routes.insert(0, (method, re.compile(path_pattern), responder))

    def push_sync(self, response: dict[str, Any] | ApiResponse | Exception) -> None:
        self.syncs.put_nowait(response)

    def _new_event_id(self, _request: ApiRequest) -> dict[str, Any]:
        self._event_counter += 1
        return {"event_id": f"$sent{self._event_counter}"}

    def sent(self, kind: str = "send") -> list[ApiRequest]:
        """Requests whose path contains ``/{kind}/`` (e.g. the messages sent)."""
        return [r for r in self.requests if f"/{kind}/" in r.path]

    async def send(self, request: ApiRequest) -> ApiResponse:
        self.requests.append(request)
        if request.method == "GET" and request.path == "/_matrix/client/v3/sync":
            answer: Any = await self.syncs.get()
        else:
            for method, pattern, responder in self.routes:
                if method == request.method and pattern.fullmatch(request.path):
                    answer = responder(request)
                    break
            else:
                answer = ApiResponse(404, b'{"errcode":"M_UNRECOGNIZED","error":"no recording"}')
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, ApiResponse):
            return answer
        return ApiResponse(200, json.dumps(answer).encode(), {"content-type": "application/json"})

    async def aclose(self) -> None:
        self.closed = True


def error(status: int, errcode: str, **extra: Any) -> ApiResponse:
    return ApiResponse(status, json.dumps({"errcode": errcode, "error": errcode, **extra}).encode())
