"""One query for many concurrent lookups of the same kind.

A message to a 300-member room wakes 300 syncs at once, and each asks, say,
for its unread counts in that room. A `BatchLoader` gathers the keys asked for
during one turn of the event loop and fetches them with one call, so those 300
questions cost one round trip instead of 300. Nothing is cached: every answer
is as fresh as the query that produced it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BatchLoader(Generic[K, V]):
    def __init__(self, fetch: Callable[[Sequence[K]], Awaitable[dict[K, V]]], default: Callable[[], V],
                 max_batch: int = 1000) -> None:
        self._fetch = fetch
        self._default = default
        self._max_batch = max_batch
        self._pending: dict[K, list[asyncio.Future[V]]] = {}
        self._scheduled = False

    async def load(self, key: K) -> V:
        return (await self.load_many([key]))[0]

    async def load_many(self, keys: Sequence[K]) -> list[V]:
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future[V]] = []
        for key in keys:
            fut: asyncio.Future[V] = loop.create_future()
            self._pending.setdefault(key, []).append(fut)
            futs.append(fut)
        if futs and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._dispatch)
        return [await fut for fut in futs]

    def _dispatch(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        keys = list(pending)
        for i in range(0, len(keys), self._max_batch):
            chunk = keys[i:i + self._max_batch]
            asyncio.ensure_future(self._run(chunk, {k: pending[k] for k in chunk}))

    async def _run(self, keys: list[K], waiters: dict[K, list[asyncio.Future[V]]]) -> None:
        try:
            found = await self._fetch(keys)
        except BaseException as e:  # every waiter sees the failure, as a lone query would
            for futs in waiters.values():
                for fut in futs:
                    if not fut.done():
                        fut.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        for k, futs in waiters.items():
            value = found.get(k)
            for fut in futs:
                if not fut.done():
                    fut.set_result(value if value is not None else self._default())
