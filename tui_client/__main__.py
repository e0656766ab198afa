"""``tui-client [--homeserver URL] [--user USER_ID] [--no-cache] [--long-poll]``: start the terminal client."""

from __future__ import annotations

import argparse
import asyncio

from .app import DEFAULT_HOMESERVER, ParleyApp
from .cache import StateCache, default_cache_root
from .config import SessionStore, Settings
from .matrix import HttpxTransport, LoggedOut, MatrixClient, MatrixError, Session, TransportError


async def _log_out(store: SessionStore, session: Session) -> None:
    """Invalidate the saved access token on the server (best effort), then forget it."""
    transport = HttpxTransport(session.homeserver)
    try:
        await MatrixClient(transport, session.homeserver, session, on_session_changed=store.save).logout()
    except (MatrixError, TransportError, LoggedOut) as error:
        print(f"The server did not confirm the logout ({error}); the session is forgotten anyway.")
    finally:
        await transport.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tui-client", description="Parley's terminal Matrix client.")
    parser.add_argument("--homeserver", help=f"homeserver URL (default: the saved one, else {DEFAULT_HOMESERVER})")
    parser.add_argument("--user", help="user id to log in as, e.g. @alice:example.org")
    parser.add_argument("--notify", action="store_true",
                        help="desktop notifications (notify-send) for mentions and direct messages")
    parser.add_argument("--logout", action="store_true",
                        help="log out the saved session, delete its local cache and exit")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor write the local cache of rooms and recent messages")
    parser.add_argument("--long-poll", action="store_true",
                        help="sync with /sync long-polling even when the server offers a WebSocket")
    args = parser.parse_args(argv)
    store = SessionStore()
    session = store.load()
    if args.logout:
        if session is not None:
            asyncio.run(_log_out(store, session))
            cache = StateCache.for_account(default_cache_root(), session.homeserver, session.user_id)
            cache.clear()
            cache.close()
        store.save(None)
        print("Logged out." if session is not None else "No saved session.")
        return
    if session is not None and (
        (args.homeserver and args.homeserver.rstrip("/") != session.homeserver)
        or (args.user and args.user != session.user_id)
    ):
        session = None  # asked for a different account: log in afresh
    homeserver = (args.homeserver or (session.homeserver if session else DEFAULT_HOMESERVER)).rstrip("/")
    client = MatrixClient(HttpxTransport(homeserver), homeserver, session, use_websocket=not args.long_poll)
    settings = Settings.load()
    if args.notify:
        settings.desktop_notifications = True
    ParleyApp(client, store=store, user_hint=args.user or "", settings=settings,
              cache_root=None if args.no_cache else default_cache_root()).run()


if __name__ == "__main__":
    main()
