"""Push rules, pushers, and the per-user notification counters /sync reads."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from homeserver.storage.database import Database

READ_TYPES = ("m.read", "m.read.private")


class PushStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._rulesets: dict[str, dict[str, Any] | None] = {}  # user -> own rule set (None: the defaults)
        self._ruleset_changes = 0
        self._pusher_users: frozenset[str] | None = None  # users with at least one pusher
        self._pusher_changes = 0

    # -- rule sets --------------------------------------------------------------
    async def get_ruleset(self, user_id: str) -> dict[str, Any] | None:
        async with self.db.connection() as conn:
            return await conn.fetchval("SELECT ruleset FROM push_rules WHERE user_id = $1", user_id)

    async def rulesets_for(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The users' own rule sets (users with none are left out). Read for every event's
        recipients, so kept in memory; a change drops the user's entry before and after its commit."""
        out: dict[str, dict[str, Any]] = {}
        missing = []
        for u in user_ids:
            if u in self._rulesets:
                ruleset = self._rulesets[u]
                if ruleset is not None:
                    out[u] = ruleset
            else:
                missing.append(u)
        if not missing:
            return out
        changes = self._ruleset_changes
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT user_id, ruleset FROM push_rules WHERE user_id = ANY($1::text[])", missing
            )
        found = {r["user_id"]: r["ruleset"] for r in rows}
        out.update(found)
        if changes == self._ruleset_changes:
            if len(self._rulesets) > 200_000:
                self._rulesets.clear()
            for u in missing:
                self._rulesets[u] = found.get(u)
        return out

    def _ruleset_changed(self, user_id: str) -> None:
        self._ruleset_changes += 1
        self._rulesets.pop(user_id, None)

    async def update_ruleset(
        self, user_id: str, change: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        """Apply `change` to the stored rule set under a row lock; returns the new rule set."""
        self._ruleset_changed(user_id)
        async with self.db.transaction() as conn:
            self.db.after_commit(conn, lambda: self._ruleset_changed(user_id))
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 8))", user_id)
            current = await conn.fetchval("SELECT ruleset FROM push_rules WHERE user_id = $1", user_id)
            new = change(current)
            await conn.execute(
                "INSERT INTO push_rules (user_id, ruleset) VALUES ($1, $2)"
                " ON CONFLICT (user_id) DO UPDATE SET ruleset = EXCLUDED.ruleset",
                user_id, new,
            )
            return new

    # -- counters ---------------------------------------------------------------
    async def record_push_actions(
        self, room_id: str, event_id: str, stream: int, thread_id: str, ts: int,
        rows: Sequence[tuple[str, bool, bool, list[Any]]],
    ) -> list[asyncpg.Record]:
        """One statement per event: the action rows, and +1 on each recipient's counters
        unless their read receipt is already at or past this event. Returns the counters it
        changed, as they now are (user_id, thread_id, notif_count, highlight_count)."""
        if not rows:
            return []
        async with self.db.connection() as conn:
            return await conn.fetch(
                "WITH a AS ("
                " INSERT INTO event_push_actions"
                "  (user_id, room_id, event_id, stream_ordering, thread_id, notif, highlight, actions, ts)"
                " SELECT x.u, $1, $2, $3, $4, x.n, x.h, x.act::jsonb, $5"
                " FROM unnest($6::text[], $7::bool[], $8::bool[], $9::text[]) AS x(u, n, h, act)"
                " ON CONFLICT DO NOTHING RETURNING user_id, notif, highlight)"
                " INSERT INTO event_push_summary AS s (user_id, room_id, thread_id, notif_count, highlight_count,"
                "  last_stream)"
                " SELECT a.user_id, $1, $4, a.notif::int, a.highlight::int, $3 FROM a"
                " WHERE NOT EXISTS (SELECT 1 FROM receipts r WHERE r.room_id = $1 AND r.user_id = a.user_id"
                "  AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id IN ('', $4)"
                "  AND r.event_stream >= $3)"
                " ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET"
                "  notif_count = s.notif_count + EXCLUDED.notif_count,"
                "  highlight_count = s.highlight_count + EXCLUDED.highlight_count,"
                "  last_stream = GREATEST(s.last_stream, EXCLUDED.last_stream)"
                " RETURNING s.user_id, s.thread_id, s.notif_count, s.highlight_count",
                room_id, event_id, stream, thread_id, ts,
                [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                [json.dumps(r[3]) for r in rows],
            )

    async def reset_counts(self, user_id: str, room_id: str) -> None:
        """Recount a user's unread notifications in a room from their read receipts.

        Locks the summary rows first so a concurrent +1 either commits before the
        recount (and is seen by it) or waits and adds on top of it."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "SELECT 1 FROM event_push_summary WHERE user_id = $1 AND room_id = $2 FOR UPDATE", user_id, room_id
            )
            await conn.execute(
                "UPDATE event_push_summary s SET (notif_count, highlight_count) = ("
                " SELECT count(*) FILTER (WHERE a.notif), count(*) FILTER (WHERE a.highlight)"
                " FROM event_push_actions a WHERE a.user_id = s.user_id AND a.room_id = s.room_id"
                " AND a.thread_id = s.thread_id AND a.stream_ordering > ("
                "  SELECT COALESCE(MAX(r.event_stream), 0) FROM receipts r WHERE r.room_id = s.room_id"
                "  AND r.user_id = s.user_id AND r.receipt_type IN ('m.read', 'm.read.private')"
                "  AND r.thread_id IN ('', s.thread_id)))"
                " WHERE s.user_id = $1 AND s.room_id = $2",
                user_id, room_id,
            )

    async def unread_summaries(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[asyncpg.Record]]:
        """(user, room) -> that user's summary rows in that room (one per thread)."""
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT s.user_id, s.room_id, s.thread_id, s.notif_count, s.highlight_count"
                " FROM event_push_summary s JOIN unnest($1::text[], $2::text[]) AS k(u, r)"
                " ON s.user_id = k.u AND s.room_id = k.r",
                [p[0] for p in pairs], [p[1] for p in pairs],
            )
        out: dict[tuple[str, str], list[asyncpg.Record]] = {}
        for r in rows:
            out.setdefault((r["user_id"], r["room_id"]), []).append(r)
        return out

    async def total_unread(self, user_ids: Sequence[str]) -> dict[str, int]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT user_id, COALESCE(SUM(notif_count), 0) AS n FROM event_push_summary"
                " WHERE user_id = ANY($1::text[]) GROUP BY user_id",
                list(user_ids),
            )
        return {r["user_id"]: int(r["n"]) for r in rows}

    async def notifications(
        self, user_id: str, before: int | None, limit: int, only_highlight: bool
    ) -> list[asyncpg.Record]:
        """Newest first, with whether the user's receipts already cover each one."""
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT a.room_id, a.event_id, a.stream_ordering, a.actions, a.ts, a.thread_id,"
                " a.stream_ordering <= COALESCE((SELECT MAX(r.event_stream) FROM receipts r"
                "  WHERE r.room_id = a.room_id AND r.user_id = a.user_id"
                "  AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id IN ('', a.thread_id)), 0)"
                "  AS read"
                " FROM event_push_actions a WHERE a.user_id = $1 AND a.notif"
                " AND ($2::bigint IS NULL OR a.stream_ordering < $2) AND (NOT $3 OR a.highlight)"
                " ORDER BY a.stream_ordering DESC LIMIT $4",
                user_id, before, only_highlight, limit,
            )

    # -- pushers ----------------------------------------------------------------
    async def pushers_for(self, user_ids: Sequence[str]) -> list[asyncpg.Record]:
        # Asked for every event's recipients, and almost none of them has a pusher: who has
        # any is kept in memory (dropped before and after every change of the pushers table).
        with_pushers = self._pusher_users
        if with_pushers is None:
            changes = self._pusher_changes
            async with self.db.connection() as conn:
                rows = await conn.fetch("SELECT DISTINCT user_id FROM pushers")
            with_pushers = frozenset(r["user_id"] for r in rows)
            if changes == self._pusher_changes:
                self._pusher_users = with_pushers
        user_ids = [u for u in user_ids if u in with_pushers]
        if not user_ids:
            return []
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT * FROM pushers WHERE user_id = ANY($1::text[]) ORDER BY user_id, app_id, pushkey",
                list(user_ids),
            )

    def _pushers_changed(self) -> None:
        self._pusher_changes += 1
        self._pusher_users = None

    async def set_pusher(self, p: dict[str, Any], append: bool) -> None:
        self._pushers_changed()
        async with self.db.transaction() as conn:
            self.db.after_commit(conn, self._pushers_changed)
            if not append:
                await conn.execute(
                    "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3",
                    p["app_id"], p["pushkey"], p["user_id"],
                )
            await conn.execute(
                "INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name,"
                " profile_tag, lang, data, device_id, pushkey_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                " ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = EXCLUDED.kind,"
                " app_display_name = EXCLUDED.app_display_name, device_display_name = EXCLUDED.device_display_name,"
                " profile_tag = EXCLUDED.profile_tag, lang = EXCLUDED.lang, data = EXCLUDED.data,"
                " device_id = EXCLUDED.device_id, pushkey_ts = EXCLUDED.pushkey_ts",
                p["user_id"], p["app_id"], p["pushkey"], p["kind"], p["app_display_name"],
                p["device_display_name"], p.get("profile_tag"), p["lang"], p["data"], p.get("device_id"),
                p["pushkey_ts"],
            )

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3", user_id, app_id, pushkey
            )
        self._pushers_changed()

    async def delete_pushers_for_devices(self, user_id: str, device_ids: Sequence[str]) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "DELETE FROM pushers WHERE user_id = $1 AND device_id = ANY($2::text[])", user_id, list(device_ids)
            )
        self._pushers_changed()
