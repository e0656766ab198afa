"""The bus: after a commit, a writer publishes (stream, position, users, rooms); every process hears it.

The in-process bus calls its subscribers directly. A Redis bus (for several
worker processes) will publish the same small messages — positions, never
payloads — on a pub/sub channel; the code above the bus does not know which.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamUpdate:
    stream: str  # one of homeserver.core.tokens.STREAMS
    position: int
    users: frozenset[str] = field(default_factory=frozenset)
    rooms: frozenset[str] = field(default_factory=frozenset)


Subscriber = Callable[[StreamUpdate], None]


class LocalBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    async def publish(self, update: StreamUpdate) -> None:
        for fn in self._subscribers:
            try:
                fn(update)
            except Exception:
                log.exception("bus subscriber failed")
