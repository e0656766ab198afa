"""Every numbered auth rule of every room-version family, with an ALLOW and a DENY case.

Each test builds a tiny room with :class:`Room`, then asks ``check_auth`` about
one new event against the room's current state.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from canonicaljson import encode_canonical_json
from nacl.signing import SigningKey

from homeserver.core.auth_rules import (
    AuthError,
    auth_types_for_event,
    check_auth,
    check_auth_events_list,
)
from homeserver.core.events import Event, StateKey
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS, EventFormat

RV = KNOWN_ROOM_VERSIONS
ALL = list(RV)


def versions(pred: Any) -> list[str]:
    return [v for v in ALL if pred(RV[v])]


V1_TO_10 = versions(lambda r: not r.implicit_room_creator)
V11_PLUS = versions(lambda r: r.implicit_room_creator)
PRE_V12 = versions(lambda r: not r.room_id_from_create_event)
V12 = ["12"]
ALIASES = versions(lambda r: r.special_case_aliases_auth)  # v1-5
NO_ALIASES = versions(lambda r: not r.special_case_aliases_auth)
KNOCK = versions(lambda r: r.knock_join_rule)  # v7+
NO_KNOCK = versions(lambda r: not r.knock_join_rule)
RESTRICTED = versions(lambda r: r.restricted_join_rule)  # v8+
NO_RESTRICTED = versions(lambda r: not r.restricted_join_rule)
KNOCK_RESTRICTED = versions(lambda r: r.knock_restricted_join_rule)  # v10+
NO_KNOCK_RESTRICTED = versions(lambda r: not r.knock_restricted_join_rule)
STRINGY = versions(lambda r: not r.enforce_int_power_levels)  # v1-9
INT_ONLY = versions(lambda r: r.enforce_int_power_levels)  # v10+
NOTIFICATIONS = versions(lambda r: r.limit_notifications_power_levels)  # v6+
NO_NOTIFICATIONS = versions(lambda r: not r.limit_notifications_power_levels)
REDACTION_RULE = versions(lambda r: r.special_case_redaction_auth)  # v1-2
NO_REDACTION_RULE = versions(lambda r: not r.special_case_redaction_auth)

ALICE = "@alice:a.test"  # the creator
BOB = "@bob:b.test"
CAROL = "@carol:c.test"
DAVE = "@dave:a.test"


class Room:
    """A room built event by event, its current state kept as a map."""

    def __init__(
        self, version: str, *, creator: str = ALICE, create_content: dict[str, Any] | None = None
    ) -> None:
        self.version = version
        self.rv = RV[version]
        self.n = 0
        self.state: dict[StateKey, Event] = {}
        content: dict[str, Any] = {"room_version": version}
        if not self.rv.implicit_room_creator:
            content["creator"] = creator
        content.update(create_content or {})
        self.create = self._make(
            "m.room.create", creator, content, state_key="", prev=[], auth=[], name="create"
        )
        self.room_id = self.create.room_id
        self.state[self.create.state_tuple] = self.create

    # -- building events ------------------------------------------------------
    def _refs(self, ids: list[str]) -> list[Any]:
        if self.rv.event_format == EventFormat.V1:
            return [[i, {"sha256": "aaaa"}] for i in ids]
        return list(ids)

    def _make(
        self,
        type_: str,
        sender: str,
        content: dict[str, Any],
        *,
        state_key: str | None = None,
        prev: list[str] | None = None,
        auth: list[str] | None = None,
        name: str | None = None,
        event_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Event:
        self.n += 1
        if event_id is None:
            event_id = f"${name or 'ev'}{self.n}:{sender.partition(':')[2]}"
        pdu: dict[str, Any] = {
            "type": type_,
            "sender": sender,
            "content": content,
            "depth": self.n,
            "origin_server_ts": 1000 + self.n,
            "prev_events": self._refs(prev if prev is not None else ["$prev:a.test"]),
            "auth_events": self._refs(auth if auth is not None else []),
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        if type_ != "m.room.create" or not self.rv.room_id_from_create_event:
            pdu["room_id"] = getattr(self, "room_id", "!room:a.test")
        pdu.update(extra or {})
        return Event(pdu, self.rv, event_id=event_id)

    def event(
        self, type_: str, sender: str, content: dict[str, Any], state_key: str | None = None, **kw: Any
    ) -> Event:
        return self._make(type_, sender, content, state_key=state_key, **kw)

    def add(
        self, type_: str, sender: str, content: dict[str, Any], state_key: str | None = None, **kw: Any
    ) -> Event:
        """Add a state event to the current state without checking it."""
        ev = self.event(type_, sender, content, state_key, **kw)
        self.state[ev.state_tuple] = ev
        return ev

    def member(self, user: str, membership: str, sender: str | None = None, **content: Any) -> Event:
        return self.add("m.room.member", sender or user, {"membership": membership, **content}, user)

    def power_levels(self, **content: Any) -> Event:
        return self.add("m.room.power_levels", ALICE, content, "")

    def join_rules(self, rule: str) -> Event:
        return self.add("m.room.join_rules", ALICE, {"join_rule": rule}, "")

    # -- checking ---------------------------------------------------------------
    def allowed(self, event: Event) -> bool:
        try:
            check_auth(self.rv, event, self.state)
        except AuthError:
            return False
        return True

    def membership(self, user: str, membership: str, sender: str | None = None, **content: Any) -> bool:
        ev = self.event("m.room.member", sender or user, {"membership": membership, **content}, user)
        return self.allowed(ev)

    def send(
        self, type_: str, sender: str, content: dict[str, Any] | None = None, state_key: str | None = None
    ) -> bool:
        return self.allowed(self.event(type_, sender, content or {}, state_key))


def basic_room(version: str, *, join_rule: str = "public", pl: dict[str, Any] | None = None) -> Room:
    """Alice created and joined; power levels (Alice 100); the given join rule."""
    room = Room(version)
    room.member(ALICE, "join")
    levels: dict[str, Any] = {"users": {} if room.rv.privileged_creators else {ALICE: 100}}
    levels.update(pl or {})
    room.power_levels(**levels)
    room.join_rules(join_rule)
    return room


# ===========================================================================
# Rule 1: m.room.create


@pytest.mark.parametrize("version", ALL)
def test_create_allowed(version: str) -> None:
    room = Room(version)
    check_auth(room.rv, room.create, {})


@pytest.mark.parametrize("version", ALL)
def test_create_with_prev_events_denied(version: str) -> None:
    room = Room(version)
    pdu = dict(room.create.pdu, prev_events=room._refs(["$x:a.test"]))
    with pytest.raises(AuthError, match="prev_events"):
        check_auth(room.rv, Event(pdu, room.rv, event_id="$c2:a.test"), {})


@pytest.mark.parametrize("version", PRE_V12)
def test_create_room_id_domain_must_match_sender(version: str) -> None:
    room = Room(version)
    pdu = dict(room.create.pdu, room_id="!room:elsewhere.test")
    with pytest.raises(AuthError, match="domain"):
        check_auth(room.rv, Event(pdu, room.rv, event_id="$c2:a.test"), {})


def test_v12_create_with_room_id_denied() -> None:
    room = Room("12")
    pdu = dict(room.create.pdu, room_id="!something")
    with pytest.raises(AuthError, match="room_id"):
        check_auth(room.rv, Event(pdu, room.rv, event_id="$c2"), {})


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize(("room_version", "ok"), [("1", True), ("12", True), ("13", False), (12, False)])
def test_create_room_version_must_be_known(version: str, room_version: Any, ok: bool) -> None:
    room = Room(version, create_content={"room_version": room_version})
    if ok:
        check_auth(room.rv, room.create, {})
    else:
        with pytest.raises(AuthError, match="room_version"):
            check_auth(room.rv, room.create, {})


@pytest.mark.parametrize("version", ALL)
def test_create_without_creator(version: str) -> None:
    room = Room(version)
    content = {k: v for k, v in room.create.content.items() if k != "creator"}
    ev = Event(dict(room.create.pdu, content=content), room.rv, event_id=room.create.event_id)
    if RV[version].implicit_room_creator:
        check_auth(room.rv, ev, {})
    else:
        with pytest.raises(AuthError, match="creator"):
            check_auth(room.rv, ev, {})


@pytest.mark.parametrize(
    ("extra", "ok"),
    [
        ([BOB], True),
        ([], True),
        ([BOB, CAROL], True),
        (["bob"], False),
        (["@bob"], False),
        ([42], False),
        (BOB, False),
    ],
)
def test_v12_additional_creators_must_be_user_ids(extra: Any, ok: bool) -> None:
    room = Room("12", create_content={"additional_creators": extra})
    if ok:
        check_auth(room.rv, room.create, {})
    else:
        with pytest.raises(AuthError, match="additional_creators"):
            check_auth(room.rv, room.create, {})


@pytest.mark.parametrize("version", ["10", "11"])
def test_additional_creators_not_checked_before_v12(version: str) -> None:
    room = Room(version, create_content={"additional_creators": "nonsense"})
    check_auth(room.rv, room.create, {})


# ===========================================================================
# Rule 2 (v12: 2 and 3): auth events


@pytest.mark.parametrize("version", ALL)
def test_missing_create_event_denied(version: str) -> None:
    room = basic_room(version)
    state = {k: v for k, v in room.state.items() if k != ("m.room.create", "")}
    ev = room.event("m.room.message", ALICE, {"body": "hi"})
    check_auth(room.rv, ev, room.state)
    with pytest.raises(AuthError, match="create"):
        check_auth(room.rv, ev, state)


@pytest.mark.parametrize("version", ALL)
def test_auth_event_from_another_room_denied(version: str) -> None:
    room = basic_room(version)
    other = Room(version)
    other_join = Event(
        dict(room.state[("m.room.member", ALICE)].pdu, room_id=other.room_id + "x"),
        room.rv,
        event_id="$o:a.test",
    )
    state = dict(room.state)
    state[("m.room.member", ALICE)] = other_join
    ev = room.event("m.room.message", ALICE, {})
    with pytest.raises(AuthError, match="another room"):
        check_auth(room.rv, ev, state)


@pytest.mark.parametrize("version", ALL)
def test_rejected_auth_event_denied(version: str) -> None:
    room = basic_room(version)
    join = room.state[("m.room.member", ALICE)]
    state = dict(room.state)
    state[join.state_tuple] = Event(join.pdu, room.rv, event_id=join.event_id, rejected_reason="auth")
    with pytest.raises(AuthError, match="rejected"):
        check_auth(room.rv, room.event("m.room.message", ALICE, {}), state)


def test_v12_room_id_must_name_the_create_event() -> None:
    room = basic_room("12")
    ev = room.event("m.room.message", ALICE, {}, extra={"room_id": "!notthecreate"})
    with pytest.raises(AuthError):
        check_auth(room.rv, ev, room.state)
    rejected_create = Event(room.create.pdu, room.rv, event_id=room.create.event_id, rejected_reason="bad")
    state = dict(room.state)
    state[("m.room.create", "")] = rejected_create
    with pytest.raises(AuthError):
        check_auth(room.rv, room.event("m.room.message", ALICE, {}), state)


def _with_auth(room: Room, ev: Event, auth: list[Event]) -> tuple[Event, list[Event]]:
    pdu = dict(ev.pdu, auth_events=room._refs([a.event_id for a in auth]))
    return Event(pdu, room.rv, event_id=ev.event_id), auth


@pytest.mark.parametrize("version", ALL)
def test_auth_events_list_checks(version: str) -> None:
    room = basic_room(version)
    pl = room.state[("m.room.power_levels", "")]
    join = room.state[("m.room.member", ALICE)]
    rules = room.state[("m.room.join_rules", "")]
    base = [] if room.rv.room_id_from_create_event else [room.create]
    msg = room.event("m.room.message", ALICE, {})

    check_auth_events_list(room.rv, *_with_auth(room, msg, [*base, pl, join]))  # ALLOW
    with pytest.raises(AuthError, match="duplicate"):
        check_auth_events_list(room.rv, *_with_auth(room, msg, [*base, pl, join, join]))
    with pytest.raises(AuthError, match="not selected"):
        check_auth_events_list(room.rv, *_with_auth(room, msg, [*base, pl, join, rules]))
    rejected = Event(pl.pdu, room.rv, event_id=pl.event_id, rejected_reason="x")
    with pytest.raises(AuthError, match="rejected"):
        check_auth_events_list(room.rv, *_with_auth(room, msg, [*base, rejected, join]))
    if room.rv.room_id_from_create_event:
        with pytest.raises(AuthError, match="not selected"):
            check_auth_events_list(room.rv, *_with_auth(room, msg, [room.create, pl, join]))
    else:
        with pytest.raises(AuthError, match="no m.room.create"):
            check_auth_events_list(room.rv, *_with_auth(room, msg, [pl, join]))
    foreign = Event(dict(pl.pdu, room_id="!other:a.test"), room.rv, event_id="$f:a.test")
    with pytest.raises(AuthError, match="another room"):
        check_auth_events_list(room.rv, *_with_auth(room, msg, [*base, foreign, join]))


@pytest.mark.parametrize("version", ALL)
def test_auth_types_for_event(version: str) -> None:
    rv = RV[version]
    create = [] if rv.room_id_from_create_event else [("m.room.create", "")]
    assert auth_types_for_event(rv, "m.room.create", ALICE, "", {}) == []
    assert auth_types_for_event(rv, "m.room.message", BOB, None, {}) == [
        *create,
        ("m.room.power_levels", ""),
        ("m.room.member", BOB),
    ]
    join = auth_types_for_event(
        rv, "m.room.member", BOB, BOB, {"membership": "join", "join_authorised_via_users_server": CAROL}
    )
    assert ("m.room.join_rules", "") in join
    assert (("m.room.member", CAROL) in join) == rv.restricted_join_rule
    leave = auth_types_for_event(rv, "m.room.member", ALICE, BOB, {"membership": "leave"})
    assert ("m.room.join_rules", "") not in leave
    assert ("m.room.member", BOB) in leave
    tpi = auth_types_for_event(
        rv,
        "m.room.member",
        ALICE,
        BOB,
        {"membership": "invite", "third_party_invite": {"signed": {"token": "tok"}}},
    )
    assert ("m.room.third_party_invite", "tok") in tpi
    # malformed content still selects what it can
    assert auth_types_for_event(rv, "m.room.member", ALICE, BOB, {"membership": 5})[-1] == (
        "m.room.member",
        BOB,
    )


# ===========================================================================
# m.federate


@pytest.mark.parametrize("version", ALL)
def test_m_federate_false(version: str) -> None:
    room = Room(version, create_content={"m.federate": False})
    room.member(ALICE, "join")
    room.join_rules("public")
    assert room.membership(DAVE, "join")  # same server as the creator: ALLOW
    assert not room.membership(BOB, "join")  # other server: DENY
    assert room.membership(DAVE, "invite", sender=ALICE)
    assert not room.membership(BOB, "invite", sender=ALICE)  # Synapse: the target's server counts too
    assert not room.send("m.room.message", BOB, {})


@pytest.mark.parametrize("version", ALL)
def test_m_federate_true_allows_other_servers(version: str) -> None:
    room = Room(version, create_content={"m.federate": True})
    room.member(ALICE, "join")
    room.join_rules("public")
    assert room.membership(BOB, "join")


# ===========================================================================
# m.room.aliases (v1-v5)


@pytest.mark.parametrize("version", ALIASES)
def test_aliases_special_case(version: str) -> None:
    room = basic_room(version)
    # Anyone may set the aliases of their own server, even without joining.
    assert room.send("m.room.aliases", BOB, {"aliases": []}, state_key="b.test")
    assert not room.send("m.room.aliases", BOB, {"aliases": []}, state_key="a.test")
    assert not room.send("m.room.aliases", BOB, {"aliases": []}, state_key=None)


@pytest.mark.parametrize("version", NO_ALIASES)
def test_aliases_is_ordinary_state_from_v6(version: str) -> None:
    room = basic_room(version)
    assert not room.send("m.room.aliases", BOB, {"aliases": []}, state_key="b.test")  # not joined
    assert room.send("m.room.aliases", ALICE, {"aliases": []}, state_key="b.test")


# ===========================================================================
# m.room.member


@pytest.mark.parametrize("version", ALL)
def test_member_needs_state_key_and_membership(version: str) -> None:
    room = basic_room(version)
    assert room.send("m.room.member", BOB, {"membership": "join"}, state_key=BOB)
    assert not room.send("m.room.member", BOB, {}, state_key=BOB)
    assert not room.send("m.room.member", BOB, {"membership": "join"}, state_key=None)


@pytest.mark.parametrize("version", ALL)
def test_unknown_membership_denied(version: str) -> None:
    room = basic_room(version)
    assert not room.membership(BOB, "shout")


# -- join --------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL)
def test_creator_first_join(version: str) -> None:
    room = Room(version)
    join = room.event("m.room.member", ALICE, {"membership": "join"}, ALICE, prev=[room.create.event_id])
    assert room.allowed(join)
    # Somebody else cannot join straight after the create event (no join rules: invite).
    other = room.event("m.room.member", BOB, {"membership": "join"}, BOB, prev=[room.create.event_id])
    assert not room.allowed(other)
    # Nor can the creator join with another previous event.
    late = room.event("m.room.member", ALICE, {"membership": "join"}, ALICE, prev=["$x:a.test"])
    assert not room.allowed(late)


@pytest.mark.parametrize("version", V1_TO_10)
def test_creator_first_join_uses_content_creator_before_v11(version: str) -> None:
    room = Room(version, create_content={"creator": DAVE})
    assert room.allowed(
        room.event("m.room.member", DAVE, {"membership": "join"}, DAVE, prev=[room.create.event_id])
    )
    assert not room.allowed(
        room.event("m.room.member", ALICE, {"membership": "join"}, ALICE, prev=[room.create.event_id])
    )


@pytest.mark.parametrize("version", V11_PLUS)
def test_creator_first_join_uses_sender_from_v11(version: str) -> None:
    room = Room(version, create_content={"creator": DAVE})
    assert room.allowed(
        room.event("m.room.member", ALICE, {"membership": "join"}, ALICE, prev=[room.create.event_id])
    )
    assert not room.allowed(
        room.event("m.room.member", DAVE, {"membership": "join"}, DAVE, prev=[room.create.event_id])
    )


@pytest.mark.parametrize("version", ALL)
def test_join_for_someone_else_denied(version: str) -> None:
    room = basic_room(version)
    assert room.membership(BOB, "join")
    assert not room.membership(BOB, "join", sender=ALICE)


@pytest.mark.parametrize("version", ALL)
def test_banned_user_cannot_join(version: str) -> None:
    room = basic_room(version)
    room.member(BOB, "ban", sender=ALICE)
    assert not room.membership(BOB, "join")
    assert room.membership(CAROL, "join")


@pytest.mark.parametrize("version", ALL)
def test_join_rule_invite(version: str) -> None:
    room = basic_room(version, join_rule="invite")
    assert not room.membership(BOB, "join")
    room.member(BOB, "invite", sender=ALICE)
    assert room.membership(BOB, "join")
    room.member(CAROL, "join")  # already joined: a re-join (profile change) is allowed
    assert room.membership(CAROL, "join")


@pytest.mark.parametrize("version", ALL)
def test_no_join_rules_event_means_invite(version: str) -> None:
    room = basic_room(version)
    del room.state[("m.room.join_rules", "")]
    assert not room.membership(BOB, "join")


@pytest.mark.parametrize("version", KNOCK)
def test_join_rule_knock_needs_invite(version: str) -> None:
    room = basic_room(version, join_rule="knock")
    assert not room.membership(BOB, "join")
    room.member(BOB, "invite", sender=ALICE)
    assert room.membership(BOB, "join")


@pytest.mark.parametrize("version", NO_KNOCK)
def test_join_rule_knock_unknown_before_v7(version: str) -> None:
    room = basic_room(version, join_rule="knock")
    room.member(BOB, "invite", sender=ALICE)
    assert not room.membership(BOB, "join")


@pytest.mark.parametrize("version", ALL)
def test_join_rule_public(version: str) -> None:
    assert basic_room(version, join_rule="public").membership(BOB, "join")


@pytest.mark.parametrize("version", ALL)
def test_join_rule_unknown_denied(version: str) -> None:
    room = basic_room(version, join_rule="private")
    assert not room.membership(BOB, "join")


def _restricted_room(version: str, rule: str) -> Room:
    room = basic_room(
        version,
        join_rule=rule,
        pl={"invite": 50, "users": {} if RV[version].privileged_creators else {ALICE: 100}},
    )
    room.member(CAROL, "join")  # joined, level 0 < invite 50
    return room


@pytest.mark.parametrize(
    ("version", "rule"),
    [(v, "restricted") for v in RESTRICTED] + [(v, "knock_restricted") for v in KNOCK_RESTRICTED],
)
def test_restricted_join(version: str, rule: str) -> None:
    room = _restricted_room(version, rule)
    via = "join_authorised_via_users_server"
    assert room.membership(BOB, "join", **{via: ALICE})  # ALLOW: joined and can invite
    assert not room.membership(BOB, "join")  # DENY: no authoriser
    assert not room.membership(BOB, "join", **{via: CAROL})  # DENY: cannot invite
    assert not room.membership(BOB, "join", **{via: DAVE})  # DENY: not joined
    room.member(BOB, "invite", sender=ALICE)
    assert room.membership(BOB, "join")  # ALLOW: invited, no authoriser needed


@pytest.mark.parametrize("version", NO_RESTRICTED)
def test_restricted_unknown_before_v8(version: str) -> None:
    room = _restricted_room(version, "restricted")
    assert not room.membership(BOB, "join", join_authorised_via_users_server=ALICE)


@pytest.mark.parametrize("version", [v for v in NO_KNOCK_RESTRICTED if RV[v].restricted_join_rule])
def test_knock_restricted_unknown_before_v10(version: str) -> None:
    room = _restricted_room(version, "knock_restricted")
    assert not room.membership(BOB, "join", join_authorised_via_users_server=ALICE)
    room.member(BOB, "invite", sender=ALICE)
    assert not room.membership(BOB, "join")


# -- invite --------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL)
def test_invite(version: str) -> None:
    room = basic_room(version, pl={"invite": 10})
    room.member(CAROL, "join")
    assert room.membership(BOB, "invite", sender=ALICE)  # ALLOW
    assert not room.membership(BOB, "invite", sender=CAROL)  # DENY: below invite level
    assert not room.membership(BOB, "invite", sender=DAVE)  # DENY: sender not joined
    assert not room.membership(CAROL, "invite", sender=ALICE)  # DENY: target joined
    room.member(BOB, "ban", sender=ALICE)
    assert not room.membership(BOB, "invite", sender=ALICE)  # DENY: target banned


# -- third-party invites -----------------------------------------------------------

_KEY = SigningKey(b"\x01" * 32)
_PUBLIC = base64.b64encode(bytes(_KEY.verify_key)).decode().rstrip("=")
_OTHER_KEY = SigningKey(b"\x02" * 32)


def _signed(mxid: str, token: str, key: SigningKey = _KEY) -> dict[str, Any]:
    body = {"mxid": mxid, "token": token, "sender": ALICE}
    sig = key.sign(encode_canonical_json(body)).signature
    return {**body, "signatures": {"id.test": {"ed25519:0": base64.b64encode(sig).decode().rstrip("=")}}}


def _tpi_room(version: str, public_keys: bool = False) -> Room:
    room = basic_room(version)
    content: dict[str, Any] = {"display_name": "b...", "key_validity_url": "https://id.test/v"}
    if public_keys:
        content["public_key"] = base64.b64encode(bytes(_OTHER_KEY.verify_key)).decode()
        content["public_keys"] = [{"public_key": _PUBLIC}]
    else:
        content["public_key"] = _PUBLIC
    room.add("m.room.third_party_invite", ALICE, content, "tok")
    return room


def _tpi(room: Room, signed: Any, *, sender: str = ALICE, target: str = BOB) -> bool:
    content = {"membership": "invite", "third_party_invite": {"display_name": "b...", "signed": signed}}
    return room.allowed(room.event("m.room.member", sender, content, target))


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_allowed(version: str) -> None:
    assert _tpi(_tpi_room(version), _signed(BOB, "tok"))
    assert _tpi(_tpi_room(version, public_keys=True), _signed(BOB, "tok"))


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_denials(version: str) -> None:
    room = _tpi_room(version)
    assert not _tpi(room, _signed(BOB, "tok", key=_OTHER_KEY))  # 8: no signature matches
    assert not _tpi(room, None)  # 2: no signed
    assert not _tpi(room, {"mxid": BOB, "signatures": {}})  # 3: no token
    assert not _tpi(room, _signed(CAROL, "tok"))  # 4: mxid != state_key
    assert not _tpi(room, _signed(BOB, "other"))  # 5: no m.room.third_party_invite for the token
    room.member(DAVE, "join")
    assert not _tpi(room, _signed(BOB, "tok"), sender=DAVE)  # 6: sender differs
    tampered = _signed(BOB, "tok")
    tampered["signatures"]["id.test"]["ed25519:0"] = tampered["signatures"]["id.test"]["ed25519:0"][::-1]
    assert not _tpi(room, tampered)
    room.member(BOB, "ban", sender=ALICE)
    assert not _tpi(room, _signed(BOB, "tok"))  # 1: target banned


# -- leave ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL)
def test_leave_self(version: str) -> None:
    room = basic_room(version)
    room.member(BOB, "join")
    room.member(CAROL, "invite", sender=ALICE)
    assert room.membership(BOB, "leave")  # from join
    assert room.membership(CAROL, "leave")  # rejecting an invite
    assert not room.membership(DAVE, "leave")  # never in the room
    room.member(DAVE, "ban", sender=ALICE)
    assert not room.membership(DAVE, "leave")  # banned cannot unban themselves


@pytest.mark.parametrize("version", KNOCK)
def test_leave_rescinds_knock(version: str) -> None:
    room = basic_room(version, join_rule="knock")
    room.member(BOB, "knock")
    assert room.membership(BOB, "leave")


@pytest.mark.parametrize("version", NO_KNOCK)
def test_leave_from_knock_not_before_v7(version: str) -> None:
    room = basic_room(version)
    room.member(BOB, "knock")  # cannot happen in these rooms; shows the rule's list
    assert not room.membership(BOB, "leave")


@pytest.mark.parametrize("version", ALL)
def test_kick(version: str) -> None:
    room = basic_room(
        version,
        pl={
            "kick": 50,
            "users": {BOB: 50, CAROL: 50} | ({} if RV[version].privileged_creators else {ALICE: 100}),
        },
    )
    for user in (BOB, CAROL, DAVE):
        room.member(user, "join")
    assert room.membership(BOB, "leave", sender=ALICE)  # ALLOW: above kick level and target
    assert not room.membership(CAROL, "leave", sender=BOB)  # DENY: same level as target
    assert not room.membership(BOB, "leave", sender=DAVE)  # DENY: below kick level
    room.member(CAROL, "leave")
    assert not room.membership(DAVE, "leave", sender=CAROL)  # DENY: sender not joined


@pytest.mark.parametrize("version", ALL)
def test_unban_needs_ban_level(version: str) -> None:
    room = basic_room(
        version,
        pl={
            "kick": 0,
            "ban": 60,
            "users": {BOB: 50} | ({} if RV[version].privileged_creators else {ALICE: 100}),
        },
    )
    room.member(BOB, "join")
    room.member(CAROL, "ban", sender=ALICE)
    assert not room.membership(CAROL, "leave", sender=BOB)  # DENY: below ban level
    assert room.membership(CAROL, "leave", sender=ALICE)  # ALLOW


# -- ban -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL)
def test_ban(version: str) -> None:
    room = basic_room(
        version,
        pl={
            "ban": 50,
            "users": {BOB: 50, CAROL: 50} | ({} if RV[version].privileged_creators else {ALICE: 100}),
        },
    )
    for user in (BOB, CAROL, DAVE):
        room.member(user, "join")
    assert room.membership(BOB, "ban", sender=ALICE)  # ALLOW
    assert room.membership("@stranger:x.test", "ban", sender=BOB)  # ALLOW: anyone not in the room
    assert not room.membership(CAROL, "ban", sender=BOB)  # DENY: equal level
    assert not room.membership(BOB, "ban", sender=DAVE)  # DENY: below ban level
    assert not room.membership(BOB, "ban", sender="@outsider:x.test")  # DENY: not joined


# -- knock ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", KNOCK)
def test_knock(version: str) -> None:
    room = basic_room(version, join_rule="knock")
    assert room.membership(BOB, "knock")  # ALLOW
    assert not room.membership(BOB, "knock", sender=ALICE)  # DENY: for someone else
    room.member(CAROL, "invite", sender=ALICE)
    assert not room.membership(CAROL, "knock")  # DENY: already invited
    assert not room.membership(ALICE, "knock")  # DENY: already joined
    room.member(DAVE, "ban", sender=ALICE)
    assert not room.membership(DAVE, "knock")  # DENY: banned


@pytest.mark.parametrize("version", KNOCK)
def test_knock_needs_knock_join_rule(version: str) -> None:
    assert not basic_room(version, join_rule="invite").membership(BOB, "knock")
    assert not basic_room(version, join_rule="public").membership(BOB, "knock")


@pytest.mark.parametrize("version", KNOCK)
def test_knock_on_knock_restricted(version: str) -> None:
    allowed = basic_room(version, join_rule="knock_restricted").membership(BOB, "knock")
    assert allowed == RV[version].knock_restricted_join_rule


@pytest.mark.parametrize("version", NO_KNOCK)
def test_knock_membership_unknown_before_v7(version: str) -> None:
    assert not basic_room(version, join_rule="knock").membership(BOB, "knock")


# ===========================================================================
# Sender must be joined; third-party invite events; required power level; @ state keys


@pytest.mark.parametrize("version", ALL)
def test_sender_must_be_joined(version: str) -> None:
    room = basic_room(version)
    assert room.send("m.room.message", ALICE, {"body": "hi"})
    assert not room.send("m.room.message", BOB, {"body": "hi"})
    room.member(BOB, "invite", sender=ALICE)
    assert not room.send("m.room.message", BOB, {"body": "hi"})


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_event_needs_invite_level(version: str) -> None:
    creator = {} if RV[version].privileged_creators else {ALICE: 100}
    room = basic_room(
        version, pl={"invite": 20, "events": {"m.room.third_party_invite": 100}, "users": creator | {BOB: 20}}
    )
    room.member(BOB, "join")
    room.member(CAROL, "join")
    # The invite level applies, not the event's required level (100).
    assert room.send("m.room.third_party_invite", BOB, {"public_key": "x"}, state_key="t")
    assert not room.send("m.room.third_party_invite", CAROL, {"public_key": "x"}, state_key="t")


@pytest.mark.parametrize("version", ALL)
def test_required_power_level(version: str) -> None:
    room = basic_room(
        version, pl={"events": {"m.room.name": 30, "m.custom": 10}, "events_default": 5, "state_default": 40}
    )
    room.member(BOB, "join")
    users = room.state[("m.room.power_levels", "")].content["users"]
    room.power_levels(**(room.state[("m.room.power_levels", "")].content | {"users": users | {BOB: 30}}))
    assert room.send("m.room.name", BOB, {"name": "x"}, state_key="")  # 30 >= 30
    assert not room.send("m.room.topic", BOB, {"topic": "x"}, state_key="")  # 30 < 40
    assert room.send("m.custom", BOB, {})  # 30 >= 10
    room.member(CAROL, "join")
    assert not room.send("m.room.message", CAROL, {})  # 0 < 5


@pytest.mark.parametrize("version", ALL)
def test_no_power_levels_event_defaults(version: str) -> None:
    room = Room(version)
    room.member(ALICE, "join")
    room.join_rules("public")
    room.member(BOB, "join")
    assert room.send("m.room.topic", ALICE, {"topic": "x"}, state_key="")  # creator: 100 (v12: infinite)
    assert not room.send("m.room.topic", BOB, {"topic": "x"}, state_key="")  # 0 < state_default 50
    assert room.send("m.room.message", BOB, {})  # 0 >= events_default 0


@pytest.mark.parametrize("version", ALL)
def test_state_key_starting_with_at(version: str) -> None:
    room = basic_room(version, pl={"state_default": 0})
    room.member(BOB, "join")
    assert room.send("m.custom.state", BOB, {}, state_key=BOB)
    assert not room.send("m.custom.state", BOB, {}, state_key=CAROL)
    assert not room.send("m.custom.state", ALICE, {}, state_key=BOB)


# ===========================================================================
# m.room.power_levels


def _pl_room(version: str, **levels: Any) -> Room:
    """Alice (creator), Bob at 50, Carol at 50, Dave joined at 0."""
    users = {BOB: 50, CAROL: 50}
    if not RV[version].privileged_creators:
        users[ALICE] = 100
    room = basic_room(version, pl={"users": users, **levels})
    for user in (BOB, CAROL, DAVE):
        room.member(user, "join")
    return room


def _change(room: Room, sender: str, **changes: Any) -> bool:
    content = dict(room.state[("m.room.power_levels", "")].content)
    content.update(changes)
    return room.send("m.room.power_levels", sender, content, state_key="")


def _users(room: Room, **changes: Any) -> dict[str, Any]:
    users = dict(room.state[("m.room.power_levels", "")].content["users"])
    users.update(changes)
    return users


@pytest.mark.parametrize("version", ALL)
def test_power_levels_users_must_be_user_ids(version: str) -> None:
    room = _pl_room(version, events={"m.room.power_levels": 50})
    assert _change(room, BOB, users=_users(room, **{"@new:d.test": 10}))
    assert not _change(room, BOB, users=_users(room, **{"not-a-user": 10}))
    assert not _change(room, BOB, users=_users(room, **{"@nodomain": 10}))
    assert not _change(room, BOB, users="nope")


@pytest.mark.parametrize("version", STRINGY)
def test_stringy_power_levels_allowed_before_v10(version: str) -> None:
    room = _pl_room(version, events={"m.room.power_levels": 50})
    assert _change(
        room, BOB, users=_users(room, **{"@new:d.test": "10"}), ban="50", events={"m.room.power_levels": "50"}
    )
    assert not _change(room, BOB, users=_users(room, **{"@new:d.test": "ten"}))


@pytest.mark.parametrize("version", INT_ONLY)
def test_v10_power_levels_must_be_integers(version: str) -> None:
    room = _pl_room(version, events={"m.room.power_levels": 50})
    assert _change(room, BOB, ban=50, events={"m.room.power_levels": 50}, notifications={"room": 20})
    assert not _change(room, BOB, ban="50")  # 10.1
    assert not _change(room, BOB, users_default=True)  # 10.1
    assert not _change(room, BOB, events={"m.room.power_levels": "50"})  # 10.2
    assert not _change(room, BOB, notifications={"room": "20"})  # 10.2
    assert not _change(room, BOB, events=[])  # 10.2
    assert not _change(room, BOB, users=_users(room, **{"@new:d.test": "10"}))  # 10.3


@pytest.mark.parametrize("version", ALL)
def test_first_power_levels_event_allowed(version: str) -> None:
    room = Room(version)
    room.member(ALICE, "join")
    users = {} if RV[version].privileged_creators else {ALICE: 100}
    assert room.send("m.room.power_levels", ALICE, {"users": users | {BOB: 100}, "ban": 1000}, state_key="")


@pytest.mark.parametrize(
    "key", ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"]
)
@pytest.mark.parametrize("version", ALL)
def test_power_levels_named_levels(version: str, key: str) -> None:
    room = _pl_room(version, events={"m.room.power_levels": 50}, **{key: 40})
    assert _change(room, BOB, **{key: 50})  # ALLOW: up to own level
    assert not _change(room, BOB, **{key: 51})  # DENY: new value above own level
    room2 = _pl_room(version, events={"m.room.power_levels": 50}, **{key: 60})
    assert not _change(room2, BOB, **{key: 10})  # DENY: current value above own level


@pytest.mark.parametrize("version", ALL)
def test_power_levels_removing_a_named_level(version: str) -> None:
    room = _pl_room(version, events={"m.room.power_levels": 50}, ban=60, kick=40)
    content = {k: v for k, v in room.state[("m.room.power_levels", "")].content.items() if k != "ban"}
    assert not room.send("m.room.power_levels", BOB, content, state_key="")  # ban 60 > 50
    content = {k: v for k, v in room.state[("m.room.power_levels", "")].content.items() if k != "kick"}
    assert room.send("m.room.power_levels", BOB, content, state_key="")


@pytest.mark.parametrize("version", ALL)
def test_power_levels_events(version: str) -> None:
    room = _pl_room(version, events={"m.room.power_levels": 50, "m.room.name": 70, "m.room.topic": 20})
    events = room.state[("m.room.power_levels", "")].content["events"]
    assert _change(room, BOB, events=events | {"m.room.topic": 50, "m.custom": 50})  # ALLOW
    assert not _change(room, BOB, events=events | {"m.custom": 51})  # DENY: added above own
    assert not _change(room, BOB, events=events | {"m.room.name": 10})  # DENY: current above own
    assert not _change(
        room, BOB, events={k: v for k, v in events.items() if k != "m.room.name"}
    )  # DENY: removed


@pytest.mark.parametrize("version", NOTIFICATIONS)
def test_power_levels_notifications_checked_from_v6(version: str) -> None:
    room = _pl_room(version, events={"m.room.power_levels": 50}, notifications={"room": 60})
    assert not _change(room, BOB, notifications={"room": 10})  # current above own
    room2 = _pl_room(version, events={"m.room.power_levels": 50}, notifications={"room": 20})
    assert _change(room2, BOB, notifications={"room": 50})
    assert not _change(room2, BOB, notifications={"room": 51})


@pytest.mark.parametrize("version", NO_NOTIFICATIONS)
def test_power_levels_notifications_unchecked_before_v6(version: str) -> None:
    room = _pl_room(version, events={"m.room.power_levels": 50}, notifications={"room": 60})
    assert _change(room, BOB, notifications={"room": 100})


@pytest.mark.parametrize("version", ALL)
def test_power_levels_users(version: str) -> None:
    room = _pl_room(version, events={"m.room.power_levels": 50})
    assert _change(room, BOB, users=_users(room, **{DAVE: 50}))  # ALLOW: grant up to own level
    assert not _change(room, BOB, users=_users(room, **{DAVE: 51}))  # DENY: above own
    assert not _change(room, BOB, users=_users(room, **{CAROL: 10}))  # DENY: demote an equal
    assert _change(room, BOB, users=_users(room, **{BOB: 10}))  # ALLOW: demote oneself
    assert not _change(room, BOB, users=_users(room, **{BOB: 60}))  # DENY: promote oneself
    assert not _change(
        room, BOB, users={k: v for k, v in _users(room).items() if k != CAROL}
    )  # DENY: remove equal
    if not RV[version].privileged_creators:
        assert not _change(room, BOB, users=_users(room, **{ALICE: 50}))  # DENY: demote a superior
        assert _change(room, ALICE, users=_users(room, **{BOB: 0}))  # ALLOW


def test_v12_power_levels_cannot_list_creators() -> None:
    room = Room("12", create_content={"additional_creators": [CAROL]})
    room.member(ALICE, "join")
    assert room.send("m.room.power_levels", ALICE, {"users": {BOB: 100}}, state_key="")
    assert not room.send("m.room.power_levels", ALICE, {"users": {ALICE: 100}}, state_key="")
    assert not room.send("m.room.power_levels", ALICE, {"users": {CAROL: 100}}, state_key="")


def test_v12_creators_have_infinite_power() -> None:
    room = Room("12", create_content={"additional_creators": [CAROL]})
    room.member(ALICE, "join")
    room.join_rules("public")
    room.power_levels(users={BOB: 2**53 - 1}, events={"m.room.tombstone": 150})
    for user in (BOB, CAROL, DAVE):
        room.member(user, "join")
    assert room.send("m.room.tombstone", CAROL, {"body": "bye"}, state_key="")
    assert room.membership(BOB, "ban", sender=CAROL)  # a creator outranks any level
    assert not room.membership(CAROL, "ban", sender=BOB)  # nobody outranks a creator
    assert not room.membership(CAROL, "leave", sender=ALICE)  # creators cannot kick each other
    assert _change(room, CAROL, users={BOB: 0, DAVE: 2**53 - 1}, ban=2**53 - 1)


def test_v11_additional_creators_have_no_power() -> None:
    room = Room("11", create_content={"additional_creators": [CAROL]})
    room.member(ALICE, "join")
    room.join_rules("public")
    room.power_levels(users={ALICE: 100})
    room.member(CAROL, "join")
    assert not room.send("m.room.topic", CAROL, {"topic": "x"}, state_key="")


# ===========================================================================
# m.room.redaction (v1, v2)


@pytest.mark.parametrize("version", REDACTION_RULE)
def test_redaction_rule_v1_v2(version: str) -> None:
    room = basic_room(version, pl={"redact": 50})
    room.member(BOB, "join")
    own = room.event("m.room.redaction", BOB, {}, extra={"redacts": "$x:b.test"}, event_id="$r:b.test")
    other = room.event("m.room.redaction", BOB, {}, extra={"redacts": "$x:a.test"}, event_id="$r2:b.test")
    admin = room.event("m.room.redaction", ALICE, {}, extra={"redacts": "$x:b.test"}, event_id="$r3:a.test")
    assert room.allowed(own)  # same domain
    assert not room.allowed(other)  # below redact level, another server's event
    assert room.allowed(admin)  # redact level


@pytest.mark.parametrize("version", NO_REDACTION_RULE)
def test_redaction_not_special_from_v3(version: str) -> None:
    room = basic_room(version, pl={"redact": 50})
    room.member(BOB, "join")
    redacts = {"redacts": "$x:a.test"}
    ev = (
        room.event("m.room.redaction", BOB, redacts)
        if RV[version].redacts_in_content
        else room.event("m.room.redaction", BOB, {}, extra=redacts)
    )
    assert room.allowed(ev)  # the redact level is checked when the redaction is applied, not here
    room2 = basic_room(version, pl={"events": {"m.room.redaction": 10}})
    room2.member(BOB, "join")
    assert not room2.send("m.room.redaction", BOB, {"redacts": "$x:a.test"})


# ===========================================================================
# Otherwise, allow


@pytest.mark.parametrize("version", ALL)
def test_ordinary_events_allowed(version: str) -> None:
    room = basic_room(version)
    room.member(BOB, "join")
    assert room.send("m.room.message", BOB, {"body": "hello"})
    assert room.send("m.room.topic", ALICE, {"topic": "t"}, state_key="")
