"""The Matrix client-server API calls the TUI makes, and the sync loop.

:class:`MatrixClient` knows the protocol (paths, bodies, tokens, UIA, retries) and
nothing about rooms or widgets: responses go back to the caller as JSON. It keeps just
the session, the uploaded filter id and the connection status.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from ._content import edit_content, message_content, reaction_content, reply_content
from ._errors import LoggedOut, MatrixError, TransportError
from ._sync import ConnectionStatus, LongPollSync, SyncSource, websocket_sync_offered
from ._transport import ApiRequest, ApiResponse, Transport
from ._websocket import WebSocketSync, websocket_url

JsonDict = dict[str, Any]
CLIENT = "/_matrix/client/v3"
LONG_POLL_MS = 30_000

#: The filter uploaded once per session: lazy-load members, a modest first timeline.
SYNC_FILTER: JsonDict = {
    "room": {
        "state": {"lazy_load_members": True},
        "timeline": {"limit": 50, "lazy_load_members": True},
    },
}


@dataclass(frozen=True)
class SearchPage:
    """One page of message search: the matching events (each with its ``room_id``), the
    token of the next page (None on the last) and the server's total (maybe an estimate)."""

    results: list[JsonDict]
    next_batch: str | None = None
    count: int | None = None


@dataclass(frozen=True)
class Session:
    """What survives a restart: where and who we are, and our tokens."""

    homeserver: str
    user_id: str
    access_token: str
    device_id: str
    refresh_token: str | None = None

    def to_json(self) -> JsonDict:
        return {
            "homeserver": self.homeserver, "user_id": self.user_id, "access_token": self.access_token,
            "device_id": self.device_id, "refresh_token": self.refresh_token,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Session:
        return cls(
            homeserver=str(data["homeserver"]), user_id=str(data["user_id"]),
            access_token=str(data["access_token"]), device_id=str(data["device_id"]),
            refresh_token=data.get("refresh_token") if isinstance(data.get("refresh_token"), str) else None,
        )


def _q(value: str) -> str:
    """Percent-encode one path segment (room ids contain ``!`` and ``:``)."""
    return quote(value, safe="")


def parse_mxc(uri: str) -> tuple[str, str]:
    """``mxc://server/media_id`` -> ``(server, media_id)``; ValueError if malformed."""
    if not uri.startswith("mxc://"):
        raise ValueError(f"not an mxc URI: {uri!r}")
    server, _, media_id = uri[len("mxc://"):].partition("/")
    if not server or not media_id or "/" in media_id:
        raise ValueError(f"not an mxc URI: {uri!r}")
    return server, media_id


class MatrixClient:
    """An async Matrix client: the only way the TUI talks to a homeserver.

    ``transport`` carries requests; ``sleep`` is how backoff waits (tests pass a fast one).
    ``on_session_changed`` is called after login, register and token refresh so the
    caller can persist the session. ``use_websocket`` False keeps to long-poll even when
    the server offers Parley's WebSocket sync.
    """

    def __init__(
        self,
        transport: Transport,
        homeserver: str,
        session: Session | None = None,
        *,
        device_name: str = "Parley TUI",
        on_session_changed: Callable[[Session | None], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        use_websocket: bool = True,
    ) -> None:
        self.transport = transport
        self.homeserver = homeserver
        self.session = session
        self.device_name = device_name
        self.on_session_changed = on_session_changed
        self._sleep = sleep
        self._status = ConnectionStatus.OFFLINE
        self._status_listeners: list[Callable[[ConnectionStatus], None]] = []
        self._filter_id: str | None = None
        self._refresh_lock = asyncio.Lock()
        self._txn_prefix = secrets.token_hex(4)
        self._txn_counter = itertools.count(1)
        self._stopping = False
        self.retry_in: float | None = None
        self.use_websocket = use_websocket
        #: the sync source in use ("websocket" / "long-poll"), None before the first choice
        self.sync_transport: str | None = None
        #: why the WebSocket was not used although offered (None: it was, or was not offered)
        self.websocket_fallback_reason: str | None = None

    # -- status --------------------------------------------------------------------------

    @property
    def status(self) -> ConnectionStatus:
        return self._status

    def add_status_listener(self, listener: Callable[[ConnectionStatus], None]) -> None:
        self._status_listeners.append(listener)

    def _set_status(self, status: ConnectionStatus) -> None:
        if status is not self._status:
            self._status = status
            for listener in list(self._status_listeners):
                listener(status)

    @property
    def user_id(self) -> str:
        if self.session is None:
            raise LoggedOut("not logged in")
        return self.session.user_id

    def new_txn_id(self) -> str:
        """A transaction id unique for this client instance (used for local echoes)."""
        return f"{self._txn_prefix}.{int(time.time() * 1000)}.{next(self._txn_counter)}"

    # -- plumbing --------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        auth: bool = True,
        timeout: float | None = 30.0,
    ) -> ApiResponse:
        """Send one request; on an expired token refresh it once and retry."""
        for attempt in (1, 2):
            token = None
            if auth:
                if self.session is None:
                    raise LoggedOut("not logged in")
                token = self.session.access_token
            request = ApiRequest(method, path, params or {}, json_body, content, content_type, token, timeout)
            response = await self.transport.send(request)
            if response.status < 400:
                return response
            error = _error_of(response)
            if (
                attempt == 1 and auth and response.status == 401 and error.errcode == "M_UNKNOWN_TOKEN"
                and error.soft_logout and self.session is not None and self.session.refresh_token
            ):
                await self._refresh_after_expiry(token)
                continue
            raise error
        raise AssertionError("unreachable")

    async def _json(self, method: str, path: str, **kwargs: Any) -> JsonDict:
        body = (await self._call(method, path, **kwargs)).json()
        return body if isinstance(body, dict) else {}

    def _can_refresh(self) -> bool:
        return self.session is not None and bool(self.session.refresh_token)

    async def _refresh_after_expiry(self, expired_token: str | None) -> None:
        async with self._refresh_lock:
            # Another request may have refreshed while we waited for the lock.
            if self.session is not None and self.session.access_token == expired_token:
                await self.refresh()

    def _adopt_session(self, session: Session | None) -> None:
        self.session = session
        self._filter_id = None if session is None else self._filter_id
        if self.on_session_changed is not None:
            self.on_session_changed(session)

    # -- account -----------------------------------------------------------------------------

    async def versions(self) -> JsonDict:
        """``GET /_matrix/client/versions`` (spec versions and unstable features)."""
        return await self._json("GET", "/_matrix/client/versions", auth=False)

    async def login_password(self, user: str, password: str) -> Session:
        """Log in with ``m.login.password`` and an ``m.id.user`` identifier; ask for a refresh token."""
        body = await self._json("POST", f"{CLIENT}/login", auth=False, json_body={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            "initial_device_display_name": self.device_name,
            "refresh_token": True,
        })
        session = self._session_from(body)
        self._adopt_session(session)
        return session

    async def register(self, username: str, password: str, registration_token: str | None = None) -> Session:
        """Register, completing user-interactive auth with dummy and registration-token stages."""
        request: JsonDict = {
            "username": username, "password": password,
            "initial_device_display_name": self.device_name, "refresh_token": True,
        }
        for _ in range(6):
            try:
                body = await self._json("POST", f"{CLIENT}/register", auth=False, json_body=request)
            except MatrixError as error:
                if error.status != 401 or "flows" not in error.body:
                    raise
                request["auth"] = _next_uia_stage(error.body, registration_token)
                continue
            session = self._session_from(body)
            self._adopt_session(session)
            return session
        raise MatrixError(401, "M_FORBIDDEN", "registration did not complete")

    def _session_from(self, body: Mapping[str, Any]) -> Session:
        try:
            return Session(
                homeserver=self.homeserver, user_id=str(body["user_id"]), access_token=str(body["access_token"]),
                device_id=str(body["device_id"]),
                refresh_token=body.get("refresh_token") if isinstance(body.get("refresh_token"), str) else None,
            )
        except KeyError as missing:
            raise MatrixError(200, "M_BAD_JSON", f"login response lacks {missing}") from None

    async def refresh(self) -> Session:
        """Trade the refresh token for a new access token (and maybe a new refresh token)."""
        if self.session is None or not self.session.refresh_token:
            raise LoggedOut("no refresh token")
        try:
            body = await self._json("POST", f"{CLIENT}/refresh", auth=False,
                                    json_body={"refresh_token": self.session.refresh_token})
        except MatrixError as error:
            if error.status in (401, 403):
                self._adopt_session(None)
                self._set_status(ConnectionStatus.LOGGED_OUT)
                raise LoggedOut(error.message) from error
            raise
        session = replace(
            self.session,
            access_token=str(body["access_token"]),
            refresh_token=body.get("refresh_token") or self.session.refresh_token,
        )
        self._adopt_session(session)
        return session

    async def logout(self) -> None:
        """Invalidate the access token on the server and forget the session."""
        try:
            if self.session is not None:
                await self._call("POST", f"{CLIENT}/logout", json_body={})
        finally:
            self._adopt_session(None)
            self._set_status(ConnectionStatus.LOGGED_OUT)

    async def whoami(self) -> JsonDict:
        return await self._json("GET", f"{CLIENT}/account/whoami")

    # -- sync ------------------------------------------------------------------------------------

    async def ensure_filter(self) -> str:
        """Upload :data:`SYNC_FILTER` once per session and return its id."""
        if self._filter_id is None:
            body = await self._json("POST", f"{CLIENT}/user/{_q(self.user_id)}/filter", json_body=SYNC_FILTER)
            self._filter_id = str(body["filter_id"])
        return self._filter_id

    async def sync_once(self, since: str | None, timeout_ms: int) -> JsonDict:
        """One ``GET /sync`` with the uploaded filter."""
        params = {"filter": await self.ensure_filter(), "timeout": str(timeout_ms)}
        if since is not None:
            params["since"] = since
        return await self._json("GET", f"{CLIENT}/sync", params=params, timeout=timeout_ms / 1000 + 30)

    async def choose_sync_source(self, since: str | None = None) -> SyncSource:
        """Parley's WebSocket sync when ``/versions`` offers it and the socket opens; else long-poll.

        The socket is opened here (from ``since``), so a proxy that does not pass
        WebSockets means long-poll for this session rather than a client that never syncs.
        An unreachable server raises :class:`TransportError` (the caller retries).
        """
        try:
            versions = await self.versions()
        except MatrixError:
            versions = {}  # an odd server; long-poll is the standard anyway
        self.websocket_fallback_reason = None
        if self.use_websocket and websocket_sync_offered(versions):
            source = WebSocketSync(
                websocket_url(self.homeserver), access_token=self._access_token,
                filter_id=await self.ensure_filter(), on_open=self._websocket_opened)
            try:
                await source.open(since)
                return source
            except TransportError as error:
                self.websocket_fallback_reason = str(error)
        return LongPollSync(self.sync_once)

    def _access_token(self) -> str:
        if self.session is None:
            raise LoggedOut("not logged in")
        return self.session.access_token

    def _websocket_opened(self) -> None:
        # Live as soon as the server accepts us: with a since token and nothing new, the
        # first sync only comes when something happens.
        self.retry_in = None
        self.sync_transport = WebSocketSync.name
        self._set_status(ConnectionStatus.SYNCING)

    async def sync_forever(
        self,
        on_sync: Callable[[JsonDict], Awaitable[None] | None],
        since: str | None = None,
        *,
        source: SyncSource | None = None,
        max_backoff: float = 60.0,
    ) -> None:
        """Sync from ``since`` until :meth:`stop` or logout, handing each response to ``on_sync``.

        The source is :meth:`choose_sync_source`'s unless given: the WebSocket when the
        server offers it, else long-poll (first ``timeout=0``, then long-polls). Network
        errors and 5xx/429 answers reconnect with exponential backoff (1s, 2s, 4s ...
        ``max_backoff``), resuming from the last token handed to ``on_sync``; the status
        goes to RECONNECTING meanwhile. An expired token is refreshed once and the sync
        resumes; other client errors (e.g. a ``since`` the server rejects) are raised.
        """
        self._stopping = False
        backoff = 1.0
        timeout_ms = 0
        refreshed = False  # one refresh per failure: a token refused again means logged out
        self._set_status(ConnectionStatus.CONNECTING)
        try:
            while not self._stopping:
                try:
                    if source is None:
                        source = await self.choose_sync_source(since)
                        self.sync_transport = source.name
                    response = await source.next_batch(since, timeout_ms)
                except (TransportError, MatrixError) as error:
                    if isinstance(error, MatrixError) and _expired(error) and self._can_refresh() and not refreshed:
                        await self._refresh_after_expiry(self._access_token())  # LoggedOut if refused
                        refreshed = True
                        continue
                    if isinstance(error, MatrixError) and not _retryable(error):
                        if error.status in (401, 403) and error.errcode == "M_UNKNOWN_TOKEN":
                            self._set_status(ConnectionStatus.LOGGED_OUT)
                            raise LoggedOut(error.message) from error
                        raise
                    delay = backoff
                    if isinstance(error, MatrixError) and error.retry_after_ms:
                        delay = max(delay, error.retry_after_ms / 1000)
                    self.retry_in = delay
                    self._set_status(ConnectionStatus.RECONNECTING)
                    await self._sleep(delay)
                    backoff = min(backoff * 2, max_backoff)
                    continue
                self.retry_in = None
                backoff = 1.0
                refreshed = False
                self._set_status(ConnectionStatus.SYNCING)
                if isinstance(response.get("next_batch"), str):
                    since = response["next_batch"]
                result = on_sync(response)
                if inspect.isawaitable(result):
                    await result
                timeout_ms = LONG_POLL_MS
        finally:
            if source is not None:
                await source.aclose()
            if self._status is not ConnectionStatus.LOGGED_OUT:
                self._set_status(ConnectionStatus.OFFLINE)

    def stop(self) -> None:
        """Ask :meth:`sync_forever` to return after the current request."""
        self._stopping = True

    # -- sending -------------------------------------------------------------------------------

    async def send_event(self, room_id: str, event_type: str, content: JsonDict, txn_id: str | None = None) -> str:
        """``PUT /rooms/{room}/send/{type}/{txn}``; returns the event id. Retrying with the
        same ``txn_id`` is idempotent on the server."""
        txn_id = txn_id or self.new_txn_id()
        body = await self._json(
            "PUT", f"{CLIENT}/rooms/{_q(room_id)}/send/{_q(event_type)}/{_q(txn_id)}", json_body=content)
        return str(body["event_id"])

    async def send_message(self, room_id: str, body: str, formatted_body: str | None = None, *,
                           msgtype: str = "m.text", txn_id: str | None = None) -> str:
        return await self.send_event(room_id, "m.room.message", message_content(body, formatted_body, msgtype),
                                     txn_id)

    async def reply(self, room_id: str, in_reply_to: Mapping[str, Any], body: str,
                    formatted_body: str | None = None, *, txn_id: str | None = None) -> str:
        """Reply to ``in_reply_to`` (an event dict with event_id, sender, content.body)."""
        content = reply_content(
            message_content(body, formatted_body), room_id=room_id, event_id=str(in_reply_to["event_id"]),
            sender=str(in_reply_to["sender"]), quoted_body=str(in_reply_to.get("content", {}).get("body", "")))
        return await self.send_event(room_id, "m.room.message", content, txn_id)

    async def edit(self, room_id: str, event_id: str, body: str, formatted_body: str | None = None, *,
                   txn_id: str | None = None) -> str:
        content = edit_content(event_id, message_content(body, formatted_body))
        return await self.send_event(room_id, "m.room.message", content, txn_id)

    async def react(self, room_id: str, event_id: str, key: str, *, txn_id: str | None = None) -> str:
        return await self.send_event(room_id, "m.reaction", reaction_content(event_id, key), txn_id)

    async def redact(self, room_id: str, event_id: str, reason: str | None = None, *,
                     txn_id: str | None = None) -> str:
        txn_id = txn_id or self.new_txn_id()
        body = await self._json("PUT", f"{CLIENT}/rooms/{_q(room_id)}/redact/{_q(event_id)}/{_q(txn_id)}",
                                json_body={"reason": reason} if reason else {})
        return str(body.get("event_id", ""))

    async def set_typing(self, room_id: str, typing: bool, timeout_ms: int = 5000) -> None:
        body: JsonDict = {"typing": typing}
        if typing:
            body["timeout"] = timeout_ms
        await self._call("PUT", f"{CLIENT}/rooms/{_q(room_id)}/typing/{_q(self.user_id)}", json_body=body)

    async def send_receipt(self, room_id: str, event_id: str, receipt_type: str = "m.read") -> None:
        await self._call("POST", f"{CLIENT}/rooms/{_q(room_id)}/receipt/{_q(receipt_type)}/{_q(event_id)}",
                         json_body={})

    async def set_read_markers(self, room_id: str, fully_read: str, read: str | None = None) -> None:
        """Move the fully-read marker and (with ``read``) the read receipt in one call."""
        body = {"m.fully_read": fully_read}
        if read is not None:
            body["m.read"] = read
        await self._call("POST", f"{CLIENT}/rooms/{_q(room_id)}/read_markers", json_body=body)

    async def messages(self, room_id: str, from_token: str, *, limit: int = 30, direction: str = "b") -> JsonDict:
        """A page of history: ``GET /rooms/{room}/messages`` (members lazy-loaded)."""
        params = {"from": from_token, "dir": direction, "limit": str(limit),
                  "filter": json.dumps({"lazy_load_members": True})}
        return await self._json("GET", f"{CLIENT}/rooms/{_q(room_id)}/messages", params=params)

    async def members(self, room_id: str) -> JsonDict:
        """``GET /rooms/{room}/members``: every member event (sync lazy-loads only senders)."""
        return await self._json("GET", f"{CLIENT}/rooms/{_q(room_id)}/members")

    async def context(self, room_id: str, event_id: str, limit: int = 10) -> JsonDict:
        """``GET /rooms/{room}/context/{event}``: an event with ``limit`` events around it."""
        params = {"limit": str(limit), "filter": json.dumps({"lazy_load_members": True})}
        return await self._json("GET", f"{CLIENT}/rooms/{_q(room_id)}/context/{_q(event_id)}", params=params)

    # -- membership and room settings --------------------------------------------------------

    async def join(self, room_id_or_alias: str, via: Iterable[str] = ()) -> str:
        params = {"via": ",".join(via)} if via else None  # httpx repeats lists; one server is typical
        body = await self._json("POST", f"{CLIENT}/join/{_q(room_id_or_alias)}", json_body={}, params=params)
        return str(body["room_id"])

    async def leave(self, room_id: str) -> None:
        await self._call("POST", f"{CLIENT}/rooms/{_q(room_id)}/leave", json_body={})

    async def invite(self, room_id: str, user_id: str) -> None:
        await self._call("POST", f"{CLIENT}/rooms/{_q(room_id)}/invite", json_body={"user_id": user_id})

    async def kick(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        await self._call("POST", f"{CLIENT}/rooms/{_q(room_id)}/kick", json_body=_with_reason(user_id, reason))

    async def ban(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        await self._call("POST", f"{CLIENT}/rooms/{_q(room_id)}/ban", json_body=_with_reason(user_id, reason))

    async def unban(self, room_id: str, user_id: str) -> None:
        await self._call("POST", f"{CLIENT}/rooms/{_q(room_id)}/unban", json_body={"user_id": user_id})

    async def set_state(self, room_id: str, event_type: str, content: JsonDict, state_key: str = "") -> str:
        body = await self._json("PUT", f"{CLIENT}/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}",
                                json_body=content)
        return str(body.get("event_id", ""))

    async def set_topic(self, room_id: str, topic: str) -> str:
        return await self.set_state(room_id, "m.room.topic", {"topic": topic})

    async def set_room_name(self, room_id: str, name: str) -> str:
        return await self.set_state(room_id, "m.room.name", {"name": name})

    async def set_displayname(self, displayname: str) -> None:
        await self._call("PUT", f"{CLIENT}/profile/{_q(self.user_id)}/displayname",
                         json_body={"displayname": displayname})

    async def create_room(self, *, name: str | None = None, topic: str | None = None,
                          invite: Iterable[str] = (), is_direct: bool = False, public: bool = False,
                          alias: str | None = None) -> str:
        """``POST /createRoom``: a public or private group, or a DM (``is_direct``)."""
        invitees = list(invite)
        body: JsonDict = {"invite": invitees, "is_direct": is_direct}
        if is_direct:
            body["preset"] = "trusted_private_chat"
        else:
            body["preset"] = "public_chat" if public else "private_chat"
            body["visibility"] = "public" if public else "private"
        if name:
            body["name"] = name
        if topic:
            body["topic"] = topic
        if alias:
            body["room_alias_name"] = alias
        created = await self._json("POST", f"{CLIENT}/createRoom", json_body=body)
        return str(created["room_id"])

    async def create_dm(self, user_id: str) -> str:
        """Create a direct chat with ``user_id`` and record it in ``m.direct``."""
        room_id = await self.create_room(invite=[user_id], is_direct=True)
        direct = await self.get_direct()
        rooms = direct.setdefault(user_id, [])
        if room_id not in rooms:
            rooms.append(room_id)
        await self.set_account_data("m.direct", direct)
        return room_id

    # -- account data ------------------------------------------------------------------------------

    async def get_account_data(self, event_type: str) -> JsonDict:
        try:
            return await self._json("GET", f"{CLIENT}/user/{_q(self.user_id)}/account_data/{_q(event_type)}")
        except MatrixError as error:
            if error.errcode == "M_NOT_FOUND":
                return {}
            raise

    async def set_account_data(self, event_type: str, content: JsonDict) -> None:
        await self._call("PUT", f"{CLIENT}/user/{_q(self.user_id)}/account_data/{_q(event_type)}",
                         json_body=content)

    async def get_direct(self) -> dict[str, list[str]]:
        """The ``m.direct`` map: user id -> DM room ids."""
        content = await self.get_account_data("m.direct")
        return {user: [r for r in rooms if isinstance(r, str)]
                for user, rooms in content.items() if isinstance(rooms, list)}

    async def set_direct(self, direct: Mapping[str, list[str]]) -> None:
        await self.set_account_data("m.direct", dict(direct))

    # -- search ------------------------------------------------------------------------------------

    async def search_users(self, term: str, limit: int = 10) -> list[JsonDict]:
        body = await self._json("POST", f"{CLIENT}/user_directory/search",
                                json_body={"search_term": term, "limit": limit})
        results = body.get("results")
        return [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []

    async def search_messages(self, term: str, room_id: str | None = None,
                              next_batch: str | None = None) -> SearchPage:
        """Server-side full-text search over room events (all joined rooms when ``room_id``
        is None), newest first. ``next_batch`` (from the previous page) asks for the next page
        of the same search."""
        criteria: JsonDict = {"search_term": term, "order_by": "recent"}
        if room_id is not None:
            criteria["filter"] = {"rooms": [room_id]}
        body = await self._json("POST", f"{CLIENT}/search", json_body={"search_categories": {"room_events": criteria}},
                                params={"next_batch": next_batch} if next_batch else None)
        events = body.get("search_categories", {}).get("room_events", {})
        events = events if isinstance(events, dict) else {}
        results = events.get("results")
        token, count = events.get("next_batch"), events.get("count")
        return SearchPage(
            [r["result"] for r in results if isinstance(r, dict) and isinstance(r.get("result"), dict)]
            if isinstance(results, list) else [],
            token if isinstance(token, str) and token else None,
            count if isinstance(count, int) and not isinstance(count, bool) else None)

    # -- media ---------------------------------------------------------------------------------------

    async def upload(self, data: bytes, content_type: str, filename: str | None = None) -> str:
        """``POST /_matrix/media/v3/upload``; returns the ``mxc://`` URI."""
        params = {"filename": filename} if filename else None
        body = await self._json("POST", "/_matrix/media/v3/upload", content=data, content_type=content_type,
                                params=params, timeout=300.0)
        return str(body["content_uri"])

    async def download(self, mxc_uri: str) -> tuple[bytes, str]:
        """Authenticated download (``/_matrix/client/v1/media/download``): (bytes, content type)."""
        server, media_id = parse_mxc(mxc_uri)
        response = await self._call("GET", f"/_matrix/client/v1/media/download/{_q(server)}/{_q(media_id)}",
                                    timeout=300.0)
        content_type = next((v for k, v in response.headers.items() if k.lower() == "content-type"),
                            "application/octet-stream")
        return response.body, content_type

    async def thumbnail(self, mxc_uri: str, width: int, height: int, method: str = "scale") -> tuple[bytes, str]:
        """Authenticated thumbnail (``/_matrix/client/v1/media/thumbnail``): (bytes, content type)."""
        server, media_id = parse_mxc(mxc_uri)
        response = await self._call("GET", f"/_matrix/client/v1/media/thumbnail/{_q(server)}/{_q(media_id)}",
                                    params={"width": str(width), "height": str(height), "method": method},
                                    timeout=120.0)
        content_type = next((v for k, v in response.headers.items() if k.lower() == "content-type"),
                            "application/octet-stream")
        return response.body, content_type


#: UIA stages this client completes without asking the user anything more.
_SUPPORTED_STAGES = ("m.login.dummy", "m.login.registration_token")


def _next_uia_stage(uia: Mapping[str, Any], registration_token: str | None) -> JsonDict:
    """Choose a flow we can finish and return the ``auth`` dict for its next stage."""
    completed = set(uia.get("completed") or [])
    usable = [
        flow.get("stages", []) for flow in uia.get("flows", [])
        if isinstance(flow, dict) and all(stage in _SUPPORTED_STAGES for stage in flow.get("stages", []))
        and (registration_token is not None or "m.login.registration_token" not in flow.get("stages", []))
    ]
    if not usable:
        needs_token = any("m.login.registration_token" in f.get("stages", []) for f in uia.get("flows", [])
                          if isinstance(f, dict))
        raise MatrixError(401, "M_FORBIDDEN", "this server needs a registration token" if needs_token
                          else "this server's registration steps are not supported by this client", dict(uia))
    stages = min(usable, key=len)
    stage = next((s for s in stages if s not in completed), stages[-1])
    auth: JsonDict = {"type": stage}
    if isinstance(uia.get("session"), str):
        auth["session"] = uia["session"]
    if stage == "m.login.registration_token":
        auth["token"] = registration_token
    return auth


def _with_reason(user_id: str, reason: str | None) -> JsonDict:
    return {"user_id": user_id, "reason": reason} if reason else {"user_id": user_id}


def _expired(error: MatrixError) -> bool:
    return error.status == 401 and error.errcode == "M_UNKNOWN_TOKEN" and error.soft_logout


def _retryable(error: MatrixError) -> bool:
    return error.status >= 500 or error.status == 429 or error.errcode == "M_LIMIT_EXCEEDED"


def _error_of(response: ApiResponse) -> MatrixError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return MatrixError(response.status, str(body.get("errcode", "M_UNKNOWN")),
                       str(body.get("error", f"HTTP {response.status}")), body)
