"""Synthetic audit bursts for the watch tests: native audit.k8s.io/v1 Events as JSON lines,
with timestamps increasing in file order (as the API server writes them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)


def event(
    i: int,
    t: datetime,
    *,
    user: str = "alice@example.com",
    verb: str = "get",
    resource: str = "pods",
    namespace: str = "default",
    name: str | None = "web-0",
    subresource: str | None = None,
    code: int = 200,
    command: str = "",
) -> dict[str, Any]:
    uri = f"/api/v1/namespaces/{namespace}/{resource}" + (f"/{name}" if name else "")
    if subresource:
        uri += f"/{subresource}"
    if command:
        uri += "?" + "&".join(f"command={c}" for c in command.split()) + "&container=app"
    ref: dict[str, Any] = {"resource": resource, "namespace": namespace, "apiVersion": "v1"}
    if name:
        ref["name"] = name
    if subresource:
        ref["subresource"] = subresource
    ts = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": f"00000000-0000-4000-8000-{i:012d}",
        "stage": "ResponseComplete",
        "requestURI": uri,
        "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["203.0.113.7"],
        "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/39683505",
        "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": ts,
        "stageTimestamp": ts,
    }


def burst(n: int, *, pods: int = 20, start: int = 0, every_ms: int = 5) -> list[dict[str, Any]]:
    """``n`` events: mostly benign reads, an exec with a shell into each of ``pods`` pods
    (high severity, names a pod), and one actor's forbidden burst (a correlation)."""
    out = []
    for k in range(n):
        i = start + k
        t = T0 + timedelta(milliseconds=i * every_ms)
        if i % 97 == 5:
            p = (i // 97) % pods
            out.append(
                event(
                    i,
                    t,
                    verb="create",
                    name=f"web-{p}",
                    subresource="exec",
                    code=101,
                    command="sh -c id",
                )
            )
        elif i % 13 == 0:
            out.append(
                event(
                    i,
                    t,
                    user="system:serviceaccount:default:scanner",
                    verb="list",
                    resource="secrets",
                    namespace=f"ns-{i % 50}",
                    name=None,
                    code=403,
                )
            )
        else:
            out.append(event(i, t, name=f"web-{i % pods}"))
    return out


def lines(events: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)
