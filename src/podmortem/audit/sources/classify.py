"""Which reader a parsed record belongs to, recognised from its keys (never from the file
name). A list is read element by element; unknown shapes are counted and skipped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from podmortem.audit.sources import aks, eks, gke
from podmortem.audit.sources.context import MAX_DEPTH, Ctx, Where
from podmortem.audit.sources.native import emit_event, handle_event_list
from podmortem.audit.sources.shape import is_event


def _is_log_event(obj: Mapping[str, Any]) -> bool:
    return isinstance(obj.get("message"), str) and any(
        k in obj for k in ("logStreamName", "ingestionTime", "eventId", "id")
    )


def dispatch(obj: Any, where: Where, ctx: Ctx) -> None:
    if where.depth > MAX_DEPTH:
        ctx.not_audit("nested too deeply", where)
        return
    if isinstance(obj, list):
        if not obj:
            ctx.not_audit("empty JSON array", where)
        container = "array" if where.container in ("json", "array") else where.container
        for i, item in enumerate(obj):
            dispatch(item, where.inner(f"[{i}]", container), ctx)
        return
    if not isinstance(obj, dict):
        ctx.not_audit("not a JSON object", where)
        return
    if is_event(obj):
        emit_event(obj, where, ctx)
    elif obj.get("kind") == "EventList":
        handle_event_list(obj, where, ctx)
    elif "records" in obj and isinstance(obj["records"], list):
        aks.handle_records(obj, where, ctx)
    elif "messageType" in obj:
        eks.handle_subscription(obj, where, ctx)
    elif "events" in obj and isinstance(obj["events"], list):
        eks.handle_filter_log_events(obj, where, ctx)
    elif "protoPayload" in obj:
        gke.handle_entry(obj, where, ctx)
    elif isinstance(obj.get("message"), dict):
        gke.handle_pubsub(obj, where, ctx)
    elif "properties" in obj and ("category" in obj or "Category" in obj):
        aks.handle_record(obj, where, ctx)
    elif "log_s" in obj or ("Category" in obj and "TimeGenerated" in obj):
        aks.handle_diagnostics_row(obj, where, ctx)
    elif "AuditId" in obj or obj.get("Type") in aks.AKSAUDIT_TYPES:
        aks.handle_aksaudit_row(obj, where, ctx)
    elif "@message" in obj:
        eks.handle_insights_row(obj, where, ctx)
    elif _is_log_event(obj):
        eks.handle_log_event(obj, where, ctx, envelope="log-events")
    elif isinstance(obj.get("tables"), list):
        _log_analytics_tables(obj, where, ctx)
    elif "logName" in obj and "insertId" in obj:
        ctx.not_audit("gke: LogEntry that is not an audit log", where)
    elif obj.get("kind") == "Event" or "auditID" in obj:
        ctx.caveat("malformed-event", "an Event without auditID, verb or request", where)
    else:
        ctx.not_audit("not an audit record", where)


def _log_analytics_tables(obj: Mapping[str, Any], where: Where, ctx: Ctx) -> None:
    """The Log Analytics query API answer: ``{"tables": [{"columns": [{name}], "rows":
    [[...]]}]}``; each row becomes a dict keyed by column name."""
    for t, table in enumerate(obj["tables"]):
        if not isinstance(table, dict):
            continue
        cols = table.get("columns")
        rows = table.get("rows")
        if not isinstance(cols, list) or not isinstance(rows, list):
            ctx.not_audit("log analytics table without columns/rows", where)
            continue
        names = [c.get("name") if isinstance(c, dict) else str(c) for c in cols]
        if not rows:
            ctx.not_audit("log analytics table with no rows", where)
        for i, row in enumerate(rows):
            w = where.inner(f"tables[{t}].rows[{i}]", "array")
            if isinstance(row, list) and len(row) == len(names):
                dispatch(dict(zip(names, row, strict=True)), w, ctx)
            else:
                ctx.caveat("malformed-event", "log analytics row does not match its columns", w)
