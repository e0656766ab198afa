"""The `homeserver` command: run, migrate, register-user, generate-config, create-registration-token,
quarantine-media."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from homeserver.config import DEFAULTS, Config, ConfigError, load_config, render_config_template
from homeserver.logs import setup_logging


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None, help="data directory (default ./homeserver-data)")
    p.add_argument("--config", type=Path, default=None, help="config file (default <data-dir>/homeserver.yaml)")
    p.add_argument("--server-name", default=None, help="the server name (domain of user IDs)")
    p.add_argument("--listen", action="append", default=None, metavar="HOST:PORT",
                   help="address to listen on (repeatable; default 127.0.0.1:8008)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="override a config key, e.g. --set rate_limits.enabled=false (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="homeserver",
        description="Parley Matrix homeserver. Config keys may also be set with environment variables: "
        "PARLEY_ + the key path upper-cased with '__' between levels (PARLEY_RATE_LIMITS__ENABLED=false).",
    )
    sub = parser.add_subparsers(dest="command")
    _common(sub.add_parser("run", help="start the homeserver (the default)"))
    _common(sub.add_parser("migrate", help="apply database migrations and exit"))
    gen = sub.add_parser("generate-config", help="print (or write) a commented config file")
    _common(gen)
    gen.add_argument("--output", type=Path, default=None)
    reg = sub.add_parser("register-user", help="create a user from the shell")
    _common(reg)
    reg.add_argument("username")
    reg.add_argument("--password", default=None, help="password (asked for when omitted)")
    reg.add_argument("--admin", action="store_true", help="make the user a server admin")
    tok = sub.add_parser("create-registration-token", help="create a registration token")
    _common(tok)
    tok.add_argument("--token", default=None)
    tok.add_argument("--uses", type=int, default=None, help="how many registrations it allows (default unlimited)")
    tok.add_argument("--expires-in-days", type=float, default=None)
    quarantine = sub.add_parser(
        "quarantine-media", help="quarantine local media (downloads then answer 404) by ID, user or room"
    )
    _common(quarantine)
    which = quarantine.add_mutually_exclusive_group(required=True)
    which.add_argument("--media-id", action="append", default=None, metavar="ID_OR_MXC",
                       help="a media ID or mxc:// URI of this server (repeatable)")
    which.add_argument("--user", default=None, metavar="USER_ID", help="every media the user uploaded")
    which.add_argument("--room", default=None, metavar="ROOM_ID",
                       help="every local media an event of the room refers to")
    quarantine.add_argument("--release", action="store_true", help="lift the quarantine instead")
    return parser


def resolve_config(args: argparse.Namespace, *, create: bool) -> Config:
    from homeserver.server import ensure_data_dir, ensure_signing_key

    data_dir: Path = (args.data_dir or Path(os.environ.get("PARLEY_DATA_DIR", "homeserver-data"))).resolve()
    extra: dict[str, Any] = {}
    if args.server_name:
        extra["server_name"] = args.server_name
    if args.listen:
        extra["listen"] = args.listen
    config_file = args.config
    if config_file is None:
        if create:
            config_file = ensure_data_dir(
                data_dir, args.server_name or DEFAULTS["server_name"], args.listen or DEFAULTS["listen"]
            )
        else:
            config_file = data_dir / "homeserver.yaml"
    config = load_config(config_file, sets=args.sets, data_dir=data_dir, extra=extra)
    if create:
        ensure_signing_key(config.path("signing_key_path"))
    return config


async def _with_database(config: Config, work: Any) -> Any:
    from homeserver.server import Runtime

    runtime = Runtime(config)
    try:
        db = await runtime.open_database()
        try:
            return await work(db)
        finally:
            await db.close()
    finally:
        await asyncio.to_thread(runtime.stop_embedded)


def cmd_register_user(config: Config, args: argparse.Namespace) -> int:
    from homeserver import errors
    from homeserver.app import build_services

    password = args.password
    if password is None:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            print("passwords differ", file=sys.stderr)
            return 1

    async def work(db: Any) -> int:
        services = await build_services(config, db)
        try:
            localpart = services.accounts.validate_localpart(args.username)
            password_hash = await services.auth.passwords.hash(password)
            result = await services.accounts.create_account(localpart, password_hash, is_admin=args.admin)
        except errors.MatrixError as e:
            print(f"error: {e.error}", file=sys.stderr)
            return 1
        print(f"created {result['user_id']}{' (admin)' if args.admin else ''}")
        return 0

    return asyncio.run(_with_database(config, work))


def cmd_create_registration_token(config: Config, args: argparse.Namespace) -> int:
    from homeserver.services.auth import now_ms
    from homeserver.storage.accounts import AccountStore

    token = args.token or secrets.token_urlsafe(12)
    expiry = None
    if args.expires_in_days is not None:
        expiry = now_ms() + int(args.expires_in_days * 86400 * 1000)

    async def work(db: Any) -> int:
        await AccountStore(db).create_registration_token(token, args.uses, expiry, now_ms())
        print(token)
        return 0

    return asyncio.run(_with_database(config, work))


def cmd_quarantine_media(config: Config, args: argparse.Namespace) -> int:
    from homeserver import errors
    from homeserver.app import build_services

    async def work(db: Any) -> int:
        services = await build_services(config, db)
        try:
            count = await services.media.quarantine(
                by="cli",
                media_ids=args.media_id,
                user_id=args.user,
                room_id=args.room,
                quarantine=not args.release,
            )
        except errors.MatrixError as e:
            print(f"error: {e.error}", file=sys.stderr)
            return 1
        finally:
            await services.media.close()
        print(f"{'released' if args.release else 'quarantined'} {count} media")
        return 0

    return asyncio.run(_with_database(config, work))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *(argv if argv is not None else sys.argv[1:])])
    try:
        if args.command == "generate-config":
            text = render_config_template(args.server_name or "localhost", args.listen or DEFAULTS["listen"])
            if args.output:
                args.output.write_text(text)
            else:
                print(text, end="")
            return 0
        config = resolve_config(args, create=args.command in ("run", "migrate", "register-user",
                                                                "create-registration-token",
                                                                "quarantine-media"))
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    setup_logging(str(config.get("logging.level", "INFO")), str(config.get("logging.format", "text")))
    if args.command == "run":
        from homeserver.server import run_blocking

        return run_blocking(config)
    if args.command == "migrate":
        async def work(db: Any) -> int:
            print("database is up to date")
            return 0

        return asyncio.run(_with_database(config, work))
    if args.command == "register-user":
        return cmd_register_user(config, args)
    if args.command == "create-registration-token":
        return cmd_create_registration_token(config, args)
    if args.command == "quarantine-media":
        return cmd_quarantine_media(config, args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
