"""Run podmortem's BigQuery SQL in DuckDB over a table shaped like a log sink's.

Only the lexical layer is translated, token by token: BigQuery string literals ('\\.' with
backslash escapes) become DuckDB literals, the backquoted table name becomes a DuckDB name,
and five type/function spellings are renamed. BigQuery functions the queries call
(REGEXP_CONTAINS, JSON_VALUE, JSON_QUERY_ARRAY, TIMESTAMP_SUB, TIMESTAMP_BUCKET) are DuckDB
macros with BigQuery's meaning. The query's structure (every predicate, EXISTS/UNNEST,
NOT COALESCE, GROUP BY/HAVING) is the one podmortem printed.
"""

from __future__ import annotations

import re
from typing import Any

import duckdb

_TOKEN = re.compile(
    r"'(?:\\.|[^'\\])*'|`[^`]*`|[A-Za-z_][A-Za-z0-9_]*\(\)|[A-Za-z_][A-Za-z0-9_]*|.", re.S
)
_RENAME = {
    "SAFE_CAST": "TRY_CAST",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "CURRENT_TIMESTAMP()": "current_timestamp",
    "IF": "if",
}
_UNESCAPE = re.compile(r"\\(.)", re.S)

MACROS = (
    "CREATE MACRO REGEXP_CONTAINS(s, r) AS regexp_matches(s, r)",
    "CREATE MACRO JSON_VALUE(j, p) AS json_extract_string(j, p)",
    "CREATE MACRO JSON_QUERY_ARRAY(j, p) AS"
    " coalesce(from_json(json_extract(j, p), '[\"JSON\"]'), []::JSON[])",
    "CREATE MACRO JSON_VALUE_ARRAY(j) AS from_json(j, '[\"VARCHAR\"]')",
    "CREATE MACRO TIMESTAMP_SUB(t, i) AS t - i",
    "CREATE MACRO TIMESTAMP_BUCKET(t, i) AS time_bucket(i, t)",
)

SINK_TABLE = """CREATE TABLE sink (
    "timestamp" TIMESTAMPTZ,
    insertId VARCHAR,
    resource STRUCT(type VARCHAR, labels STRUCT(cluster_name VARCHAR)),
    protopayload_auditlog STRUCT(
        serviceName VARCHAR, methodName VARCHAR, resourceName VARCHAR,
        authenticationInfo STRUCT(principalEmail VARCHAR),
        requestMetadata STRUCT(callerIp VARCHAR, callerSuppliedUserAgent VARCHAR),
        status STRUCT(code BIGINT, message VARCHAR),
        requestJson VARCHAR, responseJson VARCHAR),
    labels STRUCT(authorization_k8s_io_decision VARCHAR, command_gke_io_command VARCHAR)
)"""


def to_duckdb(sql: str, table: str = "sink") -> str:
    out = []
    for tok in _TOKEN.findall(sql):
        if tok.startswith("'"):
            text = _UNESCAPE.sub(lambda m: m.group(1), tok[1:-1])
            out.append("'" + text.replace("'", "''") + "'")
        elif tok.startswith("`"):
            out.append(f'"{table}"')
        else:
            out.append(_RENAME.get(tok, tok))
    return "".join(out)


def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for m in MACROS:
        con.execute(m)
    con.execute(SINK_TABLE)
    return con


def run(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(to_duckdb(sql)).fetchall()


# ---------------------------------------------------------------- native Event -> sink row

_HTTP_TO_GRPC = {200: 0, 201: 0, 101: 0, 400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13}


def method_name(event: dict[str, Any]) -> str:
    ref = event.get("objectRef") or {}
    group = ref.get("apiGroup") or "core"
    parts = [
        "io",
        "k8s",
        *reversed(group.replace(".k8s.io", "").split(".")),
        ref.get("apiVersion") or "v1",
    ]
    parts.append(ref.get("resource") or "")
    if ref.get("subresource"):
        parts.append(ref["subresource"])
    parts.append(event.get("verb") or "")
    return ".".join(parts)


def resource_name(event: dict[str, Any]) -> str:
    ref = event.get("objectRef") or {}
    out = [ref.get("apiGroup") or "core", ref.get("apiVersion") or "v1"]
    if ref.get("namespace") and ref.get("resource") != "namespaces":
        out += ["namespaces", ref["namespace"]]
    out.append(ref.get("resource") or "")
    if ref.get("name"):
        out.append(ref["name"])
    if ref.get("subresource"):
        out.append(ref["subresource"])
    return "/".join(out)


def sink_row(event: dict[str, Any], insert_id: str, cluster: str = "prod") -> tuple[Any, ...]:
    """One native Event as the row a GKE log sink would hold for it (the shape of
    notes/audit-formats.md: method and resource names, gRPC status, labels)."""
    import json
    from datetime import datetime
    from urllib.parse import parse_qsl, urlsplit

    code = (event.get("responseStatus") or {}).get("code")
    grpc = _HTTP_TO_GRPC.get(int(code)) if code is not None else None
    annotations = event.get("annotations") or {}
    command = None
    uri = event.get("requestURI") or ""
    cmd = [v for k, v in parse_qsl(urlsplit(uri).query) if k == "command"]
    if cmd:
        command = json.dumps(cmd)
    ts = datetime.fromisoformat(str(event.get("stageTimestamp")).replace("Z", "+00:00"))
    body = event.get("requestObject")
    return (
        ts,
        insert_id,
        {"type": "k8s_cluster", "labels": {"cluster_name": cluster}},
        {
            "serviceName": "k8s.io",
            "methodName": method_name(event),
            "resourceName": resource_name(event),
            "authenticationInfo": {"principalEmail": (event.get("user") or {}).get("username")},
            "requestMetadata": {
                "callerIp": (event.get("sourceIPs") or [None])[0],
                "callerSuppliedUserAgent": event.get("userAgent"),
            },
            "status": {"code": grpc, "message": None},
            "requestJson": json.dumps(body) if body is not None else None,
            "responseJson": None,
        },
        {
            "authorization_k8s_io_decision": annotations.get("authorization.k8s.io/decision"),
            "command_gke_io_command": command,
        },
    )


def log_entry(event: dict[str, Any], insert_id: str, cluster: str = "prod") -> dict[str, Any]:
    """The same Event as the LogEntry that ``gcloud logging read`` returns for it (the shape
    of notes/audit-formats.md): method and resource names, gRPC status (absent on success:
    proto3 JSON omits a zero code), the exec command and authorization decision as labels,
    the body as protoPayload.request."""
    import json
    from urllib.parse import parse_qsl, urlsplit

    code = (event.get("responseStatus") or {}).get("code")
    grpc = _HTTP_TO_GRPC.get(int(code)) if code is not None else None
    verb = event.get("verb") or ""
    log = "data_access" if verb in ("get", "list", "watch") else "activity"
    labels = {}
    decision = (event.get("annotations") or {}).get("authorization.k8s.io/decision")
    if decision is not None:
        labels["authorization.k8s.io/decision"] = decision
    uri = event.get("requestURI") or ""
    cmd = [v for k, v in parse_qsl(urlsplit(uri).query) if k == "command"]
    if cmd:
        labels["command.gke.io/command"] = json.dumps(cmd)
    payload: dict[str, Any] = {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "serviceName": "k8s.io",
        "methodName": method_name(event),
        "resourceName": resource_name(event),
        "authenticationInfo": {"principalEmail": (event.get("user") or {}).get("username")},
        "requestMetadata": {
            "callerIp": (event.get("sourceIPs") or [None])[0],
            "callerSuppliedUserAgent": event.get("userAgent"),
        },
        "status": {"code": grpc} if grpc else {},
    }
    if event.get("requestObject") is not None:
        payload["request"] = event["requestObject"]
    return {
        "insertId": insert_id,
        "logName": f"projects/p/logs/cloudaudit.googleapis.com%2F{log}",
        "resource": {"type": "k8s_cluster", "labels": {"cluster_name": cluster}},
        "timestamp": str(event.get("stageTimestamp")),
        "protoPayload": payload,
        "labels": labels,
    }


def insert(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]) -> None:
    con.executemany("INSERT INTO sink VALUES (?, ?, ?, ?, ?)", rows)
