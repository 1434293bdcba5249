"""Sigma correlation rules (``event_count``, ``value_count``) as SQL window queries over the
hit table: bursts of forbidden or anonymous requests, secret enumeration, bulk reads.

Windows slide (``RANGE ... PRECEDING``), they are not fixed buckets, so a burst that straddles
a bucket boundary is still seen. Each request counts once even when the log holds several
of its stages. One finding per group (actor, source IP, ...) reports the peak count, the
moment the threshold was first crossed, and the audit IDs of the requests in the windows
that crossed it.
"""

# ruff: noqa: S608 -- SQL is generated here by design: rule values reach it only through
# fieldmap.sql_string (quoted literals) and field names only through the field map's
# whitelist, never from evidence.
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb

from podmortem.audit.actors import ActorPolicy
from podmortem.audit.fieldmap import FieldMap, sql_string
from podmortem.audit.model import COLUMN_NAMES
from podmortem.findings import Finding, Provenance

if TYPE_CHECKING:
    from podmortem.audit.engine import Suppressed
    from podmortem.audit.ruleset import AuditRule

MAX_AUDIT_IDS = 1000
_EV = "_pm_correlation_requests"
GATHERED = "_pm_correlation_hits"
# Columns every correlation reads from an event (besides its group and value fields).
_BASE_COLUMNS = (
    "audit_id",
    "event_key",
    "stage_timestamp",
    "request_received",
    "username",
    "user_groups",
    "source_ips",
)


def _scalar(fields: FieldMap, name: str) -> str:
    fe = fields.resolve(name)
    # A list-valued group key (sourceIPs) groups by the whole list, written out.
    return f"array_to_string({fe.sql}, ',')" if fe.kind == "list" else f"CAST({fe.sql} AS VARCHAR)"


def gather(
    con: duckdb.DuckDBPyConnection,
    rules: Sequence[AuditRule],
    rule_indexes: Sequence[int],
    *,
    table: str,
    hits: str,
    fields: FieldMap | None = None,
) -> str:
    """The hit rows of every correlation's base rules, read from ``table`` in one scan, into
    a temporary table (``r``, ``row_id`` and the columns the correlations read) that
    :func:`run_correlation` takes as ``gathered``. Each correlation scanned the event table
    for its own hits, about 30 ms per million events each, whatever the number of hits.
    Drop it with :func:`drop_gathered`."""
    fields = fields or FieldMap.default()
    exprs = [
        _scalar(fields, f)
        for r in rules
        if r.correlation is not None
        for f in (*r.correlation.group_by, *filter(None, [r.correlation.value_field]))
    ]
    reads = [c for c in COLUMN_NAMES if c in _BASE_COLUMNS or any(f'"{c}"' in x for x in exprs)]
    cols = ", ".join(f'e."{c}"' for c in reads)
    rules_in = ", ".join(str(i) for i in sorted(set(rule_indexes))) or "NULL"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {GATHERED} AS SELECT h.r, h.row_id, {cols}"
        f' FROM "{table}" e JOIN {hits} h ON e.rowid = h.row_id WHERE h.r IN ({rules_in})'
    )
    return GATHERED


def drop_gathered(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"DROP TABLE IF EXISTS {GATHERED}")


def run_correlation(
    con: duckdb.DuckDBPyConnection,
    rule: AuditRule,
    *,
    rule_indexes: list[int],
    table: str,
    hits: str,
    policy: ActorPolicy,
    fields: FieldMap | None = None,
    gathered: str | None = None,
) -> tuple[list[Finding], list[Suppressed]]:
    """The findings of one correlation rule over the hits of ``rule_indexes`` (its base
    rules) in the hit table, reading the events from ``table``, or from ``gathered`` when
    :func:`gather` has read them."""
    from podmortem.audit.engine import Suppressed

    spec = rule.correlation
    if spec is None or not rule_indexes:
        return [], []
    fields = fields or FieldMap.default()
    groups = [_scalar(fields, g) for g in spec.group_by]
    gcols = [f"g{i}" for i in range(len(groups))]
    gsel = "".join(f", {expr} AS {c}" for expr, c in zip(groups, gcols, strict=True))
    part = f"PARTITION BY {', '.join(gcols)}" if gcols else ""
    value = _scalar(fields, spec.value_field) if spec.value_field else None
    vsel = f", {value} AS v" if value else ""
    expected = rule.expected_actors if rule.expected_actors is not None else policy.default_expected
    exclude = (
        f"WHERE actor_class NOT IN ({', '.join(sql_string(c) for c in sorted(expected))})"
        if expected
        else ""
    )
    window = f"RANGE BETWEEN INTERVAL {int(spec.timespan_s)} SECOND PRECEDING AND CURRENT ROW"
    measure = "count(DISTINCT v)" if value else "count(*)"
    rules_in = ", ".join(str(i) for i in rule_indexes)
    if gathered is not None:
        source, row_id = f"{gathered} e WHERE e.r IN ({rules_in})", "row_id"
    else:
        source = f'"{table}" e WHERE e.rowid IN (SELECT row_id FROM {hits} WHERE r IN ({rules_in}))'
        row_id = "rowid"
    # The requests behind the hits, once: both queries below read them (as a CTE they were
    # evaluated for each, the actor-class CASE on every hit). A temporary table of this
    # connection, replaced by the next correlation and dropped at the end.
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {_EV} AS
    WITH q AS MATERIALIZED (
        SELECT coalesce(e.audit_id, e.event_key) AS rid,
               coalesce(e.stage_timestamp, e.request_received) AS ts,
               coalesce(e.username, '') AS actor, e.username, e.user_groups,
               e.source_ips {gsel} {vsel}
        FROM {source}
        -- the earliest event of the request; the first read if two are as early
        QUALIFY row_number() OVER (PARTITION BY rid ORDER BY ts, e.{row_id}) = 1
    ), c AS ({policy.classes_of("q")})
    SELECT q.* EXCLUDE (username, user_groups), c.actor_class
    FROM q JOIN c ON {policy.joins("c", "q")}
    """)
    sql = f"""
    WITH kept AS (
        SELECT * FROM {_EV} {exclude}
    ), w AS (
        SELECT *, {measure} OVER ({part} ORDER BY ts {window}) AS n FROM kept
        WHERE ts IS NOT NULL
    ), crossed AS (
        SELECT {", ".join(gcols) + "," if gcols else ""}
               max(n) AS peak,
               min(ts) FILTER (n {spec.op} {spec.count}) AS first_cross,
               max(ts) FILTER (n {spec.op} {spec.count}) AS last_cross
        FROM w {"GROUP BY " + ", ".join(gcols) if gcols else ""}
        HAVING max(n) {spec.op} {spec.count}
    )
    SELECT {", ".join("c." + g for g in gcols) + "," if gcols else ""}
           c.peak, c.first_cross, c.last_cross,
           count(DISTINCT k.rid),
           list_slice(list(DISTINCT k.rid ORDER BY k.rid), 1, {MAX_AUDIT_IDS}),
           list_sort(list_distinct(list(k.actor))),
           list_sort(list_distinct(list(k.actor_class))),
           list_sort(list_distinct(flatten(list(k.source_ips))))
    FROM crossed c JOIN kept k
      ON {" AND ".join(f"k.{g} IS NOT DISTINCT FROM c.{g}" for g in gcols) or "TRUE"}
     AND k.ts BETWEEN c.first_cross - INTERVAL {int(spec.timespan_s)} SECOND AND c.last_cross
    GROUP BY ALL
    ORDER BY c.first_cross{"".join(", c." + g for g in gcols)}
    """
    findings: list[Finding] = []
    suppressed: list[Suppressed] = []
    ng = len(gcols)
    for row in con.execute(sql).fetchall():
        gvals = [str(x) if x is not None else "" for x in row[:ng]]
        peak, first, last, requests = int(row[ng]), row[ng + 1], row[ng + 2], int(row[ng + 3])
        audit_ids = [str(x) for x in row[ng + 4] or []]
        actors = sorted(str(x) for x in row[ng + 5] or [])
        classes = sorted(str(x) for x in row[ng + 6] or [])
        ips = [str(x) for x in row[ng + 7] or [] if x is not None]
        group_desc = ", ".join(f"{f}={v}" for f, v in zip(spec.group_by, gvals, strict=True))
        actor = actors[0] if len(actors) == 1 else ", ".join(actors[:5])
        actor_class = classes[0] if len(classes) == 1 else "mixed"
        what = f"distinct {spec.value_field}" if spec.value_field else "requests"
        severity = policy.adjust(rule.level, actor_class) if actor_class != "mixed" else rule.level
        extra: dict[str, Any] = {
            "actor": actor,
            "actor_class": actor_class,
            "source_ips": ips,
            "object": group_desc,
            "audit_ids": audit_ids,
            "audit_ids_total": requests,
            "requests": requests,
            "peak": peak,
            "window_seconds": spec.timespan_s,
            "threshold": f"{spec.op} {spec.count}",
            "group": dict(zip(spec.group_by, gvals, strict=True)),
            "first_seen": first.isoformat() if first else None,
            "last_seen": last.isoformat() if last else None,
            "rule_origin": rule.origin,
            "rule_author": rule.author,
            "base_level": str(rule.level),
            "correlation": spec.type,
        }
        findings.append(
            Finding(
                rule_id=rule.rule_id,
                title=rule.title,
                severity=severity,
                techniques=rule.techniques,
                time=first,
                subject=actor,
                summary=(
                    f"{peak} {what} within {spec.timespan_s}s ({group_desc or 'all'});"
                    f" {requests} request(s) in the burst"
                ),
                evidence=tuple(audit_ids),
                provenance=Provenance(
                    source="file",
                    parser="podmortem.audit.correlate",
                    location=(rule.origin, rule.path),
                ),
                extra=extra,
            )
        )
    if expected:
        # What the expected actors did is not counted towards a burst: say how much.
        classes_in = ", ".join(sql_string(c) for c in sorted(expected))
        for actor, actor_class, n in con.execute(
            f"SELECT actor, actor_class, count(*) FROM {_EV}"
            f" WHERE actor_class IN ({classes_in}) GROUP BY ALL ORDER BY 3 DESC"
        ).fetchall():
            suppressed.append(Suppressed(rule.rule_id, str(actor), str(actor_class), int(n)))
    con.execute(f"DROP TABLE IF EXISTS {_EV}")
    return findings, suppressed
