"""CloudWatch Logs Insights query language: a recursive-descent parser of the part of the
documented syntax podmortem prints, and an evaluator over EKS audit events. A test helper,
not podmortem code.

From "CloudWatch Logs Insights language query syntax" (docs.aws.amazon.com, CWL_QuerySyntax):

* a query is commands separated by ``|``: ``fields``, ``filter``, ``stats``, ``sort``,
  ``limit`` (also ``display``, ``parse``, ``dedup``: parsed, not evaluated); ``#`` starts a
  comment;
* ``filter`` takes comparisons (``= != < <= > >=``), ``and``/``or``/``not``, ``like`` and
  ``=~`` with a "string" (substring) or a /regular expression/ (a search: ``f1 =~
  /Exception/`` finds the word anywhere), ``in [..]``, and functions (``ispresent``,
  ``isempty``, ``isblank``, ``isIpv4InSubnet``, ...);
* a field name with characters other than letters, digits, ``@`` and ``.`` is written in
  backticks; JSON fields are discovered by dotted path, array elements by index
  (``sourceIPs.0``);
* ``stats`` aggregates (``count``, ``count_distinct``, ...) ``by`` fields and ``bin(period)``,
  with ``as`` aliases; ``sort f [asc|desc]``; ``limit n``.

Evaluation: a comparison on a field the event does not have is false (``not`` of it true),
``ispresent`` tests presence; regular expressions run in DuckDB's RE2 (the documentation does
not name Insights' engine; the patterns podmortem prints use only syntax RE2, Java and PCRE
read alike).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from logging_filter import re2_search


class InsightsSyntaxError(ValueError):
    """Not a query of the documented syntax."""


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<regex>/(?:\\.|[^/\\\n])*/)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')
  | (?P<quoted>`[^`]*`)
  | (?P<number>-?[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d|w|mo|q|y)?(?![A-Za-z0-9_@.]))
  | (?P<op>=~|!=|<=|>=|=|<|>)
  | (?P<punct>[|(),\[\]*])
  | (?P<name>[A-Za-z@_][A-Za-z0-9@._]*)
    """,
    re.VERBOSE | re.DOTALL,
)
COMMANDS = {"fields", "filter", "stats", "sort", "limit", "display", "parse", "dedup"}
FUNCTIONS = {
    "ispresent",
    "isempty",
    "isblank",
    "isipv4insubnet",
    "strcontains",
    "tolower",
    "toupper",
    "strlen",
    "coalesce",
    "bin",
    "count",
    "count_distinct",
    "sum",
    "avg",
    "min",
    "max",
    "abs",
}
_PERIOD = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class Tok:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Tok]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise InsightsSyntaxError(f"unexpected {text[pos]!r} at {pos}")
        if m.lastgroup != "ws":
            out.append(Tok(m.lastgroup or "", m.group(), pos))
        pos = m.end()
    out.append(Tok("end", "", len(text)))
    return out


# ------------------------------------------------------------------------------- tree


@dataclass(frozen=True, slots=True)
class Field:
    name: str


@dataclass(frozen=True, slots=True)
class Lit:
    value: Any  # str | float | period seconds (Period)


@dataclass(frozen=True, slots=True)
class Period:
    seconds: float


@dataclass(frozen=True, slots=True)
class Regex:
    pattern: str


@dataclass(frozen=True, slots=True)
class Func:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # and, or, = != < <= > >=, like, =~, not like, in
    left: Any
    right: Any


@dataclass(frozen=True, slots=True)
class Not:
    arg: Any


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: tuple[Any, ...]
    by: tuple[tuple[Any, str | None], ...] = ()


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

    def word(self, text: str) -> bool:
        t = self.peek()
        return t.kind == "name" and t.text.lower() == text

    def expect_punct(self, text: str) -> None:
        t = self.take()
        if t.kind != "punct" or t.text != text:
            raise InsightsSyntaxError(f"expected {text!r} at {t.pos}, found {t.text!r}")

    def parse(self) -> list[Command]:
        cmds = [self.command()]
        while self.peek().kind == "punct" and self.peek().text == "|":
            self.take()
            cmds.append(self.command())
        if self.peek().kind != "end":
            raise InsightsSyntaxError(f"unexpected {self.peek().text!r} at {self.peek().pos}")
        return cmds

    def command(self) -> Command:
        t = self.take()
        name = t.text.lower()
        if t.kind != "name" or name not in COMMANDS:
            raise InsightsSyntaxError(f"unknown command {t.text!r} at {t.pos}")
        if name == "filter":
            return Command(name, (self.or_expr(),))
        if name in ("fields", "display", "dedup"):
            return Command(name, tuple(self.aliased_list()))
        if name == "stats":
            aggs = self.aliased_list()
            by: list[tuple[Any, str | None]] = []
            if self.word("by"):
                self.take()
                by = self.aliased_list()
            return Command(name, tuple(aggs), tuple(by))
        if name == "sort":
            keys = []
            while True:
                expr = self.operand()
                order = "asc"
                if self.word("asc") or self.word("desc"):
                    order = self.take().text.lower()
                keys.append((expr, order))
                if not (self.peek().kind == "punct" and self.peek().text == ","):
                    break
                self.take()
            return Command(name, tuple(keys))
        if name == "limit":
            n = self.take()
            if n.kind != "number" or not n.text.isdigit() or int(n.text) < 1:
                raise InsightsSyntaxError(f"limit needs a positive integer at {n.pos}")
            return Command(name, (int(n.text),))
        # parse: a field then a pattern, with `as` names; not evaluated
        args = [self.operand(), self.take()]
        return Command(name, tuple(args))

    def aliased_list(self) -> list[tuple[Any, str | None]]:
        out = []
        while True:
            expr = self.operand()
            alias = None
            if self.word("as"):
                self.take()
                a = self.take()
                if a.kind not in ("name", "quoted"):
                    raise InsightsSyntaxError(f"expected an alias at {a.pos}")
                alias = a.text.strip("`")
            out.append((expr, alias))
            if not (self.peek().kind == "punct" and self.peek().text == ","):
                return out
            self.take()

    # expressions: not > comparison > and > or
    def or_expr(self) -> Any:
        left = self.and_expr()
        while self.word("or"):
            self.take()
            left = BinOp("or", left, self.and_expr())
        return left

    def and_expr(self) -> Any:
        left = self.not_expr()
        while self.word("and"):
            self.take()
            left = BinOp("and", left, self.not_expr())
        return left

    def not_expr(self) -> Any:
        if self.word("not"):
            self.take()
            return Not(self.not_expr())
        return self.comparison()

    def comparison(self) -> Any:
        left = self.operand()
        t = self.peek()
        if t.kind == "op":
            self.take()
            if t.text == "=~":
                right = self.operand()
                if not isinstance(right, Regex | Lit):
                    raise InsightsSyntaxError(f"=~ needs a /regex/ or a string at {t.pos}")
                return BinOp("=~", left, right)
            return BinOp(t.text, left, self.operand())
        if self.word("like"):
            self.take()
            return BinOp("like", left, self.operand())
        if self.word("not") and self.peek(1).kind == "name":
            nxt = self.peek(1).text.lower()
            if nxt in ("like", "in"):
                self.take()
                self.take()
                return Not(BinOp(nxt, left, self.operand()))
        if self.word("in"):
            self.take()
            return BinOp("in", left, self.operand())
        return left

    def operand(self) -> Any:
        t = self.take()
        if t.kind == "punct" and t.text == "(":
            inner = self.or_expr()
            self.expect_punct(")")
            return inner
        if t.kind == "punct" and t.text == "[":
            items = []
            while not (self.peek().kind == "punct" and self.peek().text == "]"):
                items.append(self.operand())
                if self.peek().kind == "punct" and self.peek().text == ",":
                    self.take()
            self.take()
            return Lit(tuple(items))
        if t.kind == "punct" and t.text == "*":
            return Lit("*")
        if t.kind == "regex":
            return Regex(_regex_body(t.text))
        if t.kind == "string":
            return Lit(_unquote(t.text))
        if t.kind == "number":
            m = re.fullmatch(r"(-?[0-9.]+)([a-z]*)", t.text)
            assert m is not None
            if m.group(2):
                return Lit(Period(float(m.group(1)) * _PERIOD[m.group(2)]))
            return Lit(float(m.group(1)))
        if t.kind == "quoted":
            return Field(t.text[1:-1])
        if t.kind == "name":
            if self.peek().kind == "punct" and self.peek().text == "(":
                if t.text.lower() not in FUNCTIONS:
                    raise InsightsSyntaxError(f"unknown function {t.text!r} at {t.pos}")
                self.take()
                args = []
                while not (self.peek().kind == "punct" and self.peek().text == ")"):
                    args.append(self.or_expr())
                    if self.peek().kind == "punct" and self.peek().text == ",":
                        self.take()
                    elif not (self.peek().kind == "punct" and self.peek().text == ")"):
                        raise InsightsSyntaxError(f"bad arguments at {self.peek().pos}")
                self.take()
                return Func(t.text.lower(), tuple(args))
            if t.text.lower() in ("and", "or", "not", "by", "as", "like", "in"):
                raise InsightsSyntaxError(f"expected an operand at {t.pos}, found {t.text!r}")
            if "_" in t.text and not t.text.startswith("@"):
                # letters, digits, '@' and '.' only; anything else needs backticks
                raise InsightsSyntaxError(f"field {t.text!r} needs backticks")
            return Field(t.text)
        raise InsightsSyntaxError(f"expected an operand at {t.pos}, found {t.text!r}")


def _regex_body(literal: str) -> str:
    # `\/` inside /.../ is the delimiter escaped; every other escape belongs to the regex
    return literal[1:-1].replace("\\/", "/")


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: m.group(1), body, flags=re.S)


def parse(text: str) -> list[Command]:
    return Parser(text).parse()


# ------------------------------------------------------------------------------- evaluation

_MISSING = object()


def flatten(event: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The fields Insights discovers in a JSON log event: dotted paths, arrays by index."""
    out: dict[str, Any] = {}
    items: Any = event.items() if isinstance(event, dict) else enumerate(event)
    for k, v in items:
        name = f"{prefix}{k}"
        if isinstance(v, dict | list):
            out.update(flatten(v, name + "."))
        elif v is not None:
            out[name] = v
    return out


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def value(expr: Any, rec: dict[str, Any]) -> Any:
    if isinstance(expr, Field):
        return rec.get(expr.name, _MISSING)
    if isinstance(expr, Lit):
        return expr.value
    if isinstance(expr, Func):
        return call(expr, rec)
    return truth(expr, rec)


def call(f: Func, rec: dict[str, Any]) -> Any:
    if f.name == "ispresent":
        return value(f.args[0], rec) is not _MISSING
    if f.name in ("isempty", "isblank"):
        v = value(f.args[0], rec)
        if v is _MISSING:
            return True
        return _text(v).strip() == "" if f.name == "isblank" else _text(v) == ""
    if f.name == "isipv4insubnet":
        import ipaddress

        v = value(f.args[0], rec)
        try:
            return ipaddress.ip_address(_text(v)) in ipaddress.ip_network(
                _text(value(f.args[1], rec)), strict=False
            )
        except ValueError:
            return False
    raise NotImplementedError(f"function {f.name} is not evaluated here")


def truth(expr: Any, rec: dict[str, Any]) -> bool:
    if isinstance(expr, Not):
        return not truth(expr.arg, rec)
    if isinstance(expr, Func):
        return bool(call(expr, rec))
    if not isinstance(expr, BinOp):
        raise NotImplementedError(f"{expr!r} is not a condition")
    if expr.op == "and":
        return truth(expr.left, rec) and truth(expr.right, rec)
    if expr.op == "or":
        return truth(expr.left, rec) or truth(expr.right, rec)
    left = value(expr.left, rec)
    if left is _MISSING:
        return False
    if expr.op in ("=~", "like"):
        if isinstance(expr.right, Regex):
            return re2_search(expr.right.pattern, _text(left))
        return str(value(expr.right, rec)) in _text(left)
    right = value(expr.right, rec)
    if right is _MISSING:
        return False
    if expr.op == "in":
        return any(_text(left) == _text(r.value) for r in right)
    if isinstance(left, int | float) and not isinstance(left, bool):
        try:
            a, b = float(left), float(right)
        except (TypeError, ValueError):
            return False
    else:
        a, b = _text(left), _text(right)
    return {
        "=": a == b,
        "!=": a != b,
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
    }[expr.op]


def run(cmds: list[Command], events: list[dict[str, Any]], stream: str) -> list[dict[str, Any]]:
    """The query over EKS audit events of one log stream; rows as dicts."""
    rows = []
    for e in events:
        rec = flatten(e)
        rec["@logStream"] = stream
        rec["@message"] = json.dumps(e, separators=(",", ":"))
        ts = str(e.get("stageTimestamp") or e.get("requestReceivedTimestamp"))
        rec["@timestamp"] = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        rows.append(rec)
    for cmd in cmds:
        if cmd.name == "filter":
            rows = [r for r in rows if truth(cmd.args[0], r)]
        elif cmd.name == "stats":
            rows = _stats(cmd, rows)
        elif cmd.name == "sort":
            for expr, order in reversed(cmd.args):
                rows.sort(key=lambda r, e=expr: _text(value(e, r)), reverse=order == "desc")
        elif cmd.name == "limit":
            rows = rows[: cmd.args[0]]
        elif cmd.name not in ("fields", "display"):
            raise NotImplementedError(f"command {cmd.name} is not evaluated here")
    return rows


def _stats(cmd: Command, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    names = []
    for expr, alias in cmd.by:
        names.append(alias or (expr.name if isinstance(expr, Field) else "bin"))
    for r in rows:
        key = []
        for expr, _ in cmd.by:
            if isinstance(expr, Func) and expr.name == "bin":
                period = expr.args[0].value.seconds
                key.append(r["@timestamp"] // period * period)
            else:
                key.append(value(expr, r))
        groups[tuple(key)].append(r)
    out = []
    for key, members in groups.items():
        row = dict(zip(names, key, strict=True))
        for expr, alias in cmd.args:
            assert isinstance(expr, Func), expr
            if expr.name == "count_distinct":
                seen = {_text(v) for m in members if (v := value(expr.args[0], m)) is not _MISSING}
                row[alias or expr.name] = float(len(seen))
            elif expr.name == "count":
                row[alias or expr.name] = float(len(members))
            else:
                raise NotImplementedError(expr.name)
        out.append(row)
    return out
