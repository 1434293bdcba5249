"""Strings from evidence cannot drive a terminal or a page."""

from __future__ import annotations

from podmortem.escape import for_html, for_plain, for_terminal

HOSTILE = "pod\x1b]0;owned\x07\x1b[2J<script>alert(1)</script>[bold red]x[/]\u202eexe.sh\r\n"


def test_terminal_escapes_controls_markup_and_bidi() -> None:
    out = for_terminal(HOSTILE)
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\n" not in out
    assert "\u202e" not in out
    assert "\\x1b" in out and "\\u202e" in out
    assert "\\[bold red]" in out  # Rich markup neutralised


def test_html_escapes_tags_and_controls() -> None:
    out = for_html(HOSTILE)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "\x1b" not in out


def test_long_values_are_cut_with_a_marker() -> None:
    out = for_plain("A" * 10_000, limit=100)
    assert out.startswith("A" * 100) and out.endswith("...[9900 more chars]")


def test_tab_is_kept_and_plain_text_is_unchanged() -> None:
    assert for_plain("a\tb c/d") == "a\tb c/d"
