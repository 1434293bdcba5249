"""Recognise how a file is framed from its first bytes (after decompression), never from its
name: JSON lines, a JSON document or stream of values, CSV, CloudWatch export text, YAML.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import orjson

from podmortem.audit.sources.eks import looks_like_export_line
from podmortem.audit.sources.shape import is_event

SNIFF_BYTES = 256 << 10
SNIFF_LINES = 20

# CSV headers we can read: Logs Insights, AzureDiagnostics, AKSAudit(Admin).
_CSV_MARKERS = ("@message", "log_s", "AuditId")
# A YAML mapping key at column 0 that a LogEntry or an Event starts with.
_YAML_KEY = re.compile(
    rb"^(insertId|logName|protoPayload|kind|apiVersion|auditID|level|records|items|resource|"
    rb"timestamp|labels|operation|receiveTimestamp|severity)\s*:",
    re.M,
)


# How the apiserver starts every Event it writes.
_EVENT_START = re.compile(rb'^\{\s*"kind"\s*:\s*"Event"\s*,\s*"apiVersion"\s*:\s*"audit\.k8s\.io/')


class Framing(enum.Enum):
    JSONL = "jsonl"
    JSON = "json"  # one document, a top-level array, or values back to back
    CSV = "csv"
    EXPORT_TEXT = "text"
    YAML = "yaml"
    EMPTY = "empty"
    UNKNOWN = "unknown"


# Columnar routes (DuckDB reads the file): chosen when every sniffed record has one shape.
NATIVE = "native"
AKS_BLOB = "aks-blob"
AKS_RECORDS = "aks-records"
GKE_LINES = "gke-lines"
GKE_ARRAY = "gke-array"
EKS_SUBSCRIPTION = "eks-subscription"
EKS_FILTER_LOG_EVENTS = "eks-filter-log-events"
# Documents too large for the sniff window to hold whole are recognised by how they start;
# a wrong guess costs nothing: DuckDB's rows of another shape are residue for Python.
_DOC_START = (
    (re.compile(rb'^\{\s*"records"\s*:\s*\['), AKS_RECORDS),
    (re.compile(rb'^\{\s*"messageType"\s*:'), EKS_SUBSCRIPTION),
    (re.compile(rb'^\{\s*"events"\s*:\s*\['), EKS_FILTER_LOG_EVENTS),
)


@dataclass(frozen=True, slots=True)
class Sniff:
    framing: Framing
    route: str | None = None

    @property
    def native(self) -> bool:
        return self.route == NATIVE


def _shape(obj: dict[str, object]) -> str | None:
    """The route for a record, tested in the order :func:`classify.dispatch` uses."""
    if is_event(obj):
        return NATIVE
    if obj.get("kind") == "EventList":
        return None
    if isinstance(obj.get("records"), list):
        return AKS_RECORDS
    if "messageType" in obj:
        return EKS_SUBSCRIPTION
    if isinstance(obj.get("events"), list):
        return EKS_FILTER_LOG_EVENTS
    if "protoPayload" in obj:
        return GKE_LINES
    if isinstance(obj.get("message"), dict):
        return None
    if "properties" in obj and "category" in obj:
        return AKS_BLOB
    return None


def sniff(head: bytes) -> Sniff:
    text = head.lstrip(b"\xef\xbb\xbf")
    body = text.lstrip()
    if not body:
        return Sniff(Framing.EMPTY)
    whole = len(head) < SNIFF_BYTES
    lines = [ln for ln in body.split(b"\n") if ln.strip()]
    if not whole:
        lines = lines[:-1]  # the last line may continue past the sniff window
    lines = lines[:SNIFF_LINES]
    first = body[:1]
    if first == b"{":
        if not lines:
            # no line ends inside the window: one big Event on a line of its own, or one big
            # document (or objects back to back, as Firehose writes them)
            if _EVENT_START.search(body[:4096]) and not _first_value_route(body):
                return Sniff(Framing.JSONL, route=NATIVE)
            return Sniff(Framing.JSON, route=_first_value_route(body))
        parsed = [_loads(ln) for ln in lines]
        objects = [p for p in parsed if isinstance(p, dict)]
        if objects and len(objects) * 2 >= len(parsed):
            shapes = {_shape(o) for o in objects}
            route = shapes.pop() if len(objects) == len(parsed) and len(shapes) == 1 else None
            return Sniff(Framing.JSONL, route=route)
        return Sniff(Framing.JSON, route=_first_value_route(body))
    if first == b"[":
        gke = b'"protoPayload"' in body and b'"logName"' in body
        return Sniff(Framing.JSON, route=GKE_ARRAY if gke else None)
    head_line = lines[0] if lines else b""
    if looks_like_export_line(head_line.strip()):
        return Sniff(Framing.EXPORT_TEXT)
    if b"," in head_line and any(m.encode() in head_line for m in _CSV_MARKERS):
        return Sniff(Framing.CSV)
    if _YAML_KEY.search(text[:SNIFF_BYTES]):
        return Sniff(Framing.YAML)
    return Sniff(Framing.UNKNOWN)


def _first_value_route(body: bytes) -> str | None:
    """A JSON document (or documents back to back): the route its start announces."""
    for rx, route in _DOC_START:
        if rx.match(body):
            return route
    return None


def _loads(line: bytes) -> object:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
