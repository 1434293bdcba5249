"""Google GKE: Cloud Audit Logs ``LogEntry`` records (``protoPayload`` of type AuditLog).

Mapping to the native Event (``serviceName: k8s.io``):
auditID <- ``insertId`` (the id the issue asks findings to cite); verb <- last segment of
``methodName`` (``io.k8s.core.v1.pods.exec.create``); objectRef <- ``resourceName``
(``<group>/<version>/[namespaces/<ns>/]<resource>[/<name>[/<subresource>]]``, core group
spelled ``core``); user <- ``authenticationInfo.principalEmail`` (``{}`` means anonymous);
sourceIPs <- ``[callerIp]``; annotations <- top-level ``labels``; the gRPC status becomes an
HTTP-like code (``grpc_status.yaml``); the exec command comes from the label
``command.gke.io/command``. There is no requestURI and there are no user groups.

``container.googleapis.com`` entries (CreateCluster, node pools...) are not Kubernetes API
events but are kept as cloud control-plane events: provider ``gke``, verb = the method
(``CreateCluster``), objectRef from the ``projects/.../clusters/<c>[/nodePools/<p>]`` name.
Entries of any other service are counted and skipped.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

import orjson
import yaml

from podmortem.audit.sources.context import Ctx, Where

TRUNCATED_LABEL = "audit.k8s.io/truncated"
COMMAND_LABEL = "command.gke.io/command"
K8S_SERVICE = "k8s.io"
GKE_SERVICE = "container.googleapis.com"

_CONTAINER_ENVELOPE = {"jsonl": "jsonl", "array": "array", "json": "json", "yaml": "yaml"}
_CLOUD_NAME = re.compile(r"(?:^|/)(clusters|nodePools)/([^/]+)")


@functools.cache
def grpc_map() -> dict[int, tuple[int, str]]:
    text = resources.files(__package__).joinpath("grpc_status.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    return {int(k): (int(v[0]), str(v[1])) for k, v in data.items()}


def http_status(grpc_code: Any) -> tuple[int | None, str | None]:
    if grpc_code is None:
        return 200, None
    if isinstance(grpc_code, int) and not isinstance(grpc_code, bool):
        code, reason = grpc_map().get(grpc_code, (500, "Unknown"))
        return code, reason or None
    return None, None


def split_resource_name(name: str) -> dict[str, str]:
    """``core/v1/namespaces/ns/pods/p/exec`` -> objectRef fields."""
    parts = [p for p in name.split("/") if p]
    ref: dict[str, str] = {}
    if len(parts) < 3:
        return ref
    group, version, rest = parts[0], parts[1], parts[2:]
    ref["apiGroup"] = "" if group == "core" else group
    ref["apiVersion"] = version
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
        ref["namespace"] = rest[1]
        rest = rest[2:]
    elif len(rest) == 2 and rest[0] == "namespaces":
        # the namespace object itself: core/v1/namespaces/<name>
        ref["resource"] = "namespaces"
        ref["name"] = rest[1]
        return ref
    if rest:
        ref["resource"] = rest[0]
    if len(rest) >= 2:
        ref["name"] = rest[1]
    if len(rest) >= 3:
        ref["subresource"] = "/".join(rest[2:])
    return ref


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _verb(method: str) -> str:
    return method.rsplit(".", 1)[-1]


def _command(labels: Mapping[str, Any]) -> list[str] | None:
    value = labels.get(COMMAND_LABEL)
    if not isinstance(value, str):
        return None
    if value.startswith("["):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            return parsed
    # kept whole: splitting on spaces would invent argv boundaries the log does not show
    return [value]


def handle_entry(entry: Mapping[str, Any], where: Where, ctx: Ctx, *, envelope: str = "") -> None:
    envelope = envelope or _CONTAINER_ENVELOPE.get(where.container, where.container)
    proto = entry.get("protoPayload")
    if not isinstance(proto, dict):
        ctx.not_audit("gke: LogEntry without an audit protoPayload", where)
        return
    service = proto.get("serviceName")
    if service not in (K8S_SERVICE, GKE_SERVICE):
        ctx.not_audit(f"gke: audit entry of service {str(service)[:60]}", where)
        return
    method = proto.get("methodName")
    method = method if isinstance(method, str) else ""
    labels = _obj(entry.get("labels"))
    auth = proto.get("authenticationInfo")
    meta = _obj(proto.get("requestMetadata"))
    status = _obj(proto.get("status"))
    resource = _obj(entry.get("resource"))
    rlabels = _obj(resource.get("labels"))
    operation = _obj(entry.get("operation"))

    audit_id = entry.get("insertId")
    if not isinstance(audit_id, str) or not audit_id:
        audit_id = operation.get("id")
    event: dict[str, Any] = {"kind": "Event", "auditID": audit_id}
    # GKE does not say which stage; a first-but-not-last operation entry is the start of a
    # long-running call (the container API's "started" entries), anything else is complete.
    started = operation.get("first") is True and operation.get("last") is not True
    event["stage"] = "ResponseStarted" if started else "ResponseComplete"
    if method:
        event["verb"] = _verb(method)
    if isinstance(auth, dict):
        email = auth.get("principalEmail")
        if isinstance(email, str) and email:
            event["user"] = {"username": email}
        elif not auth:
            event["user"] = {"username": "system:anonymous"}
    caller = meta.get("callerIp")
    if isinstance(caller, str):
        event["sourceIPs"] = [caller]
    if isinstance(meta.get("callerSuppliedUserAgent"), str):
        event["userAgent"] = meta["callerSuppliedUserAgent"]
    name = proto.get("resourceName")
    if isinstance(name, str):
        if service == K8S_SERVICE:
            event["objectRef"] = split_resource_name(name)
        else:
            found = _CLOUD_NAME.findall(name)
            if found:
                event["objectRef"] = {
                    "apiGroup": GKE_SERVICE,
                    "resource": found[-1][0],
                    "name": found[-1][1],
                }
    code, reason = http_status(status.get("code"))
    rs: dict[str, Any] = {}
    if code is not None:
        rs["code"] = code
        rs["status"] = "Success" if code < 400 else "Failure"
    if reason:
        rs["reason"] = reason
    if isinstance(status.get("message"), str):
        rs["message"] = status["message"]
    if rs:
        event["responseStatus"] = rs
    if "request" in proto:
        event["requestObject"] = proto["request"]
    if "response" in proto:
        event["responseObject"] = proto["response"]
    if labels:
        event["annotations"] = labels
    ts = entry.get("timestamp")
    if isinstance(ts, str):
        event["requestReceivedTimestamp"] = ts
        event["stageTimestamp"] = ts
    event["level"] = (
        "RequestResponse"
        if "response" in proto
        else "Request"
        if "request" in proto
        else "Metadata"
    )
    truncated = str(labels.get(TRUNCATED_LABEL, "")).lower() == "true"
    if truncated:
        ctx.caveat(
            "truncated",
            "GKE marked this entry truncated (label "
            f"{TRUNCATED_LABEL}); request/response bodies may be missing",
            where,
            audit_id=audit_id,
        )
    cmd = _command(labels) if event.get("verb") and "exec" in method else None
    ctx.stager.event(
        event,
        provider="gke",
        envelope=envelope,
        line=where.line,
        raw=dict(entry),
        location=where.location,
        cluster=rlabels.get("cluster_name"),
        truncated=truncated,
        exec_command=cmd,
    )


def handle_pubsub(obj: Mapping[str, Any], where: Where, ctx: Ctx) -> None:
    """A Pub/Sub message (``{"message": {"data": base64}}`` pulled, or the push envelope
    ``{"message": {...}, "subscription": ...}``); ``data`` holds one LogEntry."""
    msg = obj.get("message")
    envelope = "pubsub-push" if "subscription" in obj else "pubsub"
    data = msg.get("data") if isinstance(msg, dict) else None
    if not isinstance(data, str):
        ctx.not_audit("gke: Pub/Sub message without data", where)
        return
    try:
        decoded = base64.b64decode(data, validate=False)
        entry = orjson.loads(decoded)
    except (binascii.Error, ValueError):
        ctx.caveat("malformed-event", "Pub/Sub data is not base64 JSON", where)
        return
    w = where.inner("message.data")
    if isinstance(entry, dict) and "protoPayload" in entry:
        handle_entry(entry, w, ctx, envelope=envelope)
    else:
        ctx.not_audit("gke: Pub/Sub message that is not an audit LogEntry", w)
