"""Test harness: a real PostgreSQL, a real homeserver on loopback, real HTTP.

The database is `TEST_DATABASE_URL` when set, otherwise an embedded
PostgreSQL started once per test session in a temporary folder. Migrations
run once into a template database; every server a test starts gets a fresh
copy of it (CREATE DATABASE ... TEMPLATE), so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio

from homeserver.config import load_config
from homeserver.storage.database import migrate

TEMPLATE_DB = "parley_test_template"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_url() -> Any:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    from homeserver.infra.embedded_pg import EmbeddedPostgres

    folder = Path(tempfile.mkdtemp(prefix="parley-test-pg-"))
    pg = EmbeddedPostgres(folder / "pg")
    try:
        yield pg.start()
    finally:
        pg.stop()
        # A run's cluster holds every test's database (gigabytes): nothing of it is kept.
        shutil.rmtree(folder, ignore_errors=True)


@pytest_asyncio.fixture(scope="session")
async def template_url(pg_url: str) -> str:
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        await admin.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await admin.close()
    conn = await asyncpg.connect(_with_database(pg_url, TEMPLATE_DB))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return pg_url


async def fresh_database(pg_url: str) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    finally:
        await admin.close()
    return _with_database(pg_url, name)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class RunningServer:
    """A homeserver app served by hypercorn on loopback inside the test's event loop."""

    def __init__(self, db_url: str, data_dir: Path, sets: dict[str, Any], listen_hosts: list[str]) -> None:
        self.db_url = db_url
        self.data_dir = data_dir
        self.sets = sets
        self.port = free_port()
        self.listen_hosts = listen_hosts
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.services: Any = None

    def config(self) -> Any:
        extra = {
            "database": {"url": self.db_url, "pool_min": 1, "pool_max": 10},
            "listen": [f"{h}:{self.port}" for h in self.listen_hosts],
            "auth": {"bcrypt_rounds": 4},
        }
        sets = [f"{k}={v}" for k, v in self.sets.items()]
        return load_config(None, sets=sets, data_dir=self.data_dir, extra=extra, environ={})

    async def start(self) -> None:
        from hypercorn.asyncio import serve

        from homeserver.app import build_services, create_app
        from homeserver.server import hypercorn_config
        from homeserver.storage.database import Database

        config = self.config()
        db = await Database.connect(self.db_url, min_size=1, max_size=10)
        self.services = await build_services(config, db)
        app = create_app(self.services)
        self._stop = asyncio.Event()
        hc = hypercorn_config(config)
        hc.graceful_timeout = 2
        self._task = asyncio.create_task(serve(app, hc, shutdown_trigger=self._stop.wait))  # type: ignore[arg-type]
        async with httpx.AsyncClient() as c:
            for _ in range(200):
                try:
                    await c.get(self.base_url + "/_matrix/client/versions")
                    return
                except httpx.TransportError:
                    if self._task.done():
                        self._task.result()
                    await asyncio.sleep(0.02)
        raise RuntimeError("server did not start")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30, **kwargs)


@pytest_asyncio.fixture
async def server_factory(template_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    """Start homeservers with config overrides: `await server_factory({"rate_limits.enabled": False})`."""
    started: list[RunningServer] = []

    async def make(
        sets: dict[str, Any] | None = None, *, db_url: str | None = None, listen_hosts: list[str] | None = None
    ) -> RunningServer:
        url = db_url or await fresh_database(template_url)
        srv = RunningServer(url, tmp_path / f"data{len(started)}", sets or {}, listen_hosts or ["127.0.0.1"])
        await srv.start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        await srv.stop()


@pytest_asyncio.fixture
async def server(server_factory: Any) -> RunningServer:
    return await server_factory({"rate_limits.enabled": False})


@pytest_asyncio.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client() as c:
        yield c


async def register(
    client: httpx.AsyncClient, username: str, password: str = "correct horse", **extra: Any
) -> dict[str, Any]:
    """Register through the real API (dummy auth) and return the login response."""
    body = {"username": username, "password": password, "auth": {"type": "m.login.dummy"}, **extra}
    r = await client.post("/_matrix/client/v3/register", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
