"""The Textual application: wires the Matrix client, the model and the screens together."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App
from textual.css.query import NoMatches

from .cache import StateCache
from .config import SessionStore, Settings
from .matrix import (
    ConnectionStatus,
    HttpxTransport,
    LoggedOut,
    MatrixClient,
    MatrixError,
    Session,
    Transport,
    TransportError,
)
from .media import MediaCache
from .model import ClientState
from .notify import DesktopNotifier
from .present import notification_text, should_notify
from .screens import LoginScreen, MainScreen
from .snapshot import DEFAULT_MAX_EVENTS
from .widgets.inline_image import ImageProtocol
from .widgets.inline_image import image_protocol as detect_image_protocol

DEFAULT_HOMESERVER = "http://127.0.0.1:8008"
#: Seconds between a sync and writing what it changed to the local cache (syncs in between share the write).
CACHE_SAVE_DELAY_S = 2.0
#: Answers to a cached ``since`` that mean "start over": the token is unknown to the server.
_STALE_SINCE = frozenset({"M_INVALID_PARAM", "M_UNKNOWN_POS", "M_UNKNOWN"})


class ParleyApp(App[None]):
    """Parley's terminal Matrix client.

    ``client`` is the Matrix client layer (its transport decides where requests go);
    ``transport_factory`` makes a transport for a homeserver typed on the login screen;
    ``tz`` fixes the timezone of timestamps (None: local time); ``clock`` gives "now" in ms;
    ``settings`` are the user's preferences; ``notifier`` sends desktop popups (built from
    the settings when not given). ``cache_root`` is where each account's rooms and recent
    timelines are cached (None: no cache), keeping ``cache_max_events`` events per room:
    with a cache the room list shows at once and the first sync only catches up.
    ``image_protocol`` draws timeline pictures with kitty graphics, sixels or half-cells
    (None: the best the terminal answered to, or ``$PARLEY_TUI_IMAGES``).
    """

    TITLE = "Parley"
    ENABLE_COMMAND_PALETTE = False

    def __init__(
        self,
        client: MatrixClient,
        *,
        store: SessionStore | None = None,
        user_hint: str = "",
        transport_factory: Callable[[str], Transport] = HttpxTransport,
        tz: tzinfo | None = None,
        clock: Callable[[], float] = time.time,
        settings: Settings | None = None,
        notifier: DesktopNotifier | None = None,
        cache_root: Path | None = None,
        cache_max_events: int = DEFAULT_MAX_EVENTS,
        image_protocol: ImageProtocol | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.store = store
        self.user_hint = user_hint
        self.transport_factory = transport_factory
        self.tz = tz
        self.clock = clock
        self.settings = settings or Settings()
        self.notifier = notifier or DesktopNotifier(self.settings.desktop_notifications)
        self.media = MediaCache()
        self.image_protocol: ImageProtocol = image_protocol or detect_image_protocol()
        self.model = ClientState(client.session.user_id if client.session else "")
        self.cache_root = cache_root
        self.cache_max_events = cache_max_events
        self.cache: StateCache | None = None
        self._save_scheduled = False
        #: the model came from the cache (until the first sync, or a cold restart)
        self.restored_from_cache = False
        self._told_fallback = False
        client.on_session_changed = self._session_changed
        client.add_status_listener(self._status_changed)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def on_mount(self) -> None:
        if self.client.session is not None:
            self._start(self.client.session)
        else:
            self.push_screen(LoginScreen(self.client.homeserver, self.user_hint))

    # -- session ---------------------------------------------------------------------------

    def _session_changed(self, session: Session | None) -> None:
        if self.store is not None:
            self.store.save(session)

    def _start(self, session: Session) -> None:
        if self.cache is not None:
            self.cache.close()  # the previous session's (its writes finish first)
        self.cache = None if self.cache_root is None else StateCache.for_account(
            self.cache_root, session.homeserver, session.user_id, self.cache_max_events)
        cached = self.cache.load() if self.cache is not None else None
        self.restored_from_cache = cached is not None
        self.model = cached or ClientState(session.user_id)
        self.push_screen(MainScreen())
        self.sync_loop()

    @on(LoginScreen.Submitted)
    def _login_submitted(self, message: LoginScreen.Submitted) -> None:
        self.log_in(message)

    @work(group="login", exclusive=True)
    async def log_in(self, request: LoginScreen.Submitted) -> None:
        homeserver = request.homeserver.rstrip("/") or DEFAULT_HOMESERVER
        if homeserver != self.client.homeserver:
            await self.client.transport.aclose()
            self.client.transport = self.transport_factory(homeserver)
            self.client.homeserver = homeserver
        try:
            if request.register:
                localpart = request.user.lstrip("@").split(":", 1)[0]
                session = await self.client.register(localpart, request.password, request.registration_token)
            else:
                session = await self.client.login_password(request.user, request.password)
        except (MatrixError, TransportError) as error:
            screen = self.screen
            if isinstance(screen, LoginScreen):
                reason = error.message if isinstance(error, MatrixError) else f"cannot reach {homeserver}: {error}"
                screen.show_error(reason)
            return
        self.pop_screen()
        self._start(session)

    # -- sync ------------------------------------------------------------------------------------

    @work(group="sync", exclusive=True)
    async def sync_loop(self) -> None:
        try:
            await self.client.sync_forever(self._on_sync, since=self.model.next_batch)
        except LoggedOut:
            if self.cache is not None:
                self.cache.clear()  # a finished session leaves nothing of its rooms behind
                self.cache.close()
                self.cache = None
            self.notify("Your session ended; please log in again.", severity="error", timeout=10)
            self._back_to_login()
        except MatrixError as error:
            if self.model.catching_up and error.status == 400 and error.errcode in _STALE_SINCE:
                self._start_cold()
                return
            self.notify(f"Sync stopped: {error}", severity="error", timeout=10)

    def _start_cold(self) -> None:
        """The server does not know the cached sync token: forget the cache, sync from scratch."""
        if self.cache is not None:
            self.cache.clear()
        self.restored_from_cache = False
        self.model = ClientState(self.model.user_id)
        screen = self._main_screen()
        if screen is not None and screen.ready:
            screen.room_id = None
            screen.refresh_from_model(None)
        self.call_later(self.sync_loop)

    def _back_to_login(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen(LoginScreen(self.client.homeserver, self.model.user_id))

    def _on_sync(self, response: dict[str, Any]) -> None:
        update = self.model.apply_sync(response)
        self._schedule_save()
        screen = self._main_screen()
        if screen is None or not screen.ready:
            return  # the screen draws everything from the model when it mounts
        try:
            screen.refresh_from_model(update)
        except NoMatches:
            return  # the app is closing: its widgets are already gone
        rang = False
        for notification in update.notifications:
            in_view = notification.room_id == screen.room_id and self.app_focus
            if not should_notify(notification, in_view):
                continue
            if not rang:
                self.bell()
                rang = True
            room = self.model.rooms.get(notification.room_id)
            if room is not None and self.notifier.available:
                title, body = notification_text(room, room.event(notification.event_id), self.model.user_id)
                self.run_worker(self.notifier.notify(title, body, urgent=notification.highlight),
                                group="notify")

    def _main_screen(self) -> MainScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    # -- local cache -------------------------------------------------------------------------

    def _schedule_save(self) -> None:
        if self.cache is not None and not self._save_scheduled:
            self._save_scheduled = True
            self.set_timer(CACHE_SAVE_DELAY_S, self._save_cache)

    def _save_cache(self) -> None:
        self._save_scheduled = False
        if self.cache is not None:
            self.run_worker(self.cache.save_async(self.model), group="cache", exit_on_error=False)

    def _status_changed(self, status: ConnectionStatus) -> None:
        reason = self.client.websocket_fallback_reason
        if status is ConnectionStatus.SYNCING and reason and not self._told_fallback:
            self._told_fallback = True
            self.notify(f"WebSocket sync is offered but did not connect ({reason}); using long-poll.",
                        severity="warning", timeout=8)
        screen = self._main_screen()
        if screen is not None and screen.ready:
            with contextlib.suppress(NoMatches):  # closing: the status bar is already gone
                screen.draw_status()

    async def on_unmount(self) -> None:
        self.client.stop()
        if self.cache is not None:
            if self.model.next_batch is not None:
                self.cache.save(self.model)  # the last syncs, whatever the timer had not written yet
            self.cache.close()
        await self.client.transport.aclose()
