"""``collect-logs``: the control plane's audit log, page by page, into the case.

Each page is written as one artifact exactly as the API returned it (the shapes
``audit analyze`` reads: the ``filter_log_events`` envelope for EKS, Log Analytics rows for
AKS, a JSON array of LogEntry objects for GKE), hashed while written. Memory is bounded by
one page. The custody record lists every call with its parameters, time and the hash of
its response, and the artifacts it produced.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from podmortem.case import Case
from podmortem.case.paths import safe_component
from podmortem.cloud.calls import CallLog, to_jsonable

ACTION = "cloud_logs_collected"


@dataclass(slots=True)
class Collected:
    provider: str
    cluster: str
    source: str
    pages: int = 0
    records: int = 0
    bytes: int = 0
    artifacts: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "cluster": self.cluster,
            "source": self.source,
            "pages": self.pages,
            "records": self.records,
            "bytes": self.bytes,
            "artifacts": self.artifacts,
            "error": self.error,
        }


def _count(page: Any) -> int:
    if isinstance(page, dict):
        return len(page.get("events") or [])
    if isinstance(page, list):
        return len(page)
    return 0


def collect(
    case: Case,
    *,
    provider: str,
    cluster: str,
    source: str,
    pages: Callable[[CallLog], Iterable[Any]],
    since: datetime,
    until: datetime,
    progress: Callable[[Collected], None] | None = None,
) -> Collected:
    """Write every page ``pages(calls)`` yields as an artifact; record the run.

    A failure part-way (throttling, a revoked token) keeps what was collected, records the
    error, and re-raises so the examiner sees it."""
    calls = CallLog(execute=False, keep_responses=False)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = f"cloud/{provider}/{safe_component(cluster)}/audit-{stamp}"
    out = Collected(provider=provider, cluster=cluster, source=source)
    failure: Exception | None = None
    with case.batch():
        try:
            for page in pages(calls):
                out.pages += 1
                name = f"{folder}/page-{out.pages:05d}.json"
                call = calls.calls[-1] if calls.calls else None
                command = (
                    f"{call.service}.{call.method} {json.dumps(call.params, sort_keys=True)}"
                    if call
                    else source
                )
                data = json.dumps(to_jsonable(page), sort_keys=True).encode() + b"\n"
                with case.artifact(name, source="api", command=command[:4000]) as w:
                    w.write(data)
                    w.extra = {"provider": provider, "cluster": cluster, "format": source}
                out.records += _count(page)
                out.bytes += len(data)
                out.artifacts.append("artifacts/" + name)
                if progress is not None:
                    progress(out)
        except Exception as exc:
            failure = exc
            out.error = f"{type(exc).__name__}: {exc}"[:2000]
        case.log_action(
            ACTION,
            {
                **out.to_dict(),
                "since": since.astimezone(UTC).isoformat(),
                "until": until.astimezone(UTC).isoformat(),
                "calls": [c.to_dict() for c in calls.calls],
            },
        )
    if failure is not None:
        raise failure
    return out
