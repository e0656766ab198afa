"""The TUI's sync transports against a real homeserver on loopback: WebSocket when offered,
resume after a lost socket, long-poll when told to or when a proxy refuses WebSockets."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

import httpx
import pytest_asyncio
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from tests.conftest import auth_header, free_port, register
from tui_client.app import ParleyApp
from tui_client.matrix import (
    ConnectionStatus,
    HttpxTransport,
    MatrixClient,
    Session,
    WebSocketSync,
    websocket_sync_offered,
)
from tui_client.model import ClientState
from tui_client.screens import MainScreen
from tui_client.widgets import StatusBar

V3 = "/_matrix/client/v3"


@pytest_asyncio.fixture
async def server(server_factory: Any) -> Any:
    """The homeserver without protocol pings: hypercorn 0.18 keeps a closed WebSocket's ping
    task sleeping for up to one ping interval, which holds the server's shutdown that long.
    (The client still pings; keep-alive is not what these tests are about.)"""
    return await server_factory({"rate_limits.enabled": False, "http.websocket_ping_interval_s": 0})


async def eventually(check: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Pair:
    """Alice (the client under test) and Bob (a script) in one room."""

    def __init__(self, base_url: str, alice: dict[str, Any], bob: dict[str, Any], room: str) -> None:
        self.base_url, self.alice, self.bob, self.room = base_url, alice, bob, room

    def session(self) -> Session:
        return Session(self.base_url, self.alice["user_id"], self.alice["access_token"], self.alice["device_id"])

    async def send(self, http: httpx.AsyncClient, body: str) -> str:
        r = await http.put(f"{V3}/rooms/{self.room}/send/m.room.message/{random.getrandbits(48)}",
                           headers=auth_header(self.bob["access_token"]), json={"msgtype": "m.text", "body": body})
        assert r.status_code == 200, r.text
        return str(r.json()["event_id"])


async def make_pair(http: httpx.AsyncClient, base_url: str) -> Pair:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    room = (await http.post(f"{V3}/createRoom", headers=auth_header(bob["access_token"]),
                            json={"name": "Wire", "invite": [alice["user_id"]]})).json()["room_id"]
    r = await http.post(f"{V3}/join/{room}", headers=auth_header(alice["access_token"]), json={})
    assert r.status_code == 200, r.text
    return Pair(base_url, alice, bob, room)


class Recorder:
    """Feeds syncs to a model and notes every timeline event id each sync carried."""

    def __init__(self, user_id: str, room: str) -> None:
        self.model = ClientState(user_id)
        self.room = room
        self.seen: list[str] = []

    def __call__(self, body: dict[str, Any]) -> None:
        events = body.get("rooms", {}).get("join", {}).get(self.room, {}).get("timeline", {}).get("events", [])
        self.seen += [e["event_id"] for e in events if e.get("type") == "m.room.message"]
        self.model.apply_sync(body)


def http_paths() -> tuple[httpx.AsyncClient, list[str]]:
    """An httpx client that notes the path of every request it sends."""
    paths: list[str] = []

    async def note(request: httpx.Request) -> None:
        paths.append(request.url.path)

    return httpx.AsyncClient(timeout=60, event_hooks={"request": [note]}), paths


async def test_versions_offer_the_websocket_and_the_client_syncs_over_it(server: Any) -> None:
    async with server.client() as http:
        versions = (await http.get("/_matrix/client/versions")).json()
        assert websocket_sync_offered(versions)
        without = {**versions, "unstable_features": {
            k: v for k, v in versions["unstable_features"].items() if k != "org.parley.websocket_sync"}}
        assert not websocket_sync_offered(without)
        assert not websocket_sync_offered({**versions, "unstable_features": {"org.parley.websocket_sync": False}})

        pair = await make_pair(http, server.base_url)
        hx, paths = http_paths()
        client = MatrixClient(HttpxTransport(server.base_url, hx), server.base_url, pair.session())
        record = Recorder(pair.alice["user_id"], pair.room)
        task = asyncio.create_task(client.sync_forever(record))
        try:
            await eventually(lambda: pair.room in record.model.rooms, "the room over the websocket")
            assert client.sync_transport == "websocket" and client.status is ConnectionStatus.SYNCING
            event_id = await pair.send(http, "pushed to you")
            await eventually(lambda: record.model.rooms[pair.room].event(event_id), "the message")
            assert f"{V3}/sync" not in paths  # every sync came over the socket
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.transport.aclose()


async def test_a_lost_socket_resumes_from_the_last_token_losing_and_repeating_nothing(server: Any) -> None:
    async with server.client() as http:
        pair = await make_pair(http, server.base_url)
        gate = asyncio.Event()
        backoffs: list[float] = []

        async def held_sleep(delay: float) -> None:
            backoffs.append(delay)
            await gate.wait()  # the test decides when the client reconnects

        client = MatrixClient(HttpxTransport(server.base_url), server.base_url, pair.session(), sleep=held_sleep)
        source = await client.choose_sync_source(None)
        assert isinstance(source, WebSocketSync)
        record = Recorder(pair.alice["user_id"], pair.room)
        task = asyncio.create_task(client.sync_forever(record, source=source))
        try:
            await eventually(lambda: pair.room in record.model.rooms, "the first sync")
            sent = [await pair.send(http, f"before {i}") for i in range(5)]
            await eventually(lambda: all(record.model.rooms[pair.room].event(e) for e in sent), "the first five")

            await source.drop()  # the network goes away under the client
            await eventually(lambda: client.status is ConnectionStatus.RECONNECTING, "reconnecting")
            sent += [await pair.send(http, f"while away {i}") for i in range(5)]
            gate.set()
            await eventually(lambda: all(record.model.rooms[pair.room].event(e) for e in sent), "the missed five")
            sent += [await pair.send(http, f"after {i}") for i in range(5)]
            await eventually(lambda: all(record.model.rooms[pair.room].event(e) for e in sent), "the last five")

            assert source.connections == 2 and backoffs == [1.0]
            assert record.seen == sent  # every message once, in order, across the reconnect
            assert client.status is ConnectionStatus.SYNCING
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.transport.aclose()

        # A sync received but not processed is not acknowledged: asking again from the older
        # token (what a client that crashed mid-way does) brings its events again.
        client = MatrixClient(HttpxTransport(server.base_url), server.base_url, pair.session())
        probe = await client.choose_sync_source(None)
        assert isinstance(probe, WebSocketSync)
        first = await probe.next_batch(None, 0)
        token = first["next_batch"]
        late = await pair.send(http, "received once, processed never")
        body = await probe.next_batch(token, 0)
        assert late in str(body)
        again = await probe.next_batch(token, 0)  # the caller never got past `token`
        assert late in str(again) and probe.connections == 2
        await probe.aclose()
        await client.transport.aclose()


async def test_reconnects_after_the_server_restarts(server: Any) -> None:
    async with server.client() as http:
        pair = await make_pair(http, server.base_url)
    statuses: list[ConnectionStatus] = []
    client = MatrixClient(HttpxTransport(server.base_url), server.base_url, pair.session(),
                          sleep=lambda _delay: asyncio.sleep(0.1))
    client.add_status_listener(statuses.append)
    record = Recorder(pair.alice["user_id"], pair.room)
    task = asyncio.create_task(client.sync_forever(record))
    try:
        await eventually(lambda: pair.room in record.model.rooms, "the first sync")
        await server.stop()
        await eventually(lambda: client.status is ConnectionStatus.RECONNECTING, "reconnecting")
        await server.start()  # same port, same database
        async with server.client() as http:
            event_id = await pair.send(http, "back again")
        await eventually(lambda: record.model.rooms[pair.room].event(event_id), "the message after the restart")
        assert client.sync_transport == "websocket"
        assert statuses[-1] is ConnectionStatus.SYNCING and ConnectionStatus.RECONNECTING in statuses
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.transport.aclose()


async def test_long_poll_when_told_to(server: Any) -> None:
    async with server.client() as http:
        pair = await make_pair(http, server.base_url)
        hx, paths = http_paths()
        client = MatrixClient(HttpxTransport(server.base_url, hx), server.base_url, pair.session(),
                              use_websocket=False)
        record = Recorder(pair.alice["user_id"], pair.room)
        task = asyncio.create_task(client.sync_forever(record))
        try:
            event_id = await pair.send(http, "polled")
            await eventually(lambda: pair.room in record.model.rooms and record.model.rooms[pair.room].event(event_id),
                             "the message by long-poll")
            assert client.sync_transport == "long-poll" and f"{V3}/sync" in paths
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.transport.aclose()


# -- a reverse proxy that does not pass WebSockets -------------------------------------------------

ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]


def http_only_proxy(upstream: str) -> Callable[[dict[str, Any], ASGIReceive, ASGISend], Awaitable[None]]:
    """An ASGI app forwarding plain HTTP to ``upstream`` and refusing every WebSocket upgrade,
    as a reverse proxy without WebSocket support does."""
    forward = httpx.AsyncClient(base_url=upstream, timeout=120)

    async def app(scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await forward.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})  # hypercorn answers the handshake 403
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k.lower() not in (b"host", b"connection")]
        answer = await forward.request(scope["method"], scope["path"], params=scope["query_string"].decode(),
                                       headers=headers, content=body)
        await send({"type": "http.response.start", "status": answer.status_code,
                    "headers": [(k.encode(), v.encode()) for k, v in answer.headers.items()
                                if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                                     "content-encoding")]})
        await send({"type": "http.response.body", "body": answer.content})

    return app


async def test_falls_back_to_long_poll_when_a_proxy_refuses_websockets(server: Any) -> None:
    port = free_port()
    config = HypercornConfig()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.graceful_timeout = 0.2  # a forwarded long-poll may still be waiting upstream
    stop = asyncio.Event()
    proxy = asyncio.create_task(serve(http_only_proxy(server.base_url), config,  # type: ignore[arg-type]
                                      shutdown_trigger=stop.wait))
    proxied = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=proxied, timeout=30) as http:
            versions: dict[str, Any] = {}
            for _ in range(250):
                try:
                    versions = (await http.get("/_matrix/client/versions")).json()
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.02)
            assert websocket_sync_offered(versions)  # the server offers it; the proxy will not carry it
            pair = await make_pair(http, proxied)
            client = MatrixClient(HttpxTransport(proxied), proxied, pair.session())
            record = Recorder(pair.alice["user_id"], pair.room)
            task = asyncio.create_task(client.sync_forever(record))
            try:
                event_id = await pair.send(http, "through the proxy")
                await eventually(lambda: pair.room in record.model.rooms
                                 and record.model.rooms[pair.room].event(event_id), "the message by long-poll")
                assert client.sync_transport == "long-poll"
                assert client.websocket_fallback_reason and "403" in client.websocket_fallback_reason
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await client.transport.aclose()
    finally:
        stop.set()
        await proxy


async def test_the_tui_shows_it_is_on_the_websocket(server: Any) -> None:
    async with server.client() as http:
        pair = await make_pair(http, server.base_url)
        client = MatrixClient(HttpxTransport(server.base_url), server.base_url, pair.session())
        app = ParleyApp(client, tz=UTC, transport_factory=HttpxTransport)
        async with app.run_test(size=(100, 30)) as pilot:
            await eventually(lambda: pair.room in app.model.rooms, "the room in the TUI")
            await pilot.pause()
            assert isinstance(app.screen, MainScreen)
            assert "connected · websocket" in str(app.screen.query_one(StatusBar).render())
            event_id = await pair.send(http, "live")
            await eventually(lambda: app.model.rooms[pair.room].event(event_id), "the message in the TUI")


async def test_an_expired_token_is_refreshed_and_the_socket_reopened(server_factory: Any) -> None:
    server = await server_factory({"rate_limits.enabled": False, "auth.access_token_lifetime_ms": 1500,
                                   "http.websocket_ping_interval_s": 0})
    async with server.client() as http:
        pair = await make_pair(http, server.base_url)
        sessions: list[Session | None] = []
        client = MatrixClient(HttpxTransport(server.base_url), server.base_url, on_session_changed=sessions.append)
        await client.login_password("alice", "correct horse")
        await client.ensure_filter()
        first_token = client.session.access_token if client.session else ""
        await asyncio.sleep(1.7)  # the access token expires; the socket is the first to notice
        record = Recorder(pair.alice["user_id"], pair.room)
        task = asyncio.create_task(client.sync_forever(record))
        try:
            event_id = await pair.send(http, "after the refresh")
            await eventually(lambda: pair.room in record.model.rooms
                             and record.model.rooms[pair.room].event(event_id), "the message")
            assert client.sync_transport == "websocket"
            assert client.session is not None and client.session.access_token != first_token
            assert len(sessions) == 2  # the login, then the refresh
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.transport.aclose()
