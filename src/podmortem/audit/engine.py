"""Run a rule set over the ``audit_events`` table in DuckDB and turn matches into findings.

All detection rules run in one ``UNION ALL`` query (each branch a filtered scan that DuckDB
runs in parallel and short-circuits on the cheap columns first), each over the rows it can
match (:mod:`podmortem.audit.rowsets`), giving a narrow ``(rule, row)`` hit table.
Everything after that works on the hits only: findings are grouped per rule + actor +
object with their counts and audit IDs, actors are classified, expected behaviour of system
principals is counted as suppressed rather than reported, and correlation rules count hits
per actor or source IP over sliding time windows.
"""

# ruff: noqa: S608 -- SQL is generated here by design: rule values reach it only through
# fieldmap.sql_string (quoted literals) and field names only through the field map's
# whitelist, never from evidence.
from __future__ import annotations

import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import inf
from typing import Any

import duckdb

from podmortem.audit import correlate, rowsets
from podmortem.audit.actors import ActorPolicy
from podmortem.audit.fieldmap import FieldMap
from podmortem.audit.model import TABLE
from podmortem.audit.ruleset import AuditRule, RuleError, RuleSet
from podmortem.findings import Finding, Provenance, Severity

HITS = "audit_hits"
ACTORS = "audit_actor_classes"
MAX_AUDIT_IDS = 1000  # per finding; the true count is always given alongside
# A rule matching thousands of distinct (actor, object) pairs is one story told thousands of
# times: the earliest are reported, the rest counted (and said so).
MAX_FINDINGS_PER_RULE = 500
# Event time: the stage timestamp, else when the request was received.
TS = 'coalesce("stage_timestamp", "request_received")'


@dataclass(frozen=True, slots=True)
class Suppressed:
    """Matches of a rule by an actor whose class makes them expected behaviour."""

    rule_id: str
    actor: str
    actor_class: str
    requests: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "actor": self.actor,
            "actor_class": self.actor_class,
            "requests": self.requests,
        }


@dataclass(slots=True)
class EngineResult:
    findings: list[Finding] = field(default_factory=list)
    suppressed: list[Suppressed] = field(default_factory=list)
    runtime_errors: list[RuleError] = field(default_factory=list)
    hits_per_rule: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # rule_id -> findings not reported because the rule passed MAX_FINDINGS_PER_RULE
    capped: dict[str, int] = field(default_factory=dict)


def run(
    con: duckdb.DuckDBPyConnection,
    ruleset: RuleSet,
    *,
    table: str = TABLE,
    policy: ActorPolicy | None = None,
) -> EngineResult:
    policy = policy or ActorPolicy.default_policy()
    result = EngineResult()
    t0 = _time.perf_counter()
    ok_rules = _match(con, ruleset.detections, table, result, policy)
    result.seconds["match"] = _time.perf_counter() - t0
    return summarise_hits(con, ruleset, ok_rules, table=table, policy=policy, result=result)


def summarise_hits(
    con: duckdb.DuckDBPyConnection,
    ruleset: RuleSet,
    ok_rules: Sequence[AuditRule],
    *,
    table: str,
    policy: ActorPolicy,
    result: EngineResult,
) -> EngineResult:
    """Findings from a filled hit table (``HITS``: rule index into ``ruleset.detections``,
    rowid in ``table``): grouping, actor classes and suppression, correlations. Another
    engine that matched elsewhere (Spark) fills the hit table and calls this, so that both
    engines turn the same matches into the same findings."""
    detections = ruleset.detections
    t1 = _time.perf_counter()
    index = {r.key: i for i, r in enumerate(detections)}
    for row in con.execute(f"SELECT r, count(*) FROM {HITS} GROUP BY r").fetchall():
        result.hits_per_rule[detections[int(row[0])].rule_id] = int(row[1])
    emitting = [index[r.key] for r in ok_rules if r.generate]
    if emitting:
        _group(con, detections, emitting=emitting, table=table, policy=policy, result=result)
    result.seconds["group"] = _time.perf_counter() - t1

    t2 = _time.perf_counter()
    correlations = ruleset.correlations
    base = {
        c.key: [index[k] for k in c.correlation.rules if k in index] if c.correlation else []
        for c in correlations
    }
    gathered = None
    if correlations:
        all_base = [i for ids in base.values() for i in ids]
        gathered = correlate.gather(con, correlations, all_base, table=table, hits=HITS)
    try:
        for corr in correlations:
            try:
                found, supp = correlate.run_correlation(
                    con,
                    corr,
                    rule_indexes=base[corr.key],
                    table=table,
                    hits=HITS,
                    policy=policy,
                    gathered=gathered,
                )
            except duckdb.Error as exc:
                result.runtime_errors.append(RuleError(corr.path, _one_line(exc)))
                continue
            result.findings.extend(found)
            result.suppressed.extend(supp)
    finally:
        correlate.drop_gathered(con)
    result.seconds["correlate"] = _time.perf_counter() - t2
    result.suppressed = _merge_suppressed(result.suppressed)
    result.findings.sort(
        key=lambda f: (-int(f.severity), f.time.timestamp() if f.time else inf, f.rule_id)
    )
    return result


def _match(
    con: duckdb.DuckDBPyConnection,
    rules: Sequence[AuditRule],
    table: str,
    result: EngineResult,
    policy: ActorPolicy,
) -> list[AuditRule]:
    """Fill the hit table; a rule whose SQL fails at run time is reported and left out."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {HITS} (r INTEGER, row_id BIGINT)")
    branches = [(i, r) for i, r in enumerate(rules) if r.sql]
    if not branches:
        return []
    # Rules that test `actorClass` would evaluate the class CASE (dozens of patterns) on
    # every row, and DuckDB does not reliably run it after the cheap conditions. The class
    # depends only on (username, groups): classify each distinct pair once and join.
    marker = FieldMap.default().resolve("actorClass").sql
    if any(marker in (r.sql or "") for _, r in branches):
        con.execute(f"CREATE OR REPLACE TEMP TABLE {ACTORS} AS {policy.classes_of(table)}")
    narrow = rowsets.build(
        con, [r for _, r in branches], table, [(marker, ("username", "user_groups"))]
    )

    def select(i: int, r: AuditRule) -> str:
        sql = r.sql or "FALSE"
        source, row_id = f'"{table}"', "rowid"
        rs = narrow.get(r.key)
        if rs is not None:
            source, row_id, sql = rs.name, rowsets.ROW_ID, rs.rule_sql(sql)
        if marker in sql:
            return (
                f"SELECT {i} AS r, e.{row_id} AS row_id FROM {source} e JOIN {ACTORS} a"
                f" ON {policy.joins('a', 'e')} WHERE {sql.replace(marker, 'a.actor_class')}"
            )
        return f"SELECT {i} AS r, {row_id} AS row_id FROM {source} WHERE {sql}"

    try:
        try:
            con.execute(
                f"INSERT INTO {HITS} " + " UNION ALL ".join(select(i, r) for i, r in branches)
            )
            return [r for _, r in branches]
        except duckdb.Error:
            pass
        # One rule broke the batch (e.g. a regular expression RE2 refuses): isolate it.
        con.execute(f"DELETE FROM {HITS}")
        ok = []
        for i, r in branches:
            try:
                con.execute(f"INSERT INTO {HITS} {select(i, r)}")
                ok.append(r)
            except duckdb.Error as exc:
                result.runtime_errors.append(RuleError(r.path, _one_line(exc)))
        return ok
    finally:
        rowsets.drop(con, narrow)


def object_sql(alias: str = "") -> str:
    """``resource[/subresource] namespace/name``; ``namespace/*`` when the request named no
    object (list, or create with a server-generated name); for non-resource requests, the
    URI path (query dropped, so probes of one endpoint group together)."""
    a = alias
    return (
        f"CASE WHEN {a}obj_resource IS NOT NULL THEN "
        f"{a}obj_resource || coalesce('/' || {a}obj_subresource, '') || ' ' || "
        f"CASE WHEN {a}obj_namespace IS NOT NULL "
        f"THEN {a}obj_namespace || '/' || coalesce({a}obj_name, '*') "
        f"ELSE coalesce({a}obj_name, '*') END "
        f"ELSE split_part(coalesce({a}request_uri, ''), '?', 1) END"
    )


def _group(
    con: duckdb.DuckDBPyConnection,
    rules: Sequence[AuditRule],
    *,
    emitting: list[int],
    table: str,
    policy: ActorPolicy,
    result: EngineResult,
) -> None:
    rule_list = ", ".join(str(i) for i in emitting)
    sql = f"""
    WITH h0 AS MATERIALIZED (
        -- read twice (identities, rows) and stored once: only the columns used below
        SELECT h.r, e.username, e.user_groups, e.source_ips, e.verb, e.user_agent,
               e.exec_command, e.provider, e.cluster, e.response_code, e.source_file,
               e.truncated, coalesce(e.stage_timestamp, e.request_received) AS ts,
               {object_sql("e.")} AS object,
               coalesce(e.audit_id, e.event_key) AS rid,
               -- the controller that made a pod (ReplicaSet/x): who to look at next
               json_extract_string(e.request_object, '$.metadata.ownerReferences[0].kind')
               || '/' ||
               json_extract_string(e.request_object, '$.metadata.ownerReferences[0].name')
                 AS owner
        FROM {HITS} h JOIN "{table}" e ON e.rowid = h.row_id
        WHERE h.r IN ({rule_list})
    ), c AS ({policy.classes_of("h0")}
    ), h AS (
        SELECT h0.*, c.actor_class FROM h0 JOIN c ON {policy.joins("c", "h0")}
    )
    SELECT r, coalesce(username, '') AS actor, actor_class, object,
           count(DISTINCT rid) AS requests,
           min(ts), max(ts),
           list_slice(list(DISTINCT rid ORDER BY rid), 1, {MAX_AUDIT_IDS}),
           list_sort(list_distinct(flatten(list(source_ips)))),
           list_sort(list_distinct(list(verb))),
           list_sort(list_distinct(list(user_agent))),
           list_sort(list_distinct(list(array_to_string(exec_command, ' '))
                         FILTER (exec_command IS NOT NULL))),
           list_sort(list_distinct(list(provider))),
           list_sort(list_distinct(list(cluster))),
           list_sort(list_distinct(list(response_code))),
           list_sort(list_distinct(list(source_file))),
           bool_or(coalesce(truncated, FALSE)),
           list_sort(list_distinct(list(owner)))
    FROM h
    GROUP BY r, actor, actor_class, object
    ORDER BY r, min(ts), actor, object, actor_class
    """
    per_rule: dict[str, int] = {}
    for row in con.execute(sql).fetchall():
        rule = rules[int(row[0])]
        actor, actor_class, obj, requests = str(row[1]), str(row[2]), str(row[3]), int(row[4])
        expected = (
            rule.expected_actors if rule.expected_actors is not None else policy.default_expected
        )
        if actor_class in expected:
            result.suppressed.append(Suppressed(rule.rule_id, actor, actor_class, requests))
            continue
        per_rule[rule.rule_id] = per_rule.get(rule.rule_id, 0) + 1
        if per_rule[rule.rule_id] > MAX_FINDINGS_PER_RULE:
            result.capped[rule.rule_id] = result.capped.get(rule.rule_id, 0) + 1
            continue
        audit_ids = [str(x) for x in row[7] or []]
        commands = [str(c) for c in row[11] or []]
        verbs = sorted(str(v) for v in row[9] or [] if v)
        severity = policy.adjust(rule.level, actor_class)
        summary = f"{actor or '(no identity)'} ({actor_class}) {'/'.join(verbs) or '?'} {obj}"
        if commands:
            summary += f"; command: {commands[0]}" + (
                f" (+{len(commands) - 1} more)" if len(commands) > 1 else ""
            )
        summary += f"; {requests} request(s)"
        result.findings.append(
            Finding(
                rule_id=rule.rule_id,
                title=rule.title,
                severity=severity,
                techniques=rule.techniques,
                time=row[5],
                subject=actor,
                summary=summary,
                evidence=tuple(audit_ids),
                provenance=Provenance(
                    source="file",
                    parser="podmortem.audit.engine",
                    artifact=(row[15][0] if row[15] else None),
                    location=(rule.origin, rule.path),
                ),
                extra={
                    "actor": actor,
                    "actor_class": actor_class,
                    "source_ips": [str(x) for x in row[8] or [] if x is not None],
                    "object": obj,
                    "audit_ids": audit_ids,
                    "audit_ids_total": requests,
                    "requests": requests,
                    "first_seen": row[5].isoformat() if row[5] else None,
                    "last_seen": row[6].isoformat() if row[6] else None,
                    "verbs": verbs,
                    "user_agents": [str(x) for x in row[10] or [] if x is not None][:10],
                    "commands": commands[:20],
                    "providers": [str(x) for x in row[12] or [] if x is not None],
                    "clusters": [str(x) for x in row[13] or [] if x is not None],
                    "response_codes": sorted(int(x) for x in row[14] or [] if x is not None),
                    "truncated_evidence": bool(row[16]),
                    "owners": [str(x) for x in row[17] or [] if x is not None][:10],
                    "rule_origin": rule.origin,
                    "rule_author": rule.author,
                    "base_level": str(rule.level),
                },
            )
        )


def _merge_suppressed(items: list[Suppressed]) -> list[Suppressed]:
    """One line per rule and actor (a controller touches thousands of objects)."""
    totals: dict[tuple[str, str, str], int] = {}
    for s in items:
        key = (s.rule_id, s.actor, s.actor_class)
        totals[key] = totals.get(key, 0) + s.requests
    merged = [Suppressed(r, a, c, n) for (r, a, c), n in totals.items()]
    return sorted(merged, key=lambda s: (-s.requests, s.rule_id, s.actor))


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())[:500]


__all__ = ["HITS", "EngineResult", "Severity", "Suppressed", "object_sql", "run", "summarise_hits"]
