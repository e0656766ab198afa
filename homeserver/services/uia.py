"""User-interactive authentication (CS API § User-Interactive Authentication API).

A request that needs UIA calls :meth:`UIAService.authenticate` with the flows it
accepts. Without a completed flow the service raises a 401 carrying `flows`,
`params`, `session` and `completed`; a failed stage adds `errcode`/`error`.
Sessions live in PostgreSQL so any worker can continue them, and are bound to
the operation (and user) that started them.
"""

from __future__ import annotations

import secrets
from typing import Any

from homeserver import errors
from homeserver.core.identifiers import parse_user_id
from homeserver.services.auth import PasswordHasher, now_ms
from homeserver.storage.accounts import AccountStore

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"


class UIAChallenge(errors.MatrixError):
    """The 401 that tells the client which stages remain."""

    def __init__(self, body: dict[str, Any], errcode: str | None = None, error: str | None = None) -> None:
        super().__init__(401, errcode or "M_UNAUTHORIZED", error or "Additional authentication is required")
        self._uia_body = body
        self._has_error = errcode is not None

    def body(self) -> dict[str, Any]:
        out = dict(self._uia_body)
        if self._has_error:
            out["errcode"] = self.errcode
            out["error"] = self.error
        return out


class UIAService:
    def __init__(
        self,
        accounts: AccountStore,
        passwords: PasswordHasher,
        server_name: str,
        session_lifetime_ms: int,
        login_failure_hook: Any = None,
    ) -> None:
        self.accounts = accounts
        self.passwords = passwords
        self.server_name = server_name
        self.session_lifetime_ms = session_lifetime_ms
        # async (user_id, ip) -> None: raises if the caller is rate limited; see AccountService.
        self.login_failure_hook = login_failure_hook

    async def authenticate(
        self,
        body: dict[str, Any],
        *,
        purpose: str,
        flows: list[list[str]],
        user_id: str | None = None,
        params: dict[str, Any] | None = None,
        client_ip: str | None = None,
    ) -> dict[str, Any]:
        """Return the session's stored data once a flow is complete; raise the 401 otherwise."""
        auth = body.get("auth")
        if auth is not None and not isinstance(auth, dict):
            raise errors.bad_json("'auth' must be an object")
        params = params or {}
        session_id = auth.get("session") if auth else None
        if session_id is not None and not isinstance(session_id, str):
            raise errors.bad_json("'auth.session' must be a string")

        if session_id:
            session = await self.accounts.get_uia_session(session_id)
            if session is None or session["created_ts"] < now_ms() - self.session_lifetime_ms:
                raise errors.MatrixError(400, "M_UNKNOWN", "Unknown or expired UIA session")
            if session["purpose"] != purpose or session["user_id"] != user_id:
                raise errors.forbidden("The requested operation changed during the UIA session")
        else:
            session_id = secrets.token_urlsafe(18)
            await self.accounts.create_uia_session(session_id, purpose, user_id, params, now_ms())
            session = await self.accounts.get_uia_session(session_id)
            assert session is not None

        completed: list[str] = list(session["completed"])
        data: dict[str, Any] = dict(session["data"])

        def challenge(errcode: str | None = None, error: str | None = None) -> UIAChallenge:
            return UIAChallenge(
                {
                    "flows": [{"stages": f} for f in flows],
                    "params": params,
                    "session": session_id,
                    "completed": completed,
                },
                errcode,
                error,
            )

        if auth and "type" in auth:
            stage = auth["type"]
            allowed = {s for f in flows for s in f}
            if stage not in allowed:
                raise challenge("M_UNRECOGNIZED", f"Authentication type {stage!r} is not offered here")
            try:
                result = await self._run_stage(stage, auth, user_id, client_ip)
            except errors.MatrixError as e:
                if e.status == 429:
                    raise
                raise challenge(e.errcode, e.error) from None
            if stage not in completed:
                completed.append(stage)
            data.update(result)
            await self.accounts.complete_uia_stage(session_id, stage, result)

        for flow in flows:
            if all(s in completed for s in flow):
                data["session_id"] = session_id
                return data
        raise challenge()

    async def finish(self, data: dict[str, Any]) -> None:
        """Drop the session once the operation it guarded has succeeded."""
        if "session_id" in data:
            await self.accounts.delete_uia_session(data["session_id"])

    async def _run_stage(
        self, stage: str, auth: dict[str, Any], user_id: str | None, client_ip: str | None
    ) -> dict[str, Any]:
        if stage == DUMMY:
            return {}
        if stage == REGISTRATION_TOKEN:
            token = auth.get("token")
            if not isinstance(token, str) or not await self.accounts.registration_token_valid(token, now_ms()):
                raise errors.MatrixError(401, "M_FORBIDDEN", "Invalid registration token")
            return {"registration_token": token}
        if stage == PASSWORD:
            claimed = user_from_identifier(auth, self.server_name)
            if user_id is None or claimed != user_id:
                raise errors.forbidden("Authentication must be for the account making the request")
            if self.login_failure_hook is not None:
                await self.login_failure_hook.check(user_id, client_ip)
            password = auth.get("password")
            user = await self.accounts.get_user(user_id)
            ok = isinstance(password, str) and user is not None and await self.passwords.verify(
                password, user["password_hash"]
            )
            if not ok:
                if self.login_failure_hook is not None:
                    await self.login_failure_hook.failed(user_id, client_ip)
                raise errors.forbidden("Invalid password")
            return {}
        raise errors.MatrixError(400, "M_UNRECOGNIZED", f"Unknown authentication type {stage!r}")


def user_from_identifier(auth: dict[str, Any], server_name: str) -> str | None:
    """The full user ID named by an `identifier` (or the legacy `user` field)."""
    identifier = auth.get("identifier")
    user: Any = None
    if isinstance(identifier, dict):
        if identifier.get("type") != "m.id.user":
            return None
        user = identifier.get("user")
    elif "user" in auth:
        user = auth.get("user")
    if not isinstance(user, str) or not user:
        return None
    if user.startswith("@"):
        try:
            parse_user_id(user)
        except ValueError:
            return None
        return user
    return f"@{user.lower()}:{server_name}"

