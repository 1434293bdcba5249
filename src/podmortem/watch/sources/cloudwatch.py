"""EKS control-plane audit logs in CloudWatch Logs (log group
``/aws/eks/<cluster>/cluster``, streams ``kube-apiserver-audit-*``), polled with
``filter_log_events``.

CloudWatch has no cursor that survives a restart (``nextToken`` expires), so a position is
a time: the newest event timestamp handed out, plus the ids of the events seen in the
``overlap`` before it. Each poll asks again from ``newest - overlap``: events that CloudWatch
ingested late (they can arrive after newer ones from another stream) are still picked up,
and events already handed out are recognised by ``eventId``. An event ingested later than
``overlap`` after a newer one is missed: that is the price of polling, so the overlap is
generous (2 minutes) and configurable.

Each event's ``message`` is the API server's audit Event JSON; it is handed on as one line.
"""

from __future__ import annotations

from typing import Any

import orjson

from podmortem.errors import CapabilityUnavailable, InputError
from podmortem.watch.sources.base import Chunk

STREAM_PREFIX = "kube-apiserver-audit"
OVERLAP_MS = 120_000
MAX_PAGES = 50
MAX_SEEN = 200_000


class CloudWatchSource:
    def __init__(
        self,
        client: Any,
        log_group: str,
        *,
        stream_prefix: str | None = STREAM_PREFIX,
        overlap_ms: int = OVERLAP_MS,
        start_ms: int = 0,
    ) -> None:
        if not log_group or len(log_group) > 512:
            raise InputError("cloudwatch: give a log group, e.g. cloudwatch:/aws/eks/NAME/cluster")
        self.client = client
        self.log_group = log_group
        self.stream_prefix = stream_prefix
        self.overlap_ms = overlap_ms
        self._newest = start_ms
        self._seen: dict[str, int] = {}  # eventId -> timestamp, within the overlap

    @classmethod
    def from_environment(cls, log_group: str, *, region: str | None = None) -> CloudWatchSource:
        """boto3's own configuration (profile, AWS_ENDPOINT_URL, IRSA web identity)."""
        try:
            import boto3  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - dependency
            raise CapabilityUnavailable("boto3 is not installed") from exc
        return cls(boto3.client("logs", region_name=region), log_group)

    @property
    def name(self) -> str:
        return f"cloudwatch:{self.log_group}"

    def seek(self, position: dict[str, Any] | None) -> None:
        if position:
            self._newest = int(position.get("newest_ms", 0))
            seen = position.get("seen", {})
            self._seen = {str(k): int(v) for k, v in seen.items()} if isinstance(seen, dict) else {}

    def _position(self) -> dict[str, Any]:
        return {"newest_ms": self._newest, "seen": dict(self._seen)}

    def poll(self, max_bytes: int) -> Chunk | None:
        params: dict[str, Any] = {
            "logGroupName": self.log_group,
            "startTime": max(0, self._newest - self.overlap_ms),
        }
        if self.stream_prefix:
            params["logStreamNamePrefix"] = self.stream_prefix
        out: list[bytes] = []
        size = 0
        notes: list[dict[str, Any]] = []
        fresh: list[tuple[int, str, bytes]] = []
        for _ in range(MAX_PAGES):
            page = self.client.filter_log_events(**params)
            for ev in page.get("events", []):
                eid, ts = str(ev.get("eventId", "")), int(ev.get("timestamp", 0))
                if eid in self._seen:
                    continue
                fresh.append((ts, eid, _line(ev.get("message", ""), notes)))
            size = sum(len(x[2]) for x in fresh)
            token = page.get("nextToken")
            if not token or size >= max_bytes:
                break
            params["nextToken"] = token
        if not fresh:
            return Chunk(b"", 0, {}, notes) if notes else None
        fresh.sort()
        for ts, eid, line in fresh:
            self._seen[eid] = ts
            self._newest = max(self._newest, ts)
            if line:
                out.append(line)
        floor = self._newest - self.overlap_ms
        self._seen = {k: v for k, v in self._seen.items() if v >= floor}
        if len(self._seen) > MAX_SEEN:
            notes.append({"event": "seen-set-capped", "kept": MAX_SEEN})
            keep = sorted(self._seen.items(), key=lambda kv: kv[1])[-MAX_SEEN:]
            self._seen = dict(keep)
        data = b"".join(out)
        return Chunk(data, len(out), self._position(), notes)

    def commit(self, position: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


def _line(message: Any, notes: list[dict[str, Any]]) -> bytes:
    """One JSON line for the audit readers (a message spread over lines is re-serialized)."""
    text = message if isinstance(message, str) else str(message)
    try:
        return orjson.dumps(orjson.loads(text)) + b"\n"
    except orjson.JSONDecodeError:
        notes.append({"event": "message-not-json", "bytes": len(text)})
        # Still handed on (flattened), so the readers count and report it as malformed.
        return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace") + b"\n"
