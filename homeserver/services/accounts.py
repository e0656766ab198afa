"""Accounts: registration, login, passwords, deactivation, devices and profiles."""

from __future__ import annotations

import secrets
from typing import Any

from homeserver import errors
from homeserver.config import Config
from homeserver.core.identifiers import is_valid_localpart, is_valid_user_id, parse_user_id
from homeserver.infra.ratelimit import RateLimiter
from homeserver.services.auth import AuthService, Requester, new_device_id, now_ms
from homeserver.services.uia import DUMMY, PASSWORD, REGISTRATION_TOKEN, UIAService, user_from_identifier
from homeserver.storage.accounts import AccountStore, RegistrationTokenExhausted, UserExists
from homeserver.storage.database import Database

MAX_DEVICE_ID_LEN = 255
MAX_DISPLAYNAME_LEN = 256
MAX_AVATAR_URL_LEN = 1000


class LoginFailureLimiter:
    """Failed logins per account and per client address (config: rate_limits.login_failures_*)."""

    def __init__(self, config: Config, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.per_account = config.rate_rule("login_failures_per_account")
        self.per_address = config.rate_rule("login_failures_per_address")

    def _keys(self, user_id: str | None, ip: str | None) -> list[tuple[str, Any]]:
        keys: list[tuple[str, Any]] = []
        if user_id:
            keys.append((f"login-fail:user:{user_id}", self.per_account))
        if ip:
            keys.append((f"login-fail:ip:{ip}", self.per_address))
        return keys

    async def check(self, user_id: str | None, ip: str | None) -> None:
        wait = 0
        for key, rule in self._keys(user_id, ip):
            wait = max(wait, await self.limiter.peek(key, rule))
        if wait:
            raise errors.limit_exceeded(wait)

    async def failed(self, user_id: str | None, ip: str | None) -> None:
        for key, rule in self._keys(user_id, ip):
            await self.limiter.record(key, rule)


class AccountService:
    def __init__(
        self,
        config: Config,
        db: Database,
        accounts: AccountStore,
        auth: AuthService,
        limiter: RateLimiter,
    ) -> None:
        self.config = config
        self.db = db
        self.accounts = accounts
        self.auth = auth
        self.limiter = limiter
        self.server_name = config.server_name
        self.login_failures = LoginFailureLimiter(config, limiter)
        self.uia = UIAService(
            accounts,
            auth.passwords,
            config.server_name,
            int(config.get("auth.uia_session_lifetime_ms")),
            login_failure_hook=self.login_failures,
        )
        # Hooks other services register (e.g. rooms: leave every room on deactivation).
        self.on_deactivate: list[Any] = []
        self.on_profile_change: list[Any] = []
        # Shared with AuthService, which deletes devices on logout.
        self.on_devices_deleted: list[Any] = auth.on_devices_deleted

    # -- registration ------------------------------------------------------
    def registration_flows(self) -> list[list[str]]:
        if self.config.get("registration.require_token") or not self.config.registration_open:
            return [[REGISTRATION_TOKEN]]
        return [[DUMMY]]

    def validate_localpart(self, username: str) -> str:
        localpart = username.lower()
        if not localpart or not is_valid_localpart(localpart):
            raise errors.MatrixError(
                400, "M_INVALID_USERNAME", "User ID may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'"
            )
        if len(f"@{localpart}:{self.server_name}".encode()) > 255:
            raise errors.MatrixError(400, "M_INVALID_USERNAME", "User ID is too long")
        return localpart

    async def username_available(self, username: str) -> bool:
        localpart = self.validate_localpart(username)
        if await self.accounts.user_exists(f"@{localpart}:{self.server_name}"):
            raise errors.MatrixError(400, "M_USER_IN_USE", "User ID already taken")
        return True

    async def registration_token_valid(self, token: str) -> bool:
        return await self.accounts.registration_token_valid(token, now_ms())

    async def register(self, body: dict[str, Any], kind: str, client_ip: str | None) -> dict[str, Any]:
        if kind == "guest":
            raise errors.MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
        if kind != "user":
            raise errors.invalid_param("'kind' must be 'user' or 'guest'")
        username = body.get("username")
        password = body.get("password")
        device_id = body.get("device_id")
        display_name = body.get("initial_device_display_name")
        inhibit_login = body.get("inhibit_login", False)
        refresh = body.get("refresh_token", False)
        _check_types(
            ("username", username, str), ("password", password, str), ("device_id", device_id, str),
            ("initial_device_display_name", display_name, str), ("inhibit_login", inhibit_login, bool),
            ("refresh_token", refresh, bool),
        )
        if username is not None:
            localpart = self.validate_localpart(username)
            user_id = f"@{localpart}:{self.server_name}"
            if await self.accounts.user_exists(user_id):
                raise errors.MatrixError(400, "M_USER_IN_USE", "User ID already taken")
        else:
            localpart = ""
            user_id = ""
        if device_id is not None and not (0 < len(device_id) <= MAX_DEVICE_ID_LEN):
            raise errors.invalid_param("'device_id' is too long")

        if body.get("auth") is None:
            # Only a first request (no auth yet) counts against the per-address limit.
            wait = await self.limiter.take(f"register:{client_ip}", self.config.rate_rule("registration_per_address"))
            if wait:
                raise errors.limit_exceeded(wait)
        data = await self.uia.authenticate(body, purpose="register", flows=self.registration_flows(),
                                           client_ip=client_ip)
        if password is None:
            raise errors.missing_param("'password' is required")
        if not localpart:
            localpart = "u" + secrets.token_hex(6)
            user_id = f"@{localpart}:{self.server_name}"
        password_hash = await self.auth.passwords.hash(password)
        result = await self.create_account(
            localpart,
            password_hash,
            registration_token=data.get("registration_token"),
            device_id=None if inhibit_login else (device_id or new_device_id()),
            device_display_name=display_name,
            with_refresh=refresh,
        )
        await self.uia.finish(data)
        return result

    async def create_account(
        self,
        localpart: str,
        password_hash: str | None,
        *,
        is_admin: bool = False,
        registration_token: str | None = None,
        device_id: str | None = None,
        device_display_name: str | None = None,
        with_refresh: bool = False,
    ) -> dict[str, Any]:
        """Create the user (and optionally a logged-in device) in one transaction."""
        user_id = f"@{localpart}:{self.server_name}"
        now = now_ms()
        out: dict[str, Any] = {"user_id": user_id, "home_server": self.server_name}
        try:
            async with self.db.transaction() as conn:
                if registration_token is not None:
                    await self.accounts.consume_registration_token(conn, registration_token, now)
                await self.accounts.create_user(
                    conn, user_id=user_id, localpart=localpart, password_hash=password_hash,
                    is_admin=is_admin, is_guest=False, displayname=localpart, now_ms=now,
                )
                if device_id is not None:
                    await self.accounts.upsert_device(conn, user_id, device_id, device_display_name, now)
                    tokens, _ = await self.auth.issue_tokens(conn, user_id, device_id, with_refresh=with_refresh)
                    out.update(tokens)
                    out["device_id"] = device_id
        except UserExists:
            raise errors.MatrixError(400, "M_USER_IN_USE", "User ID already taken") from None
        except RegistrationTokenExhausted:
            raise errors.MatrixError(401, "M_FORBIDDEN", "Registration token is no longer valid") from None
        return out

    # -- login -------------------------------------------------------------
    def login_flows(self) -> list[dict[str, Any]]:
        return [{"type": PASSWORD}]

    async def login(self, body: dict[str, Any], client_ip: str | None) -> dict[str, Any]:
        login_type = body.get("type")
        if login_type != PASSWORD:
            raise errors.MatrixError(400, "M_UNKNOWN", f"Unsupported login type {login_type!r}")
        identifier = body.get("identifier")
        if identifier is not None and not isinstance(identifier, dict):
            raise errors.bad_json("'identifier' must be an object")
        if isinstance(identifier, dict) and identifier.get("type") != "m.id.user":
            raise errors.MatrixError(400, "M_UNKNOWN", "Only the m.id.user identifier is supported")
        password = body.get("password")
        device_id = body.get("device_id")
        display_name = body.get("initial_device_display_name")
        refresh = body.get("refresh_token", False)
        _check_types(
            ("password", password, str), ("device_id", device_id, str),
            ("initial_device_display_name", display_name, str), ("refresh_token", refresh, bool),
        )
        if password is None:
            raise errors.missing_param("'password' is required")
        user_id = user_from_identifier(body, self.server_name)
        if user_id is None:
            raise errors.bad_json("'identifier.user' must name a user")
        if device_id is not None and not (0 < len(device_id) <= MAX_DEVICE_ID_LEN):
            raise errors.invalid_param("'device_id' must be 1-255 characters")

        await self.login_failures.check(user_id, client_ip)
        user = None
        if parse_user_id(user_id)[1] == self.server_name:
            user = await self.accounts.get_user(user_id)
        ok = await self.auth.passwords.verify(password, user["password_hash"] if user else None)
        if not ok or user is None:
            await self.login_failures.failed(user_id, client_ip)
            raise errors.forbidden("Invalid username or password")
        if user["deactivated"]:
            raise errors.MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        if user["locked"]:
            raise errors.MatrixError(401, "M_USER_LOCKED", "This account has been locked")
        device_id = device_id or new_device_id()
        async with self.db.transaction() as conn:
            await self.accounts.upsert_device(conn, user_id, device_id, display_name, now_ms())
            tokens, _ = await self.auth.issue_tokens(conn, user_id, device_id, with_refresh=refresh)
        return {
            "user_id": user_id,
            "device_id": device_id,
            "home_server": self.server_name,
            "well_known": {"m.homeserver": {"base_url": self.config.public_baseurl}},
            **tokens,
        }

    # -- password and deactivation ----------------------------------------------
    async def change_password(self, requester: Requester, body: dict[str, Any], client_ip: str | None) -> None:
        new_password = body.get("new_password")
        logout_devices = body.get("logout_devices", True)
        _check_types(("new_password", new_password, str), ("logout_devices", logout_devices, bool))
        data = await self.uia.authenticate(
            body, purpose="password", flows=[[PASSWORD]], user_id=requester.user_id, client_ip=client_ip
        )
        if not new_password:
            raise errors.missing_param("'new_password' is required")
        password_hash = await self.auth.passwords.hash(new_password)
        async with self.db.transaction() as conn:
            await self.accounts.set_password_hash(conn, requester.user_id, password_hash)
            removed: list[str] = []
            if logout_devices:
                removed = await self.accounts.delete_tokens_except(conn, requester.user_id, requester.device_id)
        await self.auth.devices_deleted(requester.user_id, removed)
        await self.uia.finish(data)

    async def deactivate(self, requester: Requester, body: dict[str, Any], client_ip: str | None) -> None:
        erase = body.get("erase", False)
        _check_types(("erase", erase, bool))
        data = await self.uia.authenticate(
            body, purpose="deactivate", flows=[[PASSWORD]], user_id=requester.user_id, client_ip=client_ip
        )
        for hook in self.on_deactivate:
            await hook(requester.user_id)
        async with self.db.transaction() as conn:
            removed = await self.accounts.delete_tokens_except(conn, requester.user_id, None)
            await self.accounts.set_deactivated(conn, requester.user_id)
            await self.accounts.clear_profile(conn, requester.user_id)
        await self.auth.devices_deleted(requester.user_id, removed)
        await self.uia.finish(data)

    # -- devices --------------------------------------------------------------
    async def list_devices(self, user_id: str) -> list[dict[str, Any]]:
        return [_device_json(user_id, r) for r in await self.accounts.get_devices(user_id)]

    async def get_device(self, user_id: str, device_id: str) -> dict[str, Any]:
        row = await self.accounts.get_device(user_id, device_id)
        if row is None:
            raise errors.not_found("Unknown device")
        return _device_json(user_id, row)

    async def rename_device(self, user_id: str, device_id: str, body: dict[str, Any]) -> None:
        name = body.get("display_name")
        _check_types(("display_name", name, str))
        if name is not None and len(name) > 100:
            raise errors.invalid_param("'display_name' is too long")
        if not await self.accounts.rename_device(user_id, device_id, name):
            raise errors.not_found("Unknown device")

    async def delete_devices(
        self, requester: Requester, device_ids: list[str], body: dict[str, Any], client_ip: str | None
    ) -> None:
        data = await self.uia.authenticate(
            body, purpose="delete_devices", flows=[[PASSWORD]], user_id=requester.user_id, client_ip=client_ip
        )
        async with self.db.transaction() as conn:
            await self.accounts.delete_devices(conn, requester.user_id, device_ids)
        await self.auth.devices_deleted(requester.user_id, device_ids)
        await self.uia.finish(data)

    # -- profiles ---------------------------------------------------------------
    async def get_profile(self, user_id: str) -> dict[str, Any]:
        if not is_valid_user_id(user_id):
            raise errors.invalid_param("Invalid user ID")
        row = await self.accounts.get_profile(user_id)
        if row is None:
            raise errors.not_found("Profile not found")
        out: dict[str, Any] = dict(row["fields"] or {})
        if row["displayname"] is not None:
            out["displayname"] = row["displayname"]
        if row["avatar_url"] is not None:
            out["avatar_url"] = row["avatar_url"]
        return out

    async def set_profile_field(self, requester: Requester, user_id: str, field: str, value: Any) -> None:
        if requester.user_id != user_id and not requester.is_admin:
            raise errors.forbidden("You may only change your own profile")
        if field not in ("displayname", "avatar_url"):
            raise errors.unrecognized(400, f"Profile field {field!r} is not supported")
        limit = MAX_DISPLAYNAME_LEN if field == "displayname" else MAX_AVATAR_URL_LEN
        if value is not None and not isinstance(value, str):
            raise errors.bad_json(f"'{field}' must be a string")
        if value is not None and len(value) > limit:
            raise errors.MatrixError(400, "M_TOO_LARGE", f"'{field}' is too long")
        if field == "avatar_url" and value and not value.startswith("mxc://"):
            raise errors.invalid_param("'avatar_url' must be an mxc:// URI")
        await self.accounts.set_profile_field(user_id, field, value)
        for hook in self.on_profile_change:
            await hook(user_id)


def _device_json(user_id: str, row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"device_id": row["device_id"], "user_id": user_id}
    if row["display_name"] is not None:
        out["display_name"] = row["display_name"]
    if row["last_seen_ts"] is not None:
        out["last_seen_ts"] = row["last_seen_ts"]
    if row["last_seen_ip"] is not None:
        out["last_seen_ip"] = row["last_seen_ip"]
    return out


def _check_types(*checks: tuple[str, Any, type]) -> None:
    for name, value, expected in checks:
        if value is not None and not isinstance(value, expected):
            raise errors.bad_json(f"'{name}' must be a {expected.__name__}")
