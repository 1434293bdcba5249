"""Narrow row sets: the rows a group of rules can match, copied once, so that each rule
scans them instead of the whole event table.

A rule is a filtered scan of the table it runs on, and on a million events every string
column it compares costs it milliseconds, whether or not the row can match. The rule
compiler works out what every match of a rule needs (sigma.compile_rule), and the engine
runs the rule over a row set that holds every row it can match. Its SQL is unchanged (but
for its key tests, which read ``pm_keys``), so it matches what it matches on the table:

- **body rows**: a JSON column that is not NULL (:attr:`.AuditRule.needs`). About a third
  of the rules read the request body, which only writes carry (7% of the benchmark's
  events). The copy also records in ``pm_keys`` which of the key names those rules test
  appear in the document, found in one regular-expression pass instead of one substring
  search per rule.
- **kinds of request**: the (verb, resource, subresource) a rule can match
  (:attr:`.AuditRule.allowed`). Most rules name the requests they look at, and most events
  of a cluster (lease renewals, status updates, reads of ordinary objects) are none of
  them.

Each copy holds only the columns its rules read and the row's ``rowid`` (``pm_row_id``).
1M events of the benchmark, matching: 1.15 s on the whole table; 0.97 s with the body rows,
0.85 s with ``pm_keys``, 0.78 s with the kinds (copies included). A copy costs a scan of
the columns it holds, so the kinds set is not made when it would keep most rows.
"""

# ruff: noqa: S608 -- SQL built from our own identifiers (column names of audit.model, the
# temporary table names below) and key names the field map has already checked.
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from podmortem.audit.dialect import DUCKDB
from podmortem.audit.model import COLUMN_NAMES
from podmortem.audit.ruleset import AuditRule

# Fewer rules than this sharing a row set scan the table itself.
MIN_RULES = 2
# On a smaller table every rule scans it: the copies and the count of kinds (a few queries)
# cost more than the scans they save, and the watch mode runs the rules on every chunk.
# At 400k events the body rows still paid (match 0.48 -> 0.42 s), the kinds about broke even.
MIN_ROWS = 50_000
# The kinds row set is not made when the log has more distinct (verb, resource,
# subresource) than this (requests for made-up resources), or when it would hold more than
# this share of the rows: copying them would cost more than the scans it saves.
MAX_KINDS = 20_000
MAX_KIND_SHARE = 0.5
KEYS = "pm_keys"
ROW_ID = "pm_row_id"
_KINDS = "_pm_kinds"


@dataclass(frozen=True, slots=True)
class RowSet:
    """A temporary table of some rows of the event table: those that have the JSON
    ``column``, or (``column`` None) those of the kinds of request its rules can match."""

    name: str
    column: str | None = None
    keys: frozenset[str] = frozenset()

    def rule_sql(self, sql: str) -> str:
        """A rule's SQL for this table: each test of a recorded key name in ``column``'s
        text (exactly as the dialect wrote it) reads ``pm_keys`` instead."""
        for key in sorted(self.keys):
            test = DUCKDB.json_has_key(self.column or "", key)
            if test is not None:
                sql = sql.replace(test, f"list_contains({KEYS}, {DUCKDB.string(key)})")
        return sql


def build(
    con: duckdb.DuckDBPyConnection,
    rules: Sequence[AuditRule],
    table: str,
    also_reads: Sequence[tuple[str, Sequence[str]]] = (),
) -> dict[str, RowSet]:
    """The row sets for ``rules`` over ``table``: rule key -> the row set it runs on (a
    rule not in the result scans the table). A rule whose SQL contains one of the
    ``also_reads`` markers reads those columns too (the actor class, joined on username
    and groups). Should DuckDB fail to make one (memory), every rule scans the table."""
    made: list[str] = []  # tables, named before they are made
    try:
        return _build(con, rules, table, also_reads, made)
    except duckdb.Error:
        for name in made:
            con.execute(f"DROP TABLE IF EXISTS {name}")
        return {}


def _build(
    con: duckdb.DuckDBPyConnection,
    rules: Sequence[AuditRule],
    table: str,
    also_reads: Sequence[tuple[str, Sequence[str]]],
    made: list[str],
) -> dict[str, RowSet]:
    size = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    if size is None or int(size[0]) < MIN_ROWS:
        return {}
    groups: dict[str, list[AuditRule]] = {}
    for r in rules:
        column = first_column(r)
        if column is not None and r.sql:
            groups.setdefault(column, []).append(r)
    out: dict[str, RowSet] = {}
    for column, members in sorted(groups.items()):
        if len(members) < MIN_RULES:
            continue
        keys = frozenset(k for r in members for c, k in r.needs if c == column and k)
        rs = RowSet(f"_pm_rows_{len(made)}", column, keys)
        made.append(rs.name)
        extra = f", {_keys_sql(column, keys)} AS {KEYS}" if keys else ""
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {rs.name} AS SELECT rowid AS {ROW_ID},"
            f' {_reads(members, also_reads)}{extra} FROM "{table}" WHERE {column} IS NOT NULL'
        )
        out.update((r.key, rs) for r in members)
    rest = [r for r in rules if r.key not in out and r.sql and r.allowed]
    if len(rest) >= MIN_RULES:
        made.append(f"_pm_rows_{len(made)}")
        kinds = _kinds(con, rest, table, also_reads, made[-1])
        if kinds is not None:
            out.update((r.key, kinds) for r in rest)
    return out


def drop(con: duckdb.DuckDBPyConnection, rowsets: dict[str, RowSet]) -> None:
    for name in sorted({rs.name for rs in rowsets.values()}):
        con.execute(f"DROP TABLE IF EXISTS {name}")


def first_column(rule: AuditRule) -> str | None:
    """The JSON column whose row set the rule runs on, if it needs one."""
    return next((c for c, k in rule.needs if k is None), None)


def _reads(rules: Sequence[AuditRule], also_reads: Sequence[tuple[str, Sequence[str]]]) -> str:
    """The columns (SQL list, table order) that ``rules`` read."""
    sqls = [r.sql or "" for r in rules]
    reads = {c for c in COLUMN_NAMES if any(f'"{c}"' in s for s in sqls)}
    for marker, columns in also_reads:
        if any(marker in s for s in sqls):
            reads.update(columns)
    return ", ".join(f'"{c}"' for c in COLUMN_NAMES if c in reads)


def _kinds(
    con: duckdb.DuckDBPyConnection,
    rules: Sequence[AuditRule],
    table: str,
    also_reads: Sequence[tuple[str, Sequence[str]]],
    name: str,
) -> RowSet | None:
    """The rows whose (verb, resource, subresource) one of ``rules`` allows
    (:attr:`.AuditRule.allowed`): most rules name the requests they look at, and most
    events of a cluster (lease renewals, status updates, reads of ordinary objects) are
    none of them. The log's distinct kinds are counted (one aggregation), each is judged
    here against every rule, and the rows of the kinds kept are copied with a semi-join.
    None when it would not pay (see ``MAX_KINDS``, ``MAX_KIND_SHARE``)."""
    columns = sorted({c for r in rules for c, _ in r.allowed})
    listed = ", ".join(columns)
    counts = con.execute(
        f'SELECT {listed}, count(*) FROM "{table}" GROUP BY ALL LIMIT {MAX_KINDS + 1}'
    ).fetchall()
    if len(counts) > MAX_KINDS:
        return None
    allowed = [{c: frozenset(v) for c, v in r.allowed} for r in rules]

    def wanted(kind: tuple[object, ...]) -> bool:
        values = dict(zip(columns, kind, strict=True))
        return any(all(values[c] in vs for c, vs in a.items()) for a in allowed)

    wanted_rows = [row for row in counts if wanted(tuple(row[:-1]))]
    keep = [tuple(row[:-1]) for row in wanted_rows]
    kept = sum(int(row[-1]) for row in wanted_rows)
    if kept > MAX_KIND_SHARE * sum(int(row[-1]) for row in counts):
        return None
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_KINDS} ("
        + ", ".join(f"{c} VARCHAR" for c in columns)
        + ")"
    )
    try:
        if keep:
            marks = ", ".join("?" for _ in columns)
            con.executemany(f"INSERT INTO {_KINDS} VALUES ({marks})", keep)
        on = " AND ".join(f"e.{c} IS NOT DISTINCT FROM k.{c}" for c in columns)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT e.rowid AS {ROW_ID},"
            f' {_reads(rules, also_reads)} FROM "{table}" e SEMI JOIN {_KINDS} k ON {on}'
        )
    finally:
        con.execute(f"DROP TABLE IF EXISTS {_KINDS}")
    return RowSet(name)


def _keys_sql(column: str, keys: frozenset[str]) -> str:
    """The recorded key names whose quoted name appears in the text. Key tokens of a JSON
    document never share a character (a separator stands between two strings), so the
    non-overlapping matches of ``"(k1|k2|...)"`` find every one that is there; a key name
    inside a string value is found too, which only lets a row through to the full test."""
    alternatives = "|".join(re.escape(k) for k in sorted(keys))
    pattern = DUCKDB.string('"(' + alternatives + ')"')
    return f"regexp_extract_all({column}, {pattern}, 1)"
