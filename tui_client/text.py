"""Sanitising text that comes from the network before it reaches the terminal.

Anything a remote user controls (bodies, names, topics, URLs) passes through
:func:`clean_text` so that no escape sequence or control character is ever written
to the terminal: C0 controls except newline, DEL, C1 controls, and the Unicode
bidirectional overrides that can make text display differently from what it is.
"""

from __future__ import annotations

import re

# C0 (minus \n and \t), DEL, C1, and bidi embedding/override/isolate controls.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def clean_text(text: object, *, single_line: bool = False) -> str:
    """Return ``text`` as a string safe to display: no control characters, tabs expanded.

    With ``single_line`` newlines become spaces (for names, room list entries, topics).
    Non-string input (servers and clients send odd JSON) is displayed as an empty string.
    """
    if not isinstance(text, str):
        return ""
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    text = _UNSAFE.sub("", text)
    if single_line:
        text = text.replace("\n", " ")
    return text


def human_size(size: object) -> str:
    """Format a byte count the way people read it: ``512 B``, ``1.5 KiB``, ``3.2 MiB``."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "unknown size"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
