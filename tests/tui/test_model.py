"""The pure client-state model: sync responses and history pages in, rooms and timelines out."""

from __future__ import annotations

from tui_client.model import ClientState, Gap, SendStatus, TimelineEvent

from .sync_data import ALICE, BOB, ME, T0, ev, initial_sync, joined, member, state, sync

GENERAL = "!general:example.org"
DM = "!dm:example.org"


def loaded() -> ClientState:
    model = ClientState(ME)
    model.apply_sync(initial_sync())
    return model


def bodies(model: ClientState, room_id: str) -> list[str]:
    return [e.body for e in model.rooms[room_id].events() if e.type == "m.room.message"]


def test_initial_sync_builds_rooms_dms_and_invites() -> None:
    model = loaded()
    rooms = {room.room_id: room for room in model.room_list()}
    assert set(rooms) == {GENERAL, DM, "!random:example.org", "!books:example.org"}
    assert rooms[DM].is_direct and not rooms[GENERAL].is_direct
    invite = rooms["!books:example.org"]
    assert invite.membership == "invite" and invite.inviter == BOB
    assert invite.display_name(ME) == "Book club"
    assert model.next_batch == "s1"


def test_room_list_puts_invites_first_then_most_recent_activity() -> None:
    order = [room.room_id for room in loaded().room_list()]
    assert order == ["!books:example.org", GENERAL, DM, "!random:example.org"]


def test_room_names_follow_the_spec_order() -> None:
    model = loaded()
    assert model.rooms[GENERAL].display_name(ME) == "General"
    assert model.rooms["!random:example.org"].display_name(ME) == "#random:example.org"
    assert model.rooms[DM].display_name(ME) == "Alice"
    many = joined([member(ALICE, "Alice"), member(BOB, "Bob")],
                  summary={"m.heroes": [ALICE, BOB], "m.joined_member_count": 6, "m.invited_member_count": 1})
    alone = joined([member(ALICE, "Alice", "leave")],
                   summary={"m.heroes": [ALICE], "m.joined_member_count": 1, "m.invited_member_count": 0})
    nobody = joined([], summary={"m.heroes": [], "m.joined_member_count": 1, "m.invited_member_count": 0})
    model.apply_sync(sync("s2", join={"!many:x": many, "!alone:x": alone, "!nobody:x": nobody}))
    assert model.rooms["!many:x"].display_name(ME) == "Alice, Bob and 4 others"
    assert model.rooms["!alone:x"].display_name(ME) == "Empty Room (was Alice)"
    assert model.rooms["!nobody:x"].display_name(ME) == "Empty Room"


def test_duplicate_display_names_are_disambiguated() -> None:
    model = ClientState(ME)
    model.apply_sync(sync("s1", join={"!r:x": joined([member(ALICE, "Sam"), member(BOB, "Sam"), member(ME, "Me")])}))
    room = model.rooms["!r:x"]
    assert room.member_name(ALICE) == "Sam (@alice:example.org)"
    assert room.member_name(ME) == "Me"
    assert room.member_name("@stranger:x") == "@stranger:x"


def test_unread_counts_come_from_unread_notifications() -> None:
    model = loaded()
    assert (model.rooms[GENERAL].notification_count, model.rooms[GENERAL].highlight_count) == (2, 0)
    assert (model.rooms[DM].notification_count, model.rooms[DM].highlight_count) == (1, 1)
    model.apply_sync(sync("s2", join={GENERAL: joined([], unread=(0, 0))}))
    assert model.rooms[GENERAL].notification_count == 0
    model.apply_sync(sync("s3", join={DM: joined([])}))  # absent: unchanged
    assert model.rooms[DM].highlight_count == 1


def test_events_are_deduplicated_by_event_id() -> None:
    model = loaded()
    model.apply_sync(sync("s2", join={GENERAL: joined([ev("$g3", ME, "Thanks Bob!"), ev("$g4", ALICE, "new")])}))
    assert bodies(model, GENERAL) == ["Good morning everyone", "**Release** notes: see `CHANGES.md`",
                                      "Thanks Bob!", "new"]


def test_limited_timeline_leaves_a_gap_that_pagination_fills() -> None:
    model = loaded()
    model.apply_sync(sync("s2", join={GENERAL: joined([ev("$g9", ALICE, "nine", ts=T0 + 900_000)],
                                                      limited=True, prev_batch="gap-token")}))
    room = model.rooms[GENERAL]
    gap = room.oldest_gap()
    assert isinstance(gap, Gap) and gap.token == "gap-token"
    # First page (newest first), with more to come.
    model.apply_messages(GENERAL, gap, {"chunk": [ev("$g8", BOB, "eight"), ev("$g7", BOB, "seven")],
                                        "start": "gap-token", "end": "older"})
    assert bodies(model, GENERAL)[-3:] == ["seven", "eight", "nine"]
    second = room.oldest_gap()
    assert second is not None and second.token == "older"
    # The last page overlaps what we had and has no `end`: the gap closes, nothing doubles.
    model.apply_messages(GENERAL, second, {"chunk": [ev("$g6", BOB, "six"), ev("$g3", ME, "Thanks Bob!")],
                                           "start": "older"})
    assert room.oldest_gap() is None
    assert bodies(model, GENERAL) == ["Good morning everyone", "**Release** notes: see `CHANGES.md`",
                                      "Thanks Bob!", "six", "seven", "eight", "nine"]


def test_backpagination_from_room_start_gap() -> None:
    model = ClientState(ME)
    model.apply_sync(sync("s1", join={"!r:x": joined([ev("$3", ALICE, "three")], limited=True, prev_batch="t3")}))
    room = model.rooms["!r:x"]
    gap = room.oldest_gap()
    assert gap is not None
    model.apply_messages("!r:x", gap, {"chunk": [ev("$2", ALICE, "two"), ev("$1", ALICE, "one")], "start": "t3"})
    assert [e.body for e in room.events()] == ["one", "two", "three"]
    assert room.oldest_gap() is None


def test_edits_show_the_latest_version_from_the_original_sender() -> None:
    model = loaded()

    def edit(event_id: str, sender: str, body: str, ts: int) -> dict:
        return ev(event_id, sender, ts=ts, content={
            "msgtype": "m.text", "body": f"* {body}", "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$g1"}})

    model.apply_sync(sync("s2", join={GENERAL: joined([
        edit("$e2", ALICE, "Good morning, all", T0 + 200), edit("$e1", ALICE, "Morning", T0 + 100),
        edit("$e3", BOB, "hijacked", T0 + 300)])}))
    target = model.rooms[GENERAL].event("$g1")
    assert target is not None and target.edited and target.body == "Good morning, all"
    assert len(model.rooms[GENERAL].events()) == 6  # edits are not timeline entries


def test_edit_seen_before_its_target_applies_when_the_target_arrives() -> None:
    model = ClientState(ME)
    edit = ev("$e", ALICE, content={"msgtype": "m.text", "body": "* fixed", "m.new_content": {"body": "fixed"},
                                    "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}}, ts=T0 + 5)
    model.apply_sync(sync("s1", join={"!r:x": joined([edit], limited=True, prev_batch="p")}))
    room = model.rooms["!r:x"]
    model.apply_messages("!r:x", room.oldest_gap(), {"chunk": [ev("$orig", ALICE, "fxied")], "start": "p"})
    assert room.event("$orig").body == "fixed"


def test_redactions_delete_messages_reactions_and_edits() -> None:
    model = loaded()
    react = ev("$re", BOB, type="m.reaction", content={
        "m.relates_to": {"rel_type": "m.annotation", "event_id": "$g1", "key": "👍"}})
    edit = ev("$ed", ALICE, content={"body": "* x", "m.new_content": {"body": "edited"},
                                     "m.relates_to": {"rel_type": "m.replace", "event_id": "$g1"}})
    model.apply_sync(sync("s2", join={GENERAL: joined([react, edit])}))
    target = model.rooms[GENERAL].event("$g1")
    assert target.reactions == {"👍": {BOB: "$re"}} and target.body == "edited"
    model.apply_sync(sync("s3", join={GENERAL: joined([
        ev("$x1", BOB, type="m.room.redaction", content={"redacts": "$re"}),
        ev("$x2", ALICE, type="m.room.redaction", content={}, redacts="$ed")])}))
    assert target.reactions == {} and target.body == "Good morning everyone" and not target.edited
    model.apply_sync(sync("s4", join={GENERAL: joined([ev("$x3", ALICE, type="m.room.redaction",
                                                         content={"redacts": "$g1"})])}))
    assert target.redacted and target.body == "" and target.content == {}


def test_reactions_are_aggregated_by_key() -> None:
    model = loaded()

    def react(event_id: str, sender: str, key: str) -> dict:
        return ev(event_id, sender, type="m.reaction",
                  content={"m.relates_to": {"rel_type": "m.annotation", "event_id": "$g2", "key": key}})

    model.apply_sync(sync("s2", join={GENERAL: joined([
        react("$a", ALICE, "👍"), react("$b", ME, "👍"), react("$c", ALICE, "🎉"), react("$a", ALICE, "👍")])}))
    reactions = model.rooms[GENERAL].event("$g2").reactions
    assert {key: sorted(senders) for key, senders in reactions.items()} == {"👍": [ALICE, ME], "🎉": [ALICE]}


def test_replies_resolve_and_drop_the_fallback() -> None:
    model = loaded()
    reply = ev("$rp", BOB, content={
        "msgtype": "m.text", "body": "> <@alice:example.org> Good morning everyone\n\nMorning!",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$g1"}}})
    model.apply_sync(sync("s2", join={GENERAL: joined([reply])}))
    room = model.rooms[GENERAL]
    item = room.event("$rp")
    assert item.reply_to == "$g1" and item.body == "Morning!"
    assert room.event(item.reply_to).body == "Good morning everyone"


def test_membership_changes_update_members_and_show_in_timeline() -> None:
    model = loaded()
    model.apply_sync(sync("s2", join={GENERAL: joined([
        member(BOB, "Bob", "leave", event_id="$bl"), member("@carol:x", "Carol", event_id="$cj")])}))
    room = model.rooms[GENERAL]
    assert room.members[BOB].membership == "leave"
    assert room.members["@carol:x"].displayname == "Carol"
    assert [e.event_id for e in room.events()][-2:] == ["$bl", "$cj"]


def test_topic_and_name_state_changes() -> None:
    model = loaded()
    model.apply_sync(sync("s2", join={GENERAL: joined([state("m.room.topic", {"topic": "new\x1b[31mtopic"}),
                                                       state("m.room.name", {"name": "Lobby"})])}))
    room = model.rooms[GENERAL]
    assert room.display_name(ME) == "Lobby"
    assert room.topic == "new[31mtopic"


def test_read_receipts_and_typing() -> None:
    model = loaded()
    model.apply_sync(sync("s2", join={GENERAL: joined([], ephemeral=[
        {"type": "m.receipt", "content": {"$g2": {"m.read": {ALICE: {"ts": 1}}}, "$g3": {"m.read": {BOB: {"ts": 2}}}}},
        {"type": "m.typing", "content": {"user_ids": [ALICE]}}])}))
    room = model.rooms[GENERAL]
    assert room.readers_of("$g2") == [ALICE] and room.readers_of("$g3") == [BOB]
    assert room.typing == [ALICE]
    model.apply_sync(sync("s3", join={GENERAL: joined([], ephemeral=[
        {"type": "m.receipt", "content": {"$g3": {"m.read": {ALICE: {"ts": 3}}}}},
        {"type": "m.typing", "content": {"user_ids": []}}])}))
    assert room.readers_of("$g3") == [ALICE, BOB] and room.readers_of("$g2") == [] and room.typing == []


def test_local_echo_reconciled_by_transaction_id() -> None:
    model = loaded()
    echo = model.add_local_echo(GENERAL, "txn1", "m.room.message", {"msgtype": "m.text", "body": "hi"}, T0 + 500)
    assert isinstance(echo, TimelineEvent) and echo.status is SendStatus.PENDING
    model.apply_sync(sync("s2", join={GENERAL: joined([
        ev("$other", ALICE, "meanwhile"),
        ev("$mine", ME, "hi", ts=T0 + 600, unsigned={"transaction_id": "txn1"})])}))
    room = model.rooms[GENERAL]
    assert bodies(model, GENERAL)[-2:] == ["meanwhile", "hi"]
    assert echo.event_id == "$mine" and echo.status is SendStatus.SENT and echo.origin_server_ts == T0 + 600
    assert sum(1 for e in room.events() if e.body == "hi") == 1


def test_local_echo_reconciled_by_send_response_then_sync() -> None:
    model = loaded()
    model.add_local_echo(GENERAL, "txn2", "m.room.message", {"msgtype": "m.text", "body": "yo"}, T0)
    model.mark_sent(GENERAL, "txn2", "$yo")
    model.apply_sync(sync("s2", join={GENERAL: joined([ev("$yo", ME, "yo")])}))
    assert bodies(model, GENERAL).count("yo") == 1
    model.add_local_echo(GENERAL, "txn3", "m.room.message", {"body": "lost"}, T0)
    model.mark_failed(GENERAL, "txn3")
    assert model.rooms[GENERAL].events()[-1].status is SendStatus.FAILED


def test_last_own_message_for_up_to_edit() -> None:
    model = loaded()
    last = model.last_own_message(GENERAL)
    assert last is not None and last.event_id == "$g3"
    assert model.last_own_message(DM) is None


def test_escape_sequences_and_controls_are_stripped() -> None:
    model = ClientState(ME)
    model.apply_sync(sync("s1", join={"!r:x": joined([
        member(ALICE, "Ev\x1b]0;pwned\x07il\u202e"), ev("$1", ALICE, "red \x1b[31malert\x9b2J\x00 done\tok")],
        state_events=[state("m.room.name", {"name": "Room\x1b[2J\r\nName"})])}))
    room = model.rooms["!r:x"]
    assert room.events()[-1].body == "red [31malert2J done    ok"
    assert room.member_name(ALICE) == "Ev]0;pwnedil"
    assert room.display_name(ME) == "Room[2J Name"
    assert all("\x1b" not in s for s in (room.events()[-1].body, room.member_name(ALICE), room.display_name(ME)))


def test_notifications_only_for_incremental_messages_from_others() -> None:
    model = ClientState(ME)
    first = model.apply_sync(initial_sync())
    assert first.notifications == []
    update = model.apply_sync(sync("s2", join={
        GENERAL: joined([ev("$n1", ALICE, "hello me, are you there?"), ev("$n2", ME, "mine"),
                         ev("$n3", BOB, "plain")]),
        DM: joined([ev("$n4", ALICE, "psst")], unread=(2, 1))}))
    found = {(n.event_id, n.highlight, n.is_direct) for n in update.notifications}
    assert found == {("$n1", True, False), ("$n3", False, False), ("$n4", False, True)}


def test_leaving_removes_the_room_and_m_direct_updates_dm_flags() -> None:
    model = loaded()
    update = model.apply_sync(sync("s2", leave={"!random:example.org": {}},
                                   account_data=[{"type": "m.direct", "content": {BOB: [GENERAL]}}]))
    assert "!random:example.org" not in model.rooms and update.rooms_removed == {"!random:example.org"}
    assert model.rooms[GENERAL].is_direct and not model.rooms[DM].is_direct
    assert model.direct_room_with(BOB) == GENERAL
