"""Rooms: creating them, sending events, membership, state, aliases.

Every local event goes through :meth:`RoomService._append`: under the room's
lock it reads the forward extremities and the auth state, builds and signs the
event in core/, checks it with the auth rules, and persists it with its state
and stream position in the caller's single transaction. Listeners are told of
the event only after the commit, so a 200 always means "durably stored".
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from homeserver import errors
from homeserver.config import Config
from homeserver.core.auth_rules import AuthError, auth_types_for_event, check_auth
from homeserver.core.canonical_json import CanonicalJSONError, encode_canonical_json
from homeserver.core.event_builder import build_event
from homeserver.core.events import Event, StateKey
from homeserver.core.identifiers import is_valid_room_alias, is_valid_room_id, is_valid_user_id
from homeserver.core.power_levels import get_named_level, get_user_power_level
from homeserver.core.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.core.signing import SigningKey
from homeserver.infra.ratelimit import RateLimiter
from homeserver.services.auth import Requester
from homeserver.services.stream_cache import StreamSequencer
from homeserver.storage.accounts import AccountStore
from homeserver.storage.aliases import AliasStore
from homeserver.storage.database import Database
from homeserver.storage.events import EventStore, StoredEvent

log = logging.getLogger(__name__)

MAX_PDU_BYTES = 65536
MAX_TYPE_BYTES = 255


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class NewEvent:
    event: Event
    stream_ordering: int


@dataclass
class _Head:
    """A room's newest event and current state, as this process last committed them."""

    event_id: str
    depth: int
    state_group: int | None
    state: dict[StateKey, str]


class _Positions:
    """The stream positions one transaction took, the events written at them, and the room heads they made."""

    def __init__(self, sequencer: StreamSequencer) -> None:
        self._sequencer = sequencer
        self.allocated: list[int] = []
        self.new: list[NewEvent] = []
        self.heads: dict[str, _Head] = {}

    def allocate(self) -> int:
        p = self._sequencer.allocate()
        self.allocated.append(p)
        return p


EventListener = Callable[[list[NewEvent]], Awaitable[None]]


class RoomService:
    def __init__(
        self,
        config: Config,
        db: Database,
        events: EventStore,
        aliases: AliasStore,
        accounts: AccountStore,
        signing_key: SigningKey,
        limiter: RateLimiter,
    ) -> None:
        self.config = config
        self.db = db
        self.events = events
        self.aliases = aliases
        self.accounts = accounts
        self.signing_key = signing_key
        self.limiter = limiter
        self.server_name = config.server_name
        self.max_body_chars = int(config.get("limits.max_message_body_chars", 10_000))
        self._room_locks: dict[str, asyncio.Lock] = {}
        self._last_create_ts: dict[str, int] = {}
        self.listeners: list[EventListener] = []
        # Called synchronously, in stream order, for every committed event (caches of the
        # newest events); listeners above run later and in any order.
        self.on_commit: list[Callable[[StoredEvent], None]] = []
        self.sequencer = StreamSequencer(self._committed)
        self.on_forget: list[Callable[[str], None]] = []  # user_id, after a room was forgotten
        self._heads: dict[str, _Head] = {}
        self._recent_txns: dict[tuple[str, str, str, str], str] = {}

    def _committed(self, new: NewEvent) -> None:
        stored = StoredEvent(new.event, new.stream_ordering, new.event.depth, {}, None, None)
        for hook in self.on_commit:
            hook(stored)

    @asynccontextmanager
    async def _sequenced(self) -> AsyncIterator[_Positions]:
        """Stream positions for the events one transaction appends; after the block (the
        commit) those events reach `on_commit` in stream order, or are dropped on failure."""
        positions = _Positions(self.sequencer)
        try:
            yield positions
        except BaseException:
            for p in positions.allocated:
                self.sequencer.abort(p)
            for room_id in positions.heads:
                self._heads.pop(room_id, None)
            raise
        # Committed: later appends in these rooms start from the heads this transaction made.
        if len(self._heads) > 50_000:
            self._heads.clear()
        self._heads.update(positions.heads)
        done = {n.stream_ordering: n for n in positions.new}
        for p in positions.allocated:
            if p in done:
                self.sequencer.finish(p, done[p])
            else:
                self.sequencer.abort(p)

    def _track(self, positions: _Positions, new: NewEvent) -> NewEvent:
        positions.new.append(new)
        return new

    # -- the one way events are appended ----------------------------------
    def _lock(self, room_id: str) -> asyncio.Lock:
        lock = self._room_locks.get(room_id)
        if lock is None:
            lock = self._room_locks[room_id] = asyncio.Lock()
        return lock

    async def _append(
        self,
        conn: asyncpg.Connection,
        room_id: str,
        rv: RoomVersion,
        *,
        type: str,
        sender: str,
        content: dict[str, Any],
        state_key: str | None = None,
        redacts: str | None = None,
        txn: tuple[str, str, str, str] | None = None,
        positions: _Positions,
    ) -> NewEvent:
        # The room's head: what this transaction wrote last, else what this process committed last
        # (appends to a room are serialised by its lock), else the database.
        head = positions.heads.get(room_id) or self._heads.get(room_id)
        if head is None:
            extremities = await self.events.forward_extremities(conn, room_id)
            if not extremities:
                raise errors.not_found("Unknown room")
            current = await self.events.current_state_ids(room_id, None, conn)
            depth = await self.events.depth_of(conn, extremities) + 1
            # Only one extremity for local-only rooms; forks (federation) are resolved before this point.
            group_before = await self.events.state_group_of(conn, extremities[0])
        else:
            extremities, current = [head.event_id], head.state
            depth, group_before = head.depth + 1, head.state_group
        auth_keys = auth_types_for_event(rv, type, sender, state_key, content)
        lookup = set(auth_keys)
        # The auth rules of v12 still read the create event, which is no longer an auth event.
        lookup.add(("m.room.create", ""))
        state_ids = {k: current[k] for k in lookup if k in current}
        stored = await self.events.get_events(state_ids.values(), conn)
        auth_state = {k: stored[eid].event for k, eid in state_ids.items() if eid in stored}
        state_ids = {k: v for k, v in state_ids.items() if k in auth_keys}
        ts = now_ms()
        try:
            event = build_event(
                room_version=rv, room_id=room_id, type=type, sender=sender, content=content,
                state_key=state_key, prev_event_ids=extremities, auth_event_ids=sorted(state_ids.values()),
                depth=depth, origin_server_ts=ts, server_name=self.server_name, signing_key=self.signing_key,
                redacts=redacts,
            )
        except (ValueError, CanonicalJSONError) as e:
            raise errors.bad_json(f"Cannot build event: {e}") from None
        if len(encode_canonical_json(event.pdu)) > MAX_PDU_BYTES:
            raise errors.too_large("Event is larger than 65536 bytes")
        try:
            check_auth(rv, event, auth_state)
        except AuthError as e:
            raise errors.forbidden(f"Event not allowed: {e}") from None
        stream, group = await self.events.persist_event(
            conn, event, state_group_before=group_before, txn=txn, now_ms=ts, allocate_stream=positions.allocate
        )
        # Heads' state maps are never changed in place: a state event makes a new one, a message shares it.
        state = {**current, event.state_tuple: event.event_id} if event.is_state else current
        positions.heads[room_id] = _Head(event.event_id, depth, group, state)
        return self._track(positions, NewEvent(event, stream))

    async def _notify(self, new: list[NewEvent]) -> None:
        for listener in self.listeners:
            try:
                await listener(new)
            except Exception:
                log.exception("event listener failed")

    async def send_event(
        self,
        sender: str,
        room_id: str,
        *,
        type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        redacts: str | None = None,
        txn: tuple[str, str, str, str] | None = None,
    ) -> NewEvent:
        """Append one event to a room, durably, and tell the listeners."""
        _check_sizes(type, state_key)
        async with self._lock(room_id):
            try:
                async with self._sequenced() as pending, self.db.transaction() as conn:
                    await self.events.lock_room(conn, room_id)
                    rv = await self.events.get_room_version(room_id, conn)
                    if rv is None:
                        raise errors.not_found("Unknown room")
                    new = await self._append(
                        conn, room_id, rv, type=type, sender=sender, content=content,
                        state_key=state_key, redacts=redacts, txn=txn, positions=pending,
                    )
            except asyncpg.UniqueViolationError:
                if txn is not None:
                    existing = await self.events.event_for_txn(*txn)
                    if existing:
                        stored = await self.events.get_event(existing)
                        assert stored is not None
                        return NewEvent(stored.event, stored.stream_ordering)
                raise
        await self._notify([new])
        return new

    # -- rooms ----------------------------------------------------------------
    async def room_version(self, room_id: str) -> RoomVersion:
        rv = await self.events.get_room_version(room_id)
        if rv is None:
            raise errors.not_found("Unknown room")
        return rv

    async def create_room(self, requester: Requester, body: dict[str, Any]) -> dict[str, Any]:
        user_id = requester.user_id
        preset = body.get("preset")
        visibility = body.get("visibility", "private")
        if visibility not in ("public", "private"):
            raise errors.bad_json("'visibility' must be 'public' or 'private'")
        if preset is None:
            preset = "public_chat" if visibility == "public" else "private_chat"
        if preset not in ("private_chat", "trusted_private_chat", "public_chat"):
            raise errors.bad_json("'preset' is not a known preset")
        version_id = body.get("room_version", DEFAULT_ROOM_VERSION)
        rv = KNOWN_ROOM_VERSIONS.get(version_id) if isinstance(version_id, str) else None
        if rv is None:
            raise errors.MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version {version_id!r}")
        invite = body.get("invite", [])
        if not isinstance(invite, list) or not all(isinstance(u, str) and is_valid_user_id(u) for u in invite):
            raise errors.bad_json("'invite' must be a list of user IDs")
        invite = [u for u in dict.fromkeys(invite) if u != user_id]
        initial_state = body.get("initial_state", [])
        if not isinstance(initial_state, list) or not all(
            isinstance(s, dict) and isinstance(s.get("type"), str) and isinstance(s.get("content"), dict)
            and isinstance(s.get("state_key", ""), str)
            for s in initial_state
        ):
            raise errors.bad_json("'initial_state' must be a list of {type, state_key, content}")
        creation_content = body.get("creation_content", {})
        if not isinstance(creation_content, dict):
            raise errors.bad_json("'creation_content' must be an object")
        pl_override = body.get("power_level_content_override")
        if pl_override is not None and not isinstance(pl_override, dict):
            raise errors.bad_json("'power_level_content_override' must be an object")
        for key in ("name", "topic", "room_alias_name"):
            if key in body and not isinstance(body[key], str):
                raise errors.bad_json(f"'{key}' must be a string")
        is_direct = body.get("is_direct", False)
        if not isinstance(is_direct, bool):
            raise errors.bad_json("'is_direct' must be a boolean")
        alias = None
        if body.get("room_alias_name"):
            alias = f"#{body['room_alias_name']}:{self.server_name}"
            if not is_valid_room_alias(alias) or ":" in body["room_alias_name"]:
                raise errors.MatrixError(400, "M_INVALID_PARAM", "Invalid room alias name")
            if await self.aliases.get_alias(alias):
                raise errors.MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
        if invite:
            wait = await self.limiter.take(f"invite:{user_id}", self.config.rate_rule("invites_per_user"), len(invite))
            if wait:
                raise errors.limit_exceeded(wait)

        create_content = {k: v for k, v in creation_content.items()}
        create_content["room_version"] = rv.identifier
        if not rv.implicit_room_creator:
            create_content["creator"] = user_id
        if rv.privileged_creators and preset == "trusted_private_chat":
            extra = create_content.get("additional_creators", [])
            if not isinstance(extra, list):
                raise errors.bad_json("'additional_creators' must be a list")
            create_content["additional_creators"] = list(dict.fromkeys([*extra, *invite]))

        profile = await self.accounts.get_profile(user_id)
        new_events: list[NewEvent] = []

        async def create_in_one_transaction(ts: int) -> str:
            new_events.clear()
            async with self._sequenced() as pending, self.db.transaction() as conn:
                if rv.room_id_from_create_event:
                    create = build_event(
                        room_version=rv, room_id=None, type="m.room.create", sender=user_id, content=create_content,
                        state_key="", prev_event_ids=[], auth_event_ids=[], depth=1, origin_server_ts=ts,
                        server_name=self.server_name, signing_key=self.signing_key,
                    )
                    room_id = create.room_id
                else:
                    room_id = f"!{secrets.token_urlsafe(18)}:{self.server_name}"
                    create = build_event(
                        room_version=rv, room_id=room_id, type="m.room.create", sender=user_id, content=create_content,
                        state_key="", prev_event_ids=[], auth_event_ids=[], depth=1, origin_server_ts=ts,
                        server_name=self.server_name, signing_key=self.signing_key,
                    )
                try:
                    check_auth(rv, create, {})
                except AuthError as e:
                    raise errors.bad_json(f"Invalid creation content: {e}") from None
                await self.events.lock_room(conn, room_id)
                await self.events.create_room_row(conn, room_id, rv.identifier, user_id, ts, visibility == "public")
                stream, group = await self.events.persist_event(conn, create, state_group_before=None, txn=None,
                                                                now_ms=ts, allocate_stream=pending.allocate)
                pending.heads[room_id] = _Head(create.event_id, create.depth, group, {create.state_tuple: create.event_id})
                new_events.append(self._track(pending, NewEvent(create, stream)))

                async def add(type: str, content: dict[str, Any], state_key: str | None = "") -> None:
                    new_events.append(await self._append(
                        conn, room_id, rv, type=type, sender=user_id, content=content, state_key=state_key,
                        positions=pending,
                    ))

                await add("m.room.member", _member_content("join", profile), user_id)
                pl = _default_power_levels(rv, user_id, preset, invite)
                if pl_override:
                    pl.update(pl_override)
                await add("m.room.power_levels", pl)
                if alias:
                    if not await self.aliases.create_alias(alias, room_id, user_id, conn):
                        raise errors.MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
                    await add("m.room.canonical_alias", {"alias": alias})
                join_rule = "public" if preset == "public_chat" else "invite"
                await add("m.room.join_rules", {"join_rule": join_rule})
                await add("m.room.history_visibility", {"history_visibility": "shared"})
                await add("m.room.guest_access", {"guest_access": "forbidden" if preset == "public_chat" else "can_join"})
                for s in initial_state:
                    await add(s["type"], s["content"], s.get("state_key", ""))
                if body.get("name"):
                    await add("m.room.name", {"name": body["name"]})
                if body.get("topic"):
                    await add("m.room.topic", {"topic": body["topic"]})
                for target in invite:
                    content: dict[str, Any] = {"membership": "invite"}
                    if is_direct:
                        content["is_direct"] = True
                    await add("m.room.member", content, target)
            return room_id

        # A v12 room ID is the hash of its create event: the same user creating two identical
        # rooms in the same millisecond would collide. The later one moves on by a millisecond.
        # Within this process each user's creations get strictly increasing timestamps
        # (read and written with no await between: atomic on the event loop); across
        # processes a collision retries a little later.
        ts = max(now_ms(), self._last_create_ts.get(user_id, 0) + 1)
        self._last_create_ts[user_id] = ts
        for _attempt in range(5):
            try:
                room_id = await create_in_one_transaction(ts)
                break
            except asyncpg.UniqueViolationError as e:
                if e.constraint_name != "rooms_pkey":
                    raise
                ts = max(now_ms(), self._last_create_ts.get(user_id, 0)) + 1 + secrets.randbelow(50)
                self._last_create_ts[user_id] = ts
        else:
            raise errors.MatrixError(503, "M_UNKNOWN", "Could not allocate a room ID; try again")
        await self._notify(new_events)
        out: dict[str, Any] = {"room_id": room_id}
        if alias:
            out["room_alias"] = alias
        return out

    # -- sending ------------------------------------------------------------------
    async def send_message(
        self, requester: Requester, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> str:
        txn = (requester.user_id, requester.device_id, f"send:{room_id}", txn_id)
        # A retried transaction gets the event it made. Recent ones are remembered here; an older
        # one (or one from before a restart) hits the unique key in send_event, which answers the same.
        existing = self._recent_txns.get(txn)
        if existing:
            return existing
        if event_type == "m.room.message":
            body = content.get("body")
            if isinstance(body, str) and len(body) > self.max_body_chars:
                raise errors.too_large(f"Message body is longer than {self.max_body_chars} characters")
        await self._take_message_budget(requester.user_id)
        if event_type == "m.room.redaction":
            target = content.get("redacts")
            if isinstance(target, str):
                await self._check_redaction(requester.user_id, room_id, target)
            redaction = await self.send_event(
                requester.user_id, room_id, type=event_type, content=content,
                redacts=target if isinstance(target, str) else None, txn=txn,
            )
            self._remember_txn(txn, redaction.event.event_id)
            return redaction.event.event_id
        new = await self.send_event(requester.user_id, room_id, type=event_type, content=content, txn=txn)
        self._remember_txn(txn, new.event.event_id)
        return new.event.event_id

    def _remember_txn(self, txn: tuple[str, str, str, str], event_id: str) -> None:
        if len(self._recent_txns) >= 100_000:
            self._recent_txns.clear()
        self._recent_txns[txn] = event_id

    async def _take_message_budget(self, user_id: str) -> None:
        wait = await self.limiter.take(f"msg:{user_id}", self.config.rate_rule("messages_per_user"))
        if wait:
            raise errors.limit_exceeded(wait)

    async def send_state(
        self, requester: Requester, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        if event_type == "m.room.member":
            raise errors.bad_json("Use the membership endpoints to change membership")
        if event_type == "m.room.canonical_alias":
            await self._check_canonical_alias(room_id, content)
        current = await self.events.current_state_ids(room_id, [(event_type, state_key)])
        if (event_type, state_key) in current:
            prev = await self.events.get_event(current[(event_type, state_key)])
            if prev is not None and prev.event.content == content and prev.event.sender == requester.user_id:
                # Re-sending identical state is a no-op, as in Synapse.
                return prev.event_id
        new = await self.send_event(requester.user_id, room_id, type=event_type, content=content, state_key=state_key)
        return new.event.event_id

    async def _check_canonical_alias(self, room_id: str, content: dict[str, Any]) -> None:
        names = []
        if "alias" in content:
            names.append(content["alias"])
        alt = content.get("alt_aliases", [])
        if not isinstance(alt, list):
            raise errors.bad_json("'alt_aliases' must be a list")
        names.extend(alt)
        for name in names:
            if not isinstance(name, str) or not is_valid_room_alias(name):
                raise errors.MatrixError(400, "M_INVALID_PARAM", f"Invalid alias {name!r}")
            if name.endswith(":" + self.server_name):
                row = await self.aliases.get_alias(name)
                if row is None or row["room_id"] != room_id:
                    raise errors.MatrixError(400, "M_BAD_ALIAS", f"{name} does not point to this room")

    async def redact(
        self, requester: Requester, room_id: str, event_id: str, txn_id: str, reason: str | None
    ) -> str:
        txn = (requester.user_id, requester.device_id, f"redact:{room_id}", txn_id)
        existing = await self.events.event_for_txn(*txn)
        if existing:
            return existing
        await self._check_redaction(requester.user_id, room_id, event_id)
        content: dict[str, Any] = {}
        if reason is not None:
            content["reason"] = reason
        rv = await self.room_version(room_id)
        if rv.redacts_in_content:
            content["redacts"] = event_id
        new = await self.send_event(
            requester.user_id, room_id, type="m.room.redaction", content=content, redacts=event_id, txn=txn,
        )
        return new.event.event_id

    async def _check_redaction(self, user_id: str, room_id: str, target_id: str) -> None:
        target = await self.events.get_event(target_id)
        if target is None or target.event.room_id != room_id:
            raise errors.not_found("Unknown event")
        if target.event.sender == user_id:
            return
        state = await self.auth_state(room_id)
        rv = target.event.room_version
        pl = state.get(("m.room.power_levels", ""))
        level = get_user_power_level(user_id, state, rv)
        needed = get_named_level(pl.content if pl else None, "redact", room_version=rv)
        if level < needed:
            raise errors.forbidden("You may not redact other users' events")

    async def auth_state(self, room_id: str) -> dict[StateKey, Event]:
        ids = await self.events.current_state_ids(
            room_id, [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", "")]
        )
        stored = await self.events.get_events(ids.values())
        return {k: stored[v].event for k, v in ids.items() if v in stored}

    # -- membership -----------------------------------------------------------------
    async def resolve_room(self, room_id_or_alias: str) -> str:
        if room_id_or_alias.startswith("#"):
            row = await self.aliases.get_alias(room_id_or_alias)
            if row is None:
                raise errors.not_found("Room alias not found")
            return row["room_id"]
        if not is_valid_room_id(room_id_or_alias):
            raise errors.MatrixError(400, "M_INVALID_PARAM", "Invalid room ID or alias")
        return room_id_or_alias

    async def join(self, requester: Requester, room_id_or_alias: str, reason: str | None = None) -> str:
        room_id = await self.resolve_room(room_id_or_alias)
        rv = await self.room_version(room_id)
        user_id = requester.user_id
        current = await self.events.membership_of(room_id, user_id)
        if current is not None and current["membership"] == "join":
            return room_id
        profile = await self.accounts.get_profile(user_id)
        content = _member_content("join", profile, reason)
        state = await self.auth_state(room_id)
        join_rule_ev = state.get(("m.room.join_rules", ""))
        join_rule = join_rule_ev.content.get("join_rule") if join_rule_ev else None
        if join_rule in ("restricted", "knock_restricted") and rv.restricted_join_rule and (
            current is None or current["membership"] not in ("invite", "join")
        ):
            authoriser = await self._restricted_join_authoriser(room_id, user_id, state, rv)
            if authoriser is None:
                raise errors.forbidden("You are not allowed to join this room")
            content["join_authorised_via_users_server"] = authoriser
        await self.send_event(user_id, room_id, type="m.room.member", content=content, state_key=user_id)
        return room_id

    async def _restricted_join_authoriser(
        self, room_id: str, user_id: str, state: dict[StateKey, Event], rv: RoomVersion
    ) -> str | None:
        allow = state[("m.room.join_rules", "")].content.get("allow", [])
        allowed_rooms = [
            a.get("room_id") for a in allow if isinstance(a, dict) and a.get("type") == "m.room_membership"
        ]
        memberships = set(await self.events.rooms_for_user(user_id))
        if not any(r in memberships for r in allowed_rooms if isinstance(r, str)):
            return None
        pl = state.get(("m.room.power_levels", ""))
        invite_level = get_named_level(pl.content if pl else None, "invite", room_version=rv)
        for m in await self.events.members(room_id, ["join"]):
            if m["user_id"].endswith(":" + self.server_name) and get_user_power_level(m["user_id"], state, rv) >= invite_level:
                return m["user_id"]
        return None

    async def knock(self, requester: Requester, room_id_or_alias: str, reason: str | None = None) -> str:
        room_id = await self.resolve_room(room_id_or_alias)
        profile = await self.accounts.get_profile(requester.user_id)
        await self.send_event(
            requester.user_id, room_id, type="m.room.member",
            content=_member_content("knock", profile, reason), state_key=requester.user_id,
        )
        return room_id

    async def set_membership(
        self,
        requester: Requester,
        room_id: str,
        target: str,
        membership: str,
        reason: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """invite, leave (incl. kick), ban; unban is a leave by someone else of a banned user."""
        if not is_valid_user_id(target):
            raise errors.MatrixError(400, "M_INVALID_PARAM", "Invalid user ID")
        await self.room_version(room_id)
        if membership == "invite":
            if not await self.accounts.user_exists(target) and target.endswith(":" + self.server_name):
                raise errors.not_found("Unknown user")
            wait = await self.limiter.take(f"invite:{requester.user_id}", self.config.rate_rule("invites_per_user"))
            if wait:
                raise errors.limit_exceeded(wait)
        content: dict[str, Any] = {"membership": membership}
        if reason is not None:
            content["reason"] = reason
        if extra:
            content.update(extra)
        if membership == "leave" and target == requester.user_id:
            profile = await self.accounts.get_profile(target)
            current = await self.events.membership_of(room_id, target)
            if current is None or current["membership"] in ("leave", "ban"):
                if current is not None and current["membership"] == "leave":
                    return
                raise errors.forbidden("You are not in this room")
            del profile
        await self.send_event(requester.user_id, room_id, type="m.room.member", content=content, state_key=target)

    async def unban(self, requester: Requester, room_id: str, target: str, reason: str | None) -> None:
        current = await self.events.membership_of(room_id, target)
        if current is None or current["membership"] != "ban":
            raise errors.forbidden("The user is not banned")
        await self.set_membership(requester, room_id, target, "leave", reason)

    async def kick(self, requester: Requester, room_id: str, target: str, reason: str | None) -> None:
        current = await self.events.membership_of(room_id, target)
        if current is None or current["membership"] not in ("join", "invite", "knock"):
            raise errors.forbidden("The user is not in the room")
        await self.set_membership(requester, room_id, target, "leave", reason)

    async def forget(self, requester: Requester, room_id: str) -> None:
        current = await self.events.membership_of(room_id, requester.user_id)
        if current is None:
            raise errors.not_found("You were never in this room")
        if current["membership"] in ("join", "invite", "knock"):
            raise errors.MatrixError(400, "M_UNKNOWN", "Leave the room before forgetting it")
        await self.events.set_forgotten(room_id, requester.user_id)
        for hook in self.on_forget:
            hook(requester.user_id)

    async def leave_all_rooms(self, user_id: str) -> None:
        requester = Requester(user_id=user_id, device_id="")
        for room_id in await self.events.rooms_for_user(user_id, ("join", "invite", "knock")):
            try:
                await self.send_event(
                    user_id, room_id, type="m.room.member", content={"membership": "leave"}, state_key=user_id
                )
            except errors.MatrixError:
                log.warning("could not leave %s for %s", room_id, requester.user_id)

    async def propagate_profile(self, user_id: str) -> None:
        """Send a fresh member event into each joined room after a profile change."""
        profile = await self.accounts.get_profile(user_id)
        for room_id in await self.events.rooms_for_user(user_id):
            try:
                await self.send_event(
                    user_id, room_id, type="m.room.member", content=_member_content("join", profile),
                    state_key=user_id,
                )
            except errors.MatrixError:
                log.warning("could not update the profile of %s in %s", user_id, room_id)

    # -- reading ------------------------------------------------------------------
    async def require_member(self, user_id: str, room_id: str, *, allow_left: bool = False) -> str:
        """The user's membership; 403 unless joined (or, with allow_left, once joined)."""
        current = await self.events.membership_of(room_id, user_id)
        if current is not None and current["membership"] == "join":
            return "join"
        if allow_left and current is not None and current["membership"] in ("leave", "ban"):
            return current["membership"]
        if await self.events.get_room_version(room_id) is None:
            raise errors.forbidden("You are not a member of this room")
        if await self._world_readable(room_id):
            return "world_readable"
        raise errors.forbidden("You are not a member of this room")

    async def _world_readable(self, room_id: str) -> bool:
        ids = await self.events.current_state_ids(room_id, [("m.room.history_visibility", "")])
        if not ids:
            return False
        ev = await self.events.get_event(next(iter(ids.values())))
        return ev is not None and ev.event.content.get("history_visibility") == "world_readable"

    async def state_at_membership(self, user_id: str, room_id: str) -> tuple[dict[StateKey, str], int | None]:
        """Current state for members; for users who left, the state when they left."""
        current = await self.events.membership_of(room_id, user_id)
        if current is not None and current["membership"] in ("leave", "ban"):
            async with self.db.connection() as conn:
                group = await self.events.state_group_of(conn, current["event_id"])
            if group is not None:
                return await self.events.state_ids_for_group(group), current["stream_ordering"]
        return await self.events.current_state_ids(room_id), None

    async def joined_members(self, room_id: str) -> dict[str, Any]:
        rows = await self.events.members(room_id, ["join"])
        return {
            r["user_id"]: {"display_name": r["displayname"], "avatar_url": r["avatar_url"]} for r in rows
        }

    # -- aliases ---------------------------------------------------------------------
    async def create_alias(self, requester: Requester, alias: str, room_id: str) -> None:
        if not is_valid_room_alias(alias):
            raise errors.MatrixError(400, "M_INVALID_PARAM", "Invalid room alias")
        if not alias.endswith(":" + self.server_name):
            raise errors.MatrixError(400, "M_INVALID_PARAM", "Aliases must be on this server")
        await self.room_version(room_id)
        await self.require_member(requester.user_id, room_id)
        if not await self.aliases.create_alias(alias, room_id, requester.user_id):
            raise errors.MatrixError(409, "M_UNKNOWN", "Room alias already exists")

    async def delete_alias(self, requester: Requester, alias: str) -> None:
        row = await self.aliases.get_alias(alias)
        if row is None:
            raise errors.not_found("Room alias not found")
        if row["creator"] != requester.user_id and not requester.is_admin:
            state = await self.auth_state(row["room_id"])
            rv = await self.room_version(row["room_id"])
            pl = state.get(("m.room.power_levels", ""))
            need = get_named_level(pl.content if pl else None, "state_default", room_version=rv)
            if get_user_power_level(requester.user_id, state, rv) < need:
                raise errors.forbidden("You may not delete this alias")
        await self.aliases.delete_alias(alias)


def _member_content(membership: str, profile: Any, reason: str | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"membership": membership}
    if profile is not None:
        if profile["displayname"] is not None:
            content["displayname"] = profile["displayname"]
        if profile["avatar_url"] is not None:
            content["avatar_url"] = profile["avatar_url"]
    if reason is not None:
        content["reason"] = reason
    return content


def _default_power_levels(rv: RoomVersion, creator: str, preset: str, invite: list[str]) -> dict[str, Any]:
    users: dict[str, int] = {}
    if not rv.privileged_creators:
        users[creator] = 100
        if preset == "trusted_private_chat":
            for u in invite:
                users[u] = 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 150 if rv.privileged_creators else 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50 if preset == "public_chat" else 0,
        "historical": 100,
    }


def _check_sizes(event_type: str, state_key: str | None) -> None:
    if len(event_type.encode()) > MAX_TYPE_BYTES:
        raise errors.too_large("Event type is longer than 255 bytes")
    if state_key is not None and len(state_key.encode()) > MAX_TYPE_BYTES:
        raise errors.too_large("State key is longer than 255 bytes")
