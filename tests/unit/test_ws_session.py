"""The WebSocket sync connection state machine (core/ws_session.py): legal and illegal sequences."""

from __future__ import annotations

import json

from homeserver.core.ws_session import CLOSE_POLICY, State, WsSession


def frame(**msg: object) -> str:
    return json.dumps(msg)


def test_auth_then_requests() -> None:
    s = WsSession()
    assert s.receive(frame(type="ping")).kind == "ping"
    step = s.receive(frame(type="auth", access_token="x"))
    assert step.kind == "auth" and s.state is State.AUTHENTICATING
    s.authenticated()
    assert s.state is State.OPEN
    step = s.receive(frame(type="request", id="1", method="send"))
    assert step.kind == "request" and step.request_id == "1"
    assert s.receive(frame(type="ack", next_batch="s1")).kind == "ack"


def test_illegal_sequences_are_refused_without_changing_state() -> None:
    s = WsSession()
    step = s.receive(frame(type="request", id=7, method="send"))
    assert step.kind is None and step.refusal[0] == "M_MISSING_TOKEN" and step.request_id == 7
    assert s.receive(frame(type="ack", next_batch="s")).refusal[0] == "M_MISSING_TOKEN"
    assert s.state is State.AWAITING_AUTH
    s.receive(frame(type="auth", access_token="x"))
    s.authenticated()
    assert s.receive(frame(type="auth", access_token="x")).refusal[0] == "M_BAD_STATE"
    assert s.state is State.OPEN


def test_malformed_frames() -> None:
    s = WsSession()
    assert s.receive("{").refusal[0] == "M_NOT_JSON"
    assert s.receive(b"{}").refusal[0] == "M_NOT_JSON"
    assert s.receive("[1]").refusal[0] == "M_NOT_JSON"
    assert s.receive('{"type": "ping", "x": NaN}').refusal[0] == "M_NOT_JSON"
    assert s.receive(frame(type="nope")).refusal[0] == "M_UNRECOGNIZED"
    assert s.receive(frame(type="ping", id=True)).refusal[0] == "M_BAD_JSON"
    s.receive(frame(type="auth", access_token="x"))
    s.authenticated()
    assert s.receive(frame(type="request", method="send")).refusal[0] == "M_BAD_JSON"


def test_strikes_close_with_policy_violation() -> None:
    s = WsSession(max_strikes=3)
    assert s.receive("x").close is None
    assert s.receive("x").close is None
    assert s.receive("x").close == (CLOSE_POLICY, "Too many invalid messages")
    assert s.state is State.CLOSED
    assert s.receive(frame(type="ping")).kind is None


def test_auth_failure_closes() -> None:
    s = WsSession()
    s.receive(frame(type="auth", access_token="x"))
    s.auth_failed()
    assert s.state is State.CLOSED
