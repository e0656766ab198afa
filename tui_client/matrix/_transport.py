"""The I/O seam of the client: one request in, one response out.

:class:`MatrixClient` never touches the network itself; it hands an :class:`ApiRequest`
to a :class:`Transport`. :class:`HttpxTransport` is the real one. A test can pass any
object with the same two methods to drive the client (and so the whole app) from
recorded responses without sockets.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from ._errors import TransportError


@dataclass(frozen=True)
class ApiRequest:
    """One client-server API call. ``path`` starts with ``/_matrix/``."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    content_type: str | None = None
    access_token: str | None = None
    timeout: float | None = 30.0


@dataclass(frozen=True)
class ApiResponse:
    """The status, headers and raw body of a response."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return jsonlib.loads(self.body) if self.body else {}


class Transport(Protocol):
    """Carries requests to a homeserver."""

    async def send(self, request: ApiRequest) -> ApiResponse: ...

    async def aclose(self) -> None: ...


class HttpxTransport:
    """The real transport: HTTP/1.1 keep-alive over one :class:`httpx.AsyncClient`."""

    def __init__(self, base_url: str, client: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0))

    async def send(self, request: ApiRequest) -> ApiResponse:
        headers = {}
        if request.access_token is not None:
            headers["Authorization"] = f"Bearer {request.access_token}"
        if request.content_type is not None:
            headers["Content-Type"] = request.content_type
        try:
            response = await self._client.request(
                request.method,
                self.base_url + request.path,
                params=dict(request.params) or None,
                json=request.json if request.content is None else None,
                content=request.content,
                headers=headers,
                timeout=request.timeout,
            )
        except httpx.TransportError as error:
            raise TransportError(str(error) or type(error).__name__) from error
        return ApiResponse(response.status_code, response.content, dict(response.headers))

    async def aclose(self) -> None:
        await self._client.aclose()
