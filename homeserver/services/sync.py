"""`/sync`: what changed for a user between two sync tokens, and waiting until something does.

A sync captures the current token first (after registering its waiter, so no
update can slip between the two), computes every section up to that token, and
if nothing is there waits on the notifier and computes again. Every section reads
only positions at or below the captured token, so the next sync from
`next_batch` neither repeats nor skips anything.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from homeserver import errors
from homeserver.core.events import StateKey
from homeserver.core.push_rules import render_ruleset
from homeserver.core.sync_filter import SyncFilter, apply_event_fields
from homeserver.core.tokens import RoomPosition, SyncToken, TokenError
from homeserver.services.auth import Requester
from homeserver.services.events import EventSerializer, VisibilityFilter
from homeserver.services.notifier import Notifier
from homeserver.services.stream_cache import EventStreamCache
from homeserver.services.userdata import (
    AccountDataService,
    FilterService,
    PresenceService,
    ReceiptService,
    TypingService,
)
from homeserver.storage.accounts import AccountStore
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.userdata import UserDataStore

log = logging.getLogger(__name__)

STRIPPED_STATE_TYPES = (
    ("m.room.create", ""),
    ("m.room.join_rules", ""),
    ("m.room.name", ""),
    ("m.room.avatar", ""),
    ("m.room.canonical_alias", ""),
    ("m.room.encryption", ""),
    ("m.room.topic", ""),
)


@dataclass
class SyncParams:
    sync_filter: SyncFilter
    since: SyncToken | None
    full_state: bool
    set_presence: str | None
    use_state_after: bool


class SyncService:
    def __init__(
        self,
        *,
        events: EventStore,
        serializer: EventSerializer,
        visibility: VisibilityFilter,
        notifier: Notifier,
        filters: FilterService,
        typing: TypingService,
        receipts: ReceiptService,
        account_data: AccountDataService,
        presence: PresenceService,
        userdata: UserDataStore,
        accounts: AccountStore,
        max_timeout_ms: int,
        cache: EventStreamCache,
        push: Any = None,
    ) -> None:
        self.cache = cache
        self.events = events
        self.serializer = serializer
        self.visibility = visibility
        self.notifier = notifier
        self.filters = filters
        self.typing = typing
        self.receipts = receipts
        self.account_data = account_data
        self.presence = presence
        self.userdata = userdata
        self.accounts = accounts
        self.max_timeout_ms = max_timeout_ms
        self.push = push  # PushService: the unread counters
        # Optional providers other modules plug in (E2EE: to-device, device lists, key counts).
        self.extensions: list[Any] = []

    # -- entry point ---------------------------------------------------------------
    async def sync(self, requester: Requester, args: dict[str, str]) -> dict[str, Any]:
        params = await self.parse_params(requester.user_id, args)
        try:
            timeout_ms = int(args.get("timeout", "0"))
        except ValueError:
            raise errors.MatrixError(400, "M_INVALID_PARAM", "'timeout' must be an integer") from None
        timeout_ms = max(0, min(timeout_ms, self.max_timeout_ms))
        await self.presence.on_sync(requester.user_id, params.set_presence)
        return await self.sync_until(
            requester, params.sync_filter, params.since, timeout_ms,
            full_state=params.full_state, use_state_after=params.use_state_after,
        )

    async def parse_params(self, user_id: str, args: Mapping[str, str | None]) -> SyncParams:
        """The `/sync` query parameters shared by long-poll and the streaming transports."""
        sync_filter = await self.filters.resolve(user_id, args.get("filter"))
        since: SyncToken | None = None
        raw_since = args.get("since")
        if raw_since:
            try:
                since = SyncToken.decode(raw_since)
            except TokenError:
                raise errors.MatrixError(400, "M_INVALID_PARAM", "Invalid 'since' token") from None
        full_state = (args.get("full_state") or "false").lower() == "true"
        set_presence = args.get("set_presence")
        if set_presence is not None and set_presence not in ("online", "offline", "unavailable"):
            raise errors.MatrixError(400, "M_INVALID_PARAM", "Invalid 'set_presence'")
        use_state_after = (args.get("use_state_after") or "false").lower() == "true"
        return SyncParams(sync_filter, since, full_state, set_presence, use_state_after)

    async def sync_until(
        self,
        requester: Requester,
        sync_filter: SyncFilter,
        since: SyncToken | None,
        timeout_ms: int,
        *,
        full_state: bool = False,
        use_state_after: bool = False,
    ) -> dict[str, Any]:
        """Compute a sync response, long-polling up to `timeout_ms` for a non-empty one."""
        waiter = self.notifier.register(requester.user_id)
        try:
            deadline = time.monotonic() + timeout_ms / 1000
            while True:
                waiter.clear()
                now = self.notifier.current_token()
                if since is not None:
                    # A token from the future (another worker, a restart) never rewinds us.
                    now = now.advance(since)
                    remaining = deadline - time.monotonic()
                    if (not full_state and not self.notifier.anything_for(requester.user_id, since)
                            and remaining > 0 and not self.notifier.closing):
                        # No update for this user past the token: nothing can be new, so wait first.
                        if await self.notifier.wait(waiter, remaining):
                            continue
                        now = self.notifier.current_token().advance(since)
                response = await self.compute(requester, sync_filter, since, now, full_state, use_state_after)
                remaining = deadline - time.monotonic()
                if since is None or full_state or not is_empty(response) or remaining <= 0 or self.notifier.closing:
                    return response
                if not await self.notifier.wait(waiter, remaining):
                    return response
        finally:
            self.notifier.unregister(waiter)

    # -- computing one response ------------------------------------------------------
    async def compute(
        self,
        requester: Requester,
        f: SyncFilter,
        since: SyncToken | None,
        now: SyncToken,
        full_state: bool,
        use_state_after: bool,
    ) -> dict[str, Any]:
        user_id = requester.user_id
        since_events = since.events if since else 0
        memberships = await self._memberships(user_id, now.events)
        ignored = await self.account_data.ignored_users(user_id)

        join_rooms: list[str] = []
        joined_since: dict[str, int] = {}  # joined room -> position of the user's join
        full_rooms: set[str] = set()
        invite: dict[str, Any] = {}
        knock: dict[str, Any] = {}
        leave_rooms: list[tuple[str, int]] = []
        for m in memberships:
            room_id = m["room_id"]
            if not f.room.allows_room(room_id):
                continue
            changed = since is None or m["stream_ordering"] > since_events
            membership = m["membership"]
            if membership == "join":
                join_rooms.append(room_id)
                joined_since[room_id] = m["stream_ordering"]
                if since is None or full_state or changed:
                    full_rooms.add(room_id)
            elif membership == "invite" and changed:
                if m["sender"] in ignored:
                    continue
                invite[room_id] = {"invite_state": {"events": await self._stripped_state(room_id, m["event_id"])}}
            elif membership == "knock" and changed:
                knock[room_id] = {"knock_state": {"events": await self._stripped_state(room_id, m["event_id"])}}
            elif membership in ("leave", "ban"):
                if (since is not None and changed) or (f.room.include_leave and (since is None or full_state)):
                    leave_rooms.append((room_id, m["stream_ordering"]))

        rooms: dict[str, Any] = {}
        join = await self._joined_rooms(requester, f, since, now, join_rooms, full_rooms, ignored, use_state_after,
                                        joined_since)
        if join:
            rooms["join"] = join
        if invite:
            rooms["invite"] = invite
        if knock:
            rooms["knock"] = knock
        leave = await self._left_rooms(requester, f, since, leave_rooms, ignored)
        if leave:
            rooms["leave"] = leave

        response: dict[str, Any] = {"next_batch": now.encode()}
        if rooms:
            response["rooms"] = rooms
        account_data = await self._global_account_data(user_id, f, since, now)
        if account_data:
            response["account_data"] = {"events": account_data}
        # Streams with no update for this user since the token cost no query. A change of the
        # user's own rooms changes whose presence they see: then presence is read anyway.
        if self.presence.enabled and (
            since is None or self.notifier.moved_for(user_id, "presence", since.presence)
            or self.cache.user_membership_changed_after(user_id, since.events)
        ):
            presence = await self.presence.presence_events(user_id, since.presence if since else 0, now.presence)
            presence = [p for p in presence if f.presence.matches(p) and p["sender"] not in ignored]
            if f.presence.limit is not None:
                presence = presence[: f.presence.limit]
            if presence:
                response["presence"] = {"events": presence}
        next_token = now
        for ext in self.extensions:
            next_token = await ext.add_to_sync(requester, since, now, next_token, response)
        response["next_batch"] = next_token.encode()
        return response

    async def _memberships(self, user_id: str, at: int) -> list[Any]:
        rows = self.cache.user_memberships(user_id, at)
        if rows is None:
            token = self.cache.user_memberships_token(user_id)
            rows = list(await self.events.user_memberships_at(user_id, at))
            self.cache.store_user_memberships(user_id, at, rows, token)
        return rows

    async def _stripped_state(self, room_id: str, membership_event_id: str) -> list[dict[str, Any]]:
        ids = await self.events.current_state_ids(room_id, STRIPPED_STATE_TYPES)
        membership = await self.events.get_event(membership_event_id)
        stored = await self.events.get_events(ids.values())
        out = []
        for s in stored.values():
            out.append(_stripped(s))
        if membership is not None:
            inviter = membership.event.sender
            inviter_ids = await self.events.current_state_ids(room_id, [("m.room.member", inviter)])
            if inviter_ids:
                inv = await self.events.get_events(inviter_ids.values())
                out.extend(_stripped(s) for s in inv.values())
            out.append(_stripped(membership))
        return out

    async def _joined_rooms(
        self,
        requester: Requester,
        f: SyncFilter,
        since: SyncToken | None,
        now: SyncToken,
        room_ids: list[str],
        full_rooms: set[str],
        ignored: frozenset[str],
        use_state_after: bool,
        joined_since: dict[str, int],
    ) -> dict[str, Any]:
        if not room_ids:
            return {}
        user_id = requester.user_id
        limit = f.room.timeline.limit if f.room.timeline.limit is not None else 10
        since_events = since.events if since else 0
        windows: dict[str, list[StoredEvent]] = {}
        unknown: list[str] = []
        for room_id in room_ids:
            if room_id in full_rooms:
                continue
            window = self.cache.window(room_id, since_events, now.events, limit)
            if window is None:
                unknown.append(room_id)
            elif window:
                windows[room_id] = window
        if unknown:
            windows.update(await self.events.timeline_windows(unknown, since_events, now.events, limit))
        for room_id in full_rooms:
            latest = await self.events.latest_room_events(room_id, now.events, limit + 1)
            windows[room_id] = latest

        typing = self.typing.typing_events(room_ids, since.typing if since else 0)
        receipts: dict[str, dict[str, Any]] = {}
        if since is None or self.notifier.moved_for(user_id, "receipts", since.receipts):
            receipts = await self.receipts.receipt_events(
                user_id, room_ids, since.receipts if since else 0, now.receipts
            )
        if since is None:
            room_data_rows = await self.userdata.room_account_data(user_id, room_ids)
        elif not self.notifier.moved_for(user_id, "account_data", since.account_data):
            room_data_rows = []
        else:
            room_data_rows = [
                r for r in await self.userdata.account_data_since(user_id, since.account_data, now.account_data)
                if r["room_id"]
            ]
        room_data: dict[str, list[dict[str, Any]]] = {}
        for r in room_data_rows:
            if r["room_id"] in room_ids and f.room.account_data.matches({"type": r["type"], "room_id": r["room_id"]}):
                room_data.setdefault(r["room_id"], []).append({"type": r["type"], "content": r["content"]})

        counts: dict[str, tuple[int, int]] | None = None
        out: dict[str, Any] = {}
        unread_rooms: list[str] = []
        for room_id in room_ids:
            window = windows.get(room_id, [])
            full = room_id in full_rooms
            limited = len(window) > limit
            if limited:
                window = window[-limit:] if limit else []
            timeline_events = [
                s for s in window
                if f.room.timeline.matches(s.event.pdu)
                and s.event.sender not in ignored
            ]
            joined_at = joined_since.get(room_id)
            if full or joined_at is None or not window or joined_at >= window[0].stream_ordering:
                timeline_events = await self.visibility.filter(user_id, room_id, timeline_events)
            # else: joined before every event of the window and still joined: all of them are visible.
            ephemeral = []
            if room_id in typing and f.room.ephemeral.matches({"type": "m.typing", "room_id": room_id}):
                ephemeral.append(typing[room_id])
            if room_id in receipts and f.room.ephemeral.matches({"type": "m.receipt", "room_id": room_id}):
                ephemeral.append(receipts[room_id])
            account_data = room_data.get(room_id, [])
            if not full and not window and not ephemeral and not account_data:
                continue
            state_ids = await self._state_for_room(
                room_id, window, full, limited, since_events, now.events, f, user_id, timeline_events, use_state_after
            )
            state_stored = await self.events.get_events(state_ids)
            state_list = sorted(state_stored.values(), key=lambda s: s.stream_ordering)
            state_list = [s for s in state_list if f.room.state.matches(s.event.pdu)]
            first = window[0] if window else None
            room: dict[str, Any] = {
                "timeline": {
                    "events": await self._serialize(requester, timeline_events, f),
                    "limited": limited,
                },
                "ephemeral": {"events": ephemeral},
                "account_data": {"events": account_data},
            }
            if first is not None:
                room["timeline"]["prev_batch"] = RoomPosition(
                    stream=first.stream_ordering, topological=first.topological_ordering
                ).encode()
            else:
                room["timeline"]["prev_batch"] = RoomPosition(stream=now.events).encode() if since is None else (
                    RoomPosition(stream=since_events).encode()
                )
            state_key = "state_after" if use_state_after else "state"
            room[state_key] = {"events": await self._serialize(requester, state_list, f, timeline=False)}
            if full or any(s.event.type == "m.room.member" for s in window):
                if counts is None:
                    counts = await self.events.member_counts(room_ids)
                joined, invited = counts.get(room_id, (0, 0))
                room["summary"] = {
                    "m.joined_member_count": joined,
                    "m.invited_member_count": invited,
                    "m.heroes": await self.events.heroes(room_id, user_id),
                }
            out[room_id] = room
            unread_rooms.append(room_id)
        await self._add_unread_counts(user_id, unread_rooms, now.events, out,
                                      f.room.timeline.unread_thread_notifications)
        return out

    async def _state_for_room(
        self,
        room_id: str,
        window: list[StoredEvent],
        full: bool,
        limited: bool,
        since_events: int,
        upto: int,
        f: SyncFilter,
        user_id: str,
        timeline: list[StoredEvent],
        use_state_after: bool,
    ) -> list[str]:
        lazy = f.room.state.lazy_load_members
        if use_state_after:
            group = await self.events.state_group_at(room_id, upto)
            ids = await self.events.state_ids_for_group(group) if group is not None else {}
            if not full:
                ids = {k: v for k, v in ids.items() if k in await self.events.state_changes_between(room_id, since_events, upto + 1)}
        elif full:
            if window:
                group = await self.events.state_group_at(room_id, window[0].stream_ordering - 1)
            else:
                group = await self.events.state_group_at(room_id, upto)
            ids = await self.events.state_ids_for_group(group) if group is not None else {}
        elif limited and window:
            ids = await self.events.state_changes_between(room_id, since_events, window[0].stream_ordering)
        else:
            ids = {}
        if lazy:
            senders = {s.event.sender for s in timeline}
            wanted = senders | {user_id}
            ids = {k: v for k, v in ids.items() if k[0] != "m.room.member" or k[1] in wanted}
            if not full and timeline:
                # Make sure senders' memberships are known even without a gap. (The user's own is
                # in their first sync of the room, and any change of it in the timeline or state.)
                missing = [("m.room.member", u) for u in senders if ("m.room.member", u) not in ids]
                if missing:
                    at = window[0].stream_ordering - 1
                    members = await self._member_ids(room_id, [k[1] for k in missing], at)
                    in_timeline = {s.event_id for s in timeline}
                    for k in missing:
                        if k in members and members[k] not in in_timeline:
                            ids[k] = members[k]
        timeline_ids = {s.event_id for s in window}
        return [v for v in ids.values() if v not in timeline_ids]

    async def prepare_wake(self, room_id: str, sender: str, at: int) -> None:
        """Before the syncs of a room's members wake for an event at `at`: load what every
        lazy-loading one of them will read, the room's membership map and the sender's membership
        event. Otherwise the first syncs to ask hold the others back on a query after all woke."""
        await self._ensure_members(room_id)
        sender_member = self.cache.member_events(room_id, [sender], at)
        if sender_member:
            await self.events.get_events(sender_member.values())

    async def _ensure_members(self, room_id: str) -> None:
        if not self.cache.has_members(room_id):
            await self.cache.load_members(room_id, functools.partial(self.events.members_with_positions, room_id))

    async def _member_ids(self, room_id: str, users: list[str], at: int) -> dict[StateKey, str]:
        """The membership event IDs of `users` in the room's state at position `at`."""
        known = self.cache.member_events(room_id, users, at)
        if known is None and not self.cache.has_members(room_id):
            await self._ensure_members(room_id)
            known = self.cache.member_events(room_id, users, at)
        if known is not None:
            return {("m.room.member", u): eid for u, eid in known.items()}
        group = await self.events.state_group_at(room_id, at)
        if group is None:
            return {}
        return await self.events.state_ids_for_group(group, types=["m.room.member"])

    async def _serialize(self, requester: Requester, stored: list[StoredEvent], f: SyncFilter,
                         *, timeline: bool = True) -> list[dict[str, Any]]:
        # transaction_id marks the client's own sends in its timeline; state needs none.
        own = [s.event_id for s in stored if s.event.sender == requester.user_id] if timeline else []
        txns = await self.events.txn_ids_for_events(requester.user_id, requester.device_id, own) if own else {}
        out = await self.serializer.serialize(stored, txn_ids=txns, include_room_id=False)
        if f.event_fields is not None:
            out = [apply_event_fields(e, f.event_fields) for e in out]
        return out

    async def _left_rooms(
        self,
        requester: Requester,
        f: SyncFilter,
        since: SyncToken | None,
        rooms: list[tuple[str, int]],
        ignored: frozenset[str],
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        limit = f.room.timeline.limit if f.room.timeline.limit is not None else 10
        since_events = since.events if since else 0
        for room_id, left_at in rooms:
            window = await self.events.timeline_windows([room_id], since_events, left_at, limit)
            events = window.get(room_id, [])
            limited = len(events) > limit
            if limited:
                events = events[-limit:]
            visible = [
                s for s in events
                if f.room.timeline.matches(s.event.pdu)
                and s.event.sender not in ignored
            ]
            visible = await self.visibility.filter(requester.user_id, room_id, visible)
            state_ids: dict[Any, str] = {}
            if events:
                group = await self.events.state_group_at(room_id, events[0].stream_ordering - 1)
                if group is not None and (since is None or limited):
                    state_ids = await self.events.state_ids_for_group(group)
            state_stored = await self.events.get_events(
                [v for v in state_ids.values() if v not in {s.event_id for s in events}]
            )
            room: dict[str, Any] = {
                "timeline": {"events": await self._serialize(requester, visible, f), "limited": limited},
                "state": {"events": await self._serialize(
                    requester, sorted(state_stored.values(), key=lambda s: s.stream_ordering), f, timeline=False)},
                "account_data": {"events": []},
            }
            if events:
                room["timeline"]["prev_batch"] = RoomPosition(
                    stream=events[0].stream_ordering, topological=events[0].topological_ordering
                ).encode()
            out[room_id] = room
        return out

    async def _global_account_data(
        self, user_id: str, f: SyncFilter, since: SyncToken | None, now: SyncToken
    ) -> list[dict[str, Any]]:
        if since is not None and not self.notifier.moved_for(user_id, "account_data", since.account_data):
            return []
        rows = await self.userdata.account_data_since(user_id, since.account_data if since else 0, now.account_data)
        out = [
            {"type": r["type"], "content": r["content"]}
            for r in rows if not r["room_id"] and f.account_data.matches({"type": r["type"]})
        ]
        if since is None and f.account_data.matches({"type": "m.push_rules"}) and not any(
            e["type"] == "m.push_rules" for e in out
        ):
            # Clients read their rules from the first sync; until a user changes one, they are the defaults.
            out.append({"type": "m.push_rules", "content": {"global": render_ruleset(None, user_id)}})
        if f.account_data.limit is not None:
            out = out[: f.account_data.limit]
        return out

    async def _add_unread_counts(
        self, user_id: str, room_ids: list[str], upto: int, out: dict[str, Any], per_thread: bool = False
    ) -> None:
        # Counters kept by PushService as events commit and receipts arrive: a few integers per room.
        if not room_ids or self.push is None:
            return
        counts = await self.push.unread_counts(user_id, room_ids, per_thread)
        for room_id in room_ids:
            main, threads = counts[room_id]
            out[room_id]["unread_notifications"] = main
            if per_thread:
                out[room_id]["unread_thread_notifications"] = threads


def _stripped(s: StoredEvent) -> dict[str, Any]:
    pdu = s.event.pdu
    return {"type": pdu["type"], "state_key": pdu.get("state_key", ""), "content": pdu.get("content", {}),
            "sender": pdu["sender"]}


# Fields every response carries (E2EE key counts): they alone do not end a long-poll.
ALWAYS_PRESENT = frozenset({"next_batch", "device_one_time_keys_count", "device_unused_fallback_key_types"})


def is_empty(response: dict[str, Any]) -> bool:
    """True when a response carries nothing but its token (a long-poll that timed out)."""
    return not any(k not in ALWAYS_PRESENT and v for k, v in response.items())

