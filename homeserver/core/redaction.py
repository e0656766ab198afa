"""The redaction algorithm: which parts of an event survive a redaction, per room version.

The rules are data: a table from :class:`RedactionRules` to the top-level keys
kept and, per event type, the content keys kept. They transcribe the
fragments ``v1-redactions``, ``v6-redactions``, the v8 page, ``v9-redactions``
and ``v11-redactions`` of the room version specification. The same pruning
defines what event signatures and reference hashes cover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.core.room_versions import RedactionRules, RoomVersion

__all__ = ["REDACTION_RULE_SETS", "RedactionRuleSet", "prune_client_event", "prune_event_dict"]

# Marks an event type whose whole content survives (m.room.create from v11).
ALL_KEYS: frozenset[str] = frozenset({"*"})


@dataclass(frozen=True, slots=True)
class RedactionRuleSet:
    # Top-level keys of a PDU that survive.
    essential_keys: frozenset[str]
    # Event type -> content keys that survive (ALL_KEYS: the whole content).
    content_keys: dict[str, frozenset[str]]
    # v11: m.room.member keeps content.third_party_invite, reduced to its "signed" key.
    keep_third_party_invite_signed: bool


_V1_ESSENTIAL = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
# v11 stops protecting the top-level origin, membership and prev_state.
_V11_ESSENTIAL = _V1_ESSENTIAL - {"origin", "membership", "prev_state"}

_POWER_LEVELS_V1 = frozenset(
    {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
)

_V1_CONTENT: dict[str, frozenset[str]] = {
    "m.room.member": frozenset({"membership"}),
    "m.room.create": frozenset({"creator"}),
    "m.room.join_rules": frozenset({"join_rule"}),
    "m.room.power_levels": _POWER_LEVELS_V1,
    "m.room.aliases": frozenset({"aliases"}),
    "m.room.history_visibility": frozenset({"history_visibility"}),
}
# v6: m.room.aliases loses its special case.
_V6_CONTENT = {k: v for k, v in _V1_CONTENT.items() if k != "m.room.aliases"}
# v8: join rules keep "allow" (restricted rooms).
_V8_CONTENT = {**_V6_CONTENT, "m.room.join_rules": frozenset({"join_rule", "allow"})}
# v9: members keep the authorising server of a restricted join.
_V9_CONTENT = {**_V8_CONTENT, "m.room.member": frozenset({"membership", "join_authorised_via_users_server"})}
_V11_CONTENT = {
    **_V9_CONTENT,
    "m.room.create": ALL_KEYS,
    "m.room.power_levels": _POWER_LEVELS_V1 | {"invite"},
    "m.room.redaction": frozenset({"redacts"}),
}

REDACTION_RULE_SETS: dict[RedactionRules, RedactionRuleSet] = {
    RedactionRules.V1: RedactionRuleSet(_V1_ESSENTIAL, _V1_CONTENT, False),
    RedactionRules.V6: RedactionRuleSet(_V1_ESSENTIAL, _V6_CONTENT, False),
    RedactionRules.V8: RedactionRuleSet(_V1_ESSENTIAL, _V8_CONTENT, False),
    RedactionRules.V9: RedactionRuleSet(_V1_ESSENTIAL, _V9_CONTENT, False),
    RedactionRules.V11: RedactionRuleSet(_V11_ESSENTIAL, _V11_CONTENT, True),
}


def _copy_json(value: Any) -> Any:
    # The pruned dict must not share mutable parts with its input: callers
    # go on to add signatures to one or the other.
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


def _prune_content(event_type: Any, content: Any, rules: RedactionRuleSet) -> dict[str, Any]:
    if not isinstance(content, dict):
        return {}
    allowed = rules.content_keys.get(event_type) if isinstance(event_type, str) else None
    if allowed is None:
        new_content: dict[str, Any] = {}
    elif allowed is ALL_KEYS:
        new_content = _copy_json(content)
    else:
        new_content = {k: _copy_json(v) for k, v in content.items() if k in allowed}
    if rules.keep_third_party_invite_signed and event_type == "m.room.member":
        tpi = content.get("third_party_invite")
        if isinstance(tpi, dict) and "signed" in tpi:
            new_content["third_party_invite"] = {"signed": _copy_json(tpi["signed"])}
    return new_content


def prune_event_dict(pdu: dict[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """The redacted form of a PDU: a new dict, the input is left alone.

    ``content`` is always present in the result (``{}`` when nothing of it
    survives), as every PDU carries one.
    """
    rules = REDACTION_RULE_SETS[room_version.redaction]
    pruned = {k: _copy_json(v) for k, v in pdu.items() if k in rules.essential_keys and k != "content"}
    pruned["content"] = _prune_content(pdu.get("type"), pdu.get("content"), rules)
    return pruned


def prune_client_event(client_event: dict[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """Redact an event in client format: the same rules, but ``unsigned`` is kept as it is.

    ``unsigned`` carries what the server adds for clients (``redacted_because``,
    ``age``, ...), so the serialiser owns it. For room versions that keep
    ``redacts`` in content, the top-level copy servers add for older clients
    is kept too: it repeats a surviving value.
    """
    rules = REDACTION_RULE_SETS[room_version.redaction]
    keep = rules.essential_keys | {"unsigned"}
    if room_version.redacts_in_content and client_event.get("type") == "m.room.redaction":
        keep = keep | {"redacts"}
    pruned = {k: _copy_json(v) for k, v in client_event.items() if k in keep and k != "content"}
    pruned["content"] = _prune_content(client_event.get("type"), client_event.get("content"), rules)
    return pruned
