"""Wiring: configuration -> database, bus, services -> the Quart app.

Everything is constructed here and passed in explicitly; nothing looks
services up by name at run time (see ../shared/STYLE.md on Synapse's locator).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from quart import Quart, Response, g, request
from werkzeug.exceptions import HTTPException

from homeserver import errors
from homeserver.config import Config
from homeserver.core.tokens import SyncToken
from homeserver.infra.bus import LocalBus, StreamUpdate
from homeserver.infra.keyring import load_or_create_signing_key
from homeserver.infra.media_store import clean_staging, open_media_store
from homeserver.infra.ratelimit import LocalRateLimiter, NoRateLimiter, RateLimiter
from homeserver.api.fast_sync import FastSync
from homeserver.logs import request_id_var
from homeserver.services.accounts import AccountService
from homeserver.services.auth import AuthService
from homeserver.services.e2ee import E2EEService
from homeserver.services.events import EventSerializer, VisibilityFilter
from homeserver.services.key_backup import KeyBackupService
from homeserver.services.media import MediaService
from homeserver.services.notifier import Notifier
from homeserver.services.push import PushRulesService, PushService
from homeserver.services.relations import RelationsService
from homeserver.services.room_directory import RoomDirectoryService
from homeserver.services.room_state import RoomStateService
from homeserver.services.room_upgrade import RoomUpgradeService
from homeserver.services.rooms import RoomService
from homeserver.services.stream_cache import EventStreamCache
from homeserver.services.streaming import StreamingConfig, StreamingSync
from homeserver.services.search import SearchService, UserDirectoryService
from homeserver.services.sync import SyncService
from homeserver.services.timeline import TimelineService
from homeserver.services.userdata import (
    AccountDataService,
    FilterService,
    PresenceService,
    ReceiptService,
    TypingService,
)
from homeserver.storage.accounts import AccountStore
from homeserver.storage.aliases import AliasStore
from homeserver.storage.database import Database
from homeserver.storage.e2ee import E2EEStore
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.key_backup import KeyBackupStore
from homeserver.storage.push import PushStore
from homeserver.storage.media import MediaRepositoryStore
from homeserver.storage.relations import RelationStore
from homeserver.storage.room_directory import RoomDirectoryStore
from homeserver.storage.search import SearchStore
from homeserver.storage.userdata import UserDataStore

log = logging.getLogger(__name__)

CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
    "Access-Control-Expose-Headers": "Retry-After, X-Request-Id",
}


@dataclass
class Services:
    config: Config
    db: Database
    limiter: RateLimiter
    account_store: AccountStore
    auth: AuthService
    accounts: AccountService
    media: MediaService
    metrics: Metrics
    events: EventStore
    aliases: AliasStore
    serializer: EventSerializer
    visibility: VisibilityFilter
    rooms: RoomService
    room_state: RoomStateService
    timeline: TimelineService
    bus: LocalBus
    notifier: Notifier
    userdata: UserDataStore
    filters: FilterService
    typing: TypingService
    receipts: ReceiptService
    account_data: AccountDataService
    presence: PresenceService
    sync: SyncService
    streaming: StreamingSync
    relations: RelationsService
    room_directory: RoomDirectoryService
    upgrades: RoomUpgradeService
    search: SearchService
    user_directory: UserDirectoryService
    e2ee: E2EEService
    key_backup: KeyBackupService
    push_rules: PushRulesService
    push: PushService
    # Closed in reverse order on shutdown.
    closers: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        for closer in reversed(self.closers):
            await closer()
        await self.db.close()


class Metrics:
    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "parley_http_requests", "HTTP requests", ["method", "endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "parley_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "endpoint"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        db_ref = db

        class _PoolCollector:
            def collect(self) -> Any:
                stats = db_ref.pool_stats()
                fam = GaugeMetricFamily("parley_db_pool_connections", "Database pool connections", labels=["state"])
                fam.add_metric(["total"], stats["size"])
                fam.add_metric(["idle"], stats["idle"])
                fam.add_metric(["in_use"], stats["size"] - stats["idle"])
                fam.add_metric(["max"], stats["max"])
                yield fam

        self.registry.register(_PoolCollector())  # type: ignore[arg-type]

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def build_services(config: Config, db: Database) -> Services:
    limiter: RateLimiter = LocalRateLimiter() if config.get("rate_limits.enabled", True) else NoRateLimiter()
    account_store = AccountStore(db)
    auth = AuthService(config, db, account_store)
    accounts = AccountService(config, db, account_store, auth, limiter)
    signing_key = load_or_create_signing_key(config.path("signing_key_path"))
    events = EventStore(db)
    aliases = AliasStore(db)
    serializer = EventSerializer(events)
    visibility = VisibilityFilter(db)
    rooms = RoomService(config, db, events, aliases, account_store, signing_key, limiter)
    accounts.on_deactivate.append(rooms.leave_all_rooms)
    accounts.on_profile_change.append(rooms.propagate_profile)

    def forget_redacted(stored: StoredEvent) -> None:
        # A redaction changes how its target is served: drop the cached forms, right after the commit.
        redacts = stored.event.redacts
        if stored.event.type == "m.room.redaction" and redacts:
            events.invalidate(redacts)
            serializer.invalidate(redacts)

    rooms.on_commit.append(forget_redacted)
    # This process writes the events stream: positions continue from what is stored.
    rooms.sequencer.start_after(await events.max_stream_ordering())
    stream_cache = EventStreamCache(start=await events.max_stream_ordering())
    rooms.on_commit.append(stream_cache.apply)
    rooms.on_forget.append(stream_cache.forgot)

    bus = LocalBus()
    userdata = UserDataStore(db)
    positions = await userdata.max_positions()
    e2ee = E2EEService(db, E2EEStore(db), accounts.uia, bus, config.server_name)
    accounts.on_devices_deleted.append(e2ee.devices_deleted)
    positions["to_device"], positions["device_lists"] = await e2ee.max_positions()
    typing_start = int(time.time() * 1000)
    notifier = Notifier(bus, SyncToken(events=await events.max_stream_ordering(), typing=typing_start, **positions))
    filters = FilterService(userdata)
    typing = TypingService(bus, events, rooms, start=typing_start)
    account_data = AccountDataService(userdata, bus, rooms)
    receipts = ReceiptService(userdata, events, rooms, bus, account_data)
    presence = PresenceService(userdata, bus, bool(config.get("presence.enabled", True)))
    push_store = PushStore(db)
    push = PushService(
        push_store, events, config.server_name,
        allow_http_gateways=bool(config.get("push.allow_http_gateways", False)),
        retry_base_s=float(config.get("push.retry_base_s", 1.0)),
        max_attempts=int(config.get("push.max_attempts", 6)),
    )
    push_rules = PushRulesService(push_store, account_data)
    # Counters first, then wake the syncs (publish_events below), so a woken sync sees them.
    rooms.listeners.append(push.on_new_events)
    rooms.on_commit.append(push.on_commit)
    push.wait_applied = rooms.sequencer.applied
    receipts.on_read.append(push.on_read)
    accounts.on_devices_deleted.append(push.devices_deleted)
    sync = SyncService(
        events=events, serializer=serializer, visibility=visibility, notifier=notifier, filters=filters,
        typing=typing, receipts=receipts, account_data=account_data, presence=presence, userdata=userdata,
        accounts=account_store, max_timeout_ms=int(config.get("http.max_sync_timeout_ms", 600_000)),
        cache=stream_cache, push=push,
    )
    # to-device, device lists and key counts in /sync (E2EEService.add_to_sync)
    sync.extensions.append(e2ee)
    e2ee.notifier, e2ee.stream_cache = notifier, stream_cache

    # Who hears of a room's events; refreshed when a membership event lands.
    audience: dict[str, frozenset[str]] = {}

    async def publish_events(new: list[Any]) -> None:
        # Positions, not payloads: each recipient's sync reads what it needs.
        for n in new:
            # The stream cache holds this event and every earlier one before anyone is woken.
            await rooms.sequencer.applied(n.stream_ordering)
            room_id = n.event.room_id
            is_member_event = n.event.type == "m.room.member"
            if is_member_event or room_id not in audience:
                if len(audience) > 100_000:
                    audience.clear()
                audience[room_id] = frozenset(await events.joined_and_invited_users(room_id))
            users = set(audience[room_id])
            if is_member_event and n.event.state_key:
                users.add(n.event.state_key)
            if len(users) > 2:
                await sync.prepare_wake(room_id, n.event.sender, n.stream_ordering)
            await bus.publish(StreamUpdate("events", n.stream_ordering, frozenset(users), frozenset([n.event.room_id])))

    rooms.listeners.append(publish_events)
    media_blobs = open_media_store(config)
    # Staging files of uploads a crash interrupted are garbage: nothing refers to them.
    clean_staging(media_blobs.staging_dir)
    media = MediaService(config, MediaRepositoryStore(db), media_blobs, limiter)
    relations = RelationsService(rooms, events, RelationStore(db), serializer, visibility)
    directory_store = RoomDirectoryStore(db)
    search_store = SearchStore(db)
    services = Services(
        config=config,
        db=db,
        limiter=limiter,
        account_store=account_store,
        auth=auth,
        accounts=accounts,
        media=media,
        metrics=Metrics(db),
        events=events,
        aliases=aliases,
        serializer=serializer,
        visibility=visibility,
        rooms=rooms,
        room_state=RoomStateService(rooms, events, serializer),
        timeline=TimelineService(rooms, events, serializer, visibility, relations),
        bus=bus,
        notifier=notifier,
        userdata=userdata,
        filters=filters,
        typing=typing,
        receipts=receipts,
        account_data=account_data,
        presence=presence,
        sync=sync,
        streaming=StreamingSync(
            sync=sync, auth=auth, rooms=rooms, typing=typing, receipts=receipts,
            config=streaming_config(config),
        ),
        relations=relations,
        room_directory=RoomDirectoryService(rooms, directory_store, config.server_name),
        upgrades=RoomUpgradeService(rooms, directory_store),
        search=SearchService(search_store, events, rooms, serializer, visibility),
        user_directory=UserDirectoryService(config, search_store),
        e2ee=e2ee,
        key_backup=KeyBackupService(db, KeyBackupStore(db)),
        push_rules=push_rules,
        push=push,
    )
    services.closers.append(media.close)
    services.closers.append(push.close)
    return services


def streaming_config(config: Config) -> StreamingConfig:
    return StreamingConfig(
        wait_ms=min(int(config.get("http.stream_wait_ms", 30_000)), int(config.get("http.max_sync_timeout_ms", 600_000))),
        auth_timeout_s=float(config.get("http.websocket_auth_timeout_s", 10)),
        max_strikes=int(config.get("http.websocket_max_strikes", 20)),
        max_inflight_requests=int(config.get("http.websocket_max_inflight_requests", 16)),
        sse_heartbeat_s=float(config.get("http.sse_heartbeat_interval_s", 5)),
        sse_min_heartbeat_s=float(config.get("http.sse_min_heartbeat_interval_s", 1)),
    )


def create_app(services: Services) -> Quart:
    from homeserver.api.admin import media as admin_media
    from homeserver.api.client import (
        account, keys, push, relations, room_directory, rooms, search, streaming, sync,
    )
    from homeserver.infra import ws_compression

    ws_compression.install()
    from homeserver.api.media import content

    app = Quart("homeserver")
    app.config["HS"] = services
    # Long-polls and uploads must not be cut by framework defaults: /sync limits itself.
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = 120
    app.config["MAX_CONTENT_LENGTH"] = None
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False

    app.register_blueprint(account.discovery)
    app.register_blueprint(account.client.blueprint)
    app.register_blueprint(account.client_v1.blueprint)
    app.register_blueprint(rooms.client.blueprint)
    app.register_blueprint(sync.client.blueprint)
    app.register_blueprint(streaming.streaming)
    app.register_blueprint(content.legacy.blueprint)
    app.register_blueprint(content.v1.blueprint)
    app.register_blueprint(content.client.blueprint)
    app.register_blueprint(admin_media.admin.blueprint)
    app.register_blueprint(relations.client_v1.blueprint)
    app.register_blueprint(room_directory.client.blueprint)
    app.register_blueprint(search.client.blueprint)
    app.register_blueprint(keys.client.blueprint)
    app.register_blueprint(keys.client_unstable.blueprint)
    app.register_blueprint(push.client.blueprint)

    cors_origin = str(services.config.get("http.cors_allow_origin", "*"))
    # Long-poll /sync, the bulk of all requests, skips Quart's per-request machinery (see fast_sync).
    cors = [(b"access-control-allow-origin", cors_origin.encode())]
    cors += [(k.lower().encode(), v.encode()) for k, v in CORS_HEADERS.items()]
    app.asgi_app = FastSync(app.asgi_app, services, cors)  # type: ignore[method-assign]

    @app.before_request
    async def start_request() -> Any:
        g.start = time.perf_counter()
        rid = request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16]
        g.request_id = rid
        request_id_var.set(rid)
        if request.method == "OPTIONS":
            return Response("", status=204)
        return None

    @app.after_request
    async def finish_request(response: Response) -> Response:
        response.headers["Access-Control-Allow-Origin"] = cors_origin
        for k, v in CORS_HEADERS.items():
            response.headers.setdefault(k, v)
        rid = getattr(g, "request_id", None)
        if rid:
            response.headers["X-Request-Id"] = rid
        start = getattr(g, "start", None)
        if start is not None:
            endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
            elapsed = time.perf_counter() - start
            services.metrics.requests.labels(request.method, endpoint, str(response.status_code)).inc()
            services.metrics.latency.labels(request.method, endpoint).observe(elapsed)
            log.info(
                "%s %s %d %.1fms", request.method, endpoint, response.status_code, elapsed * 1000,
            )
        return response

    @app.errorhandler(errors.MatrixError)
    async def matrix_error(e: errors.MatrixError) -> Any:
        return e.body(), e.status, e.headers

    @app.errorhandler(HTTPException)
    async def http_error(e: HTTPException) -> Any:
        status = e.code or 500
        if status == 404:
            return errors.unrecognized(404, "Unrecognized request").body(), 404
        if status == 405:
            return errors.unrecognized(405, "Method not allowed").body(), 405
        if status == 413:
            return errors.too_large().body(), 413
        if status == 400:
            return {"errcode": "M_UNKNOWN", "error": e.description or "Bad request"}, 400
        return {"errcode": "M_UNKNOWN", "error": e.description or "Error"}, status

    @app.errorhandler(Exception)
    async def unexpected(e: Exception) -> Any:
        log.exception("unhandled error")
        return {"errcode": "M_UNKNOWN", "error": "Internal server error"}, 500

    @app.route("/health", methods=["GET"])
    async def health() -> Any:
        if await services.db.ping():
            return {"status": "ok"}
        return {"status": "unavailable", "errcode": "M_UNKNOWN", "error": "database unavailable"}, 503

    @app.route("/metrics", methods=["GET"])
    async def metrics() -> Any:
        return Response(services.metrics.render(), content_type="text/plain; version=0.0.4")

    @app.before_serving
    async def start_background() -> None:
        services.presence.start()

    @app.after_serving
    async def shutdown() -> None:
        await services.presence.stop()
        await services.close()

    return app
