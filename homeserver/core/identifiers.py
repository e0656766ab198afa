"""Validators and parsers for Matrix identifiers (appendices § Identifier Grammar)."""

from __future__ import annotations

import ipaddress
import re

from homeserver.core.room_versions import EventFormat, RoomVersion

__all__ = [
    "MAX_ID_LENGTH",
    "get_domain",
    "is_valid_event_id",
    "is_valid_localpart",
    "is_valid_mxc_uri",
    "is_valid_room_alias",
    "is_valid_room_id",
    "is_valid_server_name",
    "is_valid_user_id",
    "parse_mxc_uri",
    "parse_server_name",
    "parse_user_id",
]

# User IDs, room IDs, aliases and event IDs: at most 255 bytes of UTF-8,
# sigil and domain included.
MAX_ID_LENGTH = 255

_PORT_RE = re.compile(r"[0-9]{1,5}")
_IPV4_SHAPE_RE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_IPV6_CHARS_RE = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_DNS_NAME_RE = re.compile(r"[0-9A-Za-z\-.]{1,255}")
_STRICT_LOCALPART_RE = re.compile(r"[a-z0-9._=\-/+]+")
# A sha256 reference hash is 32 bytes: 43 characters of unpadded base64.
_STANDARD_HASH_RE = re.compile(r"[A-Za-z0-9+/]{43}")
_URLSAFE_HASH_RE = re.compile(r"[A-Za-z0-9\-_]{43}")
_MEDIA_ID_RE = re.compile(r"[A-Za-z0-9_\-]+")
# Historical localparts and opaque IDs: anything but ':' and NUL, and no lone
# surrogates (a Python str can hold them when JSON contained "\ud800").
_FORBIDDEN_OPAQUE_RE = re.compile("[:\x00\ud800-\udfff]")


def parse_server_name(s: str) -> tuple[str, int | None]:
    """Split a server name into ``(host, port)``; raise ``ValueError`` if it is not valid.

    ``host`` keeps the brackets of an IPv6 literal. The grammar is the spec's:
    a dotted-quad IPv4 literal must have each part in 0-255 (a four-number
    name is never read as a DNS name), an IPv6 literal must parse as one.
    """
    if not isinstance(s, str) or not s:
        raise ValueError("empty server name")
    port: int | None = None
    if s.startswith("["):
        end = s.find("]")
        if end == -1:
            raise ValueError("unterminated IPv6 literal")
        host, rest = s[: end + 1], s[end + 1 :]
        inner = host[1:-1]
        if _IPV6_CHARS_RE.fullmatch(inner) is None:
            raise ValueError("bad IPv6 literal")
        try:
            ipaddress.IPv6Address(inner)
        except ValueError as e:
            raise ValueError(f"bad IPv6 literal: {e}") from e
    else:
        host, sep, port_text = s.partition(":")
        rest = sep + port_text
        if _IPV4_SHAPE_RE.fullmatch(host):
            if any(int(part) > 255 for part in host.split(".")):
                raise ValueError("IPv4 literal out of range")
        elif _DNS_NAME_RE.fullmatch(host) is None:
            raise ValueError("bad host name")
    if rest:
        if not rest.startswith(":") or _PORT_RE.fullmatch(rest[1:]) is None:
            raise ValueError("bad port")
        port = int(rest[1:])
    return host, port


def is_valid_server_name(s: str) -> bool:
    try:
        parse_server_name(s)
    except ValueError:
        return False
    return True


def is_valid_localpart(s: str) -> bool:
    """The strict user ID localpart grammar (``a-z 0-9 . _ = - / +``), for new accounts."""
    return isinstance(s, str) and _STRICT_LOCALPART_RE.fullmatch(s) is not None


def _too_long(s: str) -> bool:
    # Cheap test first: a str of <= 63 characters is at most 252 bytes.
    return len(s) > MAX_ID_LENGTH // 4 and len(s.encode("utf-8", "surrogatepass")) > MAX_ID_LENGTH


def _split_sigil_id(s: str, sigil: str) -> tuple[str, str]:
    """``"&local:domain"`` -> ``(local, domain)``; raise ``ValueError`` on a bad shape."""
    if not isinstance(s, str) or not s.startswith(sigil):
        raise ValueError(f"identifier must start with {sigil!r}")
    if _too_long(s):
        raise ValueError("identifier longer than 255 bytes")
    local, sep, domain = s[1:].partition(":")
    if not sep:
        raise ValueError("identifier has no ':domain'")
    if not is_valid_server_name(domain):
        raise ValueError("identifier has an invalid server name")
    return local, domain


def parse_user_id(s: str, *, historical: bool = True) -> tuple[str, str]:
    """``"@alice:example.org"`` -> ``("alice", "example.org")``; raise ``ValueError`` if invalid.

    With ``historical`` (the default) localparts of the historical grammar are
    accepted, as they must be for events over federation: any code points but
    ``:`` and NUL, even the empty string. Without it, only the strict grammar.
    """
    local, domain = _split_sigil_id(s, "@")
    if historical:
        if _FORBIDDEN_OPAQUE_RE.search(local):
            raise ValueError("user ID localpart contains a forbidden character")
    elif not is_valid_localpart(local):
        raise ValueError("user ID localpart does not match the strict grammar")
    return local, domain


def is_valid_user_id(s: str, *, historical: bool = True) -> bool:
    try:
        parse_user_id(s, historical=historical)
    except ValueError:
        return False
    return True


def is_valid_room_id(s: str) -> bool:
    """``!opaque:domain`` (rooms v1-v11) or ``!<url-safe reference hash>`` (v12+)."""
    if not isinstance(s, str) or not s.startswith("!"):
        return False
    if ":" not in s:
        return _URLSAFE_HASH_RE.fullmatch(s, 1) is not None
    try:
        local, _ = _split_sigil_id(s, "!")
    except ValueError:
        return False
    return bool(local) and _FORBIDDEN_OPAQUE_RE.search(local) is None


def is_valid_room_alias(s: str) -> bool:
    """``#alias:domain``; the alias part may be any code points but ``:`` and NUL."""
    try:
        local, _ = _split_sigil_id(s, "#")
    except ValueError:
        return False
    return bool(local) and _FORBIDDEN_OPAQUE_RE.search(local) is None


def is_valid_event_id(s: str, room_version: RoomVersion | None = None) -> bool:
    """Whether ``s`` is an event ID; of the given room version's format, if one is given.

    ``$opaque:domain`` in rooms v1-v2, ``$`` + 43 characters of standard
    base64 in v3 and of URL-safe base64 from v4.
    """
    if not isinstance(s, str) or not s.startswith("$"):
        return False
    fmt = room_version.event_format if room_version is not None else None
    if fmt in (None, EventFormat.V1) and ":" in s:
        try:
            local, _ = _split_sigil_id(s, "$")
        except ValueError:
            return False
        return bool(local) and _FORBIDDEN_OPAQUE_RE.search(local) is None
    if fmt is None:
        return _STANDARD_HASH_RE.fullmatch(s, 1) is not None or _URLSAFE_HASH_RE.fullmatch(s, 1) is not None
    if fmt == EventFormat.V2:
        return _STANDARD_HASH_RE.fullmatch(s, 1) is not None
    if fmt == EventFormat.V3:
        return _URLSAFE_HASH_RE.fullmatch(s, 1) is not None
    return False


def parse_mxc_uri(s: str) -> tuple[str, str]:
    """``"mxc://server/media_id"`` -> ``(server, media_id)``; raise ``ValueError`` if invalid."""
    if not isinstance(s, str) or not s.startswith("mxc://"):
        raise ValueError("not an mxc:// URI")
    server, sep, media_id = s[len("mxc://") :].partition("/")
    if not sep or not is_valid_server_name(server):
        raise ValueError("mxc URI has an invalid server name")
    if _MEDIA_ID_RE.fullmatch(media_id) is None:
        raise ValueError("mxc URI has an invalid media ID")
    return server, media_id


def is_valid_mxc_uri(s: str) -> bool:
    try:
        parse_mxc_uri(s)
    except ValueError:
        return False
    return True


def get_domain(identifier: str) -> str | None:
    """The server name after the first ``:`` of a sigil identifier, or ``None`` if it has none.

    v12 room IDs and v3+ event IDs have no domain. The result is not validated.
    """
    if not identifier or identifier[0] not in "@!$#":
        return None
    _, sep, domain = identifier.partition(":")
    return domain if sep else None
