"""An evaluator of the KQL subset podmortem prints, over AKSAudit/AzureDiagnostics rows made
from native audit events. A test helper, not podmortem code: Microsoft's Kusto language
service (kusto_check.py) proves the queries are valid KQL; this runs them with the meaning
the KQL reference gives each operator and function, so a query that is valid but selects the
wrong events is caught. No Kusto engine runs here: this is podmortem's reading of the
reference, kept small.

Covered (the operators and functions podmortem emits): tabular ``union``, ``where``,
``extend``, ``mv-apply ... to typeof(dynamic) on (...)``, ``project-away``, ``project`` (rows
kept as they are), ``summarize`` (``arg_max(col, *)``, ``countif``, ``count_distinct`` ``by``
keys and ``bin()``), ``order by``; scalar ``and``/``or``, ``==``/``!=``/``=~``/``<``...,
``matches regex`` (RE2, a search), ``endswith``, ``in``, and ``tostring``, ``tolong``,
``todouble``, ``parse_json``, ``isnull``/``isnotnull``/``isempty``/``isnotempty``, ``not``,
``coalesce``, ``iff``, ``dynamic``, ``array_concat``, ``extract``, ``extract_all``,
``url_decode``, ``replace_string``, ``ipv4_is_in_range``, ``ago``, ``datetime``, ``bin``.

Values: ``None`` is null; a missing property of a dynamic value is null; ``tostring(null)``
is ``""`` (Kusto strings are never null); comparisons with null are null, and ``where``
keeps only true rows.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from logging_filter import re2_search


class KqlError(ValueError):
    """Outside the subset this evaluator reads."""


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<verbatim>@"(?:[^"]|"")*")
  | (?P<string>"(?:\\.|[^"\\])*")
  | (?P<timespan>[0-9]+s\b)
  | (?P<number>[0-9]+(?:\.[0-9]+)?)
  | (?P<op>==|!=|=~|<=|>=|[=<>|(),.\[\]*])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:-[a-z]+)?)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Tok:
    kind: str
    text: str


def tokenize(text: str) -> list[Tok]:
    out = []
    pos = 0
    while pos < len(text):
        if text.startswith("datetime(", pos):
            end = text.index(")", pos)
            out.append(Tok("datetime", text[pos + 9 : end]))
            pos = end + 1
            continue
        m = _TOKEN.match(text, pos)
        if m is None:
            raise KqlError(f"unexpected {text[pos]!r} at {pos}")
        if m.lastgroup != "ws":
            out.append(Tok(m.lastgroup or "", m.group()))
        pos = m.end()
    out.append(Tok("end", ""))
    return out


def _string(tok: Tok) -> str:
    if tok.kind == "verbatim":
        return tok.text[2:-1].replace('""', '"')
    return re.sub(r"\\(.)", lambda m: m.group(1), tok.text[1:-1])


# ------------------------------------------------------------------------------- parsing


class Parser:
    def __init__(self, text: str) -> None:
        self.toks = tokenize(text)
        self.i = 0

    def peek(self, k: int = 0) -> Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self, text: str | None = None) -> Tok:
        t = self.toks[self.i]
        if text is not None and t.text != text:
            raise KqlError(f"expected {text!r}, found {t.text!r}")
        self.i += 1
        return t

    def at(self, text: str) -> bool:
        return self.peek().text == text

    def query(self) -> tuple[Any, list[Any]]:
        source = self.source()
        ops = []
        while self.at("|"):
            self.take()
            ops.append(self.operator())
        if self.peek().kind != "end":
            raise KqlError(f"unexpected {self.peek().text!r}")
        return source, ops

    def source(self) -> list[str]:
        if self.at("union"):
            self.take()
            if self.at("isfuzzy"):
                self.take()
                self.take("=")
                self.take()
            names = [self.take().text]
            while self.at(","):
                self.take()
                names.append(self.take().text)
            return names
        return [self.take().text]

    def operator(self) -> Any:
        name = self.take().text
        if name == "where":
            return ("where", self.expr())
        if name == "extend":
            col = self.take().text
            self.take("=")
            return ("extend", col, self.expr())
        if name == "project-away":
            prefix = self.take().text
            self.take("*")
            return ("project-away", prefix)
        if name == "project":
            while not (self.at("|") or self.peek().kind == "end"):
                self.take()
            return ("project",)
        if name == "order":
            self.take("by")
            col = self.take().text
            order = self.take().text
            return ("order", col, order)
        if name == "mv-apply":
            var = self.take().text
            self.take("=")
            array = self.expr()
            self.take("to")
            self.take("typeof")
            self.take("(")
            self.take("dynamic")
            self.take(")")
            self.take("on")
            self.take("(")
            sub = [self.operator()]
            while self.at("|"):
                self.take()
                sub.append(self.operator())
            self.take(")")
            return ("mv-apply", var, array, sub)
        if name == "summarize":
            aggs = []
            while True:
                alias = None
                if self.peek(1).text == "=":
                    alias = self.take().text
                    self.take("=")
                aggs.append((alias, self.expr()))
                if not self.at(","):
                    break
                self.take()
            keys = []
            if self.at("by"):
                self.take()
                while True:
                    alias = None
                    if self.peek(1).text == "=":
                        alias = self.take().text
                        self.take("=")
                    e = self.expr()
                    keys.append((alias or (e[1] if e[0] == "col" else "key"), e))
                    if not self.at(","):
                        break
                    self.take()
            return ("summarize", aggs, keys)
        raise KqlError(f"operator {name!r} is not evaluated here")

    # scalar expressions: or < and < comparison < postfix
    def expr(self) -> Any:
        left = self.conj()
        while self.at("or"):
            self.take()
            left = ("or", left, self.conj())
        return left

    def conj(self) -> Any:
        left = self.comparison()
        while self.at("and"):
            self.take()
            left = ("and", left, self.comparison())
        return left

    def comparison(self) -> Any:
        left = self.postfix()
        t = self.peek()
        if t.text in ("==", "!=", "=~", "<", "<=", ">", ">="):
            self.take()
            return ("cmp", t.text, left, self.postfix())
        if t.text == "matches":
            self.take()
            self.take("regex")
            return ("regex", left, self.postfix())
        if t.text == "endswith":
            self.take()
            return ("endswith", left, self.postfix())
        if t.text == "in":
            self.take()
            self.take("(")
            items = [self.postfix()]
            while self.at(","):
                self.take()
                items.append(self.postfix())
            self.take(")")
            return ("in", left, items)
        return left

    def postfix(self) -> Any:
        node = self.atom()
        while True:
            if self.at("."):
                self.take()
                node = ("get", node, self.take().text)
            elif self.at("["):
                self.take()
                key = _string(self.take())
                self.take("]")
                node = ("get", node, key)
            else:
                return node

    def atom(self) -> Any:
        t = self.take()
        if t.text == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if t.kind in ("string", "verbatim"):
            return ("lit", _string(t))
        if t.kind == "number":
            return ("lit", float(t.text) if "." in t.text else int(t.text))
        if t.kind == "timespan":
            return ("lit", timedelta(seconds=int(t.text[:-1])))
        if t.kind == "datetime":
            return ("lit", datetime.fromisoformat(t.text.replace("Z", "+00:00")))
        if t.kind == "name":
            if t.text in ("true", "false"):
                return ("lit", t.text == "true")
            if t.text == "dynamic":
                self.take("(")
                self.take("[")
                items = []
                while not self.at("]"):
                    tok = self.take()
                    if tok.text != ",":
                        items.append(None if tok.text == "null" else _string(tok))
                self.take("]")
                self.take(")")
                return ("lit", items)
            if self.at("("):
                self.take()
                args = []
                while not self.at(")"):
                    args.append(("star",) if self.at("*") and self.take() else self.expr())
                    if self.at(","):
                        self.take()
                self.take(")")
                return ("call", t.text, args)
            return ("col", t.text)
        raise KqlError(f"unexpected {t.text!r}")


def parse(text: str) -> tuple[Any, list[Any]]:
    return Parser(text).query()


# ------------------------------------------------------------------------------- evaluation


def tostring(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _num(v: Any, kind: type) -> Any:
    if v is None or isinstance(v, bool | dict | list):
        return None
    try:
        return kind(v) if kind is float else int(str(v))
    except ValueError:
        return None


def _and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


class Evaluator:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def scalar(self, e: Any, row: dict[str, Any]) -> Any:
        kind = e[0]
        if kind == "lit":
            return e[1]
        if kind == "col":
            if e[1] not in row:
                raise KqlError(f"unknown column {e[1]}")
            return row[e[1]]
        if kind == "get":
            base = self.scalar(e[1], row)
            if isinstance(base, str):  # a dynamic string is not an object
                return None
            return base.get(e[2]) if isinstance(base, dict) else None
        if kind == "and":
            return _and(self.scalar(e[1], row), self.scalar(e[2], row))
        if kind == "or":
            return _or(self.scalar(e[1], row), self.scalar(e[2], row))
        if kind == "cmp":
            return self.compare(e[1], self.scalar(e[2], row), self.scalar(e[3], row))
        if kind == "regex":
            text = self.scalar(e[1], row)
            return re2_search(self.scalar(e[2], row), tostring(text))
        if kind == "endswith":
            a, b = tostring(self.scalar(e[1], row)), tostring(self.scalar(e[2], row))
            return a.lower().endswith(b.lower())
        if kind == "in":
            a = tostring(self.scalar(e[1], row))
            return any(a == tostring(self.scalar(x, row)) for x in e[2])
        if kind == "call":
            return self.call(e[1], e[2], row)
        raise KqlError(f"cannot evaluate {kind}")

    def compare(self, op: str, a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        if op == "=~":
            return tostring(a).lower() == tostring(b).lower()
        if isinstance(a, str) != isinstance(b, str):
            return None
        return {
            "==": a == b,
            "!=": a != b,
            "<": a < b,
            "<=": a <= b,
            ">": a > b,
            ">=": a >= b,
        }[op]

    def call(self, name: str, args: list[Any], row: dict[str, Any]) -> Any:
        v = [self.scalar(a, row) for a in args]
        if name == "tostring":
            return tostring(v[0])
        if name == "tolong":
            return _num(v[0], int)
        if name == "todouble":
            return _num(v[0], float)
        if name == "parse_json":
            try:
                return json.loads(v[0]) if isinstance(v[0], str) else v[0]
            except ValueError:
                return v[0]
        if name == "isnull":
            return v[0] is None
        if name == "isnotnull":
            return v[0] is not None
        if name == "isempty":
            return v[0] is None or tostring(v[0]) == ""
        if name == "isnotempty":
            return not (v[0] is None or tostring(v[0]) == "")
        if name == "not":
            return None if v[0] is None else not v[0]
        if name == "coalesce":
            return next((x for x in v if x is not None), None)
        if name == "iff":
            return v[1] if v[0] is True else v[2]
        if name == "array_concat":
            if any(not isinstance(x, list) for x in v):
                return None
            return [y for x in v for y in x]
        if name == "extract":
            m = _re2_match(v[0], tostring(v[2]))
            return m[v[1]] if m else ""
        if name == "extract_all":
            text = tostring(v[1])
            found = [m.group(1) for m in re.finditer(_py_regex(v[0]), text)]
            return found or None
        if name == "url_decode":
            return unquote(tostring(v[0]))
        if name == "replace_string":
            return tostring(v[0]).replace(tostring(v[1]), tostring(v[2]))
        if name == "ipv4_is_in_range":
            try:
                return ipaddress.ip_address(tostring(v[0])) in ipaddress.ip_network(
                    tostring(v[1]), strict=False
                )
            except ValueError:
                return None
        if name == "ago":
            return self.now - v[0]
        if name == "bin":
            t, span = v
            epoch = datetime(1970, 1, 1, tzinfo=UTC)
            step = span.total_seconds()
            return epoch + timedelta(seconds=(t - epoch).total_seconds() // step * step)
        raise KqlError(f"function {name} is not evaluated here")

    # ------------------------------------------------------------------ tabular

    def run(self, ops: list[Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for op in ops:
            rows = self.operator(op, rows)
        return rows

    def operator(self, op: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kind = op[0]
        if kind == "where":
            return [r for r in rows if self.scalar(op[1], r) is True]
        if kind == "extend":
            return [{**r, op[1]: self.scalar(op[2], r)} for r in rows]
        if kind == "project-away":
            return [{k: v for k, v in r.items() if not k.startswith(op[1])} for r in rows]
        if kind == "project":
            return rows
        if kind == "order":
            return sorted(rows, key=lambda r: r[op[1]], reverse=op[2] == "desc")
        if kind == "mv-apply":
            _, var, array, sub = op
            out = []
            for r in rows:
                arr = self.scalar(array, r)
                elems = arr if isinstance(arr, list) else [arr]
                inner = [{**r, var: el} for el in elems]
                for res in self.run(sub, inner):
                    # the subquery's own columns join the outer row
                    out.append({**r, **{k: v for k, v in res.items() if k not in r or k == var}})
            return [{k: v for k, v in r.items() if k != op[1]} for r in out]
        if kind == "summarize":
            return self.summarize(op[1], op[2], rows)
        raise KqlError(f"operator {kind} is not evaluated here")

    def summarize(
        self, aggs: list[Any], keys: list[Any], rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            groups[tuple(tostring(self.scalar(e, r)) for _, e in keys)].append(r)
        if not keys and not groups:
            groups[()] = []
        out = []
        for members in groups.values():
            first = members[0] if members else {}
            row = {name: self.scalar(e, first) for name, e in keys} if members else {}
            for alias, (_, fn, args) in aggs:
                if fn == "countif":
                    row[alias] = sum(1 for m in members if self.scalar(args[0], m) is True)
                elif fn == "count_distinct":
                    row[alias] = len({tostring(self.scalar(args[0], m)) for m in members})
                elif fn == "arg_max":
                    best = max(members, key=lambda m: self.scalar(args[0], m))
                    row = {**best, **row}
                else:
                    raise KqlError(f"aggregate {fn} is not evaluated here")
            out.append(row)
        return out


def _py_regex(pattern: str) -> str:
    return re.sub(r"\\x\{([0-9a-fA-F]+)\}", lambda m: "\\U" + m.group(1).zfill(8), pattern)


def _re2_match(pattern: str, text: str) -> dict[int, str] | None:
    m = re.search(_py_regex(pattern), text)
    return {i: (m.group(i) or "") for i in range(1, (m.re.groups or 0) + 1)} if m else None


# ------------------------------------------------------------------------------- tables


def _time(event: dict[str, Any], key: str) -> datetime | None:
    v = event.get(key)
    return datetime.fromisoformat(str(v).replace("Z", "+00:00")) if v else None


def aks_audit_row(event: dict[str, Any], resource_id: str) -> dict[str, Any]:
    """A native Event as an AKSAudit row (Microsoft's column reference): string columns are
    "" when absent, dynamic ones null."""
    ts = _time(event, "stageTimestamp") or _time(event, "requestReceivedTimestamp")
    return {
        "TimeGenerated": ts,
        "AuditId": event.get("auditID") or "",
        "Level": event.get("level") or "",
        "Stage": event.get("stage") or "",
        "Verb": event.get("verb") or "",
        "RequestUri": event.get("requestURI") or "",
        "UserAgent": event.get("userAgent") or "",
        "PodName": "",
        "User": event.get("user"),
        "ObjectRef": event.get("objectRef"),
        "ResponseStatus": event.get("responseStatus"),
        "RequestObject": event.get("requestObject"),
        "ResponseObject": event.get("responseObject"),
        "SourceIps": event.get("sourceIPs"),
        "Annotations": event.get("annotations"),
        "RequestReceivedTime": _time(event, "requestReceivedTimestamp"),
        "StageReceivedTime": _time(event, "stageTimestamp"),
        "_ResourceId": resource_id,
    }


def azure_diagnostics_row(event: dict[str, Any], resource_id: str) -> dict[str, Any]:
    """A native Event as an AzureDiagnostics row: the Event is the JSON text ``log_s``."""
    ts = _time(event, "stageTimestamp") or _time(event, "requestReceivedTimestamp")
    return {
        "TimeGenerated": ts,
        "Category": "kube-audit",
        "log_s": json.dumps(event),
        "_ResourceId": resource_id,
    }


def run_query(
    text: str,
    events: list[dict[str, Any]],
    *,
    cluster: str = "prod",
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The query over ``events`` written to whichever table it reads."""
    source, ops = parse(text)
    rid = (
        "/subscriptions/s/resourcegroups/rg/providers/microsoft.containerservice"
        f"/managedclusters/{cluster}"
    )
    if source == ["AzureDiagnostics"]:
        rows = [azure_diagnostics_row(e, rid) for e in events]
    elif set(source) <= {"AKSAudit", "AKSAuditAdmin"}:
        rows = [aks_audit_row(e, rid) for e in events]  # one table: the union keeps one copy
    else:
        raise KqlError(f"unknown source {source}")
    return Evaluator(now or datetime.now(UTC)).run(ops, rows)
