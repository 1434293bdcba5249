"""A pySigma detection tree compiled to one DuckDB SQL predicate over ``audit_events``.

pySigma parses the rule (modifiers, wildcards, ``1 of selection_*``, ``|exists`` ...) into
a condition tree; this module walks that tree. It does not subclass pySigma's
``TextQueryBackend`` because list-valued fields (``sourceIPs``, ``user.groups``, every
container of a pod) need the predicate applied to each element inside a DuckDB lambda,
which a template-per-operator backend cannot express.

Sigma semantics kept here: strings compare case-insensitively unless ``|cased``; ``*``
and ``?`` are wildcards; a field that is absent never equals anything, and ``not`` over an
absent field is true (so every ``NOT`` is null-safe).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.rule import SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from podmortem.audit.dialect import UnsafeLiteralError
from podmortem.audit.fieldmap import FieldExpr, FieldMap, UnknownFieldError, sql_string

# Keyword (field-less) values are searched in the original record (column ``raw``).
_NUMERIC = re.compile(r"-?[0-9]+")
# Value types whose alternatives on one field can share one evaluation of the field.
_GROUPABLE = (
    SigmaString,
    SigmaNumber,
    SigmaBool,
    SigmaRegularExpression,
    SigmaCIDRExpression,
    SigmaCompareExpression,
)
# (JSON column, None): the column is not NULL; (JSON column, key): its text has the key.
Guard = tuple[str, str | None]
# Column (SQL) -> the values it can have in a row the rule matches (None: NULL).
Allowed = dict[str, frozenset[str | None]]
_MAX_SQL = 1 << 20  # a hostile rule with millions of alternatives is refused, not run


class CompileError(ValueError):
    """The rule uses something this backend cannot express faithfully."""


__all__ = ["CompileError", "Compiled", "compile_rule", "sql_string"]


@dataclass(slots=True)
class Compiled:
    sql: str
    # Things a reviewer should know: the rule loads, but a part of it can never match.
    warnings: list[str] = field(default_factory=list)
    # What holds in any row the rule matches (see _Compiler.requires): (JSON column, None),
    # the column is not NULL, and (JSON column, key), its text has the key's quoted name.
    # The engine may run the rule over only the rows that have them.
    needs: tuple[Guard, ...] = ()
    # The values an exactly compared column (verb, resource, subresource) can have in any
    # row the rule matches; a column not listed can have any value.
    allowed: tuple[tuple[str, tuple[str | None, ...]], ...] = ()


def compile_rule(rule: SigmaRule, fields: FieldMap) -> Compiled:
    """The rule's detection as one SQL boolean expression (several conditions: OR)."""
    comp = _Compiler(fields)
    parts = []
    needed: list[frozenset[Guard]] = []
    values: list[Allowed] = []
    try:
        for cond in rule.detection.parsed_condition:
            parts.append(comp.node(cond.parsed))
            needed.append(comp.requires(cond.parsed))
            values.append(comp.allowed(cond.parsed))
    except UnsafeLiteralError as exc:
        raise UnknownFieldError(str(exc)) from exc
    sql = parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
    # What every match needs is tested first, as conjuncts of its own: a JSON column that
    # is not NULL, then the names of keys in its text. DuckDB then skips the rows without
    # them before any JSON path is parsed or lambda runs. The pod-spec rules read the
    # request body of pod writes: most of those (status updates) have none (1M events, ten
    # such rules 0.61 -> 0.38 s), and most bodies lack the key a rule reads (`privileged`,
    # `hostPID`...): parsing a body costs about four times the search for a name in it.
    common = frozenset.intersection(*needed)
    guards = sorted(common, key=lambda g: (g[1] is not None, g[0], g[1] or ""))
    if guards:
        sql = "(" + " AND ".join([*(comp.guard(c, k) for c, k in guards), sql]) + ")"
    if len(sql) > _MAX_SQL:
        raise CompileError(f"compiled condition is {len(sql)} characters; refusing")
    allowed = _union_allowed(values)
    return Compiled(
        sql,
        comp.warnings,
        tuple(guards),
        tuple(
            (c, tuple(sorted(v, key=lambda x: (x is not None, x or ""))))
            for c, v in sorted(allowed.items())
        ),
    )


def _union_allowed(parts: Sequence[Allowed]) -> Allowed:
    """OR: a column is constrained when every part constrains it, to any part's values."""
    if not parts:
        return {}
    common = set(parts[0]).intersection(*parts[1:])
    return {c: frozenset().union(*(p[c] for p in parts)) for c in common}


class _Compiler:
    def __init__(self, fields: FieldMap) -> None:
        self.fields = fields
        self.d = fields.dialect
        self.warnings: list[str] = []

    def node(self, cond: object) -> str:
        if isinstance(cond, ConditionOR):
            return self._or(cond.args)
        if isinstance(cond, ConditionAND):
            return "(" + " AND ".join(self.node(a) for a in cond.args) + ")"
        if isinstance(cond, ConditionNOT):
            # NULL (absent field) must read as "did not match" before it is negated.
            return f"(NOT COALESCE({self.node(cond.args[0])}, FALSE))"
        if isinstance(cond, ConditionFieldEqualsValueExpression):
            return self.field_value(cond.field, cond.value)
        if isinstance(cond, ConditionValueExpression):
            return self.keyword(cond.value)
        raise CompileError(f"unsupported condition element {type(cond).__name__}")

    def _or(self, args: Sequence[object]) -> str:
        """OR of alternatives. Alternatives on the same field (a Sigma value list) become one
        predicate over one evaluation of the field: an IN list, or one lambda over the list's
        elements. Without this a 20-value list on a container image parses the request body
        sixty times per row."""
        by_field: dict[str, list[object]] = {}
        parts: list[str] = []
        for a in args:
            if (
                isinstance(a, ConditionFieldEqualsValueExpression)
                and a.field is not None
                and isinstance(a.value, _GROUPABLE)
                and not isinstance(a.value, SigmaExpansion)
            ):
                by_field.setdefault(a.field, []).append(a.value)
            else:
                parts.append(self.node(a))
        for name, values in by_field.items():
            fe = self.fields.resolve(name)
            if len(values) == 1:
                parts.append(self.field_value(name, values[0]))
                continue
            pred = self._any_value(name, fe, values)
            if fe.kind == "list":
                parts.append(self.d.any_of(fe.sql, pred))
            elif fe.is_column:
                parts.append(pred(fe.sql))
            else:  # evaluate the (JSON) expression once, test it against every value
                parts.append(self.d.any_of(self.d.singleton(fe.sql), pred))
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def _any_value(self, name: str, fe: FieldExpr, values: list[object]) -> Callable[[str], str]:
        """A predicate true when the element equals or matches any of ``values``."""
        plain: list[str] = []
        patterns: list[SigmaString] = []
        others: list[Callable[[str], str]] = []
        for v in values:
            if type(v) is SigmaString and fe.type == "string" and not v.contains_placeholder():
                if not v.contains_special():
                    plain.append(str(v.s[0]).lower() if v.s else "")
                else:
                    patterns.append(v)
            else:
                others.append(self._element_predicate(name, fe, v))
        if len(patterns) == 1:
            others.append(self._element_predicate(name, fe, patterns[0]))
            patterns = []
        d = self.d
        lits = ", ".join(d.string(p) for p in dict.fromkeys(plain))
        # Many wildcard patterns: one RE2 alternation scans the value once instead of one
        # ILIKE per pattern (user-agent and image lists have twenty). When every one is a
        # `contains` (*x*), an unanchored search for x1|x2|... means the same and spares
        # RE2 the leading .* of each alternative (1M user agents: 0.12 -> 0.04 s).
        regexes = [_regex(p) for p in patterns]
        contains = all(
            len(r) >= 4 and r.startswith(".*") and r.endswith(".*") and not r.endswith("\\.*")
            for r in regexes
        )
        if contains:
            regex = "(?is)(?:" + "|".join(r[2:-2] for r in regexes) + ")"
        else:
            regex = "(?is)^(?:" + "|".join(regexes) + ")$"

        def pred(x: str) -> str:
            out = []
            if lits:
                subject = x if fe.lowercase else f"lower({x})"
                out.append(f"({subject} IN ({lits}))")
            if patterns:
                out.append(d.search(x, regex) if contains else d.full_match(x, regex))
            out += [o(x) for o in others]
            return out[0] if len(out) == 1 else "(" + " OR ".join(out) + ")"

        return pred

    def requires(self, cond: object) -> frozenset[Guard]:
        """What holds wherever ``cond`` is true: ``(column, None)``, a JSON column that is
        not NULL; ``(column, key)``, a key name that its text contains.

        Every value predicate this compiler writes is false or NULL on a NULL operand, and
        an expression read from a JSON column is NULL (or an empty list) where the column
        is, or where its document lacks a key the expression is read under
        (:attr:`.FieldExpr.json_column`, :attr:`.FieldExpr.json_keys`). So a field test
        needs both, an AND needs what any part needs, an OR what every part needs; a NOT,
        a test for an absent or null value, a keyword and anything unknown need nothing."""
        if isinstance(cond, ConditionAND):
            return frozenset().union(*(self.requires(a) for a in cond.args))
        if isinstance(cond, ConditionOR):
            sets = [self.requires(a) for a in cond.args]
            return frozenset.intersection(*sets) if sets else frozenset()
        if isinstance(cond, ConditionFieldEqualsValueExpression) and cond.field is not None:
            return self._value_requires(cond.field, cond.value)
        return frozenset()

    def allowed(self, cond: object) -> Allowed:
        """The values each exactly compared column (``lowercase`` in the field map: verb,
        resource, subresource) can have wherever ``cond`` is true. A test of such a column
        against plain strings allows those (lowered, as the SQL compares them), against
        null allows NULL; an AND allows what every part allows, an OR what any part does
        (if every part constrains the column); a NOT, a wildcard, a keyword and anything
        else allow every value."""
        if isinstance(cond, ConditionAND):
            out: Allowed = {}
            for a in cond.args:
                for c, v in self.allowed(a).items():
                    out[c] = out[c] & v if c in out else v
            return out
        if isinstance(cond, ConditionOR):
            return _union_allowed([self.allowed(a) for a in cond.args])
        if isinstance(cond, ConditionFieldEqualsValueExpression) and cond.field is not None:
            return self._value_allowed(cond.field, cond.value)
        return {}

    def _value_allowed(self, name: str, value: object) -> Allowed:
        fe = self.fields.resolve(name)
        if not (fe.is_column and fe.lowercase and fe.kind == "scalar" and fe.type == "string"):
            return {}
        if isinstance(value, SigmaExpansion):
            return _union_allowed([self._value_allowed(name, v) for v in value.values])
        if isinstance(value, SigmaNull):
            return {fe.sql: frozenset({None})}
        if (
            type(value) in (SigmaString, SigmaCasedString)
            and isinstance(value, SigmaString)
            and not value.contains_special()
            and not value.contains_placeholder()
        ):
            plain = str(value.s[0]) if value.s else ""
            cased = isinstance(value, SigmaCasedString)
            return {fe.sql: frozenset({plain if cased else plain.lower()})}
        return {}

    def guard(self, column: str, key: str | None) -> str:
        """SQL for a guard of :meth:`requires`."""
        if key is None:
            return f"{column} IS NOT NULL"
        return self.d.json_has_key(column, key) or "TRUE"

    def _guards(self, fe: FieldExpr) -> set[Guard]:
        if fe.json_column is None:
            return set()
        out: set[Guard] = {(fe.json_column, None)}
        for key in fe.json_keys:
            if self.d.json_has_key(fe.json_column, key):
                out.add((fe.json_column, key))
        return out

    def _value_requires(self, name: str, value: object) -> frozenset[Guard]:
        if isinstance(value, SigmaExpansion):
            sets = [self._value_requires(name, v) for v in value.values]
            return frozenset.intersection(*sets) if sets else frozenset()
        if isinstance(value, SigmaNull) or (isinstance(value, SigmaExists) and not value.exists):
            return frozenset()
        needed = self._guards(self.fields.resolve(name))
        if isinstance(value, SigmaFieldReference):
            needed |= self._guards(self.fields.resolve(value.field))
        return frozenset(needed)

    # --------------------------------------------------------------- leaves

    def keyword(self, value: object) -> str:
        if isinstance(value, SigmaExpansion):
            return "(" + " OR ".join(self.keyword(v) for v in value.values) + ")"
        if isinstance(value, SigmaString | SigmaNumber):
            s = value if isinstance(value, SigmaString) else SigmaString(str(value))
            pattern = _like_pattern(s, contains=True)
            return f"({self.d.like(self.d.to_text(self.d.ident('raw')), pattern, ci=True)})"
        raise CompileError(f"unsupported keyword value {type(value).__name__}")

    def field_value(self, name: str | None, value: object) -> str:
        if name is None:
            return self.keyword(value)
        fe = self.fields.resolve(name)
        d = self.d
        if isinstance(value, SigmaExpansion):
            return "(" + " OR ".join(self.field_value(name, v) for v in value.values) + ")"
        if isinstance(value, SigmaExists):
            present = f"({d.size(fe.sql)} > 0)" if fe.kind == "list" else f"({fe.sql} IS NOT NULL)"
            return present if value.exists else f"(NOT {present})"
        if isinstance(value, SigmaNull):
            return f"({d.size(fe.sql)} = 0)" if fe.kind == "list" else f"({fe.sql} IS NULL)"
        if isinstance(value, SigmaFieldReference):
            other = self.fields.resolve(value.field)
            if fe.kind == "list" or other.kind == "list":
                raise CompileError(f"fieldref between list-valued fields ({name}, {value.field})")
            return f"(lower({d.to_text(fe.sql)}) = lower({d.to_text(other.sql)}))"
        pred = self._element_predicate(name, fe, value)
        if fe.kind == "list":
            return d.any_of(fe.sql, pred)
        return pred(fe.sql)

    def _element_predicate(self, name: str, fe: FieldExpr, value: object) -> Callable[[str], str]:
        """A function from an element expression to a SQL predicate on it."""
        d = self.d
        if isinstance(value, SigmaBool):
            if fe.type == "boolean":
                return lambda x: f"({x} = {'TRUE' if value.boolean else 'FALSE'})"
            word = "true" if value.boolean else "false"
            return lambda x: d.equals_ci(d.to_text(x), word)
        if isinstance(value, SigmaNumber):
            if fe.type == "integer":
                return lambda x: f"({x} = {int(value.number)})"
            lit = d.string(str(value.number))
            return lambda x: f"({d.to_text(x)} = {lit})"
        if isinstance(value, SigmaCompareExpression):
            op = {
                CompareOperators.LT: "<",
                CompareOperators.LTE: "<=",
                CompareOperators.GT: ">",
                CompareOperators.GTE: ">=",
                CompareOperators.NEQ: "<>",
            }[value.op]
            num = float(value.number.number)
            return lambda x: f"({d.try_double(x)} {op} {num!r})"
        if isinstance(value, SigmaRegularExpression):
            flags = ""
            if SigmaRegularExpressionFlag.IGNORECASE in value.flags:
                flags += "i"
            if SigmaRegularExpressionFlag.MULTILINE in value.flags:
                flags += "m"
            if SigmaRegularExpressionFlag.DOTALL in value.flags:
                flags += "s"
            regex = (f"(?{flags})" if flags else "") + value.regexp.original
            d.string(regex)  # refuses NUL now, at load time
            return lambda x: d.search(d.to_text(x), regex)
        if isinstance(value, SigmaCIDRExpression):
            pats = [_like_pattern(SigmaString(p), contains=False) for p in value.expand("*")]
            return lambda x: "(" + " OR ".join(f"({d.like(x, p, ci=False)})" for p in pats) + ")"
        if isinstance(value, SigmaString):
            return self._string_predicate(name, fe, value)
        raise CompileError(f"unsupported value type {type(value).__name__} for field {name}")

    def _string_predicate(
        self, name: str, fe: FieldExpr, value: SigmaString
    ) -> Callable[[str], str]:
        d = self.d

        def text(x: str) -> str:
            # string fields are VARCHAR already; others (timestamps) compare as text
            return x if fe.type == "string" else d.to_text(x)

        if value.contains_placeholder():
            raise CompileError(f"placeholder in value of {name} (no placeholder values defined)")
        cased = isinstance(value, SigmaCasedString)
        if not value.contains_special():
            plain = str(value.s[0]) if value.s else ""
            if fe.type == "integer":
                if _NUMERIC.fullmatch(plain):
                    return lambda x: f"({x} = {int(plain)})"
                self.warnings.append(f"{name} holds integers; the value {plain!r} can never match")
                return lambda x: "FALSE"
            if fe.type == "boolean":
                if plain.lower() not in ("true", "false"):
                    self.warnings.append(f"{name} is boolean; the value {plain!r} can never match")
                    return lambda x: "FALSE"
                return lambda x: f"({x} = {plain.upper()})"
            if cased:
                lit = d.string(plain)
                return lambda x: f"({text(x)} = {lit})"
            lowered = plain.lower()
            if fe.lowercase:
                lit = d.string(lowered)
                return lambda x: f"({x} = {lit})"
            d.string(lowered)  # refuses NUL now, at load time
            return lambda x: d.equals_ci(text(x), lowered)
        pattern = _like_pattern(value, contains=False)
        if pattern == "%":  # "*": the field is present with any value
            return lambda x: f"({x} IS NOT NULL)"
        d.string(pattern)  # refuses NUL now, at load time
        return lambda x: f"({d.like(text(x), pattern, ci=not cased)})"


_RE_SPECIAL = set("\\.+*?()|[]{}^$")


def _regex(value: SigmaString) -> str:
    """A Sigma wildcard string as an RE2 pattern (only RE2's metacharacters escaped)."""
    out = []
    for part in value.s:
        if part == SpecialChars.WILDCARD_MULTI:
            out.append(".*")
        elif part == SpecialChars.WILDCARD_SINGLE:
            out.append(".")
        elif isinstance(part, str):
            out.append("".join("\\" + c if c in _RE_SPECIAL else c for c in part))
        else:
            raise CompileError("placeholder in a value")
    return "".join(out)


def _like_pattern(value: SigmaString, *, contains: bool) -> str:
    out = []
    for part in value.s:
        if part == SpecialChars.WILDCARD_MULTI:
            out.append("%")
        elif part == SpecialChars.WILDCARD_SINGLE:
            out.append("_")
        elif isinstance(part, str):
            out.append(part.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"))
        else:
            raise CompileError("placeholder in a value")
    pattern = "".join(out)
    return f"%{pattern}%" if contains else pattern
