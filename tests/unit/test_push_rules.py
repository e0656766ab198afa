"""Push rule evaluation and editing (homeserver.core.push_rules) with plain values."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.core import push_rules as pr

ME = "@bob:example.org"


def msg(body: str = "hello", **content: Any) -> dict[str, Any]:
    return {"type": "m.room.message", "room_id": "!r:example.org", "sender": "@alice:example.org",
            "content": {"msgtype": "m.text", "body": body, **content}}


def run(event: dict[str, Any], ruleset: dict[str, Any] | None = None, **ctx: Any) -> pr.Outcome:
    ctx.setdefault("member_count", 5)
    rules = pr.effective_rules(ruleset, ME)
    return pr.outcome_of(pr.evaluate(rules, event, pr.PushContext(user_id=ME, **ctx)))


def rule_id_for(event: dict[str, Any], ruleset: dict[str, Any] | None = None, **ctx: Any) -> str | None:
    ctx.setdefault("member_count", 5)
    c = pr.PushContext(user_id=ME, **ctx)
    for kind, rule in pr.effective_rules(ruleset, ME):
        if rule.get("enabled", True) and pr._rule_matches(kind, rule, event, c):
            return rule["rule_id"]
    return None


def test_default_rule_ids_and_order_match_v1_19() -> None:
    rendered = pr.render_ruleset(None, ME)
    assert [r["rule_id"] for r in rendered["override"]] == [
        ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
        ".m.rule.is_user_mention", ".m.rule.is_room_mention", ".m.rule.tombstone", ".m.rule.reaction",
        ".m.rule.room.server_acl", ".m.rule.suppress_edits",
    ]
    assert [r["rule_id"] for r in rendered["underride"]] == [
        ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message",
        ".m.rule.encrypted",
    ]
    assert rendered["content"] == [] and rendered["room"] == [] and rendered["sender"] == []
    master = rendered["override"][0]
    assert master == {"rule_id": ".m.rule.master", "default": True, "enabled": False, "actions": [], "conditions": []}
    invite = rendered["override"][2]
    assert {"kind": "event_match", "key": "state_key", "pattern": ME} in invite["conditions"]
    mention = rendered["override"][4]
    assert mention["conditions"][0]["value"] == ME


def test_plain_message_notifies_without_highlight() -> None:
    o = run(msg())
    assert o.notify and not o.highlight
    assert rule_id_for(msg()) == ".m.rule.message"


def test_one_to_one_room() -> None:
    assert rule_id_for(msg(), member_count=2) == ".m.rule.room_one_to_one"
    enc = {"type": "m.room.encrypted", "content": {"ciphertext": "x"}, "sender": "@a:x"}
    assert rule_id_for(enc, member_count=2) == ".m.rule.encrypted_room_one_to_one"
    assert rule_id_for(enc, member_count=3) == ".m.rule.encrypted"


def test_user_mention_highlights() -> None:
    o = run(msg("hi", **{"m.mentions": {"user_ids": [ME]}}))
    assert o.notify and o.highlight
    assert {"set_tweak": "sound", "value": "default"} in o.actions
    assert not run(msg("hi", **{"m.mentions": {"user_ids": ["@other:x"]}})).highlight
    # Only a list counts; a string value is not "contains".
    assert not run(msg("hi", **{"m.mentions": {"user_ids": ME}})).highlight


def test_room_mention_needs_power() -> None:
    e = msg("all", **{"m.mentions": {"room": True}})
    assert run(e, sender_power=50).highlight
    assert not run(e, sender_power=0).highlight
    assert run(e, sender_power=10, notification_levels={"room": 10}).highlight
    assert not run(e, sender_power=10, notification_levels={"room": 20}).highlight
    # "room": "true" (a string) is not true.
    assert not run(msg("x", **{"m.mentions": {"room": "true"}}), sender_power=100).highlight


def test_body_mentions_are_not_defaults_any_more() -> None:
    # v1.17 removed .m.rule.contains_display_name / contains_user_name / roomnotif.
    assert not run(msg("hey bob"), display_name="bob").highlight
    assert not run(msg("@room look"), sender_power=100).highlight


def test_suppressions() -> None:
    assert not run(msg("n", msgtype="m.notice")).notify
    assert not run({"type": "m.reaction", "content": {}}).notify
    edit = msg("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})
    assert not run(edit).notify
    member = {"type": "m.room.member", "state_key": "@c:x", "content": {"membership": "join"}}
    assert not run(member).notify
    acl = {"type": "m.room.server_acl", "state_key": "", "content": {}}
    assert run(acl) == pr.Outcome(False, False, [])


def test_invite_for_me_and_tombstone_and_call() -> None:
    invite = {"type": "m.room.member", "state_key": ME, "content": {"membership": "invite"}}
    assert run(invite).notify
    other = {"type": "m.room.member", "state_key": "@c:x", "content": {"membership": "invite"}}
    assert not run(other).notify
    tomb = {"type": "m.room.tombstone", "state_key": "", "content": {"replacement_room": "!n:x"}}
    o = run(tomb)
    assert o.notify and o.highlight
    # Not a state event: no implicit state_key condition, so it falls through (no rule).
    assert rule_id_for({"type": "m.room.tombstone", "content": {}}) is None
    call = run({"type": "m.call.invite", "content": {}})
    assert call.notify and {"set_tweak": "sound", "value": "ring"} in call.actions


def test_unmatched_event_type_gives_none() -> None:
    rules = pr.effective_rules(None, ME)
    assert pr.evaluate(rules, {"type": "m.room.topic", "state_key": "", "content": {}}, pr.PushContext(ME)) is None


def test_master_silences_everything() -> None:
    rs = pr.set_enabled(None, "override", ".m.rule.master", True)
    assert not run(msg("hi", **{"m.mentions": {"user_ids": [ME]}}), rs).notify
    assert pr.find_rule(rs, ME, "override", ".m.rule.master")["enabled"] is True


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("lunc?*", "Lunch plans", True),
        ("lunc?*", "LUNCH", True),
        ("lunc?*", " lunch", False),
        ("lunc?*", "lunc", False),
        ("m.notice", "m.notice", True),
        ("m.notice", "m.noticeX", False),
        ("m.notice", "mXnotice", False),
        ("*", "", True),
        ("a[b]", "a[b]", True),
    ],
)
def test_glob_whole_value(pattern: str, value: str, expected: bool) -> None:
    assert pr.glob_matches(pattern, value) is expected


@pytest.mark.parametrize(
    ("pattern", "body", "expected"),
    [
        ("ex*ple", "An example event.", True),
        ("ex*ple", "exple", True),
        ("ex*ple", "An exciting triple-whammy", True),
        ("cake", "I like cakes", False),
        ("cake", "cake!", True),
        ("cake", "CAKE time", True),
        ("cake", "pancake", False),
        ("cake", "my_cake", False),
        ("ca?e", "a cafe", True),
    ],
)
def test_glob_word_boundary(pattern: str, body: str, expected: bool) -> None:
    assert pr.glob_matches(pattern, body, word_boundary=True) is expected


def test_event_match_absent_or_non_string_never_matches() -> None:
    c = pr.PushContext(ME)
    cond = {"kind": "event_match", "key": "content.topic", "pattern": "*"}
    assert not pr._condition_holds(cond, {"content": {}}, c)
    assert not pr._condition_holds(cond, {"content": {"topic": None}}, c)
    assert not pr._condition_holds(cond, {"content": {"topic": 5}}, c)
    assert pr._condition_holds(cond, {"content": {"topic": ""}}, c)


def test_dotted_keys_and_escapes() -> None:
    assert pr.split_dotted_key("content.m\\.mentions.user_ids") == ["content", "m.mentions", "user_ids"]
    assert pr.split_dotted_key("a\\\\.b") == ["a\\", "b"]
    assert pr.split_dotted_key("a\\b") == ["a\\b"]
    ev = {"content": {"m.federate": True, "a.b": {"c": 1}}}
    assert pr.lookup_key(ev, "content.m\\.federate") is True
    assert pr.lookup_key(ev, "content.a\\.b.c") == 1


@pytest.mark.parametrize(
    ("value", "cond_value", "expected"),
    [(True, True, True), ("true", True, False), (1, True, False), (1, 1, True), (None, None, True),
     ({"x": 1}, {"x": 1}, False), (2**53, 2**53, False)],
)
def test_event_property_is(value: Any, cond_value: Any, expected: bool) -> None:
    cond = {"kind": "event_property_is", "key": "content.m\\.federate", "value": cond_value}
    assert pr._condition_holds(cond, {"content": {"m.federate": value}}, pr.PushContext(ME)) is expected


def test_event_property_contains() -> None:
    cond = {"kind": "event_property_contains", "key": "content.alt_aliases", "value": "#myroom:example.com"}
    c = pr.PushContext(ME)
    assert pr._condition_holds(cond, {"content": {"alt_aliases": ["#a:x", "#myroom:example.com"]}}, c)
    assert not pr._condition_holds(cond, {"content": {"alt_aliases": [":example.com"]}}, c)
    assert not pr._condition_holds(cond, {"content": {"alt_aliases": "#myroom:example.com"}}, c)
    assert not pr._condition_holds(cond, {"content": {}}, c)


@pytest.mark.parametrize(
    ("spec", "count", "expected"),
    [("2", 2, True), ("2", 3, False), ("==2", 2, True), ("<3", 2, True), ("<3", 3, False), (">3", 4, True),
     (">=3", 3, True), ("<=3", 4, False), ("bogus", 2, False), ("=2", 2, False)],
)
def test_room_member_count(spec: str, count: int, expected: bool) -> None:
    cond = {"kind": "room_member_count", "is": spec}
    assert pr._condition_holds(cond, {}, pr.PushContext(ME, member_count=count)) is expected


def test_contains_display_name_condition() -> None:
    cond = {"kind": "contains_display_name"}
    assert pr._condition_holds(cond, msg("hey Bob Smith!"), pr.PushContext(ME, display_name="bob smith"))
    assert not pr._condition_holds(cond, msg("bobsmithy"), pr.PushContext(ME, display_name="bob smith"))
    assert not pr._condition_holds(cond, msg("anything"), pr.PushContext(ME, display_name=None))
    assert not pr._condition_holds(cond, msg("a.b"), pr.PushContext(ME, display_name="a.b.c"))


def test_unknown_condition_disables_rule() -> None:
    rs = pr.put_rule(None, "override", "weird", {"actions": ["notify", {"set_tweak": "highlight"}],
                                                  "conditions": [{"kind": "org.example.future"}]})
    assert not run(msg(), rs).highlight


def test_legacy_actions_are_ignored() -> None:
    rs = pr.put_rule(None, "override", "quiet", {"actions": ["dont_notify"], "conditions": []})
    assert pr.find_rule(rs, ME, "override", "quiet")["actions"] == []
    assert not run(msg(), rs).notify
    assert pr.normalise_actions(["notify", "coalesce"]) == ["notify"]


def test_highlight_tweak_value() -> None:
    assert pr.outcome_of(["notify", {"set_tweak": "highlight", "value": False}]).highlight is False
    assert pr.outcome_of(["notify", {"set_tweak": "highlight"}]).highlight is True
    assert pr.outcome_of(None) == pr.Outcome(False, False, [])


def test_user_rules_kinds() -> None:
    rs = pr.put_rule(None, "content", "cake", {"pattern": "cake*lie", "actions": ["notify", {"set_tweak": "highlight"}]})
    assert run(msg("the cake is a lie"), rs).highlight
    rs = pr.put_rule(None, "room", "!r:example.org", {"actions": []})
    assert not run(msg(), rs).notify
    rs = pr.put_rule(None, "sender", "@alice:example.org", {"actions": []})
    assert not run(msg(), rs).notify
    rs = pr.put_rule(None, "sender", "@carol:example.org", {"actions": []})
    assert run(msg(), rs).notify
    # User overrides come after master but before default overrides.
    rs = pr.put_rule(None, "override", "notices", {"actions": ["notify"],
                                                   "conditions": [pr._em("content.msgtype", "m.notice")]})
    assert run(msg("n", msgtype="m.notice"), rs).notify
    rs = pr.set_enabled(rs, "override", ".m.rule.master", True)
    assert not run(msg("n", msgtype="m.notice"), rs).notify


def test_put_ordering_with_before_and_after() -> None:
    rs = pr.put_rule(None, "override", "a", {"actions": []})
    rs = pr.put_rule(rs, "override", "b", {"actions": []})  # newest first
    assert [r["rule_id"] for r in rs["user"]["override"]] == ["b", "a"]
    rs = pr.put_rule(rs, "override", "c", {"actions": []}, after="a")
    assert [r["rule_id"] for r in rs["user"]["override"]] == ["b", "a", "c"]
    rs = pr.put_rule(rs, "override", "c", {"actions": ["notify"]}, before="b")
    assert [r["rule_id"] for r in rs["user"]["override"]] == ["c", "b", "a"]
    # Replacing in place keeps the position and the enabled flag.
    rs = pr.set_enabled(rs, "override", "b", False)
    rs = pr.put_rule(rs, "override", "b", {"actions": ["notify"]})
    assert [r["rule_id"] for r in rs["user"]["override"]] == ["c", "b", "a"]
    assert pr.find_rule(rs, ME, "override", "b")["enabled"] is False
    with pytest.raises(pr.PushRuleError) as e:
        pr.put_rule(rs, "override", "d", {"actions": []}, before="nope")
    assert e.value.errcode == "M_NOT_FOUND"
    with pytest.raises(pr.PushRuleError) as e:
        pr.put_rule(rs, "override", "d", {"actions": []}, before=".m.rule.master")
    assert e.value.errcode == "M_INVALID_PARAM"


@pytest.mark.parametrize(
    ("kind", "rule_id", "body"),
    [
        ("override", ".m.rule.master", {"actions": []}),
        ("override", "a/b", {"actions": []}),
        ("override", "a\\b", {"actions": []}),
        ("bogus", "x", {"actions": []}),
        ("override", "x", {}),
        ("override", "x", {"actions": ["explode"]}),
        ("override", "x", {"actions": [5]}),
        ("override", "x", {"actions": [], "conditions": "no"}),
        ("override", "x", {"actions": [], "conditions": [{"kind": "event_match", "key": "type"}]}),
        ("content", "x", {"actions": []}),
    ],
)
def test_put_rejects(kind: str, rule_id: str, body: dict[str, Any]) -> None:
    with pytest.raises(pr.PushRuleError) as e:
        pr.put_rule(None, kind, rule_id, body)
    assert e.value.status == 400 and e.value.errcode == "M_INVALID_PARAM"


def test_delete_and_change() -> None:
    rs = pr.put_rule(None, "underride", "u", {"actions": ["notify"]})
    rs = pr.delete_rule(rs, "underride", "u")
    with pytest.raises(pr.PushRuleError) as e:
        pr.delete_rule(rs, "underride", "u")
    assert e.value.errcode == "M_NOT_FOUND"
    with pytest.raises(pr.PushRuleError) as e:
        pr.delete_rule(rs, "override", ".m.rule.master")
    assert e.value.status == 400
    rs = pr.set_actions(rs, "underride", ".m.rule.message", ["notify", {"set_tweak": "highlight"}])
    assert run(msg(), rs).highlight
    with pytest.raises(pr.PushRuleError) as e:
        pr.set_actions(rs, "underride", "missing", [])
    assert e.value.errcode == "M_NOT_FOUND"
    with pytest.raises(pr.PushRuleError):
        pr.set_enabled(rs, "underride", ".m.rule.message", "yes")
    with pytest.raises(pr.PushRuleError) as e:
        pr.find_rule(rs, ME, "content", ".m.rule.message")
    assert e.value.errcode == "M_NOT_FOUND"


def test_thread_id_of() -> None:
    assert pr.thread_id_of(msg()) == "main"
    threaded = msg("t", **{"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}})
    assert pr.thread_id_of(threaded) == "$root"


def test_defaults_read_the_recipient_only_through_state_key_and_mentions() -> None:
    # PushService evaluates once for all recipients without rules of their own who are neither
    # the state_key nor in m.mentions.user_ids; that is exact only while this holds.
    rendered = pr.render_ruleset(None, ME)
    uses_me = []
    for rules in rendered.values():
        for rule in rules:
            for cond in rule.get("conditions", []):
                assert cond["kind"] != "contains_display_name"
                if ME in (cond.get("pattern"), cond.get("value")):
                    uses_me.append((rule["rule_id"], cond.get("key")))
    assert uses_me == [(".m.rule.invite_for_me", "state_key"),
                       (".m.rule.is_user_mention", "content.m\\.mentions.user_ids")]
