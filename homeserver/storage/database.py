"""The PostgreSQL connection pool and the schema migrations.

Migrations are the files ``sql/NNNN_name.sql`` applied in name order, each in
its own transaction, recorded in ``schema_migrations``. A session-level
advisory lock makes concurrent starters wait for one another, so two
processes starting at once never both migrate.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

MIGRATION_LOCK_ID = 0x5061726C  # "Parl"


def migrations_dir() -> Path:
    """`sql/` beside the package in a checkout; the packaged copy otherwise."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "sql", here / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("cannot find the sql/ migrations folder")


def list_migrations(folder: Path | None = None) -> list[tuple[str, str]]:
    folder = folder or migrations_dir()
    return [(p.stem, p.read_text()) for p in sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.sql"))]


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Connection reset on release: nothing to do.

    asyncpg's default reset costs a round trip per release (unlock advisory
    locks, close cursors, unlisten, reset settings). Our code holds no session
    state past a release: transactions end with their block, advisory locks are
    transaction-scoped (the migration lock is released explicitly), and we never
    LISTEN or SET. Only a connection released mid-transaction (a cancelled
    request) gets the full reset.
    """
    if conn.is_in_transaction():
        await conn.reset()


async def migrate(conn: asyncpg.Connection, folder: Path | None = None) -> list[str]:
    """Apply every migration not yet applied; returns the names applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name TEXT PRIMARY KEY, applied_ts BIGINT NOT NULL)"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for name, sql in list_migrations(folder):
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (name, applied_ts) VALUES ($1, $2)",
                    name,
                    int(time.time() * 1000),
                )
            log.info("applied migration %s", name)
            applied_now.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied_now


class Database:
    """The asyncpg pool. Storage modules borrow connections from it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._after_commit: dict[Any, list[Callable[[], None]]] = {}

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 2, max_size: int = 20) -> Database:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_keep_session,
            # Statements are prepared per connection; the cache keeps hot ones.
            statement_cache_size=512,
        )
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            hooks: list[Callable[[], None]] = []
            self._after_commit[conn] = hooks
            try:
                async with conn.transaction():
                    yield conn
            finally:
                del self._after_commit[conn]
            for hook in hooks:
                hook()

    def after_commit(self, conn: Any, hook: Callable[[], None]) -> None:
        """Run `hook` once `conn`'s transaction (from `transaction()`) has committed; now if none is open."""
        hooks = self._after_commit.get(conn)
        if hooks is None:
            hook()
        else:
            hooks.append(hook)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            yield conn

    async def migrate(self) -> list[str]:
        async with self.pool.acquire() as conn:
            return await migrate(conn)

    async def ping(self) -> bool:
        try:
            async with self.pool.acquire(timeout=2) as conn:
                return await conn.fetchval("SELECT 1") == 1
        except Exception:  # noqa: BLE001 - any failure means "not healthy"
            return False

    def pool_stats(self) -> dict[str, int]:
        return {
            "size": self.pool.get_size(),
            "idle": self.pool.get_idle_size(),
            "max": self.pool.get_max_size(),
        }
