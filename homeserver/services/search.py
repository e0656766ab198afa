"""Server-side message search (`POST /search`, category `room_events`) and the user directory.

A user finds only what they could read: the search runs over the rooms they
are or were in (not forgotten), stops at the point they left, and every hit is
passed through :class:`VisibilityFilter` (history visibility at the event)
before it is returned. Pages are cut by position (rank, stream_ordering), so
`next_batch` continues exactly after the last hit returned.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from homeserver import errors
from homeserver.config import Config
from homeserver.core.search import (
    BatchToken,
    RoomEventsCriteria,
    SearchRequestError,
    parse_room_events_request,
    type_pattern,
)
from homeserver.core.tokens import RoomPosition
from homeserver.services.auth import Requester
from homeserver.services.events import EventSerializer, VisibilityFilter
from homeserver.services.rooms import RoomService
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.search import MAX_STREAM, HitFilter, SearchHit, SearchStore

# `count` is exact up to this many hits, then this number, meaning "at least" (the spec allows an estimate):
# counting every hit of a very common word costs as much as ranking them.
COUNT_CAP = 1_000
# Fetch rounds per page when history visibility hides hits; a short page then carries next_batch.
MAX_ROUNDS = 5
DIRECTORY_DEFAULT_LIMIT = 10
DIRECTORY_MAX_LIMIT = 100


class SearchService:
    def __init__(
        self,
        store: SearchStore,
        events: EventStore,
        rooms: RoomService,
        serializer: EventSerializer,
        visibility: VisibilityFilter,
    ) -> None:
        self.store = store
        self.events = events
        self.rooms = rooms
        self.serializer = serializer
        self.visibility = visibility

    async def search(self, requester: Requester, body: dict[str, Any], next_batch: str | None) -> dict[str, Any]:
        categories = body.get("search_categories")
        if not isinstance(categories, dict):
            raise errors.bad_json("'search_categories' is required and must be an object")
        try:
            batch = BatchToken.decode(next_batch) if next_batch else None
            criteria = (
                parse_room_events_request(categories["room_events"])
                if categories.get("room_events") is not None else None
            )
        except SearchRequestError as e:
            if next_batch and str(e) == "Invalid next_batch":
                raise errors.invalid_param(str(e)) from None
            raise errors.bad_json(str(e)) from None
        out: dict[str, Any] = {}
        if criteria is not None:
            if batch is not None and batch.order_by != criteria.order_by:
                raise errors.invalid_param("next_batch belongs to a search with another order_by")
            out["room_events"] = await self._room_events(requester.user_id, criteria, batch)
        return {"search_categories": out}

    # -- room_events ---------------------------------------------------------------
    async def _room_events(
        self, user_id: str, c: RoomEventsCriteria, batch: BatchToken | None
    ) -> dict[str, Any]:
        f = c.filter
        scope = batch.scope if batch is not None else None
        rooms: list[str] = []
        bounds: list[int] = []
        for r in await self.store.rooms_of_user(user_id):
            room_id = r["room_id"]
            if f.rooms is not None and room_id not in f.rooms:
                continue
            if room_id in f.not_rooms:
                continue
            if scope is not None and scope[0] == "room_id" and room_id != scope[1]:
                continue
            rooms.append(room_id)
            # Nothing after a leave or ban can be visible to them: stop the index scan there.
            bounds.append(r["stream_ordering"] if r["membership"] in ("leave", "ban") else MAX_STREAM)
        senders = f.senders
        if scope is not None and scope[0] == "sender":
            senders = tuple(s for s in (senders if senders is not None else (scope[1],)) if s == scope[1])
        hit_filter = HitFilter(
            keys=c.keys,
            senders=senders,
            not_senders=f.not_senders,
            type_patterns=[type_pattern(t) for t in f.types] if f.types is not None else None,
            not_type_patterns=[type_pattern(t) for t in f.not_types],
            contains_url=f.contains_url,
        )

        page = f.limit
        after = (batch.rank, batch.stream_ordering) if batch is not None else None
        hits: list[tuple[SearchHit, StoredEvent]] = []
        more = False
        for _ in range(MAX_ROUNDS):
            want = page - len(hits)
            fetch = want * 2 + 5
            found = await self.store.search(
                rooms, bounds, c.search_term, hit_filter, order_by=c.order_by, after=after, limit=fetch
            )
            visible = await self._visible(user_id, found)
            consumed = 0
            for h in found:
                consumed += 1
                after = (h.rank, h.stream_ordering)
                stored = visible.get(h.event_id)
                if stored is not None:
                    hits.append((h, stored))
                    if len(hits) == page:
                        break
            exhausted = len(found) < fetch
            more = not (exhausted and consumed == len(found))
            if len(hits) == page or not more:
                break

        serialized = await self.serializer.serialize([s for _, s in hits])
        results: list[dict[str, Any]] = []
        for (h, _), ev in zip(hits, serialized):
            results.append({"rank": h.rank, "result": ev})
        if c.event_context is not None and hits:
            for entry, (h, stored) in zip(results, hits):
                entry["context"] = await self._context(user_id, stored, c)

        out: dict[str, Any] = {
            "results": results,
            "count": await self.store.count(rooms, bounds, c.search_term, hit_filter, COUNT_CAP),
            "highlights": sorted(await self.store.highlights(c.search_term, [_text(s) for _, s in hits])),
        }
        token = None
        if more and after is not None:
            token = BatchToken(c.order_by, after[0], after[1], scope)
            out["next_batch"] = token.encode()
        if c.include_state:
            state: dict[str, Any] = {}
            for room_id in dict.fromkeys(h.room_id for h, _ in hits):
                ids, _ = await self.rooms.state_at_membership(user_id, room_id)
                stored_state = await self.events.get_events(ids.values())
                state[room_id] = await self.serializer.serialize(
                    sorted(stored_state.values(), key=lambda s: s.stream_ordering)
                )
            out["state"] = state
        if c.group_by:
            groups: dict[str, dict[str, Any]] = {}
            for key in c.group_by:
                by_value: dict[str, dict[str, Any]] = {}
                for h, _ in hits:
                    value = h.room_id if key == "room_id" else h.sender
                    group = by_value.get(value)
                    if group is None:
                        group = by_value[value] = {"results": [], "order": len(by_value) + 1}
                        if token is not None:
                            group["next_batch"] = BatchToken(
                                c.order_by, token.rank, token.stream_ordering, (key, value)
                            ).encode()
                    group["results"].append(h.event_id)
                groups[key] = by_value
            out["groups"] = groups
        return out

    async def _visible(self, user_id: str, found: list[SearchHit]) -> dict[str, StoredEvent]:
        stored = await self.events.get_events([h.event_id for h in found])
        by_room: dict[str, list[StoredEvent]] = defaultdict(list)
        for h in found:
            s = stored.get(h.event_id)
            if s is not None and s.redacted_by is None:
                by_room[h.room_id].append(s)
        visible: dict[str, StoredEvent] = {}
        for room_id, events in by_room.items():
            for s in await self.visibility.filter(user_id, room_id, events):
                visible[s.event_id] = s
        return visible

    async def _context(self, user_id: str, stored: StoredEvent, c: RoomEventsCriteria) -> dict[str, Any]:
        assert c.event_context is not None
        ec = c.event_context
        room_id = stored.event.room_id
        here = (stored.topological_ordering, stored.stream_ordering)
        before_raw = await self.events.room_events_between(
            room_id, from_topo=here, to_topo=None, backwards=True, limit=ec.before_limit
        ) if ec.before_limit else []
        after_raw = await self.events.room_events_between(
            room_id, from_topo=here, to_topo=None, backwards=False, limit=ec.after_limit
        ) if ec.after_limit else []
        before = await self.visibility.filter(user_id, room_id, before_raw)
        after = await self.visibility.filter(user_id, room_id, after_raw)
        first = before_raw[-1] if before_raw else stored
        last = after_raw[-1] if after_raw else stored
        ctx: dict[str, Any] = {
            "events_before": await self.serializer.serialize(before),
            "events_after": await self.serializer.serialize(after),
            "start": RoomPosition(stream=first.stream_ordering, topological=first.topological_ordering).encode(),
            "end": RoomPosition(stream=last.stream_ordering, topological=last.topological_ordering).encode(),
        }
        if ec.include_profile:
            senders = list(dict.fromkeys(s.event.sender for s in [*before, stored, *after]))
            member_ids = await self.store.member_events_at([(stored.event_id, u) for u in senders])
            members = await self.events.get_events(member_ids.values())
            profiles: dict[str, Any] = {}
            for (_, user), member_id in member_ids.items():
                m = members.get(member_id)
                if m is None:
                    continue
                content = m.event.content if m.redacted_by is None else {}
                profile = {k: content[k] for k in ("displayname", "avatar_url") if isinstance(content.get(k), str)}
                profiles[user] = profile
            ctx["profile_info"] = profiles
        return ctx


def _text(s: StoredEvent) -> str:
    content = s.event.content
    value = content.get({"m.room.message": "body", "m.room.name": "name"}.get(s.event.type, "topic"))
    return value if isinstance(value, str) else ""


class UserDirectoryService:
    """`POST /user_directory/search`: local users who share a room with the searcher or sit in
    a public or world-readable room (or every local user with `user_directory.search_all_users`)."""

    def __init__(self, config: Config, store: SearchStore) -> None:
        self.store = store
        self.search_all = bool(config.get("user_directory.search_all_users", False))

    async def search(self, requester: Requester, body: dict[str, Any]) -> dict[str, Any]:
        term = body.get("search_term")
        if not isinstance(term, str):
            raise errors.bad_json("'search_term' is required and must be a string")
        limit = body.get("limit", DIRECTORY_DEFAULT_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise errors.bad_json("'limit' must be a non-negative integer")
        limit = min(limit, DIRECTORY_MAX_LIMIT)
        term = term.strip().lower()
        if not term or limit == 0:
            return {"results": [], "limited": False}
        kwargs = {"search_all": self.search_all}
        # Exact and prefix matches rank above substrings: when they fill the page, skip the substring pass.
        rows = await self.store.search_users(requester.user_id, term, limit + 1, substring=False, **kwargs)
        if len(rows) <= limit:
            rows = await self.store.search_users(requester.user_id, term, limit + 1, substring=True, **kwargs)
        results = []
        for r in rows[:limit]:
            entry: dict[str, Any] = {"user_id": r["user_id"]}
            if r["displayname"] is not None:
                entry["display_name"] = r["displayname"]
            if r["avatar_url"] is not None:
                entry["avatar_url"] = r["avatar_url"]
            results.append(entry)
        return {"results": results, "limited": len(rows) > limit}
