"""Azure AKS: diagnostic settings send categories ``kube-audit`` (everything) and
``kube-audit-admin`` (no get/list) next to other categories (``guard``, ``kube-apiserver``,
``cluster-autoscaler``...) whose records are klog text: those are counted and skipped.

- Event Hub / storage: ``{"records": [{category, properties: {log, pod, ...}, resourceId,
  time}]}``; storage blobs hold one record per line; ``properties.log`` is the Event as a
  string (cut at 16 KiB) or already an object.
- Log Analytics ``AzureDiagnostics`` rows: ``Category``, ``log_s`` (Event text, values
  trimmed at 32,766 bytes), ``pod_s``, ``TimeGenerated``, ``_ResourceId``.
- Log Analytics resource-specific ``AKSAudit``/``AKSAuditAdmin`` rows with PascalCase
  columns; nested columns are objects in JSON exports and JSON text in CSV exports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from podmortem.audit.sources.context import Ctx, Where
from podmortem.audit.sources.native import AKS_CUT, emit_event, handle_event_text

AUDIT_CATEGORIES = frozenset({"kube-audit", "kube-audit-admin"})
AKSAUDIT_TYPES = frozenset({"AKSAudit", "AKSAuditAdmin"})
# AzureDiagnostics trims a value at 32,766 bytes.
DIAGNOSTICS_CUT = 32_766 - 64

# AKSAudit column -> native Event field
_AKSAUDIT_FIELDS = {
    "AuditId": "auditID",
    "Level": "level",
    "Stage": "stage",
    "Verb": "verb",
    "RequestUri": "requestURI",
    "User": "user",
    "ImpersonatedUser": "impersonatedUser",
    "SourceIps": "sourceIPs",
    "UserAgent": "userAgent",
    "ObjectRef": "objectRef",
    "ResponseStatus": "responseStatus",
    "RequestObject": "requestObject",
    "ResponseObject": "responseObject",
    "Annotations": "annotations",
    "RequestReceivedTime": "requestReceivedTimestamp",
    "StageReceivedTime": "stageTimestamp",
}
# Columns that hold objects/arrays; in a CSV export they arrive as JSON text.
_NESTED = frozenset(
    {
        "User",
        "ImpersonatedUser",
        "SourceIps",
        "ObjectRef",
        "ResponseStatus",
        "RequestObject",
        "ResponseObject",
        "Annotations",
    }
)
# Log Analytics writes this instead of a body that was too large to keep.
SKIPPED_BODY = "skipped-too-big-size-object"


def cluster_of(resource_id: Any) -> str | None:
    if isinstance(resource_id, str) and "/managedclusters/" in resource_id.lower():
        return resource_id.rstrip("/").rsplit("/", 1)[-1] or None
    return None


def _category(rec: Mapping[str, Any]) -> Any:
    return rec.get("category", rec.get("Category"))


def handle_records(obj: Mapping[str, Any], where: Where, ctx: Ctx) -> None:
    for rec, w in ctx.items(
        obj,
        "records",
        where,
        missing="aks: records is not a list",
        empty="aks: empty records list",
        not_object="aks: record that is not an object",
    ):
        handle_record(rec, w, ctx, envelope="records")


def handle_record(rec: Mapping[str, Any], where: Where, ctx: Ctx, *, envelope: str = "") -> None:
    """One diagnostic record (an Event Hub ``records[]`` item or a storage-blob line)."""
    envelope = envelope or ("blob-lines" if where.container == "jsonl" else "records")
    category = _category(rec)
    if category not in AUDIT_CATEGORIES:
        ctx.not_audit(f"aks: category {str(category)[:60]}", where)
        return
    props = rec.get("properties", rec.get("Properties"))
    if isinstance(props, str):
        # some forwarders serialise properties itself as text
        try:
            props = orjson.loads(props)
        except orjson.JSONDecodeError:
            props = None
    if not isinstance(props, dict):
        ctx.caveat("malformed-event", "aks record without properties", where)
        return
    cluster = cluster_of(rec.get("resourceId", rec.get("ResourceId")))
    handle_event_text(
        props.get("log"),
        where,
        ctx,
        provider="aks",
        envelope=envelope,
        raw=dict(rec),
        cluster=cluster,
        cut_at=AKS_CUT,
    )


def handle_diagnostics_row(row: Mapping[str, Any], where: Where, ctx: Ctx) -> None:
    category = row.get("Category", row.get("category"))
    if category not in AUDIT_CATEGORIES:
        ctx.not_audit(f"aks: category {str(category)[:60]}", where)
        return
    cluster = cluster_of(row.get("_ResourceId", row.get("ResourceId")))
    if cluster is None and isinstance(row.get("Resource"), str):
        cluster = row["Resource"]
    envelope = "azure-diagnostics-csv" if where.container == "csv" else "azure-diagnostics"
    handle_event_text(
        row.get("log_s"),
        where,
        ctx,
        provider="aks",
        envelope=envelope,
        raw=dict(row),
        cluster=cluster,
        cut_at=DIAGNOSTICS_CUT,
    )


def handle_aksaudit_row(row: Mapping[str, Any], where: Where, ctx: Ctx) -> None:
    event: dict[str, Any] = {"kind": "Event"}
    broken: list[str] = []
    for column, field in _AKSAUDIT_FIELDS.items():
        value = row.get(column)
        if value is None or value == "":
            continue
        if column in _NESTED and isinstance(value, str) and value != SKIPPED_BODY:
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                broken.append(column)
                continue
        event[field] = value
    if not isinstance(event.get("auditID"), str):
        ctx.not_audit("aks: AKSAudit row without AuditId", where)
        return
    skipped_bodies = [
        k for k in ("requestObject", "responseObject") if event.get(k) == SKIPPED_BODY
    ]
    if skipped_bodies:
        ctx.caveat(
            "body-not-logged",
            f"Log Analytics dropped a body too large to keep ({', '.join(skipped_bodies)})",
            where,
            audit_id=event["auditID"],
        )
    if broken:
        ctx.caveat(
            "truncated",
            f"AKSAudit columns not parseable: {', '.join(broken)}",
            where,
            audit_id=event["auditID"],
        )
    envelope = "aksaudit-csv" if where.container == "csv" else "aksaudit"
    emit_event(
        event,
        where,
        ctx,
        provider="aks",
        envelope=envelope,
        raw=dict(row),
        cluster=cluster_of(row.get("_ResourceId")),
        truncated=bool(broken),
    )
