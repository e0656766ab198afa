"""Rendering message content safely, and composer markdown to HTML."""

from __future__ import annotations

from tui_client.render import body_text, html_to_text, markdown_to_html, sender_colour


def styles_at(text, substring: str) -> list[str]:
    start = text.plain.index(substring)
    return [str(span.style) for span in text.spans if span.start <= start < span.end]


def test_formatting_maps_to_styles() -> None:
    text = html_to_text("<p>A <strong>bold</strong>, <em>it</em>, <code>x()</code> and <del>gone</del></p>")
    assert text.plain == "A bold, it, x() and gone"
    assert "bold" in styles_at(text, "bold")[0]
    assert "italic" in styles_at(text, "it,")[0]
    assert "strike" in styles_at(text, "gone")[0]
    assert styles_at(text, "x()")


def test_lists_quotes_links_and_code_blocks() -> None:
    text = html_to_text(
        '<ul><li>one</li><li>two</li></ul><ol start="3"><li>three</li></ol>'
        '<blockquote>wise words</blockquote><a href="https://parley.example/">site</a>'
        "<pre><code>def f():\n    return 1\n</code></pre>")
    assert text.plain.split("\n") == [
        "• one", "• two", "3. three", "▌ wise words", "site <https://parley.example/>", "def f():", "    return 1"]


def test_reply_fallback_and_scripts_are_dropped() -> None:
    text = html_to_text("<mx-reply><blockquote>old</blockquote></mx-reply>new<script>alert(1)</script>")
    assert text.plain == "new"


def test_no_escape_sequences_or_markup_survive() -> None:
    hostile = "<b>\x1b[2J\x1b]8;;http://evil\x07click\x1b]8;;\x07</b> [bold red]not markup[/] \x9b31m"
    text = body_text({"format": "org.matrix.custom.html", "formatted_body": hostile, "body": "x"})
    assert not any(ord(ch) < 32 and ch != "\n" or 0x7F <= ord(ch) <= 0x9F for ch in text.plain)
    assert "[bold red]not markup[/]" in text.plain
    plain = body_text({"body": "a\x1b[31mb\x07c\u202ed"})
    assert plain.plain == "a[31mbcd"


def test_body_falls_back_to_plain_when_html_is_empty_or_absent() -> None:
    assert body_text({"body": "plain"}).plain == "plain"
    assert body_text({"body": "fallback", "format": "org.matrix.custom.html", "formatted_body": "<p></p>"}).plain \
        == "fallback"


def test_markdown_to_html() -> None:
    assert markdown_to_html("just text") is None
    assert markdown_to_html("line one\nline two") is None
    assert markdown_to_html("a & b < c") is None
    assert markdown_to_html("**bold** and `code`") == "<strong>bold</strong> and <code>code</code>"
    assert markdown_to_html("<b>raw</b> *x*") == "&lt;b&gt;raw&lt;/b&gt; <em>x</em>"
    assert markdown_to_html("- a\n- b") == "<ul>\n<li>a</li>\n<li>b</li>\n</ul>"
    assert markdown_to_html("~~gone~~") == "<s>gone</s>"


def test_sender_colours_are_stable() -> None:
    assert sender_colour("@alice:example.org") == sender_colour("@alice:example.org")
    assert len({sender_colour(f"@user{i}:x") for i in range(40)}) > 3
