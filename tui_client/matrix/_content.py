"""Building event content for messages, replies, edits and reactions (pure functions)."""

from __future__ import annotations

import html
from typing import Any

HTML_FORMAT = "org.matrix.custom.html"


def message_content(body: str, formatted_body: str | None = None, msgtype: str = "m.text") -> dict[str, Any]:
    """An ``m.room.message`` content, with HTML when there is formatting."""
    content: dict[str, Any] = {"msgtype": msgtype, "body": body}
    if formatted_body is not None:
        content["format"] = HTML_FORMAT
        content["formatted_body"] = formatted_body
    return content


def reply_content(
    content: dict[str, Any], *, room_id: str, event_id: str, sender: str, quoted_body: str
) -> dict[str, Any]:
    """Make ``content`` a reply: ``m.in_reply_to`` plus the quoted fallback older clients show."""
    quoted = "\n".join(f"> {line}" for line in (f"<{sender}> {quoted_body}").split("\n"))
    reply = dict(content)
    reply["body"] = f"{quoted}\n\n{content['body']}"
    own_html = content.get("formatted_body") or html.escape(content["body"]).replace("\n", "<br/>")
    reply["format"] = HTML_FORMAT
    reply["formatted_body"] = (
        f'<mx-reply><blockquote><a href="https://matrix.to/#/{room_id}/{event_id}">In reply to</a> '
        f'<a href="https://matrix.to/#/{sender}">{html.escape(sender)}</a><br/>'
        f"{html.escape(quoted_body)}</blockquote></mx-reply>{own_html}"
    )
    reply["m.relates_to"] = {"m.in_reply_to": {"event_id": event_id}}
    return reply


def edit_content(event_id: str, new_content: dict[str, Any]) -> dict[str, Any]:
    """An ``m.replace`` edit of ``event_id`` to ``new_content`` (with a ``* `` fallback)."""
    edit: dict[str, Any] = {key: value for key, value in new_content.items() if key != "m.relates_to"}
    edit["body"] = f"* {new_content.get('body', '')}"
    if "formatted_body" in new_content:
        edit["formatted_body"] = f"* {new_content['formatted_body']}"
    edit["m.new_content"] = {key: value for key, value in new_content.items() if key != "m.relates_to"}
    edit["m.relates_to"] = {"rel_type": "m.replace", "event_id": event_id}
    return edit


def reaction_content(event_id: str, key: str) -> dict[str, Any]:
    """An ``m.reaction`` annotating ``event_id`` with ``key`` (usually an emoji)."""
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
