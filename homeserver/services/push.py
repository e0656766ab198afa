"""Push: rule sets per user, notification counters, /notifications, pushers.

After an event commits, `on_new_events` evaluates the recipients' push rules
(homeserver.core.push_rules) for every joined local member but the sender and
writes the outcome in one statement per event; a read receipt recounts
(`on_read`). HTTP pushers are poked from background tasks, so sending never
waits on a push gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from homeserver import errors
from homeserver.core import push_rules as pr
from homeserver.core.power_levels import get_user_power_level_from_content
from homeserver.infra.batch import BatchLoader
from homeserver.infra.guarded_cache import GuardedCache
from homeserver.services.auth import Requester
from homeserver.services.rooms import NewEvent
from homeserver.services.userdata import AccountDataService
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.push import PushStore

log = logging.getLogger(__name__)

NOTIFY_PATH = "/_matrix/push/v1/notify"


def now_ms() -> int:
    return int(time.time() * 1000)


def _rule_error(e: pr.PushRuleError) -> errors.MatrixError:
    return errors.MatrixError(e.status, e.errcode, e.message)


class PushRulesService:
    """The push rules API; every change is also published as m.push_rules account data."""

    def __init__(self, store: PushStore, account_data: AccountDataService) -> None:
        self.store = store
        self.account_data = account_data

    async def get_all(self, requester: Requester) -> dict[str, Any]:
        ruleset = await self.store.get_ruleset(requester.user_id)
        return {"global": pr.render_ruleset(ruleset, requester.user_id)}

    async def get_global(self, requester: Requester) -> dict[str, Any]:
        return (await self.get_all(requester))["global"]

    async def get_rule(self, requester: Requester, scope: str, kind: str, rule_id: str) -> dict[str, Any]:
        self._check_scope(scope)
        ruleset = await self.store.get_ruleset(requester.user_id)
        try:
            pr.find_rule(ruleset, requester.user_id, kind, rule_id)
        except pr.PushRuleError as e:
            raise _rule_error(e) from None
        rendered = pr.render_ruleset(ruleset, requester.user_id)
        return next(r for r in rendered[kind] if r["rule_id"] == rule_id)

    async def get_attr(self, requester: Requester, scope: str, kind: str, rule_id: str, attr: str) -> dict[str, Any]:
        rule = await self.get_rule(requester, scope, kind, rule_id)
        return {attr: rule[attr]}

    async def put_rule(self, requester: Requester, scope: str, kind: str, rule_id: str, body: dict[str, Any],
                       before: str | None, after: str | None) -> None:
        self._check_scope(scope)
        await self._change(requester.user_id, lambda rs: pr.put_rule(rs, kind, rule_id, body, before=before,
                                                                      after=after))

    async def delete_rule(self, requester: Requester, scope: str, kind: str, rule_id: str) -> None:
        self._check_scope(scope)
        await self._change(requester.user_id, lambda rs: pr.delete_rule(rs, kind, rule_id))

    async def set_attr(self, requester: Requester, scope: str, kind: str, rule_id: str, attr: str,
                       body: dict[str, Any]) -> None:
        self._check_scope(scope)
        if attr not in body:
            raise errors.MatrixError(400, "M_MISSING_PARAM", f"'{attr}' is required")
        if attr == "enabled":
            await self._change(requester.user_id, lambda rs: pr.set_enabled(rs, kind, rule_id, body["enabled"]))
        else:
            await self._change(requester.user_id, lambda rs: pr.set_actions(rs, kind, rule_id, body["actions"]))

    @staticmethod
    def _check_scope(scope: str) -> None:
        if scope != "global":
            raise errors.MatrixError(400, "M_INVALID_PARAM", "Only the 'global' scope is supported")

    async def _change(self, user_id: str, change: Any) -> None:
        try:
            new = await self.store.update_ruleset(user_id, change)
        except pr.PushRuleError as e:
            raise _rule_error(e) from None
        await self.account_data.put(user_id, "", "m.push_rules", {"global": pr.render_ruleset(new, user_id)},
                                    server_managed=True)


ROOM_CONTEXT_TYPES = ("m.room.member", "m.room.power_levels", "m.room.create")


class PushService:
    """Counters, /notifications and pushers."""

    def __init__(self, store: PushStore, events: EventStore, server_name: str, *,
                 allow_http_gateways: bool = False, retry_base_s: float = 1.0, max_attempts: int = 6,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.store = store
        self.events = events
        self._summaries: BatchLoader[tuple[str, str], list[Any]] = BatchLoader(store.unread_summaries, list)
        # (user, room) -> ((thread_id, notifications, highlights), ...): what a woken sync reads.
        # Scope: the room. Kept current by the writers below (record_push_actions, reset_counts).
        self._counts: GuardedCache[tuple[str, str], tuple[tuple[str, int, int], ...]] = GuardedCache()
        # Per room: joined members' display names, power levels, create event (see on_commit).
        self._room_contexts: dict[str, tuple[dict[str, str | None], Any, Any]] = {}
        self._room_changes: dict[str, int] = {}
        self.wait_applied: Callable[[int], Awaitable[None]] | None = None  # RoomService.sequencer.applied
        self.server_name = server_name
        self.allow_http_gateways = allow_http_gateways
        self.retry_base_s = retry_base_s
        self.max_attempts = max_attempts
        self._http = httpx.AsyncClient(timeout=10, transport=transport)
        self._tasks: set[asyncio.Task[None]] = set()
        self._rules_cache: dict[str, tuple[str, list[tuple[str, dict[str, Any]]]]] = {}

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()

    # -- after an event commits ------------------------------------------------
    async def on_new_events(self, new: list[NewEvent]) -> None:
        for n in new:
            await self._process(n)

    def _rules_for(self, user_id: str, ruleset: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
        key = json.dumps(ruleset, sort_keys=True) if ruleset else ""
        cached = self._rules_cache.get(user_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        rules = pr.effective_rules(ruleset, user_id)
        if len(self._rules_cache) > 10_000:
            self._rules_cache.clear()
        self._rules_cache[user_id] = (key, rules)
        return rules

    def _is_local(self, user_id: str) -> bool:
        return user_id.endswith(":" + self.server_name)

    def on_commit(self, stored: StoredEvent) -> None:
        """RoomService.on_commit: a change of members or power levels makes the room's context stale."""
        ev = stored.event
        if ev.is_state and ev.type in ROOM_CONTEXT_TYPES:
            self._room_changes[ev.room_id] = self._room_changes.get(ev.room_id, 0) + 1
            self._room_contexts.pop(ev.room_id, None)

    async def _room_context(self, room_id: str) -> tuple[dict[str, str | None], Any, Any]:
        """(joined member -> display name, power levels content, create event) of the room."""
        ctx = self._room_contexts.get(room_id)
        if ctx is not None:
            return ctx
        changes = self._room_changes.get(room_id, 0)
        members = await self.events.members(room_id, ["join"])
        names = {m["user_id"]: m["displayname"] for m in members}
        state_ids = await self.events.current_state_ids(room_id, [("m.room.power_levels", ""), ("m.room.create", "")])
        stored = await self.events.get_events(list(state_ids.values()))
        pl_ev = stored.get(state_ids.get(("m.room.power_levels", ""), ""))
        create_ev = stored.get(state_ids.get(("m.room.create", ""), ""))
        ctx = (names, pl_ev.event.content if pl_ev is not None else None, create_ev.event if create_ev else None)
        if changes == self._room_changes.get(room_id, 0):
            if len(self._room_contexts) > 20_000:
                self._room_contexts.clear()
            self._room_contexts[room_id] = ctx
        return ctx

    async def _process(self, n: NewEvent) -> None:
        event = n.event
        pdu = event.pdu
        room_id = event.room_id
        if self.wait_applied is not None:
            # The room context below reflects at least this event's position.
            await self.wait_applied(n.stream_ordering)
        names, pl_content, create_event = await self._room_context(room_id)
        joined = len(names)
        recipients = [u for u in names if u != event.sender and self._is_local(u)]
        invitee = event.state_key if event.type == "m.room.member" else None
        if (invitee and invitee != event.sender and invitee not in names and self._is_local(invitee)
                and pr.lookup_key(pdu, "content.membership") == "invite"):
            recipients.append(invitee)
        if not recipients:
            return
        sender_power = get_user_power_level_from_content(event.sender, pl_content, create_event, event.room_version)
        levels = pl_content.get("notifications") if isinstance(pl_content, dict) else None
        levels = levels if isinstance(levels, dict) else {}
        rulesets = await self.store.rulesets_for(recipients)
        # The default rules read the recipient only through invite_for_me (state_key) and
        # is_user_mention (m.mentions.user_ids), so every recipient with no rules of their own
        # who is neither gets the same outcome: evaluate that once per event, not 300 times.
        involved = {event.state_key} if event.state_key else set()
        mentioned = pr.lookup_key(pdu, "content.m\\.mentions.user_ids")
        if isinstance(mentioned, list):
            involved.update(u for u in mentioned if isinstance(u, str))
        shared: pr.Outcome | None = None
        rows: list[tuple[str, bool, bool, list[Any]]] = []
        for user_id in recipients:
            ruleset = rulesets.get(user_id)
            plain = ruleset is None and user_id not in involved
            if plain and shared is not None:
                outcome = shared
            else:
                ctx = pr.PushContext(user_id=user_id, display_name=names.get(user_id), member_count=joined,
                                     sender_power=sender_power, notification_levels=levels)
                outcome = pr.outcome_of(pr.evaluate(self._rules_for(user_id, ruleset), pdu, ctx))
                if plain:
                    shared = outcome
            if outcome.notify:
                rows.append((user_id, True, outcome.highlight, outcome.actions))
        if not rows:
            return
        thread_id = pr.thread_id_of(pdu)
        write = self._counts.begin_write(room_id)
        changed: list[Any] | None = None
        try:
            changed = await self.store.record_push_actions(room_id, event.event_id, n.stream_ordering, thread_id,
                                                           pdu.get("origin_server_ts", now_ms()), rows)
        finally:
            if self._counts.end_write(room_id, write) and changed is not None:
                for r in changed:  # ran alone: the returned counters are the current ones
                    self._set_count(r["user_id"], room_id, r["thread_id"], r["notif_count"], r["highlight_count"])
            else:
                for user_id, *_ in rows:
                    self._counts.invalidate((user_id, room_id))
        await self._poke_pushers(n, rows)

    def _set_count(self, user_id: str, room_id: str, thread_id: str, notifications: int, highlights: int) -> None:
        key = (user_id, room_id)
        cached = self._counts.get(key)
        if cached is None:
            return
        others = tuple(t for t in cached if t[0] != thread_id)
        self._counts.set(key, (*others, (thread_id, int(notifications), int(highlights))))

    # -- receipts and /sync -----------------------------------------------------
    async def on_read(self, user_id: str, room_id: str) -> None:
        write = self._counts.begin_write(room_id)
        try:
            await self.store.reset_counts(user_id, room_id)
        finally:
            self._counts.end_write(room_id, write)
            self._counts.invalidate((user_id, room_id))

    async def unread_counts(
        self, user_id: str, room_ids: list[str], per_thread: bool
    ) -> dict[str, tuple[dict[str, int], dict[str, dict[str, int]]]]:
        """room -> (unread_notifications, unread_thread_notifications)."""
        out: dict[str, tuple[dict[str, int], dict[str, dict[str, int]]]] = {
            r: ({"notification_count": 0, "highlight_count": 0}, {}) for r in room_ids
        }
        found: dict[str, tuple[tuple[str, int, int], ...]] = {}
        missing: list[str] = []
        for room_id in room_ids:
            cached = self._counts.get((user_id, room_id))
            if cached is None:
                missing.append(room_id)
            else:
                found[room_id] = cached
        if missing:
            marks = [self._counts.read_mark(r) for r in missing]
            # Syncs woken together ask together: one query for all of them.
            per_room = await self._summaries.load_many([(user_id, r) for r in missing])
            for room_id, mark, records in zip(missing, marks, per_room, strict=True):
                value = tuple((r["thread_id"], int(r["notif_count"]), int(r["highlight_count"])) for r in records)
                self._counts.put((user_id, room_id), value, room_id, mark)
                found[room_id] = value
        for room_id, rows in found.items():
            main, threads = out[room_id]
            for thread_id, n, h in rows:
                if per_thread and thread_id != "main":
                    if n or h:
                        threads[thread_id] = {"notification_count": n, "highlight_count": h}
                else:
                    main["notification_count"] += n
                    main["highlight_count"] += h
        return out

    async def notifications(self, requester: Requester, args: dict[str, str], serializer: Any) -> dict[str, Any]:
        before: int | None = None
        if args.get("from"):
            if not args["from"].isdigit():
                raise errors.MatrixError(400, "M_INVALID_PARAM", "Invalid 'from' token")
            before = int(args["from"])
        try:
            limit = int(args.get("limit", "50"))
        except ValueError:
            raise errors.MatrixError(400, "M_INVALID_PARAM", "'limit' must be an integer") from None
        limit = max(1, min(limit, 100))
        only = args.get("only")
        rows = await self.store.notifications(requester.user_id, before, limit + 1, only == "highlight")
        more = len(rows) > limit
        rows = rows[:limit]
        stored = await self.events.get_events([r["event_id"] for r in rows])
        events = await serializer.serialize([stored[r["event_id"]] for r in rows if r["event_id"] in stored],
                                            include_room_id=True)
        by_id = {e["event_id"]: e for e in events}
        out = []
        for r in rows:
            if r["event_id"] not in by_id:
                continue
            out.append({"actions": r["actions"], "event": by_id[r["event_id"]], "read": bool(r["read"]),
                        "room_id": r["room_id"], "ts": r["ts"]})
        body: dict[str, Any] = {"notifications": out}
        if more and rows:
            body["next_token"] = str(rows[-1]["stream_ordering"])
        return body

    # -- pushers ------------------------------------------------------------------
    async def get_pushers(self, requester: Requester) -> dict[str, Any]:
        rows = await self.store.pushers_for([requester.user_id])
        out = []
        for r in rows:
            p = {k: r[k] for k in ("pushkey", "kind", "app_id", "app_display_name", "device_display_name", "lang",
                                   "data")}
            if r["profile_tag"] is not None:
                p["profile_tag"] = r["profile_tag"]
            out.append(p)
        return {"pushers": out}

    async def set_pusher(self, requester: Requester, body: dict[str, Any]) -> None:
        def need_str(name: str, max_len: int | None = None) -> str:
            v = body.get(name)
            if not isinstance(v, str) or not v:
                raise errors.MatrixError(400, "M_MISSING_PARAM", f"'{name}' is required")
            if max_len is not None and len(v.encode()) > max_len:
                raise errors.MatrixError(400, "M_INVALID_PARAM", f"'{name}' is too long")
            return v

        pushkey = need_str("pushkey", 512)
        app_id = need_str("app_id", 64)
        if "kind" not in body:
            raise errors.MatrixError(400, "M_MISSING_PARAM", "'kind' is required")
        kind = body["kind"]
        if kind is None:
            await self.store.delete_pusher(requester.user_id, app_id, pushkey)
            return
        if kind != "http":
            raise errors.MatrixError(400, "M_INVALID_PARAM", f"Unsupported pusher kind {kind!r}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise errors.MatrixError(400, "M_MISSING_PARAM", "'data' is required")
        url = data.get("url")
        if not isinstance(url, str):
            raise errors.MatrixError(400, "M_MISSING_PARAM", "'data.url' is required for http pushers")
        parts = urlsplit(url)
        schemes = ("https", "http") if self.allow_http_gateways else ("https",)
        if parts.scheme not in schemes or not parts.netloc or parts.path != NOTIFY_PATH:
            raise errors.MatrixError(400, "M_INVALID_PARAM",
                                     f"'data.url' must be an HTTPS URL with the path {NOTIFY_PATH}")
        fmt = data.get("format")
        if fmt is not None and fmt != "event_id_only":
            raise errors.MatrixError(400, "M_INVALID_PARAM", "The only 'data.format' is 'event_id_only'")
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise errors.MatrixError(400, "M_INVALID_PARAM", "'append' must be a boolean")
        profile_tag = body.get("profile_tag")
        if profile_tag is not None and not isinstance(profile_tag, str):
            raise errors.MatrixError(400, "M_INVALID_PARAM", "'profile_tag' must be a string")
        await self.store.set_pusher({
            "user_id": requester.user_id, "app_id": app_id, "pushkey": pushkey, "kind": kind,
            "app_display_name": need_str("app_display_name"), "device_display_name": need_str("device_display_name"),
            "profile_tag": profile_tag, "lang": need_str("lang"), "data": data, "device_id": requester.device_id,
            "pushkey_ts": now_ms(),
        }, append)

    async def devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """A pusher belongs to the device that set it: logging out stops its notifications."""
        await self.store.delete_pushers_for_devices(user_id, device_ids)

    async def _poke_pushers(self, n: NewEvent, rows: list[tuple[str, bool, bool, list[Any]]]) -> None:
        users = [r[0] for r in rows]
        pushers = await self.store.pushers_for(users)
        if not pushers:
            return
        actions = {r[0]: r[3] for r in rows}
        unread = await self.store.total_unread(users)
        for p in pushers:
            if p["kind"] != "http":
                continue
            body = self._notification_body(n, p, actions[p["user_id"]], unread.get(p["user_id"], 0))
            task = asyncio.ensure_future(self._deliver(p, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _notification_body(self, n: NewEvent, p: Any, actions: list[Any], unread: int) -> dict[str, Any]:
        tweaks = {a["set_tweak"]: a.get("value", True) for a in actions if isinstance(a, dict) and "set_tweak" in a}
        data = {k: v for k, v in p["data"].items() if k != "url"}
        device = {"app_id": p["app_id"], "pushkey": p["pushkey"], "pushkey_ts": p["pushkey_ts"] // 1000,
                  "data": data, "tweaks": tweaks}
        notification: dict[str, Any] = {
            "event_id": n.event.event_id, "room_id": n.event.room_id, "counts": {"unread": unread},
            "devices": [device],
        }
        if data.get("format") != "event_id_only":
            notification.update({
                "type": n.event.type, "sender": n.event.sender, "content": n.event.content,
                "prio": "high" if tweaks.get("highlight") or "sound" in tweaks else "low",
            })
            if n.event.type == "m.room.member":
                notification["user_is_target"] = n.event.state_key == p["user_id"]
        return {"notification": notification}

    async def _deliver(self, p: Any, body: dict[str, Any]) -> None:
        url = p["data"]["url"]
        delay = self.retry_base_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                r = await self._http.post(url, json=body)
                if r.status_code == 200:
                    rejected = []
                    try:
                        parsed = r.json()
                        if isinstance(parsed, dict) and isinstance(parsed.get("rejected"), list):
                            rejected = parsed["rejected"]
                    except ValueError:
                        pass
                    if p["pushkey"] in rejected:
                        log.info("push gateway rejected pushkey of %s; removing the pusher", p["user_id"])
                        await self.store.delete_pusher(p["user_id"], p["app_id"], p["pushkey"])
                    return
                if 400 <= r.status_code < 500 and r.status_code != 429:
                    log.warning("push gateway %s refused a notification: %d", url, r.status_code)
                    return
                log.info("push gateway %s answered %d (attempt %d)", url, r.status_code, attempt)
            except httpx.HTTPError as e:
                log.info("push gateway %s unreachable (attempt %d): %s", url, attempt, e)
            if attempt < self.max_attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 600)
        log.warning("giving up on a notification to %s", url)
