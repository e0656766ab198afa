"""Search storage: the message full-text index (`event_search`) and the user directory queries.

Messages are indexed by :func:`index_event` inside the transaction that
persists the event (called from ``EventStore.persist_event``), so a committed
event is searchable at once and a rolled-back one never is. The text search
configuration is ``'english'`` on both sides (stemming, stop words), queries
are parsed with ``websearch_to_tsquery``, which accepts any input ("quoted
phrases", ``or``, ``-word``) without raising.

The user directory is a query-time join of ``users``, ``profiles`` and
``room_memberships`` (see sql/0006_search.sql for the indexes).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from homeserver.core.events import Event
from homeserver.storage.database import Database

TS_CONFIG = "english"
# The keys the spec lets clients search, by event type.
SEARCHABLE_TYPES = {"m.room.message": "content.body", "m.room.name": "content.name", "m.room.topic": "content.topic"}
MAX_STREAM = 2**63 - 1
# The first window of stream positions a `recent` search reads (then 4x, 16x, ...).
RECENT_FIRST_WINDOW = 20_000

# Markers for ts_headline that never occur in text we index (stripped before indexing).
_START, _STOP = "\x02", "\x03"
_HIGHLIGHT_RE = re.compile(f"{_START}(.*?){_STOP}", re.DOTALL)


def searchable_text(event: Event) -> tuple[str, str] | None:
    """(key, text) to index for an event, or None if it is not searchable."""
    key = SEARCHABLE_TYPES.get(event.type)
    if key is None:
        return None
    content = event.content
    if event.type == "m.room.message":
        text = content.get("body")
    elif event.type == "m.room.name":
        text = content.get("name")
    else:
        text = content.get("topic")
        # CS API § Server side search: also the text/plain body of m.topic.
        parts = [text] if isinstance(text, str) else []
        m_topic = content.get("m.topic")
        if isinstance(m_topic, dict) and isinstance(m_topic.get("m.text"), list):
            for rep in m_topic["m.text"]:
                if isinstance(rep, dict) and rep.get("mimetype", "text/plain") == "text/plain":
                    body = rep.get("body")
                    if isinstance(body, str) and body not in parts:
                        parts.append(body)
        text = "\n".join(parts) if parts else None
    if not isinstance(text, str) or not text.strip():
        return None
    return key, text.replace("\x00", "")


async def index_event(conn: asyncpg.Connection, event: Event, stream_ordering: int) -> None:
    """Keep the search tables current for one event, in the caller's transaction."""
    found = searchable_text(event)
    if found is not None:
        key, text = found
        await conn.execute(
            "INSERT INTO event_search (stream_ordering, event_id, room_id, sender, type, key, origin_server_ts,"
            " contains_url, vector) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_tsvector('english', $9))"
            " ON CONFLICT DO NOTHING",
            stream_ordering, event.event_id, event.room_id, event.sender, event.type, key,
            event.origin_server_ts, isinstance(event.content.get("url"), str), text,
        )
    elif event.type == "m.room.redaction" and event.redacts:
        # A redacted event must not be findable by the words it had.
        await conn.execute(
            "DELETE FROM event_search WHERE event_id = $1 AND room_id = $2", event.redacts, event.room_id
        )
    elif event.state_key == "" and event.type in ("m.room.join_rules", "m.room.history_visibility"):
        column = "join_rule" if event.type == "m.room.join_rules" else "history_visibility"
        value = event.content.get(column)
        await conn.execute(
            f"INSERT INTO room_search_settings (room_id, {column}) VALUES ($1, $2)"
            f" ON CONFLICT (room_id) DO UPDATE SET {column} = EXCLUDED.{column}",
            event.room_id, value if isinstance(value, str) else None,
        )


@dataclass(frozen=True)
class SearchHit:
    stream_ordering: int
    event_id: str
    room_id: str
    sender: str
    rank: float


def _hit(r: asyncpg.Record) -> SearchHit:
    return SearchHit(r["stream_ordering"], r["event_id"], r["room_id"], r["sender"], r["rank"])


@dataclass(frozen=True)
class HitFilter:
    """SQL-side restrictions of a search (rooms are given separately, with their upper bounds)."""

    keys: Sequence[str] = ()
    senders: Sequence[str] | None = None
    not_senders: Sequence[str] = ()
    type_patterns: Sequence[str] | None = None  # LIKE patterns
    not_type_patterns: Sequence[str] = ()
    contains_url: bool | None = None


def _successor(prefix: str) -> str:
    """The smallest string above every string that starts with `prefix` (in code point order)."""
    last = ord(prefix[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:
        last = 0xE000
    if last > 0x10FFFF:
        return prefix + "\U0010ffff"
    return prefix[:-1] + chr(last)


class SearchStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def rooms_of_user(self, user_id: str) -> list[asyncpg.Record]:
        """(room_id, membership, stream_ordering) of every room the user is or was in and has not forgotten."""
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT room_id, membership, stream_ordering FROM room_memberships"
                " WHERE user_id = $1 AND NOT forgotten",
                user_id,
            )

    @staticmethod
    def _where(
        rooms: Sequence[str], upto: Sequence[int], term: str, f: HitFilter
    ) -> tuple[str, list[Any]]:
        args: list[Any] = [list(rooms), list(upto), term]
        # room_id = ANY lets the planner AND the GIN bitmap with the (room_id, stream_ordering)
        # btree, so only hits in the searcher's rooms are read from the heap; the per-room upper
        # bound (where they left) is a cheap recheck on those rows.
        conds = [
            "s.vector @@ q.q",
            "s.room_id = ANY($1::text[])",
            "s.stream_ordering <= ($2::bigint[])[array_position($1::text[], s.room_id)]",
        ]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if f.keys:
            conds.append(f"s.key = ANY({arg(list(f.keys))}::text[])")
        if f.senders is not None:
            conds.append(f"s.sender = ANY({arg(list(f.senders))}::text[])")
        if f.not_senders:
            conds.append(f"NOT (s.sender = ANY({arg(list(f.not_senders))}::text[]))")
        if f.type_patterns is not None:
            conds.append(f"s.type LIKE ANY({arg(list(f.type_patterns))}::text[])")
        if f.not_type_patterns:
            conds.append(f"NOT (s.type LIKE ANY({arg(list(f.not_type_patterns))}::text[]))")
        if f.contains_url is not None:
            conds.append(f"s.contains_url = {arg(f.contains_url)}")
        sql = (
            " FROM event_search s CROSS JOIN websearch_to_tsquery('english', $3) AS q(q)"
            " WHERE " + " AND ".join(conds)
        )
        return sql, args

    async def search(
        self,
        rooms: Sequence[str],
        upto: Sequence[int],
        term: str,
        f: HitFilter,
        *,
        order_by: str,
        after: tuple[float, int] | None,
        limit: int,
    ) -> list[SearchHit]:
        """Hits in rooms[i] at stream positions <= upto[i], best (rank) or newest (recent) first.

        `after` is the (rank, stream_ordering) of the last hit already seen; for
        `recent` only its stream_ordering counts. Both orders are total, so
        pages never repeat or skip a hit.
        """
        if not rooms:
            return []
        async with self.db.connection() as conn:
            if order_by == "recent":
                return await self._recent(conn, rooms, upto, term, f, after, limit)
            where, args = self._where(rooms, upto, term, f)
            if after is not None:
                args += [after[0], after[1]]
                where += f" AND (ts_rank(s.vector, q.q), s.stream_ordering) < (${len(args) - 1}::real, ${len(args)})"
            args.append(limit)
            rows = await conn.fetch(
                "SELECT s.stream_ordering, s.event_id, s.room_id, s.sender, ts_rank(s.vector, q.q) AS rank"
                + where + f" ORDER BY rank DESC, s.stream_ordering DESC LIMIT ${len(args)}",
                *args,
            )
        return [_hit(r) for r in rows]

    async def _recent(
        self,
        conn: asyncpg.Connection,
        rooms: Sequence[str],
        upto: Sequence[int],
        term: str,
        f: HitFilter,
        after: tuple[float, int] | None,
        limit: int,
    ) -> list[SearchHit]:
        # Newest first, in windows of stream positions that grow 4x each time: a common word
        # fills the page from the newest window and never reads older rows; a rare word
        # costs a few cheap GIN lookups more.
        below = after[1] if after is not None else await conn.fetchval(
            "SELECT COALESCE(MAX(stream_ordering), 0) + 1 FROM event_search"
        )
        span = RECENT_FIRST_WINDOW
        out: list[SearchHit] = []
        while below > 0 and len(out) < limit:
            floor = max(0, below - span)
            where, args = self._where(rooms, upto, term, f)
            args += [below, floor, limit - len(out)]
            rows = await conn.fetch(
                "SELECT s.stream_ordering, s.event_id, s.room_id, s.sender, ts_rank(s.vector, q.q) AS rank"
                + where + f" AND s.stream_ordering < ${len(args) - 2} AND s.stream_ordering >= ${len(args) - 1}"
                f" ORDER BY s.stream_ordering DESC LIMIT ${len(args)}",
                *args,
            )
            out += [_hit(r) for r in rows]
            below, span = floor, span * 4
        return out

    async def count(
        self, rooms: Sequence[str], upto: Sequence[int], term: str, f: HitFilter, cap: int
    ) -> int:
        """How many hits there are, counting at most `cap` (the spec allows an estimate)."""
        if not rooms:
            return 0
        where, args = self._where(rooms, upto, term, f)
        args.append(cap)
        async with self.db.connection() as conn:
            return int(await conn.fetchval(f"SELECT count(*) FROM (SELECT 1{where} LIMIT ${len(args)}) c", *args))

    async def highlights(self, term: str, texts: Sequence[str]) -> set[str]:
        """The words of `texts` that the query matches, as they are written (what Synapse returns)."""
        texts = [t.replace(_START, "").replace(_STOP, "") for t in texts if t]
        if not texts:
            return set()
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT ts_headline('english', t, websearch_to_tsquery('english', $1), $3)"
                " FROM unnest($2::text[]) AS t",
                term, texts, f'StartSel="{_START}", StopSel="{_STOP}", HighlightAll=true',
            )
        out: set[str] = set()
        for r in rows:
            out.update(w for w in _HIGHLIGHT_RE.findall(r[0]) if w)
        return out

    async def member_events_at(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(event_id, user_id) -> the event ID of that user's member event in the state after the event."""
        if not pairs:
            return {}
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT p.event_id, p.user_id, m.member_event FROM unnest($1::text[], $2::text[]) AS p(event_id, user_id)"
                " JOIN events e ON e.event_id = p.event_id"
                " CROSS JOIN LATERAL ("
                "   WITH RECURSIVE chain(id, prev, n) AS ("
                "     SELECT id, prev_group, 0 FROM state_groups WHERE id = e.state_group"
                "     UNION ALL SELECT s.id, s.prev_group, c.n + 1 FROM state_groups s JOIN chain c ON s.id = c.prev)"
                "   SELECT g.event_id AS member_event FROM state_group_entries g JOIN chain c ON g.state_group = c.id"
                "   WHERE g.type = 'm.room.member' AND g.state_key = p.user_id ORDER BY c.n LIMIT 1"
                " ) m",
                [p[0] for p in pairs], [p[1] for p in pairs],
            )
        return {(r["event_id"], r["user_id"]): r["member_event"] for r in rows}

    # -- user directory ---------------------------------------------------------------
    async def search_users(
        self, searcher: str, term: str, limit: int, *, search_all: bool, substring: bool
    ) -> list[asyncpg.Record]:
        """Up to `limit` users matching `term` (already lower-cased), best first.

        Rank 0: display name, localpart or user ID equal to the term; 1: one of
        them starts with it; 2: a later word of the display name starts with
        it; 3: the display name or localpart contains it. Without `substring`
        only ranks 0 and 1 are looked for, through the btree indexes.
        """
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        hi = _successor(term)
        args: list[Any] = []

        def arg(value: Any, cast: str = "text") -> str:
            args.append(value)
            return f"${len(args)}::{cast}"

        t, lo, hi_ = arg(term), arg(term), arg(hi)
        prefix, word = arg(f"{escaped}%"), arg(f"% {escaped}%")
        # Explicit ranges, not LIKE 'x%', so a generic (prepared) plan still uses the text_pattern_ops indexes.
        in_range = "lower({col}) ~>=~ " + lo + " AND lower({col}) ~<~ " + hi_
        if substring:
            pattern = arg(f"%{escaped}%")
            match_profiles = f"lower(p.displayname) LIKE {pattern}"
            match_users = f"lower(u.localpart) LIKE {pattern}"
        else:
            match_profiles = in_range.format(col="p.displayname")
            match_users = in_range.format(col="u.localpart")
        if search_all:
            visible = "TRUE"
        else:
            me = arg(searcher)
            visible = (
                "EXISTS (SELECT 1 FROM room_memberships m WHERE m.user_id = u.user_id AND m.membership = 'join'"
                f"  AND (m.room_id IN (SELECT room_id FROM room_memberships WHERE user_id = {me} AND membership = 'join')"
                "       OR m.room_id IN (SELECT room_id FROM room_search_settings"
                "                        WHERE join_rule = 'public' OR history_visibility = 'world_readable')))"
            )
        sql = (
            "WITH candidates AS ("
            f"  SELECT p.user_id FROM profiles p WHERE {match_profiles}"
            f"  UNION SELECT u.user_id FROM users u WHERE {match_users}"
            f"  UNION SELECT u.user_id FROM users u WHERE {in_range.format(col='u.user_id')}"
            ")"
            " SELECT u.user_id, p.displayname, p.avatar_url,"
            f"  CASE WHEN lower(p.displayname) = {t} OR lower(u.localpart) = {t} OR lower(u.user_id) = {t} THEN 0"
            f"       WHEN lower(p.displayname) LIKE {prefix} OR lower(u.localpart) LIKE {prefix}"
            f"            OR lower(u.user_id) LIKE {prefix} THEN 1"
            f"       WHEN lower(p.displayname) LIKE {word} THEN 2 ELSE 3 END AS rank"
            " FROM candidates c JOIN users u ON u.user_id = c.user_id LEFT JOIN profiles p ON p.user_id = u.user_id"
            f" WHERE NOT u.deactivated AND {visible}"
            " ORDER BY rank, p.displayname IS NULL, lower(p.displayname), u.user_id"
            f" LIMIT {arg(limit, 'int')}"
        )
        async with self.db.connection() as conn:
            return await conn.fetch(sql, *args)
