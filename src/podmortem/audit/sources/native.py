"""Native ``audit.k8s.io`` Events: one per line (log backend), ``EventList`` batches (webhook
backend), v1beta1-era events (top-level ``timestamp``, ``metadata.creationTimestamp``, maybe
no ``apiVersion``); and the text of an Event carried inside a cloud envelope, which may have
been cut by the provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from podmortem.audit.sources.context import Ctx, Where
from podmortem.audit.sources.shape import is_event, salvage

# CloudWatch Logs cuts messages over its size limit and appends this marker.
EKS_TRUNCATED = "[Truncated...]"
# AKS cuts ``properties.log`` at 16 KiB; an unparseable log at (or within a few bytes of)
# that size was cut, not malformed.
AKS_CUT = 16 * 1024 - 64

_CONTAINER_ENVELOPE = {
    "jsonl": "jsonl",
    "array": "json-array",
    "json": "json",
    "yaml": "yaml",
    "csv": "csv",
    "text": "text",
}


def native_envelope(where: Where) -> str:
    return _CONTAINER_ENVELOPE.get(where.container, where.container)


def emit_event(
    event: Mapping[str, Any],
    where: Where,
    ctx: Ctx,
    *,
    provider: str = "native",
    envelope: str | None = None,
    raw: Any = None,
    cluster: str | None = None,
    truncated: bool = False,
) -> None:
    ctx.stager.event(
        event,
        provider=provider,
        envelope=envelope or native_envelope(where),
        line=where.line,
        raw=event if raw is None else raw,
        location=where.location,
        cluster=cluster,
        truncated=truncated,
    )


def handle_event_list(obj: Mapping[str, Any], where: Where, ctx: Ctx) -> None:
    not_event = "native: EventList item that is not an Event"
    for item, w in ctx.items(
        obj,
        "items",
        where,
        missing="native: EventList without items",
        empty="native: empty EventList",
        not_object=not_event,
    ):
        if is_event(item):
            emit_event(item, w, ctx, envelope="eventlist")
        else:
            ctx.not_audit(not_event, w)


def handle_event_text(
    text: Any,
    where: Where,
    ctx: Ctx,
    *,
    provider: str,
    envelope: str,
    raw: Any,
    cluster: str | None = None,
    cut_at: int | None = None,
) -> None:
    """An Event carried as text (EKS ``message``, AKS ``properties.log``/``log_s``) or
    already as an object. Cut or broken text is salvaged into a row marked truncated."""
    if isinstance(text, dict):
        if is_event(text):
            emit_event(
                text, where, ctx, provider=provider, envelope=envelope, raw=raw, cluster=cluster
            )
        else:
            ctx.not_audit(f"{provider}: embedded object is not an audit Event", where)
        return
    if not isinstance(text, str) or not text.strip():
        ctx.not_audit(f"{provider}: record without an event", where)
        return
    body = text.strip()
    if not body.startswith("{"):
        # klog lines of other control-plane components share the same streams
        ctx.not_audit(f"{provider}: not a JSON event (other log)", where)
        return
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        event = None
    if isinstance(event, dict):
        if is_event(event):
            emit_event(
                event, where, ctx, provider=provider, envelope=envelope, raw=raw, cluster=cluster
            )
        else:
            ctx.not_audit(f"{provider}: JSON record that is not an audit Event", where)
        return
    if body.endswith(EKS_TRUNCATED):
        kind, why = "truncated", f"cut by the provider (ends with {EKS_TRUNCATED})"
    elif cut_at is not None and len(body.encode("utf-8", "replace")) >= cut_at:
        kind, why = "truncated", f"cut by the provider at {len(body)} characters"
    else:
        kind, why = "malformed-event", "the event text is not valid JSON"
    salvage_and_report(
        body,
        where,
        ctx,
        kind=kind,
        why=why,
        provider=provider,
        envelope=envelope,
        raw=raw,
        cluster=cluster,
    )


def salvage_and_report(
    text: str,
    where: Where,
    ctx: Ctx,
    *,
    kind: str,
    why: str,
    provider: str,
    envelope: str,
    raw: Any,
    cluster: str | None = None,
    what: str = "",
) -> None:
    """Report a cut/broken event as a caveat and load whatever could be salvaged."""
    what = what or f"{provider} event"
    got = salvage(text)
    if got:
        emit_event(
            got,
            where,
            ctx,
            provider=provider,
            envelope=envelope,
            raw=raw,
            cluster=cluster,
            truncated=True,
        )
    ctx.caveat(
        kind,
        f"{what} {why}; "
        + (f"salvaged {', '.join(sorted(got))}" if got else "nothing identifying survived"),
        where,
        audit_id=got.get("auditID"),
        salvaged=sorted(got),
        length=len(text),
    )
