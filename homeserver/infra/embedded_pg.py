"""The embedded PostgreSQL (the `pgserver` package) used when no database.url is configured."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DATABASE_NAME = "homeserver"


class EmbeddedPostgres:
    """Starts (or attaches to) a PostgreSQL cluster kept in a folder of the data directory."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    def start(self) -> str:
        """Start the cluster if needed and return a URL for our database in it."""
        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        exists = self._server.psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';"
        )
        if "1 row" not in exists:
            self._server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        uri: str = self._server.get_uri()
        # pgserver gives postgresql://postgres:@/postgres?host=/socket/dir
        base, _, query = uri.partition("?")
        base = base.rsplit("/", 1)[0] + "/" + DATABASE_NAME
        return f"{base}?{query}" if query else base

    def stop(self) -> None:
        if self._server is not None:
            log.info("stopping the embedded PostgreSQL")
            self._server.cleanup()
            self._server = None

