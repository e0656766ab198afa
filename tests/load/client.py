"""A minimal Matrix client-server API client for load generation (aiohttp, loopback only).

Only the standard client-server API is spoken, plus Synapse's shared-secret admin registration as
an optional way to create users.  aiohttp rather than httpx: measured on this machine with 200
concurrent keep-alive connections, httpx spent 3.3-4.0 ms of client CPU per request and aiohttp
0.09-0.10 ms (see spec/benchmarks.md), and the generator must not be the bottleneck at 1,000 syncs.

Sync transports are pluggable (``SYNC_TRANSPORTS``): long-poll ``/sync``, and Parley's WebSocket
sync (``--sync websocket``, spec/websocket-sync.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class MatrixError(Exception):
    def __init__(self, status: int, body: Any, what: str = ""):
        super().__init__(f"{what} HTTP {status}: {str(body)[:300]}")
        self.status = status
        self.body = body


def check_loopback(url: str) -> str:
    """Refuse anything but a loopback base URL; return it without a trailing slash."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"load tool only talks to loopback homeservers, not {url!r}")
    return url.rstrip("/")


def new_session(limit: int, *, total_timeout: float | None = None) -> aiohttp.ClientSession:
    """A keep-alive pool with room for ``limit`` concurrent connections."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, keepalive_timeout=120,
                                     force_close=False, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=total_timeout)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, json_serialize=json.dumps)


@dataclass
class User:
    user_id: str
    access_token: str
    localpart: str


class MatrixClient:
    """Thin request helpers over one shared aiohttp session."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession):
        self.base = check_loopback(base_url)
        self.session = session

    async def request(self, method: str, path: str, *, token: str | None = None, body: Any = None,
                      params: dict[str, str] | None = None, timeout: float = 60.0,
                      ok: tuple[int, ...] = (200,)) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None if body is None else json.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(method, self.base + path, data=data, params=params,
                                        headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            raw = await resp.read()
            status = resp.status
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = raw[:200]
        if status not in ok:
            raise MatrixError(status, parsed, f"{method} {path}")
        return status, parsed

    # -- registration -----------------------------------------------------------------------

    async def register_dummy(self, localpart: str, password: str) -> User:
        """Open registration: a first POST yields a UIA session; the second completes m.login.dummy."""
        req: dict[str, Any] = {"username": localpart, "password": password,
                               "initial_device_display_name": "load"}
        status, body = await self.request("POST", "/_matrix/client/v3/register", body=req, ok=(200, 401))
        if status == 401:
            req["auth"] = {"type": "m.login.dummy", "session": body.get("session")}
            status, body = await self.request("POST", "/_matrix/client/v3/register", body=req)
        return User(body["user_id"], body["access_token"], localpart)

    async def register_shared_secret(self, localpart: str, password: str, secret: str) -> User:
        """Synapse's /_synapse/admin/v1/register: HMAC-SHA1 over nonce, user, password, admin flag."""
        _, nb = await self.request("GET", "/_synapse/admin/v1/register")
        nonce = nb["nonce"]
        mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(), b"notadmin"]))
        req = {"nonce": nonce, "username": localpart, "password": password, "admin": False,
               "mac": mac.hexdigest()}
        _, body = await self.request("POST", "/_synapse/admin/v1/register", body=req)
        return User(body["user_id"], body["access_token"], localpart)

    # -- rooms ------------------------------------------------------------------------------

    async def create_room(self, token: str, body: dict[str, Any]) -> str:
        _, resp = await self.request("POST", "/_matrix/client/v3/createRoom", token=token, body=body,
                                     timeout=120)
        return resp["room_id"]

    async def join(self, token: str, room_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/join/{urllib.parse.quote(room_id)}",
                           token=token, body={}, timeout=120)

    async def send_message(self, token: str, room_id: str, txn_id: str, content: dict[str, Any],
                           timeout: float = 30.0) -> str:
        path = (f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/send/m.room.message/"
                f"{urllib.parse.quote(txn_id)}")
        _, resp = await self.request("PUT", path, token=token, body=content, timeout=timeout)
        return resp["event_id"]

    async def sync(self, token: str, *, since: str | None, timeout_ms: int, filter_json: str | None,
                   set_presence: str | None = None, client_timeout: float | None = None) -> tuple[Any, int]:
        """One /sync; returns (parsed body, body size in bytes)."""
        params = {"timeout": str(timeout_ms)}
        if since:
            params["since"] = since
        if filter_json:
            params["filter"] = filter_json
        if set_presence:
            params["set_presence"] = set_presence
        headers = {"Authorization": f"Bearer {token}"}
        ct = client_timeout if client_timeout is not None else timeout_ms / 1000 + 30
        async with self.session.get(self.base + "/_matrix/client/v3/sync", params=params, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=ct)) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise MatrixError(resp.status, raw[:300], "GET /sync")
        return orjson.loads(raw), len(raw)


# ---------------------------------------------------------------------------------------------
# Sync transports

#: Called with (arrival wall-clock time, list of timeline events per room) for each sync batch.
OnBatch = Callable[[float, dict[str, list[dict[str, Any]]]], None]

DEFAULT_SYNC_FILTER = json.dumps(
    {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 50}}}, separators=(",", ":"))


@dataclass
class SyncCounters:
    requests: int = 0
    errors: int = 0
    bytes: int = 0
    limited: int = 0


class _SyncTransport:
    """What both sync transports share: the client, filter, counters and the first sync."""

    client: MatrixClient
    filter_json: str
    set_presence: str | None
    counters: SyncCounters

    async def initial(self, user: User) -> str:
        """The first sync (timeout=0), as real clients do; returns the next_batch token."""
        body, n = await self.client.sync(user.access_token, since=None, timeout_ms=0,
                                         filter_json=self.filter_json, set_presence=self.set_presence,
                                         client_timeout=300)
        self.counters.requests += 1
        self.counters.bytes += n
        return body["next_batch"]


class LongPollSync(_SyncTransport):
    """One user's long-poll loop: GET /sync?since=...&timeout=N until ``stop`` is set or ``deadline``."""

    name = "longpoll"

    def __init__(self, client: MatrixClient, *, timeout_ms: int = 30000,
                 filter_json: str = DEFAULT_SYNC_FILTER, set_presence: str | None = None,
                 jitter: bool = False):
        self.client = client
        self.timeout_ms = timeout_ms
        # jitter: the first long-poll waits a random 0..timeout_ms (fixed per user), so users that
        # started together do not time out and re-poll in lockstep every timeout_ms.
        self.jitter = jitter
        self.filter_json = filter_json
        self.set_presence = set_presence
        self.counters = SyncCounters()


    async def run(self, user: User, since: str, on_batch: OnBatch, stop: asyncio.Event,
                  deadline: float) -> None:
        timeout_ms = random.Random(user.user_id).randint(0, self.timeout_ms) if self.jitter else self.timeout_ms
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                body, n = await self.client.sync(user.access_token, since=since, timeout_ms=timeout_ms,
                                                 filter_json=self.filter_json, set_presence=self.set_presence)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - counted; a real client retries too
                self.counters.errors += 1
                await asyncio.sleep(0.5)
                continue
            now = time.time()
            timeout_ms = self.timeout_ms
            self.counters.requests += 1
            self.counters.bytes += n
            since = body.get("next_batch", since)
            joined = body.get("rooms", {}).get("join", {})
            if joined:
                per_room = {}
                for rid, room in joined.items():
                    tl = room.get("timeline") or {}
                    if tl.get("limited"):
                        self.counters.limited += 1
                    evs = tl.get("events")
                    if evs:
                        per_room[rid] = evs
                if per_room:
                    on_batch(now, per_room)


WEBSOCKET_SYNC_PATH = "/_matrix/client/unstable/org.parley.websocket_sync"


class WebSocketSync(_SyncTransport):
    """Parley's WebSocket sync (spec/websocket-sync.md): one socket per user, syncs pushed.

    ``initial`` does the first sync over plain HTTP (timeout=0, as with long-poll), so both
    transports start from the same token; ``run`` opens the socket with that ``since``,
    acknowledges every pushed sync (the server sends the next one only after the ack), and
    reconnects from the last acknowledged token if the socket drops.
    """

    name = "websocket"

    def __init__(self, client: MatrixClient, *, filter_json: str = DEFAULT_SYNC_FILTER,
                 set_presence: str | None = None, **_: Any):
        self.client = client
        self.filter_json = filter_json
        self.set_presence = set_presence
        self.counters = SyncCounters()


    async def run(self, user: User, since: str, on_batch: OnBatch, stop: asyncio.Event,
                  deadline: float) -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            params = {"since": since, "filter": self.filter_json}
            if self.set_presence:
                params["set_presence"] = self.set_presence
            url = self.client.base.replace("http", "ws", 1) + WEBSOCKET_SYNC_PATH
            try:
                async with self.client.session.ws_connect(
                        url, params=params, headers={"Authorization": f"Bearer {user.access_token}"},
                        heartbeat=None, autoping=True, max_msg_size=0) as ws:
                    since = await self._pump(ws, since, on_batch, stop, deadline)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - counted; reconnect from the last token
                self.counters.errors += 1
                await asyncio.sleep(0.5)

    async def _pump(self, ws: Any, since: str, on_batch: OnBatch, stop: asyncio.Event,
                    deadline: float) -> str:
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                msg = await ws.receive(timeout=min(left, 1.0))
            except TimeoutError:
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    raise ConnectionError(f"websocket closed: {ws.close_code}")
                continue
            data = orjson.loads(msg.data)
            if data.get("type") == "error":
                self.counters.errors += 1
                continue
            if data.get("type") != "sync":
                continue
            now = time.time()
            body = data["body"]
            self.counters.requests += 1
            self.counters.bytes += len(msg.data)
            since = body.get("next_batch", since)
            await ws.send_str(json.dumps({"type": "ack", "next_batch": since}))
            per_room = {}
            for rid, room in body.get("rooms", {}).get("join", {}).items():
                tl = room.get("timeline") or {}
                if tl.get("limited"):
                    self.counters.limited += 1
                if tl.get("events"):
                    per_room[rid] = tl["events"]
            if per_room:
                on_batch(now, per_room)
        return since


SYNC_TRANSPORTS: dict[str, Callable[..., LongPollSync | WebSocketSync]] = {
    "longpoll": LongPollSync,
    "websocket": WebSocketSync,
}


async def bounded_gather(n: int, items: list[Any], fn: Callable[[Any], Awaitable[Any]]) -> list[Any]:
    """Run ``fn`` over ``items`` with at most ``n`` in flight; results in input order."""
    sem = asyncio.Semaphore(n)

    async def one(x: Any) -> Any:
        async with sem:
            return await fn(x)

    return await asyncio.gather(*(one(x) for x in items))
