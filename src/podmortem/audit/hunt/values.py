"""Rule values made safe for a query language.

Rule files may be third-party (a SigmaHQ folder, an analyst's download), so every value is
treated as hostile. Strings are turned into RE2 patterns in which every character other than
ASCII letters and digits is escaped (``\\.``, ``\\x{..}``): the pattern holds no quote, no
pipe, no newline and no non-ASCII character in the clear, so each language then only has to
wrap it in its own literal syntax. Every query podmortem prints is printable ASCII.
"""

from __future__ import annotations

import re

from sigma.types import SigmaString, SpecialChars


class Unexpressible(ValueError):  # noqa: N818 - reads as the state of a rule in a language
    """The rule (or a part of it) cannot be written faithfully in the target language."""


# A plain value that every language can carry in an ordinary string literal unchanged.
PLAIN = re.compile(r"[A-Za-z0-9 ._:/@=+,-]*")
_ALNUM = re.compile(r"[A-Za-z0-9]")
_PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ ")


def re_char(c: str) -> str:
    """One character as an RE2 atom that matches it literally, in printable ASCII."""
    if _ALNUM.fullmatch(c):
        return c
    if c in _PUNCT:
        # RE2 (and Java, PCRE) read a backslash before any ASCII punctuation as that literal
        # character; the space is escaped as \x20 so a pattern never holds whitespace.
        return "\\x20" if c == " " else "\\" + c
    return "\\x{" + format(ord(c), "x") + "}"


def escape_re(text: str) -> str:
    return "".join(re_char(c) for c in text)


def sigma_regex(
    value: SigmaString, *, multi: str = ".*", single: str = ".", anchored: bool = True
) -> str:
    """A Sigma string (``*`` and ``?`` wildcards) as an RE2 pattern body."""
    out = []
    for part in value.s:
        if part == SpecialChars.WILDCARD_MULTI:
            out.append(multi)
        elif part == SpecialChars.WILDCARD_SINGLE:
            out.append(single)
        elif isinstance(part, str):
            out.append(escape_re(part))
        else:
            raise Unexpressible("the value holds a placeholder (no placeholder values are defined)")
    body = "".join(out)
    return f"^{body}$" if anchored else body


def plain_text(value: SigmaString) -> str | None:
    """The value when it has no wildcard and only characters safe in any literal."""
    if value.contains_special() or value.contains_placeholder():
        return None
    text = str(value.s[0]) if value.s else ""
    return text if PLAIN.fullmatch(text) else None


def _needs_hex(c: str) -> bool:
    return not (" " < c <= "~")


def user_regex(pattern: str, *, flags: str = "") -> str:
    """A rule author's regular expression, re-encoded in printable ASCII without spaces.
    Only characters outside that set are rewritten (as ``\\x{..}``, which RE2 reads as the
    same literal character, also after a backslash); the pattern's syntax is left as written."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 == len(pattern):
                raise Unexpressible("the regular expression ends with a lone backslash")
            nxt = pattern[i + 1]
            out.append("\\x{" + format(ord(nxt), "x") + "}" if _needs_hex(nxt) else c + nxt)
            i += 2
            continue
        out.append("\\x{" + format(ord(c), "x") + "}" if _needs_hex(c) else c)
        i += 1
    prefix = f"(?{flags})" if flags else ""
    return prefix + "".join(out)


def escape_delimiter(regex: str, delim: str) -> str:
    """``delim`` (e.g. ``/`` of a ``/regex/`` literal) escaped wherever the regex has it
    unescaped; an escaped one stays as it is."""
    out = []
    i = 0
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            if i + 1 == len(regex):
                raise Unexpressible("the regular expression ends with a lone backslash")
            out.append(regex[i : i + 2])
            i += 2
            continue
        out.append("\\" + c if c == delim else c)
        i += 1
    return "".join(out)
