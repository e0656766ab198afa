"""Events, DAG edges, state groups, current state and memberships.

One local event is persisted by :meth:`EventStore.persist_event` inside the
caller's transaction: the event row, its edges, the new forward extremity, its
state group, current state, memberships, its transaction ID and its relation,
all committed together. Stream positions are allocated under a transaction
advisory lock, so they become visible in order and a reader that has seen
position N has seen every position below it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from homeserver.core.events import Event, StateKey
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.infra.batch import BatchLoader
from homeserver.storage.database import Database
from homeserver.storage.search import index_event as index_event_for_search
from homeserver.storage.search import searchable_text

# A state group whose delta chain would pass this length is stored in full.
MAX_STATE_CHAIN = 64


@dataclass
class StoredEvent:
    """An event as read back: the Event plus what the database knows about it."""

    event: Event
    stream_ordering: int
    topological_ordering: int
    unsigned: dict[str, Any]
    redacted_by: str | None
    state_group: int | None

    @property
    def event_id(self) -> str:
        return self.event.event_id


EVENT_COLUMNS = (
    "stream_ordering, topological_ordering, event_id, json, unsigned, redacted_by, state_group, "
    "r.room_version"
)


def _row_to_stored(row: asyncpg.Record) -> StoredEvent:
    rv = KNOWN_ROOM_VERSIONS[row["room_version"]]
    pdu = json.loads(row["json"])
    return StoredEvent(
        event=Event(pdu, rv, event_id=row["event_id"]),
        stream_ordering=row["stream_ordering"],
        topological_ordering=row["topological_ordering"],
        unsigned=row["unsigned"],
        redacted_by=row["redacted_by"],
        state_group=row["state_group"],
    )


class EventStore:
    def __init__(self, db: Database, cache_size: int = 50_000) -> None:
        self.db = db
        # Events as read back, by ID. Only a redaction changes a stored event (redacted_by):
        # `invalidate` runs right after its commit, and a read that raced it is not kept.
        self._cache: OrderedDict[str, StoredEvent] = OrderedDict()
        self._cache_size = cache_size
        self._invalidations = 0
        self._batch: BatchLoader[str, StoredEvent | None] = BatchLoader(self._fetch_events, lambda: None)
        self._room_versions: dict[str, RoomVersion] = {}

    def invalidate(self, event_id: str) -> None:
        self._invalidations += 1
        self._cache.pop(event_id, None)

    # -- rooms -----------------------------------------------------------
    async def lock_room(self, conn: asyncpg.Connection, room_id: str) -> None:
        """Serialise event creation in one room across processes (until commit)."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", room_id)

    async def create_room_row(
        self, conn: asyncpg.Connection, room_id: str, room_version: str, creator: str, now_ms: int, is_public: bool
    ) -> None:
        await conn.execute(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts, is_public) VALUES ($1, $2, $3, $4, $5)",
            room_id, room_version, creator, now_ms, is_public,
        )

    async def get_room_version(self, room_id: str, conn: asyncpg.Connection | None = None) -> RoomVersion | None:
        known = self._room_versions.get(room_id)
        if known is not None:
            return known  # a room's version never changes
        rv = await self._read_room_version(room_id, conn)
        if rv is not None:
            if len(self._room_versions) >= 100_000:
                self._room_versions.clear()
            self._room_versions[room_id] = rv
        return rv

    async def _read_room_version(self, room_id: str, conn: asyncpg.Connection | None) -> RoomVersion | None:
        if conn is None:
            async with self.db.connection() as c:
                v = await c.fetchval("SELECT room_version FROM rooms WHERE room_id = $1", room_id)
        else:
            v = await conn.fetchval("SELECT room_version FROM rooms WHERE room_id = $1", room_id)
        return KNOWN_ROOM_VERSIONS.get(v) if v else None

    async def forward_extremities(self, conn: asyncpg.Connection, room_id: str) -> list[str]:
        rows = await conn.fetch("SELECT event_id FROM room_forward_extremities WHERE room_id = $1", room_id)
        return [r["event_id"] for r in rows]

    # -- reading events ------------------------------------------------------
    async def get_events(
        self, event_ids: Iterable[str], conn: asyncpg.Connection | None = None
    ) -> dict[str, StoredEvent]:
        out: dict[str, StoredEvent] = {}
        missing = []
        cache = self._cache
        for eid in set(event_ids):
            hit = cache.get(eid)
            if hit is None:
                missing.append(eid)
            else:
                cache.move_to_end(eid)
                out[eid] = hit
        if not missing:
            return out
        if conn is None:
            # Concurrent readers of the same new events (a fan-out) share one query.
            for eid, found in zip(missing, await self._batch.load_many(missing), strict=True):
                if found is not None:
                    out[eid] = found
            return out
        # A read on the caller's connection may see its own uncommitted writes: not kept.
        for r in await conn.fetch(self._GET_EVENTS_SQL, missing):
            out[r["event_id"]] = _row_to_stored(r)
        return out

    _GET_EVENTS_SQL = (
        f"SELECT {EVENT_COLUMNS} FROM events e JOIN rooms r USING (room_id)"
        " WHERE e.event_id = ANY($1::text[])"
    )

    async def _fetch_events(self, ids: Sequence[str]) -> dict[str, StoredEvent]:
        generation = self._invalidations
        async with self.db.connection() as c:
            rows = await c.fetch(self._GET_EVENTS_SQL, list(ids))
        keep = generation == self._invalidations
        found = {}
        cache = self._cache
        for r in rows:
            stored = _row_to_stored(r)
            found[stored.event_id] = stored
            if keep:
                cache[stored.event_id] = stored
        while len(cache) > self._cache_size:
            cache.popitem(last=False)
        return found

    async def get_event(self, event_id: str) -> StoredEvent | None:
        return (await self.get_events([event_id])).get(event_id)

    async def depth_of(self, conn: asyncpg.Connection, event_ids: Sequence[str]) -> int:
        return await conn.fetchval(
            "SELECT COALESCE(MAX(topological_ordering), 0) FROM events WHERE event_id = ANY($1::text[])",
            list(event_ids),
        )

    async def state_group_of(self, conn: asyncpg.Connection, event_id: str) -> int | None:
        return await conn.fetchval("SELECT state_group FROM events WHERE event_id = $1", event_id)

    # -- state -----------------------------------------------------------
    async def current_state_ids(
        self, room_id: str, keys: Iterable[StateKey] | None = None, conn: asyncpg.Connection | None = None
    ) -> dict[StateKey, str]:
        if keys is None:
            sql = "SELECT type, state_key, event_id FROM current_state WHERE room_id = $1"
            args: tuple[Any, ...] = (room_id,)
        else:
            klist = list(keys)
            sql = (
                "SELECT c.type, c.state_key, c.event_id FROM current_state c"
                " JOIN unnest($2::text[], $3::text[]) AS k(t, s) ON c.type = k.t AND c.state_key = k.s"
                " WHERE c.room_id = $1"
            )
            args = (room_id, [k[0] for k in klist], [k[1] for k in klist])
        if conn is None:
            async with self.db.connection() as c:
                rows = await c.fetch(sql, *args)
        else:
            rows = await conn.fetch(sql, *args)
        return {(r["type"], r["state_key"]): r["event_id"] for r in rows}

    async def state_ids_for_group(
        self, group: int, conn: asyncpg.Connection | None = None, types: Sequence[str] | None = None
    ) -> dict[StateKey, str]:
        sql = (
            "WITH RECURSIVE chain(id, prev, n) AS ("
            "  SELECT id, prev_group, 0 FROM state_groups WHERE id = $1"
            "  UNION ALL SELECT s.id, s.prev_group, c.n + 1 FROM state_groups s JOIN chain c ON s.id = c.prev)"
            " SELECT DISTINCT ON (e.type, e.state_key) e.type, e.state_key, e.event_id"
            " FROM state_group_entries e JOIN chain c ON e.state_group = c.id"
            + (" WHERE e.type = ANY($2::text[])" if types is not None else "")
            + " ORDER BY e.type, e.state_key, c.n"
        )
        args: tuple[Any, ...] = (group,) if types is None else (group, list(types))
        if conn is None:
            async with self.db.connection() as c:
                rows = await c.fetch(sql, *args)
        else:
            rows = await conn.fetch(sql, *args)
        return {(r["type"], r["state_key"]): r["event_id"] for r in rows}

    async def _new_state_group(
        self, conn: asyncpg.Connection, room_id: str, prev_group: int | None, delta: dict[StateKey, str]
    ) -> int:
        chain = 0
        if prev_group is not None:
            chain = await conn.fetchval("SELECT chain_length FROM state_groups WHERE id = $1", prev_group) + 1
        if prev_group is not None and chain > MAX_STATE_CHAIN:
            full = await self.state_ids_for_group(prev_group, conn)
            full.update(delta)
            delta, prev_group, chain = full, None, 0
        group = await conn.fetchval(
            "INSERT INTO state_groups (room_id, prev_group, chain_length) VALUES ($1, $2, $3) RETURNING id",
            room_id, prev_group, chain,
        )
        if delta:
            await conn.executemany(
                "INSERT INTO state_group_entries (state_group, type, state_key, event_id) VALUES ($1, $2, $3, $4)",
                [(group, t, s, e) for (t, s), e in delta.items()],
            )
        return group

    # -- writing -------------------------------------------------------------
    async def persist_event(
        self,
        conn: asyncpg.Connection,
        event: Event,
        *,
        state_group_before: int | None,
        txn: tuple[str, str, str, str] | None,
        now_ms: int,
        allocate_stream: Callable[[], int],
    ) -> tuple[int, int]:
        """Write a new event of the room's current timeline; returns (stream_ordering, state_group).

        The caller holds the room lock and has checked the event against the
        current state; the event's prev_events are the room's forward extremities.
        `allocate_stream` hands out the event's stream position (see StreamSequencer:
        positions are given out and published in order by the one writing process).
        """
        pdu = event.pdu
        room_id = event.room_id
        unsigned: dict[str, Any] = {}
        state_group = state_group_before
        if event.is_state:
            key = event.state_tuple
            replaced = await conn.fetchrow(
                "SELECT c.event_id, e.json FROM current_state c JOIN events e USING (event_id)"
                " WHERE c.room_id = $1 AND c.type = $2 AND c.state_key = $3",
                room_id, key[0], key[1],
            )
            if replaced is not None:
                old = json.loads(replaced["json"])
                unsigned = {
                    "replaces_state": replaced["event_id"],
                    "prev_content": old.get("content", {}),
                    "prev_sender": old.get("sender"),
                }
            state_group = await self._new_state_group(conn, room_id, state_group_before, {key: event.event_id})

        stream = allocate_stream()
        content = event.content
        membership = event.membership()
        prevs = event.prev_event_ids()
        # The rows every event has go in one statement (one round trip): the event, its edges and
        # auth events, the room's new forward extremity, the client's transaction ID, the search row.
        parts = [
            ("ev AS (INSERT INTO events (stream_ordering, topological_ordering, event_id, room_id, type, state_key,"
             " sender, origin_server_ts, json, unsigned, membership, contains_url, state_group)"
             " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13))"),
            "ed AS (INSERT INTO event_edges (event_id, prev_event_id) SELECT $3, unnest($14::text[]))",
            "au AS (INSERT INTO event_auth (event_id, auth_event_id) SELECT $3, unnest($15::text[]))",
            "dx AS (DELETE FROM room_forward_extremities WHERE room_id = $4 AND event_id = ANY($14::text[]))",
            "fx AS (INSERT INTO room_forward_extremities (room_id, event_id) VALUES ($4, $3))",
        ]
        args: list[Any] = [
            stream, event.depth, event.event_id, room_id, event.type, event.state_key, event.sender,
            event.origin_server_ts, json.dumps(pdu, ensure_ascii=False, separators=(",", ":")), unsigned,
            membership, isinstance(content.get("url"), str), state_group, prevs, event.auth_event_ids(),
        ]
        if txn is not None:
            n = len(args)
            parts.append(
                f"tx AS (INSERT INTO event_txn_ids (user_id, device_id, scope, txn_id, event_id, created_ts)"
                f" VALUES (${n + 1}, ${n + 2}, ${n + 3}, ${n + 4}, $3, ${n + 5}))"
            )
            args += [txn[0], txn[1], txn[2], txn[3], now_ms]
        searchable = searchable_text(event)
        if searchable is not None:
            n = len(args)
            parts.append(
                f"se AS (INSERT INTO event_search (stream_ordering, event_id, room_id, sender, type, key,"
                f" origin_server_ts, contains_url, vector) VALUES ($1, $3, $4, $7, $5, ${n + 1}, $8, $12,"
                f" to_tsvector('english', ${n + 2})) ON CONFLICT DO NOTHING)"
            )
            args += [searchable[0], searchable[1]]
        await conn.execute("WITH " + ", ".join(parts) + " SELECT 1", *args)
        if event.is_state:
            t, s = event.state_tuple
            await conn.execute(
                "INSERT INTO current_state (room_id, type, state_key, event_id) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = EXCLUDED.event_id",
                room_id, t, s, event.event_id,
            )
            if membership is not None:
                dn = content.get("displayname")
                av = content.get("avatar_url")
                await conn.execute(
                    "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering,"
                    " sender, displayname, avatar_url)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    " ON CONFLICT (room_id, user_id) DO UPDATE SET membership = EXCLUDED.membership,"
                    " event_id = EXCLUDED.event_id, stream_ordering = EXCLUDED.stream_ordering,"
                    " sender = EXCLUDED.sender, displayname = EXCLUDED.displayname,"
                    " avatar_url = EXCLUDED.avatar_url,"
                    " forgotten = room_memberships.forgotten AND EXCLUDED.membership IN ('leave', 'ban')",
                    room_id, s, membership, event.event_id, stream, event.sender,
                    dn if isinstance(dn, str) else None, av if isinstance(av, str) else None,
                )
        relation = content.get("m.relates_to")
        if isinstance(relation, dict):
            rel_type = relation.get("rel_type")
            target = relation.get("event_id")
            if isinstance(rel_type, str) and isinstance(target, str):
                key = relation.get("key")
                await conn.execute(
                    "INSERT INTO event_relations (event_id, relates_to_id, rel_type, aggregation_key)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    event.event_id, target, rel_type, key if isinstance(key, str) else None,
                )
        if event.type == "m.room.redaction" and event.redacts:
            await conn.execute(
                "UPDATE events SET redacted_by = $2 WHERE event_id = $1 AND room_id = $3 AND redacted_by IS NULL",
                event.redacts, event.event_id, room_id,
            )
        if searchable is None:
            # Redactions leave the search index, room settings for the user directory, in this transaction.
            await index_event_for_search(conn, event, stream)
        return stream, state_group if state_group is not None else 0

    async def event_for_txn(self, user_id: str, device_id: str, scope: str, txn_id: str) -> str | None:
        async with self.db.connection() as conn:
            return await conn.fetchval(
                "SELECT event_id FROM event_txn_ids"
                " WHERE user_id = $1 AND device_id = $2 AND scope = $3 AND txn_id = $4",
                user_id, device_id, scope, txn_id,
            )

    async def txn_ids_for_events(self, user_id: str, device_id: str, event_ids: Sequence[str]) -> dict[str, str]:
        """event_id -> txn_id for the events this device sent (for unsigned.transaction_id)."""
        if not event_ids:
            return {}
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT event_id, txn_id FROM event_txn_ids"
                " WHERE event_id = ANY($1::text[]) AND user_id = $2 AND device_id = $3",
                list(event_ids), user_id, device_id,
            )
        return {r["event_id"]: r["txn_id"] for r in rows}

    async def max_stream_ordering(self) -> int:
        async with self.db.connection() as conn:
            return await conn.fetchval("SELECT COALESCE(MAX(stream_ordering), 0) FROM events")

    # -- memberships -------------------------------------------------------------
    async def membership_of(
        self, room_id: str, user_id: str, conn: asyncpg.Connection | None = None
    ) -> asyncpg.Record | None:
        sql = "SELECT membership, event_id, stream_ordering, forgotten FROM room_memberships WHERE room_id = $1 AND user_id = $2"
        if conn is None:
            async with self.db.connection() as c:
                return await c.fetchrow(sql, room_id, user_id)
        return await conn.fetchrow(sql, room_id, user_id)

    async def rooms_for_user(self, user_id: str, memberships: Sequence[str] = ("join",)) -> list[str]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT room_id FROM room_memberships WHERE user_id = $1 AND membership = ANY($2::text[])",
                user_id, list(memberships),
            )
        return [r["room_id"] for r in rows]

    async def members(self, room_id: str, memberships: Sequence[str] | None = None) -> list[asyncpg.Record]:
        async with self.db.connection() as conn:
            if memberships is None:
                return await conn.fetch(
                    "SELECT user_id, membership, event_id, displayname, avatar_url FROM room_memberships"
                    " WHERE room_id = $1 ORDER BY user_id",
                    room_id,
                )
            return await conn.fetch(
                "SELECT user_id, membership, event_id, displayname, avatar_url FROM room_memberships"
                " WHERE room_id = $1 AND membership = ANY($2::text[]) ORDER BY user_id",
                room_id, list(memberships),
            )

    async def joined_and_invited_users(self, room_id: str) -> list[str]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT user_id FROM room_memberships WHERE room_id = $1 AND membership IN ('join', 'invite', 'knock')",
                room_id,
            )
        return [r["user_id"] for r in rows]

    async def set_forgotten(self, room_id: str, user_id: str) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE room_memberships SET forgotten = TRUE WHERE room_id = $1 AND user_id = $2", room_id, user_id
            )

    async def shares_room(self, user_a: str, user_b: str) -> bool:
        async with self.db.connection() as conn:
            return bool(await conn.fetchval(
                "SELECT 1 FROM room_memberships a JOIN room_memberships b USING (room_id)"
                " WHERE a.user_id = $1 AND b.user_id = $2 AND a.membership = 'join' AND b.membership = 'join'"
                " LIMIT 1",
                user_a, user_b,
            ))

    # -- timelines ---------------------------------------------------------------
    async def room_events_between(
        self,
        room_id: str,
        *,
        from_topo: tuple[int, int] | None,
        to_topo: tuple[int, int] | None,
        backwards: bool,
        limit: int,
    ) -> list[StoredEvent]:
        """Events ordered by (depth, stream) for /messages; bounds are exclusive `from`, inclusive-exclusive `to`."""
        conds = ["e.room_id = $1", "NOT e.outlier"]
        args: list[Any] = [room_id]
        if from_topo is not None:
            args += [from_topo[0], from_topo[1]]
            op = "<" if backwards else ">"
            conds.append(f"(e.topological_ordering, e.stream_ordering) {op} (${len(args) - 1}, ${len(args)})")
        if to_topo is not None:
            args += [to_topo[0], to_topo[1]]
            op = ">" if backwards else "<="
            conds.append(f"(e.topological_ordering, e.stream_ordering) {op} (${len(args) - 1}, ${len(args)})")
        order = "DESC" if backwards else "ASC"
        args.append(limit)
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM events e JOIN rooms r USING (room_id) WHERE {' AND '.join(conds)}"
            f" ORDER BY e.topological_ordering {order}, e.stream_ordering {order} LIMIT ${len(args)}"
        )
        async with self.db.connection() as conn:
            rows = await conn.fetch(sql, *args)
        return [_row_to_stored(r) for r in rows]

    async def room_events_by_stream(
        self, room_ids: Sequence[str], after: int, upto: int, limit_per_room: int | None = None
    ) -> list[StoredEvent]:
        """Events with after < stream_ordering <= upto in the given rooms, oldest first."""
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events e JOIN rooms r USING (room_id)"
                " WHERE e.room_id = ANY($1::text[]) AND e.stream_ordering > $2 AND e.stream_ordering <= $3"
                " AND NOT e.outlier ORDER BY e.stream_ordering",
                list(room_ids), after, upto,
            )
        return [_row_to_stored(r) for r in rows]

    async def latest_room_events(self, room_id: str, upto: int, limit: int) -> list[StoredEvent]:
        """The last `limit` events of a room at or before stream position `upto`, oldest first."""
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events e JOIN rooms r USING (room_id)"
                " WHERE e.room_id = $1 AND e.stream_ordering <= $2 AND NOT e.outlier"
                " ORDER BY e.stream_ordering DESC LIMIT $3",
                room_id, upto, limit,
            )
        return [_row_to_stored(r) for r in reversed(rows)]

    # -- sync ----------------------------------------------------------------------
    async def user_memberships_at(self, user_id: str, upto: int) -> list[asyncpg.Record]:
        """The user's latest membership event per room at or before `upto` (forgotten rooms left out)."""
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT m.room_id, m.membership, m.stream_ordering, m.event_id, m.sender FROM ("
                "  SELECT DISTINCT ON (room_id) room_id, membership, stream_ordering, event_id, sender FROM events"
                "  WHERE type = 'm.room.member' AND state_key = $1 AND stream_ordering <= $2 AND NOT outlier"
                "  ORDER BY room_id, stream_ordering DESC) m"
                " LEFT JOIN room_memberships rm ON rm.room_id = m.room_id AND rm.user_id = $1"
                " WHERE NOT COALESCE(rm.forgotten, FALSE)",
                user_id, upto,
            )

    async def timeline_windows(
        self, room_ids: Sequence[str], after: int, upto: int, limit: int
    ) -> dict[str, list[StoredEvent]]:
        """Per room, the newest `limit` + 1 events with after < stream <= upto, oldest first."""
        if not room_ids:
            return {}
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT * FROM (SELECT {EVENT_COLUMNS}, e.room_id,"
                "  row_number() OVER (PARTITION BY e.room_id ORDER BY e.stream_ordering DESC) AS rn"
                "  FROM events e JOIN rooms r USING (room_id)"
                "  WHERE e.room_id = ANY($1::text[]) AND e.stream_ordering > $2 AND e.stream_ordering <= $3"
                "  AND NOT e.outlier) w WHERE rn <= $4 ORDER BY stream_ordering",
                list(room_ids), after, upto, limit + 1,
            )
        out: dict[str, list[StoredEvent]] = {}
        for r in rows:
            out.setdefault(r["room_id"], []).append(_row_to_stored(r))
        return out

    async def state_changes_between(self, room_id: str, after: int, before: int) -> dict[StateKey, str]:
        """The last state event per key with after < stream < before."""
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT ON (type, state_key) type, state_key, event_id FROM events"
                " WHERE room_id = $1 AND state_key IS NOT NULL AND stream_ordering > $2 AND stream_ordering < $3"
                " AND NOT outlier AND rejection IS NULL ORDER BY type, state_key, stream_ordering DESC",
                room_id, after, before,
            )
        return {(r["type"], r["state_key"]): r["event_id"] for r in rows}

    async def state_group_at(self, room_id: str, upto: int) -> int | None:
        """The state group after the room's last event at or before `upto`."""
        async with self.db.connection() as conn:
            return await conn.fetchval(
                "SELECT state_group FROM events WHERE room_id = $1 AND stream_ordering <= $2 AND NOT outlier"
                " ORDER BY stream_ordering DESC LIMIT 1",
                room_id, upto,
            )

    async def members_with_positions(self, room_id: str) -> list[asyncpg.Record]:
        """Every user with a membership in the room: user_id, event_id, stream_ordering."""
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT user_id, event_id, stream_ordering FROM room_memberships WHERE room_id = $1", room_id
            )

    async def member_counts(self, room_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """room -> (joined, invited)."""
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT room_id, count(*) FILTER (WHERE membership = 'join') AS j,"
                " count(*) FILTER (WHERE membership = 'invite') AS i FROM room_memberships"
                " WHERE room_id = ANY($1::text[]) GROUP BY room_id",
                list(room_ids),
            )
        return {r["room_id"]: (r["j"], r["i"]) for r in rows}

    async def heroes(self, room_id: str, user_id: str, limit: int = 5) -> list[str]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT user_id FROM room_memberships WHERE room_id = $1 AND user_id <> $2"
                " AND membership IN ('join', 'invite') ORDER BY stream_ordering LIMIT $3",
                room_id, user_id, limit,
            )
            if not rows:
                rows = await conn.fetch(
                    "SELECT user_id FROM room_memberships WHERE room_id = $1 AND user_id <> $2"
                    " ORDER BY stream_ordering LIMIT $3",
                    room_id, user_id, limit,
                )
        return [r["user_id"] for r in rows]

    async def relations_for(self, event_ids: Sequence[str]) -> list[asyncpg.Record]:
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT r.event_id, r.relates_to_id, r.rel_type, r.aggregation_key, e.sender, e.type,"
                " e.stream_ordering, e.redacted_by"
                " FROM event_relations r JOIN events e USING (event_id)"
                " WHERE r.relates_to_id = ANY($1::text[]) AND e.redacted_by IS NULL",
                list(event_ids),
            )
