"""How model objects look: timeline entries and room-list rows as Rich text.

Pure functions of the model (no Textual), so what a message looks like is decided in
one place and can be tested without a screen. Every string from the network goes
through :func:`~tui_client.text.clean_text` or :mod:`tui_client.render` first.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from rich.text import Text

from .model import Gap, Member, Notification, Presence, Room, SendStatus, TimelineEntry, TimelineEvent
from .render import body_text, sender_colour
from .text import clean_text, human_size

INDENT = "      "  # under "HH:MM "
MEDIA_ICONS = {"m.image": "🖼", "m.file": "📎", "m.video": "🎞", "m.audio": "🔊"}


def when(ts: int, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(ts / 1000, tz)


def day_label(ts: int, tz: tzinfo | None) -> Text:
    """A day separator line, e.g. ``── Monday 3 March 2025 ──``."""
    moment = when(ts, tz)
    return Text(f"── {moment:%A} {moment.day} {moment:%B %Y} ──", style="dim", justify="center")


def gap_label() -> Text:
    return Text("↑ earlier messages — select to load", style="dim italic", justify="center")


def sender_text(room: Room, user_id: str) -> Text:
    return Text(room.member_name(user_id), style=f"bold {sender_colour(user_id)}")


def event_text(room: Room, item: TimelineEvent, own_user_id: str, tz: tzinfo | None) -> Text | None:
    """One timeline entry as text, or None for events not worth a line (most state)."""
    body = _event_body(room, item)
    if body is None:
        return None
    line = Text(f"{when(item.origin_server_ts, tz):%H:%M} ", style="dim")
    if item.reply_to is not None and not item.redacted:
        line.append_text(_reply_quote(room, item.reply_to))
        line.append("\n" + INDENT)
    line.append_text(body)
    if item.edited:
        line.append(" (edited)", style="dim")
    if item.status is SendStatus.PENDING:
        line.append(" (sending…)", style="dim italic")
    elif item.status is SendStatus.FAILED:
        line.append(" ⚠ not sent", style="bold red")
    if item.reactions:
        line.append("\n" + INDENT)
        for index, (key, senders) in enumerate(sorted(item.reactions.items(), key=lambda kv: (-len(kv[1]), kv[0]))):
            if index:
                line.append("  ")
            mine = own_user_id in senders
            line.append(f"{clean_text(key, single_line=True)[:16]} {len(senders)}",
                        style="reverse" if mine else "")
    readers = [u for u in room.readers_of(item.event_id or "") if u not in (own_user_id, item.sender)]
    if readers:
        names = ", ".join(room.member_name(u) for u in readers[:3])
        more = f" and {len(readers) - 3} more" if len(readers) > 3 else ""
        line.append(f"\n{INDENT}seen by {names}{more}", style="dim")
    return line


def _indent_continuations(text: Text) -> Text:
    """Indent the second and later lines of a body under the message start."""
    lines = text.split("\n", allow_blank=True)
    if len(lines) <= 1:
        return text
    result = Text()
    for index, part in enumerate(lines):
        if index:
            result.append("\n" + INDENT)
        result.append_text(part)
    return result


def _reply_quote(room: Room, event_id: str) -> Text:
    quoted = room.event(event_id)
    if quoted is None:
        return Text("↳ in reply to an earlier message", style="dim italic")
    first_line = quoted.body.split("\n", 1)[0] if not quoted.redacted else "message deleted"
    if len(first_line) > 60:
        first_line = first_line[:59] + "…"
    text = Text("↳ ", style="dim")
    text.append(room.member_name(quoted.sender), style=f"dim {sender_colour(quoted.sender)}")
    text.append(f": {first_line}", style="dim italic")
    return text


def _event_body(room: Room, item: TimelineEvent) -> Text | None:
    name = sender_text(room, item.sender)
    if item.type in ("m.room.message", "m.sticker"):
        if item.redacted:
            return name + Text(" 🗑 message deleted", style="dim italic")
        content = item.content
        msgtype = item.msgtype if item.type == "m.room.message" else "m.image"
        if msgtype in MEDIA_ICONS:
            return name + Text(" ") + media_placeholder(content, msgtype)
        if msgtype == "m.emote":
            return Text("* ", style="bold") + name + Text(" ") + _indent_continuations(_plain_or_html(item))
        body = _plain_or_html(item)
        if msgtype == "m.notice":
            body.stylize("dim")
        return name + Text(" ") + _indent_continuations(body)
    if item.type == "m.room.encrypted":
        return name + Text(" 🔒 encrypted message (not supported yet)", style="dim italic")
    if item.redacted:
        return None
    if item.type == "m.room.member" and item.state_key is not None:
        return membership_text(room, item)
    content = item.content
    if item.type == "m.room.topic":
        return name + Text(" changed the topic to: ", style="dim") + Text(
            clean_text(content.get("topic"), single_line=True), style="italic")
    if item.type == "m.room.name":
        return name + Text(" renamed the room to ", style="dim") + Text(
            clean_text(content.get("name"), single_line=True), style="bold")
    if item.type == "m.room.create":
        return name + Text(" created the room", style="dim")
    return None


def _plain_or_html(item: TimelineEvent) -> Text:
    content = item.content
    # A reply's fallback quote is in both bodies; body_text drops <mx-reply>, and for
    # plain bodies the model's stripped body is the one to show.
    if item.reply_to is not None and not item.edited and content.get("format") != "org.matrix.custom.html":
        return Text(item.body)
    return body_text(content)


def media_placeholder(content: dict, msgtype: str) -> Text:
    """``🖼 cat.png (1.2 MiB, 800×600)`` for image/file/video/audio messages."""
    info: dict = content["info"] if isinstance(content.get("info"), dict) else {}
    filename = content.get("filename") if isinstance(content.get("filename"), str) else content.get("body")
    parts = [human_size(info.get("size"))]
    width, height = info.get("w"), info.get("h")
    if isinstance(width, int) and isinstance(height, int):
        parts.append(f"{width}×{height}")
    text = Text(f"{MEDIA_ICONS.get(msgtype, '📎')} ")
    text.append(clean_text(filename, single_line=True) or "attachment", style="underline")
    text.append(f" ({', '.join(parts)})", style="dim")
    return text


def membership_text(room: Room, item: TimelineEvent) -> Text:
    target = item.state_key or ""
    content, previous = item.content, item.prev_content or {}
    membership, before = content.get("membership"), previous.get("membership")
    actor = sender_text(room, item.sender)
    subject = Text(clean_text(content.get("displayname"), single_line=True) or
                   room.member_name(target), style=f"bold {sender_colour(target)}")
    dim = "dim"
    if membership == "join" and before == "join":
        old, new = previous.get("displayname"), content.get("displayname")
        if old != new:
            return Text("· ", style=dim) + Text(clean_text(old, single_line=True) or target) + Text(
                " is now ", style=dim) + subject
        return Text("· ", style=dim) + subject + Text(" updated their profile", style=dim)
    if membership == "join":
        return Text("→ ", style="green") + subject + Text(" joined", style=dim)
    if membership == "invite":
        return Text("· ", style=dim) + actor + Text(" invited ", style=dim) + subject
    if membership == "leave" and item.sender != target:
        verb = " withdrew the invite for " if before == "invite" else " removed " if before != "ban" else " unbanned "
        return Text("← ", style="red") + actor + Text(verb, style=dim) + subject
    if membership == "leave":
        return Text("← ", style="red") + subject + Text(" left" if before != "invite" else " declined", style=dim)
    if membership == "ban":
        return Text("⛔ ", style="red") + actor + Text(" banned ", style=dim) + subject
    if membership == "knock":
        return Text("· ", style=dim) + subject + Text(" asked to join", style=dim)
    return Text("· ", style=dim) + subject + Text(" changed membership", style=dim)


NEW_MESSAGES_ID = "new-messages"


def new_messages_label() -> Text:
    return Text("── new messages ──", style="bold red", justify="center")


def timeline_lines(room: Room, own_user_id: str, tz: tzinfo | None,
                   unread_after: str | None = None) -> list[tuple[str, Text, TimelineEntry | None]]:
    """The timeline as ``(option id, text, entry)`` rows, with day separators between days.

    With ``unread_after`` (the fully-read event id), a "new messages" line goes after
    that event when someone else's message follows it.
    """
    rows: list[tuple[str, Text, TimelineEntry | None]] = []
    last_day: str | None = None
    first_unread = room.first_unread(own_user_id, unread_after) if unread_after else None
    for index, entry in enumerate(room.timeline):
        if first_unread is not None and entry is first_unread:
            rows.append((NEW_MESSAGES_ID, new_messages_label(), None))
        if isinstance(entry, Gap):
            rows.append((f"gap-{index}", gap_label(), entry))
            continue
        text = event_text(room, entry, own_user_id, tz)
        if text is None:
            continue
        day = when(entry.origin_server_ts, tz).strftime("%Y-%m-%d")
        if day != last_day:
            rows.append((f"day-{day}-{index}", day_label(entry.origin_server_ts, tz), None))
            last_day = day
        rows.append((entry.event_id or f"txn-{entry.txn_id}", text, entry))
    return rows


def room_row(room: Room, own_user_id: str, width: int, selected: bool = False) -> Text:
    """A room-list line: name, then unread (and highlight) badges, fitted to ``width``."""
    badge = Text()
    if room.membership == "invite":
        badge.append(" invite", style="bold yellow")
    elif room.highlight_count:
        badge.append(f" @{room.highlight_count}", style="bold white on red")
    elif room.notification_count:
        badge.append(f" {room.notification_count}", style="bold")
    name = room.display_name(own_user_id)
    room_width = max(width - len(badge.plain) - 2, 4)
    if len(name) > room_width:
        name = name[: room_width - 1] + "…"
    marker = "✉ " if room.membership == "invite" else ("@ " if room.is_direct else "# ")
    unread = room.notification_count > 0 or room.membership == "invite"
    text = Text(marker, style="dim")
    text.append(name, style="bold" if unread else "")
    text.append(" " * max(width - 2 - len(name) - len(badge.plain), 1))
    text.append_text(badge)
    return text


def typing_text(room: Room, own_user_id: str) -> Text:
    names = [room.member_name(u) for u in room.typing if u != own_user_id]
    if not names:
        return Text("")
    if len(names) == 1:
        return Text(f"{names[0]} is typing…", style="dim italic")
    if len(names) <= 3:
        return Text(f"{', '.join(names[:-1])} and {names[-1]} are typing…", style="dim italic")
    return Text("Several people are typing…", style="dim italic")


PRESENCE_DOTS = {"online": ("●", "green"), "unavailable": ("●", "yellow"), "offline": ("○", "dim")}


def member_row(room: Room, member: Member, presence: Presence | None) -> Text:
    """A member-list line: presence dot, the name in the user's colour, and ``invited``."""
    dot, style = PRESENCE_DOTS.get(presence.presence if presence else "offline", ("○", "dim"))
    text = Text(f"{dot} ", style=style)
    text.append(room.member_name(member.user_id), style=sender_colour(member.user_id))
    if member.membership == "invite":
        text.append(" (invited)", style="dim italic")
    return text


def member_count_label(room: Room) -> Text:
    members = room.member_list()
    joined = sum(1 for m in members if m.membership == "join")
    invited = len(members) - joined
    label = f"{joined} member{'s' if joined != 1 else ''}"
    if invited:
        label += f", {invited} invited"
    return Text(label, style="bold dim")


def notification_text(room: Room, event: TimelineEvent | None, own_user_id: str) -> tuple[str, str]:
    """(title, body) of a desktop notification for a new message, cleaned and short."""
    room_name = room.display_name(own_user_id)
    if event is None:
        return room_name, "New message"
    sender = room.member_name(event.sender)
    title = sender if room.is_direct else f"{sender} in {room_name}"
    if event.msgtype in MEDIA_ICONS:
        body = f"sent {clean_text(event.content.get('body'), single_line=True) or 'a file'}"
    elif event.type == "m.room.encrypted":
        body = "encrypted message"
    else:
        body = clean_text(event.body, single_line=True)
    if len(body) > 200:
        body = body[:199] + "…"
    return title, body


def should_notify(notification: Notification, room_in_view: bool) -> bool:
    """Mentions and direct messages, in rooms the user is not looking at."""
    return not room_in_view and (notification.highlight or notification.is_direct)
