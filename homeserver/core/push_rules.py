"""Push rules (client-server API v1.19, "Push Notifications" module): the
server-default rule set, a user's stored rule set, and evaluation of rules
against an event for one recipient.

Theory of operation:

- A user's stored rule set is plain JSON (``{"user": {kind: [rule, ...]},
  "defaults": {rule_id: {"enabled": bool, "actions": [...]}}}``): the user's
  own rules in priority order per kind, plus the only two things a user may
  change about a server-default rule. ``effective_rules`` merges it with the
  defaults in the spec's priority order: ``.m.rule.master`` first, then user
  overrides, default overrides, content (user, default), room, sender, user
  underrides, default underrides.
- The editing functions (``put_rule``, ``delete_rule``, ``set_enabled``,
  ``set_actions``) take a rule set and return a new one, or raise
  ``PushRuleError`` with the Matrix error code to send.
- ``evaluate`` walks the effective rules for one recipient and returns the
  actions of the first enabled rule whose conditions all hold (``None`` if no
  rule matched). ``PushContext`` carries what conditions read beyond the
  event: the recipient, their display name, the joined member count and the
  power levels. Unknown condition kinds never match (spec: the rule is then
  effectively disabled). Historical actions ``dont_notify``/``coalesce`` are
  stripped.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = [
    "KINDS",
    "Outcome",
    "PushContext",
    "PushRuleError",
    "default_rules",
    "delete_rule",
    "effective_rules",
    "evaluate",
    "find_rule",
    "glob_matches",
    "lookup_key",
    "normalise_actions",
    "outcome_of",
    "put_rule",
    "render_ruleset",
    "set_actions",
    "set_enabled",
    "split_dotted_key",
    "thread_id_of",
    "validate_actions",
]

KINDS = ("override", "content", "room", "sender", "underride")
USER_ID = "[the user's Matrix ID]"  # substituted per recipient in the default rules

_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


def _em(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


# The spec's server-default rules, in priority order within each kind (v1.19 "Predefined Rules").
# v1.17 removed the legacy body-mention rules (.m.rule.contains_display_name,
# .m.rule.contains_user_name, .m.rule.roomnotif); they are not defaults here.
_DEFAULT_OVERRIDE: list[dict[str, Any]] = [
    {"rule_id": ".m.rule.master", "enabled": False, "conditions": [], "actions": []},
    {"rule_id": ".m.rule.suppress_notices", "conditions": [_em("content.msgtype", "m.notice")], "actions": []},
    {"rule_id": ".m.rule.invite_for_me",
     "conditions": [_em("type", "m.room.member"), _em("content.membership", "invite"), _em("state_key", USER_ID)],
     "actions": ["notify", _SOUND_DEFAULT]},
    {"rule_id": ".m.rule.member_event", "conditions": [_em("type", "m.room.member")], "actions": []},
    {"rule_id": ".m.rule.is_user_mention",
     "conditions": [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": USER_ID}],
     "actions": ["notify", _SOUND_DEFAULT, _HIGHLIGHT]},
    {"rule_id": ".m.rule.is_room_mention",
     "conditions": [{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                    {"kind": "sender_notification_permission", "key": "room"}],
     "actions": ["notify", _HIGHLIGHT]},
    {"rule_id": ".m.rule.tombstone", "conditions": [_em("type", "m.room.tombstone"), _em("state_key", "")],
     "actions": ["notify", _HIGHLIGHT]},
    {"rule_id": ".m.rule.reaction", "conditions": [_em("type", "m.reaction")], "actions": []},
    {"rule_id": ".m.rule.room.server_acl", "conditions": [_em("type", "m.room.server_acl"), _em("state_key", "")],
     "actions": []},
    {"rule_id": ".m.rule.suppress_edits",
     "conditions": [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}],
     "actions": []},
]
_DEFAULT_UNDERRIDE: list[dict[str, Any]] = [
    {"rule_id": ".m.rule.call", "conditions": [_em("type", "m.call.invite")],
     "actions": ["notify", {"set_tweak": "sound", "value": "ring"}]},
    {"rule_id": ".m.rule.encrypted_room_one_to_one",
     "conditions": [{"kind": "room_member_count", "is": "2"}, _em("type", "m.room.encrypted")],
     "actions": ["notify", _SOUND_DEFAULT]},
    {"rule_id": ".m.rule.room_one_to_one",
     "conditions": [{"kind": "room_member_count", "is": "2"}, _em("type", "m.room.message")],
     "actions": ["notify", _SOUND_DEFAULT]},
    {"rule_id": ".m.rule.message", "conditions": [_em("type", "m.room.message")], "actions": ["notify"]},
    {"rule_id": ".m.rule.encrypted", "conditions": [_em("type", "m.room.encrypted")], "actions": ["notify"]},
]
_DEFAULTS_BY_KIND: dict[str, list[dict[str, Any]]] = {
    "override": _DEFAULT_OVERRIDE, "content": [], "room": [], "sender": [], "underride": _DEFAULT_UNDERRIDE,
}
_DEFAULT_IDS = {r["rule_id"]: kind for kind, rules in _DEFAULTS_BY_KIND.items() for r in rules}


class PushRuleError(Exception):
    def __init__(self, status: int, errcode: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode
        self.message = message


def _substitute(value: Any, user_id: str) -> Any:
    if value == USER_ID:
        return user_id
    if isinstance(value, dict):
        return {k: _substitute(v, user_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, user_id) for v in value]
    return value


def default_rules(kind: str, user_id: str) -> list[dict[str, Any]]:
    """The server-default rules of one kind for `user_id`, in client form."""
    out = []
    for rule in _DEFAULTS_BY_KIND[kind]:
        r = _substitute(copy.deepcopy(rule), user_id)
        r.setdefault("enabled", True)
        r["default"] = True
        out.append(r)
    return out


def _user_rules(ruleset: Mapping[str, Any] | None, kind: str) -> list[dict[str, Any]]:
    if not ruleset:
        return []
    rules = ruleset.get("user", {}).get(kind, [])
    return [dict(r, default=False, enabled=r.get("enabled", True)) for r in rules]


def _with_changes(rule: dict[str, Any], ruleset: Mapping[str, Any] | None) -> dict[str, Any]:
    change = (ruleset or {}).get("defaults", {}).get(rule["rule_id"])
    if change:
        if "enabled" in change:
            rule["enabled"] = change["enabled"]
        if "actions" in change:
            rule["actions"] = change["actions"]
    return rule


def effective_rules(ruleset: Mapping[str, Any] | None, user_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every rule for `user_id` as (kind, rule) in evaluation order."""
    out: list[tuple[str, dict[str, Any]]] = []
    defaults = {k: [_with_changes(r, ruleset) for r in default_rules(k, user_id)] for k in KINDS}
    master = [r for r in defaults["override"] if r["rule_id"] == ".m.rule.master"]
    out.extend(("override", r) for r in master)
    for kind in KINDS:
        out.extend((kind, r) for r in _user_rules(ruleset, kind))
        out.extend((kind, r) for r in defaults[kind] if r["rule_id"] != ".m.rule.master")
    return out


def render_ruleset(ruleset: Mapping[str, Any] | None, user_id: str) -> dict[str, Any]:
    """The `global` ruleset as GET /pushrules/ and m.push_rules account data show it."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for kind, rule in effective_rules(ruleset, user_id):
        r = {"rule_id": rule["rule_id"], "default": rule["default"], "enabled": rule["enabled"],
             "actions": rule.get("actions", [])}
        if kind in ("override", "underride"):
            r["conditions"] = rule.get("conditions", [])
        if kind == "content" and "pattern" in rule:
            r["pattern"] = rule["pattern"]
        out[kind].append(r)
    return out


# -- editing ---------------------------------------------------------------------
def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise PushRuleError(400, "M_INVALID_PARAM", f"Unknown push rule kind {kind!r}")


def _empty_ruleset() -> dict[str, Any]:
    return {"user": {}, "defaults": {}}


def find_rule(ruleset: Mapping[str, Any] | None, user_id: str, kind: str, rule_id: str) -> dict[str, Any]:
    """One rule in client form, or PushRuleError(404)."""
    _check_kind(kind)
    for k, rule in effective_rules(ruleset, user_id):
        if k == kind and rule["rule_id"] == rule_id:
            return rule
    raise PushRuleError(404, "M_NOT_FOUND", "Unknown push rule")


def validate_actions(actions: Any) -> list[Any]:
    if not isinstance(actions, list):
        raise PushRuleError(400, "M_INVALID_PARAM", "'actions' must be a list")
    for a in actions:
        if isinstance(a, str):
            if a not in ("notify", "dont_notify", "coalesce"):
                raise PushRuleError(400, "M_INVALID_PARAM", f"Unknown action {a!r}")
        elif isinstance(a, dict):
            if not isinstance(a.get("set_tweak"), str):
                raise PushRuleError(400, "M_INVALID_PARAM", "An object action must have a string 'set_tweak'")
        else:
            raise PushRuleError(400, "M_INVALID_PARAM", "Actions are strings or objects")
    return normalise_actions(actions)


def normalise_actions(actions: Sequence[Any]) -> list[Any]:
    """Strip the historical actions clients and servers must ignore."""
    return [a for a in actions if a not in ("dont_notify", "coalesce")]


def _validate_conditions(conditions: Any) -> list[dict[str, Any]]:
    if not isinstance(conditions, list) or not all(isinstance(c, dict) for c in conditions):
        raise PushRuleError(400, "M_INVALID_PARAM", "'conditions' must be a list of objects")
    for c in conditions:
        if not isinstance(c.get("kind"), str):
            raise PushRuleError(400, "M_INVALID_PARAM", "A condition needs a 'kind'")
        if c["kind"] in ("event_match", "event_property_is", "event_property_contains") and not isinstance(
            c.get("key"), str
        ):
            raise PushRuleError(400, "M_INVALID_PARAM", f"A {c['kind']} condition needs a 'key'")
        if c["kind"] == "event_match" and not isinstance(c.get("pattern"), str):
            raise PushRuleError(400, "M_INVALID_PARAM", "An event_match condition needs a 'pattern'")
        if c["kind"] == "room_member_count" and not isinstance(c.get("is"), str):
            raise PushRuleError(400, "M_INVALID_PARAM", "A room_member_count condition needs 'is'")
    return conditions


def put_rule(
    ruleset: Mapping[str, Any] | None, kind: str, rule_id: str, body: Mapping[str, Any],
    *, before: str | None = None, after: str | None = None,
) -> dict[str, Any]:
    """Create or replace a user-defined rule; returns the new rule set."""
    _check_kind(kind)
    if not rule_id or rule_id.startswith(".") or "/" in rule_id or "\\" in rule_id:
        raise PushRuleError(400, "M_INVALID_PARAM", "Rule IDs may not start with '.' or contain slashes")
    rule: dict[str, Any] = {"rule_id": rule_id, "actions": validate_actions(body.get("actions")), "enabled": True}
    if kind in ("override", "underride"):
        rule["conditions"] = _validate_conditions(body.get("conditions", []))
    elif kind == "content":
        pattern = body.get("pattern")
        if not isinstance(pattern, str):
            raise PushRuleError(400, "M_INVALID_PARAM", "Content rules need a string 'pattern'")
        rule["pattern"] = pattern
    out = copy.deepcopy(dict(ruleset)) if ruleset else _empty_ruleset()
    rules: list[dict[str, Any]] = out.setdefault("user", {}).setdefault(kind, [])
    existing = next((i for i, r in enumerate(rules) if r["rule_id"] == rule_id), None)
    if existing is not None:
        rule["enabled"] = rules[existing].get("enabled", True)
    anchor = before if before is not None else after
    if anchor is not None:
        if anchor.startswith("."):
            raise PushRuleError(400, "M_INVALID_PARAM", "Rules cannot be placed relative to server-default rules")
        if anchor == rule_id:
            raise PushRuleError(400, "M_INVALID_PARAM", "A rule cannot be placed relative to itself")
        if existing is not None:
            rules.pop(existing)
        at = next((i for i, r in enumerate(rules) if r["rule_id"] == anchor), None)
        if at is None:
            raise PushRuleError(404, "M_NOT_FOUND", f"No rule {anchor!r} to place this rule relative to")
        rules.insert(at if before is not None else at + 1, rule)
    elif existing is not None:
        rules[existing] = rule
    else:
        rules.insert(0, rule)
    return out


def delete_rule(ruleset: Mapping[str, Any] | None, kind: str, rule_id: str) -> dict[str, Any]:
    _check_kind(kind)
    if rule_id in _DEFAULT_IDS and _DEFAULT_IDS[rule_id] == kind:
        raise PushRuleError(400, "M_INVALID_PARAM", "Server-default rules cannot be deleted")
    out = copy.deepcopy(dict(ruleset)) if ruleset else _empty_ruleset()
    rules = out.setdefault("user", {}).get(kind, [])
    kept = [r for r in rules if r["rule_id"] != rule_id]
    if len(kept) == len(rules):
        raise PushRuleError(404, "M_NOT_FOUND", "Unknown push rule")
    out["user"][kind] = kept
    return out


def _change(ruleset: Mapping[str, Any] | None, kind: str, rule_id: str, field_name: str, value: Any) -> dict[str, Any]:
    _check_kind(kind)
    out = copy.deepcopy(dict(ruleset)) if ruleset else _empty_ruleset()
    if _DEFAULT_IDS.get(rule_id) == kind:
        out.setdefault("defaults", {}).setdefault(rule_id, {})[field_name] = value
        return out
    for r in out.setdefault("user", {}).get(kind, []):
        if r["rule_id"] == rule_id:
            r[field_name] = value
            return out
    raise PushRuleError(404, "M_NOT_FOUND", "Unknown push rule")


def set_enabled(ruleset: Mapping[str, Any] | None, kind: str, rule_id: str, enabled: Any) -> dict[str, Any]:
    if not isinstance(enabled, bool):
        raise PushRuleError(400, "M_INVALID_PARAM", "'enabled' must be a boolean")
    return _change(ruleset, kind, rule_id, "enabled", enabled)


def set_actions(ruleset: Mapping[str, Any] | None, kind: str, rule_id: str, actions: Any) -> dict[str, Any]:
    return _change(ruleset, kind, rule_id, "actions", validate_actions(actions))


# -- evaluation -------------------------------------------------------------------
@dataclass(frozen=True)
class PushContext:
    """What conditions read beyond the event, for one recipient."""

    user_id: str
    display_name: str | None = None
    member_count: int = 0
    sender_power: float = 0
    # notifications.<key> levels from m.room.power_levels (spec default for "room" is 50)
    notification_levels: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    notify: bool
    highlight: bool
    actions: list[Any]


def split_dotted_key(key: str) -> list[str]:
    """`content.m\\.mentions.user_ids` -> ["content", "m.mentions", "user_ids"] (appendix: dot-separated paths)."""
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(key):
        ch = key[i]
        if ch == "\\" and i + 1 < len(key) and key[i + 1] in ".\\":
            cur.append(key[i + 1])
            i += 2
            continue
        if ch == ".":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


_MISSING = object()


@lru_cache(maxsize=1024)
def _split_cached(key: str) -> tuple[str, ...]:
    return tuple(split_dotted_key(key))


def lookup_key(event: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted path, or a sentinel that equals nothing a JSON value can be."""
    node: Any = event
    for part in _split_cached(key):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


_WORD = "A-Za-z0-9_"


@lru_cache(maxsize=4096)
def _glob_regex(pattern: str, word_boundary: bool) -> re.Pattern[str]:
    body = []
    for ch in pattern:
        if ch == "*":
            body.append(".*?")
        elif ch == "?":
            body.append(".")
        else:
            body.append(re.escape(ch))
    inner = "".join(body)
    if word_boundary:
        return re.compile(f"(?<![{_WORD}]){inner}(?![{_WORD}])", re.IGNORECASE | re.DOTALL)
    return re.compile(f"{inner}\\Z", re.IGNORECASE | re.DOTALL)


def glob_matches(pattern: str, value: str, *, word_boundary: bool = False) -> bool:
    """Case-insensitive glob (`*`, `?`): the whole value, or any word-bounded substring."""
    regex = _glob_regex(pattern, word_boundary)
    if word_boundary:
        return regex.search(value) is not None
    return regex.match(value) is not None


def _scalar(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -(2**53) + 1 <= value <= 2**53 - 1


def _same(a: Any, b: Any) -> bool:
    # JSON types do not cast: true is not 1.
    return type(a) is type(b) and a == b


_COUNT = re.compile(r"^(==|<=|>=|<|>)?([0-9]+)$")


def _member_count_matches(spec: Any, count: int) -> bool:
    if not isinstance(spec, str):
        return False
    m = _COUNT.match(spec.strip())
    if m is None:
        return False
    op, n = m.group(1) or "==", int(m.group(2))
    return {"==": count == n, "<": count < n, ">": count > n, "<=": count <= n, ">=": count >= n}[op]


def _condition_holds(cond: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    kind = cond.get("kind")
    if kind == "event_match":
        key, pattern = cond.get("key"), cond.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return False
        value = lookup_key(event, key)
        if not isinstance(value, str):
            return False
        return glob_matches(pattern, value, word_boundary=key == "content.body")
    if kind == "event_property_is":
        key = cond.get("key")
        if not isinstance(key, str):
            return False
        value = lookup_key(event, key)
        return value is not _MISSING and _scalar(value) and _same(value, cond.get("value"))
    if kind == "event_property_contains":
        key = cond.get("key")
        if not isinstance(key, str):
            return False
        value = lookup_key(event, key)
        if not isinstance(value, list):
            return False
        wanted = cond.get("value")
        return any(_scalar(v) and _same(v, wanted) for v in value)
    if kind == "contains_display_name":
        body = lookup_key(event, "content.body")
        name = ctx.display_name
        if not isinstance(body, str) or not name:
            return False
        return re.search(f"(?<![{_WORD}]){re.escape(name)}(?![{_WORD}])", body, re.IGNORECASE) is not None
    if kind == "room_member_count":
        return _member_count_matches(cond.get("is"), ctx.member_count)
    if kind == "sender_notification_permission":
        key = cond.get("key")
        if not isinstance(key, str):
            return False
        required = ctx.notification_levels.get(key, 50)
        if isinstance(required, str):
            try:
                required = int(required)
            except ValueError:
                required = 50
        if not isinstance(required, (int, float)) or isinstance(required, bool):
            required = 50
        return ctx.sender_power >= required
    return False  # unknown conditions never match


def _rule_matches(kind: str, rule: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    if kind in ("override", "underride"):
        conditions = rule.get("conditions", [])
        return all(isinstance(c, Mapping) and _condition_holds(c, event, ctx) for c in conditions)
    if kind == "content":
        body = lookup_key(event, "content.body")
        pattern = rule.get("pattern")
        return isinstance(body, str) and isinstance(pattern, str) and glob_matches(pattern, body, word_boundary=True)
    if kind == "room":
        return event.get("room_id") == rule.get("rule_id")
    if kind == "sender":
        return event.get("sender") == rule.get("rule_id")
    return False


def evaluate(
    rules: Sequence[tuple[str, Mapping[str, Any]]], event: Mapping[str, Any], ctx: PushContext
) -> list[Any] | None:
    """The actions of the first enabled matching rule, or None when none matches."""
    for kind, rule in rules:
        if not rule.get("enabled", True):
            continue
        if _rule_matches(kind, rule, event, ctx):
            return normalise_actions(rule.get("actions", []))
    return None


def outcome_of(actions: Sequence[Any] | None) -> Outcome:
    """Whether actions notify and highlight (a highlight tweak without a value means true)."""
    if not actions:
        return Outcome(False, False, [])
    notify = "notify" in actions
    highlight = False
    for a in actions:
        if isinstance(a, Mapping) and a.get("set_tweak") == "highlight":
            highlight = a.get("value", True) is True
    return Outcome(notify, notify and highlight, list(actions))


def thread_id_of(event: Mapping[str, Any]) -> str:
    """The thread an event counts in: its thread root, or "main"."""
    rel = event.get("content", {}).get("m.relates_to") if isinstance(event.get("content"), Mapping) else None
    if isinstance(rel, Mapping) and rel.get("rel_type") == "m.thread" and isinstance(rel.get("event_id"), str):
        return rel["event_id"]
    return "main"
