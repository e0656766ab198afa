"""Admin API for media: POST /_parley/admin/v1/media/quarantine (server admins only).

Body: exactly one of `media_id` (an ID or mxc:// URI of this server, or a list of them),
`user_id` or `room_id`; optional `"quarantine": false` releases instead.
Answer: `{"num_quarantined": n}` (media IDs whose state changed).
"""

from __future__ import annotations

from typing import Any

from homeserver import errors
from homeserver.api.http import MultiPrefixBlueprint, authenticated, hs, json_body
from homeserver.services.auth import Requester

admin = MultiPrefixBlueprint("admin_media", ["/_parley/admin/v1"])


@admin.route("/media/quarantine", methods=["POST"])
@authenticated
async def quarantine(who: Requester) -> Any:
    if not who.is_admin:
        raise errors.forbidden("You are not a server admin")
    body = await json_body(allow_empty=False)
    selectors = [k for k in ("media_id", "user_id", "room_id") if k in body]
    if len(selectors) != 1:
        raise errors.bad_json("Give exactly one of 'media_id', 'user_id' or 'room_id'")
    media_ids = body.get("media_id")
    if isinstance(media_ids, str):
        media_ids = [media_ids]
    if media_ids is not None and not (
        isinstance(media_ids, list) and media_ids and all(isinstance(m, str) for m in media_ids)
    ):
        raise errors.bad_json("'media_id' must be a string or a non-empty list of strings")
    for key in ("user_id", "room_id"):
        if key in body and not isinstance(body[key], str):
            raise errors.bad_json(f"'{key}' must be a string")
    flag = body.get("quarantine", True)
    if not isinstance(flag, bool):
        raise errors.bad_json("'quarantine' must be a boolean")
    count = await hs().media.quarantine(
        by=who.user_id,
        media_ids=media_ids,
        user_id=body.get("user_id"),
        room_id=body.get("room_id"),
        quarantine=flag,
    )
    return {"num_quarantined": count}
