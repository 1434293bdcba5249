"""The normalized audit event: every reader (native, EKS, AKS, GKE) produces rows of this
one table, in the native ``audit.k8s.io/v1`` Event vocabulary, with provenance.

This schema is the contract between ``audit.sources`` (which fill it) and ``audit.engine``
(which runs rules over it). Columns mirror native Event fields; nested objects that rules
inspect (request/response bodies, user.extra, annotations) are kept as JSON so that
Sigma field paths such as ``requestObject.spec.hostPID`` compile to DuckDB JSON
expressions. Nothing a provider wrote is lost by normalization: ``source_file`` and
``source_line`` locate the original record (for GKE, the LogEntry) in the input or the case
artifact, and ``raw`` holds a copy of it where one is needed (a rule searches it, the reader
salvaged the record, or the examiner asked: ``analyze(keep_raw=...)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import duckdb

TABLE = "audit_events"

# (column, DuckDB type, meaning). Order matters: it is the INSERT order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("event_key", "VARCHAR", "unique per event: provider:auditID:stage or a file offset"),
    ("audit_id", "VARCHAR", "auditID (GKE: insertId / operation.id)"),
    ("stage", "VARCHAR", "RequestReceived|ResponseStarted|ResponseComplete|Panic"),
    ("level", "VARCHAR", "None|Metadata|Request|RequestResponse"),
    ("verb", "VARCHAR", "get, list, create, ... (GKE: last methodName segment)"),
    ("request_uri", "VARCHAR", "requestURI; GKE has none"),
    ("username", "VARCHAR", "user.username"),
    ("user_uid", "VARCHAR", "user.uid"),
    ("user_groups", "VARCHAR[]", "user.groups"),
    ("user_extra", "JSON", "user.extra (credential-id, pod-name, EKS arn/accessKeyId, ...)"),
    ("impersonated_user", "JSON", "impersonatedUser object or NULL"),
    ("source_ips", "VARCHAR[]", "sourceIPs; all but the last are client-settable"),
    ("user_agent", "VARCHAR", "userAgent (untrusted)"),
    ("obj_resource", "VARCHAR", "objectRef.resource"),
    ("obj_namespace", "VARCHAR", "objectRef.namespace"),
    ("obj_name", "VARCHAR", "objectRef.name"),
    ("obj_subresource", "VARCHAR", "objectRef.subresource"),
    ("obj_api_group", "VARCHAR", "objectRef.apiGroup ('' for core)"),
    ("obj_api_version", "VARCHAR", "objectRef.apiVersion"),
    ("response_code", "INTEGER", "responseStatus.code as HTTP (GKE gRPC codes mapped)"),
    ("response_status", "VARCHAR", "responseStatus.status"),
    ("response_reason", "VARCHAR", "responseStatus.reason"),
    ("response_message", "VARCHAR", "responseStatus.message"),
    ("request_object", "JSON", "requestObject"),
    ("response_object", "JSON", "responseObject"),
    ("annotations", "JSON", "annotations (GKE: labels)"),
    ("request_received", "TIMESTAMPTZ", "requestReceivedTimestamp"),
    ("stage_timestamp", "TIMESTAMPTZ", "stageTimestamp (event time used for ordering)"),
    ("exec_command", "VARCHAR[]", "exec/attach command reconstructed from requestURI or GKE label"),
    ("exec_container", "VARCHAR", "container= from requestURI"),
    ("truncated", "BOOLEAN", "the record was cut by the provider; fields are salvaged"),
    ("provider", "VARCHAR", "native|eks|aks|gke"),
    ("envelope", "VARCHAR", "e.g. jsonl, eventlist, eks-filter-log-events, aks-records, gke-array"),
    ("cluster", "VARCHAR", "cluster name when the envelope says it"),
    ("log_name", "VARCHAR", "the provider's log: GKE logName, AKS category, EKS log stream"),
    ("source_file", "VARCHAR", "input file (as given)"),
    ("source_line", "BIGINT", "line number (1-based) or record index inside the file"),
    ("raw", "JSON", "the original record as read, untouched, where a copy is kept"),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c[0] for c in COLUMNS)

# The JSON columns that rules read by key. Their documents are stored as DuckDB's JSON
# writer writes a parsed document: minified, escapes decoded (``"privil\u0065ged"`` is
# stored as ``"privileged"``). Every reader parses with DuckDB; a Parquet dataset and the
# slow path below re-write the text with ``json()``. The rule compiler relies on it: a
# document whose text lacks a key's quoted name has no such key (sigma.compile_rule).
# ``raw`` is the record as read, untouched, and is not in this list.
NORMALIZED_JSON: frozenset[str] = frozenset(
    {"user_extra", "impersonated_user", "request_object", "response_object", "annotations"}
)


def create_table(con: duckdb.DuckDBPyConnection, name: str = TABLE) -> None:
    """Create the table, or add the columns a table made by an earlier version lacks (a
    case index analysed again): every insert names its columns, so their order is free."""
    cols = ", ".join(f'"{c}" {t}' for c, t, _ in COLUMNS)
    con.execute(f'CREATE TABLE IF NOT EXISTS "{name}" ({cols})')
    add_missing_columns(con, name)


def add_missing_columns(
    con: duckdb.DuckDBPyConnection, name: str, database: str | None = None
) -> None:
    """Add to table ``name`` (of the attached ``database``, else the current one) the event
    columns it lacks, at the end: it was made by an earlier version."""
    where = (
        "database_name = ? AND schema_name = 'main'"
        if database
        else "database_name = current_database() AND schema_name = current_schema()"
    )
    have = {
        str(r[0])
        for r in con.execute(
            f"SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND {where}",  # noqa: S608 - fixed SQL text, values bound
            [name, database] if database else [name],
        ).fetchall()
    }
    qualified = f'"{database}"."{name}"' if database else f'"{name}"'
    for c, t, _ in COLUMNS:
        if c not in have:
            con.execute(f'ALTER TABLE {qualified} ADD COLUMN "{c}" {t}')


COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMN_NAMES)


def insert_rows(
    con: duckdb.DuckDBPyConnection, rows: Iterable[Mapping[str, Any]], name: str = TABLE
) -> int:
    """Slow path: insert dict rows (missing keys become NULL). Readers with a faster route
    (DuckDB's own JSON reader) may load directly, as long as they fill these columns."""
    batch = [tuple(r.get(c) for c in COLUMN_NAMES) for r in rows]
    if batch:
        # JSON text is stored as DuckDB writes it, as every reader stores it (NORMALIZED)
        placeholders = ",".join("json(?)" if c in NORMALIZED_JSON else "?" for c in COLUMN_NAMES)
        # Table names are ours (never from evidence); values go through placeholders.
        con.executemany(f'INSERT INTO "{name}" ({COLUMN_LIST}) VALUES ({placeholders})', batch)  # noqa: S608
    return len(batch)
