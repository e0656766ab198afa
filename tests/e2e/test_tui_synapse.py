"""The TUI's client layer against Synapse (installed from PyPI into a cached virtualenv).

We never drift into speaking only our own dialect: the same client code that
drives our server logs in, sends and receives against the reference server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.load.servers import RunningServer, start_synapse
from tui_client.matrix import HttpxTransport, LongPollSync, MatrixClient, websocket_sync_offered
from tui_client.model import ClientState

# The first run on a machine installs Synapse from PyPI: allow for it.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_synapse(tmp_path_factory.mktemp("synapse"), bcrypt_rounds=4, startup_timeout=300)
    try:
        yield srv
    finally:
        srv.stop()


def register(url: str, name: str) -> None:
    r = httpx.post(f"{url}/_matrix/client/v3/register", timeout=60,
                   json={"username": name, "password": "pw-" + name, "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 200, r.text


def bodies(state: ClientState, room_id: str) -> list[str]:
    room = state.rooms.get(room_id)
    out = []
    for entry in room.timeline if room else []:
        content = getattr(entry, "content", None)
        if isinstance(content, dict) and isinstance(content.get("body"), str):
            out.append(content["body"])
    return out


async def test_tui_client_logs_in_sends_and_receives_on_synapse(synapse: RunningServer) -> None:
    register(synapse.url, "alice")
    register(synapse.url, "bob")
    alice = MatrixClient(HttpxTransport(synapse.url), synapse.url)
    bob = MatrixClient(HttpxTransport(synapse.url), synapse.url)
    a_session = await alice.login_password("alice", "pw-alice")
    b_session = await bob.login_password("bob", "pw-bob")
    assert a_session.user_id.startswith("@alice:")
    room_id = await alice.create_room(name="interop", invite=[b_session.user_id])
    await bob.join(room_id)
    await alice.send_message(room_id, "hello synapse")

    # Synapse does not offer Parley's WebSocket sync: the client long-polls.
    assert not websocket_sync_offered(await bob.versions())
    source = await bob.choose_sync_source(None)
    assert isinstance(source, LongPollSync) and bob.websocket_fallback_reason is None

    b_state = ClientState(b_session.user_id)
    since = None
    for _ in range(20):
        resp = await bob.sync_once(since, 2000)
        b_state.apply_sync(resp)
        since = resp["next_batch"]
        if "hello synapse" in bodies(b_state, room_id):
            break
    assert "hello synapse" in bodies(b_state, room_id)
    assert b_state.rooms[room_id].state.get(("m.room.name", ""), {}).get("name") == "interop"

    a_state = ClientState(a_session.user_id)
    a_since = None
    resp = await alice.sync_once(a_since, 0)
    a_state.apply_sync(resp)
    a_since = resp["next_batch"]
    await bob.send_message(room_id, "hello back")
    for _ in range(20):
        resp = await alice.sync_once(a_since, 2000)
        a_state.apply_sync(resp)
        a_since = resp["next_batch"]
        if "hello back" in bodies(a_state, room_id):
            break
    assert "hello back" in bodies(a_state, room_id)
    await asyncio.gather(alice.logout(), bob.logout())
