"""The WebSocket sync connection as a state machine: which client message is legal when.

Rules this file keeps:

- No I/O and no asyncio. It is fed frames (text or bytes) and told the outcome of
  authentication; it answers with a `Step`: what the frame was, whether it is refused
  (with the Matrix error to send back), and whether the connection must close.
- Transitions are data (`TRANSITIONS`): `(state, kind) -> next state`. A pair that is
  not in the table is an illegal sequence and is refused; the state does not change.
- Refusals are counted. Past `max_strikes` the connection closes with 1008 (policy
  violation): a client that keeps sending garbage costs us a bounded amount of work.
  Matrix errors of well-formed requests (M_FORBIDDEN from a service, say) are not
  strikes: they are answers, not abuse.

Theory of operation: a connection starts in AWAITING_AUTH unless the HTTP handshake
carried an access token, in which case the driver authenticates before the first
frame and calls `authenticated()`. An `auth` frame moves AWAITING_AUTH to
AUTHENTICATING; the driver checks the token and calls `authenticated()` (-> OPEN) or
`auth_failed()` (-> CLOSED). Only in OPEN are `request` and `ack` legal. `ping` is
legal before and after authentication. See spec/websocket-sync.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

# Close codes (RFC 6455 ranges: 1000-2999 protocol, 4000-4999 application).
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_AUTH = 4401
CLOSE_BAD_PARAMS = 4400


class State(Enum):
    AWAITING_AUTH = "awaiting_auth"
    AUTHENTICATING = "authenticating"
    OPEN = "open"
    CLOSED = "closed"


#: Message kinds a client may send (the `type` field).
KINDS = ("auth", "request", "ack", "ping", "pong")

TRANSITIONS: dict[tuple[State, str], State] = {
    (State.AWAITING_AUTH, "auth"): State.AUTHENTICATING,
    (State.AWAITING_AUTH, "ping"): State.AWAITING_AUTH,
    (State.AWAITING_AUTH, "pong"): State.AWAITING_AUTH,
    (State.OPEN, "request"): State.OPEN,
    (State.OPEN, "ack"): State.OPEN,
    (State.OPEN, "ping"): State.OPEN,
    (State.OPEN, "pong"): State.OPEN,
}

#: Why an illegal (state, kind) pair is refused, for the error message.
ILLEGAL: dict[tuple[State, str], tuple[str, str]] = {
    (State.AWAITING_AUTH, "request"): ("M_MISSING_TOKEN", "Authenticate first: send an 'auth' message"),
    (State.AWAITING_AUTH, "ack"): ("M_MISSING_TOKEN", "Authenticate first: send an 'auth' message"),
    (State.OPEN, "auth"): ("M_BAD_STATE", "Already authenticated"),
}


@dataclass(frozen=True)
class Step:
    """What the driver must do with one inbound frame."""

    kind: str | None  # the accepted message kind, or None when refused
    message: dict[str, Any] | None = None
    refusal: tuple[str, str] | None = None  # (errcode, error) to send back
    request_id: Any = None  # echoed in the error, when the frame had one
    close: tuple[int, str] | None = None  # close the connection with (code, reason)


class WsSession:
    def __init__(self, *, max_strikes: int = 20, max_id_length: int = 200) -> None:
        self.state = State.AWAITING_AUTH
        self.strikes = 0
        self.max_strikes = max_strikes
        self.max_id_length = max_id_length

    # -- inbound frames ----------------------------------------------------------------
    def receive(self, frame: str | bytes) -> Step:
        if self.state in (State.CLOSED, State.AUTHENTICATING):
            # The driver does not read while authenticating; a frame here is a driver bug
            # or a race with close: refuse without a strike.
            return Step(None, refusal=("M_BAD_STATE", f"Not accepting messages while {self.state.value}"))
        if isinstance(frame, bytes):
            return self._refuse(("M_NOT_JSON", "Only text frames carrying JSON are accepted"))
        try:
            message = json.loads(frame, parse_constant=_reject_constant)
        except ValueError:
            return self._refuse(("M_NOT_JSON", "Message is not valid JSON"))
        if not isinstance(message, dict):
            return self._refuse(("M_NOT_JSON", "Message must be a JSON object"))
        request_id = message.get("id")
        if request_id is not None and not _valid_id(request_id, self.max_id_length):
            return self._refuse(("M_BAD_JSON", "'id' must be a string or an integer"), None)
        kind = message.get("type")
        if kind not in KINDS:
            return self._refuse(("M_UNRECOGNIZED", f"Unknown message type {kind!r}"), request_id)
        if kind == "request" and request_id is None:
            return self._refuse(("M_BAD_JSON", "A request needs an 'id'"), None)
        nxt = TRANSITIONS.get((self.state, kind))
        if nxt is None:
            why = ILLEGAL.get((self.state, kind), ("M_BAD_STATE", f"'{kind}' not allowed now"))
            return self._refuse(why, request_id)
        self.state = nxt
        return Step(kind, message=message, request_id=request_id)

    # -- outcomes the driver reports ------------------------------------------------------
    def authenticated(self) -> None:
        if self.state not in (State.AWAITING_AUTH, State.AUTHENTICATING):
            raise RuntimeError(f"authenticated() in state {self.state}")
        self.state = State.OPEN

    def auth_failed(self) -> None:
        self.state = State.CLOSED

    def closed(self) -> None:
        self.state = State.CLOSED

    def strike(self) -> tuple[int, str] | None:
        """Count one abuse; the close to perform if the client is over its allowance."""
        self.strikes += 1
        if self.strikes >= self.max_strikes:
            self.state = State.CLOSED
            return (CLOSE_POLICY, "Too many invalid messages")
        return None

    def _refuse(self, why: tuple[str, str], request_id: Any = None) -> Step:
        return Step(None, refusal=why, request_id=request_id, close=self.strike())


def _valid_id(value: Any, max_length: int) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and 0 < len(value) <= max_length


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
