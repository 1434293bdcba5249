"""Timeline export for Timesketch: one line per API request, JSONL or CSV.

Timesketch needs ``message``, ``datetime`` (ISO 8601) and ``timestamp_desc`` on every event;
``timestamp`` (microseconds since the epoch) spares it the parsing. Every other column
becomes a searchable attribute. Requests that are steps of the attack narrative carry
``tag`` (the ATT&CK tactic, the rule or reconstruction that placed them there).

Rows are streamed from DuckDB in batches, so memory does not grow with the log. In CSV,
a value that a spreadsheet would run as a formula (leading ``=``, ``+``, ``-``, ``@``, tab
or carriage return) is prefixed with ``'``: audit logs carry attacker-chosen strings
(user agents, names, commands) and the CSV will be opened by someone.
"""

# ruff: noqa: S608 -- table names are plain identifiers checked by requests.check_table;
# every value from evidence or the user is a bound parameter.

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import IO, Any

import duckdb

from podmortem.audit.model import TABLE
from podmortem.audit.reconstruct.requests import check_table, outcome, select_requests

BATCH = 10_000
FORMATS = ("jsonl", "csv")
COLUMNS = (
    "message",
    "datetime",
    "timestamp",
    "timestamp_desc",
    "data_type",
    "audit_id",
    "stage",
    "actor",
    "actor_class",
    "client_ip",
    "source_ips",
    "user_agent",
    "verb",
    "object",
    "namespace",
    "resource",
    "subresource",
    "name",
    "outcome",
    "response_code",
    "command",
    "container",
    "credential_id",
    "bound_pod",
    "bound_node",
    "impersonated",
    "provider",
    "cluster",
    "source_file",
    "source_line",
    "tag",
)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _object(
    ns: str | None, resource: str | None, name: str | None, sub: str | None, uri: str | None
) -> str:
    if resource is None:
        return (uri or "").split("?", 1)[0]
    return "/".join(x for x in (ns, resource, name or "*", sub) if x)


def _message(r: Mapping[str, Any]) -> str:
    what = r["object"] or "?"
    msg = f"{r['actor'] or '(anonymous)'} {r['verb'] or '?'} {what}"
    if r["command"]:
        msg += " $ " + " ".join(r["command"])
    msg += f" -> {r['response_code'] if r['response_code'] is not None else '?'}"
    if r["client_ip"]:
        msg += f" from {r['client_ip']}"
    return msg


def rows(
    con: duckdb.DuckDBPyConnection,
    *,
    table: str = TABLE,
    where: str = "TRUE",
    params: Sequence[object] = (),
    tags: Mapping[str, Sequence[str]] | None = None,
) -> Any:
    """Yield Timesketch event dicts in time order."""
    tags = tags or {}
    check_table(table)
    cur = con.execute(
        f"""
        SELECT ts, received, rid, stage, actor, actor_class,
               client_ip, source_ips, user_agent, verb, obj_namespace, obj_resource,
               obj_subresource, obj_name, request_uri, {outcome()}, response_code,
               exec_command, exec_container, credential_id, bound_pod, bound_node, impersonated,
               provider, cluster, source_file, source_line
        FROM ({select_requests(table, where)}) q
        ORDER BY ts NULLS LAST, rid
        """,
        list(params),
    )
    while batch := cur.fetchmany(BATCH):
        for b in batch:
            ts: datetime | None = b[0]
            r: dict[str, Any] = {
                "datetime": ts.isoformat() if ts else None,
                "timestamp": int(ts.timestamp() * 1_000_000) if ts else None,
                "timestamp_desc": "Request Received" if b[1] else "Stage Timestamp",
                "data_type": "kubernetes:audit:request",
                "audit_id": b[2],
                "stage": b[3],
                "actor": b[4],
                "actor_class": b[5],
                "client_ip": b[6],
                "source_ips": list(b[7] or []),
                "user_agent": b[8],
                "verb": b[9],
                "object": _object(b[10], b[11], b[13], b[12], b[14]),
                "namespace": b[10],
                "resource": b[11],
                "subresource": b[12],
                "name": b[13],
                "outcome": b[15],
                "response_code": b[16],
                "command": list(b[17]) if b[17] else None,
                "container": b[18],
                "credential_id": b[19],
                "bound_pod": b[20],
                "bound_node": b[21],
                "impersonated": b[22],
                "provider": b[23],
                "cluster": b[24],
                "source_file": b[25],
                "source_line": b[26],
                "tag": list(tags.get(str(b[2]), ())),
            }
            r["message"] = _message(r)
            yield r


def write(
    out: IO[str],
    fmt: str,
    con: duckdb.DuckDBPyConnection,
    *,
    table: str = TABLE,
    where: str = "TRUE",
    params: Sequence[object] = (),
    tags: Mapping[str, Sequence[str]] | None = None,
) -> int:
    """Write the timeline to ``out``; returns the number of events written."""
    if fmt not in FORMATS:
        raise ValueError(f"timeline format must be one of {FORMATS}")
    n = 0
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    for r in rows(con, table=table, where=where, params=params, tags=tags):
        if writer is not None:
            writer.writerow([_cell(r[c]) for c in COLUMNS])
        else:
            out.write(json.dumps({c: r[c] for c in COLUMNS}, ensure_ascii=False) + "\n")
        n += 1
    return n


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = (
            " ".join(str(v) for v in value)
            if value and not isinstance(value[0], dict)
            else json.dumps(value)
        )
    s = str(value)
    return "'" + s if s.startswith(_FORMULA) else s


def narrative_tags(narrative_dict: Mapping[str, Any]) -> dict[str, list[str]]:
    """Tags per audit ID from a narrative's ``to_dict()``: tactic and origin of each step."""
    tags: dict[str, list[str]] = {}
    for section in ("attacks", "unchained"):
        for i, th in enumerate(narrative_dict.get(section, [])):
            label = f"attack-{i + 1}" if section == "attacks" else "unchained-finding"
            for step in th.get("steps", []):
                for audit_id in step.get("audit_ids", []):
                    t = tags.setdefault(str(audit_id), [])
                    for tag in (label, str(step["tactic"]), str(step["origin"])):
                        if tag not in t:
                            t.append(tag)
    return tags
