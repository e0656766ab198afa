"""Event relationships: children of events (for bundled aggregations and /relations) and threads.

`event_relations` is written by :meth:`EventStore.persist_event` in the event's
own transaction; this module only reads it. Redacted children never count:
a redaction removes `m.relates_to` from the child's content.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from homeserver.storage.database import Database
from homeserver.storage.events import EVENT_COLUMNS, StoredEvent, _row_to_stored

# How deep `recurse=true` follows relations of relations (Synapse uses 3 too).
MAX_RECURSION_DEPTH = 3


class RelationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def replacement_candidates(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        """Unredacted m.replace children of the given events, newest first (by the spec's order)."""
        if not event_ids:
            return []
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM event_relations rel JOIN events e USING (event_id)"
                " JOIN rooms r ON r.room_id = e.room_id"
                " WHERE rel.relates_to_id = ANY($1::text[]) AND rel.rel_type = 'm.replace'"
                " AND e.redacted_by IS NULL AND NOT e.outlier"
                " ORDER BY e.origin_server_ts DESC, e.event_id DESC",
                list(event_ids),
            )
        return [_row_to_stored(r) for r in rows]

    async def references(self, event_ids: Sequence[str]) -> list[asyncpg.Record]:
        """(relates_to_id, event_id) of unredacted m.reference children in the parent's room, oldest first."""
        if not event_ids:
            return []
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT rel.relates_to_id, rel.event_id FROM event_relations rel JOIN events e USING (event_id)"
                " JOIN events p ON p.event_id = rel.relates_to_id AND p.room_id = e.room_id"
                " WHERE rel.relates_to_id = ANY($1::text[]) AND rel.rel_type = 'm.reference'"
                " AND e.redacted_by IS NULL AND NOT e.outlier"
                " ORDER BY e.stream_ordering",
                list(event_ids),
            )

    async def thread_summaries(self, root_ids: Sequence[str], user_id: str) -> list[asyncpg.Record]:
        """Per thread root: count, the latest event's ID (topologically) and whether `user_id` replied."""
        if not root_ids:
            return []
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT rel.relates_to_id AS root, COUNT(*) AS count,"
                " (ARRAY_AGG(e.event_id ORDER BY e.topological_ordering DESC, e.stream_ordering DESC))[1] AS latest,"
                " BOOL_OR(e.sender = $2) AS participated"
                " FROM event_relations rel JOIN events e USING (event_id)"
                " JOIN events root ON root.event_id = rel.relates_to_id AND root.room_id = e.room_id"
                " WHERE rel.relates_to_id = ANY($1::text[]) AND rel.rel_type = 'm.thread'"
                " AND e.redacted_by IS NULL AND NOT e.outlier"
                " GROUP BY rel.relates_to_id",
                list(root_ids), user_id,
            )

    async def children(
        self,
        room_id: str,
        parent_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        from_bound: tuple[int, int] | None,
        to_bound: tuple[int, int] | None,
        backwards: bool,
        limit: int,
        recurse: bool,
    ) -> list[StoredEvent]:
        """Events relating to `parent_id` (directly, or through up to 3 hops with `recurse`), one page.

        Bounds are (depth, stream) points: `from` exclusive, `to` inclusive-of-nothing beyond it.
        """
        args: list[Any] = [room_id, parent_id, MAX_RECURSION_DEPTH if recurse else 1]
        conds = ["e.room_id = $1", "NOT e.outlier", "e.redacted_by IS NULL"]
        if rel_type is not None:
            args.append(rel_type)
            conds.append(f"t.rel_type = ${len(args)}")
        if event_type is not None:
            args.append(event_type)
            conds.append(f"e.type = ${len(args)}")
        if from_bound is not None:
            args += list(from_bound)
            op = "<" if backwards else ">"
            conds.append(f"(e.topological_ordering, e.stream_ordering) {op} (${len(args) - 1}, ${len(args)})")
        if to_bound is not None:
            args += list(to_bound)
            op = ">" if backwards else "<="
            conds.append(f"(e.topological_ordering, e.stream_ordering) {op} (${len(args) - 1}, ${len(args)})")
        order = "DESC" if backwards else "ASC"
        args.append(limit)
        sql = (
            "WITH RECURSIVE tree(event_id, rel_type, depth) AS ("
            "  SELECT rel.event_id, rel.rel_type, 1 FROM event_relations rel WHERE rel.relates_to_id = $2"
            "  UNION SELECT rel.event_id, rel.rel_type, tree.depth + 1 FROM event_relations rel"
            "  JOIN tree ON rel.relates_to_id = tree.event_id WHERE tree.depth < $3)"
            f" SELECT DISTINCT ON (e.topological_ordering, e.stream_ordering) {EVENT_COLUMNS}"
            " FROM tree t JOIN events e USING (event_id) JOIN rooms r ON r.room_id = e.room_id"
            f" WHERE {' AND '.join(conds)}"
            f" ORDER BY e.topological_ordering {order}, e.stream_ordering {order} LIMIT ${len(args)}"
        )
        async with self.db.connection() as conn:
            rows = await conn.fetch(sql, *args)
        return [_row_to_stored(r) for r in rows]

    async def thread_roots(
        self,
        room_id: str,
        *,
        participant: str | None,
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[tuple[StoredEvent, int, int]]:
        """Thread roots of a room by latest activity, newest first: (root, latest depth, latest stream).

        `before` is an exclusive (depth, stream) bound on the thread's latest event;
        with `participant`, only threads the user started or replied to.
        """
        args: list[Any] = [room_id]
        conds = ["TRUE"]
        if participant is not None:
            args.append(participant)
            n = len(args)
            conds.append(
                f"(e.sender = ${n} OR EXISTS (SELECT 1 FROM event_relations r2 JOIN events c2 USING (event_id)"
                f" WHERE r2.relates_to_id = t.root_id AND r2.rel_type = 'm.thread' AND c2.sender = ${n}"
                " AND c2.redacted_by IS NULL))"
            )
        if before is not None:
            args += list(before)
            conds.append(f"(t.latest_topo, t.latest_stream) < (${len(args) - 1}, ${len(args)})")
        args.append(limit)
        sql = (
            "WITH t AS ("
            "  SELECT DISTINCT ON (rel.relates_to_id) rel.relates_to_id AS root_id,"
            "  c.topological_ordering AS latest_topo, c.stream_ordering AS latest_stream"
            "  FROM event_relations rel JOIN events c ON c.event_id = rel.event_id"
            "  WHERE rel.rel_type = 'm.thread' AND c.room_id = $1 AND c.redacted_by IS NULL AND NOT c.outlier"
            "  ORDER BY rel.relates_to_id, c.topological_ordering DESC, c.stream_ordering DESC)"
            f" SELECT {EVENT_COLUMNS}, t.latest_topo, t.latest_stream"
            " FROM t JOIN events e ON e.event_id = t.root_id AND e.room_id = $1"
            " JOIN rooms r ON r.room_id = e.room_id"
            f" WHERE {' AND '.join(conds)}"
            f" ORDER BY t.latest_topo DESC, t.latest_stream DESC LIMIT ${len(args)}"
        )
        async with self.db.connection() as conn:
            rows = await conn.fetch(sql, *args)
        return [(_row_to_stored(r), r["latest_topo"], r["latest_stream"]) for r in rows]
