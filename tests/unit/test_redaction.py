"""The redaction algorithm of every room version, as a table of what survives."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from homeserver.core.redaction import prune_client_event, prune_event_dict
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS, RedactionRules, RoomVersion

RV = KNOWN_ROOM_VERSIONS
R = RedactionRules


def test_room_versions_use_the_right_rules() -> None:
    expected = {
        "1": R.V1, "2": R.V1, "3": R.V1, "4": R.V1, "5": R.V1,
        "6": R.V6, "7": R.V6,
        "8": R.V8,
        "9": R.V9, "10": R.V9,
        "11": R.V11, "12": R.V11,
    }  # fmt: skip
    assert {k: v.redaction for k, v in RV.items()} == expected


# One representative room version per rule set.
BY_RULES = {R.V1: RV["1"], R.V6: RV["6"], R.V8: RV["8"], R.V9: RV["9"], R.V11: RV["11"]}

TPI = {
    "display_name": "alice",
    "signed": {"mxid": "@a:x", "token": "t", "signatures": {"x": {"ed25519:0": "s"}}},
}
FULL_CONTENT: dict[str, dict[str, Any]] = {
    "m.room.member": {
        "membership": "join",
        "displayname": "Alice",
        "avatar_url": "mxc://x/y",
        "reason": "hi",
        "join_authorised_via_users_server": "@admin:x",
        "third_party_invite": TPI,
        "is_direct": True,
    },
    "m.room.create": {
        "creator": "@a:x",
        "room_version": "9",
        "m.federate": False,
        "predecessor": {"room_id": "!old:x"},
        "additional_creators": ["@b:x"],
        "type": "m.space",
    },
    "m.room.join_rules": {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "x": 1},
    "m.room.power_levels": {
        "ban": 50,
        "events": {"m.room.name": 50},
        "events_default": 0,
        "invite": 0,
        "kick": 50,
        "redact": 50,
        "state_default": 50,
        "users": {"@a:x": 100},
        "users_default": 0,
        "notifications": {"room": 50},
        "historical": 100,
    },
    "m.room.aliases": {"aliases": ["#a:x"], "x": 1},
    "m.room.history_visibility": {"history_visibility": "shared", "x": 1},
    "m.room.redaction": {"redacts": "$abc", "reason": "spam"},
    "m.room.message": {"body": "hi", "msgtype": "m.text"},
    "m.room.name": {"name": "Room"},
    "m.room.topic": {"topic": "t"},
    "m.room.guest_access": {"guest_access": "can_join"},
    "m.room.encryption": {"algorithm": "m.megolm.v1.aes-sha2"},
    "m.room.canonical_alias": {"alias": "#a:x"},
    "m.room.third_party_invite": {"display_name": "x", "public_key": "k"},
    "org.example.custom": {"membership": "join", "join_rule": "public"},
}

PL_V1 = {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
ALL = "all"
# (event type) -> {rules: content keys that survive}
SURVIVING: dict[str, dict[RedactionRules, set[str] | str]] = {
    "m.room.member": {
        R.V1: {"membership"},
        R.V6: {"membership"},
        R.V8: {"membership"},
        R.V9: {"membership", "join_authorised_via_users_server"},
        R.V11: {"membership", "join_authorised_via_users_server", "third_party_invite"},
    },
    "m.room.create": {R.V1: {"creator"}, R.V6: {"creator"}, R.V8: {"creator"}, R.V9: {"creator"}, R.V11: ALL},
    "m.room.join_rules": {
        R.V1: {"join_rule"},
        R.V6: {"join_rule"},
        R.V8: {"join_rule", "allow"},
        R.V9: {"join_rule", "allow"},
        R.V11: {"join_rule", "allow"},
    },
    "m.room.power_levels": {R.V1: PL_V1, R.V6: PL_V1, R.V8: PL_V1, R.V9: PL_V1, R.V11: PL_V1 | {"invite"}},
    "m.room.aliases": {R.V1: {"aliases"}, R.V6: set(), R.V8: set(), R.V9: set(), R.V11: set()},
    "m.room.history_visibility": {r: {"history_visibility"} for r in BY_RULES},
    "m.room.redaction": {R.V1: set(), R.V6: set(), R.V8: set(), R.V9: set(), R.V11: {"redacts"}},
}

TABLE = [(event_type, rules) for event_type in FULL_CONTENT for rules in BY_RULES]


def _expected_content(event_type: str, rules: RedactionRules) -> dict[str, Any]:
    keep = SURVIVING.get(event_type, {}).get(rules, set())
    full = FULL_CONTENT[event_type]
    if keep == ALL:
        return full
    out = {k: v for k, v in full.items() if k in keep}
    if "third_party_invite" in out:
        # v11 keeps only the "signed" part of a third-party invite.
        out["third_party_invite"] = {"signed": TPI["signed"]}
    return out


@pytest.mark.parametrize(("event_type", "rules"), TABLE, ids=[f"{t}-{r.name}" for t, r in TABLE])
def test_content_survival_table(event_type: str, rules: RedactionRules) -> None:
    rv = BY_RULES[rules]
    pdu = {"type": event_type, "state_key": "", "content": copy.deepcopy(FULL_CONTENT[event_type])}
    assert prune_event_dict(pdu, rv)["content"] == _expected_content(event_type, rules)


@pytest.mark.parametrize("rv", list(RV.values()), ids=lambda v: f"v{v.identifier}")
def test_every_room_version_follows_its_rules(rv: RoomVersion) -> None:
    for event_type, content in FULL_CONTENT.items():
        pdu = {"type": event_type, "content": copy.deepcopy(content)}
        assert prune_event_dict(pdu, rv)["content"] == _expected_content(event_type, rv.redaction)


FULL_PDU: dict[str, Any] = {
    "event_id": "$e:x",
    "type": "m.room.member",
    "room_id": "!r:x",
    "sender": "@a:x",
    "state_key": "@a:x",
    "content": {"membership": "join", "displayname": "A"},
    "hashes": {"sha256": "h"},
    "signatures": {"x": {"ed25519:1": "s"}},
    "depth": 3,
    "prev_events": ["$p"],
    "prev_state": [],
    "auth_events": ["$a"],
    "origin": "x",
    "origin_server_ts": 1,
    "membership": "join",
    "unsigned": {"age": 1},
    "redacts": "$r",
    "age_ts": 5,
    "user_id": "@a:x",
    "custom": {"k": "v"},
}
ESSENTIAL_V1 = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
    "depth", "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts", "membership",
}  # fmt: skip
ESSENTIAL_V11 = ESSENTIAL_V1 - {"origin", "membership", "prev_state"}


@pytest.mark.parametrize("rv", list(RV.values()), ids=lambda v: f"v{v.identifier}")
def test_top_level_keys(rv: RoomVersion) -> None:
    pruned = prune_event_dict(copy.deepcopy(FULL_PDU), rv)
    expected = ESSENTIAL_V11 if rv.redaction == R.V11 else ESSENTIAL_V1
    assert set(pruned) == expected
    for key in expected - {"content"}:
        assert pruned[key] == FULL_PDU[key]


def test_v11_third_party_invite_edge_cases() -> None:
    rv = RV["11"]

    def member(content: dict[str, Any]) -> dict[str, Any]:
        return prune_event_dict({"type": "m.room.member", "content": content}, rv)["content"]

    assert member({"membership": "invite", "third_party_invite": {"display_name": "x"}}) == {
        "membership": "invite"
    }
    assert member({"membership": "invite", "third_party_invite": "junk"}) == {"membership": "invite"}
    assert member({"membership": "invite", "third_party_invite": {"signed": "kept as is"}}) == {
        "membership": "invite",
        "third_party_invite": {"signed": "kept as is"},
    }
    # Before v11 third_party_invite goes entirely.
    assert prune_event_dict(
        {"type": "m.room.member", "content": {"membership": "invite", "third_party_invite": TPI}}, RV["10"]
    )["content"] == {"membership": "invite"}


@pytest.mark.parametrize("content", [None, "string", ["list"], 5])
def test_odd_or_missing_content_becomes_empty(content: Any) -> None:
    pdu: dict[str, Any] = {"type": "m.room.create"}
    if content is not None:
        pdu["content"] = content
    for rv in RV.values():
        assert prune_event_dict(pdu, rv)["content"] == {}


def test_pruning_does_not_touch_or_share_with_input() -> None:
    pdu = copy.deepcopy(FULL_PDU)
    pdu["type"] = "m.room.power_levels"
    pdu["content"] = copy.deepcopy(FULL_CONTENT["m.room.power_levels"])
    before = copy.deepcopy(pdu)
    pruned = prune_event_dict(pdu, RV["11"])
    assert pdu == before
    pruned["content"]["users"]["@evil:x"] = 100
    pruned["signatures"]["x"]["ed25519:2"] = "new"
    pruned["prev_events"].append("$q")
    assert pdu == before


@pytest.mark.parametrize("rv", list(RV.values()), ids=lambda v: f"v{v.identifier}")
def test_pruning_is_idempotent(rv: RoomVersion) -> None:
    for event_type, content in FULL_CONTENT.items():
        pdu = {**copy.deepcopy(FULL_PDU), "type": event_type, "content": copy.deepcopy(content)}
        once = prune_event_dict(pdu, rv)
        assert prune_event_dict(once, rv) == once


# -- client-format events -------------------------------------------------------------


def test_prune_client_event_keeps_unsigned_and_prunes_content() -> None:
    event = {
        "event_id": "$e",
        "type": "m.room.message",
        "room_id": "!r:x",
        "sender": "@a:x",
        "origin_server_ts": 5,
        "content": {"body": "secret"},
        "unsigned": {"age": 3, "transaction_id": "t", "redacted_because": {"type": "m.room.redaction"}},
        "user_id": "@a:x",
    }
    before = copy.deepcopy(event)
    for rv in RV.values():
        pruned = prune_client_event(event, rv)
        assert pruned == {**{k: v for k, v in event.items() if k != "user_id"}, "content": {}}
    assert event == before


def test_prune_client_event_redaction_events() -> None:
    event = {
        "event_id": "$e",
        "type": "m.room.redaction",
        "room_id": "!r:x",
        "sender": "@a:x",
        "origin_server_ts": 5,
        "redacts": "$target",
        "content": {"redacts": "$target", "reason": "spam"},
        "unsigned": {},
    }
    v11 = prune_client_event(event, RV["11"])
    assert v11["content"] == {"redacts": "$target"} and v11["redacts"] == "$target"
    v10 = prune_client_event(event, RV["10"])
    assert v10["content"] == {} and "redacts" not in v10


def test_prune_client_event_member_state() -> None:
    event = {
        "event_id": "$e",
        "type": "m.room.member",
        "state_key": "@a:x",
        "sender": "@a:x",
        "content": {"membership": "join", "displayname": "A", "avatar_url": "mxc://x/y"},
        "unsigned": {"prev_content": {"membership": "invite"}},
    }
    pruned = prune_client_event(event, RV["9"])
    assert pruned["content"] == {"membership": "join"}
    assert pruned["state_key"] == "@a:x" and pruned["unsigned"] == event["unsigned"]
