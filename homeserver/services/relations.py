"""Relationships between events: bundled aggregations, /relations and /threads.

Bundled aggregations (CS API § Aggregations of child events, v1.19) are
computed for a page of events at once by :meth:`RelationsService.bundle`,
which returns ``{event_id: m.relations value}`` for the serializer to place in
``unsigned``. Any read path (``/messages``, ``/event``, ``/context``,
``/sync``) calls it the same way:

    bundles = await relations.bundle(stored_events, user_id)
    await serializer.serialize(stored_events, relations=bundles)

What is bundled:

* ``m.replace``: the most recent *valid* edit (same room, sender and type, no
  state keys, the original not itself an edit, ``m.new_content`` present
  unless encrypted), by ``origin_server_ts`` then event ID; never for a
  redacted original. The original's content is not replaced (spec v1.7+).
* ``m.reference``: ``{"chunk": [{"event_id": ...}, ...]}``.
* ``m.thread``: ``latest_event`` (serialized, with its own edit bundled),
  ``count`` and ``current_user_participated``.
* ``m.annotation`` is not aggregated (the spec says so explicitly).

Not done: events of ignored users are still counted (ignoring lives in
account data, which is not wired here yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver import errors
from homeserver.core.tokens import RoomPosition, TokenError
from homeserver.services.auth import Requester
from homeserver.services.events import EventSerializer, VisibilityFilter
from homeserver.services.rooms import RoomService
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.relations import MAX_RECURSION_DEPTH, RelationStore

MAX_PAGE = 1000
DEFAULT_RELATIONS_LIMIT = 50
DEFAULT_THREADS_LIMIT = 10


def _relation(s: StoredEvent) -> dict[str, Any] | None:
    rel = s.event.content.get("m.relates_to")
    return rel if isinstance(rel, dict) else None


def is_valid_replacement(original: StoredEvent, edit: StoredEvent) -> bool:
    """The spec's validity rules for an m.replace event (§ Validity of replacement events)."""
    o, e = original.event, edit.event
    if o.room_id != e.room_id or o.sender != e.sender or o.type != e.type:
        return False
    if o.is_state or e.is_state:
        return False
    orig_rel = _relation(original)
    if orig_rel is not None and orig_rel.get("rel_type") == "m.replace":
        return False
    # An encrypted edit carries m.new_content inside its ciphertext, out of our sight.
    if e.type != "m.room.encrypted" and not isinstance(e.content.get("m.new_content"), dict):
        return False
    return True


def _int_arg(args: dict[str, str], name: str, default: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.invalid_param(f"'{name}' must be an integer") from None
    if value < 0:
        raise errors.invalid_param(f"'{name}' must not be negative")
    return min(value, MAX_PAGE)


class RelationsService:
    def __init__(
        self,
        rooms: RoomService,
        events: EventStore,
        store: RelationStore,
        serializer: EventSerializer,
        visibility: VisibilityFilter,
    ) -> None:
        self.rooms = rooms
        self.events = events
        self.store = store
        self.serializer = serializer
        self.visibility = visibility

    # -- bundled aggregations -------------------------------------------------
    async def bundle(
        self, events: Sequence[StoredEvent], user_id: str, *, threads: bool = True
    ) -> dict[str, dict[str, Any]]:
        """The `m.relations` value for each event that has aggregatable children."""
        out: dict[str, dict[str, Any]] = {}
        if not events:
            return out
        ids = [s.event_id for s in events]

        editable = {s.event_id: s for s in events if not s.redacted_by}
        chosen: dict[str, StoredEvent] = {}
        for edit in await self.store.replacement_candidates(list(editable)):
            rel = _relation(edit)
            target = rel.get("event_id") if rel else None
            if not isinstance(target, str) or target in chosen or target not in editable:
                continue
            if is_valid_replacement(editable[target], edit):
                chosen[target] = edit
        if chosen:
            edits = list(chosen.values())
            serialized = await self.serializer.serialize(edits)
            by_id = {s.event_id: ev for s, ev in zip(edits, serialized)}
            for target, edit in chosen.items():
                out.setdefault(target, {})["m.replace"] = by_id[edit.event_id]

        for row in await self.store.references(ids):
            ref = out.setdefault(row["relates_to_id"], {}).setdefault("m.reference", {"chunk": []})
            ref["chunk"].append({"event_id": row["event_id"]})

        if threads:
            summaries = await self.store.thread_summaries(ids, user_id)
            if summaries:
                roots = {s.event_id: s for s in events}
                latest = await self.events.get_events([r["latest"] for r in summaries])
                latest_list = [latest[r["latest"]] for r in summaries if r["latest"] in latest]
                # The latest event carries its own aggregations (an edit of it, say); threads
                # cannot nest, so one level is all there is.
                inner = await self.bundle(latest_list, user_id, threads=False)
                serialized = await self.serializer.serialize(latest_list, relations=inner)
                latest_json = {s.event_id: ev for s, ev in zip(latest_list, serialized)}
                for r in summaries:
                    root = roots.get(r["root"])
                    if r["latest"] not in latest_json or root is None:
                        continue
                    out.setdefault(r["root"], {})["m.thread"] = {
                        "latest_event": latest_json[r["latest"]],
                        "count": r["count"],
                        "current_user_participated": bool(r["participated"]) or root.event.sender == user_id,
                    }
        return out

    async def serialize(
        self, requester: Requester, stored: Sequence[StoredEvent], **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Client-format events with their bundled aggregations."""
        bundles = await self.bundle(stored, requester.user_id)
        return await self.serializer.serialize(stored, relations=bundles, **kwargs)

    # -- /relations ----------------------------------------------------------------
    async def _bound(self, room_id: str, token: str | None, backwards: bool) -> tuple[int, int] | None:
        if not token:
            return None
        try:
            pos = RoomPosition.decode(token)
        except TokenError:
            raise errors.invalid_param("Invalid pagination token") from None
        if pos.topological is not None:
            return (pos.topological, pos.stream)
        last = await self.events.latest_room_events(room_id, pos.stream, 1)
        if not last:
            return (0, 0)
        s = last[-1]
        return (s.topological_ordering, s.stream_ordering + 1) if backwards else (s.topological_ordering, s.stream_ordering)

    async def relations(
        self,
        requester: Requester,
        room_id: str,
        parent_id: str,
        rel_type: str | None,
        event_type: str | None,
        args: dict[str, str],
    ) -> dict[str, Any]:
        await self.rooms.room_version(room_id)
        await self.rooms.require_member(requester.user_id, room_id, allow_left=True)
        parent = await self.events.get_event(parent_id)
        if parent is None or parent.event.room_id != room_id:
            raise errors.not_found("Event not found")
        if not await self.visibility.filter(requester.user_id, room_id, [parent]):
            raise errors.not_found("Event not found")
        direction = args.get("dir", "b")
        if direction not in ("b", "f"):
            raise errors.invalid_param("'dir' must be 'b' or 'f'")
        backwards = direction == "b"
        limit = _int_arg(args, "limit", DEFAULT_RELATIONS_LIMIT)
        recurse_arg = args.get("recurse")
        if recurse_arg not in (None, "true", "false"):
            raise errors.invalid_param("'recurse' must be true or false")
        recurse = recurse_arg == "true"
        from_bound = await self._bound(room_id, args.get("from"), backwards)
        to_bound = await self._bound(room_id, args.get("to"), not backwards)
        rows = await self.store.children(
            room_id, parent_id, rel_type=rel_type, event_type=event_type, from_bound=from_bound,
            to_bound=to_bound, backwards=backwards, limit=limit, recurse=recurse,
        )
        visible = await self.visibility.filter(requester.user_id, room_id, rows)
        out: dict[str, Any] = {"chunk": await self.serialize(requester, visible)}
        if rows and len(rows) == limit:
            last = rows[-1]
            out["next_batch"] = RoomPosition(stream=last.stream_ordering, topological=last.topological_ordering).encode()
        if args.get("from"):
            out["prev_batch"] = args["from"]
        if recurse_arg is not None:
            out["recursion_depth"] = MAX_RECURSION_DEPTH if recurse else 1
        return out

    # -- /threads ----------------------------------------------------------------------
    async def threads(self, requester: Requester, room_id: str, args: dict[str, str]) -> dict[str, Any]:
        await self.rooms.room_version(room_id)
        await self.rooms.require_member(requester.user_id, room_id, allow_left=True)
        include = args.get("include", "all")
        if include not in ("all", "participated"):
            raise errors.invalid_param("'include' must be 'all' or 'participated'")
        limit = _int_arg(args, "limit", DEFAULT_THREADS_LIMIT)
        before = None
        if args.get("from"):
            try:
                pos = RoomPosition.decode(args["from"])
            except TokenError:
                raise errors.invalid_param("Invalid pagination token") from None
            if pos.topological is None:
                raise errors.invalid_param("Invalid pagination token")
            before = (pos.topological, pos.stream)
        rows = await self.store.thread_roots(
            room_id, participant=requester.user_id if include == "participated" else None,
            before=before, limit=limit,
        )
        roots = [r[0] for r in rows]
        visible = await self.visibility.filter(requester.user_id, room_id, roots)
        out: dict[str, Any] = {"chunk": await self.serialize(requester, visible)}
        if rows and len(rows) == limit:
            _, topo, stream = rows[-1]
            out["next_batch"] = RoomPosition(stream=stream, topological=topo).encode()
        return out
