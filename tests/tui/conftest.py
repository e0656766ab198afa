"""Shared helpers for the TUI tests: an app wired to recorded homeserver data."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tui_client.app import ParleyApp
from tui_client.matrix import MatrixClient, Session
from tui_client.widgets.inline_image import ImageProtocol

from .recorded import SESSION, RecordedTransport
from .sync_data import T0


def make_app(syncs: list[dict[str, Any]] | None = None, session: Session | None = SESSION,
             transport: RecordedTransport | None = None,
             cache_root: Path | None = None,
             image_protocol: ImageProtocol = "halfcell") -> tuple[ParleyApp, RecordedTransport]:
    """The real app and client layer, on a recorded transport, in UTC with a fixed clock."""
    transport = transport or RecordedTransport(syncs)
    client = MatrixClient(transport, "http://hs.test", session)
    # Half-cells whatever terminal runs the tests, so pictures (and snapshots) never vary.
    app = ParleyApp(client, tz=UTC, clock=lambda: T0 / 1000 + 300, transport_factory=lambda _url: transport,
                    cache_root=cache_root, image_protocol=image_protocol)
    return app, transport


async def settle(pilot: Pilot, batch: str | None = None) -> None:
    """Wait until the app has applied sync ``batch`` (any, if None) and redrawn."""
    app: ParleyApp = pilot.app  # type: ignore[assignment]
    for _ in range(200):
        if app.model.next_batch is not None and (batch is None or app.model.next_batch == batch):
            break
        await pilot.pause(0.01)
    else:
        raise AssertionError(f"sync {batch} never applied (at {app.model.next_batch})")
    await pilot.pause()
    for composer in app.screen.query("Composer"):
        composer.cursor_blink = False  # type: ignore[attr-defined]
    await pilot.pause()
