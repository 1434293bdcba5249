"""SQL dialects the compiled rules are written in: DuckDB (the embedded engine) and Spark SQL
(``audit analyze --engine spark``).

The rule compiler (:mod:`.sigma`), the field map (:mod:`.fieldmap`) and the actor policy
(:mod:`.actors`) build their SQL through one of these objects, so that one walk of a pySigma
rule gives either dialect and the two cannot drift apart in what they mean. The DuckDB
methods return exactly the text the engine was written with; the Spark methods give the same
semantics with Spark's functions:

- DuckDB string literals are raw (``''`` escapes a quote); Spark unescapes backslashes in
  literals, so every backslash and quote is escaped.
- Identifiers: DuckDB ``"col"``, Spark ``col`` in backticks (double quotes are strings there).
- DuckDB JSON paths with ``[*]`` return a list (an element whose final key is absent is
  left out; one present with JSON ``null`` is kept as NULL). Spark's ``get_json_object``
  unwraps single-element wildcard results (a Hive quirk), so a list is built step by step
  instead: ``from_json(..., 'array<string>')`` (elements keep their JSON text, strings come
  unquoted, as DuckDB's ``json_extract_string`` gives them) and ``transform`` for the keys
  after the array.
- ``regexp_full_match`` (RE2) has no Spark equivalent: ``RLIKE`` with ``\\A...\\z`` anchors
  (Java's ``$`` would also match before a final newline).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Step = tuple[str, bool]  # (JSON object key, the value is an array stepped into element-wise)
Pred = Callable[[str], str]

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Key names a JSON writer has no reason to escape (no quote, backslash, control character,
# non-ASCII or slash, which some writers escape as "\/").
_TEXT_KEY = re.compile(r"[A-Za-z0-9_.@:*-]+")


class UnsafeLiteralError(ValueError):
    """A value cannot be written as a literal in this dialect (NUL)."""


class DuckDBDialect:
    name = "duckdb"

    def string(self, value: str) -> str:
        if "\x00" in value:
            raise UnsafeLiteralError("NUL character in a rule value")
        return "'" + value.replace("'", "''") + "'"

    def ident(self, column: str) -> str:
        return f'"{column}"'

    def to_text(self, x: str) -> str:
        return f"CAST({x} AS VARCHAR)"

    def try_double(self, x: str) -> str:
        return f"TRY_CAST({x} AS DOUBLE)"

    def any_of(self, items: str, pred: Pred) -> str:
        return f"(len(list_filter({items}, lambda e: {pred('e')})) > 0)"

    def singleton(self, x: str) -> str:
        return f"[{x}]"

    def size(self, items: str) -> str:
        """Number of elements, 0 for NULL."""
        return f"len(coalesce({items}, []))"

    def concat(self, lists: Sequence[str]) -> str:
        return f"flatten([{', '.join(lists)}])"

    def has_any(self, items: str, values: Sequence[str]) -> str:
        lits = ", ".join(self.string(v) for v in values)
        return f"list_has_any(coalesce({items}, []), [{lits}])"

    def like(self, x: str, pattern: str, *, ci: bool) -> str:
        op = "ILIKE" if ci else "LIKE"
        if "\\" not in pattern:
            # Nothing is escaped: without an ESCAPE clause DuckDB takes its fast LIKE paths
            # (prefix, suffix, contains) and a backslash would be literal anyway. With the
            # clause, `username ILIKE 'system:%'` over 1M rows took 31 ms instead of 9.
            return f"{x} {op} {self.string(pattern)}"
        return f"{x} {op} {self.string(pattern)} ESCAPE '\\'"

    def equals_ci(self, x: str, lowered: str) -> str:
        """``x`` equals ``lowered`` (a lower-case literal) ignoring case, as ``lower(x) =
        lowered``. For ASCII text without LIKE wildcards that is ``x ILIKE lowered``, which
        compares without building a lowered copy of every row (1M rows: 22 ms to 6)."""
        if lowered.isascii() and "%" not in lowered and "_" not in lowered and "\\" not in lowered:
            return f"({x} ILIKE {self.string(lowered)})"
        return f"(lower({x}) = {self.string(lowered)})"

    def json_has_key(self, json_sql: str, key: str) -> str | None:
        """A test that the JSON text ``json_sql`` can hold the key ``key``: its quoted name
        appears in the text. DuckDB writes every JSON value it stores from the parsed
        document (escapes decoded: ``"privil\\u0065ged"`` is stored as ``"privileged"``),
        and a key of these characters is written as is; so a document without that text
        has no such key. None when the key has characters a writer may escape."""
        if not _TEXT_KEY.fullmatch(key):
            return None
        return f"contains({json_sql}, {self.string(chr(34) + key + chr(34))})"

    def full_match(self, x: str, regex: str) -> str:
        return f"regexp_full_match({x}, {self.string(regex)})"

    def search(self, x: str, regex: str) -> str:
        return f"regexp_matches({x}, {self.string(regex)})"

    # JSON ----------------------------------------------------------------------------

    def json_path(self, steps: Sequence[Step]) -> str:
        return "$" + "".join("." + _duck_key(k) + ("[*]" if arr else "") for k, arr in steps)

    def json_value(self, json_sql: str, steps: Sequence[Step]) -> str:
        """The value at ``steps`` as text; a VARCHAR[] when a step is an array step."""
        return f"json_extract_string({json_sql}, {self.string(self.json_path(steps))})"

    def json_first(self, json_sql: str, paths: Sequence[Sequence[Step]]) -> str:
        """The first of several scalar paths that is present (one parse of the document)."""
        lst = ", ".join(self.string(self.json_path(p)) for p in paths)
        return f"list_filter(json_extract_string({json_sql}, [{lst}]), lambda p: p IS NOT NULL)[1]"

    def json_arrays(
        self, json_sql: str, arrays: Sequence[Sequence[Step]], rest: Sequence[Step]
    ) -> str:
        """``rest`` of every element of the arrays at ``arrays`` (each path ends at the array
        key, not stepped into), flattened: one parse of the document for all the arrays."""
        paths = ", ".join(self.string(self.json_path(p)) for p in arrays)
        inner = "$[*]" + "".join("." + _duck_key(k) + ("[*]" if arr else "") for k, arr in rest)
        return (
            f"flatten(list_transform(list_filter(json_extract({json_sql}, [{paths}]),"
            f" lambda a: a IS NOT NULL), lambda a: json_extract_string(a, '{inner}')))"
        )


@dataclass
class SparkDialect:
    name: str = "spark"
    _names: itertools.count[int] = field(default_factory=itertools.count)

    def _var(self) -> str:
        # Lambda variables are numbered: nested lambdas never shadow each other.
        return f"x{next(self._names)}"

    def string(self, value: str) -> str:
        if "\x00" in value:
            raise UnsafeLiteralError("NUL character in a rule value")
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def ident(self, column: str) -> str:
        return f"`{column}`"

    def to_text(self, x: str) -> str:
        return f"CAST({x} AS STRING)"

    def try_double(self, x: str) -> str:
        return f"TRY_CAST({x} AS DOUBLE)"

    def any_of(self, items: str, pred: Pred) -> str:
        v = self._var()
        return f"exists({items}, {v} -> {pred(v)})"

    def singleton(self, x: str) -> str:
        return f"array({x})"

    def size(self, items: str) -> str:
        return f"size(coalesce({items}, array()))"

    def concat(self, lists: Sequence[str]) -> str:
        # Spark's flatten is NULL when one inner list is; DuckDB's skips it.
        return "flatten(array(" + ", ".join(f"coalesce({x}, array())" for x in lists) + "))"

    def has_any(self, items: str, values: Sequence[str]) -> str:
        lits = ", ".join(self.string(v) for v in values)
        return f"arrays_overlap(coalesce({items}, array()), array({lits}))"

    def like(self, x: str, pattern: str, *, ci: bool) -> str:
        # Backslash is Spark's default LIKE escape, the one the patterns are written with.
        return f"{x} {'ILIKE' if ci else 'LIKE'} {self.string(pattern)}"

    def equals_ci(self, x: str, lowered: str) -> str:
        return f"(lower({x}) = {self.string(lowered)})"

    def json_has_key(self, json_sql: str, key: str) -> str | None:
        # Spark keeps a nested object as the text it read (escapes and all), so the
        # absence of a key's name from the text proves nothing.
        return None

    def full_match(self, x: str, regex: str) -> str:
        flags, body = _split_flags(regex)
        if body.startswith("^") and body.endswith("$"):
            body = body[1:-1]
        anchored = flags + chr(92) + "A(?:" + body + ")" + chr(92) + "z"
        return f"({x} RLIKE {self.string(java_regex(anchored))})"

    def search(self, x: str, regex: str) -> str:
        return f"({x} RLIKE {self.string(java_regex(regex))})"

    # JSON ----------------------------------------------------------------------------

    def json_path(self, steps: Sequence[Step]) -> str:
        return "$" + "".join(_spark_key(k) for k, _ in steps)

    def _get(self, json_sql: str, steps: Sequence[Step]) -> str:
        if not steps:
            return json_sql
        return f"get_json_object({json_sql}, {self.string(self.json_path(steps))})"

    def json_value(self, json_sql: str, steps: Sequence[Step]) -> str:
        split = next((i for i, (_, arr) in enumerate(steps) if arr), None)
        if split is None:
            return self._get(json_sql, steps)
        head, rest = steps[: split + 1], steps[split + 1 :]
        elements = f"from_json({self._get(json_sql, head)}, 'array<string>')"
        if not rest:
            return elements
        v = self._var()
        if any(arr for _, arr in rest):
            inner = self.json_value(v, rest)
            return f"flatten(transform({elements}, {v} -> coalesce({inner}, array())))"
        # As DuckDB: an element without the final key is left out, one with it (even JSON
        # null) is kept.
        parent = self._get(v, rest[:-1])
        has = f"array_contains(json_object_keys({parent}), {self.string(rest[-1][0])})"
        w = self._var()
        return f"transform(filter({elements}, {v} -> {has}), {w} -> {self._get(w, rest)})"

    def json_first(self, json_sql: str, paths: Sequence[Sequence[Step]]) -> str:
        return "coalesce(" + ", ".join(self._get(json_sql, p) for p in paths) + ")"

    def json_arrays(
        self, json_sql: str, arrays: Sequence[Sequence[Step]], rest: Sequence[Step]
    ) -> str:
        lists = []
        for path in arrays:
            *parents, (last, _) = path
            lists.append(self.json_value(json_sql, [*parents, (last, True), *rest]))
        return self.concat(lists)


def java_regex(regex: str) -> str:
    """An RE2 pattern with RE2's meaning under Java: only ``\\n`` ends a line (``(?d)``;
    Java also counts ``\\r`` and Unicode separators), and without multi-line mode ``$`` is
    the end of the text (Java's ``$`` also matches before a final line break)."""
    multiline = re.search(r"\(\?[a-zA-Z]*m[a-zA-Z]*[):]", regex) is not None
    if multiline:
        return "(?d)" + regex
    out: list[str] = []
    i, in_class = 0, False
    while i < len(regex):
        ch = regex[i]
        if ch == "\\" and i + 1 < len(regex):
            out.append(regex[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            # a ']' right after '[' or '[^' is a literal member of the class
            close = i + 1 + (regex[i + 1 : i + 2] == "^")
            if regex[close : close + 1] == "]":
                out.append(regex[i : close + 1])
                i = close + 1
                continue
        elif ch == "$":
            out.append("\\z")
            i += 1
            continue
        out.append(ch)
        i += 1
    return "(?d)" + "".join(out)


def _split_flags(regex: str) -> tuple[str, str]:
    m = re.match(r"\(\?[a-z]+\)", regex)
    return (m.group(0), regex[m.end() :]) if m else ("", regex)


def _duck_key(key: str) -> str:
    # Callers (the field map) refuse keys with quotes or backslashes before this point.
    return key if _PLAIN_KEY.fullmatch(key) else f'"{key}"'


def _spark_key(key: str) -> str:
    return "." + key if _PLAIN_KEY.fullmatch(key) else f"['{key}']"


Dialect = DuckDBDialect | SparkDialect
DUCKDB = DuckDBDialect()


def spark() -> SparkDialect:
    return SparkDialect()


__all__ = [
    "DUCKDB",
    "Dialect",
    "DuckDBDialect",
    "SparkDialect",
    "Step",
    "UnsafeLiteralError",
    "spark",
]
