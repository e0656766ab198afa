"""Placeholder: replaced by the full identifier grammar module (core-a branch)."""

from __future__ import annotations

import re

_LOCALPART = re.compile(r"^[a-z0-9._=\-/+]+$")


def parse_user_id(s: str) -> tuple[str, str]:
    if not s.startswith("@") or ":" not in s:
        raise ValueError(f"invalid user ID {s!r}")
    local, _, server = s[1:].partition(":")
    if not local or not server:
        raise ValueError(f"invalid user ID {s!r}")
    return local, server


def is_valid_localpart(s: str) -> bool:
    return bool(_LOCALPART.match(s))


def is_valid_user_id(s: str, *, historical: bool = True) -> bool:
    try:
        parse_user_id(s)
    except ValueError:
        return False
    return len(s.encode()) <= 255
