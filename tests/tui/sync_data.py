"""Sync responses shaped like a homeserver's, for driving the model and the app in tests.

Timestamps are fixed (2025-03-03, UTC) so rendering and snapshots are deterministic.
"""

from __future__ import annotations

from typing import Any

ME = "@me:example.org"
ALICE = "@alice:example.org"
BOB = "@bob:example.org"
T0 = 1_741_000_000_000  # 2025-03-03T11:06:40Z


def ev(event_id: str, sender: str, body: str | None = None, *, ts: int = T0, type: str = "m.room.message",
       content: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A client-format room event; ``body`` makes an m.text message."""
    if content is None:
        content = {"msgtype": "m.text", "body": body or ""}
    event = {"event_id": event_id, "sender": sender, "type": type, "origin_server_ts": ts, "content": content}
    event.update(extra)
    return event


def member(user: str, name: str | None = None, membership: str = "join", *, ts: int = T0,
           event_id: str | None = None, **content: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"membership": membership, **content}
    if name is not None:
        body["displayname"] = name
    return ev(event_id or f"$m-{user}-{membership}", user, type="m.room.member", content=body, ts=ts,
              state_key=user)


def state(type: str, content: dict[str, Any], sender: str = ALICE, key: str = "") -> dict[str, Any]:
    return ev(f"$s-{type}-{key}", sender, type=type, content=content, state_key=key)


def joined(timeline: list[dict[str, Any]], *, state_events: list[dict[str, Any]] | None = None,
           limited: bool = False, prev_batch: str = "p0", unread: tuple[int, int] | None = None,
           summary: dict[str, Any] | None = None, ephemeral: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    room: dict[str, Any] = {
        "state": {"events": state_events or []},
        "timeline": {"events": timeline, "limited": limited, "prev_batch": prev_batch},
        "ephemeral": {"events": ephemeral or []},
        "account_data": {"events": []},
    }
    if unread is not None:
        room["unread_notifications"] = {"notification_count": unread[0], "highlight_count": unread[1]}
    if summary is not None:
        room["summary"] = summary
    return room


def sync(next_batch: str, *, join: dict[str, Any] | None = None, invite: dict[str, Any] | None = None,
         leave: dict[str, Any] | None = None, account_data: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "next_batch": next_batch,
        "rooms": {"join": join or {}, "invite": invite or {}, "leave": leave or {}},
        "account_data": {"events": account_data or []},
    }


def initial_sync() -> dict[str, Any]:
    """Two group rooms, one DM and one invite: the world most app tests start in."""
    general = joined(
        [
            member(ME, "Me", ts=T0 - 4000),
            member(ALICE, "Alice", ts=T0 - 3000),
            member(BOB, "Bob", ts=T0 - 2000),
            ev("$g1", ALICE, "Good morning everyone", ts=T0),
            ev("$g2", BOB, content={
                "msgtype": "m.text", "body": "**Release** notes: see `CHANGES.md`",
                "format": "org.matrix.custom.html",
                "formatted_body": "<strong>Release</strong> notes: see <code>CHANGES.md</code>"}, ts=T0 + 60_000),
            ev("$g3", ME, "Thanks Bob!", ts=T0 + 120_000),
        ],
        state_events=[state("m.room.name", {"name": "General"}), state("m.room.topic", {"topic": "All things Parley"})],
        unread=(2, 0),
    )
    random = joined(
        [member(ME, "Me", ts=T0 - 9000), member(ALICE, "Alice", ts=T0 - 8000),
         ev("$r1", ALICE, "Anyone up for lunch?", ts=T0 - 7000)],
        state_events=[state("m.room.canonical_alias", {"alias": "#random:example.org"})],
    )
    dm = joined(
        [member(ME, "Me", ts=T0 - 5000), member(ALICE, "Alice", ts=T0 - 5000),
         ev("$d1", ALICE, "Hey, got a minute?", ts=T0 + 30_000)],
        summary={"m.heroes": [ALICE], "m.joined_member_count": 2, "m.invited_member_count": 0},
        unread=(1, 1),
    )
    invite = {"invite_state": {"events": [
        {"type": "m.room.name", "state_key": "", "sender": BOB, "content": {"name": "Book club"}},
        {"type": "m.room.member", "state_key": ME, "sender": BOB, "content": {"membership": "invite"}},
    ]}}
    return sync(
        "s1",
        join={"!general:example.org": general, "!random:example.org": random, "!dm:example.org": dm},
        invite={"!books:example.org": invite},
        account_data=[{"type": "m.direct", "content": {ALICE: ["!dm:example.org"]}}],
    )
