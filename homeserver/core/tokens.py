"""Sync and pagination tokens.

A sync token carries one position per stream, in the fixed order of
:data:`STREAMS`: ``s<events>_<typing>_<receipts>_<account_data>_<to_device>_<presence>_<device_lists>``.
A pagination token for ``/messages`` is either a sync token (only its events
position counts: a point on the stream) or ``t<depth>-<stream>``, a point in
a room's topological order. Both are opaque to clients.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

STREAMS = ("events", "typing", "receipts", "account_data", "to_device", "presence", "device_lists")


class TokenError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SyncToken:
    events: int = 0
    typing: int = 0
    receipts: int = 0
    account_data: int = 0
    to_device: int = 0
    presence: int = 0
    device_lists: int = 0

    def encode(self) -> str:
        return (f"s{self.events}_{self.typing}_{self.receipts}_{self.account_data}_{self.to_device}"
                f"_{self.presence}_{self.device_lists}")

    @classmethod
    def decode(cls, text: str) -> SyncToken:
        if not text.startswith("s"):
            raise TokenError("not a sync token")
        parts = text[1:].split("_")
        if not parts or len(parts) > len(STREAMS):
            raise TokenError("malformed sync token")
        # Digits only: int() alone would also take signs, spaces and underscores.
        if not all(p.isdigit() and p.isascii() for p in parts):
            raise TokenError("malformed sync token")
        # Older/shorter tokens: missing streams start at 0.
        return cls(*(int(p) for p in parts))

    def advance(self, other: SyncToken) -> SyncToken:
        """The position-wise maximum."""
        if other == self:
            return self
        return SyncToken(max(self.events, other.events), max(self.typing, other.typing),
                         max(self.receipts, other.receipts), max(self.account_data, other.account_data),
                         max(self.to_device, other.to_device), max(self.presence, other.presence),
                         max(self.device_lists, other.device_lists))

    def positions(self) -> tuple[int, ...]:
        """The positions in the order of STREAMS."""
        return (self.events, self.typing, self.receipts, self.account_data, self.to_device, self.presence,
                self.device_lists)

    def with_stream(self, name: str, position: int) -> SyncToken:
        return replace(self, **{name: position})

    def is_after(self, other: SyncToken) -> bool:
        """True if any stream is past `other`."""
        return any(a > b for a, b in zip(self.positions(), other.positions(), strict=True))


@dataclass(frozen=True, slots=True)
class RoomPosition:
    """A point in a room's timeline for pagination: (depth, stream) or a bare stream position."""

    stream: int
    topological: int | None = None

    def encode(self) -> str:
        if self.topological is None:
            return f"s{self.stream}"
        return f"t{self.topological}-{self.stream}"

    @classmethod
    def decode(cls, text: str) -> RoomPosition:
        try:
            if text.startswith("t"):
                topo, _, stream = text[1:].partition("-")
                return cls(stream=int(stream), topological=int(topo))
            if text.startswith("s"):
                return cls(stream=SyncToken.decode(text).events)
        except (ValueError, TokenError):
            pass
        raise TokenError("malformed pagination token")
