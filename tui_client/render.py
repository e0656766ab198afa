"""Turning Matrix message content into Rich text, and composer markdown into HTML.

Display side: ``formatted_body`` HTML is parsed with the stdlib :mod:`html.parser` into a
:class:`rich.text.Text` built span by span. Nothing from the message is ever interpreted
as Rich markup or passed to the terminal raw: every character goes through
:func:`~tui_client.text.clean_text`, and only a fixed set of tags maps to styles.

Send side: the composer's markdown becomes ``org.matrix.custom.html`` with markdown-it-py
(raw HTML disabled, so typing ``<b>`` sends the characters, not a tag).
"""

from __future__ import annotations

import zlib
from html import unescape
from html.parser import HTMLParser
from typing import Any

from markdown_it import MarkdownIt
from rich.style import Style
from rich.text import Text

from .text import clean_text

#: Sender colours: readable on dark and light backgrounds, picked by a stable hash.
SENDER_COLOURS = (
    "#e06c75", "#98c379", "#e5c07b", "#61afef", "#c678dd", "#56b6c2", "#d19a66", "#be5046",
)

_INLINE_STYLES: dict[str, Style] = {
    "b": Style(bold=True), "strong": Style(bold=True),
    "i": Style(italic=True), "em": Style(italic=True),
    "u": Style(underline=True), "ins": Style(underline=True),
    "s": Style(strike=True), "del": Style(strike=True), "strike": Style(strike=True),
    "code": Style(color="#e5c07b", bgcolor="grey15"),
    "h1": Style(bold=True, underline=True), "h2": Style(bold=True), "h3": Style(bold=True),
    "h4": Style(bold=True), "h5": Style(bold=True), "h6": Style(bold=True),
    "sup": Style(dim=True), "sub": Style(dim=True),
}
_BLOCK_TAGS = frozenset({"p", "div", "pre", "blockquote", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                         "table", "tr", "hr", "details", "summary"})
_SKIP_CONTENT = frozenset({"mx-reply", "script", "style", "head", "title"})
_VOID = frozenset({"br", "hr", "img"})


def sender_colour(user_id: str) -> str:
    """A colour for a user id that is the same in every run and on every machine."""
    return SENDER_COLOURS[zlib.crc32(user_id.encode("utf-8")) % len(SENDER_COLOURS)]


class _HtmlToText(HTMLParser):
    """Builds Rich text from Matrix's HTML subset; anything unknown keeps only its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = Text()
        self._styles: list[tuple[str, Style]] = []
        self._skip_depth = 0
        self._lists: list[list[Any]] = []  # [ordered?, next number]
        self._quote_depth = 0
        self._pre_depth = 0
        self._links: list[tuple[str, int]] = []  # (href, start offset)
        self._at_line_start = True

    # -- output helpers --
    def _style(self) -> Style:
        style = Style()
        for _, part in self._styles:
            style += part
        return style

    def _newline(self) -> None:
        if self.text.plain and not self.text.plain.endswith("\n"):
            self.text.append("\n")
        self._at_line_start = True

    def _emit(self, content: str) -> None:
        content = clean_text(content)
        if not content:
            return
        if not self._pre_depth:
            content = " ".join(content.split("\n"))
            if self._at_line_start:
                content = content.lstrip(" ")
                if not content:
                    return
        lines = content.split("\n")
        for index, line in enumerate(lines):
            if index:
                self.text.append("\n")
                self._at_line_start = True
            if self._at_line_start and self._quote_depth and (line or index < len(lines) - 1):
                self.text.append("▌ " * self._quote_depth, style="dim")
            if line:
                self.text.append(line, style=self._style())
                self._at_line_start = False

    # -- parser callbacks --
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_CONTENT:
            self._skip_depth += 1
            return
        if self._skip_depth:
            return
        attributes = {key: value or "" for key, value in attrs}
        if tag in _BLOCK_TAGS:
            self._newline()
        if tag == "br":
            self.text.append("\n")
            self._at_line_start = True
        elif tag == "hr":
            self.text.append("─" * 20 + "\n", style="dim")
        elif tag in ("ul", "ol"):
            start = attributes.get("start", "1")
            self._lists.append([tag == "ol", int(start) if start.isdigit() else 1])
        elif tag == "li":
            indent = "  " * max(len(self._lists) - 1, 0)
            if self._lists and self._lists[-1][0]:
                marker = f"{self._lists[-1][1]}. "
                self._lists[-1][1] += 1
            else:
                marker = "• "
            if self._quote_depth:
                self.text.append("▌ " * self._quote_depth, style="dim")
            self.text.append(indent + marker)
            self._at_line_start = False
        elif tag == "blockquote":
            self._quote_depth += 1
        elif tag == "pre":
            self._pre_depth += 1
            self._styles.append((tag, _INLINE_STYLES["code"]))
        elif tag == "a":
            self._links.append((clean_text(attributes.get("href", ""), single_line=True), len(self.text.plain)))
            self._styles.append((tag, Style(underline=True, color="#61afef")))
        elif tag == "img":
            alt = attributes.get("alt") or attributes.get("title") or "image"
            self._emit(f"[{alt}]")
        elif tag == "span" and "data-mx-spoiler" in attributes:
            self._styles.append((tag, Style(reverse=True, dim=True)))
        elif tag in _INLINE_STYLES:
            self._styles.append((tag, _INLINE_STYLES[tag]))
        else:
            self._styles.append((tag, Style()))  # keeps end tags balanced

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_CONTENT:
            self._skip_depth = max(self._skip_depth - 1, 0)
            return
        if self._skip_depth or tag in _VOID:
            return
        if tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
        elif tag == "blockquote":
            self._quote_depth = max(self._quote_depth - 1, 0)
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            shown = self.text.plain[start:]
            if href and href != shown and not href.startswith("https://matrix.to/"):
                self.text.append(f" <{href}>", style="dim")
            self._at_line_start = False
        if tag == "pre":
            self._pre_depth = max(self._pre_depth - 1, 0)
        # Pop the matching style (tolerating mis-nested HTML).
        for index in range(len(self._styles) - 1, -1, -1):
            if self._styles[index][0] == tag:
                del self._styles[index]
                break
        if tag in _BLOCK_TAGS and tag not in ("li",):
            self._newline()

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self._emit(data)


def html_to_text(html: str) -> Text:
    """Render Matrix ``formatted_body`` HTML as Rich text (safe: no markup, no escapes)."""
    parser = _HtmlToText()
    parser.feed(html)
    parser.close()
    text = parser.text
    text.rstrip()
    return text


def body_text(content: dict[str, Any]) -> Text:
    """The displayed text of a message's content: formatted if it is HTML, else plain."""
    if content.get("format") == "org.matrix.custom.html" and isinstance(content.get("formatted_body"), str):
        rendered = html_to_text(content["formatted_body"])
        if rendered.plain.strip():
            return rendered
    return Text(clean_text(content.get("body")).rstrip("\n"))


_MARKDOWN = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False}).enable("strikethrough")


def markdown_to_html(source: str) -> str | None:
    """Composer markdown to ``formatted_body`` HTML, or None when it is plain text anyway."""
    html = _MARKDOWN.render(source).strip()
    if html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1:
        inner = html[3:-4]
        if "<" not in inner.replace("<br />", "") and unescape(inner.replace("<br />\n", "\n")) == source.strip():
            return None
        html = inner
    return html
