"""Migrations: applied once, in order, even when two processes start at the same moment."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from homeserver.storage.database import list_migrations, migrate
from tests.conftest import _with_database


async def test_concurrent_starters_never_both_migrate(pg_url: str) -> None:
    name = "mig_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = _with_database(pg_url, name)
    conns = [await asyncpg.connect(url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        expected = [n for n, _ in list_migrations()]
        # Exactly one starter applied everything; the others found nothing left to do.
        assert sorted(len(r) for r in results) == [0, 0, len(expected)]
        assert next(r for r in results if r) == expected
        rows = await conns[0].fetch("SELECT name FROM schema_migrations ORDER BY name")
        assert [r["name"] for r in rows] == expected
        # A later start applies nothing.
        assert await migrate(conns[0]) == []
    finally:
        for c in conns:
            await c.close()
