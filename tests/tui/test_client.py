"""The Matrix client layer, driven through its Transport seam with recorded responses."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from pathlib import Path

import pytest

from tui_client import matrix
from tui_client.config import SessionStore
from tui_client.matrix import (
    ApiResponse,
    ConnectionStatus,
    LoggedOut,
    LongPollSync,
    MatrixClient,
    MatrixError,
    Session,
    TransportError,
    websocket_sync_offered,
)

from .recorded import SESSION, RecordedTransport, error
from .sync_data import initial_sync, sync

ROOM = "!general:example.org"


def client_with(transport: RecordedTransport, session: Session | None = SESSION, **kwargs) -> MatrixClient:
    return MatrixClient(transport, "http://hs.test", session, **kwargs)


def test_public_api_is_exactly_exported() -> None:
    assert sorted(matrix.__all__) == sorted(
        name for name in dir(matrix) if not name.startswith("_") and name not in {"annotations"})


async def test_login_uses_password_with_user_identifier_and_asks_for_refresh_token() -> None:
    transport = RecordedTransport()
    transport.route("POST", r"/_matrix/client/v3/login",
                    {"user_id": "@me:example.org", "access_token": "a", "device_id": "D", "refresh_token": "r"})
    saved: list[Session | None] = []
    client = client_with(transport, None, on_session_changed=saved.append)
    session = await client.login_password("me", "secret")
    body = transport.requests[0].json
    assert body["type"] == "m.login.password" and body["identifier"] == {"type": "m.id.user", "user": "me"}
    assert body["refresh_token"] is True and transport.requests[0].access_token is None
    assert session == Session("http://hs.test", "@me:example.org", "a", "D", "r") and saved == [session]


async def test_register_completes_uia_with_registration_token_then_dummy() -> None:
    transport = RecordedTransport()
    stages = iter([
        error(401, "M_FORBIDDEN", session="uia1", flows=[{"stages": ["m.login.registration_token"]},
                                                         {"stages": ["m.login.email.identity"]}]),
        {"user_id": "@new:example.org", "access_token": "a", "device_id": "D"},
    ])
    transport.route("POST", r"/_matrix/client/v3/register", lambda _r: next(stages))
    client = client_with(transport, None)
    session = await client.register("new", "pw", registration_token="tok")
    assert transport.requests[1].json["auth"] == {
        "type": "m.login.registration_token", "session": "uia1", "token": "tok"}
    assert session.user_id == "@new:example.org"


async def test_register_with_dummy_flow_and_without_token_when_one_is_needed() -> None:
    transport = RecordedTransport()
    transport.route("POST", r"/_matrix/client/v3/register",
                    lambda r: {"user_id": "@n:x", "access_token": "a", "device_id": "D"} if r.json.get("auth")
                    else error(401, "M_FORBIDDEN", session="s", flows=[{"stages": ["m.login.dummy"]}]))
    assert (await client_with(transport, None).register("n", "pw")).user_id == "@n:x"
    assert transport.requests[-1].json["auth"] == {"type": "m.login.dummy", "session": "s"}
    strict = RecordedTransport()
    strict.route("POST", r"/_matrix/client/v3/register",
                 error(401, "M_FORBIDDEN", session="s", flows=[{"stages": ["m.login.registration_token"]}]))
    with pytest.raises(MatrixError, match="registration token"):
        await client_with(strict, None).register("n", "pw")


async def test_expired_token_is_refreshed_once_and_the_request_retried() -> None:
    transport = RecordedTransport()
    transport.route("PUT", r".*/send/.*", lambda r: error(401, "M_UNKNOWN_TOKEN", soft_logout=True)
                    if r.access_token == "token-1" else {"event_id": "$ok"})
    transport.route("POST", r"/_matrix/client/v3/refresh", {"access_token": "token-2", "refresh_token": "refresh-2"})
    saved: list[Session | None] = []
    client = client_with(transport, on_session_changed=saved.append)
    assert await client.send_message(ROOM, "hi") == "$ok"
    refresh = [r for r in transport.requests if r.path.endswith("/refresh")]
    assert len(refresh) == 1 and refresh[0].json == {"refresh_token": "refresh-1"}
    assert client.session.access_token == "token-2" and client.session.refresh_token == "refresh-2"
    assert saved == [client.session]


async def test_hard_logout_and_failed_refresh_end_the_session() -> None:
    transport = RecordedTransport()
    transport.route("PUT", r".*/send/.*", error(401, "M_UNKNOWN_TOKEN", soft_logout=True))
    transport.route("POST", r"/_matrix/client/v3/refresh", error(401, "M_UNKNOWN_TOKEN"))
    client = client_with(transport)
    with pytest.raises(LoggedOut):
        await client.send_message(ROOM, "hi")
    assert client.session is None and client.status is ConnectionStatus.LOGGED_OUT


async def test_sync_uploads_filter_once_first_sync_has_timeout_zero_then_long_polls() -> None:
    transport = RecordedTransport([initial_sync(), sync("s2"), sync("s3")])
    client = client_with(transport)
    seen: list[str] = []

    def on_sync(response: dict) -> None:
        seen.append(response["next_batch"])
        if len(seen) == 3:
            client.stop()

    await client.sync_forever(on_sync)
    syncs = [r for r in transport.requests if r.path.endswith("/sync")]
    assert seen == ["s1", "s2", "s3"]
    assert [dict(r.params) for r in syncs] == [
        {"filter": "f1", "timeout": "0"},
        {"filter": "f1", "timeout": "30000", "since": "s1"},
        {"filter": "f1", "timeout": "30000", "since": "s2"},
    ]
    filters = [r for r in transport.requests if r.path.endswith("/filter")]
    assert len(filters) == 1 and filters[0].json["room"]["state"]["lazy_load_members"] is True
    assert client.status is ConnectionStatus.OFFLINE


async def test_sync_reconnects_with_exponential_backoff_and_reports_status() -> None:
    transport = RecordedTransport([TransportError("refused"), error(502, "M_UNKNOWN"), TransportError("reset"),
                                   initial_sync()])
    delays: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)

    client = client_with(transport, sleep=fake_sleep)
    statuses: list[ConnectionStatus] = []
    client.add_status_listener(statuses.append)
    await client.sync_forever(lambda _r: client.stop())
    assert delays == [1.0, 2.0, 4.0]
    assert statuses == [ConnectionStatus.CONNECTING, ConnectionStatus.RECONNECTING, ConnectionStatus.SYNCING,
                        ConnectionStatus.OFFLINE]
    # The retried request repeats the same position: nothing is skipped.
    assert all("since" not in r.params for r in transport.requests if r.path.endswith("/sync"))


async def test_sync_source_choice_and_what_happens_when_versions_fail() -> None:
    # An unreachable server is retried (not taken as "no WebSocket"); an odd /versions answer
    # means the standard long-poll.
    transport = RecordedTransport([initial_sync()])
    answers = iter([TransportError("refused"), ApiResponse(404, b'{"errcode":"M_UNRECOGNIZED"}')])
    transport.route("GET", r"/_matrix/client/versions", lambda _r: next(answers))
    delays: list[float] = []

    async def fast(seconds: float) -> None:
        delays.append(seconds)

    client = client_with(transport, sleep=fast)
    await client.sync_forever(lambda _r: client.stop())
    assert delays == [1.0] and client.sync_transport == "long-poll"
    assert [r.path for r in transport.requests].count("/_matrix/client/versions") == 2


async def test_offered_websocket_that_cannot_connect_means_long_poll() -> None:
    # The flag is there, but nothing listens for the socket (a real refused connection).
    transport = RecordedTransport([initial_sync()])
    transport.route("GET", r"/_matrix/client/versions",
                    {"versions": ["v1.19"], "unstable_features": {"org.parley.websocket_sync": True}})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = MatrixClient(transport, f"http://127.0.0.1:{closed_port}", SESSION)
    source = await client.choose_sync_source(None)
    assert isinstance(source, LongPollSync) and client.websocket_fallback_reason
    assert websocket_sync_offered({"unstable_features": {"org.parley.websocket_sync": True}})
    assert not websocket_sync_offered({"unstable_features": {"org.parley.websocket_sync": "yes"}})
    assert not websocket_sync_offered({"versions": ["v1.19"]})
    off = MatrixClient(transport, f"http://127.0.0.1:{closed_port}", SESSION, use_websocket=False)
    assert isinstance(await off.choose_sync_source(None), LongPollSync) and off.websocket_fallback_reason is None


async def test_sync_stops_on_hard_logout() -> None:
    transport = RecordedTransport([error(401, "M_UNKNOWN_TOKEN")])
    client = client_with(transport)
    with pytest.raises(LoggedOut):
        await client.sync_forever(lambda _r: None)
    assert client.status is ConnectionStatus.LOGGED_OUT


async def test_messages_are_sent_with_transaction_ids_and_relations() -> None:
    transport = RecordedTransport()
    client = client_with(transport)
    await client.send_message(ROOM, "**hi**", "<strong>hi</strong>", txn_id="t1")
    await client.reply(ROOM, {"event_id": "$g1", "sender": "@alice:example.org",
                              "content": {"body": "Good morning"}}, "Morning!")
    await client.edit(ROOM, "$g3", "fixed")
    await client.react(ROOM, "$g1", "👍")
    await client.redact(ROOM, "$g2", "spam")
    sends = transport.requests
    assert sends[0].method == "PUT"
    assert sends[0].path == "/_matrix/client/v3/rooms/%21general%3Aexample.org/send/m.room.message/t1"
    assert sends[0].json == {"msgtype": "m.text", "body": "**hi**", "format": "org.matrix.custom.html",
                             "formatted_body": "<strong>hi</strong>"}
    reply = sends[1].json
    assert reply["m.relates_to"] == {"m.in_reply_to": {"event_id": "$g1"}}
    assert reply["body"] == "> <@alice:example.org> Good morning\n\nMorning!"
    assert reply["formatted_body"].startswith("<mx-reply>") and reply["formatted_body"].endswith("Morning!")
    assert sends[2].json["m.new_content"] == {"msgtype": "m.text", "body": "fixed"}
    assert sends[2].json["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$g3"}
    assert sends[3].path.split("/")[-2] == "m.reaction"
    assert sends[3].json == {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$g1", "key": "👍"}}
    assert "/redact/%24g2/" in sends[4].path and sends[4].json == {"reason": "spam"}
    txn_ids = [r.path.rsplit("/", 1)[-1] for r in sends]
    assert len(set(txn_ids)) == len(txn_ids)


async def test_room_calls_hit_the_spec_endpoints() -> None:
    transport = RecordedTransport()
    transport.route("POST", r"/_matrix/client/v3/createRoom", {"room_id": "!new:x"})
    transport.route("GET", r".*/account_data/m.direct", {"@bob:x": ["!old:x"]})
    transport.route("PUT", r".*/account_data/m.direct", {})
    transport.route("POST", r"/_matrix/client/v3/join/.*", {"room_id": "!joined:x"})
    transport.route("POST", r"/_matrix/client/v3/rooms/[^/]+/(leave|invite|kick|ban)", {})
    transport.route("PUT", r"/_matrix/client/v3/(rooms/[^/]+/state|profile)/.*", {"event_id": "$s"})
    transport.route("POST", r"/_matrix/client/v3/user_directory/search", {"results": [{"user_id": "@bob:x"}]})
    transport.route("POST", r"/_matrix/client/v3/search", {"search_categories": {"room_events": {
        "results": [{"rank": 1, "result": {"event_id": "$hit"}}]}}})
    transport.route("GET", r"/_matrix/client/v3/rooms/[^/]+/messages", {"chunk": [], "start": "a"})
    client = client_with(transport)
    assert await client.create_dm("@bob:x") == "!new:x"
    assert await client.join("#room:x") == "!joined:x"
    await client.leave(ROOM)
    await client.invite(ROOM, "@bob:x")
    await client.kick(ROOM, "@bob:x", "bye")
    await client.ban(ROOM, "@bob:x")
    await client.set_topic(ROOM, "t")
    await client.set_room_name(ROOM, "n")
    await client.set_displayname("Me!")
    await client.set_typing(ROOM, True)
    await client.set_read_markers(ROOM, "$e", read="$e")
    await client.messages(ROOM, "tok", limit=20)
    assert await client.search_users("bo") == [{"user_id": "@bob:x"}]
    assert (await client.search_messages("hello", ROOM)).results == [{"event_id": "$hit"}]
    calls = [(r.method, r.path.removeprefix("/_matrix/client/v3"), r.json) for r in transport.requests]
    assert calls[0][:2] == ("POST", "/createRoom")
    assert calls[0][2] == {"invite": ["@bob:x"], "is_direct": True, "preset": "trusted_private_chat"}
    assert calls[2] == ("PUT", "/user/%40me%3Aexample.org/account_data/m.direct", {"@bob:x": ["!old:x", "!new:x"]})
    assert calls[3][:2] == ("POST", "/join/%23room%3Ax")
    assert calls[6][2] == {"user_id": "@bob:x", "reason": "bye"}
    assert calls[8] == ("PUT", "/rooms/%21general%3Aexample.org/state/m.room.topic/", {"topic": "t"})
    assert calls[10] == ("PUT", "/profile/%40me%3Aexample.org/displayname", {"displayname": "Me!"})
    assert calls[11][2] == {"typing": True, "timeout": 5000}
    assert calls[12][2] == {"m.fully_read": "$e", "m.read": "$e"}
    params = transport.requests[13].params
    assert params["dir"] == "b" and params["from"] == "tok" and params["limit"] == "20"
    assert json.loads(params["filter"]) == {"lazy_load_members": True}
    search = transport.requests[-1].json["search_categories"]["room_events"]
    assert search["search_term"] == "hello" and search["filter"] == {"rooms": [ROOM]}


async def test_group_room_creation_public_and_private() -> None:
    transport = RecordedTransport()
    transport.route("POST", r"/_matrix/client/v3/createRoom", {"room_id": "!g:x"})
    client = client_with(transport)
    await client.create_room(name="Team", topic="Work", invite=["@a:x"], public=True)
    await client.create_room(name="Secret")
    assert transport.requests[0].json == {"invite": ["@a:x"], "is_direct": False, "preset": "public_chat",
                                          "visibility": "public", "name": "Team", "topic": "Work"}
    assert transport.requests[1].json["preset"] == "private_chat"


async def test_media_upload_and_authenticated_download() -> None:
    transport = RecordedTransport()
    transport.route("POST", r"/_matrix/media/v3/upload", {"content_uri": "mxc://example.org/abc"})
    transport.route("GET", r"/_matrix/client/v1/media/download/example.org/abc",
                    matrix.ApiResponse(200, b"PNGDATA", {"Content-Type": "image/png"}))
    client = client_with(transport)
    assert await client.upload(b"PNGDATA", "image/png", "cat.png") == "mxc://example.org/abc"
    upload = transport.requests[0]
    assert upload.content == b"PNGDATA" and upload.content_type == "image/png"
    assert upload.params == {"filename": "cat.png"}
    assert await client.download("mxc://example.org/abc") == (b"PNGDATA", "image/png")
    assert transport.requests[1].access_token == "token-1"
    with pytest.raises(ValueError):
        matrix.parse_mxc("https://example.org/abc")


async def test_errors_carry_the_matrix_error_body() -> None:
    transport = RecordedTransport()
    transport.route("POST", r".*/leave", error(403, "M_FORBIDDEN"))
    with pytest.raises(MatrixError) as caught:
        await client_with(transport).leave(ROOM)
    assert caught.value.status == 403 and caught.value.errcode == "M_FORBIDDEN"


async def test_logout_forgets_the_session() -> None:
    transport = RecordedTransport()
    transport.route("POST", r"/_matrix/client/v3/logout", {})
    saved: list[Session | None] = []
    client = client_with(transport, on_session_changed=saved.append)
    await client.logout()
    assert client.session is None and saved == [None] and transport.requests[0].access_token == "token-1"


def test_session_store_is_private_json(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "cfg" / "session.json")
    assert store.load() is None
    store.save(SESSION)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert json.loads(store.path.read_text())["refresh_token"] == "refresh-1"
    assert store.load() == SESSION
    store.save(None)
    assert not store.path.exists()


async def test_sync_long_poll_waits_for_data() -> None:
    transport = RecordedTransport()
    client = client_with(transport)
    task = asyncio.create_task(client.sync_forever(lambda _r: client.stop()))
    await asyncio.sleep(0.01)
    assert not task.done() and client.status is ConnectionStatus.CONNECTING
    transport.push_sync(initial_sync())
    await asyncio.wait_for(task, 1)


async def test_httpx_transport_sends_bearer_token_json_and_maps_network_errors() -> None:
    import httpx

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/down"):
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"ok": True})

    transport = matrix.HttpxTransport("http://hs.test/", httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    response = await transport.send(matrix.ApiRequest("POST", "/_matrix/client/v3/x", {"a": "1"}, {"k": "v"},
                                                      access_token="tok"))
    assert response.status == 200 and response.json() == {"ok": True}
    assert str(seen[0].url) == "http://hs.test/_matrix/client/v3/x?a=1"
    assert seen[0].headers["authorization"] == "Bearer tok" and json.loads(seen[0].content) == {"k": "v"}
    with pytest.raises(TransportError):
        await transport.send(matrix.ApiRequest("GET", "/down"))
    await transport.aclose()
