"""Errors raised by the Matrix client layer."""

from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    """The homeserver answered with a Matrix error body (``errcode``/``error``)."""

    def __init__(self, status: int, errcode: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {errcode}: {message}")
        self.status = status
        self.errcode = errcode
        self.message = message
        self.body = body or {}

    @property
    def soft_logout(self) -> bool:
        return self.body.get("soft_logout") is True

    @property
    def retry_after_ms(self) -> int | None:
        value = self.body.get("retry_after_ms")
        return value if isinstance(value, int) else None


class TransportError(Exception):
    """The homeserver could not be reached (connection refused, reset, timed out...)."""


class LoggedOut(Exception):
    """The session is gone (token invalid and cannot be refreshed): log in again."""
