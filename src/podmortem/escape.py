"""Escaping for text that came from evidence. Evidence is written by attackers: a container
name, a command line or a log line can carry terminal escape sequences, Rich markup or HTML.
Everything shown to a person passes through one of these functions."""

from __future__ import annotations

import html
import re

from rich.markup import escape as _rich_escape

# C0 controls (except tab), DEL, and C1 controls: the bytes a terminal acts on.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _visible(m: re.Match[str]) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def for_terminal(text: object, limit: int = 4096) -> str:
    """Make text safe to print: controls and bidi overrides become visible escapes, Rich
    markup is neutralised, and overly long values are cut with a marker."""
    s = str(text)
    if len(s) > limit:
        s = s[:limit] + f"...[{len(s) - limit} more chars]"
    return _rich_escape(_CONTROL.sub(_visible, s))


def for_plain(text: object, limit: int = 4096) -> str:
    """Like :func:`for_terminal` but without Rich markup escaping (plain ``print``/logs)."""
    s = str(text)
    if len(s) > limit:
        s = s[:limit] + f"...[{len(s) - limit} more chars]"
    return _CONTROL.sub(_visible, s)


def for_html(text: object, limit: int = 65536) -> str:
    return html.escape(for_plain(text, limit), quote=True)
