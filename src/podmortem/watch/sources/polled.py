"""AKS (Log Analytics) and GKE (Cloud Logging) audit logs, polled through the cloud
procedures' own readers (``AksSteps.audit_log_pages``, ``GkeSteps.audit_log_pages``: the
same queries and filters as ``podmortem cloud collect-logs``).

Neither service has a cursor that survives a restart, so, as for CloudWatch, a position is
the newest record time handed out plus the keys of the records seen in the ``overlap``
before it; each poll asks for ``[newest - overlap, now]`` and drops records already seen.
Both services make records queryable only after an ingestion delay (Log Analytics: typically
minutes), which is why the overlap is generous; a record that shows up later than that is
missed, and the watch cannot know it.

Each record is handed on as one JSON line: a GKE LogEntry, or a Log Analytics row (column ->
value), the shapes the audit readers already read from collect-logs pages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from podmortem.cloud.calls import CallLog, to_jsonable
from podmortem.watch.sources.base import Chunk

OVERLAP = timedelta(minutes=10)
MAX_SEEN = 200_000
Pages = Callable[[CallLog, datetime, datetime], Iterable[list[dict[str, Any]]]]


def _time(rec: dict[str, Any]) -> datetime | None:
    for k in ("timestamp", "receiveTimestamp", "TimeGenerated", "time"):
        v = rec.get(k)
        if isinstance(v, datetime):
            return v if v.tzinfo else v.replace(tzinfo=UTC)
        if isinstance(v, str) and v:
            try:
                t = datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                continue
            return t if t.tzinfo else t.replace(tzinfo=UTC)
    return None


def _key(rec: dict[str, Any], line: bytes) -> str:
    # GKE: insertId is unique per log; Log Analytics rows have no id of their own, the
    # audit record's (AuditId + Stage) is; anything else: the record's digest.
    if rec.get("insertId"):
        return f"i:{rec['insertId']}:{rec.get('logName', '')}"
    if rec.get("AuditId"):
        return f"a:{rec['AuditId']}:{rec.get('Stage', '')}"
    return "h:" + hashlib.sha256(line).hexdigest()[:32]


class PolledSource:
    def __init__(
        self,
        name: str,
        pages: Pages,
        *,
        overlap: timedelta = OVERLAP,
        start: datetime | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._name = name
        self.pages = pages
        self.overlap = overlap
        self.clock = clock
        self._newest = start or (clock() - overlap)
        self._seen: dict[str, str] = {}  # key -> record time (ISO)

    @property
    def name(self) -> str:
        return self._name

    def seek(self, position: dict[str, Any] | None) -> None:
        if position and position.get("newest"):
            self._newest = datetime.fromisoformat(str(position["newest"]))
            seen = position.get("seen", {})
            self._seen = {str(k): str(v) for k, v in seen.items()} if isinstance(seen, dict) else {}

    def _position(self) -> dict[str, Any]:
        return {"newest": self._newest.isoformat(), "seen": dict(self._seen)}

    def poll(self, max_bytes: int) -> Chunk | None:
        calls = CallLog(execute=False, keep_responses=False)
        since, until = self._newest - self.overlap, self.clock()
        out: list[bytes] = []
        notes: list[dict[str, Any]] = []
        size = outside = 0
        for page in self.pages(calls, since, until):
            for rec in page:
                if not isinstance(rec, dict):
                    notes.append({"event": "record-not-an-object"})
                    continue
                line = orjson.dumps(to_jsonable(rec)) + b"\n"
                key = _key(rec, line)
                if key in self._seen:
                    continue
                t = _time(rec) or until
                if t < since:
                    # Not in the window asked for (and older than what the seen-set keeps):
                    # handed out before, or it would have been in an earlier window.
                    outside += 1
                    continue
                self._seen[key] = t.isoformat()
                self._newest = max(self._newest, t)
                out.append(line)
                size += len(line)
            if size >= max_bytes:
                break  # the rest comes with the next poll (same window, keys dedup)
        if outside:
            notes.append({"event": "records-outside-window", "count": outside})
        floor = (self._newest - self.overlap).isoformat()
        self._seen = {k: v for k, v in self._seen.items() if v >= floor}
        if len(self._seen) > MAX_SEEN:
            notes.append({"event": "seen-set-capped", "kept": MAX_SEEN})
            self._seen = dict(sorted(self._seen.items(), key=lambda kv: kv[1])[-MAX_SEEN:])
        if not out:
            return Chunk(b"", 0, {}, notes) if notes else None
        return Chunk(b"".join(out), len(out), self._position(), notes)

    def commit(self, position: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


def log_analytics(
    steps: Any,
    *,
    cluster: str,
    workspace_id: str,
    table: str = "AKSAudit",
    page_size: int = 5000,
    start: datetime | None = None,
) -> PolledSource:
    """AKS: the cluster's rows in its Log Analytics workspace (``AksSteps`` resolves the
    cluster's resource id, which the query filters on)."""
    from podmortem.cloud.model import Target

    target = Target(provider="aks", cluster=cluster)
    steps.resolve(target, CallLog(execute=False))
    cluster_id = str(target.extra["cluster_id"])

    def pages(calls: CallLog, since: datetime, until: datetime) -> Iterable[list[dict[str, Any]]]:
        return steps.audit_log_pages(  # type: ignore[no-any-return]
            calls,
            workspace_id=workspace_id,
            cluster_id=cluster_id,
            table=table,
            since=since,
            until=until,
            page_size=page_size,
        )

    return PolledSource(f"loganalytics:{workspace_id}:{cluster}", pages, start=start)


def cloud_logging(
    steps: Any, *, cluster: str, page_size: int = 1000, start: datetime | None = None
) -> PolledSource:
    """GKE: the cluster's audit LogEntries (``GkeSteps`` builds the filter)."""

    def pages(calls: CallLog, since: datetime, until: datetime) -> Iterable[list[dict[str, Any]]]:
        return steps.audit_log_pages(calls, cluster, since, until, page_size)  # type: ignore[no-any-return]

    return PolledSource(f"cloudlogging:{cluster}", pages, start=start)
