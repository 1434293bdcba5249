"""Builders for engine and rule tests: native audit Events (dicts) into ``audit_events``.

The engine's contract is the table in ``podmortem.audit.model``; these builders fill it the
way the native reader does (one row per Event, the exec command parsed from requestURI), so
engine tests do not depend on the readers being finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import duckdb
from hypothesis import strategies as st

from podmortem.audit import model


def _ts(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def event_row(
    ev: Mapping[str, Any], *, line: int = 1, source_file: str = "test.jsonl"
) -> dict[str, Any]:
    obj = ev.get("objectRef") or {}
    user = ev.get("user") or {}
    status = ev.get("responseStatus") or {}
    uri = ev.get("requestURI")
    command: list[str] | None = None
    container = None
    if uri and obj.get("subresource") in ("exec", "attach"):
        query = parse_qsl(urlsplit(uri).query, keep_blank_values=True)
        command = [v for k, v in query if k == "command"] or None
        container = next((v for k, v in query if k == "container"), None)
    audit_id = ev.get("auditID")
    stage = ev.get("stage")
    return {
        "event_key": f"native:{audit_id}:{stage}" if audit_id else f"{source_file}:{line}",
        "audit_id": audit_id,
        "stage": stage,
        "level": ev.get("level"),
        "verb": ev.get("verb"),
        "request_uri": uri,
        "username": user.get("username"),
        "user_uid": user.get("uid"),
        "user_groups": user.get("groups"),
        "user_extra": _json(user.get("extra")),
        "impersonated_user": _json(ev.get("impersonatedUser")),
        "source_ips": ev.get("sourceIPs"),
        "user_agent": ev.get("userAgent"),
        "obj_resource": obj.get("resource"),
        "obj_namespace": obj.get("namespace"),
        "obj_name": obj.get("name"),
        "obj_subresource": obj.get("subresource"),
        "obj_api_group": obj.get("apiGroup"),
        "obj_api_version": obj.get("apiVersion"),
        "response_code": status.get("code"),
        "response_status": status.get("status"),
        "response_reason": status.get("reason"),
        "response_message": status.get("message"),
        "request_object": _json(ev.get("requestObject")),
        "response_object": _json(ev.get("responseObject")),
        "annotations": _json(ev.get("annotations")),
        "request_received": _ts(ev.get("requestReceivedTimestamp") or ev.get("timestamp")),
        "stage_timestamp": _ts(ev.get("stageTimestamp") or ev.get("timestamp")),
        "exec_command": command,
        "exec_container": container,
        "truncated": False,
        "provider": "native",
        "envelope": "jsonl",
        "cluster": None,
        "source_file": source_file,
        "source_line": line,
        "raw": json.dumps(ev),
    }


def make_table(
    events: Iterable[Mapping[str, Any]], con: duckdb.DuckDBPyConnection | None = None
) -> duckdb.DuckDBPyConnection:
    con = con or duckdb.connect()
    model.create_table(con)
    model.insert_rows(con, [event_row(e, line=i + 1) for i, e in enumerate(events)])
    return con


def sigma_conditions(atoms: Sequence[str], max_leaves: int = 6) -> st.SearchStrategy[str]:
    """Random Sigma conditions over the selection names ``atoms``: and, or, not."""
    return st.recursive(
        st.sampled_from(sorted(atoms)),
        lambda inner: st.one_of(
            st.builds(lambda a, b: f"({a} and {b})", inner, inner),
            st.builds(lambda a, b: f"({a} or {b})", inner, inner),
            st.builds(lambda a: f"not {a}", inner),
        ),
        max_leaves=max_leaves,
    )
