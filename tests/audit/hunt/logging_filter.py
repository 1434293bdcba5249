"""The Cloud Logging query language (the filter of ``gcloud logging read`` and the Logs
Explorer): a recursive-descent parser of its documented grammar and an evaluator of the parsed
filter over LogEntry JSON. A test helper, not podmortem code.

Grammar and meaning as documented in "Logging query language"
(cloud.google.com/logging/docs/view/logging-query-language):

* ``expression = ["NOT"] comparison { ("AND" | "OR") ["NOT"] comparison }``; ``NOT`` binds
  tightest, then ``OR``, then ``AND`` (``a OR NOT b AND NOT c OR d`` is
  ``(a OR (NOT b)) AND ((NOT c) OR d)``); ``AND`` may be omitted; ``-`` is ``NOT``; the
  operators are upper case (lower-case ``and`` is a search term); ``--`` starts a comment.
* comparison: ``FIELD OP VALUE`` with OP one of ``= != < <= > >= : =~ !~`` (``:*`` tests
  presence), a bare value (a global restriction), or a function (``log_id``, ``ip_in_net``,
  ``cast``, ``regexp_extract``, ``sample``, ``source``, ``SEARCH``). A VALUE may be a
  parenthesised combination of values, applied to the field one by one.
* field paths are dotted; a component with special characters is double-quoted
  (``labels."compute.googleapis.com/resource_id"``); strings are double-quoted with backslash
  escapes.
* evaluation: a missing field fails every comparison (so ``NOT missing=x`` is true and
  ``missing!=x`` false); a comparison on an array is the OR over its elements; string ``=``
  and ``:`` ignore case, regular expressions (RE2, a search, not a full match) do not.

The evaluator covers what podmortem's filters use (field comparisons, ``:*``, ``=~``,
``log_id``, ``ip_in_net``, RFC 3339 ``timestamp``); a global restriction or another function
parses but is refused by the evaluator. Regular expressions run in DuckDB, whose
``regexp_matches`` is RE2, the engine the documentation names.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import quote

import duckdb


class FilterSyntaxError(ValueError):
    """The text is not a query of the documented grammar."""


# ------------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|--[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*")
  | (?P<op>=~|!~|!=|<=|>=|=|<|>|:)
  | (?P<punct>[(),*])
  | (?P<word>[^\s"()=!<>:,~*]+)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


@dataclass(frozen=True, slots=True)
class Tok:
    kind: str  # string | op | punct | word | end
    text: str
    pos: int


def tokenize(text: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FilterSyntaxError(f"unexpected character {text[pos]!r} at {pos}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(Tok("end", "", len(text)))
    return out


def unquote(literal: str) -> str:
    body = literal[1:-1]
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            if i + 1 == len(body):
                raise FilterSyntaxError("string ends with a backslash")
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt.isdigit():  # octal, as in the documented bytes example "\377"
                m = re.match(r"[0-7]{1,3}", body[i + 1 :])
                assert m is not None
                out.append(chr(int(m.group(), 8)))
                i += 1 + len(m.group())
                continue
            raise FilterSyntaxError(f"unknown escape \\{nxt}")
        out.append(c)
        i += 1
    return "".join(out)


# ------------------------------------------------------------------------------- tree


@dataclass(frozen=True, slots=True)
class And:
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Or:
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Not:
    arg: Any


@dataclass(frozen=True, slots=True)
class Value:
    """A literal: ``quoted`` strings keep their text; bare words and numbers stay as text."""

    text: str
    quoted: bool


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Compare:
    left: tuple[str, ...] | Call  # a field path, or a function (cast(...) =~ "...")
    op: str
    right: Any  # Value, Call, "*" (for :*), or And/Or/Not over values


@dataclass(frozen=True, slots=True)
class Global:
    value: Value


_OPS = {"=", "!=", "<", "<=", ">", ">=", ":", "=~", "!~"}
_KEYWORDS = {"AND", "OR", "NOT"}


class Parser:
    def __init__(self, text: str) -> None:
        self.toks = tokenize(text)
        self.i = 0

    def peek(self, k: int = 0) -> Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, kind: str, text: str | None = None) -> Tok:
        t = self.take()
        if t.kind != kind or (text is not None and t.text != text):
            raise FilterSyntaxError(f"expected {text or kind} at {t.pos}, found {t.text!r}")
        return t

    def parse(self) -> Any:
        if self.peek().kind == "end":
            return And(())
        tree = self.and_expr(inside=False)
        if self.peek().kind != "end":
            raise FilterSyntaxError(f"unexpected {self.peek().text!r} at {self.peek().pos}")
        return tree

    def _starts_term(self) -> bool:
        t = self.peek()
        if t.kind in ("string", "word"):
            return t.text not in ("AND", "OR")
        return t.kind == "punct" and t.text == "("

    def and_expr(self, *, inside: bool, values: bool = False) -> Any:
        args = [self.or_expr(values)]
        while True:
            t = self.peek()
            if t.kind == "word" and t.text == "AND":
                self.take()
                args.append(self.or_expr(values))
            elif self._starts_term():  # AND may be omitted
                args.append(self.or_expr(values))
            else:
                break
        return args[0] if len(args) == 1 else And(tuple(args))

    def or_expr(self, values: bool) -> Any:
        args = [self.unary(values)]
        while self.peek().kind == "word" and self.peek().text == "OR":
            self.take()
            args.append(self.unary(values))
        return args[0] if len(args) == 1 else Or(tuple(args))

    def unary(self, values: bool) -> Any:
        t = self.peek()
        if t.kind == "word" and t.text == "NOT":
            self.take()
            return Not(self.unary(values))
        if t.kind == "word" and t.text.startswith("-") and len(t.text) > 1:
            # `-e="f"`: the minus is NOT; split it from the word
            self.toks[self.i] = Tok("word", t.text[1:], t.pos + 1)
            return Not(self.unary(values))
        return self.primary(values)

    def primary(self, values: bool) -> Any:
        t = self.peek()
        if t.kind == "punct" and t.text == "(":
            self.take()
            inner = self.and_expr(inside=True, values=values)
            self.expect("punct", ")")
            return inner
        if t.kind == "end" or (t.kind == "word" and t.text in _KEYWORDS):
            raise FilterSyntaxError(f"missing comparison at {t.pos}")
        if values:
            return self.value()
        if t.kind == "word" and self.peek(1).kind == "punct" and self.peek(1).text == "(":
            call = self.call()
            if self.peek().kind == "op":
                return self.comparison(call)
            return call
        if t.kind in ("word", "string"):
            save = self.i
            path = self.path()
            if self.peek().kind == "op":
                return self.comparison(path)
            self.i = save
            return Global(self.value())
        raise FilterSyntaxError(f"unexpected {t.text!r} at {t.pos}")

    def path(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            t = self.take()
            if t.kind == "string":
                parts.append(unquote(t.text))
                nxt = self.peek()
                if nxt.kind == "word" and nxt.text.startswith("."):
                    # `labels."a.b".c`: the word after a quoted segment starts with the dot
                    rest = nxt.text[1:]
                    self.take()
                    if not rest:
                        continue
                    parts.extend(p for p in rest.split(".") if p)
                    if rest.endswith("."):
                        continue
                break
            if t.kind != "word" or t.text in _KEYWORDS:
                raise FilterSyntaxError(f"expected a field at {t.pos}, found {t.text!r}")
            segs = t.text.split(".")
            if any(not s for s in segs[:-1]):
                raise FilterSyntaxError(f"empty field path component at {t.pos}")
            parts.extend(s for s in segs if s)
            if not t.text.endswith("."):
                break
            nxt = self.peek()
            if nxt.kind != "string":
                raise FilterSyntaxError(f"field path ends with '.' at {t.pos}")
        return tuple(parts)

    def comparison(self, left: tuple[str, ...] | Call) -> Compare:
        op = self.take()
        if op.text not in _OPS:
            raise FilterSyntaxError(f"unknown operator {op.text!r}")
        t = self.peek()
        if op.text == ":" and t.kind == "punct" and t.text == "*":
            self.take()
            return Compare(left, ":", "*")
        if t.kind == "punct" and t.text == "(":
            self.take()
            right = self.and_expr(inside=True, values=True)
            self.expect("punct", ")")
            return Compare(left, op.text, right)
        return Compare(left, op.text, self.value())

    def value(self) -> Value | Call:
        t = self.peek()
        if t.kind == "word" and self.peek(1).kind == "punct" and self.peek(1).text == "(":
            return self.call()
        t = self.take()
        if t.kind == "string":
            return Value(unquote(t.text), True)
        if t.kind == "word" and t.text not in _KEYWORDS:
            return Value(t.text, False)
        raise FilterSyntaxError(f"expected a value at {t.pos}, found {t.text!r}")

    def call(self) -> Call:
        name = self.expect("word").text
        self.expect("punct", "(")
        args: list[Any] = []
        if not (self.peek().kind == "punct" and self.peek().text == ")"):
            while True:
                args.append(self.argument())
                if self.peek().kind == "punct" and self.peek().text == ",":
                    self.take()
                    continue
                break
        self.expect("punct", ")")
        return Call(name, tuple(args))

    def argument(self) -> Any:
        t = self.peek()
        if t.kind == "punct" and t.text == "(":
            self.take()
            inner = self.and_expr(inside=True)
            self.expect("punct", ")")
            return inner
        if t.kind == "word" and self.peek(1).kind == "punct" and self.peek(1).text == "(":
            return self.call()
        if t.kind == "string":
            self.take()
            return Value(unquote(t.text), True)
        if t.kind == "word":
            self.take()
            return Value(t.text, False)  # a field name or a bare constant (STRING, 0.25)
        raise FilterSyntaxError(f"bad function argument at {t.pos}")


def parse(text: str) -> Any:
    return Parser(text).parse()


# ------------------------------------------------------------------------------- evaluation

_MISSING = object()


@cache
def _re2() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


@cache
def re2_search(pattern: str, text: str) -> bool:
    """RE2 search (DuckDB's regexp_matches is RE2 and finds a match anywhere)."""
    row = _re2().execute("SELECT regexp_matches(?, ?)", [text, pattern]).fetchone()
    assert row is not None
    return bool(row[0])


def _values(entry: Any, path: tuple[str, ...]) -> list[Any]:
    """Every value at ``path``: arrays on the way fan out (a comparison is ORed over them)."""
    current = [entry]
    for seg in path:
        nxt: list[Any] = []
        for node in current:
            items = node if isinstance(node, list) else [node]
            for item in items:
                if isinstance(item, dict) and seg in item and item[seg] is not None:
                    nxt.append(item[seg])
        current = nxt
    out: list[Any] = []
    for v in current:
        out += v if isinstance(v, list) else [v]
    return out


def _as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        import json

        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _fold(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKC", text).casefold()


def _compare_one(v: Any, op: str, lit: Value, path: tuple[str, ...]) -> bool:
    if op in ("=~", "!~"):
        hit = re2_search(lit.text, _as_text(v))
        return hit if op == "=~" else not hit
    if path == ("timestamp",) or path[-1:] == ("receiveTimestamp",):
        a = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
        b = datetime.fromisoformat(lit.text.replace("Z", "+00:00"))
        return _ordered(a, op, b)
    if isinstance(v, bool):
        if lit.text.lower() not in ("true", "false"):
            return False
        return _ordered(v, op, lit.text.lower() == "true")
    if isinstance(v, int | float):
        try:
            n = float(lit.text)
        except ValueError:
            return False  # "If an attempted conversion fails, then the comparison fails."
        return _ordered(float(v), op, n)
    a, b = _fold(_as_text(v)), _fold(lit.text)
    if op == ":":
        return b in a
    return _ordered(a, op, b)


def _ordered(a: Any, op: str, b: Any) -> bool:
    return {
        "=": a == b,
        "!=": a != b,
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
        ":": a == b,
    }[op]


def evaluate(tree: Any, entry: dict[str, Any]) -> bool:
    if isinstance(tree, And):
        return all(evaluate(a, entry) for a in tree.args)
    if isinstance(tree, Or):
        return any(evaluate(a, entry) for a in tree.args)
    if isinstance(tree, Not):
        return not evaluate(tree.arg, entry)
    if isinstance(tree, Call):
        return _call(tree, entry)
    if isinstance(tree, Compare):
        if not isinstance(tree.left, tuple):
            raise NotImplementedError("functions on the left of a comparison")
        values = _values(entry, tree.left)
        if tree.right == "*":
            return bool(values)
        return _compare_values(values, tree.op, tree.right, tree.left)
    raise NotImplementedError(f"not evaluated here: {type(tree).__name__}")


def _compare_values(values: list[Any], op: str, right: Any, path: tuple[str, ...]) -> bool:
    if isinstance(right, And):
        return all(_compare_values(values, op, r, path) for r in right.args)
    if isinstance(right, Or):
        return any(_compare_values(values, op, r, path) for r in right.args)
    if isinstance(right, Not):
        return not _compare_values(values, op, right.arg, path)
    if not isinstance(right, Value):
        raise NotImplementedError("a function as a compared value")
    # a missing field fails every comparison, `!=` included
    return any(_compare_one(v, op, right, path) for v in values)


def _call(call: Call, entry: dict[str, Any]) -> bool:
    name = call.name.lower()
    if name == "log_id" and len(call.args) == 1 and isinstance(call.args[0], Value):
        log_name = str(entry.get("logName", ""))
        return log_name.endswith("/logs/" + quote(call.args[0].text, safe=""))
    if name == "ip_in_net" and len(call.args) == 2:
        field, subnet = call.args
        assert isinstance(field, Value) and isinstance(subnet, Value)
        net = ipaddress.ip_network(subnet.text, strict=False)
        for v in _values(entry, tuple(field.text.split("."))):
            try:
                if ipaddress.ip_address(str(v)) in net:
                    return True
            except ValueError:
                continue
        return False
    raise NotImplementedError(f"function {call.name} is not evaluated here")
