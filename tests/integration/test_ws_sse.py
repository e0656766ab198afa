"""Streaming sync over real sockets: the WebSocket extension (spec/websocket-sync.md), SSE (MSC2108),
coalescing of slow consumers, and long-polls that are not cut short and release their waiters."""

from __future__ import annotations

import asyncio
import logging
import json
import time
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import register
from tests.integration.test_sync import V3, User, setup_pair, timeline

WS_PATH = "/_matrix/client/unstable/org.parley.websocket_sync"
SSE_PATH = "/_matrix/client/unstable/org.matrix.msc2108/sync/sse"


def ws_url(server: Any, **query: str) -> str:
    url = server.base_url.replace("http://", "ws://") + WS_PATH
    if query:
        url += "?" + httpx.QueryParams(query).__str__()
    return url


def token_of(u: User) -> str:
    return u.h["Authorization"].split(" ", 1)[1]


async def recv(ws: Any, timeout: float = 10) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_type(ws: Any, kind: str, timeout: float = 10) -> dict[str, Any]:
    """The next message of `kind`, skipping syncs (acknowledging them) and others."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv(ws, max(0.01, deadline - time.monotonic()))
        if msg["type"] == kind:
            return msg
        if msg["type"] == "sync":
            await ack(ws, msg)


async def ack(ws: Any, msg: dict[str, Any]) -> None:
    await ws.send(json.dumps({"type": "ack", "next_batch": msg["body"]["next_batch"]}))


async def next_sync(ws: Any, timeout: float = 10, *, do_ack: bool = True) -> dict[str, Any]:
    msg = await recv_type(ws, "sync", timeout)
    if do_ack:
        await ack(ws, msg)
    return msg["body"]


async def wait_waiters(server: Any, n: int, timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while server.services.notifier.waiter_count() != n:
        assert time.monotonic() < deadline, f"waiters {server.services.notifier.waiter_count()} != {n}"
        await asyncio.sleep(0.02)


# -- WebSocket -----------------------------------------------------------------------------


async def test_versions_advertise_streaming(client: httpx.AsyncClient) -> None:
    features = (await client.get("/_matrix/client/versions")).json()["unstable_features"]
    assert features["org.parley.websocket_sync"] is True
    assert features["org.matrix.msc2108"] is True


async def test_ws_initial_push_send_and_typing(server: Any, client: httpx.AsyncClient) -> None:
    a, b, room = await setup_pair(client)
    async with websockets.connect(ws_url(server), additional_headers=b.h) as ws:
        assert (await recv(ws))["type"] == "authenticated"
        first = await next_sync(ws)
        assert room in first["rooms"]["join"]
        # A message by another user arrives as a pushed sync.
        eid = await a.send(room, "pushed")
        body = await next_sync(ws)
        assert [e["event_id"] for e in timeline(body, room)] == [eid]
        # Send over the socket: request id round trip; alice sees it.
        await a.sync()
        await ws.send(json.dumps({"type": "request", "id": "r1", "method": "send", "params": {
            "room_id": room, "txn_id": "t1", "content": {"msgtype": "m.text", "body": "over ws"}}}))
        resp = await recv_type(ws, "response")
        assert resp["id"] == "r1" and resp["body"]["event_id"].startswith("$")
        seen = await a.sync()
        assert [e["content"]["body"] for e in timeline(seen, room)] == ["over ws"]
        # The same txn_id is idempotent, as over HTTP.
        await ws.send(json.dumps({"type": "request", "id": 2, "method": "send", "params": {
            "room_id": room, "txn_id": "t1", "content": {"msgtype": "m.text", "body": "over ws"}}}))
        again = await recv_type(ws, "response")
        assert again["id"] == 2 and again["body"]["event_id"] == resp["body"]["event_id"]
        # Typing over the socket shows up in alice's sync.
        await ws.send(json.dumps({"type": "request", "id": "t", "method": "typing",
                                  "params": {"room_id": room, "typing": True, "timeout": 10000}}))
        assert (await recv_type(ws, "response"))["id"] == "t"
        eph = (await a.sync())["rooms"]["join"][room]["ephemeral"]["events"]
        assert any(e["type"] == "m.typing" and b.user_id in e["content"]["user_ids"] for e in eph)
        # Receipt and read markers; a Matrix error maps to an error message with the id.
        await ws.send(json.dumps({"type": "request", "id": "rc", "method": "receipt",
                                  "params": {"room_id": room, "event_id": eid}}))
        assert (await recv_type(ws, "response"))["id"] == "rc"
        await ws.send(json.dumps({"type": "request", "id": "rm", "method": "read_markers",
                                  "params": {"room_id": room, "m.fully_read": eid}}))
        assert (await recv_type(ws, "response"))["id"] == "rm"
        await ws.send(json.dumps({"type": "request", "id": "bad", "method": "send", "params": {
            "room_id": "!nope:localhost", "txn_id": "x", "content": {}}}))
        err = await recv_type(ws, "error")
        assert err["id"] == "bad" and err["errcode"].startswith("M_")
        await ws.send(json.dumps({"type": "request", "id": "m", "method": "fly", "params": {}}))
        err = await recv_type(ws, "error")
        assert err["id"] == "m" and err["errcode"] == "M_UNRECOGNIZED"
        # App-level ping.
        await ws.send(json.dumps({"type": "ping", "id": "p"}))
        assert (await recv_type(ws, "pong"))["id"] == "p"


async def test_ws_auth_message_and_failures(server: Any, client: httpx.AsyncClient) -> None:
    _, b, room = await setup_pair(client)
    # A request before auth is refused; then auth by message works.
    async with websockets.connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"type": "request", "id": "early", "method": "send", "params": {}}))
        err = await recv(ws)
        assert err["type"] == "error" and err["id"] == "early" and err["errcode"] == "M_MISSING_TOKEN"
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv(ws))["type"] == "pong"
        await ws.send(json.dumps({"type": "auth", "access_token": token_of(b),
                                  "filter": {"room": {"timeline": {"limit": 1}}}}))
        assert (await recv(ws))["type"] == "authenticated"
        first = await next_sync(ws)
        assert len(timeline(first, room)) == 1
        await ws.send(json.dumps({"type": "auth", "access_token": token_of(b)}))
        assert (await recv_type(ws, "error"))["errcode"] == "M_BAD_STATE"
    # Wrong token in the query: error then close 4401.
    async with websockets.connect(ws_url(server, access_token="nope")) as ws:
        err = await recv(ws)
        assert err["errcode"] == "M_UNKNOWN_TOKEN"
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd.code == 4401
    # Wrong token in the auth message.
    async with websockets.connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"type": "auth", "access_token": "nope"}))
        assert (await recv(ws))["errcode"] == "M_UNKNOWN_TOKEN"
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd.code == 4401
    # Bad since: 4400.
    async with websockets.connect(ws_url(server, since="garbage"), additional_headers=b.h) as ws:
        assert (await recv(ws))["errcode"] == "M_INVALID_PARAM"
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd.code == 4400
    await wait_waiters(server, 0)


async def test_ws_auth_timeout(server_factory: Any) -> None:
    srv = await server_factory({"rate_limits.enabled": False, "http.websocket_auth_timeout_s": 0.3})
    async with websockets.connect(ws_url(srv)) as ws:
        assert (await recv(ws))["errcode"] == "M_MISSING_TOKEN"
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd.code == 4401


async def test_ws_malformed_input_and_abuse(server_factory: Any) -> None:
    srv = await server_factory({"rate_limits.enabled": False, "http.websocket_max_strikes": 5})
    async with srv.client() as client:
        _, b, _ = await setup_pair(client)
        async with websockets.connect(ws_url(srv), additional_headers=b.h) as ws:
            await recv_type(ws, "authenticated")
            await next_sync(ws)
            await ws.send("{not json")
            assert (await recv_type(ws, "error"))["errcode"] == "M_NOT_JSON"
            await ws.send(b"\x00binary")
            assert (await recv_type(ws, "error"))["errcode"] == "M_NOT_JSON"
            await ws.send(json.dumps([1, 2]))
            assert (await recv_type(ws, "error"))["errcode"] == "M_NOT_JSON"
            await ws.send(json.dumps({"type": "request", "method": "send"}))  # no id
            assert (await recv_type(ws, "error"))["errcode"] == "M_BAD_JSON"
            # Still usable after errors.
            await ws.send(json.dumps({"type": "ping", "id": 1}))
            assert (await recv_type(ws, "pong"))["id"] == 1
            await ws.send(json.dumps({"type": "whatever"}))
            assert (await recv_type(ws, "error"))["errcode"] == "M_UNRECOGNIZED"
            # The fifth strike closes with 1008.
            with pytest.raises(websockets.ConnectionClosed) as info:
                for _ in range(3):
                    await recv_type(ws, "never", timeout=5)
            assert info.value.rcvd.code == 1008
        await wait_waiters(srv, 0)


async def test_ws_resume_no_loss_no_duplicates(server: Any, client: httpx.AsyncClient) -> None:
    a, b, room = await setup_pair(client)
    received: list[str] = []
    async with websockets.connect(ws_url(server), additional_headers=b.h) as ws:
        await next_sync(ws)
        for i in range(3):
            await a.send(room, f"m{i}")
        token = None
        while len(received) < 3:
            body = await next_sync(ws)
            received += [e["content"]["body"] for e in timeline(body, room)]
            token = body["next_batch"]
    await wait_waiters(server, 0)
    # Sent while disconnected.
    for i in range(3, 8):
        await a.send(room, f"m{i}")
    async with websockets.connect(ws_url(server, since=token), additional_headers=b.h) as ws:
        while len(received) < 8:
            body = await next_sync(ws)
            received += [e["content"]["body"] for e in timeline(body, room)]
        await a.send(room, "m8")
        body = await next_sync(ws)
        received += [e["content"]["body"] for e in timeline(body, room)]
    assert received == [f"m{i}" for i in range(9)]


async def test_ws_slow_consumer_is_coalesced(server: Any, client: httpx.AsyncClient) -> None:
    a, b, room = await setup_pair(client)
    filt = json.dumps({"room": {"timeline": {"limit": 100}}})
    async with websockets.connect(ws_url(server, filter=filt), additional_headers=b.h) as ws:
        await next_sync(ws)
        # The first message wakes one sync; the client does not acknowledge (read) it while
        # 49 more are sent.
        sent = [await a.send(room, "c0")]
        first = await next_sync(ws, do_ack=False)
        got = [e["event_id"] for e in timeline(first, room)]
        for i in range(1, 50):
            sent.append(await a.send(room, f"c{i}"))
        # Nothing more is pushed while one sync is unacknowledged.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)
        await ws.send(json.dumps({"type": "ack", "next_batch": first["next_batch"]}))
        messages = 1
        while len(got) < 50:
            body = await next_sync(ws)
            messages += 1
            got += [e["event_id"] for e in timeline(body, room)]
        assert got == sent
        assert messages <= 3
        # A wrong ack is refused without harm.
        await ws.send(json.dumps({"type": "ack", "next_batch": "s1"}))
        assert (await recv_type(ws, "error"))["errcode"] == "M_INVALID_PARAM"


async def test_ws_compression_off_by_default(server_factory: Any) -> None:
    plain = await server_factory({"rate_limits.enabled": False})
    deflate = await server_factory({"rate_limits.enabled": False, "http.websocket_compression": True})
    async with plain.client() as c:
        u = User(c, await register(c, "zed"))
    async with websockets.connect(ws_url(plain), additional_headers=u.h, compression="deflate") as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        assert (await recv(ws))["type"] == "authenticated"
    async with websockets.connect(ws_url(deflate), compression="deflate") as ws:
        assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv(ws))["type"] == "pong"


# -- SSE (MSC2108) --------------------------------------------------------------------------


async def read_sse(lines: Any, want_events: int, timeout: float = 10) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """Read until `want_events` events arrived: ([(id, body)], heartbeat comments seen)."""
    events: list[tuple[str, dict[str, Any]]] = []
    comments = 0
    ev_id, data = None, None

    async def run() -> None:
        nonlocal ev_id, data, comments
        async for line in lines:
            if line.startswith(":"):
                comments += 1
            elif line.startswith("id: "):
                ev_id = line[4:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and data is not None:
                events.append((ev_id or "", json.loads(data)))
                ev_id, data = None, None
                if len(events) >= want_events:
                    return

    await asyncio.wait_for(run(), timeout)
    return events, comments


async def test_sse_stream_resume_and_heartbeat(server_factory: Any) -> None:
    srv = await server_factory({"rate_limits.enabled": False, "http.sse_heartbeat_interval_s": 0.2,
                                "http.sse_min_heartbeat_interval_s": 0.1})
    async with srv.client() as client:
        a, b, room = await setup_pair(client)
        received: list[str] = []
        async with client.stream("GET", SSE_PATH, headers=b.h) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = r.aiter_lines()
            (first_id, first), = (await read_sse(lines, 1))[0]
            assert first_id == first["next_batch"] and room in first["rooms"]["join"]
            # Heartbeats while idle.
            await asyncio.sleep(0.7)
            await a.send(room, "s0")
            events, comments = await read_sse(lines, 1)
            assert comments >= 2
            for ev_id, body in events:
                assert ev_id == body["next_batch"]
                received += [e["content"]["body"] for e in timeline(body, room)]
            last_id = events[-1][0]
        await wait_waiters(srv, 0)
        for i in range(1, 4):
            await a.send(room, f"s{i}")
        async with client.stream("GET", SSE_PATH, headers={**b.h, "Last-Event-ID": last_id}) as r:
            lines = r.aiter_lines()
            while len(received) < 4:
                events, _ = await read_sse(lines, 1)
                for _, body in events:
                    received += [e["content"]["body"] for e in timeline(body, room)]
            assert srv.services.notifier.waiter_count() == 1
        assert received == ["s0", "s1", "s2", "s3"]
        # The disconnect released the waiter at once.
        await wait_waiters(srv, 0, timeout=1)
        # Errors before the stream starts are ordinary Matrix errors.
        r = await client.get(SSE_PATH)
        assert r.status_code == 401
        r = await client.get(SSE_PATH, headers={**b.h, "Last-Event-ID": "garbage"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"


# -- long-poll behind proxies ------------------------------------------------------------


async def test_long_poll_not_cut_by_keep_alive_and_released_on_disconnect(server_factory: Any) -> None:
    srv = await server_factory({"rate_limits.enabled": False, "http.keep_alive_timeout_s": 0.5})
    from homeserver.server import hypercorn_config

    hc = hypercorn_config(srv.config())
    assert hc.read_timeout is None
    assert hc.keep_alive_timeout == 0.5
    async with srv.client() as client:
        _, b, _ = await setup_pair(client)
        await b.sync()
        # A 2 s long-poll outlives the 0.5 s keep-alive timeout and returns normally.
        t0 = time.monotonic()
        r = await client.get(f"{V3}/sync", headers=b.h, params={"since": b.since, "timeout": 2000})
        assert r.status_code == 200 and time.monotonic() - t0 >= 1.9
        # A client that goes away mid long-poll releases its waiter at once, and is no server error.
        errors_logged: list[logging.LogRecord] = []
        catcher = logging.Handler(logging.ERROR)
        catcher.emit = errors_logged.append  # type: ignore[method-assign]
        for name in ("", "hypercorn.error", "homeserver"):
            logging.getLogger(name).addHandler(catcher)
        task = asyncio.create_task(client.get(f"{V3}/sync", headers=b.h, params={"since": b.since,
                                                                               "timeout": 60000}))
        await wait_waiters(srv, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_waiters(srv, 0, timeout=1)
        await asyncio.sleep(0.2)
        for name in ("", "hypercorn.error", "homeserver"):
            logging.getLogger(name).removeHandler(catcher)
        assert [r.getMessage() for r in errors_logged] == []
