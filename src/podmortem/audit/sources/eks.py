"""Amazon EKS: control-plane logs in CloudWatch Logs, group ``/aws/eks/<cluster>/cluster``,
audit streams ``kube-apiserver-audit-<hex>``; each log event's ``message`` is one native
Event as JSON text. Envelopes an examiner may be handed:

- ``aws logs filter-log-events``: ``{"events": [{logStreamName, timestamp, message, ...}]}``
- a subscription payload (Kinesis/Firehose/Lambda): ``{"messageType": "DATA_MESSAGE",
  "logGroup", "logStream", "logEvents": [{id, timestamp, message}]}``, gzip; Firehose to S3
  concatenates several with no delimiter; ``CONTROL_MESSAGE`` is a delivery check, skipped
- ``CreateExportTask`` to S3: text lines ``<ISO-8601 timestamp> <message>``
- Logs Insights CSV: ``@logStream,@timestamp,@message``
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from podmortem.audit.sources.context import Ctx, Where
from podmortem.audit.sources.native import handle_event_text

_GROUP = re.compile(r"^/aws/eks/([^/]+)/cluster$")
# Streams of the other control-plane log types; their messages are klog text, not Events.
_OTHER_STREAMS = (
    "authenticator-",
    "kube-apiserver-",
    "kube-controller-manager-",
    "kube-scheduler-",
    "cloud-controller-manager-",
)
_EXPORT_LINE = re.compile(rb"^(\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:?\d\d)?) (.*)$", re.S)


def cluster_of(group: Any) -> str | None:
    if isinstance(group, str):
        m = _GROUP.match(group)
        if m:
            return m.group(1)
    return None


def _stream_is_other(stream: Any) -> bool:
    return (
        isinstance(stream, str)
        and not stream.startswith("kube-apiserver-audit")
        and stream.startswith(_OTHER_STREAMS)
    )


def handle_log_event(
    rec: Mapping[str, Any],
    where: Where,
    ctx: Ctx,
    *,
    envelope: str,
    stream: Any = None,
    cluster: str | None = None,
) -> None:
    stream = rec.get("logStreamName", stream)
    if _stream_is_other(stream):
        ctx.not_audit(f"eks: non-audit log stream {str(stream).rsplit('-', 1)[0]}", where)
        return
    handle_event_text(
        rec.get("message"),
        where,
        ctx,
        provider="eks",
        envelope=envelope,
        raw=dict(rec),
        cluster=cluster,
    )


def handle_filter_log_events(obj: Mapping[str, Any], where: Where, ctx: Ctx) -> None:
    for rec, w in ctx.items(
        obj,
        "events",
        where,
        missing="eks: filter-log-events without events",
        empty="eks: filter-log-events page with no events",
        not_object="eks: log event that is not an object",
    ):
        handle_log_event(rec, w, ctx, envelope="filter-log-events")


def handle_subscription(obj: Mapping[str, Any], where: Where, ctx: Ctx) -> None:
    kind = obj.get("messageType")
    if kind == "CONTROL_MESSAGE":
        ctx.not_audit("eks: subscription CONTROL_MESSAGE", where)
        return
    if kind != "DATA_MESSAGE" or not isinstance(obj.get("logEvents"), list):
        ctx.not_audit(f"eks: subscription message of type {str(kind)[:40]}", where)
        return
    cluster = cluster_of(obj.get("logGroup"))
    stream = obj.get("logStream")
    if not obj["logEvents"]:
        ctx.not_audit("eks: subscription message with no log events", where)
    for i, rec in enumerate(obj["logEvents"]):
        w = where.inner(f"logEvents[{i}]")
        if isinstance(rec, dict):
            raw = {"logGroup": obj.get("logGroup"), "logStream": stream, **rec}
            handle_log_event(
                raw, w, ctx, envelope="cloudwatch-subscription", stream=stream, cluster=cluster
            )
        else:
            ctx.not_audit("eks: log event that is not an object", w)


def handle_insights_row(row: Mapping[str, Any], where: Where, ctx: Ctx) -> None:
    """A Logs Insights result row (CSV, or the JSON form of the console export)."""
    stream = row.get("@logStream")
    if _stream_is_other(stream):
        ctx.not_audit(f"eks: non-audit log stream {str(stream).rsplit('-', 1)[0]}", where)
        return
    cluster = cluster_of(
        row.get("@log", "").split(":", 1)[-1] if isinstance(row.get("@log"), str) else None
    )
    handle_event_text(
        row.get("@message"),
        where,
        ctx,
        provider="eks",
        envelope="logs-insights-csv" if where.container == "csv" else "logs-insights",
        raw=dict(row),
        cluster=cluster,
    )


def handle_export_line(data: bytes, where: Where, ctx: Ctx) -> None:
    """One line of a CreateExportTask object: ``<timestamp> <message>``."""
    m = _EXPORT_LINE.match(data)
    if not m:
        ctx.caveat(
            "malformed-line",
            "not '<timestamp> <message>' as CreateExportTask writes",
            where,
            sample=data[:120].decode("utf-8", "replace"),
        )
        return
    ts = m.group(1).decode("ascii")
    message = m.group(2).decode("utf-8", "replace")
    handle_event_text(
        message,
        where,
        ctx,
        provider="eks",
        envelope="export-text",
        raw={"timestamp": ts, "message": message},
    )


def looks_like_export_line(data: bytes) -> bool:
    m = _EXPORT_LINE.match(data)
    return bool(m) and m.group(2).lstrip()[:1] == b"{"  # type: ignore[union-attr]
